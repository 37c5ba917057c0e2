//! A module's dependency list from `cargo metadata --filter-platform <target>`: every package
//! reachable from the module's crate, each marked runtime (its code is in the module) or
//! build (a build script or proc-macro ran while compiling it). The same list becomes the
//! SBOM and the embedded section.

use std::collections::{BTreeMap, VecDeque};

use serde::Deserialize;

use crate::SupplyError;

/// How a package reaches the module.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// Compiled into the module.
    Runtime,
    /// Ran at build time only (build scripts, proc-macros and what they use). A compromised
    /// build-time crate can still write code into the module, so advisories count for both.
    Build,
}

/// Where a package comes from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    CratesIo,
    /// A path in the workspace (weft's own crates).
    Local,
    Git(String),
    Registry(String),
}

/// One package of the list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub source: Source,
    pub kind: Kind,
    /// SPDX expression from its manifest, when it has one.
    pub license: Option<String>,
    /// Indices into [`DependencyList::packages`].
    pub dependencies: Vec<usize>,
}

/// The packages of one module, sorted by (name, version, source); `root` is the module's crate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DependencyList {
    pub packages: Vec<Package>,
    pub root: usize,
}

#[derive(Deserialize)]
struct Metadata {
    packages: Vec<MetaPackage>,
    resolve: Option<Resolve>,
}

#[derive(Deserialize)]
struct MetaPackage {
    id: String,
    name: String,
    version: String,
    source: Option<String>,
    license: Option<String>,
    #[serde(default)]
    targets: Vec<MetaTarget>,
}

#[derive(Deserialize)]
struct MetaTarget {
    #[serde(default)]
    kind: Vec<String>,
}

#[derive(Deserialize)]
struct Resolve {
    nodes: Vec<Node>,
}

#[derive(Deserialize)]
struct Node {
    id: String,
    #[serde(default)]
    deps: Vec<NodeDep>,
}

#[derive(Deserialize)]
struct NodeDep {
    pkg: String,
    #[serde(default)]
    dep_kinds: Vec<DepKind>,
}

#[derive(Deserialize)]
struct DepKind {
    /// `null` (normal), `"dev"` or `"build"`.
    kind: Option<String>,
}

// === impl DependencyList ===

impl DependencyList {
    /// The list of package `root_name` from `cargo metadata --format-version 1
    /// --filter-platform <target>` output (already filtered to the target, so dependencies of
    /// other platforms are absent). Dev-dependencies are left out.
    pub fn from_metadata(metadata: &[u8], root_name: &str) -> Result<Self, SupplyError> {
        let origin = "cargo metadata";
        let metadata: Metadata = serde_json::from_slice(metadata)
            .map_err(|e| SupplyError::invalid(origin, e.to_string()))?;
        let resolve = metadata
            .resolve
            .ok_or_else(|| SupplyError::invalid(origin, "no `resolve` (run without --no-deps)"))?;
        let packages: BTreeMap<&str, &MetaPackage> = metadata
            .packages
            .iter()
            .map(|p| (p.id.as_str(), p))
            .collect();
        let nodes: BTreeMap<&str, &Node> =
            resolve.nodes.iter().map(|n| (n.id.as_str(), n)).collect();
        let root = metadata
            .packages
            .iter()
            .find(|p| p.name == root_name && p.source.is_none())
            .ok_or_else(|| {
                SupplyError::invalid(origin, format!("no workspace package {root_name:?}"))
            })?;
        // Breadth first, runtime edges before build ones, so a package reached both ways
        // is runtime.
        let mut kinds: BTreeMap<&str, Kind> = BTreeMap::new();
        let mut edges: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        let mut queue = VecDeque::from([(root.id.as_str(), Kind::Runtime)]);
        while let Some((id, kind)) = queue.pop_front() {
            match kinds.get(id) {
                Some(seen) if *seen <= kind => continue,
                _ => {}
            }
            kinds.insert(id, kind);
            let node = nodes.get(id).ok_or_else(|| {
                SupplyError::invalid(
                    origin,
                    format!("package {id:?} is not in the resolve graph"),
                )
            })?;
            let mut children = Vec::new();
            for dep in &node.deps {
                let normal = dep.dep_kinds.iter().any(|k| k.kind.is_none());
                let build = dep
                    .dep_kinds
                    .iter()
                    .any(|k| k.kind.as_deref() == Some("build"));
                if !normal && !build {
                    continue;
                }
                let proc_macro = packages.get(dep.pkg.as_str()).is_some_and(|p| {
                    p.targets
                        .iter()
                        .any(|t| t.kind.iter().any(|k| k == "proc-macro"))
                });
                let child = if kind == Kind::Runtime && normal && !proc_macro {
                    Kind::Runtime
                } else {
                    Kind::Build
                };
                children.push(dep.pkg.as_str());
                if child == Kind::Runtime {
                    queue.push_front((dep.pkg.as_str(), child));
                } else {
                    queue.push_back((dep.pkg.as_str(), child));
                }
            }
            edges.insert(id, children);
        }
        let mut ids: Vec<&str> = kinds.keys().copied().collect();
        let source_of = |p: &MetaPackage| source(p.source.as_deref());
        ids.sort_by_key(|id| {
            packages
                .get(id)
                .map(|p| (p.name.clone(), p.version.clone(), source_of(p)))
        });
        let index: BTreeMap<&str, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        let mut list = Vec::with_capacity(ids.len());
        for id in &ids {
            let package = packages.get(id).ok_or_else(|| {
                SupplyError::invalid(origin, format!("package {id:?} is not in `packages`"))
            })?;
            let mut dependencies: Vec<usize> = edges
                .get(id)
                .into_iter()
                .flatten()
                .filter_map(|d| index.get(d).copied())
                .collect();
            dependencies.sort_unstable();
            dependencies.dedup();
            list.push(Package {
                name: package.name.clone(),
                version: package.version.clone(),
                source: source_of(package),
                kind: kinds.get(id).copied().unwrap_or(Kind::Build),
                license: package.license.clone(),
                dependencies,
            });
        }
        let root = index.get(root.id.as_str()).copied().unwrap_or(0);
        Ok(Self {
            packages: list,
            root,
        })
    }

    pub fn root(&self) -> Option<&Package> {
        self.packages.get(self.root)
    }
}

fn source(text: Option<&str>) -> Source {
    match text {
        None => Source::Local,
        Some(s)
            if s == "registry+https://github.com/rust-lang/crates.io-index"
                || s == "sparse+https://index.crates.io/" =>
        {
            Source::CratesIo
        }
        Some(s) if s.starts_with("git+") => Source::Git(s.to_string()),
        Some(s) => Source::Registry(s.to_string()),
    }
}

#[cfg(test)]
mod tests;
