//! `AuthorizationPolicy` + `RequestAuthentication` -> the authz filter's configuration of one
//! sidecar (inbound: the documents targeting its own service and version).

use crate::{Errors, SidecarId};
use weft_filter_core::authz::{
    default_clock_skew, default_jwt_header, default_jwt_prefix, default_trust_domain, Action,
    AuthzConfig, ClaimToHeader, DenyResponse, JwtKeys, JwtProvider, PathParameters, Policy, Rule,
};
use weft_policy::model::{
    AuthorizationPolicySpec, AuthzAction, AuthzRule, DenyResponseSpec, Document, JwtRule,
    PathParametersSpec, RequestAuthenticationSpec, ServiceSpec, Spec, TargetRef,
};
use weft_policy::units::parse_duration;
use weft_policy::validate::authz_rule;
use weft_policy::PolicySet;

/// Does `doc` (targeting `t`) apply to sidecar `id`?
fn applies(doc: &Document, t: &TargetRef, id: &SidecarId) -> bool {
    doc.namespace() == id.namespace
        && t.service == id.service
        && t.versions.as_ref().is_none_or(|v| v.contains(&id.version))
}

/// `service` is the sidecar's own `Service` spec: it says how the app reads `;` parameters.
pub(crate) fn compile(
    set: &PolicySet,
    id: &SidecarId,
    service: &ServiceSpec,
    errors: &mut Errors,
) -> AuthzConfig {
    let mut config = AuthzConfig {
        trust_domain: default_trust_domain(),
        path_parameters: match service.path_parameters.unwrap_or_default() {
            PathParametersSpec::Reject => PathParameters::Reject,
            PathParametersSpec::Strip => PathParameters::Strip,
        },
        ..AuthzConfig::default()
    };
    for doc in set.iter() {
        match &doc.spec {
            Spec::AuthorizationPolicy(s) if applies(doc, &s.target, id) => {
                config.policies.push(policy(doc, s, errors))
            }
            Spec::RequestAuthentication(s) if applies(doc, &s.target, id) => {
                config.jwt.extend(providers(doc, s, errors));
                for out in s.jwt_rules.iter().flat_map(|r| &r.output_claim_to_headers) {
                    let header = out.header.to_ascii_lowercase();
                    if !config.claim_headers.iter().any(|c| c.header == header) {
                        config.claim_headers.push(ClaimToHeader {
                            claim: out.claim.clone(),
                            header,
                        });
                    }
                }
            }
            _ => {}
        }
    }
    // No AuthorizationPolicy: Istio's "no policy = allow", said explicitly, since the filter
    // denies a configuration that says nothing.
    config.allow_all = config.policies.is_empty();
    config
}

fn policy(doc: &Document, s: &AuthorizationPolicySpec, errors: &mut Errors) -> Policy {
    // Exhaustive on purpose: a new document field must be mapped (or ignored here, by name).
    let AuthorizationPolicySpec {
        target: _,
        action,
        dry_run,
        rules,
        deny_response,
        ignore_path_case,
    } = s;
    Policy {
        name: doc.metadata.name.clone(),
        action: match action {
            AuthzAction::Allow => Action::Allow,
            AuthzAction::Deny => Action::Deny,
            AuthzAction::Audit => Action::Audit,
        },
        dry_run: *dry_run,
        rules: rules
            .iter()
            .enumerate()
            .map(|(i, r)| rule(doc, &format!("spec.rules[{i}]"), r, errors))
            .collect(),
        ignore_path_case: *ignore_path_case,
        deny_response: deny_response.as_ref().map(|d| {
            let DenyResponseSpec {
                status,
                body,
                headers,
            } = d;
            DenyResponse {
                status: status.unwrap_or(403),
                body: body.clone(),
                headers: headers.clone(),
            }
        }),
    }
}

/// The mapping itself is `weft_policy::validate::authz_rule`, shared with validation.
fn rule(doc: &Document, at: &str, r: &AuthzRule, errors: &mut Errors) -> Rule {
    authz_rule(at, r, &mut |field, reason| errors.push(doc, field, reason))
}

fn providers(
    doc: &Document,
    s: &RequestAuthenticationSpec,
    errors: &mut Errors,
) -> Vec<JwtProvider> {
    let RequestAuthenticationSpec {
        target: _,
        jwt_rules,
    } = s;
    jwt_rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let JwtRule {
                issuer,
                audiences,
                from_header,
                required,
                require_expiration,
                clock_skew,
                jwks,
                hs256_secrets,
                // Compiled into the configuration's `claim_headers`, see `compile`.
                output_claim_to_headers: _,
            } = r;
            let clock_skew_seconds = match clock_skew.as_deref().map(parse_duration) {
                None => default_clock_skew(),
                Some(Ok(ms)) => ms / 1000,
                Some(Err(e)) => {
                    errors.push(doc, format!("spec.jwtRules[{i}].clockSkew"), e);
                    default_clock_skew()
                }
            };
            JwtProvider {
                name: if jwt_rules.len() == 1 {
                    doc.metadata.name.clone()
                } else {
                    format!("{}/{i}", doc.metadata.name)
                },
                issuer: issuer.clone(),
                audiences: audiences.clone(),
                from_header: from_header
                    .as_ref()
                    .map_or_else(default_jwt_header, |h| h.name.to_ascii_lowercase()),
                prefix: from_header
                    .as_ref()
                    .and_then(|h| h.prefix.clone())
                    .unwrap_or_else(default_jwt_prefix),
                required: *required,
                require_exp: require_expiration.unwrap_or(true),
                clock_skew_seconds,
                keys: JwtKeys {
                    hs256_secrets: hs256_secrets.clone(),
                    jwks: jwks.clone(),
                },
            }
        })
        .collect()
}
