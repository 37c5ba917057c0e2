//! Names of the per-edge Envoy stats. Envoy stats carry no labels of their own: the name
//! holds each tag as a `key.value` pair in a fixed order, and the sidecar bootstrap's
//! `stats_config.stats_tags` regexes cut them out again as tags, so `/stats/prometheus`
//! shows `envoy_weft_telemetry_requests{weft_source="exec-portal",...}`.

use super::record::AuthzOutcome;

/// The tag keys, in the order they appear in the name.
pub const STAT_TAGS: [&str; 7] = [
    "reporter",
    "source",
    "destination",
    "version",
    "status",
    "authz",
    "breaker",
];

/// The service a SPIFFE id names (`spiffe://<td>/ns/<ns>/sa/<service>`), else the id.
pub fn service_of_principal(principal: &str) -> &str {
    match principal.rsplit_once("/sa/") {
        Some((_, service)) if !service.is_empty() => service,
        _ => principal,
    }
}

/// `weft.telemetry.reporter.<r>.source.<s>...breaker.<b>` (add `.requests` or
/// `.latency_ms`). Values are made safe as one stat segment.
pub fn edge_stat_prefix(
    reporter: &str,
    source: &str,
    destination: &str,
    version: &str,
    status: u16,
    authz: AuthzOutcome,
    breaker_open: bool,
) -> String {
    let class = match super::status_class(status) {
        0 => "none",
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    };
    let values = [
        reporter,
        source,
        destination,
        if version.is_empty() {
            "stable"
        } else {
            version
        },
        class,
        authz.as_str(),
        if breaker_open { "open" } else { "pass" },
    ];
    let mut name = String::from("weft.telemetry");
    for (key, value) in STAT_TAGS.iter().zip(values) {
        name.push('.');
        name.push_str(key);
        name.push('.');
        if value.is_empty() {
            name.push_str("unknown");
        }
        name.extend(value.chars().map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        }));
    }
    name
}

/// The bootstrap's tag regexes for [`edge_stat_prefix`] names: `(tag name, regex)`. Envoy
/// removes each first capture group from the name and takes the second as the value.
pub fn stat_tag_regexes() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut before = String::from(r"^wasmcustom\.weft\.telemetry\.");
    for key in STAT_TAGS {
        out.push((
            format!("weft_{key}"),
            format!(r"{before}({key}\.([^.]+)\.)"),
        ));
        before.push_str(&format!(r"{key}\.[^.]+\."));
    }
    out
}

/// Tagged stats defined so far, found without building their name: a request on a known
/// combination costs a few string comparisons, a new one builds the name once and asks
/// `define` (the host) for its handle. Bounded: past `cap` combinations, no handle.
#[derive(Debug, Clone)]
pub struct EdgeStats<T> {
    cap: usize,
    entries: Vec<(EdgeStatKey, T)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct EdgeStatKey {
    source: String,
    destination: String,
    version: String,
    class: usize,
    authz: AuthzOutcome,
    breaker_open: bool,
}

impl<T: Copy> EdgeStats<T> {
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            entries: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The handle of this combination's stats (`reporter` is fixed per filter instance).
    #[allow(clippy::too_many_arguments)]
    pub fn get_or_define(
        &mut self,
        reporter: &str,
        source: &str,
        destination: &str,
        version: &str,
        status: u16,
        authz: AuthzOutcome,
        breaker_open: bool,
        define: impl FnOnce(&str) -> T,
    ) -> Option<T> {
        let class = super::status_class(status);
        if let Some((_, handle)) = self.entries.iter().find(|(k, _)| {
            k.class == class
                && k.authz == authz
                && k.breaker_open == breaker_open
                && k.source == source
                && k.destination == destination
                && k.version == version
        }) {
            return Some(*handle);
        }
        if self.entries.len() >= self.cap {
            return None;
        }
        let prefix = edge_stat_prefix(
            reporter,
            source,
            destination,
            version,
            status,
            authz,
            breaker_open,
        );
        let handle = define(&prefix);
        self.entries.push((
            EdgeStatKey {
                source: source.to_string(),
                destination: destination.to_string(),
                version: version.to_string(),
                class,
                authz,
                breaker_open,
            },
            handle,
        ));
        Some(handle)
    }
}
