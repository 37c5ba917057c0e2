//! Pre-compiled matchers for the values inside a rule. Built once by `compile`, so
//! matching a request parses no configuration and allocates nothing.

use std::net::{IpAddr, SocketAddr};

/// A string pattern: exact, `prefix*`, `*suffix` or `*` (Istio's forms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StrMatcher {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Any,
}

// === impl StrMatcher ===

impl StrMatcher {
    /// `*` may appear only alone, as the first or as the last character.
    pub(crate) fn parse(pattern: &str) -> Result<Self, String> {
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

    pub(crate) fn matches(&self, value: &str) -> bool {
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
pub(crate) struct NamespaceMatcher {
    /// `spiffe://<trust_domain>/ns/`
    prefix: String,
    namespace: StrMatcher,
}

// === impl NamespaceMatcher ===

impl NamespaceMatcher {
    pub(crate) fn parse(trust_domain: &str, pattern: &str) -> Result<Self, String> {
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

    pub(crate) fn matches(&self, principal: &str) -> bool {
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

/// Validates a principal pattern: a SPIFFE id (`spiffe://<trust-domain>/<path>`), a
/// `spiffe://...*` prefix, a `*suffix` or `*`.
pub(crate) fn parse_principal(pattern: &str) -> Result<StrMatcher, String> {
    let m = StrMatcher::parse(pattern)?;
    match &m {
        StrMatcher::Exact(id) => {
            let valid = id
                .strip_prefix("spiffe://")
                .and_then(|rest| rest.split_once('/'))
                .is_some_and(|(td, path)| {
                    !td.is_empty() && !path.is_empty() && !td.contains(char::is_whitespace)
                });
            if !valid {
                return Err(format!(
                    "invalid principal {pattern:?}: expected spiffe://<trust-domain>/<path>, `prefix*`, `*suffix` or `*`"
                ));
            }
        }
        StrMatcher::Prefix(p) if !p.starts_with("spiffe://") => {
            return Err(format!(
                "invalid principal {pattern:?}: a prefix pattern must start with spiffe://"
            ));
        }
        _ => {}
    }
    Ok(m)
}

/// Validates an HTTP method: `*` or an upper-case token.
pub(crate) fn parse_method(method: &str) -> Result<StrMatcher, String> {
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
pub(crate) enum PathMatcher {
    Str(StrMatcher),
    Template(Vec<Segment>),
}

/// One `/`-separated segment of a path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    Literal(String),
    /// `{*}`: exactly one non-empty segment.
    One,
    /// `{**}`: zero or more remaining segments; only last.
    Rest,
}

// === impl PathMatcher ===

impl PathMatcher {
    pub(crate) fn parse(pattern: &str) -> Result<Self, String> {
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
    pub(crate) fn matches(&self, path: &str) -> bool {
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
pub(crate) enum Cidr {
    V4 { network: u32, mask: u32 },
    V6 { network: u128, mask: u128 },
}

// === impl Cidr ===

impl Cidr {
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("invalid IP or CIDR {text:?}");
        let (addr, len) = match text.split_once('/') {
            Some((addr, len)) => {
                let len: u8 = len.parse().map_err(|_| bad())?;
                (addr, Some(len))
            }
            None => (text, None),
        };
        let ip: IpAddr = addr.parse().map_err(|_| bad())?;
        match ip {
            IpAddr::V4(v4) => {
                let len = len.unwrap_or(32);
                if len > 32 {
                    return Err(format!("invalid CIDR {text:?}: prefix length {len} > 32"));
                }
                let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                Ok(Self::V4 {
                    network: u32::from(v4) & mask,
                    mask,
                })
            }
            IpAddr::V6(v6) => {
                let len = len.unwrap_or(128);
                if len > 128 {
                    return Err(format!("invalid CIDR {text:?}: prefix length {len} > 128"));
                }
                let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
                Ok(Self::V6 {
                    network: u128::from(v6) & mask,
                    mask,
                })
            }
        }
    }

    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        match (self, ip) {
            (Self::V4 { network, mask }, IpAddr::V4(v4)) => u32::from(v4) & mask == *network,
            (Self::V6 { network, mask }, IpAddr::V6(v6)) => u128::from(v6) & mask == *network,
            _ => false,
        }
    }
}

/// Parses `ip`, `ip:port` or `[v6]:port`; IPv4-mapped IPv6 addresses become IPv4.
pub(crate) fn parse_source_ip(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    let ip = text
        .parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|sa| sa.ip()))
        .or_else(|| text.strip_prefix('[')?.strip_suffix(']')?.parse().ok())?;
    Some(ip.to_canonical())
}
