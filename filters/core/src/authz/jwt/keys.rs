//! Verification keys: HS256 secrets and a JWKS document of RSA / EC P-256 keys,
//! parsed once at configuration time.

use super::rsa::RsaPublicKey;
use super::{b64, Alg};
use crate::authz::config::JwtKeys;
use crate::ConfigError;
use hmac::{Hmac, Mac};
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::EncodedPoint;
use serde_json::{Map, Value};
use sha2::Sha256;

/// RFC 7518 §3.2: an HS256 key must be at least as long as the hash output.
const MIN_HS256_SECRET: usize = 32;

#[derive(Debug, Clone)]
pub(crate) struct Key {
    pub(crate) kid: Option<String>,
    material: Material,
}

#[derive(Debug, Clone)]
enum Material {
    Hs256(Vec<u8>),
    Rs256(Box<RsaPublicKey>),
    Es256(VerifyingKey),
}

// === impl Key ===

impl Key {
    pub(crate) fn alg(&self) -> Alg {
        match self.material {
            Material::Hs256(_) => Alg::Hs256,
            Material::Rs256(_) => Alg::Rs256,
            Material::Es256(_) => Alg::Es256,
        }
    }

    pub(crate) fn verify(&self, signing_input: &[u8], sig: &[u8]) -> bool {
        match &self.material {
            Material::Hs256(secret) => Hmac::<Sha256>::new_from_slice(secret)
                .map(|mac| mac.chain_update(signing_input).verify_slice(sig).is_ok())
                .unwrap_or(false),
            Material::Rs256(key) => key.verify_sha256(signing_input, sig),
            Material::Es256(key) => {
                Signature::from_slice(sig).is_ok_and(|sig| key.verify(signing_input, &sig).is_ok())
            }
        }
    }
}

/// Compiles `jwt[i].keys`; `at` is that path.
pub(crate) fn compile(at: &str, keys: &JwtKeys) -> Result<Vec<Key>, ConfigError> {
    let mut out = Vec::new();
    for (k, secret) in keys.hs256_secrets.iter().enumerate() {
        if secret.len() < MIN_HS256_SECRET {
            return Err(ConfigError::new(
                format!("{at}.hs256_secrets[{k}]"),
                format!("HS256 secret must be at least {MIN_HS256_SECRET} bytes (RFC 7518 §3.2)"),
            ));
        }
        out.push(Key {
            kid: None,
            material: Material::Hs256(secret.as_bytes().to_vec()),
        });
    }
    if let Some(jwks) = &keys.jwks {
        let at = format!("{at}.jwks");
        let parsed;
        let doc = match jwks {
            Value::String(text) => {
                parsed = serde_json::from_str::<Value>(text)
                    .map_err(|e| ConfigError::new(&at, format!("not valid JSON: {e}")))?;
                &parsed
            }
            other => other,
        };
        let Some(list) = doc.get("keys").and_then(Value::as_array) else {
            return Err(ConfigError::new(
                at,
                r#"not a JWKS document: expected {"keys": [...]}"#,
            ));
        };
        for (k, jwk) in list.iter().enumerate() {
            let at = format!("{at}.keys[{k}]");
            let jwk = jwk
                .as_object()
                .ok_or_else(|| ConfigError::new(&at, "a JWK must be an object"))?;
            out.push(parse_jwk(&at, jwk)?);
        }
    }
    if out.is_empty() {
        return Err(ConfigError::new(
            at,
            "no verification keys: set hs256_secrets or jwks",
        ));
    }
    Ok(out)
}

fn parse_jwk(at: &str, jwk: &Map<String, Value>) -> Result<Key, ConfigError> {
    let str_member = |name: &str| -> Result<Option<&str>, ConfigError> {
        match jwk.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(ConfigError::new(format!("{at}.{name}"), "must be a string")),
        }
    };
    let required = |name: &str| -> Result<&str, ConfigError> {
        str_member(name)?.ok_or_else(|| ConfigError::new(format!("{at}.{name}"), "missing"))
    };
    let bytes = |name: &str| -> Result<Vec<u8>, ConfigError> {
        b64(required(name)?)
            .ok_or_else(|| ConfigError::new(format!("{at}.{name}"), "not base64url (no padding)"))
    };
    if let Some(usage) = str_member("use")? {
        if usage != "sig" {
            return Err(ConfigError::new(
                format!("{at}.use"),
                format!("{usage:?} keys cannot verify tokens"),
            ));
        }
    }
    let kty = required("kty")?;
    let (material, alg) = match kty {
        "RSA" => {
            let key = RsaPublicKey::new(&bytes("n")?, &bytes("e")?)
                .map_err(|e| ConfigError::new(at, e))?;
            (Material::Rs256(Box::new(key)), "RS256")
        }
        "EC" => {
            let crv = required("crv")?;
            if crv != "P-256" {
                return Err(ConfigError::new(
                    format!("{at}.crv"),
                    format!("unsupported curve {crv:?}, expected P-256"),
                ));
            }
            let (x, y) = (bytes("x")?, bytes("y")?);
            if x.len() != 32 || y.len() != 32 {
                return Err(ConfigError::new(
                    at,
                    "P-256 coordinates x and y must be 32 bytes each",
                ));
            }
            let point = EncodedPoint::from_affine_coordinates(
                x.as_slice().into(),
                y.as_slice().into(),
                false,
            );
            let key = VerifyingKey::from_encoded_point(&point)
                .map_err(|_| ConfigError::new(at, "x, y is not a point on P-256"))?;
            (Material::Es256(key), "ES256")
        }
        other => {
            return Err(ConfigError::new(
                format!("{at}.kty"),
                format!("unknown key type {other:?}, expected RSA or EC"),
            ))
        }
    };
    if let Some(a) = str_member("alg")? {
        if a != alg {
            return Err(ConfigError::new(
                format!("{at}.alg"),
                format!("unsupported alg {a:?} for a {kty} key, expected {alg}"),
            ));
        }
    }
    Ok(Key {
        kid: str_member("kid")?.map(str::to_string),
        material,
    })
}
