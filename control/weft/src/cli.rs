//! The command line.

use clap::{Parser, Subcommand};

pub use crate::output::Output;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "weft",
    version,
    about = "weft service-mesh control plane and CLI",
    propagate_version = true
)]
#[command(
    after_help = "Exit codes: 0 ok, 1 server or transport error, 2 usage, 3 invalid documents, 4 not found, 5 conflict, 6 no valid credential or not allowed, 7 `weft check`: the call would be denied, 8 `weft module audit`: a module is affected by an advisory."
)]
pub struct Cli {
    /// Control plane address (default: the current context's, else https://127.0.0.1:7070).
    #[arg(long, short = 's', global = true, env = "WEFT_SERVER")]
    pub server: Option<String>,
    /// File holding the operator token sent as `Authorization: Bearer` (the first start
    /// writes the admin's to `<data-dir>/admin.token`). `WEFT_TOKEN` gives the token itself.
    #[arg(long, global = true, env = "WEFT_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// PEM bundle the server's certificate must chain to (`weft ca show --bundle`, or
    /// `<data-dir>/ca-bundle.pem`); needed for an https server.
    #[arg(long, global = true, env = "WEFT_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// An operator client certificate (`weft operator create --cert-out DIR`: DIR/cert.pem),
    /// used when no token is given; needs --client-key.
    #[arg(long, global = true, env = "WEFT_CLIENT_CERT", requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// Its private key (DIR/key.pem).
    #[arg(long, global = true, env = "WEFT_CLIENT_KEY", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// Output format.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    #[command(flatten)]
    pub xds: crate::sidecars::XdsClientArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or replace the documents of a file, atomically.
    Apply {
        /// YAML or JSON file, `-` for standard input.
        #[arg(long, short = 'f')]
        file: PathBuf,
        /// Recorded in the history.
        #[arg(long, env = "WEFT_AUTHOR")]
        author: Option<String>,
        /// Validate and show the change without storing it.
        #[arg(long)]
        dry_run: bool,
        /// Refuse (exit 5) unless the server is at this version.
        #[arg(long)]
        expect_version: Option<u64>,
    },
    /// List documents, or show one.
    Get {
        /// Kind (`AuthorizationPolicy`, case-insensitive); all kinds when absent.
        kind: Option<String>,
        /// Document name.
        name: Option<String>,
        #[arg(long, short = 'n')]
        namespace: Option<String>,
    },
    /// Delete one document.
    Delete {
        kind: String,
        name: String,
        #[arg(long, short = 'n', default_value = "default")]
        namespace: String,
        #[arg(long, env = "WEFT_AUTHOR")]
        author: Option<String>,
        #[arg(long)]
        dry_run: bool,
    },
    /// Show what applying a file would change, per document and per sidecar.
    Diff {
        #[arg(long, short = 'f')]
        file: PathBuf,
    },
    /// Validate a file against the server's current set, or on its own with --offline.
    Validate {
        #[arg(long, short = 'f')]
        file: PathBuf,
        /// No server: check the documents and the references among them only.
        #[arg(long)]
        offline: bool,
    },
    /// List every version, or show the documents of one.
    History {
        #[arg(value_name = "VERSION")]
        at: Option<u64>,
    },
    /// Create a new version equal to an earlier one.
    Rollback {
        #[arg(value_name = "VERSION")]
        target: u64,
        #[arg(long, env = "WEFT_AUTHOR")]
        author: Option<String>,
        #[arg(long)]
        dry_run: bool,
    },
    /// Server and policy version.
    Status,
    /// Print a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Run the control plane server.
    Serve {
        /// Where versions are stored.
        #[arg(long, env = "WEFT_DATA_DIR")]
        data_dir: PathBuf,
        #[command(flatten)]
        api: crate::serve::ApiServeArgs,
        /// error, warn, info, debug or trace.
        #[arg(long, env = "WEFT_LOG", default_value = "info")]
        log_level: tracing::Level,
        /// Runtime worker threads (default: one per core). `scripts/bench-control` runs the
        /// server on one core with `--workers 1`.
        #[arg(long, env = "WEFT_WORKERS", value_parser = clap::value_parser!(u16).range(1..))]
        workers: Option<u16>,
        #[command(flatten)]
        xds: crate::xds::XdsServeArgs,
        #[command(flatten)]
        store: crate::store_cmd::CompactionArgs,
        /// Boxed: the largest variant by far.
        #[command(flatten)]
        replica: Box<crate::replica::ReplicaArgs>,
    },
    /// Suggest a policy from observed traffic (the sidecars' telemetry).
    #[command(subcommand)]
    Suggest(SuggestCommand),
    /// Join tokens binding sidecars to service identities (needs `weft serve --ca`).
    #[command(subcommand)]
    Token(crate::identity::TokenCommand),
    /// A short-lived token: a request carrying it (header `x-weft-explain-token`) gets the
    /// service's sidecar decision trace in the response header `x-weft-explain`.
    ExplainToken(crate::explain::ExplainTokenArgs),
    /// CLI contexts (server, CA bundle, token file) in ~/.config/weft/config.yaml or WEFT_CONFIG.
    #[command(subcommand)]
    Config(crate::config::ConfigCommand),
    /// Operators of the REST API: create (token shown once), list, revoke, whoami.
    #[command(subcommand)]
    Operator(crate::operator::OperatorCommand),
    /// The audit log of every change attempted through the API (security-admin or admin).
    Audit(crate::operator::AuditArgs),
    /// The mesh CA: show roots, rotate the root.
    #[command(subcommand)]
    Ca(crate::identity::CaCommand),
    /// Replicas' etcd: `rekey` re-seals every sealed value with a new key-encryption key (no
    /// server needed).
    #[command(subcommand)]
    Etcd(crate::etcd_cmd::EtcdCommand),
    /// The policy log of a data directory: verify, repair, compact (no server needed).
    #[command(subcommand)]
    Store(crate::store_cmd::StoreCommand),
    /// Progressive delivery: watch and steer the Rollouts the control plane runs.
    #[command(subcommand)]
    Rollout(crate::rollout::RolloutCommand),
    /// Would this call be allowed, and what would happen to it? Every stage's decision
    /// (canary, fault, breaker, authz) from the compiled sidecar configurations; exit 7 when
    /// denied. `--matrix`: every caller × service.
    #[command(disable_version_flag = true)]
    Check(crate::check::CheckArgs),
    /// The filter modules' build chain: signing keys, signatures, advisories.
    #[command(subcommand)]
    Module(crate::module_cmd::ModuleCommand),
    /// Print the Envoy bootstrap of a sidecar (template: envoy-configs/bootstrap/sidecar.yaml).
    #[command(disable_version_flag = true)]
    Bootstrap(crate::bootstrap::BootstrapArgs),
}

/// `weft suggest ...`
#[derive(Debug, Subcommand)]
pub enum SuggestCommand {
    /// An AuthorizationPolicy (YAML) allowing exactly the callers, methods and paths the
    /// service received in the window; `--dry-run` to try it before enforcing.
    Authz(crate::telemetry::SuggestAuthzArgs),
}

#[cfg(test)]
mod tests {
    #[test]
    fn command_line_is_consistent() {
        <super::Cli as clap::CommandFactory>::command().debug_assert();
    }
}
