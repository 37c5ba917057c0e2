//! The call to check, as an operator describes it, and how its names resolve against the
//! declared services. Everything here is untrusted (the API's request body): bounded, and
//! refused with the field and the reason, never a panic.

use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use weft_policy::model::ServiceSpec;
use weft_policy::PolicySet;

use crate::CheckError;

/// Longest path, header value or token accepted (bytes).
pub const MAX_TEXT: usize = 8 * 1024;
/// Most headers one call may carry.
pub const MAX_HEADERS: usize = 64;
/// Longest body accepted (bytes): the most a WAF holds for inspection
/// (`weft_filter_core::waf::config::MAX_INSPECT_BODY_BYTES`).
pub const MAX_BODY_TEXT: usize = weft_filter_core::waf::config::MAX_INSPECT_BODY_BYTES as usize;

/// One call: who calls which service with what.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Call {
    /// The caller: a declared service (`name` or `namespace/name`) or a SPIFFE id. Absent: a
    /// caller without a mesh identity (no mTLS peer, no sidecar of its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The called service (`name` or `namespace/name`).
    pub to: String,
    /// The version the call reaches; absent: what the caller's canary picks when that is
    /// deterministic, else the stable version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default = "default_method")]
    pub method: String,
    /// `:path`, query string included.
    pub path: String,
    /// Request headers in the order sent; a name given twice is a repeated header.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<Header>,
    /// A JWT, sent in the header (and with the prefix) of the target's first JWT provider,
    /// else `authorization: Bearer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<String>,
    /// The address the target's sidecar sees the call from (what `ipBlocks` match).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// The request body (text), for the WAF's body rules; its `content-type` is a header.
    /// `content-length` is added unless given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

fn default_method() -> String {
    "GET".into()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub name: String,
    pub value: String,
}

/// A declared service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Service<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub spec: &'a ServiceSpec,
}

impl Service<'_> {
    /// What callers send in `Host` (the declared host, else the name).
    pub fn host(&self) -> String {
        self.spec
            .host
            .clone()
            .unwrap_or_else(|| self.name.to_string())
    }

    /// The stable version (the declared one, else the first).
    pub fn stable(&self) -> Option<&str> {
        self.spec
            .stable_version
            .as_deref()
            .or_else(|| self.spec.versions.first().map(String::as_str))
    }

    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// The caller as the sidecars see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Caller<'a> {
    /// The SPIFFE id the target's sidecar sees (`None`: no mTLS peer).
    pub principal: Option<String>,
    /// The declared service whose sidecar's outbound filters the call passes.
    pub service: Option<Service<'a>>,
}

// === impl Call ===

impl Call {
    /// Refuses what no real request could carry, naming the field.
    pub fn validate(&self) -> Result<(), CheckError> {
        let bad = |field: &str, reason: &str| Err(CheckError::invalid(field, reason));
        if self.method.is_empty()
            || self.method.len() > 32
            || !self.method.bytes().all(|b| b.is_ascii_alphabetic())
        {
            return bad("method", "must be an HTTP method (letters only, e.g. GET)");
        }
        if self.path.is_empty() || self.path.len() > MAX_TEXT {
            return bad("path", "must be 1 to 8192 bytes");
        }
        if self.path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return bad("path", "must not contain spaces or control characters");
        }
        if self.headers.len() > MAX_HEADERS {
            return bad("headers", "at most 64 headers");
        }
        for (i, h) in self.headers.iter().enumerate() {
            let valid_name = !h.name.is_empty()
                && h.name.len() <= 256
                && h.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !valid_name {
                return bad(
                    &format!("headers[{i}].name"),
                    "must be a header name (token characters; no pseudo-headers)",
                );
            }
            if h.value.len() > MAX_TEXT
                || h.value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0)
            {
                return bad(
                    &format!("headers[{i}].value"),
                    "must be at most 8192 bytes without CR, LF or NUL",
                );
            }
        }
        if let Some(jwt) = &self.jwt {
            if jwt.is_empty() || jwt.len() > MAX_TEXT || jwt.bytes().any(|b| b <= b' ' || b == 0x7f)
            {
                return bad("jwt", "must be one token of at most 8192 bytes, no spaces");
            }
        }
        if self.body.as_ref().is_some_and(|b| b.len() > MAX_BODY_TEXT) {
            return bad("body", "at most 524288 bytes");
        }
        if let Some(ip) = &self.ip {
            if ip.parse::<IpAddr>().is_err() {
                return bad("ip", "must be an IPv4 or IPv6 address");
            }
        }
        for (field, value) in [
            ("from", self.from.as_deref()),
            ("to", Some(self.to.as_str())),
        ] {
            if value.is_some_and(|v| v.is_empty() || v.len() > 512) {
                return bad(field, "must be 1 to 512 bytes");
            }
        }
        Ok(())
    }
}

/// `name` or `namespace/name` among the declared services.
pub(crate) fn service<'a>(
    set: &'a PolicySet,
    text: &str,
    field: &str,
) -> Result<Service<'a>, CheckError> {
    let wanted = |ns: &str, name: &str| match text.split_once('/') {
        Some((n, s)) => n == ns && s == name,
        None => text == name,
    };
    let found: Vec<Service<'a>> = set
        .services()
        .filter(|(ns, name, _)| wanted(ns, name))
        .map(|(namespace, name, spec)| Service {
            namespace,
            name,
            spec,
        })
        .collect();
    let mut found = found.into_iter();
    match (found.next(), found.next()) {
        (Some(one), None) => Ok(one),
        (None, _) => Err(CheckError::NotFound(format!(
            "{field}: no declared Service {text:?}"
        ))),
        (Some(a), Some(b)) => Err(CheckError::invalid(
            field,
            &format!(
                "{text:?} is declared in several namespaces ({}, {}, ...): write namespace/name",
                a.namespace, b.namespace
            ),
        )),
    }
}

/// The caller: a SPIFFE id (its service's sidecar when it names a declared one) or a
/// declared service (its SPIFFE id in `trust_domain`).
pub(crate) fn caller<'a>(
    set: &'a PolicySet,
    from: Option<&str>,
    trust_domain: &str,
) -> Result<Caller<'a>, CheckError> {
    let Some(from) = from else {
        return Ok(Caller {
            principal: None,
            service: None,
        });
    };
    if from.starts_with("spiffe://") {
        let service = spiffe_service(from).and_then(|(ns, name)| {
            set.services().find(|(n, s, _)| *n == ns && *s == name).map(
                |(namespace, name, spec)| Service {
                    namespace,
                    name,
                    spec,
                },
            )
        });
        return Ok(Caller {
            principal: Some(from.to_string()),
            service,
        });
    }
    let service = service(set, from, "from")?;
    Ok(Caller {
        principal: Some(format!(
            "spiffe://{trust_domain}/ns/{}/sa/{}",
            service.namespace, service.name
        )),
        service: Some(service),
    })
}

/// `(namespace, service)` of `spiffe://<td>/ns/<ns>/sa/<service>`.
fn spiffe_service(id: &str) -> Option<(&str, &str)> {
    let rest = id.strip_prefix("spiffe://")?;
    let (_, path) = rest.split_once('/')?;
    let mut parts = path.split('/');
    match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some("ns"), Some(ns), Some("sa"), Some(sa), None) => Some((ns, sa)),
        _ => None,
    }
}
