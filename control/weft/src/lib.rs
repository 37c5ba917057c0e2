//! The `weft` command: `weft serve` runs the control plane; every other subcommand is a client
//! of its REST API (plus `validate --offline` and `completions`, which need no server).
//!
//! Exit codes mean something: see [`Exit`].
#![forbid(unsafe_code)]

mod bootstrap;
mod check;
mod cli;
mod client;
mod commands;
mod config;
mod etcd_cmd;
mod explain;
mod identity;
mod module_cmd;
mod offline;
mod operator;
mod output;
mod replica;
mod rollout;
mod serve;
mod sidecars;
mod store_cmd;
mod telemetry;
mod xds;

use std::process::ExitCode;

/// Process exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    /// The server could not be reached, or failed (5xx).
    Server = 1,
    /// Bad command line or unreadable input file.
    Usage = 2,
    /// The documents are invalid (422) or too large (413).
    Invalid = 3,
    /// No such document, version or sidecar (404).
    NotFound = 4,
    /// The server moved on (409: `--expect-version` did not match).
    Conflict = 5,
    /// No valid credential (401) or not allowed (403).
    Denied = 6,
    /// `weft check`: the call would be denied by the target's authz.
    WouldDeny = 7,
    /// A known advisory affects a module (`weft module audit`).
    Affected = 8,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e as u8)
    }
}

/// Parses the command line and runs it.
pub fn run() -> ExitCode {
    let matches = <cli::Cli as clap::CommandFactory>::command().get_matches();
    let cli = match <cli::Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    // What the command line itself gave (`weft config set-context` stores only that).
    let explicit = |id: &str| {
        matches!(
            matches.value_source(id),
            Some(clap::parser::ValueSource::CommandLine)
        )
    };
    let given = config::Given {
        server: cli.server.clone().filter(|_| explicit("server")),
        token: None,
        token_file: cli.token_file.clone().filter(|_| explicit("token_file")),
        ca_file: cli.ca_file.clone().filter(|_| explicit("ca_file")),
        client_cert: cli.client_cert.clone().filter(|_| explicit("client_cert")),
        client_key: cli.client_key.clone().filter(|_| explicit("client_key")),
    };
    commands::run(cli, &given).into()
}
