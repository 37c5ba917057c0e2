//! Durations, percentages and names as users write them, and their checks. The compiler uses
//! the same functions, so what validation accepts is exactly what it can compile.

/// `200ms`, `30s`, `5m`, `1h`, or a sum such as `1m30s`. Returns milliseconds; at most 24h.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let bad =
        |why: &str| format!("bad duration {text:?}: {why} (expected e.g. `200ms`, `30s`, `1m30s`)");
    if text.is_empty() {
        return Err(bad("empty"));
    }
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad("expected a number"));
        }
        let (num, after) = rest.split_at(digits);
        let n: u64 = num.parse().map_err(|_| bad("number too large"))?;
        let unit_len = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, after) = after.split_at(unit_len);
        let scale = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "" => return Err(bad("missing unit")),
            _ => return Err(bad(&format!("unknown unit {unit:?}"))),
        };
        total = n
            .checked_mul(scale)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| bad("too large"))?;
        rest = after;
    }
    if total > 24 * 3_600_000 {
        return Err(bad("more than 24h"));
    }
    Ok(total)
}

/// A percentage 0-100 with at most two decimals, as basis points (`12.5` -> 1250).
pub fn percent_to_bp(percent: f64) -> Result<u32, String> {
    if !percent.is_finite() || !(0.0..=100.0).contains(&percent) {
        return Err(format!("{percent} is not a percentage between 0 and 100"));
    }
    let scaled = percent * 100.0;
    let bp = scaled.round();
    if (scaled - bp).abs() > 1e-6 {
        return Err(format!("{percent} has more than two decimals"));
    }
    // In range 0..=10000 after the checks above.
    Ok(bp as u32)
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
    if p == "*" {
        return Ok(());
    }
    if let Some(suffix) = p.strip_prefix('*') {
        return if suffix.is_empty() || suffix.contains('*') {
            Err(format!(
                "malformed principal pattern {p:?}: `*` only alone, first or last"
            ))
        } else {
            Ok(())
        };
    }
    let (id, prefix) = match p.strip_suffix('*') {
        Some(id) => (id, true),
        None => (p, false),
    };
    let malformed = |why: &str| {
        format!("malformed SPIFFE id {p:?}: {why} (expected spiffe://<trust-domain>/<path>)")
    };
    let Some(rest) = id.strip_prefix("spiffe://") else {
        return Err(malformed("must start with spiffe://"));
    };
    if id.contains('*') {
        return Err(malformed("`*` only alone, first or last"));
    }
    let (td, path) = rest.split_once('/').unwrap_or((rest, ""));
    if td.is_empty()
        || !td
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b".-_".contains(&b))
    {
        return Err(malformed("invalid trust domain"));
    }
    if prefix {
        return Ok(());
    }
    if path.is_empty() {
        return Err(malformed("missing path"));
    }
    let segment_ok = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-_".contains(&b))
    };
    if !path.split('/').all(segment_ok) {
        return Err(malformed(
            "path segments must be non-empty letters, digits, `.`, `-` or `_`",
        ));
    }
    Ok(())
}

/// An IP address or CIDR block (IPv4 or IPv6) without host bits set.
pub fn check_cidr(text: &str) -> Result<(), String> {
    use std::net::IpAddr;
    let bad = |why: &str| format!("bad CIDR {text:?}: {why}");
    let (addr, len) = match text.split_once('/') {
        Some((a, l)) => (
            a,
            Some(l.parse::<u8>().map_err(|_| bad("invalid prefix length"))?),
        ),
        None => (text, None),
    };
    let ip: IpAddr = addr.parse().map_err(|_| bad("invalid IP address"))?;
    let (bits, max) = match ip {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)) << 96, 32u8),
        IpAddr::V6(v6) => (u128::from(v6), 128u8),
    };
    let len = len.unwrap_or(max);
    if len > max {
        return Err(bad(&format!("prefix length {len} > {max}")));
    }
    let host_bits = if len == 128 { 0 } else { u128::MAX >> len };
    let host_bits = if max == 32 {
        host_bits & (u128::MAX << 96)
    } else {
        host_bits
    };
    if bits & host_bits != 0 {
        return Err(bad("host bits are set"));
    }
    Ok(())
}

/// An HTTP method (`GET`, upper-case) or `*`.
pub fn check_method(m: &str) -> Result<(), String> {
    if m == "*"
        || (!m.is_empty()
            && m.bytes()
                .all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_'))
    {
        Ok(())
    } else {
        Err(format!(
            "invalid method {m:?}: expected an upper-case method such as GET, or `*`"
        ))
    }
}

/// A path pattern: `/exact`, `/prefix*`, `*suffix`, `*`, or a template with `{*}` / `{**}`.
pub fn check_path(p: &str) -> Result<(), String> {
    if p.contains('?') {
        return Err(format!(
            "invalid path {p:?}: the query string is not matched"
        ));
    }
    if !(p.starts_with('/') || p.starts_with('*')) {
        return Err(format!("invalid path {p:?}: must start with `/` or `*`"));
    }
    if p.contains('{') || p.contains('}') {
        let parts: Vec<&str> = p.trim_start_matches('/').split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            let ok = match *part {
                "{*}" => true,
                "{**}" => i + 1 == parts.len(),
                lit => !lit.contains(['{', '}', '*']),
            };
            if !ok || !p.starts_with('/') {
                return Err(format!("invalid path template {p:?}: segments are literals, `{{*}}`, or a last `{{**}}`"));
            }
        }
        return Ok(());
    }
    let stars = p.matches('*').count();
    if stars == 0 || p == "*" || (stars == 1 && (p.starts_with('*') || p.ends_with('*'))) {
        Ok(())
    } else {
        Err(format!("invalid path {p:?}: `*` only alone, first or last"))
    }
}
