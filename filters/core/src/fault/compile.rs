//! Validation of a [`FaultConfig`] and its compilation into matchers and basis points.
//! Every error names the full field path.

use super::config::{
    AbortSpec, DelaySpec, FaultConfig, FaultMatch, FaultPolicy, HeaderMatch, MAX_ACTIVE_LIMIT,
    MAX_DELAY_MS,
};
use super::reply::AbortReplies;
use crate::ConfigError;

/// Basis points per percent: 0.01 % is one basis point, the finest step.
const BP_PER_PERCENT: f64 = 100.0;

#[derive(Debug, Clone)]
pub(super) struct CompiledPolicy {
    pub name: String,
    pub matcher: CompiledMatch,
    pub abort: Option<CompiledAbort>,
    pub delay: Option<CompiledDelay>,
    pub allow_header_trigger: bool,
    pub expires_at_unix_ms: Option<u64>,
    pub dry_run: bool,
    pub max_active: Option<u32>,
    pub max_percent_bp: Option<u32>,
}

#[derive(Debug, Clone)]
pub(super) struct CompiledAbort {
    pub basis_points: u32,
    pub replies: AbortReplies,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct CompiledDelay {
    pub basis_points: u32,
    pub min_ms: u64,
    pub max_ms: u64,
}

#[derive(Debug, Clone, Default)]
pub(super) struct CompiledMatch {
    pub hosts: Vec<Pattern>,
    pub path_prefixes: Vec<String>,
    pub principals: Vec<Pattern>,
    pub headers: Vec<CompiledHeader>,
}

#[derive(Debug, Clone)]
pub(super) struct CompiledHeader {
    pub name: String,
    pub value: Option<Pattern>,
}

/// A string pattern, compared case-sensitively unless compiled lower-case (hosts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Pattern {
    Any,
    Exact(String),
    Prefix(String),
    Suffix(String),
}

// === impl Pattern ===

impl Pattern {
    pub fn matches(&self, value: &str) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Exact(s) => value == s,
            Pattern::Prefix(p) => value.starts_with(p.as_str()),
            Pattern::Suffix(s) => value.len() > s.len() && value.ends_with(s.as_str()),
        }
    }
}

pub(super) fn percent_cap(cap: f64) -> Result<f64, ConfigError> {
    if !cap.is_finite() || cap <= 0.0 || cap > 100.0 {
        return Err(ConfigError::new("percent_cap", "must be in (0, 100]"));
    }
    Ok(cap)
}

/// `12.5` -> `"12.50"` without float formatting, whose code would add ~20 KB to the filter.
fn show_percent(percent: f64) -> String {
    // Callers pass finite values in 0..=100.
    let bp = (percent * BP_PER_PERCENT).round() as u64;
    format!("{}.{:02}", bp / 100, bp % 100)
}

pub(super) fn top_level(config: &FaultConfig) -> Result<String, ConfigError> {
    percent_cap(config.percent_cap)?;
    let header = config.trigger_header.to_ascii_lowercase();
    if !is_header_name(&header) {
        return Err(ConfigError::new(
            "trigger_header",
            format!("`{}` is not a header name", config.trigger_header),
        ));
    }
    if !(1..=MAX_DELAY_MS).contains(&config.max_header_delay_ms) {
        return Err(ConfigError::new(
            "max_header_delay_ms",
            format!("must be in 1..={MAX_DELAY_MS}"),
        ));
    }
    Ok(header)
}

pub(super) fn policies(config: &FaultConfig) -> Result<Vec<CompiledPolicy>, ConfigError> {
    config
        .policies
        .iter()
        .enumerate()
        .map(|(i, policy)| {
            let at = format!("policies[{i}]");
            if config
                .policies
                .iter()
                .take(i)
                .any(|p| p.name == policy.name)
            {
                return Err(ConfigError::new(
                    format!("{at}.name"),
                    format!("duplicate policy name `{}`", policy.name),
                ));
            }
            self::policy(&at, policy, config.percent_cap)
        })
        .collect()
}

fn policy(at: &str, policy: &FaultPolicy, cap: f64) -> Result<CompiledPolicy, ConfigError> {
    let name_ok = !policy.name.is_empty()
        && policy.name.len() <= 64
        && policy
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !name_ok {
        return Err(ConfigError::new(
            format!("{at}.name"),
            "must be 1-64 characters of A-Z a-z 0-9 - _ (it becomes a stat name segment)",
        ));
    }
    if policy.abort.is_none() && policy.delay.is_none() && !policy.allow_header_trigger {
        return Err(ConfigError::new(
            at,
            "has no abort, no delay and no allow_header_trigger: it would never inject anything",
        ));
    }
    Ok(CompiledPolicy {
        name: policy.name.clone(),
        matcher: matcher(&format!("{at}.match"), &policy.matcher)?,
        abort: policy
            .abort
            .as_ref()
            .map(|a| abort(&format!("{at}.abort"), a, cap))
            .transpose()?,
        delay: policy
            .delay
            .as_ref()
            .map(|d| delay(&format!("{at}.delay"), d, cap))
            .transpose()?,
        allow_header_trigger: policy.allow_header_trigger,
        expires_at_unix_ms: policy.expires_at_unix_ms,
        dry_run: policy.dry_run,
        max_active: policy
            .max_active
            .map(|n| max_active(&format!("{at}.max_active"), n))
            .transpose()?,
        max_percent_bp: policy
            .max_percent
            .map(|p| max_percent(&format!("{at}.max_percent"), p))
            .transpose()?,
    })
}

fn max_active(field: &str, n: u32) -> Result<u32, ConfigError> {
    if (1..=MAX_ACTIVE_LIMIT).contains(&n) {
        Ok(n)
    } else {
        Err(ConfigError::new(
            field,
            format!("{n} is not in 1..={MAX_ACTIVE_LIMIT}"),
        ))
    }
}

/// A runtime cap is a share of traffic, not an injection rate: `percent_cap` does not bound it.
fn max_percent(field: &str, percent: f64) -> Result<u32, ConfigError> {
    match basis_points(field, percent, 100.0)? {
        0 => Err(ConfigError::new(field, "must be at least 0.01")),
        bp => Ok(bp),
    }
}

/// A percentage as basis points, checked against the cap and the 0.01 % granularity.
pub(super) fn basis_points(field: &str, percent: f64, cap: f64) -> Result<u32, ConfigError> {
    if !percent.is_finite() || !(0.0..=100.0).contains(&percent) {
        return Err(ConfigError::new(field, "is not a percentage in 0..=100"));
    }
    if percent > cap {
        return Err(ConfigError::new(
            field,
            format!(
                "{} exceeds percent_cap {}; raise percent_cap explicitly to inject into more traffic",
                show_percent(percent),
                show_percent(cap)
            ),
        ));
    }
    let scaled = percent * BP_PER_PERCENT;
    let rounded = scaled.round();
    if (scaled - rounded).abs() > 1e-6 {
        return Err(ConfigError::new(field, "is finer than the 0.01 % step"));
    }
    // In 0..=10_000 after the checks above.
    Ok(rounded as u32)
}

fn abort(at: &str, spec: &AbortSpec, cap: f64) -> Result<CompiledAbort, ConfigError> {
    let basis_points = basis_points(&format!("{at}.percent"), spec.percent, cap)?;
    if !(200..=599).contains(&spec.http_status) {
        return Err(ConfigError::new(
            format!("{at}.http_status"),
            format!("{} is not in 200..=599", spec.http_status),
        ));
    }
    if let Some(code) = spec.grpc_status {
        if code > 16 {
            return Err(ConfigError::new(
                format!("{at}.grpc_status"),
                format!("{code} is not a gRPC status (0..=16)"),
            ));
        }
    }
    let body = spec.body.clone().unwrap_or_default();
    Ok(CompiledAbort {
        basis_points,
        replies: AbortReplies::new(spec.http_status, spec.grpc_status, &body),
    })
}

fn delay(at: &str, spec: &DelaySpec, cap: f64) -> Result<CompiledDelay, ConfigError> {
    let basis_points = basis_points(&format!("{at}.percent"), spec.percent, cap)?;
    if !(1..=MAX_DELAY_MS).contains(&spec.fixed_ms) {
        return Err(ConfigError::new(
            format!("{at}.fixed_ms"),
            format!("{} is not in 1..={MAX_DELAY_MS}", spec.fixed_ms),
        ));
    }
    let max_ms = spec.max_ms.unwrap_or(spec.fixed_ms);
    if max_ms < spec.fixed_ms || max_ms > MAX_DELAY_MS {
        return Err(ConfigError::new(
            format!("{at}.max_ms"),
            format!("{max_ms} is not in fixed_ms..={MAX_DELAY_MS}"),
        ));
    }
    Ok(CompiledDelay {
        basis_points,
        min_ms: spec.fixed_ms,
        max_ms,
    })
}

fn matcher(at: &str, spec: &FaultMatch) -> Result<CompiledMatch, ConfigError> {
    let hosts = spec
        .hosts
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let h = h.to_ascii_lowercase();
            match h.strip_prefix('*') {
                Some(suffix)
                    if suffix.starts_with('.') && suffix.len() > 1 && !suffix.contains('*') =>
                {
                    Ok(Pattern::Suffix(suffix.to_string()))
                }
                None if !h.is_empty() && !h.contains('*') => Ok(Pattern::Exact(h)),
                _ => Err(ConfigError::new(
                    format!("{at}.hosts[{i}]"),
                    "must be a host name or `*.suffix`",
                )),
            }
        })
        .collect::<Result<_, _>>()?;
    for (i, prefix) in spec.path_prefixes.iter().enumerate() {
        if !prefix.starts_with('/') {
            return Err(ConfigError::new(
                format!("{at}.path_prefixes[{i}]"),
                "must start with `/`",
            ));
        }
    }
    let principals = spec
        .principals
        .iter()
        .enumerate()
        .map(|(i, p)| principal(&format!("{at}.principals[{i}]"), p))
        .collect::<Result<_, _>>()?;
    let headers = spec
        .headers
        .iter()
        .enumerate()
        .map(|(i, h)| header(&format!("{at}.headers[{i}]"), h))
        .collect::<Result<_, _>>()?;
    Ok(CompiledMatch {
        hosts,
        path_prefixes: spec.path_prefixes.clone(),
        principals,
        headers,
    })
}

fn principal(at: &str, p: &str) -> Result<Pattern, ConfigError> {
    match p.split_once('*') {
        _ if p == "*" => Ok(Pattern::Any),
        None if !p.is_empty() => Ok(Pattern::Exact(p.to_string())),
        Some((prefix, "")) if !prefix.is_empty() && !prefix.contains('*') => {
            Ok(Pattern::Prefix(prefix.to_string()))
        }
        _ => Err(ConfigError::new(
            at,
            "must be a SPIFFE id, `prefix*` or `*`",
        )),
    }
}

fn header(at: &str, h: &HeaderMatch) -> Result<CompiledHeader, ConfigError> {
    let name = h.name.to_ascii_lowercase();
    if !is_header_name(&name) {
        return Err(ConfigError::new(
            format!("{at}.name"),
            format!("`{}` is not a header name", h.name),
        ));
    }
    let value = match (&h.exact, &h.prefix) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(at, "set `exact` or `prefix`, not both"))
        }
        (Some(exact), None) => Some(Pattern::Exact(exact.clone())),
        (None, Some(prefix)) => Some(Pattern::Prefix(prefix.clone())),
        (None, None) => None,
    };
    Ok(CompiledHeader { name, value })
}

/// An HTTP/2 header name: lower-case token characters, or a pseudo-header like `:path`.
fn is_header_name(name: &str) -> bool {
    let body = name.strip_prefix(':').unwrap_or(name);
    !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b)
        })
}
