//! `WebApplicationFirewall`: the edge WAF of a service (typically the gateway's: its edge
//! listener; any other service: its inbound listener). Every field is optional; absent
//! fields take the filter's defaults (`weft_filter_core::waf::WafConfig`), and
//! [`WebApplicationFirewallSpec::to_config`] is the one mapping, used by validation (which
//! runs the filter's own checks over it) and by compile.

use serde::{Deserialize, Serialize};
use weft_filter_core::waf::{Exclusion, LimitStatus, Limits, Mode, WafConfig};

use super::TargetRef;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebApplicationFirewallSpec {
    pub target: TargetRef,
    /// `block` (default) or `detect`: scored, logged and counted, never refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<WafModeSpec>,
    /// 1 (default) or 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paranoia: Option<u8>,
    /// Anomaly score at which a request is refused (default 5: one critical rule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbound_threshold: Option<u32>,
    /// Status of a request refused for its score (default 403).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<WafLimitsSpec>,
    /// Form and JSON bodies are held and inspected up to this many bytes (default 65536,
    /// at most 524288; 0: bodies are not inspected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inspect_body_bytes: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclusions: Vec<WafExclusionSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WafModeSpec {
    Detect,
    Block,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WafLimitsSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_request_line: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_header_bytes: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_headers: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_args: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_arg_bytes: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_types: Option<Vec<String>>,
    /// Per reason code (`bodyTooLarge: 413`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<WafLimitStatusSpec>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WafLimitStatusSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method_not_allowed: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_line_too_long: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_too_large: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub too_many_headers: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub too_many_args: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arg_too_long: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_too_large: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type_not_allowed: Option<u16>,
}

/// A false positive taken out: `rules` (all when empty) do not count on `args` (every
/// target when empty) under `pathPrefix`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WafExclusionSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
}

impl WebApplicationFirewallSpec {
    /// The filter configuration, named `name` (the document's `namespace/name`).
    pub fn to_config(&self, name: &str) -> WafConfig {
        // Exhaustive on purpose: a new field must be mapped.
        let Self {
            target: _,
            mode,
            paranoia,
            inbound_threshold,
            block_status,
            limits,
            inspect_body_bytes,
            exclusions,
        } = self;
        let d = WafConfig::default();
        WafConfig {
            name: name.to_string(),
            mode: match mode {
                Some(WafModeSpec::Detect) => Mode::Detect,
                Some(WafModeSpec::Block) | None => Mode::Block,
            },
            paranoia: paranoia.unwrap_or(d.paranoia),
            inbound_threshold: inbound_threshold.unwrap_or(d.inbound_threshold),
            block_status: block_status.unwrap_or(d.block_status),
            limits: limits.as_ref().map_or(d.limits, WafLimitsSpec::to_limits),
            inspect_body_bytes: inspect_body_bytes.unwrap_or(d.inspect_body_bytes),
            exclusions: exclusions
                .iter()
                .map(|e| Exclusion {
                    path_prefix: e.path_prefix.clone().unwrap_or_default(),
                    rules: e.rules.clone(),
                    args: e.args.clone(),
                })
                .collect(),
        }
    }
}

impl WafLimitsSpec {
    fn to_limits(&self) -> Limits {
        let Self {
            methods,
            max_request_line,
            max_header_bytes,
            max_headers,
            max_args,
            max_arg_bytes,
            max_body_bytes,
            content_types,
            status,
        } = self;
        let d = Limits::default();
        let s = status.clone().unwrap_or_default();
        let ds = LimitStatus::default();
        Limits {
            methods: methods.clone().unwrap_or(d.methods),
            max_request_line: max_request_line.unwrap_or(d.max_request_line),
            max_header_bytes: max_header_bytes.unwrap_or(d.max_header_bytes),
            max_headers: max_headers.unwrap_or(d.max_headers),
            max_args: max_args.unwrap_or(d.max_args),
            max_arg_bytes: max_arg_bytes.unwrap_or(d.max_arg_bytes),
            max_body_bytes: max_body_bytes.unwrap_or(d.max_body_bytes),
            content_types: content_types.clone().unwrap_or(d.content_types),
            status: LimitStatus {
                method_not_allowed: s.method_not_allowed.unwrap_or(ds.method_not_allowed),
                request_line_too_long: s.request_line_too_long.unwrap_or(ds.request_line_too_long),
                header_too_large: s.header_too_large.unwrap_or(ds.header_too_large),
                too_many_headers: s.too_many_headers.unwrap_or(ds.too_many_headers),
                too_many_args: s.too_many_args.unwrap_or(ds.too_many_args),
                arg_too_long: s.arg_too_long.unwrap_or(ds.arg_too_long),
                body_too_large: s.body_too_large.unwrap_or(ds.body_too_large),
                content_type_not_allowed: s
                    .content_type_not_allowed
                    .unwrap_or(ds.content_type_not_allowed),
            },
        }
    }
}

/// A filter field path (`limits.status.body_too_large`) as the document names it
/// (`spec.limits.status.bodyTooLarge`).
pub fn spec_field(filter_field: &str) -> String {
    let mut out = String::from("spec.");
    let mut upper = false;
    for c in filter_field.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}
