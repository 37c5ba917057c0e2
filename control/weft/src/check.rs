//! `weft check`: would this call be allowed, and what would happen to it? Against the
//! server's current set (`POST /api/v1/check`), or offline against files (`-f`), both by
//! `weft-check` (the compiled sidecar configurations and the filters' own cores).

use std::path::PathBuf;

use weft_check::{
    offline_snapshot, render_matrix, render_text, Call, CheckResult, Checker, Header, Matrix,
};

use crate::client::{decode, Client, Failure};
use crate::output::{print, Output};
use crate::Exit;

/// `weft check` options.
#[derive(Debug, Clone, clap::Args)]
#[command(
    after_help = "Exit codes: 0 the call would be allowed (a fault may still abort it), \
7 it would be denied (authz: 403, 401 for a JWT, 400 for a refused path) or blocked by \
the target's WAF (its status; a detect-mode WAF's would-block exits 0); \
--matrix exits 0. Other codes as for every command (1 server, 2 usage, 3 invalid files, 4 no such service, 6 no credential)."
)]
pub struct CheckArgs {
    /// The caller: a declared service (`name` or `namespace/name`) or a SPIFFE id; without
    /// it, a caller with no mesh identity (an outside client of a gateway).
    #[arg(long)]
    pub from: Option<String>,
    /// The called service (`name` or `namespace/name`).
    #[arg(long, required_unless_present = "matrix")]
    pub to: Option<String>,
    /// The version reached (default: what the caller's canary picks when that is
    /// deterministic, else the stable version).
    #[arg(long)]
    pub version: Option<String>,
    /// Every declared caller × service for METHOD PATH (default GET /): who can call whom.
    #[arg(long, conflicts_with_all = ["from", "to", "version", "headers", "jwt", "ip", "data", "data_file"])]
    pub matrix: bool,
    /// HTTP method, e.g. GET.
    #[arg(value_name = "METHOD", required_unless_present = "matrix")]
    pub method: Option<String>,
    /// Request path, query string included.
    #[arg(value_name = "PATH", required_unless_present = "matrix")]
    pub path: Option<String>,
    /// A request header `name:value` (repeatable; a name given twice is a repeated header).
    #[arg(long = "header", short = 'H', value_name = "NAME:VALUE")]
    pub headers: Vec<String>,
    /// A file holding a JWT, sent as the target's JWT provider expects it.
    #[arg(long, value_name = "FILE")]
    pub jwt: Option<PathBuf>,
    /// The address the target's sidecar sees the call from (what `ipBlocks` match).
    #[arg(long, value_name = "ADDRESS")]
    pub ip: Option<String>,
    /// A request body (text), e.g. for a WAF's body rules; say its type with
    /// `-H content-type:...`.
    #[arg(long, short = 'd', value_name = "BODY", conflicts_with = "data_file")]
    pub data: Option<String>,
    /// The request body from a file (UTF-8 text, at most 512 KiB).
    #[arg(long, value_name = "FILE")]
    pub data_file: Option<PathBuf>,
    /// Offline: check against these policy files (repeatable) instead of the server's set.
    #[arg(long = "file", short = 'f', value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// Runs `weft check`; `client` is made only when no file is given.
pub fn run(
    args: &CheckArgs,
    format: Output,
    client: impl FnOnce() -> Result<Client, Failure>,
) -> Result<Exit, Failure> {
    if args.matrix {
        let method = args.method.clone().unwrap_or_else(|| "GET".into());
        let path = args.path.clone().unwrap_or_else(|| "/".into());
        let matrix: Matrix = if args.files.is_empty() {
            let body = serde_json::json!({"method": method, "path": path});
            let body = serde_json::to_vec(&body).unwrap_or_default();
            decode(&client()?.post_json("/api/v1/check/matrix", &body)?)?
        } else {
            let snapshot = offline(&args.files)?;
            Checker::new(&snapshot)
                .matrix(&method, &path, now_ms())
                .map_err(refused)?
        };
        let value = serde_json::to_value(&matrix).unwrap_or_default();
        print(format, &value, |_| render_matrix(&matrix));
        return Ok(Exit::Ok);
    }
    let call = call(args)?;
    let result: CheckResult = if args.files.is_empty() {
        let body = serde_json::to_vec(&call).unwrap_or_default();
        decode(&client()?.post_json("/api/v1/check", &body)?)?
    } else {
        let snapshot = offline(&args.files)?;
        Checker::new(&snapshot)
            .check(&call, now_ms(), None)
            .map_err(refused)?
    };
    let value = serde_json::to_value(&result).unwrap_or_default();
    print(format, &value, |_| render_text(&result));
    Ok(if result.allowed {
        Exit::Ok
    } else {
        Exit::WouldDeny
    })
}

fn call(args: &CheckArgs) -> Result<Call, Failure> {
    let usage = |m: String| Failure::new(Exit::Usage, m);
    let headers = args
        .headers
        .iter()
        .map(|h| {
            let (name, value) = h
                .split_once(':')
                .ok_or_else(|| usage(format!("-H {h:?}: write name:value")))?;
            Ok(Header {
                name: name.trim().to_string(),
                value: value.trim_start().to_string(),
            })
        })
        .collect::<Result<Vec<_>, Failure>>()?;
    let jwt = match &args.jwt {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| usage(format!("--jwt {}: {e}", path.display())))?
                .trim()
                .to_string(),
        ),
        None => None,
    };
    let body = match (&args.data, &args.data_file) {
        (Some(data), _) => Some(data.clone()),
        (None, Some(path)) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| usage(format!("--data-file {}: {e}", path.display())))?,
        ),
        (None, None) => None,
    };
    Ok(Call {
        from: args.from.clone(),
        to: args.to.clone().unwrap_or_default(),
        version: args.version.clone(),
        method: args.method.clone().unwrap_or_default(),
        path: args.path.clone().unwrap_or_default(),
        headers,
        jwt,
        ip: args.ip.clone(),
        body,
    })
}

/// The files' documents, validated and compiled as `weft validate --offline` does.
fn offline(files: &[PathBuf]) -> Result<weft_state::Snapshot, Failure> {
    let mut docs = Vec::new();
    for file in files {
        let input = crate::offline::read_input(file)?;
        docs.extend(crate::offline::load_offline(&input)?);
    }
    let set = crate::offline::offline_set(docs)?;
    offline_snapshot(set).map_err(refused)
}

fn refused(e: weft_check::CheckError) -> Failure {
    let exit = match &e {
        weft_check::CheckError::Invalid { .. } => Exit::Usage,
        weft_check::CheckError::NotFound(_) => Exit::NotFound,
        weft_check::CheckError::Config(_) => Exit::Invalid,
    };
    Failure::new(exit, e.to_string())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
