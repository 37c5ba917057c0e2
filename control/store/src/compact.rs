//! The snapshot record compaction writes: every version's metadata with its documents stored
//! once each (a version lists the documents it held by index), so history, `history <v>` and
//! rollback keep working for compacted versions while the log stops holding a full copy of
//! the set per version. A document that did not change between versions costs its index.

use crate::{Operation, Record};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use weft_policy::set::DocDiff;
use weft_policy::{DocKey, Document, PolicySet};

/// The payload of a snapshot frame: `{"snapshot": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SnapshotFrame {
    pub snapshot: Compacted,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Compacted {
    /// Every distinct document any of the versions held.
    pub documents: Vec<Document>,
    pub versions: Vec<CompactVersion>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct CompactVersion {
    pub version: u64,
    pub author: String,
    pub time_unix_ms: u64,
    pub operation: Operation,
    pub diff: DocDiff,
    /// Indexes into [`Compacted::documents`].
    pub documents: Vec<usize>,
}

// === impl Compacted ===

impl Compacted {
    pub(crate) fn from_records(records: &[Record]) -> Result<Self, serde_json::Error> {
        let mut index: BTreeMap<String, usize> = BTreeMap::new();
        let mut documents = Vec::new();
        let mut versions = Vec::with_capacity(records.len());
        // Most documents are unchanged from the version before: compared, not serialised.
        let mut previous: BTreeMap<DocKey, (usize, &Document)> = BTreeMap::new();
        for r in records {
            let mut refs = Vec::with_capacity(r.documents.len());
            let mut current = BTreeMap::new();
            for doc in r.documents.iter() {
                let key = doc.key();
                let i = match previous.get(&key) {
                    Some((i, before)) if *before == doc => *i,
                    _ => {
                        let text = serde_json::to_string(doc)?;
                        let next = documents.len();
                        let i = *index.entry(text).or_insert(next);
                        if i == next {
                            documents.push(doc.clone());
                        }
                        i
                    }
                };
                refs.push(i);
                current.insert(key, (i, doc));
            }
            previous = current;
            versions.push(CompactVersion {
                version: r.version,
                author: r.author.clone(),
                time_unix_ms: r.time_unix_ms,
                operation: r.operation.clone(),
                diff: r.diff.clone(),
                documents: refs,
            });
        }
        Ok(Self {
            documents,
            versions,
        })
    }

    /// The records again; an index out of range is named.
    pub(crate) fn into_records(self) -> Result<Vec<Record>, String> {
        let Self {
            documents,
            versions,
        } = self;
        versions
            .into_iter()
            .map(|v| {
                let docs = v
                    .documents
                    .iter()
                    .map(|&i| {
                        documents.get(i).cloned().ok_or_else(|| {
                            format!(
                                "version {} refers to document {i} of {}",
                                v.version,
                                documents.len()
                            )
                        })
                    })
                    .collect::<Result<Vec<Document>, String>>()?;
                Ok(Record {
                    version: v.version,
                    author: v.author,
                    time_unix_ms: v.time_unix_ms,
                    operation: v.operation,
                    diff: v.diff,
                    documents: PolicySet::from_documents(docs),
                })
            })
            .collect()
    }
}
