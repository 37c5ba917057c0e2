//! Secrets a policy version carries, and the one way they are shown: `<redacted sha256:HEX>`.
//!
//! A document can hold HS256 secrets (`RequestAuthentication.spec.jwtRules[].hs256Secrets`);
//! the filter configurations compiled from it hold them again (`hs256_secrets`), and each
//! group's telemetry configuration holds its HMAC key (`key` beside `direction`). None of
//! them leaves the control plane through the operator API: every JSON the API returns passes
//! through [`redact_json`], which replaces each secret with [`redact`] of it, the sha256 of
//! the secret's text, so an operator can still tell whether two versions (or the API and a
//! sidecar's `config_dump`) hold the same secret without seeing it. A placeholder given back
//! to `apply` is refused ([`is_redacted`]), never stored as if it were the secret.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Fields whose value is a list of secrets, in documents (camelCase) and filter
/// configurations (snake_case).
pub const SECRET_LIST_FIELDS: [&str; 2] = ["hs256Secrets", "hs256_secrets"];

const PREFIX: &str = "<redacted sha256:";

/// `<redacted sha256:HEX>`, HEX the sha256 of the secret's UTF-8 text.
pub fn redact(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    let mut out = String::with_capacity(PREFIX.len() + 65);
    out.push_str(PREFIX);
    for b in digest {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out.push('>');
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Whether `value` is a placeholder made by [`redact`] (or looks like one).
pub fn is_redacted(value: &str) -> bool {
    value.trim().starts_with(PREFIX)
}

/// Replaces every secret in `value` with its redaction, wherever it sits: elements of a
/// [`SECRET_LIST_FIELDS`] list, the `key` of a telemetry configuration (an object with both
/// `direction` and `key`) or of an explain configuration (`namespace`, `service`, `key`), and the same inside a filter configuration that travels as JSON
/// text (a `configuration` string, re-serialised only when it held a secret). Already
/// redacted values are left alone. Returns whether anything was replaced.
pub fn redact_json(value: &mut Value) -> bool {
    let mut changed = false;
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Value::Array(items) => stack.extend(items.iter_mut()),
            Value::Object(map) => {
                // A telemetry configuration (`direction`) or an explain configuration
                // (`namespace` + `service`): its `key` string is a signing key.
                let telemetry = map.contains_key("direction")
                    || (map.contains_key("namespace") && map.contains_key("service"));
                for (name, field) in map.iter_mut() {
                    let secret = SECRET_LIST_FIELDS.contains(&name.as_str())
                        || (telemetry && name == "key" && field.is_string());
                    if secret {
                        changed |= redact_strings(field);
                    } else if let (true, Value::String(text)) = (name == "configuration", &*field) {
                        if let Some(redacted) = redact_json_text(text) {
                            *field = Value::String(redacted);
                            changed = true;
                        }
                    } else {
                        stack.push(field);
                    }
                }
            }
            _ => {}
        }
    }
    changed
}

/// [`redact_json`] on a JSON text: the redacted text, or `None` when it held no secret (or is
/// not JSON, and so cannot hold a field).
pub fn redact_json_text(text: &str) -> Option<String> {
    let mut value = serde_json::from_str::<Value>(text).ok()?;
    if redact_json(&mut value) {
        serde_json::to_string(&value).ok()
    } else {
        None
    }
}

fn redact_strings(value: &mut Value) -> bool {
    match value {
        Value::String(s) if !s.is_empty() && !is_redacted(s) => {
            *s = redact(s);
            true
        }
        Value::Array(items) => items.iter_mut().fold(false, |c, v| redact_strings(v) | c),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn redaction_is_the_digest_of_the_text() {
        // sha256("abc")
        assert_eq!(
            redact("abc"),
            "<redacted sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad>"
        );
        assert!(is_redacted(&redact("x")));
        assert!(!is_redacted("0123456789abcdef0123456789abcdef"));
    }

    #[test]
    fn every_secret_field_is_redacted_and_nothing_else() {
        let s = "a-secret-of-at-least-32-bytes-long!";
        let mut v = json!({
            "spec": {"jwtRules": [{"issuer": "i", "hs256Secrets": [s, s]}]},
            "providers": [{"keys": {"hs256_secrets": [s]}}],
            "telemetry": {"direction": "inbound", "key": "0a0b", "service": "s"},
            "explain": {"namespace": "n", "service": "s", "key": "0c0d"},
            "canary": {"sticky": {"key": {"header": "x-user"}}},
            "key": "not-a-secret"
        });
        assert!(redact_json(&mut v));
        let text = v.to_string();
        assert!(!text.contains(s), "{text}");
        assert_eq!(
            v["spec"]["jwtRules"][0]["hs256Secrets"][1],
            json!(redact(s))
        );
        assert_eq!(
            v["providers"][0]["keys"]["hs256_secrets"][0],
            json!(redact(s))
        );
        assert_eq!(v["telemetry"]["key"], json!(redact("0a0b")));
        assert_eq!(v["explain"]["key"], json!(redact("0c0d")));
        assert_eq!(v["canary"]["sticky"]["key"]["header"], "x-user");
        assert_eq!(v["key"], "not-a-secret");
        // Idempotent: a second pass does not digest the digest.
        let once = v.clone();
        assert!(!redact_json(&mut v));
        assert_eq!(v, once);
        // A filter configuration as JSON text: redacted inside, left verbatim without secrets.
        let plain = json!({"rules": []}).to_string();
        let mut view = json!({"filters": [
            {"configuration": json!({"keys": {"hs256_secrets": [s]}}).to_string()},
            {"configuration": plain},
        ]});
        assert!(redact_json(&mut view));
        let t = view["filters"][0]["configuration"].as_str().unwrap();
        assert!(t.contains(&redact(s)) && !t.contains(s), "{t}");
        assert_eq!(view["filters"][1]["configuration"], json!(plain));
    }

    /// The filter configuration types the control plane emits put their secrets where
    /// [`redact_json`] looks: a renamed field fails here, not in production.
    #[test]
    fn the_filter_configuration_types_are_covered() {
        use weft_filter_core::telemetry::TelemetryConfig;
        let config = TelemetryConfig {
            key: "00112233445566778899aabbccddeeff".into(),
            ..TelemetryConfig::default()
        };
        let mut v = serde_json::to_value(&config).unwrap();
        assert!(redact_json(&mut v));
        assert_eq!(v["key"], json!(redact("00112233445566778899aabbccddeeff")));
        let keys = weft_filter_core::authz::config::JwtKeys {
            hs256_secrets: vec!["k".repeat(32)],
            jwks: None,
        };
        let mut v = json!({ "keys": keys });
        assert!(redact_json(&mut v));
        assert!(!v.to_string().contains(&"k".repeat(32)), "{v}");
    }
}
