//! A snapshot: every resource one group of sidecars should have, checked for consistency
//! before anyone can see it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, OnceLock};

use envoy_types::pb::envoy::config::cluster::v3::{cluster::ClusterDiscoveryType, Cluster};
use prost::Message;

use crate::resource::{content_version, type_url, Resource};

/// Why a snapshot was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnapshotError {
    #[error("{type_url}: a resource has an empty name")]
    EmptyName { type_url: String },
    #[error("{type_url}: resource {name:?} appears twice")]
    Duplicate { type_url: String, name: String },
    #[error("cluster {0:?} cannot be decoded")]
    BadCluster(String),
    #[error("EDS cluster {cluster:?} has no ClusterLoadAssignment {service:?}")]
    MissingEndpoints { cluster: String, service: String },
}

/// Resources by type URL and name, plus the revision of the policy they were compiled from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// The policy revision (store version) these resources come from; what `weft apply`
    /// waits for sidecars to acknowledge.
    pub revision: u64,
    /// A handful of types, sorted by type URL, looked up by `==`: type URLs share a
    /// 26-byte prefix, which an ordered map compares on every step, while their lengths
    /// mostly differ (D102).
    types: Vec<TypeResources>,
    /// ECDS resource name -> the module it runs: (name, SHA-256). What a sidecar that
    /// acknowledged the resource runs (`weft status`, `weft module audit`).
    modules: BTreeMap<String, (String, String)>,
    /// `modules_of` every ECDS resource, made once and shared: each sidecar of the group
    /// subscribes to all of them and records the map when it syncs (D104).
    all_modules: Memo<Arc<BTreeMap<String, String>>>,
    /// The selections streams asked for, made once each: the sidecars of a group subscribe
    /// alike, so at 10,000 sidecars in 20 groups each selection serves ~500 streams (D104).
    selections: Memo<Mutex<Vec<Remembered>>>,
}

/// A selection made: its type URL, its subscription (`None`: wildcard) and what it selects.
type Remembered = (String, Option<BTreeSet<String>>, Arc<Selection>);

/// What one subscription selects in a snapshot, and its content version (what a SotW
/// response carries as `version_info`).
#[derive(Debug, PartialEq)]
pub struct Selection {
    pub resources: Arc<[Resource]>,
    pub version: String,
    /// For a selection of filter entries (ECDS): the modules they run, made once
    /// ([`Snapshot::modules_of_selection`]) and shared by every stream that selects alike.
    modules: Memo<Arc<BTreeMap<String, String>>>,
}

/// The most selections a snapshot remembers: enough for every subscription shape of its
/// group's sidecars; past it (sidecars subscribing to arbitrary names) each is made anew.
const MAX_SELECTIONS: usize = 64;

/// A value computed at most once from the rest of the snapshot: it takes no part in
/// comparing snapshots (two equal snapshots are equal whether either computed it yet), and a
/// copy of the snapshot computes its own (a copy may be changed).
#[derive(Debug, Default)]
struct Memo<T>(OnceLock<T>);

impl<T> Clone for Memo<T> {
    fn clone(&self) -> Self {
        Self(OnceLock::new())
    }
}

impl<T> PartialEq for Memo<T> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// The resources of one type.
#[derive(Clone, Debug, Default, PartialEq)]
struct TypeResources {
    type_url: String,
    /// A content version of all the type's resources (names and versions): equal in two
    /// snapshots exactly when the type's resources are, so a stream can tell that its
    /// selection cannot have changed without selecting again (`SotwConnection`).
    version: String,
    resources: BTreeMap<String, Resource>,
}

// === impl Snapshot ===

impl Snapshot {
    /// Builds and checks a snapshot: names unique and non-empty, every EDS cluster has its
    /// endpoints.
    pub fn new(
        revision: u64,
        by_type: impl IntoIterator<Item = (String, Vec<Resource>)>,
    ) -> Result<Self, SnapshotError> {
        let mut types: BTreeMap<String, BTreeMap<String, Resource>> = BTreeMap::new();
        for (type_url, resources) in by_type {
            let entry = types.entry(type_url.clone()).or_default();
            for resource in resources {
                if resource.name.is_empty() {
                    return Err(SnapshotError::EmptyName { type_url });
                }
                if entry.contains_key(&resource.name) {
                    return Err(SnapshotError::Duplicate {
                        type_url,
                        name: resource.name,
                    });
                }
                entry.insert(resource.name.clone(), resource);
            }
        }
        let types = types
            .into_iter()
            .map(|(type_url, resources)| {
                let parts: Vec<&[u8]> = resources
                    .values()
                    .flat_map(|r| [r.name.as_bytes(), r.version.as_bytes()])
                    .collect();
                let version = content_version(&parts);
                TypeResources {
                    type_url,
                    version,
                    resources,
                }
            })
            .collect();
        let snapshot = Self {
            revision,
            types,
            modules: BTreeMap::new(),
            all_modules: Memo::default(),
            selections: Memo::default(),
        };
        snapshot.check_endpoints()?;
        Ok(snapshot)
    }

    /// Records which module (name, SHA-256) each ECDS resource runs.
    pub fn with_modules(mut self, modules: BTreeMap<String, (String, String)>) -> Self {
        self.modules = modules;
        self.all_modules = Memo::default();
        self
    }

    /// The modules (name -> SHA-256) of the named ECDS resources.
    /// When the names are every ECDS resource with a module (a sidecar of the group, as a
    /// rule), the one shared map.
    pub fn modules_of<'a>(
        &self,
        ecds_names: impl IntoIterator<Item = &'a str> + Clone,
    ) -> Arc<BTreeMap<String, String>> {
        let mut count = 0;
        let every = ecds_names.clone().into_iter().all(|name| {
            count += 1;
            self.modules.contains_key(name)
        });
        if every && count == self.modules.len() {
            return Arc::clone(
                self.all_modules
                    .0
                    .get_or_init(|| Arc::new(self.modules.values().cloned().collect())),
            );
        }
        Arc::new(
            ecds_names
                .into_iter()
                .filter_map(|name| self.modules.get(name))
                .cloned()
                .collect(),
        )
    }

    /// [`modules_of`](Self::modules_of) the entries of `selection` (one of this snapshot's),
    /// made once per selection: a synced sidecar's modules are recorded on every ACK round,
    /// and a map made per stream was built and freed 10,000 times per apply.
    pub fn modules_of_selection(&self, selection: &Selection) -> Arc<BTreeMap<String, String>> {
        Arc::clone(
            selection.modules.0.get_or_init(|| {
                self.modules_of(selection.resources.iter().map(|r| r.name.as_str()))
            }),
        )
    }

    fn of_type(&self, type_url: &str) -> Option<&TypeResources> {
        self.types.iter().find(|t| t.type_url == type_url)
    }

    /// The resources of one type (empty when the snapshot has none).
    pub fn resources(&self, type_url: &str) -> impl Iterator<Item = &Resource> {
        self.of_type(type_url)
            .into_iter()
            .flat_map(|t| t.resources.values())
    }

    /// Whether the snapshot speaks for this type at all. A type it does not hold is not
    /// answered (Envoy keeps what it has), which differs from holding it with no resources
    /// (for CDS: remove every cluster).
    pub fn has_type(&self, type_url: &str) -> bool {
        self.of_type(type_url).is_some()
    }

    pub fn get(&self, type_url: &str, name: &str) -> Option<&Resource> {
        self.of_type(type_url).and_then(|t| t.resources.get(name))
    }

    /// The content version of all resources of `type_url` (`TypeResources::version`).
    pub fn type_version(&self, type_url: &str) -> Option<&str> {
        self.of_type(type_url).map(|t| t.version.as_str())
    }

    /// The resources a subscription selects: all of the type (`None`, wildcard) or the named
    /// ones that exist.
    pub fn select<'a>(
        &'a self,
        type_url: &str,
        names: Option<&BTreeSet<String>>,
    ) -> Vec<&'a Resource> {
        let Some(TypeResources { resources, .. }) = self.of_type(type_url) else {
            return Vec::new();
        };
        match names {
            None => resources.values().collect(),
            Some(names) => names
                .iter()
                .filter_map(|name| resources.get(name))
                .collect(),
        }
    }

    /// [`select`](Self::select) with the selection's content version, shared by every
    /// stream that subscribes alike.
    pub fn selection(&self, type_url: &str, names: Option<&BTreeSet<String>>) -> Arc<Selection> {
        let memo = self.selections.0.get_or_init(Mutex::default);
        let same = |(t, n, _): &&Remembered| t == type_url && n.as_ref() == names;
        if let Some((_, _, found)) = memo
            .lock()
            .ok()
            .as_deref()
            .and_then(|m| m.iter().find(same))
        {
            return Arc::clone(found);
        }
        let selected = self.select(type_url, names);
        let parts: Vec<&[u8]> = selected
            .iter()
            .flat_map(|r| [r.name.as_bytes(), r.version.as_bytes()])
            .collect();
        let selection = Arc::new(Selection {
            version: content_version(&parts),
            resources: selected.into_iter().cloned().collect(),
            modules: Memo::default(),
        });
        if let Ok(mut memo) = memo.lock() {
            if memo.len() < MAX_SELECTIONS {
                memo.push((type_url.to_string(), names.cloned(), Arc::clone(&selection)));
            }
        }
        selection
    }

    fn check_endpoints(&self) -> Result<(), SnapshotError> {
        for resource in self.resources(type_url::CLUSTER) {
            let cluster = Cluster::decode(resource.body.value.as_slice())
                .map_err(|_| SnapshotError::BadCluster(resource.name.clone()))?;
            let is_eds = matches!(
                cluster.cluster_discovery_type,
                Some(ClusterDiscoveryType::Type(t)) if t == envoy_types::pb::envoy::config::cluster::v3::cluster::DiscoveryType::Eds as i32
            );
            if !is_eds {
                continue;
            }
            let service = cluster
                .eds_cluster_config
                .as_ref()
                .map(|c| c.service_name.clone())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| cluster.name.clone());
            if self.get(type_url::ENDPOINT, &service).is_none() {
                return Err(SnapshotError::MissingEndpoints {
                    cluster: cluster.name,
                    service,
                });
            }
        }
        Ok(())
    }
}
