//! Canary and A/B traffic splitting: which version of a destination service gets a request.
//!
//! [`Canary::decide`] is a pure function of the request attributes and a random source: it
//! matches the destination service on `:authority` (and path prefix), then picks a version by
//! incoming cohort, ordered match rules, and the weighted split (sticky bucket or random
//! draw). The cdylib writes the version's cluster into the `cluster_header` the route reads,
//! propagates the cohort, counts, and mirrors.

mod compile;
pub mod config;
#[cfg(test)]
mod tests;

pub use config::CanaryConfig;
use config::TOTAL_WEIGHT_BP;

use crate::rng::Rng;
use crate::{ConfigError, RequestAttributes};
use sha2::{Digest, Sha256};
use std::cell::RefCell;

/// A validated, precompiled canary configuration.
#[derive(Debug, Clone)]
pub struct Canary {
    config: CanaryConfig,
    cluster_header: String,
    services: Vec<ServiceRoute>,
}

/// One destination service, ready for the per-request path.
#[derive(Debug, Clone)]
pub struct ServiceRoute {
    /// Stats name (the configured `name`, else the host).
    pub name: String,
    host: String,
    path_prefix: Option<String>,
    /// In the order of the configuration's `versions` map (sorted by name).
    pub versions: Vec<VersionTarget>,
    stable: usize,
    rules: Vec<(Condition, usize)>,
    /// `(version index, cumulative upper bound in basis points)`.
    split: Vec<(usize, u32)>,
    sticky: Option<(Key, String)>,
    cohort_request: Option<String>,
    cohort_response: Option<String>,
    honour_incoming_cohort: bool,
    pub mirror: Option<MirrorTarget>,
    /// Whether one decision can ask for the same header twice (then reads are cached).
    repeats_headers: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionTarget {
    pub name: String,
    pub cluster: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorTarget {
    pub cluster: String,
    pub percent_bp: u32,
    pub max_body_bytes: u32,
    pub timeout_ms: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Condition {
    Header { name: String, value: Option<String> },
    Cookie { name: String, value: Option<String> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    Header(String),
    Cookie(String),
}

/// Why a version was chosen (for the debug log and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The incoming cohort header named this version.
    Cohort,
    /// `rules[i]` matched.
    Rule(usize),
    /// The sticky key's bucket.
    Sticky(u32),
    /// A random draw (no sticky key configured or present).
    Random(u32),
}

/// What to do with one request of a configured service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<'a> {
    /// Index into [`Canary::services`].
    pub service: usize,
    /// Index into that service's `versions`.
    pub version: usize,
    pub version_name: &'a str,
    /// Write this into [`Canary::cluster_header`].
    pub cluster: &'a str,
    pub reason: Reason,
    /// Write `version_name` into this request header for the next hop.
    pub cohort_request_header: Option<&'a str>,
    /// Write `version_name` into this response header for the caller.
    pub cohort_response_header: Option<&'a str>,
    /// Copy this request to the shadow cluster.
    pub mirror: Option<&'a MirrorTarget>,
}

// === impl Reason ===

impl Reason {
    /// `cohort`, `rule`, `sticky` or `random`, for logs (no `Debug` formatting in the wasm).
    pub fn kind(self) -> &'static str {
        match self {
            Self::Cohort => "cohort",
            Self::Rule(_) => "rule",
            Self::Sticky(_) => "sticky",
            Self::Random(_) => "random",
        }
    }
}

// === impl Canary ===

impl Canary {
    /// Parses and validates; a serde error names the field path (`services[0].splitt`) found
    /// from its line and column.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        Self::new(crate::error::parse_json(bytes)?)
    }

    pub fn new(config: CanaryConfig) -> Result<Self, ConfigError> {
        let services = compile::services(&config)?;
        let cluster_header = config.cluster_header.to_ascii_lowercase();
        Ok(Self {
            config,
            cluster_header,
            services,
        })
    }

    pub fn config(&self) -> &CanaryConfig {
        &self.config
    }

    /// The request header the route reads the cluster from (lower case).
    pub fn cluster_header(&self) -> &str {
        &self.cluster_header
    }

    pub fn services(&self) -> &[ServiceRoute] {
        &self.services
    }

    /// The first configured service this request is for, if any.
    pub fn service_for(&self, req: &dyn RequestAttributes) -> Option<usize> {
        let authority = req.authority()?;
        let host = strip_port(&authority);
        let mut path = None;
        self.services.iter().position(|s| {
            if !s.host.eq_ignore_ascii_case(host) {
                return false;
            }
            match &s.path_prefix {
                None => true,
                Some(prefix) => path
                    .get_or_insert_with(|| req.path())
                    .as_deref()
                    .is_some_and(|p| p.starts_with(prefix.as_str())),
            }
        })
    }

    /// Decide one request: `None` when no configured service matches it (the route's
    /// fallback applies). `rng` is drawn from only for a random split or a mirror sample.
    pub fn decide(&self, req: &dyn RequestAttributes, rng: &mut Rng) -> Option<Decision<'_>> {
        let index = self.service_for(req)?;
        let service = self.services.get(index)?;
        let (version, reason) = service.choose(req, rng);
        let target = service
            .versions
            .get(version)
            .or_else(|| service.versions.get(service.stable))?;
        let mirror = service
            .mirror
            .as_ref()
            .filter(|m| m.percent_bp > 0 && rng.chance_bp(m.percent_bp));
        Some(Decision {
            service: index,
            version,
            version_name: &target.name,
            cluster: &target.cluster,
            reason,
            cohort_request_header: service.cohort_request.as_deref(),
            cohort_response_header: service.cohort_response.as_deref(),
            mirror,
        })
    }
}

// === impl ServiceRoute ===

impl ServiceRoute {
    /// The stable version's index into `versions`.
    pub fn stable(&self) -> usize {
        self.stable
    }

    fn choose(&self, req: &dyn RequestAttributes, rng: &mut Rng) -> (usize, Reason) {
        let req = Headers::new(req, self.repeats_headers);
        if self.honour_incoming_cohort {
            if let Some(version) = self.incoming_cohort(&req) {
                return (version, Reason::Cohort);
            }
        }
        if let Some(i) = self.rules.iter().position(|(c, _)| c.matches(&req)) {
            if let Some((_, version)) = self.rules.get(i) {
                return (*version, Reason::Rule(i));
            }
        }
        let sticky = self
            .sticky
            .as_ref()
            .and_then(|(key, salt)| key.read(&req, |k| bucket(salt, k)));
        let (point, reason) = match sticky {
            Some(b) => (b, Reason::Sticky(b)),
            None => {
                // below(10000) < 2^32, so the conversion never fails.
                let draw = u32::try_from(rng.below(u64::from(TOTAL_WEIGHT_BP))).unwrap_or(0);
                (draw, Reason::Random(draw))
            }
        };
        (pick(&self.split, point).unwrap_or(self.stable), reason)
    }

    /// Whether two of the header reads [`choose`](Self::choose) may make name one header.
    fn repeats_headers(&self) -> bool {
        let cohort = self
            .cohort_request
            .iter()
            .filter(|_| self.honour_incoming_cohort);
        let rules = self.rules.iter().map(|(c, _)| match c {
            Condition::Header { name, .. } => name.as_str(),
            Condition::Cookie { .. } => "cookie",
        });
        let sticky = self.sticky.iter().map(|(key, _)| match key {
            Key::Header(name) => name.as_str(),
            Key::Cookie(_) => "cookie",
        });
        let names: Vec<&str> = cohort
            .map(String::as_str)
            .chain(rules)
            .chain(sticky)
            .collect();
        names
            .iter()
            .enumerate()
            .any(|(i, n)| names.iter().skip(i + 1).any(|m| m == n))
    }

    fn incoming_cohort<'a>(&'a self, req: &Headers<'a>) -> Option<usize> {
        req.with(self.cohort_request.as_deref()?, |value| {
            let value = value?.trim();
            self.versions.iter().position(|v| v.name == value)
        })
    }
}

/// The version owning `point` (0..10000) in a cumulative split.
fn pick(split: &[(usize, u32)], point: u32) -> Option<usize> {
    split
        .iter()
        .find(|(_, bound)| point < *bound)
        .map(|(v, _)| *v)
}

/// Sticky bucket in `0..10000`: the first 8 bytes of `sha256(salt ‖ key)` as a big-endian
/// integer, modulo 10000. Identical on every sidecar, target and restart.
pub fn bucket(salt: &str, key: &str) -> u32 {
    let digest = Sha256::new()
        .chain_update(salt.as_bytes())
        .chain_update(key.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    // The modulo bias of 2^64 mod 10000 is below 10^-15.
    u32::try_from(u64::from_be_bytes(first) % u64::from(TOTAL_WEIGHT_BP)).unwrap_or(0)
}

/// The host part of an `:authority`, without a port (`[::1]:80` -> `[::1]`).
fn strip_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority
            .find(']')
            .map_or(authority, |end| &authority[..=end]);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

/// Request headers as one decision sees them: each read from the host at most once, however
/// many rules (and the sticky key) look at it; `cookie` included. Without repeated names
/// nothing is cached.
struct Headers<'a> {
    req: &'a dyn RequestAttributes,
    read: Option<RefCell<Vec<ReadHeader<'a>>>>,
}

/// A header name and the value the host gave for it.
type ReadHeader<'a> = (&'a str, Option<String>);

impl<'a> Headers<'a> {
    fn new(req: &'a dyn RequestAttributes, cache: bool) -> Self {
        Self {
            req,
            read: cache.then(|| RefCell::new(Vec::new())),
        }
    }

    /// `f` of header `name`'s value.
    fn with<R>(&self, name: &'a str, f: impl FnOnce(Option<&str>) -> R) -> R {
        let Some(read) = &self.read else {
            return f(self.req.header(name).as_deref());
        };
        let mut read = read.borrow_mut();
        if let Some((_, value)) = read.iter().find(|(n, _)| *n == name) {
            return f(value.as_deref());
        }
        let value = self.req.header(name);
        let out = f(value.as_deref());
        read.push((name, value));
        out
    }

    /// `f` of the value of cookie `name` in the `cookie` header(s), quotes removed.
    fn with_cookie<R>(&self, name: &str, f: impl FnOnce(Option<&str>) -> R) -> R {
        self.with("cookie", |header| f(header.and_then(|h| cookie(h, name))))
    }
}

/// The value of cookie `name` in a `cookie` header, quotes removed.
fn cookie<'h>(header: &'h str, name: &str) -> Option<&'h str> {
    header.split([';', ',']).find_map(|pair| {
        let (n, v) = pair.trim().split_once('=')?;
        (n.trim() == name).then(|| v.trim().trim_matches('"'))
    })
}

// === impl Condition ===

impl Condition {
    fn matches<'a>(&'a self, req: &Headers<'a>) -> bool {
        let check = |found: Option<&str>, value: &Option<String>| match (found, value) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(found), Some(want)) => found.trim() == want,
        };
        match self {
            Self::Header { name, value } => req.with(name, |found| check(found, value)),
            Self::Cookie { name, value } => req.with_cookie(name, |found| check(found, value)),
        }
    }
}

// === impl Key ===

impl Key {
    /// `f` of the sticky key, when present and not empty.
    fn read<'a, R>(&'a self, req: &Headers<'a>, f: impl FnOnce(&str) -> R) -> Option<R> {
        let present = |value: Option<&str>| value.filter(|v| !v.is_empty()).map(f);
        match self {
            Self::Header(name) => req.with(name, present),
            Self::Cookie(name) => req.with_cookie(name, present),
        }
    }
}
