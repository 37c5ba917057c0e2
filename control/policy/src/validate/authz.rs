//! Checks of AuthorizationPolicy and RequestAuthentication documents.

use super::*;
use weft_filter_core::grammar::HostMatcher;

pub(super) fn authorization(s: &AuthorizationPolicySpec, c: &mut Collector<'_>) {
    for (i, rule) in s.rules.iter().enumerate() {
        let at = format!("spec.rules[{i}]");
        if let Some(from) = &rule.from {
            let f = |name: &str| format!("{at}.from.{name}");
            optional_list(c, &f("principals"), &from.principals, check_principal);
            optional_list(
                c,
                &f("notPrincipals"),
                &from.not_principals,
                check_principal,
            );
            optional_list(c, &f("namespaces"), &from.namespaces, check_namespace);
            optional_list(
                c,
                &f("notNamespaces"),
                &from.not_namespaces,
                check_namespace,
            );
            optional_list(c, &f("ipBlocks"), &from.ip_blocks, check_cidr);
            optional_list(c, &f("notIpBlocks"), &from.not_ip_blocks, check_cidr);
            optional_list(c, &f("remoteIpBlocks"), &from.remote_ip_blocks, check_cidr);
            optional_list(
                c,
                &f("notRemoteIpBlocks"),
                &from.not_remote_ip_blocks,
                check_cidr,
            );
        }
        if let Some(to) = &rule.to {
            let f = |name: &str| format!("{at}.to.{name}");
            optional_list(c, &f("methods"), &to.methods, check_method);
            optional_list(c, &f("notMethods"), &to.not_methods, check_method);
            optional_list(c, &f("paths"), &to.paths, check_path);
            optional_list(c, &f("notPaths"), &to.not_paths, check_path);
            let host = |h: &str| HostMatcher::parse(h).map(drop);
            optional_list(c, &f("hosts"), &to.hosts, host);
            optional_list(c, &f("notHosts"), &to.not_hosts, host);
        }
        for (j, cond) in rule.when.iter().enumerate() {
            condition(&format!("{at}.when[{j}]"), cond, c);
        }
    }
    if let Some(d) = &s.deny_response {
        deny_response(d, c);
    }
}

/// What a `when[].key` refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConditionKey {
    Header(String),
    /// Nested claims joined with `.`.
    Claim(String),
}

/// Parses `request.headers[<name>]` or `request.auth.claims[<a>][<b>]...`.
pub fn parse_condition_key(key: &str) -> Result<ConditionKey, String> {
    let bad = || {
        format!("unsupported key {key:?}: expected `request.headers[<name>]` or `request.auth.claims[<name>]`")
    };
    if let Some(name) = key
        .strip_prefix("request.headers[")
        .and_then(|r| r.strip_suffix(']'))
    {
        check_header_name(name)?;
        return Ok(ConditionKey::Header(name.to_ascii_lowercase()));
    }
    let inner = key
        .strip_prefix("request.auth.claims[")
        .and_then(|r| r.strip_suffix(']'))
        .ok_or_else(bad)?;
    let parts: Vec<&str> = inner.split("][").collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || p.contains(['[', ']', '.']))
    {
        return Err(bad());
    }
    Ok(ConditionKey::Claim(parts.join(".")))
}

fn condition(at: &str, cond: &AuthzCondition, c: &mut Collector<'_>) {
    let key = parse_condition_key(&cond.key);
    c.check(format!("{at}.key"), key.clone().map(|_| ()));
    let check = |v: &str| match key {
        Ok(ConditionKey::Header(_)) => check_pattern(v),
        _ => Ok(()),
    };
    match (&cond.values, &cond.not_values) {
        (None, None) => c.push(at, "one of `values` or `notValues` is required"),
        (Some(_), Some(_)) => c.push(at, "only one of `values` or `notValues`"),
        (Some(v), None) => non_empty_list(c, &format!("{at}.values"), v, check),
        (None, Some(v)) => non_empty_list(c, &format!("{at}.notValues"), v, check),
    }
}

fn deny_response(d: &DenyResponseSpec, c: &mut Collector<'_>) {
    if let Some(status) = d.status {
        if !(200..=599).contains(&status) {
            c.push(
                "spec.denyResponse.status",
                format!("{status} is not an HTTP status in 200-599"),
            );
        }
    }
    for (name, value) in &d.headers {
        let at = format!("spec.denyResponse.headers[{name:?}]");
        c.check(at.clone(), check_header_name(name));
        if value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
            c.push(at, "value must not contain CR, LF or NUL");
        }
    }
}

pub(super) fn authentication(s: &RequestAuthenticationSpec, c: &mut Collector<'_>) {
    if s.jwt_rules.is_empty() {
        c.push("spec.jwtRules", "must not be empty");
    }
    for (i, rule) in s.jwt_rules.iter().enumerate() {
        let at = format!("spec.jwtRules[{i}]");
        if rule.issuer.trim().is_empty() {
            c.push(format!("{at}.issuer"), "must not be empty");
        }
        if let Some(h) = &rule.from_header {
            c.check(format!("{at}.fromHeader.name"), check_header_name(&h.name));
        }
        if let Some(skew) = &rule.clock_skew {
            c.check(format!("{at}.clockSkew"), parse_duration(skew).map(|_| ()));
        }
        match &rule.jwks {
            None if rule.hs256_secrets.is_empty() => {
                c.push(at.clone(), "one of `jwks` or `hs256Secrets` is required")
            }
            None => {}
            Some(jwks) => c.check(format!("{at}.jwks"), check_jwks(jwks)),
        }
        for (k, out) in rule.output_claim_to_headers.iter().enumerate() {
            let field = format!("{at}.outputClaimToHeaders[{k}]");
            c.check(format!("{field}.header"), check_header_name(&out.header));
            if out.claim.is_empty() || out.claim.split('.').any(str::is_empty) {
                c.push(
                    format!("{field}.claim"),
                    format!("invalid claim name {:?}", out.claim),
                );
            }
        }
        for (k, secret) in rule.hs256_secrets.iter().enumerate() {
            if crate::secret::is_redacted(secret) {
                c.push(
                    format!("{at}.hs256Secrets[{k}]"),
                    "a redacted placeholder as the API shows it, not a secret: give the secret itself",
                );
            } else if secret.len() < 32 {
                c.push(
                    format!("{at}.hs256Secrets[{k}]"),
                    "an HS256 secret must be at least 32 bytes (RFC 7518 section 3.2)",
                );
            }
        }
    }
}

fn check_jwks(jwks: &serde_json::Value) -> Result<(), String> {
    let parsed;
    let doc = match jwks {
        serde_json::Value::String(text) => {
            parsed = serde_json::from_str::<serde_json::Value>(text)
                .map_err(|e| format!("invalid JWKS JSON: {e}"))?;
            &parsed
        }
        other => other,
    };
    match doc.get("keys").and_then(|k| k.as_array()) {
        Some(keys) if !keys.is_empty() => Ok(()),
        _ => Err("a JWKS must be an object with a non-empty `keys` array".into()),
    }
}
