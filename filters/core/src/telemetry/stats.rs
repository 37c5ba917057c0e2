//! Names of the per-edge Envoy stats. Envoy stats carry no labels of their own: the name
//! holds each tag as a `key.value` pair in a fixed order, and the sidecar bootstrap's
//! `stats_config.stats_tags` regexes cut them out again as tags, so `/stats/prometheus`
//! shows `envoy_weft_telemetry_requests{weft_source="exec-portal",...}`.

use super::record::{AuthzOutcome, Record};

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

/// The tags of one edge's stats: who reported, the caller's service (for inbound reports the
/// service its SPIFFE id names, not the id) and the finished request.
#[derive(Debug, Clone, Copy)]
pub struct EdgeTags<'a> {
    /// `inbound` or `outbound` (fixed per filter instance).
    pub reporter: &'a str,
    pub source: &'a str,
    pub record: &'a Record<'a>,
}

/// `weft.telemetry.reporter.<r>.source.<s>...breaker.<b>` (add `.requests` or
/// `.latency_ms`). Values are made safe as one stat segment.
pub fn edge_stat_prefix(tags: &EdgeTags<'_>) -> String {
    let class = match super::status_class(tags.record.status) {
        0 => "none",
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    };
    let values = [
        tags.reporter,
        tags.source,
        tags.record.destination,
        if tags.record.version.is_empty() {
            "stable"
        } else {
            tags.record.version
        },
        class,
        tags.record.authz.as_str(),
        if tags.record.failed_fast() {
            "open"
        } else {
            "pass"
        },
    ];
    let mut name = String::from(crate::registry::Filter::Telemetry.stats_prefix());
    for (i, (key, value)) in STAT_TAGS.iter().zip(values).enumerate() {
        if i > 0 {
            name.push('.');
        }
        name.push_str(key);
        name.push('.');
        if value.is_empty() {
            name.push_str("unknown");
        }
        crate::push_stat_segment(&mut name, value);
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
    pub fn get_or_define(
        &mut self,
        tags: &EdgeTags<'_>,
        define: impl FnOnce(&str) -> T,
    ) -> Option<T> {
        let class = super::status_class(tags.record.status);
        if let Some((_, handle)) = self.entries.iter().find(|(k, _)| {
            k.class == class
                && k.authz == tags.record.authz
                && k.breaker_open == tags.record.failed_fast()
                && k.source == tags.source
                && k.destination == tags.record.destination
                && k.version == tags.record.version
        }) {
            return Some(*handle);
        }
        if self.entries.len() >= self.cap {
            return None;
        }
        let handle = define(&edge_stat_prefix(tags));
        self.entries.push((
            EdgeStatKey {
                source: tags.source.to_string(),
                destination: tags.record.destination.to_string(),
                version: tags.record.version.to_string(),
                class,
                authz: tags.record.authz,
                breaker_open: tags.record.failed_fast(),
            },
            handle,
        ));
        Some(handle)
    }
}
