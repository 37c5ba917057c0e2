//! Least-privilege suggestions: from what a service's sidecars saw, an `AuthorizationPolicy`
//! that allows exactly that — one rule per caller (its SPIFFE id), with the methods and
//! paths it used.
//!
//! Callers an enforced policy denied when they were last seen (every request of their newest
//! 5 s bucket denied) are left out: they are not allowed today, and the suggestion never
//! widens access. So are callers without an mTLS identity (a principal rule cannot name
//! them). Both are listed in the YAML's comments.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::json;
use weft_filter_core::telemetry::Direction;

use crate::{now_ms, EdgeKey, Telemetry};

/// One caller the suggestion allows.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SuggestedCaller {
    pub principal: String,
    pub requests: u64,
    pub methods: Vec<String>,
    /// Empty: any path (more paths were seen than the filters keep).
    pub paths: Vec<String>,
}

/// `GET /api/v1/suggest/authz` (served by this crate, read by `weft suggest authz`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Suggestion {
    pub namespace: String,
    pub service: String,
    pub window_secs: u64,
    pub callers: Vec<SuggestedCaller>,
    /// Callers left out, with the reason.
    pub excluded: Vec<(String, String)>,
    /// The policy document, YAML (weft's policy format).
    pub yaml: String,
}

/// The suggestion for `service` (all its versions) over the last `window_secs`.
pub fn suggest_authz(
    telemetry: &Telemetry,
    namespace: &str,
    service: &str,
    window_secs: u64,
    dry_run: bool,
) -> Suggestion {
    suggest_at(
        telemetry,
        namespace,
        service,
        window_secs,
        dry_run,
        now_ms(),
    )
}

/// The callee's own report of a request to `namespace/service` (`b/reviews` is another service).
fn is_inbound_to(key: &EdgeKey, namespace: &str, service: &str) -> bool {
    key.reporter == Direction::Inbound && key.namespace == namespace && key.destination == service
}

#[derive(Default)]
struct Seen {
    requests: u64,
    allowed: u64,
    routes: BTreeSet<(String, String)>,
    truncated: bool,
    /// The newest bucket it was seen in: (index, requests, denied).
    latest: (u64, u64, u64),
}

pub fn suggest_at(
    telemetry: &Telemetry,
    namespace: &str,
    service: &str,
    window_secs: u64,
    dry_run: bool,
    now_ms: u64,
) -> Suggestion {
    let mut seen: BTreeMap<String, Seen> = BTreeMap::new();
    for (key, window, _) in telemetry.edges_at(window_secs, now_ms) {
        if !is_inbound_to(&key, namespace, service) || window.requests == 0 {
            continue;
        }
        let caller = seen.entry(key.source.clone()).or_default();
        caller.requests += window.requests;
        caller.allowed += window.requests - window.denied;
        caller.routes.extend(window.routes.keys().cloned());
        caller.truncated |= window.routes_truncated;
    }
    let mut callers = Vec::new();
    let mut excluded = Vec::new();
    for (key, slot, latest) in telemetry.latest_at(window_secs, now_ms) {
        let Some(caller) = seen.get_mut(&key.source) else {
            continue;
        };
        if !is_inbound_to(&key, namespace, service) {
            continue;
        }
        match slot.cmp(&caller.latest.0) {
            std::cmp::Ordering::Greater => caller.latest = (slot, latest.requests, latest.denied),
            std::cmp::Ordering::Equal => {
                caller.latest.1 += latest.requests;
                caller.latest.2 += latest.denied;
            }
            std::cmp::Ordering::Less => {}
        }
    }
    for (principal, caller) in seen {
        if principal.is_empty() {
            excluded.push((
                "(no mTLS identity)".to_string(),
                format!(
                    "{} request(s) without a client certificate",
                    caller.requests
                ),
            ));
            continue;
        }
        let (_, last_requests, last_denied) = caller.latest;
        if caller.allowed == 0 || (last_requests > 0 && last_denied == last_requests) {
            excluded.push((
                principal,
                format!(
                    "denied by an enforced policy when last seen ({} of {} request(s) denied in the window)",
                    caller.requests - caller.allowed,
                    caller.requests
                ),
            ));
            continue;
        }
        let methods: BTreeSet<String> = caller
            .routes
            .iter()
            .map(|(m, _)| m.clone())
            .filter(|m| !m.is_empty())
            .collect();
        let paths: BTreeSet<String> = caller
            .routes
            .iter()
            .map(|(_, p)| p.clone())
            .filter(|p| p.starts_with('/'))
            .collect();
        callers.push(SuggestedCaller {
            principal,
            requests: caller.allowed,
            methods: methods.into_iter().collect(),
            paths: if caller.truncated {
                Vec::new()
            } else {
                paths.into_iter().collect()
            },
        });
    }
    let yaml = render_yaml(
        namespace,
        service,
        window_secs,
        dry_run,
        &callers,
        &excluded,
    );
    Suggestion {
        namespace: namespace.to_string(),
        service: service.to_string(),
        window_secs,
        callers,
        excluded,
        yaml,
    }
}

fn render_yaml(
    namespace: &str,
    service: &str,
    window_secs: u64,
    dry_run: bool,
    callers: &[SuggestedCaller],
    excluded: &[(String, String)],
) -> String {
    let mut head = format!(
        "# Suggested by weft from the requests {service} received in the last {window_secs}s:\n\
         # it allows exactly the callers, methods and paths seen.\n"
    );
    for caller in callers {
        head.push_str(&format!(
            "#   allowed: {} ({} request(s))\n",
            caller.principal, caller.requests
        ));
    }
    for (who, why) in excluded {
        head.push_str(&format!("#   left out: {who}: {why}\n"));
    }
    if callers.is_empty() {
        head.push_str(
            "# No caller was seen: with no rule, this ALLOW policy lets nothing through.\n",
        );
    }
    if dry_run {
        head.push_str("# dryRun: true: apply it first to see what it would deny (weft.authz.dry_run_denied,\n# the graph's dry-run-denied counts), then set dryRun: false.\n");
    }
    let rules: Vec<serde_json::Value> = callers
        .iter()
        .map(|caller| {
            let mut to = serde_json::Map::new();
            if !caller.methods.is_empty() {
                to.insert("methods".into(), json!(caller.methods));
            }
            if !caller.paths.is_empty() {
                to.insert("paths".into(), json!(caller.paths));
            }
            let mut rule = json!({"from": {"principals": [caller.principal]}});
            if !to.is_empty() {
                rule["to"] = serde_json::Value::Object(to);
            }
            rule
        })
        .collect();
    let mut spec = json!({
        "target": {"service": service},
        "action": "ALLOW",
        "rules": rules,
    });
    if dry_run {
        spec["dryRun"] = json!(true);
    }
    let doc = json!({
        "apiVersion": "weft.dev/v1alpha1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": format!("{service}-observed"), "namespace": namespace},
        "spec": spec,
    });
    let body = serde_norway::to_string(&doc).unwrap_or_default();
    format!("{head}{body}")
}
