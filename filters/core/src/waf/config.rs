//! The WAF's configuration: mode, paranoia, threshold, protocol limits (each with its status),
//! body inspection and exclusions. Every value is bounded and checked in [`WafConfig::validate`],
//! which names the field and the reason.

use crate::ConfigError;
use serde::{Deserialize, Serialize};

/// `detect`: scored, logged and counted, never refused; `block`: refused at the threshold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Detect,
    #[default]
    Block,
}

/// The WAF filter's configuration (`{}`: every default, block mode).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WafConfig {
    /// The policy's name, for the access log and stats (`""`: `waf`).
    pub name: String,
    pub mode: Mode,
    /// 1 or 2: level 2 adds the stricter rules (more detection, more false positives).
    pub paranoia: u8,
    /// The inbound anomaly score at which a request is refused (critical = 5, error = 4,
    /// warning = 3, notice = 2).
    pub inbound_threshold: u32,
    /// The status of a request refused for its score.
    pub block_status: u16,
    pub limits: Limits,
    /// Form and JSON bodies are held and inspected up to this many bytes (0: bodies are not
    /// inspected); a longer body has its first bytes inspected and then streams on.
    pub inspect_body_bytes: u32,
    pub exclusions: Vec<Exclusion>,
}

/// Protocol limits, each refused with its own status and reason code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Allowed methods (upper case).
    pub methods: Vec<String>,
    /// Bytes of method + path + query.
    pub max_request_line: u32,
    /// Bytes of one header (name + value).
    pub max_header_bytes: u32,
    /// Number of headers (pseudo-headers excluded).
    pub max_headers: u32,
    /// Number of arguments (query, form and JSON leaves together).
    pub max_args: u32,
    /// Bytes of one argument (name + value).
    pub max_arg_bytes: u32,
    /// Bytes of the body (Content-Length, or counted as it streams).
    pub max_body_bytes: u64,
    /// Allowed media types of a request with a body (`[]`: any).
    pub content_types: Vec<String>,
    pub status: LimitStatus,
}

/// The status each limit answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitStatus {
    pub method_not_allowed: u16,
    pub request_line_too_long: u16,
    pub header_too_large: u16,
    pub too_many_headers: u16,
    pub too_many_args: u16,
    pub arg_too_long: u16,
    pub body_too_large: u16,
    pub content_type_not_allowed: u16,
}

/// A false positive taken out: `rules` (all when empty) do not count on `args` (every target
/// when empty) of requests whose path is `path_prefix` or below it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exclusion {
    #[serde(default)]
    pub path_prefix: String,
    #[serde(default)]
    pub rules: Vec<u32>,
    /// Argument names (query, form, JSON path such as `user.bio`), `cookie:<name>` or
    /// `header:<name>`.
    #[serde(default)]
    pub args: Vec<String>,
}

impl Exclusion {
    /// Whether it removes `rule`'s match on `target` of a request to `path`: the path is the
    /// prefix itself or below it (segment-wise), and empty rule and argument lists cover all.
    pub fn covers(&self, path: &str, rule: u32, target: &str) -> bool {
        let prefix = self.path_prefix.trim_end_matches('/');
        let on_path = prefix.is_empty()
            || path == prefix
            || path
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/'));
        on_path
            && (self.rules.is_empty() || self.rules.contains(&rule))
            && (self.args.is_empty() || self.args.iter().any(|a| a == target))
    }
}

/// Most bytes held for inspection: well under Envoy's default 1 MiB buffer limit, which
/// would answer 413 itself.
pub const MAX_INSPECT_BODY_BYTES: u32 = 512 * 1024;
/// Bounds of the other limits (each value must be 1..=bound).
const MAX_LINE: u32 = 1024 * 1024;
const MAX_COUNT: u32 = 10_000;
const MAX_EXCLUSIONS: usize = 1_000;

impl Default for WafConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            mode: Mode::Block,
            paranoia: 1,
            inbound_threshold: 5,
            block_status: 403,
            limits: Limits::default(),
            inspect_body_bytes: 64 * 1024,
            exclusions: Vec::new(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            methods: ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
                .map(str::to_string)
                .to_vec(),
            max_request_line: 8192,
            max_header_bytes: 8192,
            max_headers: 100,
            max_args: 1000,
            max_arg_bytes: 64 * 1024,
            max_body_bytes: 10 * 1024 * 1024,
            content_types: [
                "application/x-www-form-urlencoded",
                "multipart/form-data",
                "application/json",
                "text/plain",
                "text/xml",
                "application/xml",
                "application/octet-stream",
            ]
            .map(str::to_string)
            .to_vec(),
            status: LimitStatus::default(),
        }
    }
}

impl Default for LimitStatus {
    fn default() -> Self {
        Self {
            method_not_allowed: 405,
            request_line_too_long: 414,
            header_too_large: 431,
            too_many_headers: 431,
            too_many_args: 400,
            arg_too_long: 400,
            body_too_large: 413,
            content_type_not_allowed: 415,
        }
    }
}

fn check_status(field: &str, status: u16) -> Result<(), ConfigError> {
    if (400..=599).contains(&status) {
        Ok(())
    } else {
        Err(ConfigError::new(
            field,
            format!("status {status} must be 400..=599 (a refusal)"),
        ))
    }
}

fn check_bound(field: &str, value: u32, max: u32) -> Result<(), ConfigError> {
    if (1..=max).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::new(
            field,
            format!("{value} must be 1..={max}"),
        ))
    }
}

impl WafConfig {
    /// Every value checked; the error names the field.
    pub fn validate(&self, known_rule: impl Fn(u32) -> bool) -> Result<(), ConfigError> {
        if self.name.len() > 253 {
            return Err(ConfigError::new("name", "longer than 253 bytes"));
        }
        if !(1..=2).contains(&self.paranoia) {
            return Err(ConfigError::new(
                "paranoia",
                format!("{} must be 1 or 2", self.paranoia),
            ));
        }
        check_bound("inbound_threshold", self.inbound_threshold, 1000)?;
        check_status("block_status", self.block_status)?;
        if self.inspect_body_bytes > MAX_INSPECT_BODY_BYTES {
            return Err(ConfigError::new(
                "inspect_body_bytes",
                format!(
                    "{} is over {MAX_INSPECT_BODY_BYTES} (bodies are held in the proxy while inspected)",
                    self.inspect_body_bytes
                ),
            ));
        }
        self.limits.validate()?;
        if self.exclusions.len() > MAX_EXCLUSIONS {
            return Err(ConfigError::new(
                "exclusions",
                format!("more than {MAX_EXCLUSIONS}"),
            ));
        }
        for (i, e) in self.exclusions.iter().enumerate() {
            let field = format!("exclusions[{i}]");
            if !e.path_prefix.is_empty() && !e.path_prefix.starts_with('/') {
                return Err(ConfigError::new(
                    format!("{field}.path_prefix"),
                    format!("{:?} must start with /", e.path_prefix),
                ));
            }
            if e.rules.is_empty() && e.args.is_empty() {
                return Err(ConfigError::new(
                    field,
                    "names neither rules nor args (to leave a route out, do not target it)",
                ));
            }
            for (j, rule) in e.rules.iter().enumerate() {
                if !known_rule(*rule) {
                    return Err(ConfigError::new(
                        format!("{field}.rules[{j}]"),
                        format!("unknown rule id {rule}"),
                    ));
                }
            }
            for (j, arg) in e.args.iter().enumerate() {
                if arg.is_empty() || arg.len() > 256 {
                    return Err(ConfigError::new(
                        format!("{field}.args[{j}]"),
                        "must be 1..=256 bytes",
                    ));
                }
            }
        }
        Ok(())
    }
}

impl Limits {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.methods.is_empty() {
            return Err(ConfigError::new("limits.methods", "must allow some method"));
        }
        for (i, m) in self.methods.iter().enumerate() {
            if m.is_empty() || m.len() > 32 || !m.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(ConfigError::new(
                    format!("limits.methods[{i}]"),
                    format!("{m:?} is not an upper-case method name"),
                ));
            }
        }
        check_bound("limits.max_request_line", self.max_request_line, MAX_LINE)?;
        check_bound("limits.max_header_bytes", self.max_header_bytes, MAX_LINE)?;
        check_bound("limits.max_headers", self.max_headers, MAX_COUNT)?;
        check_bound("limits.max_args", self.max_args, MAX_COUNT)?;
        check_bound("limits.max_arg_bytes", self.max_arg_bytes, MAX_LINE)?;
        if !(1..=(1u64 << 40)).contains(&self.max_body_bytes) {
            return Err(ConfigError::new(
                "limits.max_body_bytes",
                format!("{} must be 1..=2^40", self.max_body_bytes),
            ));
        }
        for (i, t) in self.content_types.iter().enumerate() {
            let ok = t.len() <= 128
                && t.split_once('/').is_some_and(|(a, b)| {
                    !a.is_empty()
                        && !b.is_empty()
                        && t.bytes().all(|c| {
                            c.is_ascii_lowercase() || c.is_ascii_digit() || b"/+-.".contains(&c)
                        })
                });
            if !ok {
                return Err(ConfigError::new(
                    format!("limits.content_types[{i}]"),
                    format!("{t:?} is not a lower-case media type such as application/json"),
                ));
            }
        }
        let s = &self.status;
        for (name, status) in [
            ("method_not_allowed", s.method_not_allowed),
            ("request_line_too_long", s.request_line_too_long),
            ("header_too_large", s.header_too_large),
            ("too_many_headers", s.too_many_headers),
            ("too_many_args", s.too_many_args),
            ("arg_too_long", s.arg_too_long),
            ("body_too_large", s.body_too_large),
            ("content_type_not_allowed", s.content_type_not_allowed),
        ] {
            check_status(&format!("limits.status.{name}"), status)?;
        }
        Ok(())
    }
}
