//! JWT validation (HS256, RS256, ES256) against the configured providers.
//!
//! Every failure is a value, never a panic: tokens come straight from the network.

mod keys;
mod rsa;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod tests;

use super::compile::header_name;
use super::config::JwtProvider;
use crate::ConfigError;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::fmt;

/// Longest token accepted; real ones are a few KiB, Envoy caps headers anyway.
const MAX_TOKEN_LEN: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Alg {
    Hs256,
    Rs256,
    Es256,
}

/// Why a token was refused. Only ever logged; the client sees a generic 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtError {
    Malformed,
    UnsupportedAlg,
    BadSignature,
    Expired,
    NotYetValid,
    /// No `exp` claim while the provider requires one.
    MissingExpiry,
    WrongIssuer,
    WrongAudience,
}

impl fmt::Display for JwtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Malformed => "malformed token",
            Self::UnsupportedAlg => "unsupported alg",
            Self::BadSignature => "signature does not verify",
            Self::Expired => "token expired",
            Self::NotYetValid => "token not yet valid (nbf)",
            Self::MissingExpiry => "token has no exp",
            Self::WrongIssuer => "issuer mismatch",
            Self::WrongAudience => "audience mismatch",
        })
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    /// RFC 7515 §4.1.11: extensions we do not understand must be refused.
    #[serde(default)]
    crit: Option<Value>,
}

/// A compiled `jwt[i]` provider.
#[derive(Debug, Clone)]
pub(crate) struct Provider {
    pub(crate) name: String,
    pub(crate) issuer: String,
    audiences: Vec<String>,
    /// Lower-case.
    pub(crate) header: String,
    prefix: String,
    pub(crate) required: bool,
    require_exp: bool,
    skew: u64,
    keys: Vec<keys::Key>,
}

pub(crate) fn b64(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

// === impl Provider ===

impl Provider {
    /// `at` is `jwt[i]`.
    pub(crate) fn compile(at: &str, p: &JwtProvider) -> Result<Self, ConfigError> {
        if p.issuer.trim().is_empty() {
            return Err(ConfigError::new(
                format!("{at}.issuer"),
                "must not be empty",
            ));
        }
        if let Some(k) = p.audiences.iter().position(|a| a.is_empty()) {
            return Err(ConfigError::new(
                format!("{at}.audiences[{k}]"),
                "must not be empty",
            ));
        }
        let header = header_name(&p.from_header)
            .map_err(|e| ConfigError::new(format!("{at}.from_header"), e))?;
        Ok(Self {
            name: p.name.clone(),
            issuer: p.issuer.clone(),
            audiences: p.audiences.clone(),
            header,
            prefix: p.prefix.clone(),
            required: p.required,
            require_exp: p.require_exp,
            skew: p.clock_skew_seconds,
            keys: keys::compile(&format!("{at}.keys"), &p.keys)?,
        })
    }

    /// The token in a header value, if it carries this provider's prefix (ASCII
    /// case-insensitive, as auth schemes are). A value without it is not our token.
    pub(crate) fn extract<'h>(&self, value: &'h str) -> Option<&'h str> {
        let value = value.trim();
        // `Bearer ` with nothing after it reaches us trimmed: an empty, hence invalid, token.
        if !self.prefix.is_empty() && value.eq_ignore_ascii_case(self.prefix.trim_end()) {
            return Some("");
        }
        let head = value.get(..self.prefix.len())?;
        if !head.eq_ignore_ascii_case(&self.prefix) {
            return None;
        }
        value.get(self.prefix.len()..).map(str::trim)
    }

    /// Validates a token and returns its claims.
    pub(crate) fn validate(&self, token: &str, now: u64) -> Result<Map<String, Value>, JwtError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(JwtError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };
        let header: Header = b64(h)
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(JwtError::Malformed)?;
        if header.crit.is_some() {
            return Err(JwtError::Malformed);
        }
        let alg = match header.alg.as_str() {
            "HS256" => Alg::Hs256,
            "RS256" => Alg::Rs256,
            "ES256" => Alg::Es256,
            _ => return Err(JwtError::UnsupportedAlg),
        };
        let sig = b64(s).ok_or(JwtError::Malformed)?;
        let signing_input = token
            .get(..h.len() + 1 + p.len())
            .ok_or(JwtError::Malformed)?;
        let verified = self
            .keys
            .iter()
            .filter(|k| k.alg() == alg)
            .filter(|k| match (&header.kid, &k.kid) {
                (Some(want), Some(have)) => want == have,
                _ => true,
            })
            .any(|k| k.verify(signing_input.as_bytes(), &sig));
        if !verified {
            return Err(JwtError::BadSignature);
        }
        let claims: Map<String, Value> = b64(p)
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(JwtError::Malformed)?;
        self.check_claims(&claims, now)?;
        Ok(claims)
    }

    fn check_claims(&self, claims: &Map<String, Value>, now: u64) -> Result<(), JwtError> {
        let time = |name: &str| -> Result<Option<f64>, JwtError> {
            claims
                .get(name)
                .map(|v| v.as_f64().ok_or(JwtError::Malformed))
                .transpose()
        };
        // f64 holds every plausible timestamp exactly; it also accepts fractional ones.
        let (now, skew) = (now as f64, self.skew as f64);
        match time("exp")? {
            Some(exp) if now > exp + skew => return Err(JwtError::Expired),
            None if self.require_exp => return Err(JwtError::MissingExpiry),
            _ => {}
        }
        if time("nbf")?.is_some_and(|nbf| now + skew < nbf) {
            return Err(JwtError::NotYetValid);
        }
        if claims.get("iss").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return Err(JwtError::WrongIssuer);
        }
        if !self.audiences.is_empty() {
            let accepted = |v: &Value| {
                v.as_str()
                    .is_some_and(|a| self.audiences.iter().any(|x| x == a))
            };
            let ok = match claims.get("aud") {
                Some(Value::Array(auds)) => auds.iter().any(accepted),
                Some(aud) => accepted(aud),
                None => false,
            };
            if !ok {
                return Err(JwtError::WrongAudience);
            }
        }
        Ok(())
    }
}

/// The unverified `iss` of a token: only used to route a token to the provider that
/// should verify it when several providers read the same header.
pub(crate) fn peek_issuer(token: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Iss {
        iss: Option<String>,
    }
    let payload = token.split('.').nth(1)?;
    serde_json::from_slice::<Iss>(&b64(payload)?).ok()?.iss
}
