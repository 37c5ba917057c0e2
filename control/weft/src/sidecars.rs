//! The xDS server's sidecar view in the CLI: the table of `weft status`, and `weft apply`
//! waiting until sidecars acknowledge (or lastingly refuse) a new version.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::client::{Client, Failure};
use crate::output::Output;
use crate::Exit;

/// Client options for the xDS server's sidecar view (`weft status`, `weft apply`), read from
/// the REST API (`GET /api/v1/xds/sidecars` on `--server`).
#[derive(Debug, Clone, clap::Args)]
pub struct XdsClientArgs {
    /// Fallback only: the xDS listener's plain-HTTP address, asked for `GET /v1/sidecars`
    /// when the REST API has no sidecar view (an older server). Useless with `weft serve
    /// --ca`, whose xDS listener speaks TLS only.
    #[arg(long, global = true, env = "WEFT_XDS_SERVER")]
    pub xds_server: Option<String>,
    /// `weft apply`: seconds to wait for sidecars to acknowledge the new version (0: do not).
    #[arg(long, global = true, env = "WEFT_ACK_TIMEOUT", default_value_t = 30)]
    pub ack_timeout: u64,
    /// `weft apply`: how many sidecars must acknowledge (default: every connected one).
    #[arg(long, global = true)]
    pub ack_min: Option<usize>,
}

/// The sidecar table of `weft status`; an unreachable xDS server is reported, not fatal.
pub fn print_sidecars(
    client: &Client,
    args: &XdsClientArgs,
    format: Output,
) -> Result<(), Failure> {
    let body = match SidecarView::new(client, args).get() {
        Ok(body) => body,
        Err(message) => {
            eprintln!("xds: sidecars unavailable: {message}");
            return Ok(());
        }
    };
    crate::output::print(format, &body, |body| {
        sidecar_table(body) + &crate::identity::refusal_lines(body) + &module_lines(body)
    });
    Ok(())
}

/// Where `weft status` and `weft apply` read the sidecars: the REST API's
/// `GET /api/v1/xds/sidecars` (plain HTTP whatever the xDS listener speaks), else, when
/// `--xds-server` is set, the xDS listener's `GET /v1/sidecars` (servers without the route).
struct SidecarView<'a> {
    rest: &'a Client,
    fallback: Option<(Client, &'a str)>,
}

impl<'a> SidecarView<'a> {
    fn new(rest: &'a Client, args: &'a XdsClientArgs) -> Self {
        Self {
            rest,
            fallback: args.xds_server.as_deref().and_then(|server| {
                let plain = if server.contains("://") {
                    server.to_string()
                } else {
                    format!("http://{server}")
                };
                let connection = crate::client::Connection {
                    server: plain,
                    ..Default::default()
                };
                Client::new(&connection).ok().map(|client| (client, server))
            }),
        }
    }

    fn get(&self) -> Result<Value, String> {
        let rest = match self.rest.get("/api/v1/xds/sidecars") {
            Ok(body) => return Ok(body),
            Err(failure) => failure.message,
        };
        match &self.fallback {
            Some((client, server)) => client
                .get("/v1/sidecars")
                .map_err(|f| format!("REST API: {rest}; xDS listener {server}: {}", f.message)),
            None => Err(rest),
        }
    }
}

/// The modules the server serves (hash, signer) and the latest reload's refusal.
fn module_lines(body: &Value) -> String {
    let mut out = String::new();
    for m in body["modules"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "module {}: sha256 {} signer {}\n",
            m["name"].as_str().unwrap_or(""),
            m["sha256"].as_str().unwrap_or(""),
            m["signer"].as_str().unwrap_or("none (unsigned)"),
        ));
    }
    if let Some(error) = body["module_reload"]["last_error"].as_str() {
        out.push_str(&format!(
            "module reload refused (still serving the set above): {error}\n"
        ));
    }
    out
}

/// `authz=1a2b3c4d5e6f,...`: the modules a sidecar acknowledged, 12 hex digits of each hash.
fn short_modules(modules: &Value) -> String {
    let list: Vec<String> = modules
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, hash)| {
            let hash = hash.as_str().unwrap_or("");
            format!("{name}={}", hash.get(..12).unwrap_or(hash))
        })
        .collect();
    if list.is_empty() {
        "-".into()
    } else {
        list.join(",")
    }
}

fn sidecar_table(body: &Value) -> String {
    let mut out = format!("xds revision: {}\n", body["revision"]);
    let sidecars = body["sidecars"].as_array().cloned().unwrap_or_default();
    if sidecars.is_empty() {
        out.push_str("sidecars: none connected\n");
        return out;
    }
    out.push_str("NODE\tGROUP\tCONNECTED\tSYNCED\tMODULES\tNACK\tREPLICA\n");
    for s in sidecars {
        let nack = match &s["current_nack"] {
            Value::Null => "-".to_string(),
            n => format!(
                "{} ({})",
                n["message"].as_str().unwrap_or(""),
                short_type(&n["type_url"])
            ),
        };
        out.push_str(&format!(
            "{}\t{}/{}/{}\t{}\t{}\t{}\t{}\t{}\n",
            s["node_id"].as_str().unwrap_or(""),
            s["namespace"].as_str().unwrap_or(""),
            s["service"].as_str().unwrap_or(""),
            s["version"].as_str().unwrap_or(""),
            s["connected"],
            s["synced_revision"],
            short_modules(&s["modules"]),
            nack,
            s["replica"].as_str().unwrap_or("-"),
        ));
    }
    for s in body["sidecars"].as_array().into_iter().flatten() {
        if let Some(mismatch) = s["filters_mismatch"].as_str() {
            out.push_str(&format!(
                "warning: {}: {mismatch}\n",
                s["node_id"].as_str().unwrap_or("")
            ));
        }
    }
    out
}

fn short_type(type_url: &Value) -> String {
    type_url
        .as_str()
        .and_then(|t| t.rsplit('.').next())
        .unwrap_or("")
        .to_string()
}

const LASTING_REFUSAL: Duration = Duration::from_secs(3);

/// After `weft apply` created `version`: wait (with a progress line on stderr) until the
/// wanted number of sidecars acknowledged it, or report the sidecars that refused it.
pub fn wait_for_acks(
    client: &Client,
    args: &XdsClientArgs,
    outcome: &Value,
) -> Result<(), Failure> {
    let (Some(version), true) = (outcome["version"].as_u64(), outcome["created"] == true) else {
        return Ok(());
    };
    if args.ack_timeout == 0 {
        return Ok(());
    }
    let view = SidecarView::new(client, args);
    let now = Instant::now();
    // A timeout past the clock's range waits a year (for ever, in practice).
    let deadline = now
        .checked_add(Duration::from_secs(args.ack_timeout))
        .or_else(|| now.checked_add(Duration::from_secs(365 * 86_400)))
        .unwrap_or(now);
    // A sidecar fetching a new module refuses once and accepts on the retry: only a refusal
    // that lasts counts.
    let mut refusing_since: BTreeMap<String, Instant> = BTreeMap::new();
    loop {
        let body = match view.get() {
            Ok(body) => body,
            Err(message) => {
                eprintln!("xds: sidecars unavailable, not waiting for them: {message}");
                return Ok(());
            }
        };
        let sidecars = body["sidecars"].as_array().cloned().unwrap_or_default();
        let connected: Vec<&Value> = sidecars.iter().filter(|s| s["connected"] == true).collect();
        let acked = connected
            .iter()
            .filter(|s| s["synced_revision"].as_u64().is_some_and(|r| r >= version))
            .count();
        refusing_since.retain(|node, _| {
            connected
                .iter()
                .any(|s| s["node_id"] == node.as_str() && !s["current_nack"].is_null())
        });
        for s in &connected {
            if !s["current_nack"].is_null() {
                let node = s["node_id"].as_str().unwrap_or("").to_string();
                refusing_since.entry(node).or_insert_with(Instant::now);
            }
        }
        let refused: Vec<&&Value> = connected
            .iter()
            .filter(|s| {
                s["node_id"]
                    .as_str()
                    .and_then(|n| refusing_since.get(n))
                    .is_some_and(|t| t.elapsed() >= LASTING_REFUSAL || Instant::now() >= deadline)
            })
            .collect();
        let want = args.ack_min.unwrap_or(connected.len());
        eprint!(
            "\rversion {version}: {acked} of {} sidecar(s) acknowledged",
            connected.len()
        );
        if acked >= want && body["revision"].as_u64().is_some_and(|r| r >= version) {
            eprintln!();
            return Ok(());
        }
        if !refused.is_empty() {
            eprintln!();
            for s in &refused {
                eprintln!(
                    "  {} refused: {}",
                    s["node_id"].as_str().unwrap_or(""),
                    s["current_nack"]["message"].as_str().unwrap_or("")
                );
            }
            return Err(Failure::new(
                Exit::Server,
                format!("{} sidecar(s) refused version {version}; they keep running the last version they accepted", refused.len()),
            ));
        }
        if Instant::now() >= deadline {
            eprintln!();
            return Err(Failure::new(
                Exit::Server,
                format!(
                    "timed out: {acked} of {want} sidecar(s) acknowledged version {version}; not synced: {}",
                    not_synced(&connected, version)
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The connected sidecars that have not acknowledged `version`: `node (replica r, at N)`.
fn not_synced(connected: &[&Value], version: u64) -> String {
    let names: Vec<String> = connected
        .iter()
        .filter(|s| s["synced_revision"].as_u64().is_none_or(|r| r < version))
        .map(|s| {
            let at = s["synced_revision"]
                .as_u64()
                .map_or("none".to_string(), |r| r.to_string());
            match s["replica"].as_str() {
                Some(replica) => format!(
                    "{} (replica {replica}, at {at})",
                    s["node_id"].as_str().unwrap_or("")
                ),
                None => format!("{} (at {at})", s["node_id"].as_str().unwrap_or("")),
            }
        })
        .collect();
    if names.is_empty() {
        "-".into()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sidecar_table_shows_acks_and_nack_reasons() {
        let body = json!({"revision": 7, "sidecars": [
            {"node_id": "reviews-v1", "namespace": "shop", "service": "reviews", "version": "v1",
             "connected": true, "synced_revision": 7, "current_nack": null,
             "modules": {"authz": "0123456789abcdef0123", "telemetry": "fedcba9876543210"}},
            {"node_id": "reviews-v2", "namespace": "shop", "service": "reviews", "version": "v2",
             "connected": true, "synced_revision": 6, "current_nack": {
                "type_url": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
                "message": "Unable to create Wasm plugin weft.authz"}},
        ]});
        let table = sidecar_table(&body);
        assert!(table.contains("xds revision: 7"), "{table}");
        assert!(
            table.contains(
                "reviews-v1\tshop/reviews/v1\ttrue\t7\tauthz=0123456789ab,telemetry=fedcba987654\t-"
            ),
            "{table}"
        );
        assert!(
            table.contains("reviews-v2\tshop/reviews/v2\ttrue\t6\t-\tUnable to create Wasm plugin weft.authz (TypedExtensionConfig)"),
            "{table}"
        );
        assert!(sidecar_table(&json!({"revision": 0, "sidecars": []})).contains("none connected"));
    }

    #[test]
    fn served_modules_and_a_refused_reload_are_shown() {
        let body = json!({"modules": [
            {"name": "authz", "sha256": "ab", "signer": "f050b8785bec2684"},
            {"name": "fault", "sha256": "cd", "signer": null}],
            "module_reload": {"attempts": 1, "last_error": "authz.wasm: unsigned: no authz.wasm.sig"}});
        let lines = module_lines(&body);
        assert!(
            lines.contains("module authz: sha256 ab signer f050b8785bec2684"),
            "{lines}"
        );
        assert!(
            lines.contains("module fault: sha256 cd signer none (unsigned)"),
            "{lines}"
        );
        assert!(
            lines.contains(
                "module reload refused (still serving the set above): authz.wasm: unsigned"
            ),
            "{lines}"
        );
        assert_eq!(module_lines(&json!({})), "");
    }
}
