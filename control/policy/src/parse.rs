//! Reading documents: multi-document YAML (`---`-separated) or JSON (one object, or an array
//! of objects), bounded before anything is trusted. (Near 500 lines: the text pre-scan, the bounds, the
//! document split and the retry past unknown fields are one reading pipeline.)
//!
//! The size limit is checked before a byte is parsed. Both parsers stop at 128 levels on their
//! own, so no input can exhaust the stack; the (much lower) depth limit is then checked on the
//! untyped tree, before the typed deserialisation. The untyped tree is built under a node and
//! byte budget (`bounded`), so YAML aliases cannot expand a small input into a huge tree. Typed deserialisation is retried past
//! unknown fields so that a document with three typos reports three errors.

use crate::error::FieldError;
use crate::model::*;
use serde::de::{DeserializeOwned, DeserializeSeed};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Bounds on what one request may contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of the whole request body.
    pub max_bytes: usize,
    /// Nesting of mappings and sequences in one document (the document itself is level 1).
    pub max_depth: usize,
    /// Documents in one request.
    pub max_documents: usize,
    /// Mappings, sequences, keys and scalars the request expands to (YAML aliases counted
    /// every time they are replayed), over all of its documents.
    pub max_nodes: usize,
    /// Bytes of keys and scalars the request expands to (aliases counted each time).
    pub max_scalar_bytes: usize,
    /// YAML aliases (`*name`) in the request's text.
    pub max_aliases: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: 1024 * 1024,
            max_depth: 32,
            max_documents: 500,
            max_nodes: 100_000,
            max_scalar_bytes: 4 * 1024 * 1024,
            max_aliases: 1000,
        }
    }
}

/// Unknown-field errors reported per document before giving up on it.
const MAX_ERRORS_PER_DOCUMENT: usize = 20;

/// Parses every document of a request. All documents are read even after one fails, so the
/// caller gets every error at once.
pub fn parse_documents(input: &[u8], limits: &Limits) -> Result<Vec<Document>, crate::PolicyError> {
    let (documents, errors) = parse_partial(input, limits)?;
    if errors.is_empty() {
        Ok(documents.into_iter().map(|(_, d)| d).collect())
    } else {
        Err(crate::PolicyError::Invalid(errors))
    }
}

/// The documents that parsed, with their index in the request, and the errors of the others.
pub(crate) type Partial = (Vec<(usize, Document)>, Vec<FieldError>);

pub(crate) fn parse_partial(input: &[u8], limits: &Limits) -> Result<Partial, crate::PolicyError> {
    if input.len() > limits.max_bytes {
        return Err(crate::PolicyError::TooLarge {
            size: input.len(),
            limit: limits.max_bytes,
        });
    }
    let invalid = |field: &str, reason: String| {
        crate::PolicyError::Invalid(vec![FieldError::new("#1", field, reason)])
    };
    let text =
        std::str::from_utf8(input).map_err(|e| invalid("(input)", format!("not UTF-8: {e}")))?;
    let scan = prescan(text, limits.max_depth);
    if let Some(depth) = scan.too_deep {
        return Err(invalid(
            "(input)",
            format!(
                "nested more than {depth} levels deep, more than the limit of {}",
                limits.max_depth
            ),
        ));
    }
    if scan.aliases > limits.max_aliases {
        return Err(invalid(
            "(input)",
            format!(
                "{} YAML aliases (`*name`), more than the limit of {}",
                scan.aliases, limits.max_aliases
            ),
        ));
    }
    // libyaml holds every event of a document before a node is built: an input with more
    // lines and commas than the node budget would overrun it (but for commas inside plain
    // scalars), so it is refused before its events cost memory.
    if scan.items > limits.max_nodes {
        return Err(invalid(
            "(input)",
            format!(
                "{} lines and commas, more than the limit of {} nodes",
                scan.items, limits.max_nodes
            ),
        ));
    }
    let mut errors = Vec::new();
    let budget = bounded::Budget::new(limits.max_nodes, limits.max_scalar_bytes);
    let values = split_documents(text, &budget, &mut errors);
    if values.len() > limits.max_documents {
        return Err(invalid(
            "(input)",
            format!(
                "{} documents, more than the limit of {}",
                values.len(),
                limits.max_documents
            ),
        ));
    }
    let mut documents = Vec::with_capacity(values.len());
    for (i, value) in values.into_iter().enumerate() {
        let label = label_of(&value, i);
        let depth = depth(&value);
        if depth > limits.max_depth {
            errors.push(FieldError::new(
                label,
                "(document)",
                format!(
                    "nested {depth} levels deep, more than the limit of {}",
                    limits.max_depth
                ),
            ));
            continue;
        }
        match document_from_value(value, &label) {
            Ok(doc) => documents.push((i, doc)),
            Err(errs) => errors.extend(errs),
        }
    }
    if errors.is_empty() && documents.is_empty() {
        errors.push(FieldError::new("#1", "(input)", "no documents"));
    }
    Ok((documents, errors))
}

/// What the pre-scan found.
struct Prescan {
    /// The flow depth reached once it passed the limit.
    too_deep: Option<usize>,
    /// `*` starting a token outside quoted scalars and comments: YAML aliases (an upper bound).
    aliases: usize,
    /// Lines and commas outside quoted scalars and comments: roughly the items the parser
    /// will hold as events before any tree is built.
    items: usize,
}

/// [`prescan`]'s depth alone.
#[cfg(test)]
fn flow_depth_over(text: &str, max: usize) -> Option<usize> {
    prescan(text, max).too_deep
}

/// Pre-scan of `[`/`{` nesting outside quoted scalars and comments: libyaml takes time
/// quadratic in flow nesting, so a 1 MiB `[[[[...` must be refused before it is parsed. It
/// also counts aliases (a document of 150 000 `*a` would cost its parse time before the
/// expansion budget could stop it) and items (lines and commas). Stops once the depth
/// passes `max`.
fn prescan(text: &str, max: usize) -> Prescan {
    let mut aliases = 0usize;
    let mut items = 0usize;
    let mut depth = 0usize;
    let mut quote: Option<u8> = None;
    let mut prev = b'\n';
    let mut bytes = text.bytes().peekable();
    while let Some(b) = bytes.next() {
        match quote {
            Some(b'"') if b == b'\\' => {
                bytes.next();
            }
            Some(q) if b == q => {
                // `''` inside a single-quoted scalar is an escaped quote.
                if q == b'\'' && bytes.peek() == Some(&b'\'') {
                    bytes.next();
                } else {
                    quote = None;
                }
            }
            Some(_) => {}
            None => match b {
                b'"' | b'\'' if prev.is_ascii_whitespace() || b"[{,:-".contains(&prev) => {
                    quote = Some(b)
                }
                b'#' if prev.is_ascii_whitespace() => {
                    for c in bytes.by_ref() {
                        if c == b'\n' {
                            break;
                        }
                    }
                }
                b'[' | b'{' => {
                    depth += 1;
                    if depth > max {
                        return Prescan {
                            too_deep: Some(depth),
                            aliases,
                            items,
                        };
                    }
                }
                b'*' if prev.is_ascii_whitespace() || b"[{,:".contains(&prev) => aliases += 1,
                b',' | b'\n' => items += 1,
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
        prev = b;
    }
    Prescan {
        too_deep: None,
        aliases,
        items,
    }
}

/// Splits the input into untyped documents, built under `budget`; empty YAML documents are
/// skipped.
fn split_documents(
    text: &str,
    budget: &bounded::Budget,
    errors: &mut Vec<FieldError>,
) -> Vec<Value> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let mut de = serde_json::Deserializer::from_str(text);
        let read = bounded::Bounded(budget)
            .deserialize(&mut de)
            .and_then(|v| de.end().map(|()| v));
        return match read {
            Ok(Value::Array(items)) => items,
            Ok(value) => vec![value],
            Err(e) => {
                errors.push(FieldError::new("#1", "(document)", reason("JSON", &e)));
                Vec::new()
            }
        };
    }
    let mut values = Vec::new();
    for (i, de) in serde_norway::Deserializer::from_str(text).enumerate() {
        match bounded::Bounded(budget).deserialize(de) {
            Ok(Value::Null) => {}
            Ok(value) => {
                // `.nan` / `.inf` have no JSON form: the bounded reader turns them into a marker
                // (never null, i.e. an absent optional field and a check silently dropped) and
                // they are refused where they stand.
                if let Some(at) = non_finite(&value, String::new()) {
                    errors.push(FieldError::new(
                        format!("#{}", i + 1),
                        at,
                        "not a finite number (.nan and .inf are refused)",
                    ));
                    continue;
                }
                values.push(value);
            }
            Err(e) => {
                // The YAML stream cannot be resynchronised after a syntax error.
                errors.push(FieldError::new(
                    format!("#{}", i + 1),
                    "(document)",
                    reason("YAML", &e),
                ));
                break;
            }
        }
    }
    values
}

/// A parser's error as a reason: `invalid YAML: ...`, or the budget's own refusal as is.
fn reason(format: &str, error: &dyn std::fmt::Display) -> String {
    let text = error.to_string();
    if text.contains(bounded::EXPANSION_PREFIX) {
        text
    } else {
        format!("invalid {format}: {text}")
    }
}

/// The path of the first non-finite float in `v` (`spec.steps[0].weight`).
fn non_finite(v: &Value, at: String) -> Option<String> {
    let join = |key: &str| {
        if at.is_empty() {
            key.to_string()
        } else {
            format!("{at}.{key}")
        }
    };
    match v {
        Value::String(s) if s == bounded::NON_FINITE => Some(if at.is_empty() {
            "(document)".into()
        } else {
            at
        }),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| non_finite(item, format!("{at}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(k, item)| non_finite(item, join(k))),
        _ => None,
    }
}

/// `Kind/namespace/name (#n)` as far as the untyped document tells, `#n` counting from 1.
pub fn label_of(value: &Value, index: usize) -> String {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    let kind = text(value.get("kind"));
    let meta = value.get("metadata");
    let name = text(meta.and_then(|m| m.get("name")));
    let ns = text(meta.and_then(|m| m.get("namespace")))
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
    match (kind, name) {
        (Some(kind), Some(name)) => format!("{kind}/{ns}/{name} (#{})", index + 1),
        (Some(kind), None) => format!("{kind} (#{})", index + 1),
        _ => format!("#{}", index + 1),
    }
}

/// Levels of mappings and sequences; a scalar document is depth 0.
pub fn depth(value: &Value) -> usize {
    let mut max = 0;
    let mut stack = vec![(value, 1usize)];
    while let Some((v, d)) = stack.pop() {
        match v {
            Value::Array(items) => {
                max = max.max(d);
                stack.extend(items.iter().map(|x| (x, d + 1)));
            }
            Value::Object(map) => {
                max = max.max(d);
                stack.extend(map.values().map(|x| (x, d + 1)));
            }
            _ => {}
        }
    }
    max
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Envelope<S> {
    api_version: String,
    kind: String,
    metadata: Metadata,
    spec: S,
}

/// Reads one document from its untyped form; every error names `label`.
pub fn document_from_value(value: Value, label: &str) -> Result<Document, Vec<FieldError>> {
    let err = |field: &str, reason: String| vec![FieldError::new(label, field, reason)];
    let Value::Object(map) = &value else {
        return Err(err("(document)", "a document must be a mapping".into()));
    };
    let mut errors = Vec::new();
    match map.get("apiVersion") {
        Some(Value::String(v)) if v == API_VERSION => {}
        Some(v) => errors.push(FieldError::new(
            label,
            "apiVersion",
            format!("unsupported {v}: expected {API_VERSION:?}"),
        )),
        None => errors.push(FieldError::new(label, "apiVersion", "missing field")),
    }
    let kind = match map.get("kind") {
        Some(Value::String(k)) => match ALL_KINDS.into_iter().find(|x| x.as_str() == k) {
            Some(kind) => kind,
            None => {
                let known: Vec<&str> = ALL_KINDS.iter().map(|k| k.as_str()).collect();
                errors.push(FieldError::new(
                    label,
                    "kind",
                    format!("unknown kind {k:?}: expected one of {known:?}"),
                ));
                return Err(errors);
            }
        },
        Some(v) => {
            errors.push(FieldError::new(
                label,
                "kind",
                format!("expected a string, found {v}"),
            ));
            return Err(errors);
        }
        None => {
            errors.push(FieldError::new(label, "kind", "missing field"));
            return Err(errors);
        }
    };
    let spec = match kind {
        Kind::Service => typed(value, label, &mut errors).map(|e| e.map(Spec::Service)),
        Kind::AuthorizationPolicy => {
            typed(value, label, &mut errors).map(|e| e.map(Spec::AuthorizationPolicy))
        }
        Kind::RequestAuthentication => {
            typed(value, label, &mut errors).map(|e| e.map(Spec::RequestAuthentication))
        }
        Kind::TrafficSplit => typed(value, label, &mut errors).map(|e| e.map(Spec::TrafficSplit)),
        Kind::FaultInjection => {
            typed(value, label, &mut errors).map(|e| e.map(Spec::FaultInjection))
        }
        Kind::CircuitBreaker => {
            typed(value, label, &mut errors).map(|e| e.map(Spec::CircuitBreaker))
        }
        Kind::Rollout => typed(value, label, &mut errors).map(|e| e.map(Spec::Rollout)),
        Kind::WebApplicationFirewall => {
            typed(value, label, &mut errors).map(|e| e.map(Spec::WebApplicationFirewall))
        }
    };
    match spec {
        Some(env) if errors.is_empty() => Ok(Document {
            api_version: env.api_version,
            metadata: env.metadata,
            spec: env.spec,
        }),
        _ => Err(errors),
    }
}

/// Here rather than beside `Document` in `model`, so the model does not depend on its parser.
/// Stored documents are read back through the same strict parser users go through.
impl<'de> Deserialize<'de> for Document {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        document_from_value(value, "stored document").map_err(|errs| {
            serde::de::Error::custom(
                errs.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })
    }
}

trait MapSpec<S> {
    fn map(self, f: impl FnOnce(S) -> Spec) -> Envelope<Spec>;
}

impl<S> MapSpec<S> for Envelope<S> {
    fn map(self, f: impl FnOnce(S) -> Spec) -> Envelope<Spec> {
        Envelope {
            api_version: self.api_version,
            kind: self.kind,
            metadata: self.metadata,
            spec: f(self.spec),
        }
    }
}

/// Deserialises `value`, removing each unknown field it trips on and trying again, so every
/// unknown field is reported; stops at the first error of any other sort.
fn typed<S: DeserializeOwned>(
    mut value: Value,
    label: &str,
    errors: &mut Vec<FieldError>,
) -> Option<Envelope<S>> {
    let start = errors.len();
    for _ in 0..MAX_ERRORS_PER_DOCUMENT {
        let err = match serde_path_to_error::deserialize::<_, Envelope<S>>(value.clone()) {
            Ok(env) => return (errors.len() == start).then_some(env),
            Err(err) => err,
        };
        let segments = path_segments(err.path());
        let reason = err.into_inner().to_string();
        let unknown = reason.starts_with("unknown field");
        // serde quotes the value it could not read: never a secret's.
        let reason = if !unknown && segments.iter().any(|s| matches!(s, Seg::Key(k) if crate::secret::SECRET_LIST_FIELDS.contains(&k.as_str()))) {
            "expected a list of strings (the value is not shown: it holds secrets)".to_string()
        } else {
            reason
        };
        errors.push(FieldError::new(label, format_path(&segments), reason));
        if !unknown || !remove(&mut value, &segments) {
            return None;
        }
    }
    None
}

enum Seg {
    Key(String),
    Index(usize),
}

fn path_segments(path: &serde_path_to_error::Path) -> Vec<Seg> {
    use serde_path_to_error::Segment;
    path.iter()
        .filter_map(|s| match s {
            Segment::Seq { index } => Some(Seg::Index(*index)),
            Segment::Map { key } => Some(Seg::Key(key.clone())),
            Segment::Enum { variant } => Some(Seg::Key(variant.clone())),
            Segment::Unknown => None,
        })
        .collect()
}

/// `spec.rules[0].from.principals[1]`; the whole document is `(document)`.
fn format_path(segments: &[Seg]) -> String {
    let mut out = String::new();
    for seg in segments {
        match seg {
            Seg::Key(k) if out.is_empty() => out.push_str(k),
            Seg::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    if out.is_empty() {
        out.push_str("(document)");
    }
    out
}

/// Removes the value at `segments`; false when there was nothing to remove.
fn remove(value: &mut Value, segments: &[Seg]) -> bool {
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut cur = value;
    for seg in parents {
        let next = match (seg, cur) {
            (Seg::Key(k), Value::Object(m)) => m.get_mut(k),
            (Seg::Index(i), Value::Array(a)) => a.get_mut(*i),
            _ => None,
        };
        match next {
            Some(v) => cur = v,
            None => return false,
        }
    }
    match (last, cur) {
        (Seg::Key(k), Value::Object(m)) => m.remove(k).is_some(),
        _ => false,
    }
}

mod bounded;
#[cfg(test)]
mod tests;
