//! The protected API (`serve_protected`) in process over plain HTTP: credentials, roles,
//! namespaces, body types, Host, and the audit log, without Envoy (the e2e
//! `tests/tests/operator_access.rs` covers TLS, certificates and the sidecars).

#![cfg(test)]

mod support;

use serde_json::Value;
use std::sync::Arc;
use weft_api::access::{Access, AuditLog, Operators, Role};
use weft_policy::Limits;
use weft_state::ControlPlane;
use weft_store::MemoryStore;

struct Server {
    base: String,
    admin: String,
    access: Arc<Access>,
    _dir: tempfile::TempDir,
    _thread: std::thread::JoinHandle<std::io::Result<()>>,
}

fn start() -> Server {
    start_with(|dir| AuditLog::open(dir).unwrap())
}

/// A server whose audit log is `audit(data dir)`.
fn start_with(audit: impl FnOnce(&std::path::Path) -> AuditLog) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let (operators, written) = Operators::open(dir.path()).unwrap();
    let admin = std::fs::read_to_string(written.unwrap())
        .unwrap()
        .trim()
        .to_string();
    let access = Arc::new(Access {
        operators,
        audit: audit(dir.path()),
        hosts: vec!["localhost".into(), "127.0.0.1".into()],
        operator_ca: None,
    });
    let plane =
        Arc::new(ControlPlane::open(Arc::new(MemoryStore::new()), Limits::default()).unwrap());
    let served = Arc::clone(&access);
    let (addr, thread) = support::spawn_server(move |listener| {
        let listener = weft_api::ApiListener::Plain(listener);
        weft_api::serve_protected(
            listener,
            plane,
            axum::Router::new(),
            served,
            std::future::pending(),
        )
    });
    Server {
        base: format!("http://{addr}"),
        admin,
        access,
        _dir: dir,
        _thread: thread,
    }
}

fn call(
    s: &Server,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, Value) {
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build(),
    );
    let url = format!("{}{path}", s.base);
    let mut response = match method {
        "GET" => {
            let mut r = agent.get(&url);
            for (k, v) in headers {
                r = r.header(*k, *v);
            }
            r.call()
        }
        "DELETE" => {
            let mut r = agent.delete(&url);
            for (k, v) in headers {
                r = r.header(*k, *v);
            }
            r.call()
        }
        _ => {
            let mut r = agent.post(&url);
            for (k, v) in headers {
                r = r.header(*k, *v);
            }
            r.send(body.unwrap_or(""))
        }
    }
    .unwrap();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

const DOCS: &str = "apiVersion: weft.dev/v1alpha1\nkind: Service\nmetadata: {name: ledger, namespace: finance}\nspec: {port: 80, versions: [v1]}\n---\napiVersion: weft.dev/v1alpha1\nkind: Service\nmetadata: {name: cart, namespace: shop}\nspec: {port: 80, versions: [v1]}\n";
const FINANCE: &str = "apiVersion: weft.dev/v1alpha1\nkind: Service\nmetadata: {name: ledger, namespace: finance}\nspec: {port: 81, versions: [v1]}\n";

#[test]
fn credentials_roles_namespaces_body_types_and_hosts_are_enforced_and_audited() {
    let s = start();
    let admin = format!("Bearer {}", s.admin);
    let yaml = ("content-type", "application/yaml");
    // No credential, a lower-case scheme, a cookie.
    assert_eq!(call(&s, "GET", "/api/v1/status", &[], None).0, 401);
    assert_eq!(
        call(
            &s,
            "GET",
            "/api/v1/status",
            &[("authorization", &format!("bearer {}", s.admin))],
            None
        )
        .0,
        200
    );
    assert_eq!(
        call(
            &s,
            "GET",
            "/api/v1/status",
            &[("cookie", &format!("token={}", s.admin))],
            None
        )
        .0,
        401
    );
    assert_eq!(call(&s, "GET", "/healthz", &[], None).0, 200);
    assert_eq!(call(&s, "GET", "/nowhere", &[], None).0, 401);
    assert_eq!(
        call(&s, "GET", "/nowhere", &[("authorization", &admin)], None).0,
        403
    );
    // The admin applies both namespaces.
    let (code, out) = call(
        &s,
        "POST",
        "/api/v1/apply",
        &[("authorization", &admin), yaml],
        Some(DOCS),
    );
    assert_eq!(code, 200, "{out}");
    // An editor of finance: finance alone yes, with shop no (nothing applied), delete in shop no.
    let (editor, _) = s
        .access
        .operators
        .create(
            "fin",
            Role::Editor,
            vec!["finance".into()],
            None,
            false,
            "t",
        )
        .unwrap();
    let editor = format!("Bearer {editor}");
    let (code, out) = call(
        &s,
        "POST",
        "/api/v1/apply",
        &[("authorization", &editor), yaml],
        Some(FINANCE),
    );
    assert_eq!((code, out["version"].as_u64()), (200, Some(2)), "{out}");
    let mixed = format!("{FINANCE}---\napiVersion: weft.dev/v1alpha1\nkind: Service\nmetadata: {{name: cart, namespace: shop}}\nspec: {{port: 99, versions: [v1]}}\n");
    let (code, out) = call(
        &s,
        "POST",
        "/api/v1/apply",
        &[("authorization", &editor), yaml],
        Some(&mixed),
    );
    assert_eq!(code, 403, "{out}");
    assert!(
        out["error"]
            .as_str()
            .unwrap()
            .contains("document Service/shop/cart"),
        "{out}"
    );
    let (code, _) = call(
        &s,
        "DELETE",
        "/api/v1/policies/Service/shop/cart",
        &[("authorization", &editor)],
        None,
    );
    assert_eq!(code, 403);
    // Rollback to version 1 changes finance only: allowed (dry run).
    let (code, out) = call(
        &s,
        "POST",
        "/api/v1/rollback/1?dryRun=true",
        &[("authorization", &editor), yaml],
        None,
    );
    assert_eq!(code, 200, "{out}");
    let (_, status) = call(
        &s,
        "GET",
        "/api/v1/status",
        &[("authorization", &admin)],
        None,
    );
    assert_eq!(status["policyVersion"], 2);
    // Body types and Host.
    for bad in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ] {
        let (code, _) = call(
            &s,
            "POST",
            "/api/v1/validate",
            &[("authorization", &admin), ("content-type", bad)],
            Some(FINANCE),
        );
        assert_eq!(code, 415, "{bad}");
    }
    let (code, _) = call(
        &s,
        "GET",
        "/api/v1/status",
        &[("authorization", &admin), ("host", "evil.example")],
        None,
    );
    assert_eq!(code, 421);
    // A large answer passes through whole (the audit reads versions from small ones only).
    let (code, out) = call(
        &s,
        "POST",
        "/api/v1/diff",
        &[("authorization", &admin), yaml],
        Some(DOCS),
    );
    assert_eq!(code, 200);
    assert!(out["documents"].is_object(), "{out}");
    // The audit log.
    let (code, out) = call(
        &s,
        "GET",
        "/api/v1/audit?principal=fin",
        &[("authorization", &admin)],
        None,
    );
    assert_eq!(code, 200);
    let outcomes: Vec<(String, u64)> = out["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["route"].as_str().unwrap().to_string(),
                e["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            ("POST /api/v1/apply".to_string(), 200),
            ("POST /api/v1/apply".to_string(), 403),
            (
                "DELETE /api/v1/policies/{kind}/{namespace}/{name}".to_string(),
                403
            ),
            ("POST /api/v1/rollback/{version}".to_string(), 200),
        ]
    );
    let (code, _) = call(
        &s,
        "GET",
        "/api/v1/audit",
        &[("authorization", &editor)],
        None,
    );
    assert_eq!(code, 403);
}

#[test]
fn a_change_the_audit_log_cannot_record_is_not_made() {
    let flaky = Arc::new(weft_store::MemoryShared::default());
    let shared = Arc::clone(&flaky);
    let s = start_with(move |_| AuditLog::open_shared(shared));
    let admin = format!("Bearer {}", s.admin);
    let yaml = ("content-type", "application/yaml");
    let apply = |docs: &str| {
        call(
            &s,
            "POST",
            "/api/v1/apply",
            &[("authorization", &admin), yaml],
            Some(docs),
        )
    };
    let version = || {
        call(
            &s,
            "GET",
            "/api/v1/status",
            &[("authorization", &admin)],
            None,
        )
        .1["policyVersion"]
            .as_u64()
    };
    let (code, out) = apply(DOCS);
    assert_eq!(code, 200, "{out}");
    assert_eq!(version(), Some(1));

    flaky.refuse_appends(true);
    let (code, out) = apply(FINANCE);
    assert_eq!(code, 503, "{out}");
    let error = out["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("audit log") && error.contains("nothing was changed"),
        "{out}"
    );
    assert_eq!(version(), Some(1), "the change was not made");
    // Reads go on: they are not audited.
    let (code, _) = call(
        &s,
        "GET",
        "/api/v1/policies",
        &[("authorization", &admin)],
        None,
    );
    assert_eq!(code, 200);

    flaky.refuse_appends(false);
    let (code, out) = apply(FINANCE);
    assert_eq!(code, 200, "{out}");
    assert_eq!(version(), Some(2));
    // Listed once per call; the store holds a started entry and an outcome for each.
    let (_, out) = call(
        &s,
        "GET",
        "/api/v1/audit",
        &[("authorization", &admin)],
        None,
    );
    let listed: Vec<(String, u64, Option<u64>)> = out["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["outcome"].as_str().unwrap().to_string(),
                e["status"].as_u64().unwrap(),
                e["version"].as_u64(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("allowed".to_string(), 200, Some(1)),
            ("allowed".to_string(), 200, Some(2)),
        ]
    );
    let ids: Vec<&str> = out["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_ne!(ids[0], ids[1]);
    assert_eq!(
        flaky.raw().len(),
        4,
        "a started entry and an outcome per call"
    );
}

#[test]
fn certificate_renewal_refuses_what_it_cannot_serve_and_never_reads_its_body() {
    let s = start();
    let admin = format!("Bearer {}", s.admin);
    let json = ("content-type", "application/json");
    let renew = |headers: &[(&str, &str)], body: &str| {
        call(
            &s,
            "POST",
            "/api/v1/whoami/certificate",
            headers,
            Some(body),
        )
    };
    // No credential; a body type a form could send.
    assert_eq!(renew(&[json], "{}").0, 401);
    assert_eq!(
        renew(
            &[("authorization", &admin), ("content-type", "text/plain")],
            "{}"
        )
        .0,
        415
    );
    // This server has no operator CA: refused with the reason, whatever the body (it is
    // never read: empty object or malformed JSON, the answer is the same).
    for body in ["{}", "{\"name\": \"admin\""] {
        let (code, out) = renew(&[("authorization", &admin), json], body);
        assert_eq!(code, 404, "{out}");
        assert!(
            out["error"]
                .as_str()
                .unwrap_or_default()
                .contains("operator CA"),
            "{out}"
        );
    }
    // A re-encoded path is not the route: nothing is issued.
    let (code, _) = call(
        &s,
        "POST",
        "/api/v1/whoami%2Fcertificate",
        &[("authorization", &admin), json],
        Some("{}"),
    );
    assert!(!(200..300).contains(&code), "{code}");
    // Each attempt that passed the checks is audited as failed.
    let (_, out) = call(
        &s,
        "GET",
        "/api/v1/audit",
        &[("authorization", &admin)],
        None,
    );
    let failed = out["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["route"] == "POST /api/v1/whoami/certificate" && e["outcome"] == "failed")
        .count();
    assert_eq!(failed, 2, "{out}");
}
