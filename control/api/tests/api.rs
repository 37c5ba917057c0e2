//! The API against a real server on port 0, driven over HTTP.
#![cfg(test)]

mod support;

use serde_json::{json, Value};
use std::sync::Arc;
use weft_api::{serve, ROUTES};
use weft_policy::Limits;
use weft_state::ControlPlane;
use weft_store::MemoryStore;

struct TestServer {
    base: String,
    agent: ureq::Agent,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    fn start(limits: Limits) -> Self {
        let plane = Arc::new(ControlPlane::open(Arc::new(MemoryStore::new()), limits).unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (addr, thread) = support::spawn_server(move |listener| {
            serve(listener, plane, async move {
                stopped.await.ok();
            })
        });
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build(),
        );
        Self {
            base: format!("http://{addr}"),
            agent,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let result = match (method, body) {
            ("GET", _) => self.agent.get(&url).call(),
            ("DELETE", _) => self
                .agent
                .delete(&url)
                .header("x-weft-author", "dora")
                .call(),
            (_, Some(b)) => self
                .agent
                .post(&url)
                .header("content-type", "application/yaml")
                .send(b),
            (_, None) => self.agent.post(&url).send_empty(),
        };
        let mut resp = result.unwrap();
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(16 * 1024 * 1024)
            .read_to_string()
            .unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.send(()).ok();
        }
        if let Some(t) = self.thread.take() {
            // Graceful shutdown returns Ok once the signal arrives.
            let result = t.join();
            if !std::thread::panicking() {
                assert!(
                    matches!(result, Ok(Ok(()))),
                    "server did not shut down cleanly: {result:?}"
                );
            }
        }
    }
}

const SERVICES: &str = "apiVersion: weft.dev/v1alpha1\nkind: Service\nmetadata: {name: reviews, namespace: shop}\nspec: {port: 9080, versions: [v1, v2]}\n";

fn mk_policy(name: &str, method: &str) -> String {
    format!("apiVersion: weft.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  target: {{service: reviews}}\n  rules: [{{to: {{methods: [{method}]}}}}]\n")
}

#[test]
fn apply_get_diff_history_rollback() {
    let s = TestServer::start(Limits::default());
    let (code, out) = s.call("POST", "/api/v1/apply?author=alice", Some(SERVICES));
    assert_eq!(
        (code, &out["version"], &out["created"]),
        (200, &json!(1), &json!(true))
    );

    // Diff of a policy: one document added, both sidecars' authz changes; nothing stored.
    let policy = mk_policy("allow-get", "GET");
    let (code, diff) = s.call("POST", "/api/v1/diff", Some(&policy));
    assert_eq!(code, 200, "{diff}");
    assert_eq!(
        diff["documents"]["added"],
        json!(["AuthorizationPolicy/shop/allow-get"])
    );
    assert_eq!(diff["sidecars"].as_array().unwrap().len(), 2);
    assert_eq!(diff["sidecars"][0]["filters"], json!(["authz"]));
    assert_eq!(
        s.call("GET", "/api/v1/status", None).1["policyVersion"],
        json!(1)
    );

    assert_eq!(
        s.call("POST", "/api/v1/apply?author=bob", Some(&policy)).1["version"],
        json!(2)
    );
    let (code, doc) = s.call(
        "GET",
        "/api/v1/policies/AuthorizationPolicy/shop/allow-get",
        None,
    );
    assert_eq!(
        (code, &doc["spec"]["rules"][0]["to"]["methods"]),
        (200, &json!(["GET"]))
    );
    let (_, cfg) = s.call("GET", "/api/v1/sidecars/shop/reviews/v2/config", None);
    assert_eq!(
        cfg["filters"]["authz"]["policies"][0]["name"],
        json!("allow-get")
    );

    assert_eq!(
        s.call(
            "POST",
            "/api/v1/apply",
            Some(&mk_policy("allow-get", "PUT"))
        )
        .1["version"],
        json!(3)
    );
    let (_, history) = s.call("GET", "/api/v1/history", None);
    let authors: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["author"].as_str().unwrap())
        .collect();
    assert_eq!(authors, ["alice", "bob", "anonymous"]);
    assert_eq!(
        history[2]["diff"]["changed"],
        json!(["AuthorizationPolicy/shop/allow-get"])
    );

    let (code, rb) = s.call("POST", "/api/v1/rollback/2?author=carol", None);
    assert_eq!((code, &rb["version"]), (200, &json!(4)));
    let (_, v4) = s.call("GET", "/api/v1/history/4", None);
    let (_, v2) = s.call("GET", "/api/v1/history/2", None);
    assert_eq!(v4["documents"], v2["documents"]);
    assert_eq!(v4["operation"], json!({"op": "rollback", "to": 2}));

    let (code, del) = s.call(
        "DELETE",
        "/api/v1/policies/authorizationpolicy/shop/allow-get",
        None,
    );
    assert_eq!((code, &del["version"]), (200, &json!(5)));
    assert_eq!(
        s.call("GET", "/api/v1/history", None).1[4]["author"],
        json!("dora")
    );
    let (_, list) = s.call("GET", "/api/v1/policies?kind=Service", None);
    assert_eq!(list.as_array().unwrap().len(), 1);
}

#[test]
fn an_invalid_multi_document_apply_changes_nothing() {
    let s = TestServer::start(Limits::default());
    s.call("POST", "/api/v1/apply", Some(SERVICES));
    let bad = format!(
        "{}---\n{}---\n{}",
        mk_policy("fine", "GET"),
        mk_policy("bad-method", "get"),
        mk_policy("bad-field", "GET").replace("rules:", "rulez:")
    );
    let (code, err) = s.call("POST", "/api/v1/apply", Some(&bad));
    assert_eq!(code, 422, "{err}");
    let details: Vec<(String, String)> = err["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["document"].as_str().unwrap().into(),
                d["field"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        details,
        [
            (
                "AuthorizationPolicy/shop/bad-method (#2)".to_string(),
                "spec.rules[0].to.methods[0]".to_string()
            ),
            (
                "AuthorizationPolicy/shop/bad-field (#3)".to_string(),
                "spec.rulez".to_string()
            ),
        ]
    );
    assert_eq!(
        s.call("GET", "/api/v1/history", None)
            .1
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        s.call("GET", "/api/v1/policies?kind=AuthorizationPolicy", None)
            .1,
        json!([])
    );
    let (code, v) = s.call("POST", "/api/v1/validate", Some(&bad));
    assert_eq!((code, v["details"].as_array().unwrap().len()), (422, 2));
    let (code, v) = s.call("POST", "/api/v1/validate", Some(&mk_policy("fine", "GET")));
    assert_eq!((code, &v["valid"]), (200, &json!(true)));
}

#[test]
fn errors_are_json_with_fitting_statuses() {
    let s = TestServer::start(Limits {
        max_bytes: 2048,
        ..Limits::default()
    });
    let (code, err) = s.call("POST", "/api/v1/apply", Some(&"#".repeat(4096)));
    assert_eq!(code, 413);
    assert!(err["error"].as_str().unwrap().contains("2048"), "{err}");
    assert_eq!(
        s.call("GET", "/api/v1/policies/Service/shop/nope", None).0,
        404
    );
    assert_eq!(
        s.call("GET", "/api/v1/policies/Gateway/shop/nope", None).0,
        404
    );
    assert_eq!(s.call("GET", "/api/v1/history/7", None).0, 404);
    assert_eq!(s.call("POST", "/api/v1/rollback/7", None).0, 404);
    assert_eq!(
        s.call("GET", "/api/v1/sidecars/shop/reviews/v9/config", None)
            .0,
        404
    );
    assert_eq!(s.call("GET", "/api/v1/nothing", None).0, 404);
    assert_eq!(s.call("POST", "/api/v1/apply", Some("a: [")).0, 422);
    s.call("POST", "/api/v1/apply", Some(SERVICES));
    let (code, err) = s.call(
        "POST",
        "/api/v1/apply?expectVersion=0",
        Some(&mk_policy("p", "GET")),
    );
    assert_eq!(code, 409, "{err}");
    assert_eq!(err["details"], json!([]));
}

#[test]
fn openapi_document_lists_every_route() {
    let s = TestServer::start(Limits::default());
    let (code, doc) = s.call("GET", "/openapi.json", None);
    assert_eq!(code, 200);
    assert_eq!(doc["openapi"], json!("3.0.3"));
    let paths = doc["paths"].as_object().unwrap();
    for (method, path) in ROUTES {
        assert!(
            paths.get(*path).and_then(|p| p.get(*method)).is_some(),
            "{method} {path} missing from openapi.json"
        );
    }
    let documented: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(
        documented,
        ROUTES.len(),
        "openapi.json documents routes the server does not have"
    );
}
