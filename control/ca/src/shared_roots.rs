//! The CA's roots as one document of shared state (replicas over etcd): every root's info,
//! certificate and private key sealed with the KEK. A rotation is a compare-and-swap on the
//! document, so two replicas rotating at once cannot both add a root; every replica reloads
//! the document when it changes ([`crate::Ca::reload`]).

use std::path::PathBuf;
use std::sync::atomic::AtomicI64;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use weft_store::SharedState;

use crate::kek::{Kek, Sealed};
use crate::root::{root_from_pem, Root, RootInfo};
use crate::CaError;

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Document {
    pub(crate) roots: Vec<DocumentRoot>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct DocumentRoot {
    pub(crate) info: RootInfo,
    cert_pem: String,
    pub(crate) key: Sealed,
}

/// Where root `generation`'s key of document `name` is sealed for (the AEAD binds it there).
pub(crate) fn place(name: &str, generation: u64) -> String {
    format!("{name}/root-{generation}")
}

pub(crate) struct SharedRoots {
    state: Arc<dyn SharedState>,
    name: String,
    kek: Arc<Kek>,
    /// The document's revision the CA's roots were read from (0: none yet).
    pub(crate) revision: AtomicI64,
}

impl SharedRoots {
    pub(crate) fn new(state: Arc<dyn SharedState>, name: &str, kek: Arc<Kek>) -> Self {
        Self {
            state,
            name: name.to_string(),
            kek,
            revision: AtomicI64::new(0),
        }
    }

    pub(crate) fn describe(&self) -> String {
        self.state.describe(&self.name)
    }

    fn place(&self, generation: u64) -> String {
        place(&self.name, generation)
    }

    pub(crate) fn seal(&self, generation: u64, key_pem: &str) -> Result<Sealed, CaError> {
        self.kek.seal(key_pem.as_bytes(), &self.place(generation))
    }

    fn corrupt(&self, reason: String) -> CaError {
        CaError::Corrupt {
            path: PathBuf::from(self.describe()),
            reason,
        }
    }

    /// The roots and the document's revision, when the revision is not `held` any more.
    pub(crate) fn read(&self, held: i64) -> Result<Option<(Vec<Root>, i64)>, CaError> {
        let Some(doc) = self.state.read(&self.name).map_err(shared)? else {
            return Ok(None);
        };
        if doc.revision == held {
            return Ok(None);
        }
        let parsed: Document = serde_json::from_slice(&doc.bytes)
            .map_err(|e| self.corrupt(format!("not a roots document: {e}")))?;
        let mut roots = Vec::with_capacity(parsed.roots.len());
        for (i, root) in parsed.roots.into_iter().enumerate() {
            let generation = root.info.generation;
            if i > 0
                && roots
                    .last()
                    .is_some_and(|r: &Root| r.info.generation >= generation)
            {
                return Err(self.corrupt(format!("roots[{i}]: generations out of order")));
            }
            let key = self.kek.open(&root.key, &self.place(generation))?;
            let key_pem = String::from_utf8(key)
                .map_err(|_| self.corrupt(format!("roots[{i}].key: not PEM text")))?;
            let place = PathBuf::from(format!("{} roots[{i}]", self.describe()));
            roots.push(root_from_pem(
                root.info,
                root.cert_pem,
                &key_pem,
                Some(root.key),
                &place,
            )?);
        }
        Ok(Some((roots, doc.revision)))
    }

    /// Writes `roots` (their infos replaced by `infos`, `new` last) if the document is still
    /// at `expected`; the new revision, or `None` when another replica wrote first.
    pub(crate) fn write(
        &self,
        roots: &[Root],
        infos: &[RootInfo],
        new: &Root,
        expected: i64,
    ) -> Result<Option<i64>, CaError> {
        let mut document = Document { roots: Vec::new() };
        for (root, info) in roots.iter().chain(std::iter::once(new)).zip(infos) {
            let key = root
                .sealed
                .clone()
                .ok_or_else(|| self.corrupt("a root without a sealed key".into()))?;
            document.roots.push(DocumentRoot {
                info: info.clone(),
                cert_pem: root.cert_pem.clone(),
                key,
            });
        }
        let bytes = serde_json::to_vec(&document).map_err(|e| self.corrupt(e.to_string()))?;
        self.state
            .write(&self.name, bytes, expected)
            .map_err(shared)
    }
}

/// A shared-state failure (etcd unreachable, a bad record) as the CA reports it.
pub(crate) fn shared(error: weft_store::StoreError) -> CaError {
    CaError::Shared(error.to_string())
}
