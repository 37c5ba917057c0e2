//! Telemetry in `weft serve` and `weft suggest authz`.
//!
//! The server: every sidecar group gets two `weft.telemetry.{inbound,outbound}` filter
//! configurations carrying its group and its own HMAC key (served only to that group, in its
//! ECDS resources); batches come in on the xDS listener and the views are merged into the
//! REST API (see `weft-telemetry-plane`). Groups get no telemetry filter when the modules
//! directory has no `telemetry.wasm` (older artifact sets keep working).

use std::collections::BTreeMap;
use std::sync::Arc;

use weft_filter_core::registry::Filter;
use weft_filter_core::telemetry::{Direction, TelemetryConfig};
use weft_telemetry_plane::{KnownService, Suggestion, Telemetry, XdsView};
use weft_xds::{FilterSpec, MeshService, SidecarGroup, XdsState};

use crate::cli::Output;
use crate::client::{decode, Client, Failure};

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

/// Adds each group's telemetry filters (when the module is served) and tells the
/// telemetry state the declared services.
pub fn add_filters(
    state: &XdsState,
    telemetry: &Telemetry,
    filters: &mut BTreeMap<SidecarGroup, Vec<FilterSpec>>,
    services: &[MeshService],
) {
    set_services(telemetry, services);
    if state.module(Filter::Telemetry.module()).is_none() {
        return;
    }
    for (group, specs) in filters.iter_mut() {
        for direction in [Direction::Inbound, Direction::Outbound] {
            match filter_spec(telemetry, group, direction) {
                Ok(spec) => specs.push(spec),
                Err(error) => tracing::error!(%group, %error, "cannot serialise telemetry config"),
            }
        }
    }
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

/// The `weft.telemetry.<direction>` entry of one group.
pub fn filter_spec(
    telemetry: &Telemetry,
    group: &SidecarGroup,
    direction: Direction,
) -> serde_json::Result<FilterSpec> {
    Ok(FilterSpec {
        name: format!("{}.{}", Filter::Telemetry.name(), direction.as_str()),
        module: Filter::Telemetry.module().into(),
        configuration: serde_json::to_string(&config(telemetry, group, direction))?,
        // Telemetry never stands in a request's way (the registry says open).
        failure: Filter::Telemetry.failure().into(),
    })
}

/// The telemetry configuration of one group and direction, carrying the group's own key
/// (a separate `weft.telemetry.<direction>` filter, or the suite's `telemetry` section).
pub fn config(
    telemetry: &Telemetry,
    group: &SidecarGroup,
    direction: Direction,
) -> TelemetryConfig {
    TelemetryConfig {
        direction,
        namespace: group.namespace.clone(),
        service: group.service.clone(),
        version: group.version.clone(),
        key: telemetry
            .keys()
            .key_hex(&group.namespace, &group.service, &group.version),
        ..TelemetryConfig::default()
    }
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
