//! The authz filter's configuration, as JSON in the wasm `PluginConfig.configuration`.
//!
//! Modelled on Istio's `AuthorizationPolicy` + `RequestAuthentication` so a mesh user
//! recognises every field: rules are OR-ed, the fields inside a rule are AND-ed, the
//! values inside a field are OR-ed, and every field has a `not_` form.

use crate::grammar::{
    Cidr, HostMatcher, Method, Namespace, PathMatcher, Patterns, Principal, StrMatcher,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use super::path::PathParameters;

/// Top-level authz configuration. The default is the empty configuration, which denies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthzConfig {
    /// Trust domain used to expand the namespace shorthand (`namespaces: ["corp"]`).
    #[serde(default = "default_trust_domain")]
    pub trust_domain: String,
    #[serde(default)]
    pub policies: Vec<Policy>,
    /// JWT providers; a request carrying a token is validated against them.
    #[serde(default)]
    pub jwt: Vec<JwtProvider>,
    /// Claims of a validated token copied into request headers for the next hop (Istio's
    /// `outputClaimToHeaders`), e.g. for the canary filter's claim rules. These headers are
    /// always removed from the incoming request first, so a caller cannot forge them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claim_headers: Vec<ClaimToHeader>,
    /// A configuration with no policies and no JWT providers denies every request unless this
    /// says so: an empty or lost configuration must not open the door. The control plane
    /// writes it for a service without any AuthorizationPolicy (Istio: no policy = allow).
    /// Only valid without policies.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_all: bool,
    /// What `;` path parameters in a request path do: `reject` (400, the default) or `strip`
    /// (removed from each segment before matching, as Tomcat-like apps read them).
    #[serde(default, skip_serializing_if = "is_default")]
    pub path_parameters: PathParameters,
    /// Explain tokens of this sidecar's service (see [`crate::explain`]); absent: requests
    /// are never explained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explain: Option<crate::explain::ExplainConfig>,
}

impl Default for AuthzConfig {
    fn default() -> Self {
        Self {
            trust_domain: default_trust_domain(),
            policies: Vec::new(),
            jwt: Vec::new(),
            claim_headers: Vec::new(),
            allow_all: false,
            path_parameters: PathParameters::default(),
            explain: None,
        }
    }
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

fn is_true(v: &bool) -> bool {
    *v
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimToHeader {
    /// Claim name; nested claims with `.`. Strings, numbers and booleans are copied.
    pub claim: String,
    /// Request header to write, lower-case, e.g. `x-weft-claim-tier`.
    pub header: String,
}

pub fn default_trust_domain() -> String {
    "cluster.local".to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Action {
    Allow,
    Deny,
    Audit,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Unique name; appears in stats, logs and the default deny body.
    pub name: String,
    pub action: Action,
    /// Evaluated and counted as "would deny", never enforced.
    #[serde(default)]
    pub dry_run: bool,
    /// The policy applies when any rule matches. No rules = never applies (as in Istio).
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// What a caller denied by this policy receives.
    #[serde(default)]
    pub deny_response: Option<DenyResponse>,
    /// Match `paths`/`not_paths` ignoring ASCII case (for apps that ignore case): both the
    /// patterns and the normalized request path are lower-cased for this policy.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignore_path_case: bool,
}

/// All present fields must match. Inside a list, any value may match. The matcher fields hold
/// the grammar's parsed values, so a bad pattern is refused at its exact field path while the
/// JSON is read, and the control plane can only write what the filter parses.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// SPIFFE ids of the mTLS peer: exact, `prefix*`, `*suffix` or `*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principals: Option<Patterns<Principal>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_principals: Option<Patterns<Principal>>,
    /// Namespace shorthand: `corp` means `spiffe://<trust_domain>/ns/corp/*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<Patterns<Namespace>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_namespaces: Option<Patterns<Namespace>>,
    /// `GET`, `POST`, ...; `*` matches any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub methods: Option<Patterns<Method>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_methods: Option<Patterns<Method>>,
    /// Path patterns (query string ignored): exact `/a/b`, prefix `/a/*`, suffix `*.json`,
    /// `*`, or templates with `{*}` (one segment) and `{**}` (any remainder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<Patterns<PathMatcher>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_paths: Option<Patterns<PathMatcher>>,
    /// `:authority` patterns, case-insensitive, port ignored (Istio's `to.hosts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Patterns<HostMatcher>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_hosts: Option<Patterns<HostMatcher>>,
    /// Source IPs or CIDRs (IPv4 and IPv6) of the downstream peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_blocks: Option<Patterns<Cidr>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_ip_blocks: Option<Patterns<Cidr>>,
    /// Source IPs or CIDRs of the original client, as the proxy derived it from
    /// `X-Forwarded-For` through its trusted hops (Istio's `remoteIpBlocks`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_ip_blocks: Option<Patterns<Cidr>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_remote_ip_blocks: Option<Patterns<Cidr>>,
    /// `<iss>/<sub>` of the validated JWT (Istio's `requestPrincipals`); no valid token, or
    /// one without a string `iss` and `sub`, has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_principals: Option<Patterns<StrMatcher>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_request_principals: Option<Patterns<StrMatcher>>,
    /// Header conditions, all must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderCondition>,
    /// Conditions on the claims of a validated JWT; all must hold. Without a valid
    /// token no claim condition matches (a `not: true` one does).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claims: Vec<ClaimCondition>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderCondition {
    /// Header name, case-insensitive.
    pub name: String,
    /// Accepted values (same pattern forms as principals). Absent = presence check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<String>>,
    /// Negates the condition.
    #[serde(default)]
    pub not: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimCondition {
    /// Claim name; nested claims with `.`, e.g. `realm.role`.
    pub name: String,
    /// Accepted values: a string claim equals one, or an array claim contains one.
    pub values: Vec<String>,
    #[serde(default)]
    pub not: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenyResponse {
    #[serde(default = "default_deny_status")]
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

pub fn default_deny_status() -> u16 {
    403
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtProvider {
    pub name: String,
    /// Required `iss`.
    pub issuer: String,
    /// Accepted `aud` values; empty = any.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Header the token is read from.
    #[serde(default = "default_jwt_header")]
    pub from_header: String,
    /// Prefix stripped from the header value.
    #[serde(default = "default_jwt_prefix")]
    pub prefix: String,
    /// When true a request without a token is denied with 401. A token in this provider's
    /// header that another provider (reading the same header) owns by `iss` counts as present.
    #[serde(default)]
    pub required: bool,
    /// Refuse a token without `exp` (default). `false` accepts tokens that never expire.
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub require_exp: bool,
    /// Allowed clock skew for `exp` / `nbf`, seconds.
    #[serde(default = "default_clock_skew")]
    pub clock_skew_seconds: u64,
    /// Verification keys.
    pub keys: JwtKeys,
}

pub fn default_jwt_header() -> String {
    "authorization".to_string()
}
pub fn default_jwt_prefix() -> String {
    "Bearer ".to_string()
}
pub fn default_clock_skew() -> u64 {
    60
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtKeys {
    /// HS256 shared secrets (raw text), at least 32 bytes each (RFC 7518 §3.2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hs256_secrets: Vec<String>,
    /// A JWKS document (`{"keys":[...]}`) with RSA (`n`,`e`; 2048..=4096 bits) and EC P-256
    /// (`x`,`y`) keys, either inline as JSON or as a JSON string. Any other key type, `alg`
    /// or a `use` other than `sig` is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<serde_json::Value>,
}
