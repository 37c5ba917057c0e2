//! Reading documents: multi-document YAML (`---`-separated) or JSON (one object, or an array
//! of objects), bounded before anything is trusted. (Just over 400 lines: the bounds, the
//! document split and the retry past unknown fields are one reading pipeline.)
//!
//! The size limit is checked before a byte is parsed. Both parsers stop at 128 levels on their
//! own, so no input can exhaust the stack; the (much lower) depth limit is then checked on the
//! untyped tree, before the typed deserialisation. Typed deserialisation is retried past
//! unknown fields so that a document with three typos reports three errors.

use crate::error::FieldError;
use crate::model::*;
use serde::de::DeserializeOwned;
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
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: 1024 * 1024,
            max_depth: 32,
            max_documents: 500,
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
    if let Some(depth) = flow_depth_over(text, limits.max_depth) {
        return Err(invalid(
            "(input)",
            format!(
                "nested more than {depth} levels deep, more than the limit of {}",
                limits.max_depth
            ),
        ));
    }
    let mut errors = Vec::new();
    let values = split_documents(text, &mut errors);
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

/// Pre-scan of `[`/`{` nesting outside quoted scalars and comments: libyaml takes time
/// quadratic in flow nesting, so a 1 MiB `[[[[...` must be refused before it is parsed.
/// Returns the depth reached once it passes `max`.
fn flow_depth_over(text: &str, max: usize) -> Option<usize> {
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
                        return Some(depth);
                    }
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
        prev = b;
    }
    None
}

/// Splits the input into untyped documents; empty YAML documents are skipped.
fn split_documents(text: &str, errors: &mut Vec<FieldError>) -> Vec<Value> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        return match serde_json::from_str::<Value>(text) {
            Ok(Value::Array(items)) => items,
            Ok(value) => vec![value],
            Err(e) => {
                errors.push(FieldError::new(
                    "#1",
                    "(document)",
                    format!("invalid JSON: {e}"),
                ));
                Vec::new()
            }
        };
    }
    let mut values = Vec::new();
    for (i, de) in serde_norway::Deserializer::from_str(text).enumerate() {
        match Value::deserialize(de) {
            Ok(Value::Null) => {}
            Ok(value) => values.push(value),
            Err(e) => {
                // The YAML stream cannot be resynchronised after a syntax error.
                errors.push(FieldError::new(
                    format!("#{}", i + 1),
                    "(document)",
                    format!("invalid YAML: {e}"),
                ));
                break;
            }
        }
    }
    values
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

#[cfg(test)]
mod tests;
