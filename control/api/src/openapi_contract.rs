// Over 400 lines: one row per route of ROUTES with sample values of its types (the checker itself is ~120 lines).
//! `openapi.json` held to the typed contract: every route of [`crate::ROUTES`] is listed
//! below with the shared type of each JSON body it reads or writes (or why it has none), and
//! each documented schema must have exactly the fields serde writes for sample values of
//! that type: the same property names at every level (through `$ref`s, arrays and nested
//! objects), the same JSON types and enum values, and every `required` field written. A
//! field added to a type without its documentation, or documented but never written, fails.
#![cfg(test)]

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::{json, Value};
use weft_compile::{SidecarChange, SidecarId};
use weft_policy::set::DocDiff;
use weft_policy::{FieldError, PolicySet};
use weft_store::{Operation, Record, RecordSummary};

use crate::access::{
    AuditEntry, AuditList, CertificateIssued, CreateOperator, OperatorCreated, OperatorList,
    OperatorRecord, Role, Whoami,
};
use crate::types::*;

/// One route's JSON bodies: request samples (`application/json`), and per status the
/// response samples.
struct Bodies {
    request: Vec<Value>,
    responses: Vec<(&'static str, Vec<Value>)>,
}

/// The routes without a shared type, by path or path prefix, and why; only their presence
/// (and their error bodies) is checked.
const UNTYPED: &[(&str, &str)] = &[
    ("/openapi.json", "this document"),
    (
        "/api/v1/sidecars/",
        "filter configurations (weft-compile) as JSON",
    ),
    ("/api/v1/graph", "weft-telemetry-plane's view"),
    ("/api/v1/suggest/authz", "weft-telemetry-plane's view"),
    ("/metrics", "Prometheus text"),
    ("/ui", "HTML"),
    ("/api/v1/xds/", "weft-xds's views, built by `weft serve`"),
    ("/api/v1/rollouts", "weft-rollout's own"),
    (
        "/api/v1/replicas",
        "weft-etcd's registrations, read by `weft serve`",
    ),
    (
        "/api/v1/check",
        "weft-check's own (`CheckResult`, `Matrix`)",
    ),
];

/// Whether `path` is one of [`UNTYPED`].
fn untyped(path: &str) -> bool {
    UNTYPED
        .iter()
        .any(|(prefix, _)| match prefix.strip_suffix('/') {
            Some(_) => path.starts_with(prefix),
            None => path == *prefix || path.starts_with(&format!("{prefix}/")),
        })
}

fn samples<T: Serialize>(values: &[T]) -> Vec<Value> {
    values
        .iter()
        .map(|v| serde_json::to_value(v).unwrap())
        .collect()
}

fn one<T: Serialize>(value: T) -> Vec<Value> {
    samples(&[value])
}

fn typed(request: Vec<Value>, responses: Vec<(&'static str, Vec<Value>)>) -> Bodies {
    Bodies { request, responses }
}

fn error() -> Vec<Value> {
    one(ErrorBody {
        error: "invalid".into(),
        details: vec![FieldError::new("Service/default/a (#1)", "spec", "bad")],
    })
}

fn documents() -> Vec<weft_policy::Document> {
    let yaml = b"apiVersion: weft.dev/v1alpha1
kind: Service
metadata: {name: reviews, namespace: default, labels: {team: a}, annotations: {note: b}}
spec: {port: 9080, versions: [v1], stableVersion: v1}
";
    weft_policy::parse_documents(yaml, &weft_policy::Limits::default()).unwrap()
}

fn diff() -> DocDiff {
    DocDiff {
        added: vec!["Service/default/a".into()],
        changed: vec!["Service/default/b".into()],
        removed: vec!["Service/default/c".into()],
    }
}

fn sidecar() -> SidecarId {
    SidecarId {
        namespace: "default".into(),
        service: "reviews".into(),
        version: "v1".into(),
    }
}

fn outcome() -> Vec<Value> {
    one(Outcome {
        version: 2,
        created: true,
        documents: diff(),
        sidecars: vec![SidecarChange {
            sidecar: sidecar(),
            change: "changed".into(),
            filters: vec!["authz".into()],
        }],
    })
}

fn operations() -> [Operation; 3] {
    [
        Operation::Apply,
        Operation::Delete {
            document: "Service/default/a".into(),
        },
        Operation::Rollback { to: 1 },
    ]
}

/// Also the sample of the wire-format test in [`crate::types`].
pub(crate) fn token_record() -> TokenRecord {
    TokenRecord {
        claims: weft_ca::Claims {
            id: "t1".into(),
            namespace: "default".into(),
            service: "reviews".into(),
            exp: 100,
        },
        created: 50,
        revoked_at: Some(60),
    }
}

fn root() -> RootInfo {
    RootInfo {
        generation: 1,
        created_ms: 1,
        not_after_ms: 2,
        active_from_ms: 1,
        retired_at_ms: Some(2),
        serial: "0a".into(),
    }
}

fn operator() -> OperatorRecord {
    OperatorRecord {
        name: "ana".into(),
        role: Role::Editor,
        namespaces: vec!["default".into()],
        created_by: "operator:root".into(),
        created_ms: 1,
        expires_ms: Some(2),
        revoked_ms: Some(3),
        certificate: true,
        token_sha256: None,
    }
    .public()
}

/// Every route with a shared type, with its bodies.
fn contract() -> Vec<(&'static str, &'static str, Bodies)> {
    let changes = || vec![("200", outcome()), ("413", error()), ("422", error())];
    let history = operations().map(|operation| RecordSummary {
        version: 1,
        author: "ana".into(),
        time_unix_ms: 1,
        operation,
        diff: diff(),
        documents: 1,
    });
    let records = operations().map(|operation| Record {
        version: 1,
        author: "ana".into(),
        time_unix_ms: 1,
        operation,
        diff: diff(),
        documents: PolicySet::from_documents(documents()),
    });
    let audit = AuditEntry {
        time_unix_ms: 1,
        principal: "operator:ana".into(),
        source: "127.0.0.1".into(),
        route: "POST /api/v1/apply".into(),
        status: 422,
        outcome: "failed".into(),
        version: Some(2),
        reason: Some("invalid".into()),
        id: Some("5d1c0e7a9b2f4d68".into()),
    };
    let health = Health {
        status: "ok".into(),
    };
    let unhealthy = Health {
        status: "unavailable: etcd unreachable since 2026-01-01T00:00:00Z (12 s; bound 10000 ms): writes refused, SVID renewal degraded".into(),
    };
    let status = Status {
        server: "weft".into(),
        server_version: "0.1.0".into(),
        policy_version: 1,
        documents: 1,
        sidecars: 1,
    };
    vec![
        (
            "get",
            "/healthz",
            typed(vec![], vec![("200", one(health)), ("503", one(unhealthy))]),
        ),
        (
            "get",
            "/api/v1/status",
            typed(vec![], vec![("200", one(status))]),
        ),
        (
            "post",
            "/api/v1/apply",
            typed(samples(&documents()), changes()),
        ),
        (
            "post",
            "/api/v1/validate",
            typed(
                samples(&documents()),
                vec![
                    (
                        "200",
                        one(Validated {
                            valid: true,
                            documents: vec!["Service/default/reviews".into()],
                        }),
                    ),
                    ("422", error()),
                ],
            ),
        ),
        (
            "post",
            "/api/v1/diff",
            typed(samples(&documents()), changes()),
        ),
        (
            "get",
            "/api/v1/policies",
            typed(vec![], vec![("200", vec![json!(samples(&documents()))])]),
        ),
        (
            "get",
            "/api/v1/policies/{kind}/{namespace}/{name}",
            typed(
                vec![],
                vec![("200", samples(&documents())), ("404", error())],
            ),
        ),
        (
            "delete",
            "/api/v1/policies/{kind}/{namespace}/{name}",
            typed(vec![], vec![("200", outcome()), ("404", error())]),
        ),
        (
            "get",
            "/api/v1/history",
            typed(vec![], vec![("200", vec![json!(samples(&history))])]),
        ),
        (
            "get",
            "/api/v1/history/{version}",
            typed(vec![], vec![("200", samples(&records)), ("404", error())]),
        ),
        (
            "post",
            "/api/v1/rollback/{version}",
            typed(vec![], vec![("200", outcome()), ("404", error())]),
        ),
        (
            "get",
            "/api/v1/sidecars",
            typed(
                vec![],
                vec![(
                    "200",
                    one(Sidecars {
                        version: 1,
                        sidecars: vec![sidecar()],
                    }),
                )],
            ),
        ),
        (
            "post",
            "/api/v1/explain/{namespace}/{service}/tokens",
            typed(
                one(CreateExplainToken {
                    ttl_seconds: Some(300),
                }),
                vec![
                    (
                        "201",
                        one(ExplainToken {
                            token: "v1.default.reviews.1.00".into(),
                            namespace: "default".into(),
                            service: "reviews".into(),
                            header: "x-weft-explain-token".into(),
                            expires_at_unix: 1,
                        }),
                    ),
                    ("400", error()),
                    ("404", error()),
                    ("422", error()),
                ],
            ),
        ),
        (
            "post",
            "/api/v1/tokens",
            typed(
                one(CreateToken {
                    service: "reviews".into(),
                    namespace: "default".into(),
                    ttl_seconds: Some(60),
                }),
                vec![
                    (
                        "201",
                        one(TokenCreated {
                            token: "tok".into(),
                            record: token_record(),
                            spiffe_id: "spiffe://cluster.local/ns/default/sa/reviews".into(),
                        }),
                    ),
                    ("404", error()),
                ],
            ),
        ),
        (
            "get",
            "/api/v1/tokens",
            typed(
                vec![],
                vec![(
                    "200",
                    one(TokenList {
                        tokens: vec![token_record()],
                    }),
                )],
            ),
        ),
        (
            "delete",
            "/api/v1/tokens/{id}",
            typed(
                vec![],
                vec![
                    (
                        "200",
                        one(Revoked {
                            revoked: "t1".into(),
                        }),
                    ),
                    ("404", error()),
                ],
            ),
        ),
        (
            "get",
            "/api/v1/ca",
            typed(
                vec![],
                vec![(
                    "200",
                    one(CaInfo {
                        trust_domain: "cluster.local".into(),
                        svid_ttl_seconds: 3600,
                        signing_generation: 1,
                        roots: vec![root()],
                        trust_bundle: "PEM".into(),
                    }),
                )],
            ),
        ),
        (
            "post",
            "/api/v1/ca/rotate",
            typed(vec![], vec![("200", one(RootRotated { root: root() }))]),
        ),
        (
            "post",
            "/api/v1/operators",
            typed(
                one(CreateOperator {
                    name: "ana".into(),
                    role: Role::Editor,
                    namespaces: vec!["default".into()],
                    ttl_seconds: Some(60),
                    certificate: true,
                }),
                vec![
                    (
                        "201",
                        samples(&[
                            OperatorCreated {
                                token: "tok".into(),
                                operator: operator(),
                                cert_pem: Some("PEM".into()),
                                key_pem: Some("PEM".into()),
                                spiffe_id: Some("spiffe://x/ns/weft-system/operator/ana".into()),
                            },
                            OperatorCreated {
                                token: "tok".into(),
                                operator: operator(),
                                cert_pem: None,
                                key_pem: None,
                                spiffe_id: None,
                            },
                        ]),
                    ),
                    ("422", error()),
                ],
            ),
        ),
        (
            "get",
            "/api/v1/operators",
            typed(
                vec![],
                vec![(
                    "200",
                    one(OperatorList {
                        operators: vec![operator()],
                    }),
                )],
            ),
        ),
        (
            "delete",
            "/api/v1/operators/{name}",
            typed(vec![], vec![("200", one(operator())), ("404", error())]),
        ),
        (
            "get",
            "/api/v1/whoami",
            typed(
                vec![],
                vec![(
                    "200",
                    one(Whoami {
                        name: "ana".into(),
                        role: Role::Admin,
                        namespaces: vec!["*".into()],
                    }),
                )],
            ),
        ),
        (
            "post",
            "/api/v1/whoami/certificate",
            typed(
                vec![],
                vec![
                    (
                        "201",
                        one(CertificateIssued {
                            spiffe_id: "spiffe://weft.test/ns/weft-system/operator/ana".into(),
                            cert_pem: "-----BEGIN CERTIFICATE-----\n...".into(),
                            key_pem: "-----BEGIN PRIVATE KEY-----\n...".into(),
                        }),
                    ),
                    ("404", error()),
                    ("409", error()),
                ],
            ),
        ),
        (
            "get",
            "/api/v1/audit",
            typed(
                vec![],
                vec![(
                    "200",
                    samples(&[
                        AuditList {
                            entries: vec![audit.clone()],
                        },
                        AuditList {
                            entries: vec![AuditEntry {
                                outcome: "started".into(),
                                status: 0,
                                version: None,
                                reason: None,
                                ..audit
                            }],
                        },
                    ]),
                )],
            ),
        ),
    ]
}

/// The schema `$ref` points at, or `schema`.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let name = reference.trim_start_matches("#/components/schemas/");
            resolve(doc, &doc["components"]["schemas"][name])
        }
        None => schema,
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Mismatches between `schema` and what serde wrote (`samples`, all for this schema): each
/// sample's fields are documented and its required fields present; together the samples
/// write every documented field (several samples cover optional fields and enum variants).
fn mismatches(doc: &Value, schema: &Value, samples: &[&Value], at: &str) -> Vec<String> {
    let schema = resolve(doc, schema);
    if let Some(alternatives) = schema.get("oneOf").and_then(Value::as_array) {
        // Each sample must fit one alternative.
        return samples
            .iter()
            .filter(|sample| {
                !alternatives
                    .iter()
                    .any(|alt| mismatches(doc, alt, &[**sample], at).is_empty())
            })
            .map(|sample| format!("{at}: {sample} fits no alternative of oneOf"))
            .collect();
    }
    let mut out = Vec::new();
    let nullable = schema["nullable"] == json!(true);
    let mut present = Vec::new();
    for sample in samples {
        match (
            schema.get("type").and_then(Value::as_str),
            json_type(sample),
        ) {
            (_, "null") if nullable => continue,
            (None, _) => {}
            (Some("number"), "integer") => {}
            (Some(want), got) if want != got => {
                out.push(format!(
                    "{at}: documented as {want}, serde writes {got} ({sample})"
                ));
                continue;
            }
            _ => {}
        }
        if let Some(values) = schema.get("enum").and_then(Value::as_array) {
            if !values.contains(sample) {
                out.push(format!(
                    "{at}: {sample} is not one of the documented {values:?}"
                ));
            }
        }
        present.push(*sample);
    }
    if let Some(items) = schema.get("items") {
        let elements: Vec<&Value> = present
            .iter()
            .filter_map(|s| s.as_array())
            .flatten()
            .collect();
        if elements.is_empty() && !present.is_empty() {
            out.push(format!("{at}: no sample element to check the items with"));
        }
        out.extend(mismatches(doc, items, &elements, &format!("{at}[]")));
    }
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return out;
    };
    let documented: BTreeSet<&str> = properties.keys().map(String::as_str).collect();
    let mut written = BTreeSet::new();
    for sample in present.iter().filter_map(|s| s.as_object()) {
        for key in sample.keys() {
            written.insert(key.as_str());
            if !documented.contains(key.as_str()) {
                out.push(format!("{at}: serde writes `{key}`, not documented"));
            }
        }
        for required in schema["required"].as_array().into_iter().flatten() {
            if let Some(name) = required.as_str().filter(|n| !sample.contains_key(*n)) {
                out.push(format!(
                    "{at}: `{name}` is required but serde did not write it"
                ));
            }
        }
    }
    for (name, property) in properties {
        if !written.contains(name.as_str()) {
            out.push(format!(
                "{at}: `{name}` is documented but serde never writes it"
            ));
            continue;
        }
        let values: Vec<&Value> = present.iter().filter_map(|s| s.get(name)).collect();
        out.extend(mismatches(doc, property, &values, &format!("{at}.{name}")));
    }
    out
}

fn openapi() -> Value {
    serde_json::from_str(crate::OPENAPI).unwrap()
}

#[test]
fn every_route_is_typed_or_says_why_not_once() {
    let typed: Vec<(&str, &str)> = contract().iter().map(|(m, p, _)| (*m, *p)).collect();
    for (method, path) in crate::ROUTES {
        let listed = typed.iter().filter(|r| **r == (*method, *path)).count();
        assert_eq!(listed + usize::from(untyped(path)), 1, "{method} {path}");
    }
    for route in &typed {
        assert!(crate::ROUTES.contains(route), "{route:?} is not a route");
    }
    for (prefix, why) in UNTYPED {
        assert!(!why.is_empty(), "{prefix}: say why it has no type");
        assert!(
            crate::ROUTES
                .iter()
                .any(|(_, path)| path.starts_with(prefix)),
            "{prefix} matches no route"
        );
    }
}

#[test]
fn every_typed_body_is_documented_with_the_fields_serde_writes() {
    let doc = openapi();
    let error = error();
    let mut failures = Vec::new();
    let untyped = crate::ROUTES
        .iter()
        .filter(|(_, path)| untyped(path))
        .map(|(m, p)| (*m, *p, None));
    let typed = contract().into_iter().map(|(m, p, b)| (m, p, Some(b)));
    for (method, path, bodies) in untyped.chain(typed) {
        let operation = &doc["paths"][path][method];
        assert!(
            operation.is_object(),
            "{method} {path} missing from openapi.json"
        );
        let at = format!("{method} {path}");
        // Every error answer is the shared error body.
        for (status, response) in operation["responses"].as_object().into_iter().flatten() {
            let schema = &response["content"]["application/json"]["schema"];
            if schema["$ref"] == json!("#/components/schemas/Error") {
                let samples: Vec<&Value> = error.iter().collect();
                failures.extend(mismatches(
                    &doc,
                    schema,
                    &samples,
                    &format!("{at} {status}"),
                ));
            }
        }
        let Some(Bodies { request, responses }) = bodies else {
            continue;
        };
        let schema = &operation["requestBody"]["content"]["application/json"]["schema"];
        match (request.is_empty(), schema.is_null()) {
            (true, true) => {}
            (true, false) => failures.push(format!("{at}: documents a JSON request no type reads")),
            (false, true) => failures.push(format!("{at}: its JSON request is not documented")),
            (false, false) => {
                let samples: Vec<&Value> = request.iter().collect();
                failures.extend(mismatches(&doc, schema, &samples, &format!("{at} request")));
            }
        }
        for (status, values) in &responses {
            let schema = &operation["responses"][status]["content"]["application/json"]["schema"];
            if schema.is_null() {
                failures.push(format!("{at} {status}: no JSON schema documented"));
                continue;
            }
            let samples: Vec<&Value> = values.iter().collect();
            failures.extend(mismatches(
                &doc,
                schema,
                &samples,
                &format!("{at} {status}"),
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The check itself catches each kind of drift.
#[test]
fn the_check_finds_undocumented_missing_and_mistyped_fields() {
    let doc = json!({"components": {"schemas": {"T": {"type": "object", "required": ["a"],
        "properties": {"a": {"type": "integer"}, "b": {"type": "string", "enum": ["x"]},
        "c": {"type": "array", "items": {"type": "string"}}}}}}});
    let schema = json!({"$ref": "#/components/schemas/T"});
    let check = |samples: &[Value]| {
        let samples: Vec<&Value> = samples.iter().collect();
        mismatches(&doc, &schema, &samples, "T")
    };
    assert_eq!(
        check(&[json!({"a": 1, "b": "x", "c": ["s"]})]),
        Vec::<String>::new()
    );
    // Optional fields covered by a second sample.
    assert_eq!(
        check(&[
            json!({"a": 1, "b": "x"}),
            json!({"a": 2, "c": []}),
            json!({"a": 3, "c": ["s"]})
        ]),
        Vec::<String>::new()
    );
    assert_eq!(
        check(&[json!({"a": 1, "b": "x", "c": ["s"], "d": 1})]),
        ["T: serde writes `d`, not documented"]
    );
    assert_eq!(
        check(&[json!({"a": 1, "c": ["s"]})]),
        ["T: `b` is documented but serde never writes it"]
    );
    assert_eq!(
        check(&[json!({"b": "x", "c": ["s"]}), json!({"a": 1})]),
        ["T: `a` is required but serde did not write it"]
    );
    assert_eq!(
        check(&[json!({"a": "1", "b": "y", "c": [1]})]),
        [
            "T.a: documented as integer, serde writes string (\"1\")",
            "T.b: \"y\" is not one of the documented [String(\"x\")]",
            "T.c[]: documented as string, serde writes integer (1)",
        ]
    );
}
