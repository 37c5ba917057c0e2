//! The CycloneDX 1.5 SBOM (JSON) written beside each module as `<module>.cdx.json`: the
//! module (its SHA-256, target and profile) and every package of its dependency list, with
//! its purl, license and scope (`required`: compiled in; `excluded`: build time only).
//! No timestamp or random serial number, so the same build writes the same bytes.

use serde::{Deserialize, Serialize};

use crate::deps::{DependencyList, Kind, Package, Source};
use crate::SupplyError;

/// The file name beside `<module>.wasm`.
pub fn file_name(module: &str) -> String {
    format!("{module}.cdx.json")
}

/// The largest SBOM read back.
pub const MAX_SBOM_BYTES: u64 = 8 << 20;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bom {
    pub bom_format: String,
    pub spec_version: String,
    pub version: u32,
    pub metadata: BomMetadata,
    #[serde(default)]
    pub components: Vec<Component>,
    #[serde(default)]
    pub dependencies: Vec<Dependency>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BomMetadata {
    pub component: Component,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<Property>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Component {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(rename = "bom-ref")]
    pub bom_ref: String,
    pub name: String,
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purl: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hashes: Vec<Hash>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub licenses: Vec<License>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hash {
    pub alg: String,
    pub content: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct License {
    pub expression: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Property {
    pub name: String,
    pub value: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dependency {
    #[serde(rename = "ref")]
    pub reference: String,
    #[serde(default)]
    pub depends_on: Vec<String>,
}

/// What the SBOM says about the module itself.
pub struct ModuleFacts<'a> {
    /// `authz` for `authz.wasm`.
    pub module: &'a str,
    /// SHA-256 of the final module (dependency section included).
    pub sha256: &'a str,
    pub target: &'a str,
    pub profile: &'a str,
}

// === impl Bom ===

impl Bom {
    pub fn new(list: &DependencyList, facts: &ModuleFacts<'_>) -> Result<Self, SupplyError> {
        let root = list
            .root()
            .ok_or_else(|| SupplyError::invalid("dependency list", "no root package"))?;
        let mut module = component(root, "application");
        module.scope = None;
        module.hashes = vec![Hash {
            alg: "SHA-256".into(),
            content: facts.sha256.to_string(),
        }];
        let properties = [
            ("weft:module", facts.module),
            ("weft:target", facts.target),
            ("weft:profile", facts.profile),
        ]
        .into_iter()
        .map(|(name, value)| Property {
            name: name.into(),
            value: value.into(),
        })
        .collect();
        let refs: Vec<String> = list.packages.iter().map(bom_ref).collect();
        let components = list
            .packages
            .iter()
            .enumerate()
            .filter(|(index, _)| *index != list.root)
            .map(|(_, p)| component(p, "library"))
            .collect();
        let dependencies = list
            .packages
            .iter()
            .zip(&refs)
            .map(|(p, reference)| Dependency {
                reference: reference.clone(),
                depends_on: p
                    .dependencies
                    .iter()
                    .filter_map(|d| refs.get(*d).cloned())
                    .collect(),
            })
            .collect();
        Ok(Self {
            bom_format: "CycloneDX".into(),
            spec_version: "1.5".into(),
            version: 1,
            metadata: BomMetadata {
                component: module,
                properties,
            },
            components,
            dependencies,
        })
    }

    /// Parses an SBOM file's bytes; `origin` (its path) names it in errors.
    pub fn parse(bytes: &[u8], origin: &str) -> Result<Self, SupplyError> {
        let bom: Self = serde_json::from_slice(bytes)
            .map_err(|e| SupplyError::invalid(origin, e.to_string()))?;
        if bom.bom_format != "CycloneDX" {
            return Err(SupplyError::invalid(
                origin,
                format!(
                    "field `bomFormat`: {:?}, expected \"CycloneDX\"",
                    bom.bom_format
                ),
            ));
        }
        Ok(bom)
    }

    /// The module's SHA-256 as recorded (`metadata.component.hashes`).
    pub fn module_sha256(&self) -> Option<&str> {
        self.metadata
            .component
            .hashes
            .iter()
            .find(|h| h.alg == "SHA-256")
            .map(|h| h.content.as_str())
    }

    pub fn property(&self, name: &str) -> Option<&str> {
        self.metadata
            .properties
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.value.as_str())
    }

    pub fn to_json(&self) -> Result<Vec<u8>, SupplyError> {
        let mut out = serde_json::to_vec_pretty(self)
            .map_err(|e| SupplyError::invalid("SBOM", e.to_string()))?;
        out.push(b'\n');
        Ok(out)
    }
}

// === impl Component ===

impl Component {
    /// A crates.io crate (`pkg:cargo/<name>@<version>`, the purl OSV's crates.io ecosystem
    /// names): the only components an advisory for crates.io can match.
    pub fn crates_io(&self) -> Option<(&str, &str)> {
        let rest = self.purl.as_deref()?.strip_prefix("pkg:cargo/")?;
        if rest.contains('?') {
            return None;
        }
        let (name, version) = rest.split_once('@')?;
        Some((name, version))
    }

    pub fn build_time(&self) -> bool {
        self.scope.as_deref() == Some("excluded")
    }
}

fn bom_ref(p: &Package) -> String {
    match &p.source {
        Source::CratesIo => format!("pkg:cargo/{}@{}", p.name, p.version),
        Source::Local => format!("local:{}@{}", p.name, p.version),
        Source::Git(url) | Source::Registry(url) => format!("{url}#{}@{}", p.name, p.version),
    }
}

fn component(p: &Package, kind: &str) -> Component {
    let purl = match &p.source {
        Source::CratesIo => Some(format!("pkg:cargo/{}@{}", p.name, p.version)),
        Source::Git(url) => Some(format!(
            "pkg:cargo/{}@{}?vcs_url={}",
            p.name,
            p.version,
            url.trim_start_matches("git+")
        )),
        Source::Registry(url) => Some(format!(
            "pkg:cargo/{}@{}?repository_url={url}",
            p.name, p.version
        )),
        Source::Local => None,
    };
    Component {
        kind: kind.into(),
        bom_ref: bom_ref(p),
        name: p.name.clone(),
        version: p.version.clone(),
        purl,
        scope: Some(
            match p.kind {
                Kind::Runtime => "required",
                Kind::Build => "excluded",
            }
            .into(),
        ),
        hashes: Vec::new(),
        licenses: p
            .license
            .iter()
            .map(|expression| License {
                expression: expression.clone(),
            })
            .collect(),
    }
}
