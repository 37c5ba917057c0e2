//! The full set of documents one policy version holds.

use crate::model::{DocKey, Document, Kind, ServiceSpec, Spec};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Documents by key; iteration order is the key order, so everything derived from a set
/// (compiled configurations, diffs, JSON) is deterministic.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicySet {
    docs: BTreeMap<DocKey, Document>,
}

/// Which documents differ between two sets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocDiff {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
}

impl DocDiff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

// === impl PolicySet ===

impl PolicySet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Later documents with the same key replace earlier ones.
    pub fn from_documents(docs: impl IntoIterator<Item = Document>) -> Self {
        let mut set = Self::new();
        for doc in docs {
            set.insert(doc);
        }
        set
    }

    pub fn insert(&mut self, doc: Document) -> Option<Document> {
        self.docs.insert(doc.key(), doc)
    }

    pub fn remove(&mut self, key: &DocKey) -> Option<Document> {
        self.docs.remove(key)
    }

    pub fn get(&self, key: &DocKey) -> Option<&Document> {
        self.docs.get(key)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Document> {
        self.docs.values()
    }

    pub fn keys(&self) -> impl Iterator<Item = &DocKey> {
        self.docs.keys()
    }

    pub fn len(&self) -> usize {
        self.docs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    pub fn of_kind(&self, kind: Kind) -> impl Iterator<Item = &Document> {
        self.docs.values().filter(move |d| d.kind() == kind)
    }

    /// The declared service `namespace/name`.
    pub fn service(&self, namespace: &str, name: &str) -> Option<&ServiceSpec> {
        let key = DocKey {
            kind: Kind::Service,
            namespace: namespace.to_string(),
            name: name.to_string(),
        };
        match self.docs.get(&key).map(|d| &d.spec) {
            Some(Spec::Service(s)) => Some(s),
            _ => None,
        }
    }

    /// Every declared service as `(namespace, name, spec)`.
    pub fn services(&self) -> impl Iterator<Item = (&str, &str, &ServiceSpec)> {
        self.docs.values().filter_map(|d| match &d.spec {
            Spec::Service(s) => Some((d.namespace(), d.metadata.name.as_str(), s)),
            _ => None,
        })
    }

    pub fn documents(&self) -> Vec<Document> {
        self.docs.values().cloned().collect()
    }

    /// What changes going from `self` to `next`.
    pub fn diff(&self, next: &PolicySet) -> DocDiff {
        let mut diff = DocDiff::default();
        for (key, doc) in &next.docs {
            match self.docs.get(key) {
                None => diff.added.push(key.to_string()),
                Some(old) if old != doc => diff.changed.push(key.to_string()),
                Some(_) => {}
            }
        }
        diff.removed = self
            .docs
            .keys()
            .filter(|k| !next.docs.contains_key(*k))
            .map(ToString::to_string)
            .collect();
        diff
    }
}

impl Serialize for PolicySet {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.docs.values())
    }
}

impl<'de> Deserialize<'de> for PolicySet {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Self::from_documents(Vec::<Document>::deserialize(
            deserializer,
        )?))
    }
}
