//! Validation and compilation of `AuthzConfig` into matchers. Every error names the exact
//! field path, e.g. `policies[1].rules[0].ip_blocks[2]`.

use super::config::{AuthzConfig, ClaimCondition, DenyResponse, HeaderCondition, Policy, Rule};
use super::rules::{ClaimMatch, CompiledPolicy, CompiledRule, DenyReply, HeaderMatch};
use crate::grammar::{
    parse_method, parse_principal, Cidr, HostMatcher, NamespaceMatcher, PathMatcher, StrMatcher,
};
use crate::ConfigError;
use std::collections::HashMap;

pub(crate) fn trust_domain(td: &str) -> Result<(), ConfigError> {
    if crate::grammar::is_trust_domain(td) {
        Ok(())
    } else {
        Err(ConfigError::new(
            "trust_domain",
            format!(
                "invalid trust domain {td:?}: expected lower-case letters, digits, `.`, `-` or `_`"
            ),
        ))
    }
}

/// Claim headers: a claim name and a lower-case, non-pseudo header name each.
pub(crate) fn claim_headers(list: &[super::config::ClaimToHeader]) -> Result<(), ConfigError> {
    for (i, c) in list.iter().enumerate() {
        if c.claim.is_empty() || c.claim.split('.').any(str::is_empty) {
            return Err(ConfigError::new(
                format!("claim_headers[{i}].claim"),
                format!("invalid claim name {:?}", c.claim),
            ));
        }
        // An HTTP token (RFC 9110), lower-case as Envoy stores header names.
        let valid = !c.header.is_empty()
            && c.header.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b)
            });
        if !valid {
            return Err(ConfigError::new(
                format!("claim_headers[{i}].header"),
                format!(
                    "invalid header name {:?}: expected a lower-case HTTP token",
                    c.header
                ),
            ));
        }
    }
    Ok(())
}

/// Rejects empty and duplicate names in a list of named items.
pub(crate) fn unique_names<'a>(
    list: &str,
    names: impl Iterator<Item = &'a str>,
) -> Result<(), ConfigError> {
    let mut seen = HashMap::new();
    for (i, name) in names.enumerate() {
        let field = format!("{list}[{i}].name");
        if name.trim().is_empty() {
            return Err(ConfigError::new(field, "must not be empty"));
        }
        if let Some(first) = seen.insert(name, i) {
            return Err(ConfigError::new(
                field,
                format!("duplicate name {name:?} (also {list}[{first}])"),
            ));
        }
    }
    Ok(())
}

pub(crate) fn policies(config: &AuthzConfig) -> Result<Vec<CompiledPolicy>, ConfigError> {
    unique_names("policies", config.policies.iter().map(|p| p.name.as_str()))?;
    config
        .policies
        .iter()
        .enumerate()
        .map(|(i, p)| policy(&format!("policies[{i}]"), &config.trust_domain, p))
        .collect()
}

fn policy(at: &str, td: &str, p: &Policy) -> Result<CompiledPolicy, ConfigError> {
    let rules = p
        .rules
        .iter()
        .enumerate()
        .map(|(j, r)| rule(&format!("{at}.rules[{j}]"), td, r, p.ignore_path_case))
        .collect::<Result<_, _>>()?;
    let deny = p
        .deny_response
        .as_ref()
        .map(|d| deny_response(&format!("{at}.deny_response"), d))
        .transpose()?;
    Ok(CompiledPolicy {
        name: p.name.as_str().into(),
        action: p.action,
        dry_run: p.dry_run,
        rules,
        deny,
        ignore_path_case: p.ignore_path_case,
    })
}

fn deny_response(at: &str, d: &DenyResponse) -> Result<DenyReply, ConfigError> {
    if !(200..=599).contains(&d.status) {
        return Err(ConfigError::new(
            format!("{at}.status"),
            format!("{} is not in 200..=599", d.status),
        ));
    }
    let headers = d
        .headers
        .iter()
        .map(|(name, value)| {
            let field = || format!("{at}.headers[{name:?}]");
            let name = header_name(name).map_err(|e| ConfigError::new(field(), e))?;
            if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                return Err(ConfigError::new(
                    field(),
                    "value must not contain CR, LF or NUL",
                ));
            }
            Ok((name, value.clone()))
        })
        .collect::<Result<_, _>>()?;
    Ok(DenyReply {
        status: d.status,
        body: d.body.clone(),
        headers,
    })
}

/// Lower-cases and validates a header name (an RFC 9110 token, or a `:pseudo` header).
pub(crate) fn header_name(name: &str) -> Result<String, String> {
    let token = name.strip_prefix(':').unwrap_or(name);
    let valid = !token.is_empty()
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if valid {
        Ok(name.to_ascii_lowercase())
    } else {
        Err(format!("invalid header name {name:?}"))
    }
}

/// Compiles an optional list, naming `<at>.<name>[k]` on error. An empty list is refused:
/// it could never match, which is almost certainly not what the author meant.
fn list<M>(
    at: &str,
    name: &str,
    values: &Option<Vec<String>>,
    parse: impl Fn(&str) -> Result<M, String>,
) -> Result<Option<Vec<M>>, ConfigError> {
    let Some(values) = values else {
        return Ok(None);
    };
    if values.is_empty() {
        return Err(ConfigError::new(
            format!("{at}.{name}"),
            "must not be empty (omit the field instead)",
        ));
    }
    values
        .iter()
        .enumerate()
        .map(|(k, v)| parse(v).map_err(|e| ConfigError::new(format!("{at}.{name}[{k}]"), e)))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn rule(at: &str, td: &str, r: &Rule, ignore_case: bool) -> Result<CompiledRule, ConfigError> {
    let ns = |p: &str| NamespaceMatcher::parse(td, p);
    let path = |p: &str| {
        if ignore_case {
            PathMatcher::parse(&p.to_ascii_lowercase())
        } else {
            PathMatcher::parse(p)
        }
    };
    Ok(CompiledRule {
        principals: list(at, "principals", &r.principals, parse_principal)?,
        not_principals: list(at, "not_principals", &r.not_principals, parse_principal)?,
        namespaces: list(at, "namespaces", &r.namespaces, ns)?,
        not_namespaces: list(at, "not_namespaces", &r.not_namespaces, ns)?,
        methods: list(at, "methods", &r.methods, parse_method)?,
        not_methods: list(at, "not_methods", &r.not_methods, parse_method)?,
        paths: list(at, "paths", &r.paths, path)?,
        not_paths: list(at, "not_paths", &r.not_paths, path)?,
        hosts: list(at, "hosts", &r.hosts, HostMatcher::parse)?,
        not_hosts: list(at, "not_hosts", &r.not_hosts, HostMatcher::parse)?,
        ip_blocks: list(at, "ip_blocks", &r.ip_blocks, Cidr::parse)?,
        not_ip_blocks: list(at, "not_ip_blocks", &r.not_ip_blocks, Cidr::parse)?,
        remote_ip_blocks: list(at, "remote_ip_blocks", &r.remote_ip_blocks, Cidr::parse)?,
        not_remote_ip_blocks: list(
            at,
            "not_remote_ip_blocks",
            &r.not_remote_ip_blocks,
            Cidr::parse,
        )?,
        headers: r
            .headers
            .iter()
            .enumerate()
            .map(|(k, h)| header(&format!("{at}.headers[{k}]"), h))
            .collect::<Result<_, _>>()?,
        claims: r
            .claims
            .iter()
            .enumerate()
            .map(|(k, c)| claim(&format!("{at}.claims[{k}]"), c))
            .collect::<Result<_, _>>()?,
    })
}

fn header(at: &str, h: &HeaderCondition) -> Result<HeaderMatch, ConfigError> {
    let name = header_name(&h.name).map_err(|e| ConfigError::new(format!("{at}.name"), e))?;
    let values = list(at, "values", &h.values, StrMatcher::parse)?;
    Ok(HeaderMatch {
        name,
        values,
        not: h.not,
    })
}

fn claim(at: &str, c: &ClaimCondition) -> Result<ClaimMatch, ConfigError> {
    let path: Vec<String> = c.name.split('.').map(str::to_string).collect();
    if path.iter().any(String::is_empty) {
        return Err(ConfigError::new(
            format!("{at}.name"),
            format!(
                "invalid claim name {:?}: expected `name` or `a.b.c`",
                c.name
            ),
        ));
    }
    if c.values.is_empty() {
        return Err(ConfigError::new(
            format!("{at}.values"),
            "must not be empty",
        ));
    }
    Ok(ClaimMatch {
        path,
        values: c.values.clone(),
        not: c.not,
    })
}
