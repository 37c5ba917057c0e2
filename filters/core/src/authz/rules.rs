//! Compiled policies and rules, and how a rule matches a request.

use super::matchers::{strip_query, Cidr, NamespaceMatcher, PathMatcher, StrMatcher};
use super::Action;
use crate::RequestAttributes;
use serde_json::{Map, Value};
use std::cell::{OnceCell, RefCell};
use std::net::IpAddr;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub(crate) struct CompiledPolicy {
    /// Shared with the [`Reason`](super::Reason)s naming it.
    pub(crate) name: Arc<str>,
    pub(crate) action: Action,
    pub(crate) dry_run: bool,
    pub(crate) rules: Vec<CompiledRule>,
    pub(crate) deny: Option<DenyReply>,
}

/// A validated `deny_response`; header names lower-cased.
#[derive(Debug, Clone)]
pub(crate) struct DenyReply {
    pub(crate) status: u16,
    pub(crate) body: Option<String>,
    pub(crate) headers: Vec<(String, String)>,
}

/// One rule; `None` fields are absent from the configuration and always hold.
#[derive(Debug, Clone, Default)]
pub(crate) struct CompiledRule {
    pub(crate) principals: Option<Vec<StrMatcher>>,
    pub(crate) not_principals: Option<Vec<StrMatcher>>,
    pub(crate) namespaces: Option<Vec<NamespaceMatcher>>,
    pub(crate) not_namespaces: Option<Vec<NamespaceMatcher>>,
    pub(crate) methods: Option<Vec<StrMatcher>>,
    pub(crate) not_methods: Option<Vec<StrMatcher>>,
    pub(crate) paths: Option<Vec<PathMatcher>>,
    pub(crate) not_paths: Option<Vec<PathMatcher>>,
    pub(crate) ip_blocks: Option<Vec<Cidr>>,
    pub(crate) not_ip_blocks: Option<Vec<Cidr>>,
    pub(crate) headers: Vec<HeaderMatch>,
    pub(crate) claims: Vec<ClaimMatch>,
}

#[derive(Debug, Clone)]
pub(crate) struct HeaderMatch {
    /// Lower-case.
    pub(crate) name: String,
    /// `None`: presence check.
    pub(crate) values: Option<Vec<StrMatcher>>,
    pub(crate) not: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct ClaimMatch {
    /// `realm.role` split at the dots.
    pub(crate) path: Vec<String>,
    pub(crate) values: Vec<String>,
    pub(crate) not: bool,
}

/// The request as rules see it: host attributes read at most once, on first use.
pub(crate) struct RequestView<'a> {
    req: &'a dyn RequestAttributes,
    claims: Option<&'a Map<String, Value>>,
    method: OnceCell<Option<String>>,
    path: OnceCell<Option<String>>,
    source_ip: OnceCell<Option<IpAddr>>,
    principal: OnceCell<Option<String>>,
    /// Headers asked for by `headers` conditions, each read once (rules often repeat one).
    headers: RefCell<Vec<(&'a str, Option<String>)>>,
}

// === impl RequestView ===

impl<'a> RequestView<'a> {
    pub(crate) fn new(
        req: &'a dyn RequestAttributes,
        claims: Option<&'a Map<String, Value>>,
    ) -> Self {
        Self {
            req,
            claims,
            method: OnceCell::new(),
            path: OnceCell::new(),
            source_ip: OnceCell::new(),
            principal: OnceCell::new(),
            headers: RefCell::new(Vec::new()),
        }
    }

    /// `f` of header `name`'s value, read from the host on first use only.
    fn with_header<R>(&self, name: &'a str, f: impl FnOnce(Option<&str>) -> R) -> R {
        let mut headers = self.headers.borrow_mut();
        if let Some((_, value)) = headers.iter().find(|(n, _)| *n == name) {
            return f(value.as_deref());
        }
        let value = self.req.header(name);
        let out = f(value.as_deref());
        headers.push((name, value));
        out
    }

    fn method(&self) -> Option<&str> {
        self.method.get_or_init(|| self.req.method()).as_deref()
    }

    fn path(&self) -> Option<&str> {
        self.path
            .get_or_init(|| {
                self.req.path().map(|mut p| {
                    let end = strip_query(&p).len();
                    p.truncate(end);
                    p
                })
            })
            .as_deref()
    }

    fn source_ip(&self) -> Option<IpAddr> {
        *self.source_ip.get_or_init(|| {
            self.req
                .source_address()
                .and_then(|a| super::matchers::parse_source_ip(&a))
        })
    }

    fn principal(&self) -> Option<&str> {
        self.principal
            .get_or_init(|| self.req.peer_principal())
            .as_deref()
    }
}

/// A field and its `not_` form: with a value, the field needs one match and the
/// `not_` form none; without a value the field fails and the `not_` form holds.
fn field<M, V>(
    pos: &Option<Vec<M>>,
    neg: &Option<Vec<M>>,
    value: impl FnOnce() -> Option<V>,
    matches: impl Fn(&M, &V) -> bool,
) -> bool {
    if pos.is_none() && neg.is_none() {
        return true;
    }
    let value = value();
    if let Some(ms) = pos {
        match &value {
            Some(v) if ms.iter().any(|m| matches(m, v)) => {}
            _ => return false,
        }
    }
    match (neg, &value) {
        (Some(ms), Some(v)) => !ms.iter().any(|m| matches(m, v)),
        _ => true,
    }
}

// === impl CompiledRule ===

impl CompiledRule {
    pub(crate) fn matches<'a>(&'a self, req: &RequestView<'a>) -> bool {
        field(
            &self.principals,
            &self.not_principals,
            || req.principal(),
            |m, p| m.matches(p),
        ) && field(
            &self.namespaces,
            &self.not_namespaces,
            || req.principal(),
            |m, p| m.matches(p),
        ) && field(
            &self.methods,
            &self.not_methods,
            || req.method(),
            |m, v| m.matches(v),
        ) && field(
            &self.paths,
            &self.not_paths,
            || req.path(),
            |m, p| m.matches(p),
        ) && field(
            &self.ip_blocks,
            &self.not_ip_blocks,
            || req.source_ip(),
            |c, ip| c.contains(*ip),
        ) && self.headers.iter().all(|h| h.matches(req))
            && self.claims.iter().all(|c| c.matches(req.claims))
    }
}

// === impl HeaderMatch ===

impl HeaderMatch {
    fn matches<'a>(&'a self, req: &RequestView<'a>) -> bool {
        let found = req.with_header(&self.name, |value| match (value, &self.values) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(v), Some(ms)) => ms.iter().any(|m| m.matches(v)),
        });
        found != self.not
    }
}

// === impl ClaimMatch ===

impl ClaimMatch {
    fn matches(&self, claims: Option<&Map<String, Value>>) -> bool {
        let found = claims
            .and_then(|c| self.lookup(c))
            .is_some_and(|v| match v {
                Value::Array(items) => items.iter().any(|i| self.accepts(i)),
                other => self.accepts(other),
            });
        found != self.not
    }

    fn lookup<'c>(&self, claims: &'c Map<String, Value>) -> Option<&'c Value> {
        let (first, rest) = self.path.split_first()?;
        rest.iter()
            .try_fold(claims.get(first)?, |v, key| v.as_object()?.get(key))
    }

    /// Strings by value; numbers and booleans by their JSON text.
    fn accepts(&self, v: &Value) -> bool {
        match v {
            Value::String(s) => self.values.iter().any(|x| x == s),
            Value::Number(_) | Value::Bool(_) => {
                let text = v.to_string();
                self.values.contains(&text)
            }
            _ => false,
        }
    }
}
