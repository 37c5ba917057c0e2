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
