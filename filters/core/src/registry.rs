//! The one description of every weft filter: its name, its module, the chain side it runs
//! on, what Envoy does when it cannot run, its section of the combined module and its stats
//! prefix. The control plane (compile, ECDS, the bootstrap, the suite) and
//! `scripts/build-filters` (through `weft filters list`) read filters from here, so adding
//! one is adding a row and its [`Filter`] variant.

use serde::Serialize;

/// Which listener chain a filter runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The inbound listener: requests to the sidecar's own service.
    Inbound,
    /// The outbound listener: requests the service makes.
    Outbound,
    /// Both chains (telemetry reports each side).
    Both,
}

/// What Envoy does when the filter's VM fails or its configuration is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    /// Answer 503: the filter guards (authz).
    Closed,
    /// Skip the filter: its absence is safe (canary falls back to stable, no fault, no
    /// breaking, no report).
    Open,
}

/// Every weft filter, in suite order (the order of the combined module's stages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Filter {
    Telemetry,
    Authz,
    Canary,
    Fault,
    Breaker,
}

/// One filter's description.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FilterInfo {
    pub filter: Filter,
    /// The module: `<module>.wasm` in `dist/filters`, the crate `weft-<module>`, the root id,
    /// the VM id and the key of its section in the combined module's configuration.
    pub module: &'static str,
    /// The HTTP filter entry name in the bootstrap and ECDS.
    pub name: &'static str,
    pub side: Side,
    pub failure: Failure,
    /// Every stat the filter defines starts with this.
    pub stats_prefix: &'static str,
    /// Compiled from policies by `weft-compile` (telemetry is configured per group instead).
    pub compiled: bool,
}

/// The combined module (`suite.wasm`): one VM per worker running the stages of a side.
pub const SUITE_MODULE: &str = "suite";
/// The combined module's inbound entry in suite mode (`weft serve --suite`): telemetry and
/// authz.
pub const SUITE_INBOUND: &str = "weft.suite.inbound";
/// Its outbound entry: telemetry, canary, fault and breaker.
pub const SUITE_OUTBOUND: &str = "weft.suite.outbound";

/// Every filter, in suite order.
pub const FILTERS: [FilterInfo; 5] = [
    FilterInfo {
        filter: Filter::Telemetry,
        module: "telemetry",
        name: "weft.telemetry",
        side: Side::Both,
        failure: Failure::Open,
        stats_prefix: "weft.telemetry.",
        compiled: false,
    },
    FilterInfo {
        filter: Filter::Authz,
        module: "authz",
        name: "weft.authz",
        side: Side::Inbound,
        failure: Failure::Closed,
        stats_prefix: "weft.authz.",
        compiled: true,
    },
    FilterInfo {
        filter: Filter::Canary,
        module: "canary",
        name: "weft.canary",
        side: Side::Outbound,
        failure: Failure::Open,
        stats_prefix: "weft.canary.",
        compiled: true,
    },
    FilterInfo {
        filter: Filter::Fault,
        module: "fault",
        name: "weft.fault",
        side: Side::Outbound,
        failure: Failure::Open,
        stats_prefix: "weft.fault.",
        compiled: true,
    },
    FilterInfo {
        filter: Filter::Breaker,
        module: "breaker",
        name: "weft.breaker",
        side: Side::Outbound,
        failure: Failure::Open,
        stats_prefix: "weft.breaker.",
        compiled: true,
    },
];

// === impl Filter ===

impl Filter {
    /// Its description.
    pub const fn info(self) -> &'static FilterInfo {
        // The variants are declared in `FILTERS` order (a test checks it).
        &FILTERS[self as usize]
    }

    pub const fn module(self) -> &'static str {
        self.info().module
    }

    pub const fn name(self) -> &'static str {
        self.info().name
    }

    pub const fn failure(self) -> Failure {
        self.info().failure
    }

    /// `weft.<module>.`: what every stat (and shared-data key) of the filter starts with.
    pub const fn stats_prefix(self) -> &'static str {
        self.info().stats_prefix
    }

    /// One of the filter's stats: its prefix and `name`.
    pub fn stat(self, name: &str) -> String {
        format!("{}{name}", self.stats_prefix())
    }

    /// The filter whose module is `module` (`authz` for `authz.wasm`).
    pub fn from_module(module: &str) -> Option<Filter> {
        FILTERS
            .iter()
            .find(|info| info.module == module)
            .map(|info| info.filter)
    }

    /// Whether it runs on `side` (a filter on both sides runs on each).
    pub fn runs_on(self, side: Side) -> bool {
        let own = self.info().side;
        own == side || own == Side::Both
    }
}

/// The failure mode of the module `module`: the filter's own, the combined module's when it
/// holds a filter that fails closed on that side; a module the registry does not know fails
/// closed (an unknown filter is not known to be safe to skip).
pub fn failure_of_module(module: &str) -> Failure {
    Filter::from_module(module).map_or(Failure::Closed, Filter::failure)
}

/// The failure mode of the combined module on `side`: closed when any of its stages fails
/// closed.
pub fn suite_failure(side: Side) -> Failure {
    if FILTERS
        .iter()
        .any(|info| info.filter.runs_on(side) && info.failure == Failure::Closed)
    {
        Failure::Closed
    } else {
        Failure::Open
    }
}

/// The compiled filters (the sections `weft-compile` emits per sidecar), in suite order.
pub fn compiled() -> impl Iterator<Item = Filter> {
    FILTERS
        .iter()
        .filter(|info| info.compiled)
        .map(|info| info.filter)
}

/// Every module `scripts/build-filters` builds: each filter's and the combined one.
pub fn modules() -> impl Iterator<Item = &'static str> {
    FILTERS
        .iter()
        .map(|info| info.module)
        .chain(std::iter::once(SUITE_MODULE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn variants_index_their_own_row() {
        for (i, info) in FILTERS.iter().enumerate() {
            assert_eq!(info.filter as usize, i, "{:?}", info.filter);
            assert_eq!(info.filter.info(), info);
        }
    }

    #[test]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn names_modules_and_prefixes_follow_the_dist_naming_and_are_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for info in &FILTERS {
            assert!(
                info.module
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_'),
                "{} is not a crate/file name",
                info.module
            );
            assert_eq!(info.name, format!("weft.{}", info.module));
            assert_eq!(info.stats_prefix, format!("weft.{}.", info.module));
            assert!(seen.insert(info.module), "module {} twice", info.module);
            assert_eq!(Filter::from_module(info.module), Some(info.filter));
        }
        assert!(!seen.contains(SUITE_MODULE));
        assert_eq!(
            modules().collect::<Vec<_>>(),
            ["telemetry", "authz", "canary", "fault", "breaker", "suite"]
        );
    }

    #[test]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn the_suite_sections_are_the_stages_in_registry_order() {
        assert_eq!(
            crate::suite::STAGES,
            ["telemetry", "authz", "canary", "fault", "breaker"]
        );
    }

    #[test]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn authz_fails_closed_and_so_does_the_inbound_suite_only() {
        assert_eq!(failure_of_module("authz"), Failure::Closed);
        for module in ["canary", "fault", "breaker", "telemetry"] {
            assert_eq!(failure_of_module(module), Failure::Open, "{module}");
        }
        assert_eq!(failure_of_module("unknown"), Failure::Closed);
        assert_eq!(suite_failure(Side::Inbound), Failure::Closed);
        assert_eq!(suite_failure(Side::Outbound), Failure::Open);
    }

    /// `scripts/build-filters` builds every cdylib under `filters/`: each module must be one,
    /// named as `dist/filters/<module>.wasm` expects (`weft-<module>` builds `weft_<module>.wasm`).
    #[test]
    #[cfg(not(target_arch = "wasm32"))]
    fn every_module_is_a_cdylib_crate_build_filters_finds() {
        let filters = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for module in modules() {
            let manifest = filters.join(module).join("Cargo.toml");
            let text = std::fs::read_to_string(&manifest)
                .unwrap_or_else(|e| panic!("{}: {e}", manifest.display()));
            assert!(
                text.contains(&format!("name = \"weft-{module}\"")),
                "{}",
                manifest.display()
            );
            assert!(
                text.contains("cdylib"),
                "{} is not a cdylib",
                manifest.display()
            );
        }
    }

    #[test]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn sides_and_compiled_filters() {
        let inbound: Vec<Filter> = FILTERS
            .iter()
            .map(|i| i.filter)
            .filter(|f| f.runs_on(Side::Inbound))
            .collect();
        assert_eq!(inbound, [Filter::Telemetry, Filter::Authz]);
        let outbound: Vec<Filter> = FILTERS
            .iter()
            .map(|i| i.filter)
            .filter(|f| f.runs_on(Side::Outbound))
            .collect();
        assert_eq!(
            outbound,
            [
                Filter::Telemetry,
                Filter::Canary,
                Filter::Fault,
                Filter::Breaker
            ]
        );
        assert_eq!(
            compiled().map(Filter::module).collect::<Vec<_>>(),
            ["authz", "canary", "fault", "breaker"]
        );
    }
}
