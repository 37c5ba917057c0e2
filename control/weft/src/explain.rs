//! Explain tokens in the `weft` command: the master key `weft serve` keeps in
//! `<data-dir>/explain.key` (0600; each service's token key is derived from it; with
//! `--store etcd` it is etcd's instead, sealed, shared by every replica: D94), and
//! `weft explain-token --to SERVICE --ttl 5m`, a client of
//! `POST /api/v1/explain/{namespace}/{service}/tokens`.

use std::path::Path;
use std::time::Duration;

use crate::client::{decode, Client, Failure};
use crate::output::{print, Output};
use crate::Exit;
use weft_api::types::{CreateExplainToken, ExplainToken};

/// The master key's file in the data directory.
pub const EXPLAIN_KEY_FILE: &str = "explain.key";

/// `weft explain-token` arguments.
#[derive(Debug, clap::Args)]
pub struct ExplainTokenArgs {
    /// The service whose sidecars will explain a request carrying the token.
    #[arg(long = "to", value_name = "SERVICE")]
    pub service: String,
    #[arg(long, short = 'n', default_value = "default")]
    pub namespace: String,
    /// How long it is honoured: 30s, 5m, 1h (the maximum).
    #[arg(long, default_value = "5m", value_parser = parse_explain_ttl)]
    pub ttl: Duration,
}

fn parse_explain_ttl(text: &str) -> Result<Duration, String> {
    let ttl = crate::identity::parse_ttl(text)?;
    let max = weft_filter_core::explain::MAX_TTL_SECS;
    if ttl.is_zero() || ttl.as_secs() > max {
        return Err(format!("{text}: must be between 1s and {max}s (1h)"));
    }
    Ok(ttl)
}

/// Prints the token (bare, so `T=$(weft explain-token --to S)` works) or, with `-o json`,
/// the whole answer.
pub fn explain_token(
    client: &Client,
    args: ExplainTokenArgs,
    format: Output,
) -> Result<(), Failure> {
    let body = serde_json::to_vec(&CreateExplainToken {
        ttl_seconds: Some(args.ttl.as_secs()),
    })
    .map_err(|e| Failure::new(Exit::Usage, format!("explain token request: {e}")))?;
    let path = format!("/api/v1/explain/{}/{}/tokens", args.namespace, args.service);
    let out = client.post(&path, Some(&body), None)?;
    let token: ExplainToken = decode(&out)?;
    match format {
        Output::Table => println!("{}", token.token),
        _ => print(format, &out, |_| String::new()),
    }
    Ok(())
}

/// The master key in `data_dir`: read (tightened to 0600 if looser), or made from 32 bytes
/// of the OS's randomness and written 0600 on first start.
pub fn open_master(data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    let path = data_dir.join(EXPLAIN_KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            if let Some(warning) =
                weft_store::private::tighten(&path, weft_store::private::FILE_MODE)?
            {
                tracing::warn!(%warning, "the explain key was readable by others");
            }
            decode_key(text.trim())
                .ok_or_else(|| anyhow::anyhow!("{}: expected 64 hex characters", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            use std::io::Read;
            let mut key = vec![0u8; 32];
            std::fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
            let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
            weft_store::private::write_atomic(&path, hex.as_bytes())
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            Ok(key)
        }
        Err(e) => Err(anyhow::anyhow!("{}: {e}", path.display())),
    }
}

fn decode_key(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 {
        return None;
    }
    (0..32)
        .map(|i| u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_master_key_is_made_once_0600_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = open_master(dir.path()).unwrap();
        assert_eq!(first.len(), 32);
        let path = dir.path().join(EXPLAIN_KEY_FILE);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            open_master(dir.path()).unwrap(),
            first,
            "a restart keeps it"
        );
        std::fs::write(&path, "not hex").unwrap();
        let err = open_master(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("explain.key") && err.contains("64 hex"),
            "{err}"
        );
    }

    #[test]
    fn ttl_is_bounded_by_an_hour() {
        assert_eq!(parse_explain_ttl("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_explain_ttl("2h").is_err());
        assert!(parse_explain_ttl("0s").is_err());
    }
}
