//! OSV advisories (<https://ossf.github.io/osv-schema/>) for the crates.io ecosystem, read
//! from a directory of JSON files (RustSec publishes its database in this format), and
//! matched against the components of a module's SBOM.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::sbom::Bom;
use crate::version::Version;
use crate::SupplyError;

const MAX_ADVISORY_BYTES: u64 = 4 << 20;
const MAX_ADVISORY_FILES: usize = 100_000;
const MAX_DEPTH: usize = 4;

/// One advisory (only what matching needs).
#[derive(Clone, Debug, Deserialize)]
pub struct Advisory {
    pub id: String,
    #[serde(default)]
    pub summary: Option<String>,
    #[serde(default)]
    pub withdrawn: Option<String>,
    #[serde(default)]
    pub affected: Vec<Affected>,
    /// The file it was read from.
    #[serde(skip)]
    pub file: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Affected {
    pub package: AffectedPackage,
    #[serde(default)]
    pub ranges: Vec<Range>,
    #[serde(default)]
    pub versions: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct AffectedPackage {
    pub ecosystem: String,
    pub name: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Range {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub events: Vec<Event>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Event {
    #[serde(default)]
    pub introduced: Option<String>,
    #[serde(default)]
    pub fixed: Option<String>,
    #[serde(default)]
    pub last_affected: Option<String>,
}

/// One crate version of one module named by one advisory.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    pub advisory: String,
    pub summary: String,
    pub package: String,
    pub version: String,
    /// The lowest fixed version above `version`, when the advisory names one.
    pub fixed: Option<String>,
    /// The crate ran at build time only (build script, proc-macro).
    pub build_time: bool,
}

/// Every advisory of a directory (`*.json`, in subdirectories too), sorted by id.
pub fn load_dir(dir: &Path) -> Result<Vec<Advisory>, SupplyError> {
    let mut files = Vec::new();
    collect(dir, 0, &mut files)?;
    files.sort();
    let mut advisories = Vec::with_capacity(files.len());
    for file in files {
        let origin = file.display().to_string();
        let bytes = crate::read_limited(&file, MAX_ADVISORY_BYTES)?;
        let mut advisory: Advisory = serde_json::from_slice(&bytes)
            .map_err(|e| SupplyError::invalid(&origin, e.to_string()))?;
        advisory.file = origin;
        advisory.check()?;
        advisories.push(advisory);
    }
    advisories.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(advisories)
}

fn collect(dir: &Path, depth: usize, files: &mut Vec<PathBuf>) -> Result<(), SupplyError> {
    let io = |source| SupplyError::Io {
        path: dir.display().to_string(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.is_dir() {
            if depth < MAX_DEPTH {
                collect(&path, depth + 1, files)?;
            }
        } else if path.extension().is_some_and(|e| e == "json") {
            files.push(path);
            if files.len() > MAX_ADVISORY_FILES {
                return Err(SupplyError::invalid(
                    dir.display().to_string(),
                    format!("more than {MAX_ADVISORY_FILES} advisory files"),
                ));
            }
        }
    }
    Ok(())
}

// === impl Advisory ===

impl Advisory {
    /// Every crates.io version field parses: a typo in a range must not make an advisory
    /// match nothing.
    fn check(&self) -> Result<(), SupplyError> {
        if self.id.trim().is_empty() {
            return Err(SupplyError::invalid(&self.file, "field `id`: empty"));
        }
        for (a, affected) in self.affected.iter().enumerate() {
            if affected.package.ecosystem != "crates.io" {
                continue;
            }
            let field = |rest: String| format!("field `affected[{a}].{rest}`");
            for (v, text) in affected.versions.iter().enumerate() {
                if Version::parse(text).is_none() {
                    return Err(SupplyError::invalid(
                        &self.file,
                        format!(
                            "{}: {text:?} is not a version",
                            field(format!("versions[{v}]"))
                        ),
                    ));
                }
            }
            for (r, range) in affected.ranges.iter().enumerate() {
                if range.kind == "GIT" {
                    continue;
                }
                for (e, event) in range.events.iter().enumerate() {
                    for (key, value) in [
                        ("introduced", &event.introduced),
                        ("fixed", &event.fixed),
                        ("last_affected", &event.last_affected),
                    ] {
                        let Some(text) = value else { continue };
                        if key == "introduced" && text == "0" {
                            continue;
                        }
                        if Version::parse(text).is_none() {
                            return Err(SupplyError::invalid(
                                &self.file,
                                format!(
                                    "{}: {text:?} is not a version",
                                    field(format!("ranges[{r}].events[{e}].{key}"))
                                ),
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// When `name@version` (a crates.io crate) is affected: the fixed version to move to,
    /// if any (`Some(None)`: affected, no fix known).
    pub fn affects(&self, name: &str, version: &str) -> Option<Option<String>> {
        if self.withdrawn.is_some() {
            return None;
        }
        let version = Version::parse(version)?;
        let mut hit = None;
        for affected in &self.affected {
            if affected.package.ecosystem != "crates.io" || affected.package.name != name {
                continue;
            }
            let listed = affected
                .versions
                .iter()
                .filter_map(|v| Version::parse(v))
                .any(|v| v == version);
            let mut fixed = None;
            let in_range = affected
                .ranges
                .iter()
                .filter(|r| r.kind == "SEMVER" || r.kind == "ECOSYSTEM")
                .any(|range| {
                    let (affected, fix) = range_affects(range, &version);
                    if affected {
                        fixed = fix;
                    }
                    affected
                });
            if listed || in_range {
                hit = Some(fixed.or(hit.flatten()));
            }
        }
        hit
    }
}

/// OSV's evaluation of one range: events in version order, `introduced` opens, `fixed`
/// and (past it) `last_affected` close. Returns whether `version` is inside and the fixed
/// version of the interval it is in.
fn range_affects(range: &Range, version: &Version) -> (bool, Option<String>) {
    let zero = Version::parse("0.0.0-0");
    let mut events: Vec<(Version, &str, &str)> = range
        .events
        .iter()
        .filter_map(|e| {
            let (key, text) = match (&e.introduced, &e.fixed, &e.last_affected) {
                (Some(t), _, _) => ("introduced", t.as_str()),
                (_, Some(t), _) => ("fixed", t.as_str()),
                (_, _, Some(t)) => ("last_affected", t.as_str()),
                _ => return None,
            };
            let parsed = if text == "0" {
                zero.clone()
            } else {
                Version::parse(text)
            };
            parsed.map(|v| (v, key, text))
        })
        .collect();
    events.sort_by(|a, b| a.0.cmp(&b.0));
    let mut affected = false;
    for (at, key, _) in &events {
        match *key {
            "introduced" if version >= at => affected = true,
            "fixed" if version >= at => affected = false,
            "last_affected" if version > at => affected = false,
            _ => {}
        }
    }
    let fixed = affected
        .then(|| {
            events
                .iter()
                .find(|(at, key, _)| *key == "fixed" && at > version)
                .map(|(_, _, text)| (*text).to_string())
        })
        .flatten();
    (affected, fixed)
}

/// The findings for one module's SBOM, sorted by package then advisory.
pub fn findings(bom: &Bom, advisories: &[Advisory]) -> Vec<Finding> {
    let mut out = Vec::new();
    for component in &bom.components {
        let Some((name, version)) = component.crates_io() else {
            continue;
        };
        for advisory in advisories {
            if let Some(fixed) = advisory.affects(name, version) {
                out.push(Finding {
                    advisory: advisory.id.clone(),
                    summary: advisory.summary.clone().unwrap_or_default(),
                    package: name.to_string(),
                    version: version.to_string(),
                    fixed,
                    build_time: component.build_time(),
                });
            }
        }
    }
    out.sort_by(|a, b| (&a.package, &a.advisory).cmp(&(&b.package, &b.advisory)));
    out.dedup();
    out
}

#[cfg(test)]
mod tests;
