//! The CA side of the xDS state: the SVID of each registered identity (namespace, service),
//! when it is due for renewal, and the trust bundle. Signing is slow (a key pair and a
//! signature each), so the index lock is never held while signing: under the lock the state
//! says what is due ([`SvidState::due`]), the caller drops the lock and signs
//! ([`SignRequest::sign`]), then re-takes the lock and installs ([`SvidState::install`]),
//! which keeps only what is still wanted (same CA, identity still registered, nothing fresher
//! installed meanwhile).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::resource::Resource;
use crate::sds::{secret_resources, IdentitySecrets};
use crate::sidecar::SidecarGroup;

/// (namespace, service).
pub(crate) type IdentityKey = (String, String);

/// The SVIDs issued per identity, each with the time (unix ms) it is due for renewal.
pub(crate) struct SvidState {
    pub(crate) authority: Arc<weft_ca::Identity>,
    svids: BTreeMap<IdentityKey, (weft_ca::Svid, u64)>,
    bundle: String,
}

/// Identities to sign for, taken under the lock and signed without it.
pub(crate) struct SignRequest {
    authority: Arc<weft_ca::Identity>,
    keys: Vec<IdentityKey>,
}

/// What [`SignRequest::sign`] produced (failures are logged and left out).
pub(crate) struct Signed {
    authority: Arc<weft_ca::Identity>,
    svids: Vec<(IdentityKey, weft_ca::Svid)>,
}

// === impl SvidState ===

impl SvidState {
    pub(crate) fn new(authority: Arc<weft_ca::Identity>) -> Self {
        Self {
            bundle: authority.ca.trust_bundle(),
            authority,
            svids: BTreeMap::new(),
        }
    }

    /// Fresh: before its renewal time and signed by the root that signs now.
    fn fresh(&self, key: &IdentityKey, now_ms: u64) -> bool {
        let signing = self.authority.ca.signing_generation();
        self.svids
            .get(key)
            .is_some_and(|(svid, renew_at)| now_ms < *renew_at && svid.root_generation == signing)
    }

    /// The identities of `present` without an SVID (`renewals`: or whose SVID is not fresh).
    pub(crate) fn due(
        &self,
        present: &BTreeSet<IdentityKey>,
        renewals: bool,
        now_ms: u64,
    ) -> Option<SignRequest> {
        let keys: Vec<IdentityKey> = present
            .iter()
            .filter(|key| match self.svids.contains_key(*key) {
                false => true,
                true => renewals && !self.fresh(key, now_ms),
            })
            .cloned()
            .collect();
        (!keys.is_empty()).then(|| SignRequest {
            authority: Arc::clone(&self.authority),
            keys,
        })
    }

    /// Whether `key` has an SVID (fresh or not).
    pub(crate) fn has(&self, key: &IdentityKey) -> bool {
        self.svids.contains_key(key)
    }

    /// Installs what was signed while the lock was not held, keeping only what is still
    /// wanted: signed by this CA (not one replaced meanwhile), for an identity in `present`,
    /// and not over an SVID that became fresh meanwhile (another stream signed first).
    /// Drops the SVIDs of identities no longer present and picks up a trust-bundle change.
    /// Returns whether anything changed.
    pub(crate) fn install(
        &mut self,
        signed: Option<Signed>,
        present: &BTreeSet<IdentityKey>,
        now_ms: u64,
    ) -> bool {
        let before = self.svids.len();
        self.svids.retain(|key, _| present.contains(key));
        let mut changed = self.svids.len() != before;
        let bundle = self.authority.ca.trust_bundle();
        if bundle != self.bundle {
            self.bundle = bundle;
            changed = true;
        }
        let Some(signed) = signed else {
            return changed;
        };
        if !Arc::ptr_eq(&signed.authority, &self.authority) {
            return changed;
        }
        for (key, svid) in signed.svids {
            if !present.contains(&key) || self.fresh(&key, now_ms) {
                continue;
            }
            let lifetime = svid.not_after_ms.saturating_sub(now_ms);
            let renew_at = now_ms.saturating_add(lifetime / 2);
            self.svids.insert(key, (svid, renew_at));
            changed = true;
        }
        changed
    }

    /// The group's identity secrets; none when its identity has no SVID (its TLS contexts
    /// wait for them).
    pub(crate) fn secrets(&self, group: &SidecarGroup) -> Vec<Resource> {
        let key = (group.namespace.clone(), group.service.clone());
        let Some((svid, _)) = self.svids.get(&key) else {
            return Vec::new();
        };
        secret_resources(&IdentitySecrets {
            spiffe_id: svid.spiffe_id.clone(),
            cert_chain_pem: svid.cert_chain_pem.clone(),
            key_pem: svid.key_pem.clone(),
            trust_bundle_pem: self.bundle.clone(),
        })
    }
}

// === impl SignRequest ===

impl SignRequest {
    /// A request for one identity.
    pub(crate) fn one(authority: Arc<weft_ca::Identity>, key: IdentityKey) -> Self {
        Self {
            authority,
            keys: vec![key],
        }
    }

    /// Signs every identity asked for. Slow: call without the index lock.
    pub(crate) fn sign(self) -> Signed {
        let svids = self
            .keys
            .into_iter()
            .filter_map(|(namespace, service)| {
                match self.authority.ca.issue(&namespace, &service) {
                    Ok(svid) => {
                        tracing::info!(spiffe_id = %svid.spiffe_id, serial = %svid.serial, root = svid.root_generation, "issued an SVID");
                        Some(((namespace, service), svid))
                    }
                    Err(error) => {
                        tracing::error!(identity = %format!("{namespace}/{service}"), %error, "cannot issue an SVID");
                        None
                    }
                }
            })
            .collect();
        Signed {
            authority: self.authority,
            svids,
        }
    }
}

#[cfg(test)]
mod tests;
