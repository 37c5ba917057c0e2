//! Telemetry in `weft serve` and `weft suggest authz`.
//!
//! The server: every sidecar group gets two `weft.telemetry.{inbound,outbound}` filter
//! configurations carrying its group and its own HMAC key (made by `weft-translate`, served
//! only to that group, in its ECDS resources); batches come in on the xDS listener and the
//! views are merged into the REST API (see `weft-telemetry-plane`).

use std::sync::Arc;

use weft_telemetry_plane::{KnownService, Suggestion, Telemetry, XdsView};
use weft_xds::{MeshService, XdsState};

use crate::client::{decode, Client, Failure};
use crate::output::Output;

/// Lets the telemetry views show the xDS server's metrics and sidecars.
pub fn attach(state: &Arc<XdsState>, telemetry: &Telemetry) {
    let metrics_state = Arc::clone(state);
    let sidecars_state = Arc::clone(state);
    telemetry.set_xds_view(XdsView {
        metrics: Arc::new(move || metrics_state.metrics().render(&metrics_state.sidecars())),
        sidecars: Arc::new(move || {
            serde_json::json!({
                "revision": sidecars_state.revision(),
                "sidecars": sidecars_state.sidecars(),
            })
        }),
    });
}

/// Tells the telemetry state the declared services (to map callers and stable versions).
pub fn set_services(telemetry: &Telemetry, services: &[MeshService]) {
    telemetry.set_services(
        services
            .iter()
            .map(|s| KnownService {
                namespace: s.namespace.clone(),
                name: s.name.clone(),
                host: s.host.clone(),
                stable: s.stable_version.clone(),
            })
            .collect(),
    );
}

/// `weft suggest authz` options.
#[derive(Debug, Clone, clap::Args)]
pub struct SuggestAuthzArgs {
    /// The service to protect.
    #[arg(long)]
    pub service: String,
    #[arg(long, short = 'n', default_value = "default")]
    pub namespace: String,
    /// How far back to look: 30s, 5m, 1h (at most 1h).
    #[arg(long, default_value = "5m")]
    pub window: String,
    /// Emit the policy with `dryRun: true` (apply it so, watch what it would deny, then
    /// enforce).
    #[arg(long)]
    pub dry_run: bool,
}

/// Prints the suggested policy (YAML; `-o json`: the whole suggestion).
pub fn suggest_authz(
    client: &Client,
    args: &SuggestAuthzArgs,
    format: Output,
) -> Result<(), Failure> {
    let path = format!(
        "/api/v1/suggest/authz?service={}&namespace={}&window={}&dryRun={}",
        args.service, args.namespace, args.window, args.dry_run
    );
    let body = client.get(&path)?;
    match format {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&body).unwrap_or_default()
        ),
        _ => {
            let suggestion: Suggestion = decode(&body)?;
            print!("{}", suggestion.yaml);
        }
    }
    Ok(())
}
