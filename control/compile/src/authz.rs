//! `AuthorizationPolicy` + `RequestAuthentication` -> the authz filter's configuration of one
//! sidecar (inbound: the documents targeting its own service and version).

use crate::SidecarId;
use weft_filter_core::authz::{
    default_clock_skew, default_jwt_header, default_jwt_prefix, default_trust_domain, Action,
    AuthzConfig, ClaimCondition, ClaimToHeader, DenyResponse, HeaderCondition, JwtKeys,
    JwtProvider, PathParameters, Policy, Rule,
};
use weft_policy::model::{
    AuthorizationPolicySpec, AuthzAction, AuthzRule, Document, PathParametersSpec,
    RequestAuthenticationSpec, ServiceSpec, Spec, TargetRef,
};
use weft_policy::validate::{parse_condition_key, ConditionKey};
use weft_policy::PolicySet;

/// Does `doc` (targeting `t`) apply to sidecar `id`?
fn applies(doc: &Document, t: &TargetRef, id: &SidecarId) -> bool {
    doc.namespace() == id.namespace
        && t.service == id.service
        && t.versions.as_ref().is_none_or(|v| v.contains(&id.version))
}

/// `service` is the sidecar's own `Service` spec: it says how the app reads `;` parameters.
pub(crate) fn compile(set: &PolicySet, id: &SidecarId, service: &ServiceSpec) -> AuthzConfig {
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
                config.policies.push(policy(doc, s))
            }
            Spec::RequestAuthentication(s) if applies(doc, &s.target, id) => {
                config.jwt.extend(providers(doc, s));
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

fn policy(doc: &Document, s: &AuthorizationPolicySpec) -> Policy {
    Policy {
        name: doc.metadata.name.clone(),
        action: match s.action {
            AuthzAction::Allow => Action::Allow,
            AuthzAction::Deny => Action::Deny,
            AuthzAction::Audit => Action::Audit,
        },
        dry_run: s.dry_run,
        rules: s.rules.iter().map(rule).collect(),
        ignore_path_case: s.ignore_path_case,
        deny_response: s.deny_response.as_ref().map(|d| DenyResponse {
            status: d.status.unwrap_or(403),
            body: d.body.clone(),
            headers: d.headers.clone(),
        }),
    }
}

fn rule(r: &AuthzRule) -> Rule {
    let from = r.from.clone().unwrap_or_default();
    let to = r.to.clone().unwrap_or_default();
    let mut headers = Vec::new();
    let mut claims = Vec::new();
    for cond in &r.when {
        let (values, not) = match (&cond.values, &cond.not_values) {
            (Some(v), _) => (v.clone(), false),
            (None, Some(v)) => (v.clone(), true),
            (None, None) => continue,
        };
        match parse_condition_key(&cond.key) {
            Ok(ConditionKey::Header(name)) => headers.push(HeaderCondition {
                name,
                values: Some(values),
                not,
            }),
            Ok(ConditionKey::Claim(name)) => claims.push(ClaimCondition { name, values, not }),
            Err(_) => {}
        }
    }
    Rule {
        principals: from.principals,
        not_principals: from.not_principals,
        namespaces: from.namespaces,
        not_namespaces: from.not_namespaces,
        methods: to.methods,
        not_methods: to.not_methods,
        paths: to.paths,
        not_paths: to.not_paths,
        ip_blocks: from.ip_blocks,
        not_ip_blocks: from.not_ip_blocks,
        remote_ip_blocks: from.remote_ip_blocks,
        not_remote_ip_blocks: from.not_remote_ip_blocks,
        headers,
        claims,
    }
}

fn providers<'a>(
    doc: &'a Document,
    s: &'a RequestAuthenticationSpec,
) -> impl Iterator<Item = JwtProvider> + 'a {
    s.jwt_rules
        .iter()
        .enumerate()
        .map(move |(i, r)| JwtProvider {
            name: if s.jwt_rules.len() == 1 {
                doc.metadata.name.clone()
            } else {
                format!("{}/{i}", doc.metadata.name)
            },
            issuer: r.issuer.clone(),
            audiences: r.audiences.clone(),
            from_header: r
                .from_header
                .as_ref()
                .map_or_else(default_jwt_header, |h| h.name.to_ascii_lowercase()),
            prefix: r
                .from_header
                .as_ref()
                .and_then(|h| h.prefix.clone())
                .unwrap_or_else(default_jwt_prefix),
            required: r.required,
            require_exp: r.require_expiration.unwrap_or(true),
            clock_skew_seconds: r
                .clock_skew
                .as_deref()
                .and_then(|d| weft_policy::units::parse_duration(d).ok())
                .map_or_else(default_clock_skew, |ms| ms / 1000),
            keys: JwtKeys {
                hs256_secrets: r.hs256_secrets.clone(),
                jwks: r.jwks.clone(),
            },
        })
}
