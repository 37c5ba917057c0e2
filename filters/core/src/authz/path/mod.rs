//! The path authz matches: the request path as the application will act on it.
//!
//! Envoy normalizes `:path` before any filter runs (normalize_path, merge_slashes, escaped
//! slashes unescaped), but authz does not lean on the listener being configured right: it
//! normalizes again, as strictly, so `//admin`, `/./admin`, `/x/../admin`, `/%61dmin` and
//! `/admin%2fsecret` are all `/admin...` to the matchers. Steps, in order:
//!
//! 1. drop the query string and fragment (at the first `?` or `#`);
//! 2. refuse a raw NUL, an invalid escape (`%`, `%zz`) and `%00`;
//! 3. decode, exactly once, escapes of unreserved characters (ALPHA DIGIT `-._~`) and of
//!    `/` and `\` (Envoy is configured to unescape those, so the app sees the character);
//!    every other escape stays encoded, its hex upper-cased (`%3b` is `%3B`);
//! 4. `\` is `/` (as Envoy's normalize_path, through Chromium's URL canonicalizer, does);
//! 5. `;` path parameters: refused ([`PathParameters::Reject`]) or removed from each segment
//!    up to the next `/` ([`PathParameters::Strip`], as Tomcat reads `/public/..;/admin`);
//! 6. merge repeated slashes, then resolve `.` and `..` segments (RFC 3986 §5.2.4), never
//!    above the root.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;

/// What `;` path parameters in a request path do. The safe choice is the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PathParameters {
    /// A path with a `;` is refused with 400 before any policy is looked at.
    #[default]
    Reject,
    /// `;...` is removed from each segment before `.`/`..` are resolved and policies match.
    Strip,
}

/// Why a path cannot be decided on; answered with 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// `%` not followed by two hex digits.
    InvalidEscape,
    /// A NUL byte, raw or as `%00`.
    Nul,
    /// A `;` path parameter while they are rejected.
    PathParameter,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::InvalidEscape => "invalid percent-encoding in the request path",
            Self::Nul => "NUL in the request path",
            Self::PathParameter => "`;` path parameters are not accepted",
        })
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// True when `path` (query already cut off) is in normal form, so nothing is allocated:
/// one pass over the bytes, no `%`, `\\`, `;` or NUL, no empty (but the last), `.` or `..`
/// segment.
fn is_normal(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    let dot_segment = |len: usize, dots: usize| len > 0 && len == dots && dots <= 2;
    let (mut len, mut dots) = (0usize, 0usize);
    for c in rest.bytes() {
        match c {
            // `;` is an error (Reject) or changes the path (Strip): both take the slow way.
            b'%' | b'\\' | b';' | 0 => return false,
            b'/' => {
                if len == 0 || dot_segment(len, dots) {
                    return false;
                }
                (len, dots) = (0, 0);
            }
            b'.' => (len, dots) = (len + 1, dots + 1),
            _ => len += 1,
        }
    }
    !dot_segment(len, dots)
}

/// The normalized form of request path `raw` (see the module docs).
pub fn normalize(raw: &str, params: PathParameters) -> Result<Cow<'_, str>, PathError> {
    let end = raw
        .bytes()
        .position(|b| b == b'?' || b == b'#')
        .unwrap_or(raw.len());
    // Both are ASCII, so `end` is a char boundary.
    let path = raw.get(..end).unwrap_or(raw);
    if is_normal(path) {
        return Ok(Cow::Borrowed(path));
    }
    let bytes = path.as_bytes();
    // Steps 2-4: decode once into `decoded`, `\` as `/`.
    let mut decoded: Vec<u8> = Vec::with_capacity(bytes.len() + 1);
    if bytes.first() != Some(&b'/') && bytes.first() != Some(&b'\\') {
        decoded.push(b'/');
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            0 => return Err(PathError::Nul),
            b'%' => {
                let (Some(hi), Some(lo)) = (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err(PathError::InvalidEscape);
                };
                let c = hi * 16 + lo;
                if c == 0 {
                    return Err(PathError::Nul);
                }
                if is_unreserved(c) || c == b'/' {
                    decoded.push(c);
                } else if c == b'\\' {
                    decoded.push(b'/');
                } else {
                    decoded.push(b'%');
                    decoded.extend(format!("{c:02X}").bytes());
                }
                i += 3;
                continue;
            }
            b'\\' => decoded.push(b'/'),
            b';' if params == PathParameters::Reject => return Err(PathError::PathParameter),
            _ => decoded.push(b),
        }
        i += 1;
    }
    // Steps 5-6, segment by segment. Only ASCII was added or removed, so the text stays UTF-8.
    let text = String::from_utf8_lossy(&decoded);
    let mut out: Vec<&str> = Vec::new();
    let mut segments = text.split('/').skip(1).peekable();
    let mut trailing_slash = false;
    while let Some(segment) = segments.next() {
        let segment = match params {
            PathParameters::Strip => segment.split(';').next().unwrap_or(""),
            PathParameters::Reject => segment,
        };
        let last = segments.peek().is_none();
        match segment {
            "" | "." => trailing_slash = last,
            ".." => {
                out.pop();
                trailing_slash = last;
            }
            s => {
                out.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut path = String::with_capacity(text.len());
    for s in &out {
        path.push('/');
        path.push_str(s);
    }
    if trailing_slash || out.is_empty() {
        path.push('/');
    }
    Ok(Cow::Owned(path))
}

#[cfg(test)]
pub(crate) mod reference;
#[cfg(test)]
mod tests;
