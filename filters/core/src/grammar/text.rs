//! The grammar's values as text: each type prints back the pattern it was parsed from and
//! (de)serializes through that text, so a configuration is produced from, and parsed into, the
//! same typed values; an unparseable value is a serde error at its exact field path.

use super::{Cidr, HostMatcher, PathMatcher, Segment, StrMatcher};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// A SPIFFE id pattern (see [`super::parse_principal`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal(pub StrMatcher);

/// An HTTP method, or `*` (see [`super::parse_method`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Method(pub StrMatcher);

/// A namespace pattern (`corp`, `team-*`): the namespace segment of a mesh principal
/// `spiffe://<trust_domain>/ns/<ns>/...`. It holds no trust domain; the filter supplies its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace(pub StrMatcher);

// === impl Principal, Method, Namespace ===

impl Principal {
    pub fn parse(pattern: &str) -> Result<Self, String> {
        super::parse_principal(pattern).map(Self)
    }
}

impl Method {
    pub fn parse(method: &str) -> Result<Self, String> {
        super::parse_method(method).map(Self)
    }
}

impl Namespace {
    pub fn parse(pattern: &str) -> Result<Self, String> {
        if pattern.contains('/') {
            return Err(format!(
                "invalid namespace {pattern:?}: must not contain `/`"
            ));
        }
        StrMatcher::parse(pattern).map(Self)
    }

    pub fn matches(&self, namespace: &str) -> bool {
        self.0.matches(namespace)
    }
}

/// A non-empty list of patterns. An empty list could never match, which is almost certainly
/// not what the author meant, so it is refused rather than read as "nothing".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Patterns<T>(Vec<T>);

// === impl Patterns ===

impl<T> Patterns<T> {
    /// `None` for an empty list.
    pub fn new(items: Vec<T>) -> Option<Self> {
        (!items.is_empty()).then_some(Self(items))
    }

    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.0.iter()
    }

    pub fn map<U>(&self, f: impl FnMut(&T) -> U) -> Patterns<U> {
        Patterns(self.0.iter().map(f).collect())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Patterns<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_seq(PatternsVisitor(std::marker::PhantomData))
    }
}

/// Refuses the empty list inside `visit_seq`, so serde_json places the error at the list (its
/// field path names the list's own key).
struct PatternsVisitor<T>(std::marker::PhantomData<T>);

impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for PatternsVisitor<T> {
    type Value = Patterns<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a non-empty list of patterns")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Patterns::new(items)
            .ok_or_else(|| serde::de::Error::custom("must not be empty (omit the field instead)"))
    }
}

impl<'a, T> IntoIterator for &'a Patterns<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl fmt::Display for StrMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(s) => f.write_str(s),
            Self::Prefix(p) => write!(f, "{p}*"),
            Self::Suffix(s) => write!(f, "*{s}"),
            Self::Any => f.write_str("*"),
        }
    }
}

impl fmt::Display for PathMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Str(m) => m.fmt(f),
            Self::Template(segments) => {
                for seg in segments {
                    match seg {
                        Segment::Literal(lit) => write!(f, "/{lit}")?,
                        Segment::One => f.write_str("/{*}")?,
                        Segment::Rest => f.write_str("/{**}")?,
                    }
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for Cidr {
    /// A full-length block prints as the plain address it was most likely written as.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::V4 { network, mask } if mask == u32::MAX => Ipv4Addr::from(network).fmt(f),
            Self::V4 { network, mask } => {
                write!(f, "{}/{}", Ipv4Addr::from(network), mask.count_ones())
            }
            Self::V6 { network, mask } if mask == u128::MAX => Ipv6Addr::from(network).fmt(f),
            Self::V6 { network, mask } => {
                write!(f, "{}/{}", Ipv6Addr::from(network), mask.count_ones())
            }
        }
    }
}

impl fmt::Display for HostMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Parses inside `visit_str`, so serde_json places the error at the string itself and the
/// reported field path ends with its index (`principals[1]`), not at the enclosing list.
struct TextVisitor<T>(fn(&str) -> Result<T, String>);

impl<T> serde::de::Visitor<'_> for TextVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a pattern string")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<T, E> {
        (self.0)(text).map_err(E::custom)
    }
}

/// Serde through the pattern text: `parse` on the way in, `Display` on the way out.
macro_rules! as_text {
    ($($ty:ty => $parse:expr;)*) => {$(
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_str(TextVisitor($parse))
            }
        }
    )*};
}

as_text! {
    StrMatcher => StrMatcher::parse;
    PathMatcher => PathMatcher::parse;
    HostMatcher => HostMatcher::parse;
    Cidr => Cidr::parse;
    Principal => Principal::parse;
    Method => Method::parse;
    Namespace => Namespace::parse;
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

// === impl PathMatcher ===

impl PathMatcher {
    /// The same pattern lower-cased, for a policy that matches paths ignoring ASCII case.
    pub fn to_ascii_lowercase(&self) -> Self {
        let lower = |s: &String| s.to_ascii_lowercase();
        match self {
            Self::Str(StrMatcher::Exact(s)) => Self::Str(StrMatcher::Exact(lower(s))),
            Self::Str(StrMatcher::Prefix(s)) => Self::Str(StrMatcher::Prefix(lower(s))),
            Self::Str(StrMatcher::Suffix(s)) => Self::Str(StrMatcher::Suffix(lower(s))),
            Self::Str(StrMatcher::Any) => Self::Str(StrMatcher::Any),
            Self::Template(segments) => Self::Template(
                segments
                    .iter()
                    .map(|seg| match seg {
                        Segment::Literal(lit) => Segment::Literal(lower(lit)),
                        other => other.clone(),
                    })
                    .collect(),
            ),
        }
    }
}
