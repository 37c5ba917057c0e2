//! Per-group telemetry keys: HMAC-SHA256(secret, "namespace/service/version"). The secret
//! is made at start and never leaves the process; each group's key goes only into that
//! group's own telemetry filter configuration (ECDS serves a group only its own filters).
//! A restart makes a new secret, and every sidecar gets its new key with its next filter
//! configuration (sidecars reconnect, so at once).
//!
//! The same value carries the explain master key when `weft serve` has one (kept in its data
//! dir, so tokens outlive a restart): each *service* gets its own token key derived from it
//! ([`GroupKeys::explain_key_hex`]), in its sidecars' authz configuration only.

use hmac::{Hmac, Mac};
use sha2::Sha256;

#[derive(Clone)]
pub struct GroupKeys {
    secret: Vec<u8>,
    explain_master: Option<Vec<u8>>,
}

impl std::fmt::Debug for GroupKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GroupKeys(..)")
    }
}

impl GroupKeys {
    pub fn new(secret: Vec<u8>) -> Self {
        Self {
            secret,
            explain_master: None,
        }
    }

    /// These keys, also deriving explain token keys from `master`.
    pub fn with_explain_master(mut self, master: Vec<u8>) -> Self {
        self.explain_master = Some(master);
        self
    }

    /// The explain token key of `namespace/service` (hex), when there is a master key.
    pub fn explain_key_hex(&self, namespace: &str, service: &str) -> Option<String> {
        let master = self.explain_master.as_deref()?;
        Some(weft_filter_core::explain::service_key(
            master, namespace, service,
        ))
    }

    /// 32 bytes from the OS.
    pub fn random() -> std::io::Result<Self> {
        use std::io::Read;
        let mut secret = vec![0u8; 32];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut secret)?;
        Ok(Self::new(secret))
    }

    pub fn key(&self, namespace: &str, service: &str, version: &str) -> Vec<u8> {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.secret) else {
            return Vec::new();
        };
        mac.update(format!("{namespace}/{service}/{version}").as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    /// The key as the filter configuration carries it (hex).
    pub fn key_hex(&self, namespace: &str, service: &str, version: &str) -> String {
        self.key(namespace, service, version)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}
