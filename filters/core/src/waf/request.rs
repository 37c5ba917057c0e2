//! What the rules inspect: the request's arguments (query, form and JSON body, their names
//! and values), cookies, path and a few headers, each a target named as exclusions name
//! it (`q`, `user.bio`, `cookie:session`, `header:user-agent`, `path`).

use super::decode;

/// Where a target came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    Path,
    /// A query, form or JSON argument's value.
    Arg,
    /// An argument's name (or a JSON key).
    ArgName,
    Cookie,
    Header,
}

/// `a=1&b=2` as (name, value) pairs, percent-decoded once with `+` as space.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
            let dec = |s: &str| decode::url_decode_once(&s.replace('+', " "));
            (dec(n), dec(v))
        })
        .collect()
}

/// `Cookie: a=1; b=2` as (name, value) pairs.
pub fn parse_cookies(header: &str) -> Vec<(String, String)> {
    header
        .split(';')
        .filter_map(|c| {
            let c = c.trim();
            (!c.is_empty()).then(|| {
                let (n, v) = c.split_once('=').unwrap_or((c, ""));
                (n.trim().to_string(), v.trim().to_string())
            })
        })
        .collect()
}

/// The leaves of a JSON document as (path, value): `user.tags[1]`, strings, numbers and
/// booleans as text. Keys are reported as argument names. At most `max` leaves (the caller
/// refuses more); serde_json bounds the nesting. The document is consumed: its strings
/// become the leaves and keys without a copy.
pub fn json_args(value: serde_json::Value, max: usize) -> (Vec<(String, String)>, Vec<String>) {
    use std::fmt::Write as _;
    let mut leaves = Vec::new();
    let mut keys = Vec::new();
    let mut stack: Vec<(String, serde_json::Value)> = vec![(String::new(), value)];
    while let Some((path, v)) = stack.pop() {
        if leaves.len() > max || keys.len() > max {
            break;
        }
        match v {
            serde_json::Value::Object(map) => {
                for (k, child) in map.into_iter().rev() {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        let mut p = String::with_capacity(path.len() + 1 + k.len());
                        p.push_str(&path);
                        p.push('.');
                        p.push_str(&k);
                        p
                    };
                    keys.push(k);
                    stack.push((p, child));
                }
            }
            serde_json::Value::Array(items) => {
                for (i, child) in items.into_iter().enumerate().rev() {
                    let mut p = String::with_capacity(path.len() + 6);
                    p.push_str(&path);
                    let _ = write!(p, "[{i}]");
                    stack.push((p, child));
                }
            }
            serde_json::Value::String(s) => leaves.push((path, s)),
            serde_json::Value::Number(n) => leaves.push((path, n.to_string())),
            serde_json::Value::Bool(b) => leaves.push((path, b.to_string())),
            serde_json::Value::Null => {}
        }
    }
    (leaves, keys)
}

/// The media type of a Content-Type value, lower case, parameters dropped.
pub fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// How a body of this media type is inspected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Form,
    Json,
    /// Not inspected (uploads, binary, other text).
    Opaque,
}

pub fn body_kind(media: &str) -> BodyKind {
    if media == "application/x-www-form-urlencoded" {
        BodyKind::Form
    } else if media == "application/json" || media.ends_with("+json") {
        BodyKind::Json
    } else {
        BodyKind::Opaque
    }
}
