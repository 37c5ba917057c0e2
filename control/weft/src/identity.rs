//! Mesh identity in the `weft` command: `weft serve --ca` (the CA under `<data-dir>/ca`,
//! SVIDs over SDS, join tokens required on every xDS stream), `weft token create|list|revoke`
//! and `weft ca show|rotate`, which are clients of the REST API.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use weft_ca::{CaSettings, Identity};

use crate::client::{decode, Client, Failure};
use crate::output::Output;
use crate::output::{print, table};
use crate::Exit;
use weft_api::types::{CaInfo, CreateToken, RootRotated, TokenCreated, TokenList};

/// `weft serve` options for the mesh CA.
#[derive(Debug, Clone, clap::Args)]
pub struct CaServeArgs {
    /// Run the mesh CA (kept in `<data-dir>/ca`, keys mode 0600): sidecars bootstrapped with
    /// `weft bootstrap --sds --token T` get a short-lived SPIFFE certificate over SDS, mesh
    /// clusters speak mTLS with it, and every xDS stream must present a join token
    /// (`weft token create`) naming the identity its node claims.
    #[arg(long, env = "WEFT_CA", conflicts_with = "mesh_tls_dir_in_sidecar")]
    pub ca: bool,
    /// Lifetime of the SVIDs (renewed at half of it): 30s, 10m, 24h; at most 7d.
    #[arg(long, env = "WEFT_SVID_TTL", default_value = "24h", value_parser = parse_svid_ttl)]
    pub svid_ttl: Duration,
    /// After `weft ca rotate`, how long the new root is only trusted before it signs (so every
    /// sidecar trusts it before anyone presents it); at most 7d.
    #[arg(long, env = "WEFT_ROOT_PROPAGATION", default_value = "10s", value_parser = parse_root_propagation)]
    pub root_propagation: Duration,
}

/// `weft token ...`
#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Create a join token for one service identity and print it (it is shown only once).
    Create {
        #[arg(long)]
        service: String,
        #[arg(long, short = 'n', default_value = "default")]
        namespace: String,
        /// How long sidecars may connect with it: 30m, 24h, 30d (the maximum). A sidecar
        /// whose token expires is disconnected and cannot reconnect.
        #[arg(long, default_value = "24h", value_parser = parse_token_ttl)]
        ttl: Duration,
    },
    /// List every token created (ids and claims, never the tokens).
    List,
    /// Revoke a token: its sidecars' streams are closed and it cannot connect again.
    Revoke {
        #[arg(value_name = "ID")]
        id: String,
    },
}

/// `weft ca ...`
#[derive(Debug, clap::Subcommand)]
pub enum CaCommand {
    /// Roots, trust bundle and SVID lifetime.
    Show {
        /// Print only the trust bundle (PEM), e.g. for `weft bootstrap --xds-ca-file`.
        #[arg(long)]
        bundle: bool,
    },
    /// Start a root rotation (old and new roots trusted until the old one's last SVID expires).
    Rotate,
}

/// `30s`, `10m`, `24h`, `7d`, or sums such as `1h30m`.
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let bad = || format!("bad duration {text:?} (expected e.g. `30s`, `10m`, `24h`, `7d`)");
    let mut total = Duration::ZERO;
    let mut rest = text;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (number, after) = rest.split_at(digits);
        let n: u64 = number.parse().map_err(|_| bad())?;
        let unit = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, after) = after.split_at(unit);
        let seconds = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return Err(bad()),
        };
        let term = Duration::from_secs(n.checked_mul(seconds).ok_or_else(bad)?);
        total = total.checked_add(term).ok_or_else(bad)?;
        rest = after;
    }
    if total.is_zero() {
        return Err(bad());
    }
    Ok(total)
}

/// [`parse_ttl`] at most `max`.
fn parse_bounded(text: &str, max: Duration) -> Result<Duration, String> {
    let ttl = parse_ttl(text)?;
    if ttl > max {
        return Err(format!(
            "{text:?} is longer than the maximum of {}d",
            max.as_secs() / 86_400
        ));
    }
    Ok(ttl)
}

pub fn parse_svid_ttl(text: &str) -> Result<Duration, String> {
    parse_bounded(text, weft_ca::MAX_SVID_TTL)
}

pub fn parse_root_propagation(text: &str) -> Result<Duration, String> {
    parse_bounded(text, weft_ca::MAX_ROOT_PROPAGATION)
}

pub fn parse_token_ttl(text: &str) -> Result<Duration, String> {
    parse_bounded(text, weft_ca::MAX_TOKEN_TTL)
}

/// Opens the CA and tokens under `<data_dir>/ca` when `--ca` is given.
pub fn open(
    data_dir: &Path,
    args: &CaServeArgs,
    trust_domain: &str,
    shared: Option<&crate::replica::Shared>,
) -> anyhow::Result<Option<Arc<Identity>>> {
    if !args.ca {
        return Ok(None);
    }
    let settings = CaSettings {
        trust_domain: trust_domain.to_string(),
        svid_ttl: args.svid_ttl,
        root_propagation: args.root_propagation,
        ..CaSettings::default()
    };
    if let Some(shared) = shared {
        let identity =
            Identity::open_shared(Arc::clone(&shared.state), Arc::clone(&shared.kek), settings)?;
        tracing::info!(
            trust_domain,
            svid_ttl_s = args.svid_ttl.as_secs(),
            signing_root = identity.ca.signing_generation(),
            "mesh CA on, kept in etcd (keys sealed): SDS certificates, join tokens required"
        );
        return Ok(Some(Arc::new(identity)));
    }
    let dir = data_dir.join("ca");
    let identity = Identity::open(&dir, settings)?;
    tracing::info!(dir = %dir.display(), trust_domain, svid_ttl_s = args.svid_ttl.as_secs(), signing_root = identity.ca.signing_generation(), "mesh CA on: SDS certificates, join tokens required");
    Ok(Some(Arc::new(identity)))
}

pub fn token(client: &Client, command: TokenCommand, format: Output) -> Result<(), Failure> {
    match command {
        TokenCommand::Create {
            service,
            namespace,
            ttl,
        } => {
            let body = CreateToken {
                service,
                namespace,
                ttl_seconds: Some(ttl.as_secs()),
            };
            let body = serde_json::to_vec(&body)
                .map_err(|e| Failure::new(Exit::Usage, format!("token request: {e}")))?;
            let out = client.post("/api/v1/tokens", Some(&body), None)?;
            let created: TokenCreated = decode(&out)?;
            match format {
                // The bare token, so `T=$(weft token create ...)` works.
                Output::Table => println!("{}", created.token),
                _ => print(format, &out, |_| String::new()),
            }
        }
        TokenCommand::List => {
            let out = client.get("/api/v1/tokens")?;
            let list: TokenList = decode(&out)?;
            print(format, &out, |_| token_table(&list));
        }
        TokenCommand::Revoke { id } => {
            let out = client.delete(&format!("/api/v1/tokens/{id}"), None)?;
            print(format, &out, |_| format!("revoked {id}\n"));
        }
    }
    Ok(())
}

fn token_table(list: &TokenList) -> String {
    let now = std::time::UNIX_EPOCH.elapsed().map_or(0, |d| d.as_secs());
    let rows: Vec<Vec<String>> = list
        .tokens
        .iter()
        .map(|t| {
            let exp = t.claims.exp;
            let state = if t.revoked_at.is_some() {
                "revoked"
            } else if exp <= now {
                "expired"
            } else {
                "active"
            };
            vec![
                t.claims.id.clone(),
                format!("{}/{}", t.claims.namespace, t.claims.service),
                crate::output::rfc3339(exp.saturating_mul(1000)),
                state.to_string(),
            ]
        })
        .collect();
    table(&["ID", "IDENTITY", "EXPIRES", "STATE"], &rows)
}

pub fn ca(client: &Client, command: CaCommand, format: Output) -> Result<(), Failure> {
    match command {
        CaCommand::Show { bundle: true } => {
            let info: CaInfo = decode(&client.get("/api/v1/ca")?)?;
            print!("{}", info.trust_bundle);
        }
        CaCommand::Show { bundle: false } => {
            let out = client.get("/api/v1/ca")?;
            let info: CaInfo = decode(&out)?;
            print(format, &out, |_| {
                let mut s = format!(
                    "trust domain: {}\nSVID lifetime: {} s\nsigning root: {}\n",
                    info.trust_domain, info.svid_ttl_seconds, info.signing_generation
                );
                for root in &info.roots {
                    s.push_str(&format!(
                        "root {}: serial {}, signs from {}, {}\n",
                        root.generation,
                        root.serial,
                        crate::output::rfc3339(root.active_from_ms),
                        match root.retired_at_ms {
                            Some(at) => format!("retired {}", crate::output::rfc3339(at)),
                            None => "current".into(),
                        }
                    ));
                }
                s
            });
        }
        CaCommand::Rotate => {
            let out = client.post("/api/v1/ca/rotate", None, None)?;
            let rotated: RootRotated = decode(&out)?;
            print(format, &out, |_| {
                format!(
                    "new root {} (serial {}) is trusted now and signs from {}\n",
                    rotated.root.generation,
                    rotated.root.serial,
                    crate::output::rfc3339(rotated.root.active_from_ms)
                )
            });
        }
    }
    Ok(())
}

/// The refusal counts of `GET /v1/sidecars` for `weft status` (nothing when none).
pub fn refusal_lines(body: &Value) -> String {
    let refused = &body["refused"];
    let total = refused["total"].as_u64().unwrap_or(0);
    if total == 0 {
        return String::new();
    }
    let reasons: Vec<String> = refused["by_reason"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(reason, n)| format!("{reason} {n}"))
        .collect();
    let mut out = format!("refused xDS streams: {total} ({})\n", reasons.join(", "));
    if let Some(last) = refused["recent"].as_array().and_then(|r| r.last()) {
        out.push_str(&format!(
            "  last: node {} claimed {}: {}\n",
            last["node_id"].as_str().unwrap_or(""),
            last["claimed"].as_str().unwrap_or(""),
            last["message"].as_str().unwrap_or("")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ttls_parse_with_days() {
        assert_eq!(parse_ttl("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_ttl("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_ttl("7d"), Ok(Duration::from_secs(7 * 86_400)));
        for bad in ["", "10", "5x", "0s", "h"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_that_overflow_or_exceed_their_bound_are_refused_not_panicked_on() {
        let huge = format!("{}s{}s", u64::MAX, u64::MAX);
        assert!(parse_ttl(&huge).is_err());
        assert!(parse_ttl(&format!("{}d", u64::MAX)).is_err());
        assert!(parse_ttl("200000000000000d200000000000000d").is_err());
        assert_eq!(parse_token_ttl("30d"), Ok(Duration::from_secs(30 * 86_400)));
        let error = parse_token_ttl("31d");
        assert!(
            error.as_ref().is_err_and(|e| e.contains("maximum of 30d")),
            "{error:?}"
        );
        assert!(parse_svid_ttl("8d").is_err());
        assert!(parse_svid_ttl("7d").is_ok());
        assert!(parse_root_propagation("100000d").is_err());
    }

    #[test]
    fn status_shows_refusals_with_the_last_one() {
        let body = json!({"refused": {"total": 3, "by_reason": {"identity_mismatch": 2, "revoked": 1},
            "recent": [{"node_id": "thief", "claimed": "default/reviews",
                        "message": "token ab is for default/productpage"}]}});
        let text = refusal_lines(&body);
        assert!(
            text.contains("refused xDS streams: 3 (identity_mismatch 2, revoked 1)"),
            "{text}"
        );
        assert!(
            text.contains("node thief claimed default/reviews"),
            "{text}"
        );
        assert_eq!(refusal_lines(&json!({"refused": {"total": 0}})), "");
    }
}
