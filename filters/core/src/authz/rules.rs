//! Compiled policies and rules, and how a rule matches a request.

use super::{Action, Rule};
use crate::grammar::{Patterns, StrMatcher};
use crate::RequestAttributes;
use serde_json::{Map, Value};
use std::cell::{OnceCell, RefCell};
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub(crate) struct CompiledPolicy {
    /// Shared with the [`Reason`](super::Reason)s naming it.
    pub(crate) name: Arc<str>,
    pub(crate) action: Action,
    pub(crate) dry_run: bool,
    pub(crate) rules: Vec<CompiledRule>,
    pub(crate) deny: Option<DenyReply>,
    /// Path patterns were lower-cased; match them against the lower-cased path.
    pub(crate) ignore_path_case: bool,
}

/// A validated `deny_response`; header names lower-cased.
#[derive(Debug, Clone)]
pub(crate) struct DenyReply {
    pub(crate) status: u16,
    pub(crate) body: Option<String>,
    pub(crate) headers: Vec<(String, String)>,
}

/// One rule: its matcher fields as configured (path patterns lower-cased for a policy that
/// ignores path case), its header and claim conditions compiled.
#[derive(Debug, Clone, Default)]
pub(crate) struct CompiledRule {
    pub(crate) rule: Rule,
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

/// Every copy of one header, by lower-case name.
type HeaderCopies<'a> = (&'a str, Rc<[String]>);

/// The request as rules see it: host attributes read at most once, on first use.
pub(crate) struct RequestView<'a> {
    req: &'a dyn RequestAttributes,
    claims: Option<&'a Map<String, Value>>,
    /// `spiffe://<trust_domain>/ns/`: what a principal starts with to have a namespace.
    namespace_prefix: &'a str,
    method: OnceCell<Option<String>>,
    /// Normalized (see [`super::path`]) before any rule runs.
    path: Option<&'a str>,
    lower_path: OnceCell<Option<String>>,
    source_ip: OnceCell<Option<IpAddr>>,
    remote_ip: OnceCell<Option<IpAddr>>,
    principal: OnceCell<Option<String>>,
    /// Every copy of each header asked for by `headers` conditions, each read once (rules
    /// often repeat one).
    headers: RefCell<Vec<HeaderCopies<'a>>>,
}

// === impl RequestView ===

impl<'a> RequestView<'a> {
    pub(crate) fn new(
        req: &'a dyn RequestAttributes,
        claims: Option<&'a Map<String, Value>>,
        path: Option<&'a str>,
        namespace_prefix: &'a str,
    ) -> Self {
        Self {
            req,
            claims,
            namespace_prefix,
            method: OnceCell::new(),
            path,
            lower_path: OnceCell::new(),
            source_ip: OnceCell::new(),
            remote_ip: OnceCell::new(),
            principal: OnceCell::new(),
            headers: RefCell::new(Vec::new()),
        }
    }

    /// Every copy of header `name`, read from the host on first use only.
    fn header_values(&self, name: &'a str) -> Rc<[String]> {
        let mut headers = self.headers.borrow_mut();
        if let Some((_, values)) = headers.iter().find(|(n, _)| *n == name) {
            return Rc::clone(values);
        }
        let values: Rc<[String]> = self.req.header_values(name).into();
        headers.push((name, Rc::clone(&values)));
        values
    }

    fn method(&self) -> Option<&str> {
        self.method.get_or_init(|| self.req.method()).as_deref()
    }

    fn path(&self, ignore_case: bool) -> Option<&str> {
        if !ignore_case {
            return self.path;
        }
        self.lower_path
            .get_or_init(|| self.path.map(str::to_ascii_lowercase))
            .as_deref()
    }

    fn source_ip(&self) -> Option<IpAddr> {
        *self.source_ip.get_or_init(|| {
            self.req
                .source_address()
                .and_then(|a| crate::grammar::parse_source_ip(&a))
        })
    }

    fn remote_ip(&self) -> Option<IpAddr> {
        *self.remote_ip.get_or_init(|| {
            self.req
                .remote_address()
                .and_then(|a| crate::grammar::parse_source_ip(&a))
        })
    }

    /// `<iss>/<sub>` of the validated token, when both are strings.
    fn request_principal(&self) -> Option<String> {
        let claims = self.claims?;
        let iss = claims.get("iss")?.as_str()?;
        let sub = claims.get("sub")?.as_str()?;
        Some(format!("{iss}/{sub}"))
    }

    fn principal(&self) -> Option<&str> {
        self.principal
            .get_or_init(|| self.req.peer_principal())
            .as_deref()
    }

    /// The namespace segment of a mesh principal `spiffe://<trust_domain>/ns/<ns>/...`; the
    /// segment must be followed by more path (`/sa/<name>`).
    fn namespace(&self) -> Option<&str> {
        let rest = self.principal()?.strip_prefix(self.namespace_prefix)?;
        match rest.split_once('/') {
            Some((ns, _)) if !ns.is_empty() => Some(ns),
            _ => None,
        }
    }
}

/// A field and its `not_` form: with a value, the field needs one match and the
/// `not_` form none; without a value the field fails and the `not_` form holds.
fn field<M, V>(
    pos: &Option<Patterns<M>>,
    neg: &Option<Patterns<M>>,
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

// === impl CompiledPolicy ===

impl CompiledPolicy {
    /// The index of the first rule that matches.
    pub(crate) fn first_match<'a>(&'a self, req: &RequestView<'a>) -> Option<usize> {
        let strict = self.action == Action::Allow;
        self.rules
            .iter()
            .position(|r| r.matches(req, self.ignore_path_case, strict))
    }
}

// === impl CompiledRule ===

impl CompiledRule {
    /// `strict`: the rule grants access (ALLOW), so every copy of a repeated header must
    /// satisfy a condition; otherwise (DENY, AUDIT) any copy is enough.
    pub(crate) fn matches<'a>(
        &'a self,
        req: &RequestView<'a>,
        ignore_path_case: bool,
        strict: bool,
    ) -> bool {
        self.first_mismatch(req, ignore_path_case, strict).is_none()
    }

    /// The first condition of the rule that does not hold (fields in the order
    /// [`matches`](Self::matches) looks at them), or `None` when the rule matches. The
    /// same evaluation as `matches`: `weft check` reports which condition decided.
    pub(crate) fn first_mismatch<'a>(
        &'a self,
        req: &RequestView<'a>,
        ignore_path_case: bool,
        strict: bool,
    ) -> Option<Mismatch> {
        let r = &self.rule;
        if !field(
            &r.principals,
            &r.not_principals,
            || req.principal(),
            |m, p| m.0.matches(p),
        ) {
            return Some(Mismatch::Principals);
        }
        if !field(
            &r.namespaces,
            &r.not_namespaces,
            || req.namespace(),
            |m, ns| m.matches(ns),
        ) {
            return Some(Mismatch::Namespaces);
        }
        if !field(
            &r.methods,
            &r.not_methods,
            || req.method(),
            |m, v| m.0.matches(v),
        ) {
            return Some(Mismatch::Methods);
        }
        if !field(
            &r.paths,
            &r.not_paths,
            || req.path(ignore_path_case),
            |m, p| m.matches(p),
        ) {
            return Some(Mismatch::Paths);
        }
        if !field(
            &r.hosts,
            &r.not_hosts,
            || req.req.authority(),
            |m, h| m.matches(h),
        ) {
            return Some(Mismatch::Hosts);
        }
        if !field(
            &r.ip_blocks,
            &r.not_ip_blocks,
            || req.source_ip(),
            |c, ip| c.contains(*ip),
        ) {
            return Some(Mismatch::IpBlocks);
        }
        if !field(
            &r.remote_ip_blocks,
            &r.not_remote_ip_blocks,
            || req.remote_ip(),
            |c, ip| c.contains(*ip),
        ) {
            return Some(Mismatch::RemoteIpBlocks);
        }
        if !field(
            &r.request_principals,
            &r.not_request_principals,
            || req.request_principal(),
            |m, p| m.matches(p),
        ) {
            return Some(Mismatch::RequestPrincipals);
        }
        if let Some(i) = self.headers.iter().position(|h| !h.matches(req, strict)) {
            return Some(Mismatch::Header(i));
        }
        if let Some(i) = self.claims.iter().position(|c| !c.matches(req.claims)) {
            return Some(Mismatch::Claim(i));
        }
        None
    }
}

/// The condition of a rule that did not hold, as `weft check` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mismatch {
    /// `principals` / `not_principals`.
    Principals,
    Namespaces,
    Methods,
    Paths,
    Hosts,
    IpBlocks,
    RemoteIpBlocks,
    RequestPrincipals,
    /// `headers[i]`.
    Header(usize),
    /// `claims[i]`.
    Claim(usize),
}

impl Mismatch {
    /// The rule's field (the `not_` form shares it), e.g. `principals`, `headers[0]`.
    pub fn field(self) -> String {
        match self {
            Self::Principals => "principals".into(),
            Self::Namespaces => "namespaces".into(),
            Self::Methods => "methods".into(),
            Self::Paths => "paths".into(),
            Self::Hosts => "hosts".into(),
            Self::IpBlocks => "ip_blocks".into(),
            Self::RemoteIpBlocks => "remote_ip_blocks".into(),
            Self::RequestPrincipals => "request_principals".into(),
            Self::Header(i) => format!("headers[{i}]"),
            Self::Claim(i) => format!("claims[{i}]"),
        }
    }
}

// === impl HeaderMatch ===

impl HeaderMatch {
    /// Evaluated per copy of the header, so a repeated header can never turn a deny into
    /// an allow: lenient (DENY/AUDIT) holds when any copy, or any comma-separated element of
    /// one, matches; strict (ALLOW) only when every copy matches (and one exists). A `not`
    /// condition is the negation of the other mode, so it too errs towards denying.
    fn matches<'a>(&'a self, req: &RequestView<'a>, strict: bool) -> bool {
        let copies = req.header_values(&self.name);
        let accepts = |v: &str| {
            self.values
                .as_ref()
                .is_none_or(|ms| ms.iter().any(|m| m.matches(v)))
        };
        let any = || {
            copies
                .iter()
                .any(|c| accepts(c) || (c.contains(',') && c.split(',').any(|e| accepts(e.trim()))))
        };
        let every = || !copies.is_empty() && copies.iter().all(|c| accepts(c));
        match (strict, self.not) {
            (true, false) => every(),
            (true, true) => !any(),
            (false, false) => any(),
            (false, true) => !every(),
        }
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
