//! The policy document model. (Over 400 lines: one serde type per document part, kept in one
//! file so the model reads as one schema.)
//!
//! Every document is `{apiVersion, kind, metadata: {name, namespace?, labels?}, spec}`. Fields
//! are camelCase and unknown fields are refused, so a typo is an error rather than a silently
//! ignored setting. Values that need more than a type check (durations, CIDRs, SPIFFE ids,
//! weights) stay plain here and are judged by [`crate::validate`] with the one grammar in
//! `weft_filter_core::grammar`, so it can report all of them at once.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

mod rollout;
mod waf;
pub use rollout::*;
pub use waf::*;

/// The only `apiVersion` this control plane reads.
pub const API_VERSION: &str = "weft.dev/v1alpha1";

/// Namespace of a document whose `metadata.namespace` is absent.
pub const DEFAULT_NAMESPACE: &str = "default";

/// The kinds of policy document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    Service,
    AuthorizationPolicy,
    RequestAuthentication,
    TrafficSplit,
    FaultInjection,
    CircuitBreaker,
    Rollout,
    WebApplicationFirewall,
}

pub const ALL_KINDS: [Kind; 8] = [
    Kind::Service,
    Kind::AuthorizationPolicy,
    Kind::RequestAuthentication,
    Kind::TrafficSplit,
    Kind::FaultInjection,
    Kind::CircuitBreaker,
    Kind::Rollout,
    Kind::WebApplicationFirewall,
];

// === impl Kind ===

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Service => "Service",
            Self::AuthorizationPolicy => "AuthorizationPolicy",
            Self::RequestAuthentication => "RequestAuthentication",
            Self::TrafficSplit => "TrafficSplit",
            Self::FaultInjection => "FaultInjection",
            Self::CircuitBreaker => "CircuitBreaker",
            Self::Rollout => "Rollout",
            Self::WebApplicationFirewall => "WebApplicationFirewall",
        }
    }

    /// Exact kind names, plus their case-insensitive forms for URLs and the CLI
    /// (`authorizationpolicy`).
    pub fn parse(name: &str) -> Option<Self> {
        ALL_KINDS
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What identifies a document: applying a document with the same key replaces it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DocKey {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for DocKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metadata {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// One policy document. Serialises back to the `{apiVersion, kind, metadata, spec}` form.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub api_version: String,
    pub metadata: Metadata,
    pub spec: Spec,
}

/// The kind-specific part of a document.
#[derive(Debug, Clone, PartialEq)]
pub enum Spec {
    Service(ServiceSpec),
    AuthorizationPolicy(AuthorizationPolicySpec),
    RequestAuthentication(RequestAuthenticationSpec),
    TrafficSplit(TrafficSplitSpec),
    FaultInjection(FaultInjectionSpec),
    CircuitBreaker(CircuitBreakerSpec),
    Rollout(RolloutSpec),
    WebApplicationFirewall(WebApplicationFirewallSpec),
}

// === impl Document ===

impl Document {
    pub fn kind(&self) -> Kind {
        match &self.spec {
            Spec::Service(_) => Kind::Service,
            Spec::AuthorizationPolicy(_) => Kind::AuthorizationPolicy,
            Spec::RequestAuthentication(_) => Kind::RequestAuthentication,
            Spec::TrafficSplit(_) => Kind::TrafficSplit,
            Spec::FaultInjection(_) => Kind::FaultInjection,
            Spec::CircuitBreaker(_) => Kind::CircuitBreaker,
            Spec::Rollout(_) => Kind::Rollout,
            Spec::WebApplicationFirewall(_) => Kind::WebApplicationFirewall,
        }
    }

    pub fn namespace(&self) -> &str {
        self.metadata
            .namespace
            .as_deref()
            .unwrap_or(DEFAULT_NAMESPACE)
    }

    pub fn key(&self) -> DocKey {
        DocKey {
            kind: self.kind(),
            namespace: self.namespace().to_string(),
            name: self.metadata.name.clone(),
        }
    }

    /// The service this document is about, when it targets one.
    pub fn target(&self) -> Option<&TargetRef> {
        match &self.spec {
            Spec::Service(_) => None,
            Spec::AuthorizationPolicy(s) => Some(&s.target),
            Spec::RequestAuthentication(s) => Some(&s.target),
            Spec::TrafficSplit(s) => Some(&s.target),
            Spec::FaultInjection(s) => Some(&s.target),
            Spec::CircuitBreaker(s) => Some(&s.target),
            Spec::Rollout(s) => Some(&s.target),
            Spec::WebApplicationFirewall(s) => Some(&s.target),
        }
    }

    /// The document as a JSON value in its user-facing form.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EnvelopeRef<'a, S> {
    api_version: &'a str,
    kind: Kind,
    metadata: &'a Metadata,
    spec: &'a S,
}

impl Serialize for Document {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        fn env<'a, T>(d: &'a Document, spec: &'a T) -> EnvelopeRef<'a, T> {
            EnvelopeRef {
                api_version: &d.api_version,
                kind: d.kind(),
                metadata: &d.metadata,
                spec,
            }
        }
        match &self.spec {
            Spec::Service(s) => env(self, s).serialize(serializer),
            Spec::AuthorizationPolicy(s) => env(self, s).serialize(serializer),
            Spec::RequestAuthentication(s) => env(self, s).serialize(serializer),
            Spec::TrafficSplit(s) => env(self, s).serialize(serializer),
            Spec::FaultInjection(s) => env(self, s).serialize(serializer),
            Spec::CircuitBreaker(s) => env(self, s).serialize(serializer),
            Spec::Rollout(s) => env(self, s).serialize(serializer),
            Spec::WebApplicationFirewall(s) => env(self, s).serialize(serializer),
        }
    }
}

/// The service (and optionally some of its versions) a document applies to. The service is
/// looked up in the document's own namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetRef {
    pub service: String,
    /// Absent = every version of the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub versions: Option<Vec<String>>,
}

// --- Service ---

/// Declares a mesh service: its versions are the sidecars `(namespace, service, version)`
/// that receive filter configurations, and what the other documents may refer to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceSpec {
    pub port: u16,
    /// Version names (`v1`, `2024-06`, ...), unique.
    pub versions: Vec<String>,
    /// Version that takes the traffic nothing else decides; default: the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_version: Option<String>,
    /// Host callers use (`:authority` without port); default: the service name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// What the service's authz does with `;` path parameters: `reject` (400, the default)
    /// or `strip` (removed from each segment before policies match, as Tomcat-like apps
    /// read `/public/..;/admin` as `/admin`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_parameters: Option<PathParametersSpec>,
    /// The services this service's sidecars call (`name` in the same namespace, or
    /// `namespace/name`): their outbound routes, clusters and endpoints are only these (an
    /// Istio `Sidecar`'s egress hosts). Absent: every declared service; `[]`: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calls: Option<Vec<String>>,
}

impl ServiceSpec {
    /// `calls` as `(namespace, name)` pairs, a bare name in `namespace` (the service's
    /// own); `None` when absent (every service).
    pub fn called_services(&self, namespace: &str) -> Option<Vec<(String, String)>> {
        self.calls.as_ref().map(|calls| {
            calls
                .iter()
                .map(|c| split_service_ref(namespace, c))
                .collect()
        })
    }
}

/// `name` or `namespace/name` -> `(namespace, name)`, a bare name in `namespace`.
pub fn split_service_ref(namespace: &str, reference: &str) -> (String, String) {
    match reference.split_once('/') {
        Some((ns, name)) => (ns.to_string(), name.to_string()),
        None => (namespace.to_string(), reference.to_string()),
    }
}

/// `Service.spec.pathParameters`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PathParametersSpec {
    #[default]
    Reject,
    Strip,
}

// --- AuthorizationPolicy ---

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum AuthzAction {
    #[default]
    Allow,
    Deny,
    Audit,
}

/// Istio-like authorization of the callers of `target`. Rules are OR-ed; inside a rule,
/// `from`, `to` and every `when` condition are AND-ed; values in a list are OR-ed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthorizationPolicySpec {
    pub target: TargetRef,
    #[serde(default)]
    pub action: AuthzAction,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub rules: Vec<AuthzRule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deny_response: Option<DenyResponseSpec>,
    /// Match `paths`/`notPaths` ignoring ASCII case, for apps that ignore case.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignore_path_case: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthzRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<AuthzSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<AuthzOperation>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub when: Vec<AuthzCondition>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthzSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principals: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_principals: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_namespaces: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_blocks: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_ip_blocks: Option<Vec<String>>,
    /// The original client through the proxy's trusted `X-Forwarded-For` hops (Istio's
    /// `remoteIpBlocks`); `ipBlocks` is the direct peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_ip_blocks: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_remote_ip_blocks: Option<Vec<String>>,
    /// `<iss>/<sub>` of the request's validated JWT (Istio's `requestPrincipals`): exact,
    /// `prefix*`, `*suffix`, or `*` for any valid token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_principals: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_request_principals: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthzOperation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_methods: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_paths: Option<Vec<String>>,
    /// `:authority` patterns, case-insensitive, port ignored (Istio's `hosts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_hosts: Option<Vec<String>>,
}

/// `key` is `request.headers[<name>]` or `request.auth.claims[<name>]` (nested claims:
/// `request.auth.claims[realm][role]`). Exactly one of `values` / `notValues`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthzCondition {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_values: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DenyResponseSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

// --- RequestAuthentication ---

/// JWT validation for the callers of `target` (Istio's `RequestAuthentication`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestAuthenticationSpec {
    pub target: TargetRef,
    pub jwt_rules: Vec<JwtRule>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtRule {
    pub issuer: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_header: Option<JwtHeader>,
    /// A request without a token is refused with 401.
    #[serde(default)]
    pub required: bool,
    /// Refuse tokens without `exp` (default `true`); `false` accepts tokens that never expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_expiration: Option<bool>,
    /// Tolerated clock skew for `exp`/`nbf`, a duration such as `60s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_skew: Option<String>,
    /// A JWKS document, inline as an object or as a JSON string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hs256_secrets: Vec<String>,
    /// Claims copied into request headers for the next hop (Istio's `outputClaimToHeaders`);
    /// the headers are always stripped from incoming requests first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output_claim_to_headers: Vec<ClaimToHeader>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimToHeader {
    pub header: String,
    pub claim: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtHeader {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

// --- TrafficSplit ---

/// Canary release of `target`: match routes first, then a weighted split (percent, up to two
/// decimals, summing to 100). Every sidecar calling the service applies it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrafficSplitSpec {
    pub target: TargetRef,
    /// Only requests whose path starts with this; absent = every path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<SplitRoute>,
    pub split: Vec<WeightedVersion>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky: Option<StickySpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cohort: Option<CohortSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<MirrorSpec>,
    /// Pick and count the version as usual (`would_route`), route as before (no cluster
    /// header, cohort or mirror).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

/// Requests matching `match` go to `version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SplitRoute {
    #[serde(rename = "match")]
    pub matches: RouteMatch,
    pub version: String,
}

/// Exactly one of `header`, `cookie`, `claim`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<NameValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<NameValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<NameValue>,
}

/// `name` present, and equal to `value` when given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NameValue {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WeightedVersion {
    pub version: String,
    /// Percent, 0-100, at most two decimals (`0.25`).
    pub weight: f64,
}

/// Sticky split: the same key always lands on the same version. Exactly one key source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StickySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<String>,
    /// Default: `<namespace>/<service>`, so two services do not share canary users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CohortSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_header: Option<String>,
    #[serde(default = "yes")]
    pub honour_incoming: bool,
}

fn yes() -> bool {
    true
}

/// Copies `percent` of the requests to `version`; the copy's answer is discarded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MirrorSpec {
    pub version: String,
    pub percent: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

// --- FaultInjection ---

/// Delays and/or aborts a share of the requests callers send to `target` (applied in the
/// callers' sidecars: every caller's, or only those `match.principals` names). Percentages above `percentCap` (default 50) are refused, so hitting
/// more than half of the traffic takes a deliberate `percentCap: 100`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultInjectionSpec {
    pub target: TargetRef,
    /// Only requests matching every given field; absent = all requests to the service.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub matches: Option<FaultMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<DelaySpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<AbortSpec>,
    /// Honour the `x-weft-fault` request header (`abort=503`, `delay=200ms`) on matching
    /// requests.
    #[serde(default)]
    pub allow_header_trigger: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent_cap: Option<f64>,
    /// Decide as usual and count what would be injected (`would_abort`, `would_delay`),
    /// inject nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// When the policy switches itself off: an RFC 3339 time, or a duration (`30m`, at most
    /// 24h) that the apply turns into a time (see [`crate::expiry`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry: Option<String>,
    /// Most requests held delayed at once by this policy, per sidecar worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_active: Option<u32>,
    /// Most of the matching requests (percent) that get any fault, sampled or by header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_percent: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultMatch {
    /// Path prefixes, e.g. `/api/`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub path_prefixes: Vec<String>,
    /// Callers (SPIFFE ids or patterns) whose requests are affected.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub principals: Vec<String>,
    /// All must hold; neither `exact` nor `prefix` = the header is present.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderMatchSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderMatchSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DelaySpec {
    /// A duration such as `200ms` (at most 5m).
    pub fixed_delay: String,
    /// When set, the delay is drawn uniformly between `fixedDelay` and this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_delay: Option<String>,
    pub percent: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AbortSpec {
    pub http_status: u16,
    /// `grpc-status` for gRPC callers (0-16); default: derived from `httpStatus`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_status: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    pub percent: f64,
}

// --- CircuitBreaker ---

/// Fail-fast for callers of `target` (per version) when it keeps failing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CircuitBreakerSpec {
    pub target: TargetRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_rate: Option<FailureRateSpec>,
    /// `5xx`, `gatewayErrors`, `connectFailure`, `reset`, `timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_on: Option<Vec<String>>,
    /// First open period, a duration (`5s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_open_interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_multiplier: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter_percent: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub half_open_probes: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reject_status: Option<u16>,
    /// Run the state machine and count would-fail-fast (`would_fail_fast`); fail nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FailureRateSpec {
    pub threshold_percent: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_requests: Option<u32>,
}
