//! Validation of a [`CanaryConfig`] into the precompiled form the per-request path uses.

use super::config::{CanaryConfig, KeySource, MatchRule, Service, ValueMatch, TOTAL_WEIGHT_BP};
use super::{Condition, Key, MirrorTarget, ServiceRoute, VersionTarget};
use crate::ConfigError;
use std::collections::BTreeMap;

pub(super) fn services(config: &CanaryConfig) -> Result<Vec<ServiceRoute>, ConfigError> {
    header_name(&config.cluster_header).map_err(|e| ConfigError::new("cluster_header", e))?;
    header_name(&config.claim_header_prefix)
        .map_err(|e| ConfigError::new("claim_header_prefix", e))?;
    let mut seen_names: BTreeMap<String, usize> = BTreeMap::new();
    let mut seen_matches: BTreeMap<(String, Option<String>), usize> = BTreeMap::new();
    let mut out = Vec::with_capacity(config.services.len());
    for (i, s) in config.services.iter().enumerate() {
        let at = format!("services[{i}]");
        let compiled = service(&at, &config.claim_header_prefix, s)?;
        if let Some(first) = seen_names.insert(compiled.name.clone(), i) {
            let field = if s.name.is_some() { "name" } else { "host" };
            return Err(ConfigError::new(
                format!("{at}.{field}"),
                format!(
                    "service name `{}` is also used by services[{first}] (set `name`)",
                    compiled.name
                ),
            ));
        }
        let key = (compiled.host.clone(), compiled.path_prefix.clone());
        if let Some(first) = seen_matches.insert(key, i) {
            return Err(ConfigError::new(
                format!("{at}.host"),
                format!(
                    "same host and path_prefix as services[{first}]: this entry could never match"
                ),
            ));
        }
        out.push(compiled);
    }
    Ok(out)
}

fn service(at: &str, claim_prefix: &str, s: &Service) -> Result<ServiceRoute, ConfigError> {
    let host = s.host.trim().to_ascii_lowercase();
    if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '/' || c.is_control()) {
        return Err(ConfigError::new(
            format!("{at}.host"),
            "must be a host name without spaces or `/`",
        ));
    }
    if let Some(prefix) = &s.path_prefix {
        if !prefix.starts_with('/') {
            return Err(ConfigError::new(
                format!("{at}.path_prefix"),
                "must start with `/`",
            ));
        }
    }
    let name = s.name.clone().unwrap_or_else(|| host.clone());
    if name.is_empty() {
        return Err(ConfigError::new(format!("{at}.name"), "must not be empty"));
    }
    if s.versions.is_empty() {
        return Err(ConfigError::new(
            format!("{at}.versions"),
            "must name at least one version",
        ));
    }
    let mut versions = Vec::with_capacity(s.versions.len());
    for (v, target) in &s.versions {
        let field = format!("{at}.versions.{v}");
        version_name(v).map_err(|e| ConfigError::new(field.clone(), e))?;
        header_value(&target.cluster)
            .map_err(|e| ConfigError::new(format!("{field}.cluster"), e))?;
        versions.push(VersionTarget {
            name: v.clone(),
            cluster: target.cluster.clone(),
        });
    }
    let index_of = |field: String, v: &str| -> Result<usize, ConfigError> {
        versions.iter().position(|t| t.name == v).ok_or_else(|| {
            let known: Vec<&str> = versions.iter().map(|t| t.name.as_str()).collect();
            ConfigError::new(
                field,
                format!("unknown version `{v}` (versions: {})", known.join(", ")),
            )
        })
    };
    let stable = index_of(format!("{at}.stable"), &s.stable)?;
    let rules = s
        .rules
        .iter()
        .enumerate()
        .map(|(j, r)| {
            let at = format!("{at}.rules[{j}]");
            Ok((
                rule(&at, claim_prefix, r)?,
                index_of(format!("{at}.version"), &r.version)?,
            ))
        })
        .collect::<Result<Vec<_>, ConfigError>>()?;
    let split = split(at, s, &index_of)?;
    let sticky = match &s.sticky {
        None => None,
        Some(st) => Some((
            key(&format!("{at}.sticky.key"), claim_prefix, &st.key)?,
            st.salt.clone(),
        )),
    };
    let (cohort_request, cohort_response, honour) = match &s.cohort {
        None => (None, None, false),
        Some(c) => {
            let check = |field: &str, h: &Option<String>| -> Result<Option<String>, ConfigError> {
                h.as_deref()
                    .map(|h| {
                        header_name(h)
                            .map_err(|e| ConfigError::new(format!("{at}.cohort.{field}"), e))
                    })
                    .transpose()
            };
            (
                check("request_header", &c.request_header)?,
                check("response_header", &c.response_header)?,
                c.honour_incoming,
            )
        }
    };
    let mirror = match &s.mirror {
        None => None,
        Some(m) => {
            header_value(&m.cluster)
                .map_err(|e| ConfigError::new(format!("{at}.mirror.cluster"), e))?;
            if m.percent_bp > TOTAL_WEIGHT_BP {
                return Err(ConfigError::new(
                    format!("{at}.mirror.percent_bp"),
                    format!("{} is more than {TOTAL_WEIGHT_BP} (100 %)", m.percent_bp),
                ));
            }
            if m.timeout_ms == 0 {
                return Err(ConfigError::new(
                    format!("{at}.mirror.timeout_ms"),
                    "must be positive",
                ));
            }
            Some(MirrorTarget {
                cluster: m.cluster.clone(),
                percent_bp: m.percent_bp,
                max_body_bytes: m.max_body_bytes,
                timeout_ms: m.timeout_ms,
            })
        }
    };
    let mut route = ServiceRoute {
        name,
        host,
        path_prefix: s.path_prefix.clone(),
        versions,
        stable,
        rules,
        split,
        sticky,
        cohort_request,
        cohort_response,
        honour_incoming_cohort: honour,
        mirror,
        repeats_headers: false,
    };
    route.repeats_headers = route.repeats_headers();
    Ok(route)
}

/// Cumulative upper bounds in the configured order: entry `k` owns `[bound[k-1], bound[k])`.
fn split(
    at: &str,
    s: &Service,
    index_of: &dyn Fn(String, &str) -> Result<usize, ConfigError>,
) -> Result<Vec<(usize, u32)>, ConfigError> {
    if s.split.is_empty() {
        return Err(ConfigError::new(
            format!("{at}.split"),
            "must not be empty (give the stable version 10000)",
        ));
    }
    let mut out: Vec<(usize, u32)> = Vec::with_capacity(s.split.len());
    let mut total: u32 = 0;
    for (k, entry) in s.split.iter().enumerate() {
        let field = format!("{at}.split[{k}]");
        let version = index_of(format!("{field}.version"), &entry.version)?;
        if let Some(first) = s.split[..k].iter().position(|e| e.version == entry.version) {
            return Err(ConfigError::new(
                format!("{field}.version"),
                format!("version `{}` already has split[{first}]", entry.version),
            ));
        }
        if entry.weight > TOTAL_WEIGHT_BP {
            return Err(ConfigError::new(
                format!("{field}.weight"),
                format!(
                    "{} is more than {TOTAL_WEIGHT_BP} basis points",
                    entry.weight
                ),
            ));
        }
        total = total.saturating_add(entry.weight);
        out.push((version, total));
    }
    if total != TOTAL_WEIGHT_BP {
        return Err(ConfigError::new(
            format!("{at}.split"),
            format!("weights sum to {total}, they must sum to {TOTAL_WEIGHT_BP} basis points"),
        ));
    }
    Ok(out)
}

fn rule(at: &str, claim_prefix: &str, r: &MatchRule) -> Result<Condition, ConfigError> {
    let set = [r.header.is_some(), r.cookie.is_some(), r.claim.is_some()];
    if set.iter().filter(|s| **s).count() != 1 {
        return Err(ConfigError::new(
            at,
            "set exactly one of `header`, `cookie`, `claim`",
        ));
    }
    let value = |m: &ValueMatch| m.value.clone();
    if let Some(m) = &r.header {
        let name =
            header_name(&m.name).map_err(|e| ConfigError::new(format!("{at}.header.name"), e))?;
        Ok(Condition::Header {
            name,
            value: value(m),
        })
    } else if let Some(m) = &r.cookie {
        cookie_name(&m.name).map_err(|e| ConfigError::new(format!("{at}.cookie.name"), e))?;
        Ok(Condition::Cookie {
            name: m.name.clone(),
            value: value(m),
        })
    } else if let Some(m) = &r.claim {
        let name = claim_header(claim_prefix, &m.name)
            .map_err(|e| ConfigError::new(format!("{at}.claim.name"), e))?;
        Ok(Condition::Header {
            name,
            value: value(m),
        })
    } else {
        Err(ConfigError::new(
            at,
            "set exactly one of `header`, `cookie`, `claim`",
        ))
    }
}

fn key(at: &str, claim_prefix: &str, k: &KeySource) -> Result<Key, ConfigError> {
    match k {
        KeySource::Header(h) => header_name(h)
            .map(Key::Header)
            .map_err(|e| ConfigError::new(format!("{at}.header"), e)),
        KeySource::Cookie(c) => cookie_name(c)
            .map(|()| Key::Cookie(c.clone()))
            .map_err(|e| ConfigError::new(format!("{at}.cookie"), e)),
        KeySource::Claim(c) => claim_header(claim_prefix, c)
            .map(Key::Header)
            .map_err(|e| ConfigError::new(format!("{at}.claim"), e)),
    }
}

fn claim_header(prefix: &str, claim: &str) -> Result<String, String> {
    if claim.is_empty() {
        return Err("must not be empty".into());
    }
    header_name(&format!("{prefix}{}", claim.replace('.', "-")))
}

/// A lower-cased HTTP token usable as a regular (not pseudo) header name.
fn header_name(name: &str) -> Result<String, String> {
    let tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if !name.chars().all(tchar) {
        return Err(format!("`{name}` is not a valid header name"));
    }
    Ok(name.to_ascii_lowercase())
}

fn cookie_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.contains(|c: char| {
            c == ';' || c == '=' || c == ',' || c.is_whitespace() || c.is_control()
        })
    {
        return Err(format!("`{name}` is not a valid cookie name"));
    }
    Ok(())
}

/// Version names travel in headers and stat names.
fn version_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err(format!(
            "version name `{name}` must be letters, digits, `.`, `_` or `-`"
        ));
    }
    Ok(())
}

/// Cluster names are written into a request header.
fn header_value(value: &str) -> Result<(), String> {
    if value.is_empty() || value.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err("must be a non-empty name without spaces or control characters".into());
    }
    Ok(())
}
