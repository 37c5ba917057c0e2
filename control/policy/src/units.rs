//! Durations, percentages, names and patterns as users write them, and their checks. The
//! value grammar (patterns, principals, CIDRs, durations) is `weft_filter_core::grammar`, the
//! one the filters parse with, so what validation accepts is exactly what a filter runs.

use weft_filter_core::grammar;

/// `200ms`, `30s`, `5m`, `1h`, or a sum such as `1m30s`. Returns milliseconds; at most 24h.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    grammar::parse_duration_ms(text)
}

/// A percentage 0-100 with at most two decimals, as basis points (`12.5` -> 1250).
pub fn percent_to_bp(percent: f64) -> Result<u32, String> {
    grammar::percent_to_bp(percent)
}

/// A Kubernetes name: DNS-1123 label, lower-case letters, digits and `-`, at most 63.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!("invalid name {name:?}: expected a DNS label (lower-case letters, digits, `-`, at most 63)"))
    }
}

/// A version name: letters, digits, `.`, `_`, `-`, at most 63.
pub fn check_version(version: &str) -> Result<(), String> {
    let ok = !version.is_empty()
        && version.len() <= 63
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid version {version:?}: expected letters, digits, `.`, `_` or `-` (at most 63)"
        ))
    }
}

/// An HTTP header name (RFC 9110 token); stored lower-cased by the compiler.
pub fn check_header_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!("invalid header name {name:?}"))
    }
}

/// `spiffe://<trust-domain>/<path>`, or the patterns `*`, `spiffe://...*`, `*suffix`.
pub fn check_principal(p: &str) -> Result<(), String> {
    grammar::parse_principal(p).map(drop)
}

/// An IP address or CIDR block (IPv4 or IPv6) without host bits set.
pub fn check_cidr(text: &str) -> Result<(), String> {
    grammar::Cidr::parse(text).map(drop)
}

/// An HTTP method (`GET`, upper-case) or `*`.
pub fn check_method(m: &str) -> Result<(), String> {
    grammar::parse_method(m).map(drop)
}

/// A path pattern: `/exact`, `/prefix*`, `*suffix`, `*`, or a template with `{*}` / `{**}`.
pub fn check_path(p: &str) -> Result<(), String> {
    grammar::PathMatcher::parse(p).map(drop)
}

/// A string pattern: exact, `prefix*`, `*suffix` or `*`.
pub fn check_pattern(p: &str) -> Result<(), String> {
    grammar::StrMatcher::parse(p).map(drop)
}

/// A namespace pattern (a string pattern without `/`).
pub fn check_namespace(p: &str) -> Result<(), String> {
    grammar::NamespaceMatcher::parse("cluster.local", p).map(drop)
}
