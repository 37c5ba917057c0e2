//! The token and CA routes over HTTP, with the CA on and off.
#![cfg(test)]

use std::sync::Arc;

use serde_json::Value;
use weft_api::identity_router;
use weft_ca::{CaSettings, Identity};

/// Serves `identity_router(identity)` on a loopback port; returns its base URL.
fn serve(identity: Option<Arc<Identity>>) -> String {
    serve_router(identity_router(identity))
}

fn serve_router(router: axum::Router) -> String {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, router).await.unwrap();
        });
    });
    let addr = addr_rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    format!("http://{addr}")
}

fn call(method: &str, url: &str, body: Option<&str>) -> (u16, Value) {
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build(),
    );
    let mut response = match method {
        "GET" => agent.get(url).call(),
        "DELETE" => agent.delete(url).call(),
        _ => agent.post(url).send(body.unwrap_or("")),
    }
    .unwrap();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[test]
fn tokens_are_created_listed_and_revoked_and_the_ca_rotates() {
    let dir = tempfile::tempdir().unwrap();
    let identity = Arc::new(Identity::open(dir.path(), CaSettings::default()).unwrap());
    let base = serve(Some(Arc::clone(&identity)));

    let (status, created) = call(
        "POST",
        &format!("{base}/api/v1/tokens"),
        Some(r#"{"service": "reviews", "namespace": "shop", "ttlSeconds": 600}"#),
    );
    assert_eq!(status, 201, "{created}");
    let token = created["token"].as_str().unwrap();
    let claims = identity
        .tokens
        .verify(token, std::time::SystemTime::now())
        .unwrap();
    assert_eq!(
        (claims.namespace.as_str(), claims.service.as_str()),
        ("shop", "reviews")
    );
    assert_eq!(
        created["spiffeId"],
        "spiffe://cluster.local/ns/shop/sa/reviews"
    );

    let (status, error) = call(
        "POST",
        &format!("{base}/api/v1/tokens"),
        Some(r#"{"service": "a/b"}"#),
    );
    assert_eq!(status, 422);
    assert!(error["error"]
        .as_str()
        .unwrap()
        .contains("SPIFFE path segment"));
    let (status, _) = call(
        "POST",
        &format!("{base}/api/v1/tokens"),
        Some(r#"{"servce": "reviews"}"#),
    );
    assert_eq!(status, 422, "unknown fields are refused");

    let (_, list) = call("GET", &format!("{base}/api/v1/tokens"), None);
    assert_eq!(list["tokens"][0]["id"], claims.id.as_str());
    assert!(
        list.to_string().find(token).is_none(),
        "tokens are never listed"
    );
    let (status, _) = call(
        "DELETE",
        &format!("{base}/api/v1/tokens/{}", claims.id),
        None,
    );
    assert_eq!(status, 200);
    assert!(identity
        .tokens
        .verify(token, std::time::SystemTime::now())
        .is_err());
    let (status, _) = call("DELETE", &format!("{base}/api/v1/tokens/nope"), None);
    assert_eq!(status, 404);

    let (status, rotated) = call("POST", &format!("{base}/api/v1/ca/rotate"), None);
    assert_eq!(status, 200);
    assert_eq!(rotated["root"]["generation"], 2);
    let (_, ca) = call("GET", &format!("{base}/api/v1/ca"), None);
    assert_eq!(ca["roots"].as_array().unwrap().len(), 2);
    assert_eq!(
        ca["trustBundle"]
            .as_str()
            .unwrap()
            .matches("BEGIN CERTIFICATE")
            .count(),
        2
    );
}

#[test]
fn without_the_ca_every_identity_route_says_how_to_turn_it_on() {
    let base = serve(None);
    for (method, path) in [
        ("POST", "/api/v1/tokens"),
        ("GET", "/api/v1/tokens"),
        ("DELETE", "/api/v1/tokens/x"),
        ("GET", "/api/v1/ca"),
        ("POST", "/api/v1/ca/rotate"),
    ] {
        let (status, body) = call(method, &format!("{base}{path}"), Some("{}"));
        assert_eq!(status, 404, "{method} {path}");
        assert!(body["error"].as_str().unwrap().contains("--ca"), "{body}");
    }
}

#[test]
fn the_xds_sidecar_view_is_served_as_given_or_404_without_xds() {
    let body = serde_json::json!({"revision": 3, "sidecars": [{"node_id": "r-v1"}], "refused": {"total": 0}});
    let given = body.clone();
    let view: weft_api::SidecarView = Arc::new(move || given.clone());
    let url = serve_router(weft_api::xds_router(Some(view)));
    assert_eq!(
        call("GET", &format!("{url}/api/v1/xds/sidecars"), None),
        (200, body)
    );
    let off = serve_router(weft_api::xds_router(None));
    let (code, error) = call("GET", &format!("{off}/api/v1/xds/sidecars"), None);
    assert_eq!(code, 404);
    assert!(
        error["error"].as_str().unwrap().contains("--xds-listen"),
        "{error}"
    );
}

#[test]
fn the_xds_resources_view_answers_per_group_or_404() {
    let view: weft_api::SidecarResourcesView = Arc::new(|namespace, service, version| {
        (version == "v1")
            .then(|| serde_json::json!({"group": format!("{namespace}/{service}/{version}")}))
    });
    let url = serve_router(weft_api::xds_resources_router(Some(view)));
    let path =
        |version: &str| format!("{url}/api/v1/xds/sidecars/shop/reviews/{version}/resources");
    assert_eq!(
        call("GET", &path("v1"), None),
        (200, serde_json::json!({"group": "shop/reviews/v1"}))
    );
    let (code, error) = call("GET", &path("v9"), None);
    assert_eq!(code, 404);
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("shop/reviews/v9 not found"),
        "{error}"
    );
    let off = serve_router(weft_api::xds_resources_router(None));
    let (code, error) = call(
        "GET",
        &format!("{off}/api/v1/xds/sidecars/shop/reviews/v1/resources"),
        None,
    );
    assert_eq!(code, 404);
    assert!(
        error["error"].as_str().unwrap().contains("--xds-listen"),
        "{error}"
    );
}

#[test]
fn the_control_planes_namespace_and_out_of_range_lifetimes_are_refused_with_400() {
    let dir = tempfile::tempdir().unwrap();
    let identity = Arc::new(Identity::open(dir.path(), CaSettings::default()).unwrap());
    let base = serve(Some(Arc::clone(&identity)));
    let url = format!("{base}/api/v1/tokens");
    for (body, field) in [
        (
            r#"{"service": "weft-control", "namespace": "weft-system"}"#,
            "namespace",
        ),
        (
            r#"{"service": "x", "namespace": "WEFT-SYSTEM"}"#,
            "namespace",
        ),
        (
            r#"{"service": "reviews", "ttlSeconds": 10000000000000000000}"#,
            "ttlSeconds",
        ),
        (
            r#"{"service": "reviews", "ttlSeconds": 2592001}"#,
            "ttlSeconds",
        ),
    ] {
        let (status, error) = call("POST", &url, Some(body));
        assert_eq!(status, 400, "{body}: {error}");
        let message = error["error"].as_str().unwrap();
        assert!(message.contains(field), "{body}: {message}");
    }
    assert!(identity.tokens.list().is_empty(), "no token was made");
    // The maximum itself is fine, and the server kept serving throughout.
    let (status, created) = call(
        "POST",
        &url,
        Some(r#"{"service": "reviews", "ttlSeconds": 2592000}"#),
    );
    assert_eq!(status, 201, "{created}");
}
