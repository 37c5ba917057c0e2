//! Explain tokens: an operator's request carrying a short-lived token the control plane
//! minted gets the weft sidecar's decision trace back in a response header.
//!
//! A token is `v1.<namespace>.<service>.<expiry unix s>.<hex HMAC-SHA256>`, the MAC taken
//! over everything before the last `.` under the *service's* key, which the control plane
//! derives from its master key ([`service_key`]) and gives to that service's sidecars only
//! (in their authz configuration). So a token is bound to one service and one expiry, and a
//! sidecar that leaks its key lets an attacker mint tokens for that service alone.
//!
//! Verification is host-free ([`Explain::check`]): bounded length, exact grammar, the
//! service named must be this sidecar's, the MAC compared in constant time, then the expiry
//! (and an expiry further away than [`MAX_TTL_SECS`] is refused: no long-lived token can
//! exist even with a leaked key). Any refusal is silent for the caller (no header), and
//! counted by the filter.

use serde::{Deserialize, Serialize};

use crate::mac::{decode_hex, sign, verify};
use crate::ConfigError;

/// Request header carrying the token; removed before the app sees the request.
pub const TOKEN_HEADER: &str = "x-weft-explain-token";
/// Response header carrying the trace.
pub const TRACE_HEADER: &str = "x-weft-explain";
/// Longest token looked at; anything longer is refused unread.
pub const MAX_TOKEN_BYTES: usize = 400;
/// Longest lifetime a token may have (from now to its expiry).
pub const MAX_TTL_SECS: u64 = 3600;
/// Longest trace header value; longer traces are cut (at a character boundary) and end in `...`.
pub const MAX_TRACE_BYTES: usize = 1024;

const VERSION: &str = "v1";

/// What a sidecar needs to check its service's tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplainConfig {
    pub namespace: String,
    pub service: String,
    /// The service's token key, 32 bytes as 64 hex characters.
    pub key: String,
}

/// A checked [`ExplainConfig`].
#[derive(Clone)]
pub struct Explain {
    pub(crate) namespace: String,
    pub(crate) service: String,
    key: Vec<u8>,
}

impl std::fmt::Debug for Explain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Explain({}/{}, key ..)", self.namespace, self.service)
    }
}

/// Why a token was not honoured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Too long, not the token grammar, or an expiry beyond [`MAX_TTL_SECS`].
    Malformed,
    /// Minted for another service.
    OtherService,
    /// The MAC does not match.
    Forged,
    /// Its expiry has passed.
    Expired,
}

impl Refusal {
    /// The stats name segment.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::OtherService => "other_service",
            Self::Forged => "forged",
            Self::Expired => "expired",
        }
    }

    pub const ALL: [Refusal; 4] = [
        Self::Malformed,
        Self::OtherService,
        Self::Forged,
        Self::Expired,
    ];
}

// === impl Explain ===

impl Explain {
    /// Checks `config`; errors name the field under `at` (e.g. `explain`).
    pub fn new(at: &str, config: &ExplainConfig) -> Result<Self, ConfigError> {
        for (field, value) in [
            ("namespace", &config.namespace),
            ("service", &config.service),
        ] {
            if !is_label(value) {
                return Err(ConfigError::new(
                    format!("{at}.{field}"),
                    "must be a DNS label (a-z 0-9 -, at most 63)",
                ));
            }
        }
        let key = decode_hex(&config.key)
            .filter(|k| k.len() == 32)
            .ok_or_else(|| ConfigError::new(format!("{at}.key"), "must be 64 hex characters"))?;
        Ok(Self {
            namespace: config.namespace.clone(),
            service: config.service.clone(),
            key,
        })
    }

    /// The service this sidecar explains, `namespace/service`.
    pub fn service(&self) -> String {
        format!("{}/{}", self.namespace, self.service)
    }

    /// Is `token` a valid, unexpired token for this service at `now_unix_secs`?
    pub fn check(&self, token: &str, now_unix_secs: u64) -> Result<(), Refusal> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Refusal::Malformed);
        }
        let (signed, mac) = token.rsplit_once('.').ok_or(Refusal::Malformed)?;
        let mut parts = signed.split('.');
        let (Some(VERSION), Some(ns), Some(svc), Some(exp), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(Refusal::Malformed);
        };
        let exp = parse_secs(exp).ok_or(Refusal::Malformed)?;
        if !is_label(ns)
            || !is_label(svc)
            || mac.len() != 64
            || !mac.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(Refusal::Malformed);
        }
        if ns != self.namespace || svc != self.service {
            return Err(Refusal::OtherService);
        }
        if !verify(&self.key, signed.as_bytes(), mac) {
            return Err(Refusal::Forged);
        }
        if exp <= now_unix_secs {
            return Err(Refusal::Expired);
        }
        if exp - now_unix_secs > MAX_TTL_SECS + 60 {
            return Err(Refusal::Malformed);
        }
        Ok(())
    }
}

/// The token key of `namespace/service`, derived from the control plane's `master` key.
pub fn service_key(master: &[u8], namespace: &str, service: &str) -> String {
    sign(
        master,
        format!("weft-explain/{VERSION}/{namespace}/{service}").as_bytes(),
    )
}

/// A token for `namespace/service` valid until `expires_unix_secs`, under `key_hex` (a
/// [`service_key`]). `None` for a key that is not hex.
pub fn mint(
    key_hex: &str,
    namespace: &str,
    service: &str,
    expires_unix_secs: u64,
) -> Option<String> {
    let key = decode_hex(key_hex)?;
    let signed = format!("{VERSION}.{namespace}.{service}.{expires_unix_secs}");
    let mac = sign(&key, signed.as_bytes());
    Some(format!("{signed}.{mac}"))
}

/// `text` as a header value: printable ASCII only (anything else becomes `?`), at most
/// [`MAX_TRACE_BYTES`].
pub fn header_value(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .collect();
    if out.len() > MAX_TRACE_BYTES {
        out.truncate(MAX_TRACE_BYTES - 3);
        out.push_str("...");
    }
    out
}

fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Decimal seconds, 1-12 digits (no sign, no leading `+`).
fn parse_secs(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 12 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests;
