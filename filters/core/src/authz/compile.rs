//! Validation and compilation of `AuthzConfig` into matchers. Every error names the exact
//! field path, e.g. `policies[1].rules[0].ip_blocks[2]`.

use super::config::{AuthzConfig, ClaimCondition, DenyResponse, HeaderCondition, Policy, Rule};
use super::rules::{ClaimMatch, CompiledPolicy, CompiledRule, DenyReply, HeaderMatch};
use crate::grammar::{PathMatcher, Patterns, StrMatcher};
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
        .map(|(i, p)| policy(&format!("policies[{i}]"), p))
        .collect()
}

fn policy(at: &str, p: &Policy) -> Result<CompiledPolicy, ConfigError> {
    let rules = p
        .rules
        .iter()
        .enumerate()
        .map(|(j, r)| rule(&format!("{at}.rules[{j}]"), r, p.ignore_path_case))
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

/// The matcher fields were parsed with the configuration; only header and claim conditions
/// are compiled here, and path patterns lower-cased for a policy that ignores path case.
fn rule(at: &str, r: &Rule, ignore_case: bool) -> Result<CompiledRule, ConfigError> {
    let mut rule = r.clone();
    if ignore_case {
        let lower = |ps: &Patterns<PathMatcher>| ps.map(PathMatcher::to_ascii_lowercase);
        rule.paths = rule.paths.as_ref().map(lower);
        rule.not_paths = rule.not_paths.as_ref().map(lower);
    }
    Ok(CompiledRule {
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
        rule,
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
