//! No route answers with a configured secret: the router (with the redaction `serve` puts
//! around it) is driven request by request over a fixture set holding HS256 secrets, every
//! route of [`ROUTES`] is called (with real path parameters, successes and refusals), and each
//! answer is searched for every secret. The redacted form is checked where it must appear, so
//! the search is not vacuous.

#![cfg(test)]

use axum::body::{to_bytes, Body};
use axum::http::Request;
use std::sync::Arc;
use tower::ServiceExt;
use weft_api::{redacting, router, ROUTES};
use weft_policy::secret::redact;
use weft_policy::Limits;
use weft_state::ControlPlane;
use weft_store::MemoryStore;

const S1: &str = "first-hs256-secret-of-32-bytes-or-more";
const S2: &str = "second-hs256-secret-of-32-bytes-or-more";
const S3: &str = "third-secret-only-ever-sent-in-requests!";

fn docs(secret: &str) -> String {
    format!(
        "apiVersion: weft.dev/v1alpha1\nkind: Service\nmetadata: {{name: reviews, namespace: shop}}\nspec: {{port: 9080, versions: [v1, v2]}}\n---\n\
         apiVersion: weft.dev/v1alpha1\nkind: RequestAuthentication\nmetadata: {{name: jwt, namespace: shop}}\nspec:\n  target: {{service: reviews}}\n  jwtRules: [{{issuer: https://issuer.example, hs256Secrets: ['{secret}']}}]\n"
    )
}

struct Api(axum::Router);

impl Api {
    async fn call(&self, method: &str, path: &str, body: Option<String>) -> (u16, String) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/yaml")
            .body(body.map_or_else(Body::empty, Body::from))
            .unwrap();
        let response = self.0.clone().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let bytes = to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }
}

#[tokio::test]
async fn no_route_answers_with_a_secret() {
    let plane =
        Arc::new(ControlPlane::open(Arc::new(MemoryStore::new()), Limits::default()).unwrap());
    let api = Api(redacting(router(plane)));
    // Version 1 holds S1, version 2 holds S2.
    assert_eq!(
        api.call("POST", "/api/v1/apply", Some(docs(S1))).await.0,
        200
    );
    assert_eq!(
        api.call("POST", "/api/v1/apply", Some(docs(S2))).await.0,
        200
    );

    let mut answers = Vec::new();
    for (method, route) in ROUTES {
        let path = route
            .replace("{kind}", "RequestAuthentication")
            .replace("{namespace}", "shop")
            .replace("{name}", "jwt")
            .replace("{service}", "reviews")
            .replace("{id}", "nope");
        let mut calls = Vec::new();
        match (*method, path.contains("{version}")) {
            ("post", true) => {
                for v in ["1", "2", "99"] {
                    calls.push((path.replace("{version}", v) + "?dryRun=true", None));
                }
            }
            (_, true) => {
                calls.push((path.replace("{version}", "v1"), None));
                for v in ["1", "2", "99", "x"] {
                    calls.push((path.replace("{version}", v), None));
                }
            }
            ("post", false) => {
                calls.push((format!("{path}?dryRun=true"), Some(docs(S3))));
                // A secret that does not type-check, and one too short to be accepted.
                let bad = docs(S3).replace(&format!("['{S3}']"), &format!("{{a: '{S3}'}}"));
                calls.push((format!("{path}?dryRun=true"), Some(bad)));
                calls.push((format!("{path}?dryRun=true"), Some(docs("short"))));
            }
            ("delete", false) => calls.push((format!("{path}?dryRun=true"), None)),
            _ => calls.push((path.clone(), None)),
        }
        for (path, body) in calls {
            let (status, text) = api.call(&method.to_uppercase(), &path, body).await;
            for secret in [S1, S2, S3] {
                assert!(
                    !text.contains(secret),
                    "{method} {path} ({status}) answered with a secret: {text}"
                );
            }
            answers.push((format!("{method} {path}"), status, text));
        }
    }
    let answer = |call: &str| {
        answers
            .iter()
            .find(|(c, _, _)| c == call)
            .map(|(_, status, text)| (*status, text.clone()))
            .unwrap_or_else(|| panic!("{call} was not called"))
    };
    // The secrets are there, redacted: the document, history, and the compiled filter config.
    let (status, doc) = answer("get /api/v1/policies/RequestAuthentication/shop/jwt");
    assert_eq!(status, 200, "{doc}");
    assert!(doc.contains(&redact(S2)), "{doc}");
    let (_, v1) = answer("get /api/v1/history/1");
    assert!(v1.contains(&redact(S1)), "{v1}");
    let (status, config) = answer("get /api/v1/sidecars/shop/reviews/v1/config");
    assert_eq!(status, 200, "{config}");
    assert!(config.contains(&redact(S2)), "{config}");
    // The type error names the field without quoting it.
    let refusals: Vec<&String> = answers
        .iter()
        .filter(|(c, status, _)| c == "post /api/v1/validate?dryRun=true" && *status == 422)
        .map(|(_, _, text)| text)
        .collect();
    assert_eq!(refusals.len(), 2, "{answers:?}");
    assert!(
        refusals[0].contains("spec.jwtRules[0].hs256Secrets") && refusals[0].contains("not shown"),
        "{}",
        refusals[0]
    );
}
