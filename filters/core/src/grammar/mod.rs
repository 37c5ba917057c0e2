//! The one grammar of weft's policy values: string, principal, method and path patterns,
//! CIDR blocks, durations and percentages. Policy validation (`weft-policy`) parses document
//! strings with these functions and the filters build their matchers with the same ones, so
//! what validation accepts is exactly what a filter runs. Matchers are built once, so matching
//! a request parses no configuration and allocates nothing.

mod text;
mod units;

pub use text::{Method, Namespace, Patterns, Principal};
pub use units::{parse_duration_ms, percent_to_bp};

use std::net::{IpAddr, SocketAddr};

/// A string pattern: exact, `prefix*`, `*suffix` or `*` (Istio's forms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StrMatcher {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Any,
}

// === impl StrMatcher ===

impl StrMatcher {
    /// `*` may appear only alone, as the first or as the last character.
    pub fn parse(pattern: &str) -> Result<Self, String> {
        if pattern.is_empty() {
            return Err("must not be empty".into());
        }
        if pattern == "*" {
            return Ok(Self::Any);
        }
        let stars = pattern.matches('*').count();
        if stars == 0 {
            return Ok(Self::Exact(pattern.to_string()));
        }
        if stars == 1 {
            if let Some(suffix) = pattern.strip_prefix('*') {
                return Ok(Self::Suffix(suffix.to_string()));
            }
            if let Some(prefix) = pattern.strip_suffix('*') {
                return Ok(Self::Prefix(prefix.to_string()));
            }
        }
        Err(format!(
            "invalid pattern {pattern:?}: `*` is allowed only alone, as the first or as the last character"
        ))
    }

    pub fn matches(&self, value: &str) -> bool {
        match self {
            Self::Exact(s) => value == s,
            Self::Prefix(p) => value.starts_with(p.as_str()),
            Self::Suffix(s) => value.ends_with(s.as_str()),
            Self::Any => true,
        }
    }
}

/// Namespace shorthand: matches principals `spiffe://<trust_domain>/ns/<ns>/...`
/// whose `<ns>` segment matches the pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceMatcher {
    /// `spiffe://<trust_domain>/ns/`
    prefix: String,
    namespace: StrMatcher,
}

// === impl NamespaceMatcher ===

impl NamespaceMatcher {
    pub fn parse(trust_domain: &str, pattern: &str) -> Result<Self, String> {
        if pattern.contains('/') {
            return Err(format!(
                "invalid namespace {pattern:?}: must not contain `/`"
            ));
        }
        Ok(Self {
            prefix: format!("spiffe://{trust_domain}/ns/"),
            namespace: StrMatcher::parse(pattern)?,
        })
    }

    pub fn matches(&self, principal: &str) -> bool {
        let Some(rest) = principal.strip_prefix(self.prefix.as_str()) else {
            return false;
        };
        // The namespace segment must be followed by more path (`/sa/<name>`).
        match rest.split_once('/') {
            Some((ns, _)) if !ns.is_empty() => self.namespace.matches(ns),
            _ => false,
        }
    }
}

/// Parses a principal pattern: a SPIFFE id (`spiffe://<trust-domain>/<path>`), a
/// `spiffe://<trust-domain>...*` prefix, a `*suffix` or `*`. The trust domain and path follow
/// the SPIFFE spec: lower-case letters, digits, `.`, `-`, `_`; non-empty path segments of
/// letters, digits, `.`, `-`, `_`. Policy validation and the filters share this one function.
pub fn parse_principal(pattern: &str) -> Result<StrMatcher, String> {
    let invalid = |why: &str| {
        format!(
            "invalid principal {pattern:?}: malformed SPIFFE id, {why} (expected spiffe://<trust-domain>/<path>, `prefix*`, `*suffix` or `*`)"
        )
    };
    let m = StrMatcher::parse(pattern).map_err(|e| invalid(&e))?;
    let (id, prefix) = match &m {
        StrMatcher::Any | StrMatcher::Suffix(_) => return Ok(m),
        StrMatcher::Exact(id) => (id.as_str(), false),
        StrMatcher::Prefix(id) => (id.as_str(), true),
    };
    let Some(rest) = id.strip_prefix("spiffe://") else {
        return Err(invalid("must start with spiffe://"));
    };
    let (td, path) = rest.split_once('/').unwrap_or((rest, ""));
    if !is_trust_domain(td) {
        return Err(invalid("invalid trust domain"));
    }
    if prefix {
        return Ok(m);
    }
    if path.is_empty() {
        return Err(invalid("missing path"));
    }
    let segment_ok = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-_".contains(&b))
    };
    if !path.split('/').all(segment_ok) {
        return Err(invalid(
            "path segments must be non-empty letters, digits, `.`, `-` or `_`",
        ));
    }
    Ok(m)
}

/// A SPIFFE trust domain: lower-case letters, digits, `.`, `-` or `_`.
pub fn is_trust_domain(td: &str) -> bool {
    !td.is_empty()
        && td
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b".-_".contains(&b))
}

/// A host pattern for `:authority` (Istio's `hosts`): exact, `prefix*`, `*suffix` or `*`,
/// case-insensitive; the request's port is stripped first, so `example.com` matches
/// `example.com:8080` (as Istio's docs recommend writing hosts without ports).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostMatcher(StrMatcher);

// === impl HostMatcher ===

impl HostMatcher {
    pub fn parse(pattern: &str) -> Result<Self, String> {
        if pattern
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b == b'/')
        {
            return Err(format!(
                "invalid host {pattern:?}: must not contain `/` or spaces"
            ));
        }
        StrMatcher::parse(&pattern.to_ascii_lowercase()).map(Self)
    }

    pub fn matches(&self, authority: &str) -> bool {
        // `[v6]:port`, `host:port`; a bare IPv6 without brackets has several `:` and no port.
        let host = match authority.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':') => {
                if h.contains(':') && !h.starts_with('[') {
                    authority
                } else {
                    h
                }
            }
            _ => authority,
        };
        self.0.matches(&host.to_ascii_lowercase())
    }
}

/// Validates an HTTP method: `*` or an upper-case token.
pub fn parse_method(method: &str) -> Result<StrMatcher, String> {
    if method == "*" {
        return Ok(StrMatcher::Any);
    }
    if method.is_empty()
        || !method
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_')
    {
        return Err(format!(
            "invalid method {method:?}: expected an upper-case method such as GET, or `*`"
        ));
    }
    Ok(StrMatcher::Exact(method.to_string()))
}

/// A path pattern. The query string is stripped before matching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatcher {
    Str(StrMatcher),
    Template(Vec<Segment>),
}

/// One `/`-separated segment of a path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    /// `{*}`: exactly one non-empty segment.
    One,
    /// `{**}`: zero or more remaining segments; only last.
    Rest,
}

// === impl PathMatcher ===

impl PathMatcher {
    pub fn parse(pattern: &str) -> Result<Self, String> {
        if !pattern.contains('{') && !pattern.contains('}') {
            let m = StrMatcher::parse(pattern)?;
            if let StrMatcher::Exact(p) | StrMatcher::Prefix(p) = &m {
                if !p.starts_with('/') {
                    return Err(format!("invalid path {pattern:?}: must start with `/`"));
                }
            }
            if pattern.contains('?') {
                return Err(format!(
                    "invalid path {pattern:?}: the query string is not matched"
                ));
            }
            return Ok(Self::Str(m));
        }
        let Some(rest) = pattern.strip_prefix('/') else {
            return Err(format!(
                "invalid path template {pattern:?}: must start with `/`"
            ));
        };
        let parts: Vec<&str> = rest.split('/').collect();
        let last = parts.len() - 1;
        let mut segments = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let seg = match *part {
                "{*}" => Segment::One,
                "{**}" if i == last => Segment::Rest,
                "{**}" => {
                    return Err(format!("invalid path template {pattern:?}: `{{**}}` must be the last segment"))
                }
                lit if lit.contains(['{', '}', '*', '?']) => {
                    return Err(format!(
                        "invalid path template {pattern:?}: segment {lit:?} must be `{{*}}`, `{{**}}` or a literal"
                    ))
                }
                lit => Segment::Literal(lit.to_string()),
            };
            segments.push(seg);
        }
        Ok(Self::Template(segments))
    }

    /// `path` must already be normalized (query removed, see `super::path`).
    pub fn matches(&self, path: &str) -> bool {
        match self {
            Self::Str(m) => m.matches(path),
            Self::Template(segments) => {
                let Some(rest) = path.strip_prefix('/') else {
                    return false;
                };
                let mut parts = rest.split('/');
                for seg in segments {
                    match seg {
                        Segment::Rest => return true,
                        Segment::One => match parts.next() {
                            Some(p) if !p.is_empty() => {}
                            _ => return false,
                        },
                        Segment::Literal(lit) => {
                            if parts.next() != Some(lit.as_str()) {
                                return false;
                            }
                        }
                    }
                }
                parts.next().is_none()
            }
        }
    }
}

/// An IPv4 or IPv6 CIDR block; a plain IP is a /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cidr {
    V4 { network: u32, mask: u32 },
    V6 { network: u128, mask: u128 },
}

// === impl Cidr ===

impl Cidr {
    /// A block with host bits set (`10.0.0.1/8`) is refused: it is almost always a typo.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("invalid IP or CIDR {text:?}: {why}");
        let (addr, len) = match text.split_once('/') {
            Some((addr, len)) => {
                let len: u8 = len.parse().map_err(|_| bad("invalid prefix length"))?;
                (addr, Some(len))
            }
            None => (text, None),
        };
        let ip: IpAddr = addr.parse().map_err(|_| bad("invalid IP address"))?;
        let cidr = match ip {
            IpAddr::V4(v4) => {
                let len = len.unwrap_or(32);
                if len > 32 {
                    return Err(bad(&format!("prefix length {len} > 32")));
                }
                let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                if u32::from(v4) & !mask != 0 {
                    return Err(bad("host bits are set"));
                }
                Self::V4 {
                    network: u32::from(v4) & mask,
                    mask,
                }
            }
            IpAddr::V6(v6) => {
                let len = len.unwrap_or(128);
                if len > 128 {
                    return Err(bad(&format!("prefix length {len} > 128")));
                }
                let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
                if u128::from(v6) & !mask != 0 {
                    return Err(bad("host bits are set"));
                }
                Self::V6 {
                    network: u128::from(v6) & mask,
                    mask,
                }
            }
        };
        Ok(cidr)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self, ip) {
            (Self::V4 { network, mask }, IpAddr::V4(v4)) => u32::from(v4) & mask == *network,
            (Self::V6 { network, mask }, IpAddr::V6(v6)) => u128::from(v6) & mask == *network,
            _ => false,
        }
    }
}

/// Parses `ip`, `ip:port` or `[v6]:port`; IPv4-mapped IPv6 addresses become IPv4.
pub fn parse_source_ip(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    let ip = text
        .parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|sa| sa.ip()))
        .or_else(|| text.strip_prefix('[')?.strip_suffix(']')?.parse().ok())?;
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests;
