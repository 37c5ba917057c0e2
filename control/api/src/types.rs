//! The REST contract: the request and response bodies of `/api/v1`, shared by the server
//! (these routes serialise them) and the CLI (`weft` deserialises them; no `body["…"]`
//! lookups). A test checks each schema named here is in `openapi.json`, and
//! `openapi_contract.rs` that each route's documented bodies match these types' serde output.

use serde::{Deserialize, Serialize};
pub use weft_compile::{SidecarChange, SidecarId};
pub use weft_policy::set::DocDiff;
pub use weft_policy::FieldError;
/// `POST /api/v1/apply`, `/diff`, `/rollback/{v}` and `DELETE /api/v1/policies/...`.
pub use weft_state::Outcome;

/// Every non-2xx answer: the message, and for 422 every field error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    #[serde(default)]
    pub details: Vec<FieldError>,
}

/// `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
}

/// `GET /api/v1/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// Always `weft`.
    pub server: String,
    pub server_version: String,
    pub policy_version: u64,
    /// Documents in the current version.
    pub documents: usize,
    /// Sidecar groups (namespace/service/version) with a compiled configuration.
    pub sidecars: usize,
}

/// `POST /api/v1/validate`: 200 only when valid (else an [`ErrorBody`] with 422).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validated {
    pub valid: bool,
    /// The documents' keys, `<kind>/<namespace>/<name>`.
    pub documents: Vec<String>,
}

/// `GET /api/v1/sidecars`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sidecars {
    pub version: u64,
    pub sidecars: Vec<SidecarId>,
}

pub use weft_ca::{RootInfo, TokenRecord};
/// `GET /api/v1/history` is a list of [`RecordSummary`].
pub use weft_store::{Operation, RecordSummary};

/// `POST /api/v1/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateToken {
    pub service: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    pub ttl_seconds: Option<u64>,
}

fn default_namespace() -> String {
    "default".into()
}

/// `POST /api/v1/tokens` (201).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenCreated {
    pub token: String,
    pub record: TokenRecord,
    pub spiffe_id: String,
}

/// `POST /api/v1/explain/{namespace}/{service}/tokens` (the body may be empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateExplainToken {
    pub ttl_seconds: Option<u64>,
}

/// `POST /api/v1/explain/{namespace}/{service}/tokens` (201).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExplainToken {
    pub token: String,
    pub namespace: String,
    pub service: String,
    /// The request header to send it in.
    pub header: String,
    pub expires_at_unix: u64,
}

/// `GET /api/v1/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenList {
    pub tokens: Vec<TokenRecord>,
}

/// `DELETE /api/v1/tokens/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revoked {
    pub revoked: String,
}

/// `GET /api/v1/ca`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CaInfo {
    pub trust_domain: String,
    pub svid_ttl_seconds: u64,
    pub signing_generation: u64,
    pub roots: Vec<RootInfo>,
    /// PEM.
    pub trust_bundle: String,
}

/// `POST /api/v1/ca/rotate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootRotated {
    pub root: RootInfo,
}

/// The schema names `openapi.json` must define, one per type above.
pub const SCHEMAS: [&str; 6] = [
    "Error",
    "Health",
    "Status",
    "Validated",
    "Sidecars",
    "Outcome",
];

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::DeserializeOwned;

    /// Serialises, checks the JSON is `expected` (the wire format the CLI and scripts read),
    /// and reads it back.
    fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(
        value: T,
        expected: serde_json::Value,
    ) {
        let json = serde_json::to_value(&value).unwrap();
        assert_eq!(json, expected);
        assert_eq!(serde_json::from_value::<T>(json).unwrap(), value);
    }

    #[test]
    fn bodies_round_trip_in_their_wire_format() {
        round_trip(
            Status {
                server: "weft".into(),
                server_version: "0.1.0".into(),
                policy_version: 3,
                documents: 2,
                sidecars: 5,
            },
            serde_json::json!({"server": "weft", "serverVersion": "0.1.0", "policyVersion": 3,
                "documents": 2, "sidecars": 5}),
        );
        round_trip(
            ErrorBody {
                error: "invalid".into(),
                details: vec![FieldError {
                    document: "AuthorizationPolicy/default/p (#1)".into(),
                    field: "spec.action".into(),
                    reason: "unknown".into(),
                }],
            },
            serde_json::json!({"error": "invalid", "details": [{"document":
                "AuthorizationPolicy/default/p (#1)", "field": "spec.action", "reason": "unknown"}]}),
        );
        round_trip(
            Validated {
                valid: true,
                documents: vec!["AuthorizationPolicy/default/p".into()],
            },
            serde_json::json!({"valid": true, "documents": ["AuthorizationPolicy/default/p"]}),
        );
        round_trip(
            Sidecars {
                version: 1,
                sidecars: vec![SidecarId {
                    namespace: "default".into(),
                    service: "reviews".into(),
                    version: "v1".into(),
                }],
            },
            serde_json::json!({"version": 1, "sidecars": [{"namespace": "default",
                "service": "reviews", "version": "v1"}]}),
        );
        round_trip(
            Health {
                status: "ok".into(),
            },
            serde_json::json!({"status": "ok"}),
        );
    }

    #[test]
    fn identity_bodies_round_trip_in_their_wire_format() {
        let record = crate::openapi_contract::token_record();
        round_trip(
            TokenList {
                tokens: vec![record.clone()],
            },
            serde_json::json!({"tokens": [{"id": "t1", "ns": "default", "svc": "reviews",
                "exp": 100, "created": 50, "revoked_at": 60}]}),
        );
        round_trip(
            TokenCreated {
                token: "tok".into(),
                record,
                spiffe_id: "spiffe://cluster.local/ns/default/sa/reviews".into(),
            },
            serde_json::json!({"token": "tok", "record": {"id": "t1", "ns": "default",
                "svc": "reviews", "exp": 100, "created": 50, "revoked_at": 60},
                "spiffeId": "spiffe://cluster.local/ns/default/sa/reviews"}),
        );
        let request: CreateToken = serde_json::from_str(r#"{"service": "reviews"}"#).unwrap();
        assert_eq!(request.namespace, "default");
        assert_eq!(request.ttl_seconds, None);
        assert!(serde_json::from_str::<CreateToken>(r#"{"service": "a", "ttl": 5}"#).is_err());
    }

    #[test]
    fn an_error_without_details_reads_as_none() {
        let body: ErrorBody = serde_json::from_str(r#"{"error": "not found"}"#).unwrap();
        assert_eq!(body.error, "not found");
        assert!(body.details.is_empty());
    }

    #[test]
    fn openapi_defines_every_schema_of_the_contract() {
        let doc: serde_json::Value = serde_json::from_str(crate::OPENAPI).unwrap();
        let schemas = &doc["components"]["schemas"];
        for name in SCHEMAS {
            assert!(
                schemas.get(name).is_some(),
                "openapi.json lacks schema {name}"
            );
        }
    }
}
