//! Per-group telemetry keys: HMAC-SHA256(secret, "namespace/service/version"). The secret
//! is made at start and never leaves the process; each group's key goes only into that
//! group's own telemetry filter configuration (ECDS serves a group only its own filters).
//! A restart makes a new secret, and every sidecar gets its new key with its next filter
//! configuration (sidecars reconnect, so at once).

use hmac::{Hmac, Mac};
use sha2::Sha256;

#[derive(Clone)]
pub struct GroupKeys {
    secret: Vec<u8>,
}

impl std::fmt::Debug for GroupKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GroupKeys(..)")
    }
}

impl GroupKeys {
    pub fn new(secret: Vec<u8>) -> Self {
        Self { secret }
    }

    /// 32 bytes from the OS.
    pub fn random() -> std::io::Result<Self> {
        use std::io::Read;
        let mut secret = vec![0u8; 32];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut secret)?;
        Ok(Self { secret })
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
