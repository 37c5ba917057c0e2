//! Authorization decisions: `Authz::decide(&request, now) -> Decision`.
//! (Just over 400 lines: the precedence, the shadow decision and the replies they choose read as one.)
//!
//! Precedence (as in Istio): any matching enforced DENY denies; otherwise, if any enforced
//! ALLOW policy exists the request must match one of them; AUDIT never changes the outcome.
//! Dry-run policies are evaluated the same way in a shadow decision and reported as
//! "would deny" without being enforced.
//!
//! JWT validation runs first: a token that fails its provider, or a missing token for a
//! `required` provider, is a 401 before any policy is looked at. A valid token's claims
//! are what `claims` conditions see.

mod compile;
pub(crate) use compile::header_name;
pub mod config;
mod explain;
pub use explain::authz_trace;
mod jwt;
pub mod path;
mod rules;

#[cfg(test)]
mod tests;

pub use config::*;
pub use explain::{Explanation, PolicyTrace};
pub use jwt::JwtError;
pub use rules::Mismatch;

use crate::{ConfigError, RequestAttributes};
use jwt::Provider;
use rules::{CompiledPolicy, RequestView};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// What [`Authz::prepare`] hands the policies: the normalized path and the token's claims.
type Prepared<'p> = (Option<Cow<'p, str>>, Option<Map<String, Value>>);

/// Policy name reported when enforced ALLOW policies exist and none matched.
pub const DEFAULT_DENY_POLICY: &str = "default-deny";
/// Policy name reported for a request path authz refuses to decide on (400).
pub const INVALID_PATH_POLICY: &str = "invalid-path";
/// Policy name reported when the configuration has neither policies, JWT providers nor
/// `allow_all` (fail closed).
pub const NO_CONFIGURATION_POLICY: &str = "no-configuration";

/// A validated, pre-compiled authz configuration. Built once in `on_configure`.
#[derive(Debug, Clone)]
pub struct Authz {
    config: AuthzConfig,
    policies: Vec<CompiledPolicy>,
    providers: Vec<Provider>,
    /// `spiffe://<trust_domain>/ns/`, what `namespaces` patterns look behind.
    namespace_prefix: String,
    /// The enforced ALLOW policies' names, `a, b`, for a default deny's reason.
    allow_present: Arc<str>,
    explain: Option<crate::explain::Explain>,
}

/// What the filter must do with the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Let it through. `policy` names the ALLOW policy that matched, if any.
    Allow { policy: Option<String> },
    /// Send a local reply. `policy` names the denying policy (for stats and logs):
    /// a policy name, [`DEFAULT_DENY_POLICY`], or `jwt:<provider>` for a 401.
    Deny {
        policy: String,
        status: u16,
        body: String,
        headers: Vec<(String, String)>,
    },
}

/// The full outcome of one evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    /// Dry-run policies that would have denied this request (only when it is allowed).
    pub dry_run_denied: Vec<String>,
    /// AUDIT policies that matched.
    pub audited: Vec<String>,
    /// Why, for the debug log: policy and rule index that decided. Formatted (`Display`)
    /// only when it is logged.
    pub reason: Reason,
    /// Request header changes to make when the request is allowed: every configured claim
    /// header, set to the claim's value (`Some`) or removed (`None`).
    pub request_headers: Vec<(String, Option<String>)>,
}

/// What decided a request, kept unformatted so the request path allocates nothing for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Rule `rule` of the enforced DENY policy `policy` matched.
    DenyMatched { policy: Arc<str>, rule: usize },
    /// Rule `rule` of the enforced ALLOW policy `policy` matched.
    AllowMatched { policy: Arc<str>, rule: usize },
    /// No enforced ALLOW or DENY policy exists.
    NoEnforcedPolicy,
    /// Enforced ALLOW policies exist and none matched; `present` lists them (`a, b`),
    /// joined once at configuration time.
    NoAllowMatched { present: Arc<str> },
    /// A JWT provider refused the request.
    Jwt { provider: String, why: String },
    /// The request path cannot be normalized or has refused `;` parameters.
    InvalidPath(path::PathError),
    /// No policies, no JWT providers and no `allow_all`: fail closed.
    NoConfiguration,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DenyMatched { policy, rule } => {
                write!(f, "DENY policy {:?} rule {rule} matched", &**policy)
            }
            Self::AllowMatched { policy, rule } => {
                write!(f, "ALLOW policy {:?} rule {rule} matched", &**policy)
            }
            Self::NoEnforcedPolicy => f.write_str("no enforced ALLOW or DENY policy applies"),
            Self::NoAllowMatched { present } => {
                write!(
                    f,
                    "no ALLOW policy matched; ALLOW policies present: {present}"
                )
            }
            Self::Jwt { provider, why } => write!(f, "jwt provider {provider:?}: {why}"),
            Self::InvalidPath(e) => write!(f, "invalid path: {e}"),
            Self::NoConfiguration => f.write_str("no authorization configuration"),
        }
    }
}

/// The authz stage's line of a trace: verdict, deciding policy and rule, dry-run denials
/// and audits, e.g. `shop/ratings inbound authz=allow by readers (ALLOW policy "readers"
/// rule 0 matched)`.
pub fn trace(explain: &crate::explain::Explain, decision: &Decision) -> String {
    let verdict = match &decision.verdict {
        Verdict::Allow { policy } => format!("allow by {}", policy.as_deref().unwrap_or("-")),
        Verdict::Deny { policy, status, .. } => format!("{status} by {policy}"),
    };
    let mut line = format!(
        "{} inbound authz={verdict} ({})",
        explain.service(),
        decision.reason
    );
    if !decision.dry_run_denied.is_empty() {
        line.push_str(&format!(
            "; dry-run denied by {}",
            decision.dry_run_denied.join(", ")
        ));
    }
    if !decision.audited.is_empty() {
        line.push_str(&format!("; audited by {}", decision.audited.join(", ")));
    }
    crate::explain::header_value(&line)
}

// === impl Authz ===

impl Authz {
    /// Parses and validates. A serde error names the field path serde was in, e.g.
    /// `policies[0].rules[1].methodz`, and keeps serde's message with line and column.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        Self::new(crate::error::parse_json::<AuthzConfig>(bytes)?)
    }

    pub fn new(config: AuthzConfig) -> Result<Self, ConfigError> {
        compile::trust_domain(&config.trust_domain)?;
        if config.allow_all && !config.policies.is_empty() {
            return Err(ConfigError::new(
                "allow_all",
                "must not be set together with policies (it is the no-policy default)",
            ));
        }
        let policies = compile::policies(&config)?;
        compile::unique_names("jwt", config.jwt.iter().map(|p| p.name.as_str()))?;
        compile::claim_headers(&config.claim_headers)?;
        let providers = config
            .jwt
            .iter()
            .enumerate()
            .map(|(i, p)| Provider::compile(&format!("jwt[{i}]"), p))
            .collect::<Result<_, _>>()?;
        let allow_present: Vec<&str> = policies
            .iter()
            .filter(|p| p.action == Action::Allow && !p.dry_run)
            .map(|p| &*p.name)
            .collect();
        let explain = config
            .explain
            .as_ref()
            .map(|e| crate::explain::Explain::new("explain", e))
            .transpose()?;
        Ok(Self {
            explain,
            allow_present: Arc::from(allow_present.join(", ")),
            namespace_prefix: format!("spiffe://{}/ns/", config.trust_domain),
            config,
            policies,
            providers,
        })
    }

    pub fn config(&self) -> &AuthzConfig {
        &self.config
    }

    /// The explain-token checker, when the configuration has one.
    pub fn explain_token(&self) -> Option<&crate::explain::Explain> {
        self.explain.as_ref()
    }

    /// Decide one request. `now_unix_secs` is used for JWT `exp`/`nbf`.
    pub fn decide(&self, req: &dyn RequestAttributes, now_unix_secs: u64) -> Decision {
        if self.policies.is_empty() && self.providers.is_empty() && !self.config.allow_all {
            return local_deny(
                NO_CONFIGURATION_POLICY,
                403,
                "access denied: no authorization configuration\n".into(),
                Reason::NoConfiguration,
            );
        }
        let raw_path = req.path();
        let (path, claims) = match self.prepare(req, raw_path.as_deref(), now_unix_secs) {
            Ok(prepared) => prepared,
            Err(denied) => return *denied,
        };
        let view = RequestView::new(
            req,
            claims.as_ref(),
            path.as_deref(),
            &self.namespace_prefix,
        );
        let matched: Vec<Option<usize>> =
            self.policies.iter().map(|p| p.first_match(&view)).collect();
        let hits = || self.policies.iter().zip(matched.iter().copied());
        let audited = hits()
            .filter(|(p, m)| p.action == Action::Audit && m.is_some())
            .map(|(p, _)| String::from(&*p.name))
            .collect();
        let (verdict, reason) = self.enforce(&matched);
        let (dry_run_denied, request_headers) = match verdict {
            Verdict::Allow { .. } => (self.shadow(&matched), self.claim_headers(claims.as_ref())),
            Verdict::Deny { .. } => (Vec::new(), Vec::new()),
        };
        Decision {
            verdict,
            dry_run_denied,
            audited,
            reason,
            request_headers,
        }
    }

    /// The normalized path and the validated token's claims, or the local reply that
    /// decides before any policy (an invalid path, a refused token).
    fn prepare<'p>(
        &self,
        req: &dyn RequestAttributes,
        raw_path: Option<&'p str>,
        now_unix_secs: u64,
    ) -> Result<Prepared<'p>, Box<Decision>> {
        // Matched on the path the app will act on; a path that has none is refused.
        let path = raw_path
            .map(|p| path::normalize(p, self.config.path_parameters))
            .transpose()
            .map_err(|e| {
                Box::new(local_deny(
                    INVALID_PATH_POLICY,
                    400,
                    format!("bad request: {e}\n"),
                    Reason::InvalidPath(e),
                ))
            })?;
        let claims = self.authenticate(req, now_unix_secs)?;
        Ok((path, claims))
    }

    /// Every configured claim header, with the validated claim's value or removed.
    fn claim_headers(&self, claims: Option<&Map<String, Value>>) -> Vec<(String, Option<String>)> {
        self.config
            .claim_headers
            .iter()
            .map(|c| {
                let value = claims
                    .and_then(|m| {
                        let mut parts = c.claim.split('.');
                        let first = m.get(parts.next()?)?;
                        parts.try_fold(first, |v, k| v.as_object()?.get(k))
                    })
                    .and_then(|v| match v {
                        Value::String(s) => Some(s.clone()),
                        Value::Number(_) | Value::Bool(_) => Some(v.to_string()),
                        _ => None,
                    });
                (c.header.clone(), value)
            })
            .collect()
    }

    /// Whether [`decide`](Self::decide) looks at the time (only JWT validation does), so a
    /// filter without JWT providers can skip reading the host clock.
    pub fn needs_time(&self) -> bool {
        !self.providers.is_empty()
    }

    fn enforce(&self, matched: &[Option<usize>]) -> (Verdict, Reason) {
        let enforced = |action| {
            self.policies
                .iter()
                .zip(matched.iter().copied())
                .filter(move |(p, _)| p.action == action && !p.dry_run)
        };
        if let Some((p, Some(rule))) = enforced(Action::Deny).find(|(_, m)| m.is_some()) {
            let reason = Reason::DenyMatched {
                policy: Arc::clone(&p.name),
                rule,
            };
            return (deny(p), reason);
        }
        let mut allows = enforced(Action::Allow).peekable();
        let Some((first, _)) = allows.peek().copied() else {
            return (Verdict::Allow { policy: None }, Reason::NoEnforcedPolicy);
        };
        if let Some((p, Some(rule))) = allows.find(|(_, m)| m.is_some()) {
            let reason = Reason::AllowMatched {
                policy: Arc::clone(&p.name),
                rule,
            };
            return (
                Verdict::Allow {
                    policy: Some(String::from(&*p.name)),
                },
                reason,
            );
        }
        let reply = first.deny.as_ref();
        let verdict = Verdict::Deny {
            policy: DEFAULT_DENY_POLICY.to_string(),
            status: reply.map_or(403, |r| r.status),
            body: reply
                .and_then(|r| r.body.clone())
                .unwrap_or_else(|| "access denied: no ALLOW policy matched\n".to_string()),
            headers: reply.map(|r| r.headers.clone()).unwrap_or_default(),
        };
        let reason = Reason::NoAllowMatched {
            present: Arc::clone(&self.allow_present),
        };
        (verdict, reason)
    }

    /// Dry-run policies that would have denied an allowed request, with the dry-run
    /// policies treated as enforced alongside the enforced ones.
    fn shadow(&self, matched: &[Option<usize>]) -> Vec<String> {
        let hits = || self.policies.iter().zip(matched.iter().copied());
        let mut out: Vec<String> = hits()
            .filter(|(p, m)| p.dry_run && p.action == Action::Deny && m.is_some())
            .map(|(p, _)| String::from(&*p.name))
            .collect();
        let mut allows = hits().filter(|(p, _)| p.action == Action::Allow);
        let dry_allows = hits().any(|(p, _)| p.dry_run && p.action == Action::Allow);
        if dry_allows && !allows.any(|(_, m)| m.is_some()) {
            out.extend(
                hits()
                    .filter(|(p, _)| p.dry_run && p.action == Action::Allow)
                    .map(|(p, _)| String::from(&*p.name)),
            );
        }
        out
    }

    /// Validates the tokens present; the claims of the first valid one, or a 401.
    fn authenticate(
        &self,
        req: &dyn RequestAttributes,
        now: u64,
    ) -> Result<Option<Map<String, Value>>, Box<Decision>> {
        if self.providers.is_empty() {
            return Ok(None);
        }
        let mut headers: Vec<(&str, Option<String>)> = Vec::new();
        for p in &self.providers {
            if !headers.iter().any(|(h, _)| *h == p.header) {
                let mut values = req.header_values(&p.header);
                // Two credentials in one request: which one would the app trust? Neither.
                if values.len() > 1 {
                    return Err(unauthorized(
                        p,
                        "jwt verification failed: the token header is repeated\n",
                        r#"Bearer realm="weft", error="invalid_request""#,
                        format!("header {} sent {} times", p.header, values.len()),
                    ));
                }
                headers.push((&p.header, values.pop()));
            }
        }
        let token_of = |p: &Provider| -> Option<&str> {
            let value = headers.iter().find(|(h, _)| *h == p.header)?.1.as_deref()?;
            p.extract(value)
        };
        let mut claims = None;
        for p in &self.providers {
            let Some(token) = token_of(p) else {
                if p.required {
                    return Err(unauthorized(
                        p,
                        "jwt is missing\n",
                        r#"Bearer realm="weft""#,
                        "token missing".into(),
                    ));
                }
                continue;
            };
            // Providers reading the same header share its token: it belongs to the one
            // naming its issuer (else to the first), the others leave it alone.
            let mut sharers = self.providers.iter().filter(|q| token_of(q) == Some(token));
            if sharers.clone().nth(1).is_some() {
                let iss = jwt::peek_issuer(token);
                let owner = sharers
                    .clone()
                    .find(|q| iss.as_deref() == Some(q.issuer.as_str()))
                    .or(sharers.next());
                if !owner.is_some_and(|o| std::ptr::eq(o, p)) {
                    continue;
                }
            }
            match p.validate(token, now) {
                Ok(c) => {
                    claims.get_or_insert(c);
                }
                Err(e) => {
                    let header = r#"Bearer realm="weft", error="invalid_token""#;
                    return Err(unauthorized(
                        p,
                        "jwt verification failed\n",
                        header,
                        e.to_string(),
                    ));
                }
            }
        }
        Ok(claims)
    }
}

fn deny(p: &CompiledPolicy) -> Verdict {
    let reply = p.deny.as_ref();
    Verdict::Deny {
        policy: String::from(&*p.name),
        status: reply.map_or(403, |r| r.status),
        body: reply
            .and_then(|r| r.body.clone())
            .unwrap_or_else(|| format!("access denied by weft policy {:?}\n", p.name)),
        headers: reply.map(|r| r.headers.clone()).unwrap_or_default(),
    }
}

/// A local reply decided before any policy: no configuration, or an invalid path.
fn local_deny(policy: &str, status: u16, body: String, reason: Reason) -> Decision {
    Decision {
        verdict: Verdict::Deny {
            policy: policy.to_string(),
            status,
            body,
            headers: Vec::new(),
        },
        dry_run_denied: Vec::new(),
        audited: Vec::new(),
        reason,
        request_headers: Vec::new(),
    }
}

fn unauthorized(p: &Provider, body: &str, challenge: &str, why: String) -> Box<Decision> {
    Box::new(Decision {
        verdict: Verdict::Deny {
            policy: format!("jwt:{}", p.name),
            status: 401,
            body: body.to_string(),
            headers: vec![("www-authenticate".to_string(), challenge.to_string())],
        },
        dry_run_denied: Vec::new(),
        audited: Vec::new(),
        reason: Reason::Jwt {
            provider: p.name.clone(),
            why,
        },
        request_headers: Vec::new(),
    })
}
