//! Checks of AuthorizationPolicy and RequestAuthentication documents.

use super::*;
use weft_filter_core::authz::{ClaimCondition, HeaderCondition, Rule};
use weft_filter_core::grammar::{
    Cidr, HostMatcher, Method, Namespace, PathMatcher, Patterns, Principal, StrMatcher,
};

pub(super) fn authorization(s: &AuthorizationPolicySpec, c: &mut Collector<'_>) {
    for (i, rule) in s.rules.iter().enumerate() {
        authz_rule(&format!("spec.rules[{i}]"), rule, &mut |field, reason| {
            c.push(field, reason)
        });
    }
    if let Some(d) = &s.deny_response {
        deny_response(d, c);
    }
}

/// Validates one document rule and returns it as the authz filter's rule, holding the
/// grammar's typed values; every error is reported at its field (`spec.rules[0].from.x[1]`).
/// Validation and compile both call this, so what validation accepts is exactly what compile
/// maps, and the destructuring below has no `..`: a model field without a mapping here is a
/// build error, never a silently ignored condition.
pub fn authz_rule(at: &str, rule: &AuthzRule, report: &mut dyn FnMut(String, String)) -> Rule {
    let AuthzRule { from, to, when } = rule;
    let AuthzSource {
        principals,
        not_principals,
        namespaces,
        not_namespaces,
        ip_blocks,
        not_ip_blocks,
        remote_ip_blocks,
        not_remote_ip_blocks,
        request_principals,
        not_request_principals,
    } = from.clone().unwrap_or_default();
    let AuthzOperation {
        methods,
        not_methods,
        paths,
        not_paths,
        hosts,
        not_hosts,
    } = to.clone().unwrap_or_default();
    let mut typed = Typed { at, report };
    let (from, to) = ("from", "to");
    // Each pair is (field, its `not` form).
    let principals = typed.pair(
        from,
        "principals",
        principals,
        not_principals,
        Principal::parse,
    );
    let namespaces = typed.pair(
        from,
        "namespaces",
        namespaces,
        not_namespaces,
        Namespace::parse,
    );
    let ip_blocks = typed.pair(from, "ipBlocks", ip_blocks, not_ip_blocks, Cidr::parse);
    let remote_ip_blocks = typed.pair(
        from,
        "remoteIpBlocks",
        remote_ip_blocks,
        not_remote_ip_blocks,
        Cidr::parse,
    );
    let request_principals = typed.pair(
        from,
        "requestPrincipals",
        request_principals,
        not_request_principals,
        StrMatcher::parse,
    );
    let methods = typed.pair(to, "methods", methods, not_methods, Method::parse);
    let paths = typed.pair(to, "paths", paths, not_paths, PathMatcher::parse);
    let hosts = typed.pair(to, "hosts", hosts, not_hosts, HostMatcher::parse);
    let mut out = Rule {
        principals: principals.0,
        not_principals: principals.1,
        namespaces: namespaces.0,
        not_namespaces: namespaces.1,
        methods: methods.0,
        not_methods: methods.1,
        paths: paths.0,
        not_paths: paths.1,
        hosts: hosts.0,
        not_hosts: hosts.1,
        ip_blocks: ip_blocks.0,
        not_ip_blocks: ip_blocks.1,
        remote_ip_blocks: remote_ip_blocks.0,
        not_remote_ip_blocks: remote_ip_blocks.1,
        request_principals: request_principals.0,
        not_request_principals: request_principals.1,
        headers: Vec::new(),
        claims: Vec::new(),
    };
    for (j, cond) in when.iter().enumerate() {
        condition(&format!("{at}.when[{j}]"), cond, &mut out, typed.report);
    }
    out
}

/// Parses a document's optional list into the grammar's values, reporting each bad item.
struct Typed<'a, 'r> {
    at: &'a str,
    report: &'r mut dyn FnMut(String, String),
}

// === impl Typed ===

impl Typed<'_, '_> {
    /// A field and its `not` form (`principals`, `notPrincipals`).
    fn pair<T>(
        &mut self,
        side: &str,
        name: &str,
        pos: Option<Vec<String>>,
        neg: Option<Vec<String>>,
        parse: fn(&str) -> Result<T, String>,
    ) -> (Option<Patterns<T>>, Option<Patterns<T>>) {
        let mut chars = name.chars();
        let not_name = match chars.next() {
            Some(first) => format!("not{}{}", first.to_ascii_uppercase(), chars.as_str()),
            None => "not".to_string(),
        };
        (
            self.list(side, name, pos, parse),
            self.list(side, &not_name, neg, parse),
        )
    }

    fn list<T>(
        &mut self,
        side: &str,
        name: &str,
        items: Option<Vec<String>>,
        parse: fn(&str) -> Result<T, String>,
    ) -> Option<Patterns<T>> {
        let items = items?;
        let at = format!("{}.{side}.{name}", self.at);
        if items.is_empty() {
            (self.report)(
                at.clone(),
                "must not be empty (omit the field instead)".into(),
            );
        }
        let parsed = items
            .iter()
            .enumerate()
            .filter_map(|(k, item)| {
                parse(item)
                    .map_err(|e| (self.report)(format!("{at}[{k}]"), e))
                    .ok()
            })
            .collect();
        Patterns::new(parsed)
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

/// Checks a `when` condition and adds it to `rule` as a header or claim condition.
fn condition(
    at: &str,
    cond: &AuthzCondition,
    rule: &mut Rule,
    report: &mut dyn FnMut(String, String),
) {
    let AuthzCondition {
        key,
        values,
        not_values,
    } = cond;
    let key = parse_condition_key(key);
    if let Err(e) = &key {
        report(format!("{at}.key"), e.clone());
    }
    let (field, values, not) = match (values, not_values) {
        (None, None) => {
            return report(
                at.into(),
                "one of `values` or `notValues` is required".into(),
            );
        }
        (Some(_), Some(_)) => {
            return report(at.into(), "only one of `values` or `notValues`".into());
        }
        (Some(v), None) => (format!("{at}.values"), v, false),
        (None, Some(v)) => (format!("{at}.notValues"), v, true),
    };
    if values.is_empty() {
        report(
            field.clone(),
            "must not be empty (omit the field instead)".into(),
        );
    }
    match key {
        Ok(ConditionKey::Header(name)) => {
            for (k, v) in values.iter().enumerate() {
                if let Err(e) = check_pattern(v) {
                    report(format!("{field}[{k}]"), e);
                }
            }
            rule.headers.push(HeaderCondition {
                name,
                values: Some(values.clone()),
                not,
            });
        }
        Ok(ConditionKey::Claim(name)) => rule.claims.push(ClaimCondition {
            name,
            values: values.clone(),
            not,
        }),
        Err(_) => {}
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
