//! weft authz: decides every inbound request from its JSON configuration.
//!
//! The decision itself lives in `weft_filter_core::authz`; this crate reads the request
//! lazily from the host, counts the outcome and sends the deny reply.
#![forbid(unsafe_code)]

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use std::collections::HashMap;
use std::rc::Rc;
use weft_filter_core::authz::{Authz, Verdict};
use weft_proxy_glue::{self as glue, sanitize_stat_segment, Counter, HostRequest};

proxy_wasm::main! {{
    glue::init_logging();
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(AuthzRoot::default()) });
}}

/// Counters for one outcome, in total and per policy name.
struct Outcome {
    total: Counter,
    by_policy: HashMap<String, Counter>,
}

impl Outcome {
    fn new(outcome: &str, policies: &[String]) -> Self {
        let by_policy = policies
            .iter()
            .map(|p| {
                let name = format!("weft.authz.policy.{}.{outcome}", sanitize_stat_segment(p));
                (p.clone(), Counter::new(&name))
            })
            .collect();
        Self {
            total: Counter::new(&format!("weft.authz.{outcome}")),
            by_policy,
        }
    }

    fn count(&self, policy: Option<&str>) {
        self.total.inc();
        if let Some(counter) = policy.and_then(|p| self.by_policy.get(p)) {
            counter.inc();
        }
    }
}

struct Stats {
    allowed: Outcome,
    denied: Outcome,
    dry_run_denied: Outcome,
    audited: Outcome,
}

struct Shared {
    authz: Authz,
    stats: Stats,
}

#[derive(Default)]
struct AuthzRoot {
    shared: Option<Rc<Shared>>,
}

impl Context for AuthzRoot {}

impl RootContext for AuthzRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(authz) = glue::load_plugin_config("authz", Authz::from_json) else {
            return false;
        };
        let mut names: Vec<String> = authz
            .config()
            .policies
            .iter()
            .map(|p| p.name.clone())
            .collect();
        names.extend(authz.config().jwt.iter().map(|p| format!("jwt:{}", p.name)));
        names.push("default-deny".to_string());
        let stats = Stats {
            allowed: Outcome::new("allowed", &names),
            denied: Outcome::new("denied", &names),
            dry_run_denied: Outcome::new("dry_run_denied", &names),
            audited: Outcome::new("audited", &names),
        };
        log::info!(
            "weft-authz: configured with {} policies",
            authz.config().policies.len()
        );
        self.shared = Some(Rc::new(Shared { authz, stats }));
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let shared = self.shared.clone()?;
        Some(Box::new(AuthzHttp { shared }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct AuthzHttp {
    shared: Rc<Shared>,
}

impl Context for AuthzHttp {}

impl HttpContext for AuthzHttp {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let authz = &self.shared.authz;
        // Only JWT validation looks at the time: skip the host clock without providers.
        let now = if authz.needs_time() {
            glue::now_unix_secs()
        } else {
            0
        };
        let decision = authz.decide(&HostRequest, now);
        let stats = &self.shared.stats;
        for policy in &decision.dry_run_denied {
            stats.dry_run_denied.count(Some(policy));
        }
        for policy in &decision.audited {
            stats.audited.count(Some(policy));
        }
        match decision.verdict {
            Verdict::Allow { policy } => {
                stats.allowed.count(policy.as_deref());
                for (name, value) in &decision.request_headers {
                    match value {
                        Some(value) => HostRequest::set_header(name, value),
                        None => HostRequest::remove_header(name),
                    }
                }
                log::debug!("weft-authz: allow ({})", decision.reason);
                Action::Continue
            }
            Verdict::Deny {
                policy,
                status,
                body,
                headers,
            } => {
                stats.denied.count(Some(&policy));
                log::debug!(
                    "weft-authz: deny {status} by {policy} ({})",
                    decision.reason
                );
                glue::send_local_reply(status, &headers, &body);
                Action::Pause
            }
        }
    }
}
