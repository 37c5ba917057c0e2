//! A hostile caller against authz in real Envoy: path spellings that mean `/admin` to an app,
//! headers sent twice, forged claim headers. The policies are YAML documents compiled by
//! `weft-compile` exactly as `weft serve` compiles them, served over xDS to sidecars made by
//! `weft bootstrap`.
//!
//! Every request is written byte for byte on a TCP socket (an HTTP client library would
//! normalise the paths before sending them). Each test runs its whole table, prints it, and
//! fails listing every attempt that reached the app where the policy says no. The filter alone
//! in a listener without Envoy's normalisation is tried in `authz_hostile.rs`.
#![cfg(test)]

mod pki_common;
mod xds_common;

use std::collections::BTreeMap;
use std::time::Duration;

use pki_common::{hs256_jwt, now};
use serde_json::json;
use weft_e2e::{raw_get, raw_request, xds_support::network_gateway, Pod, TestNet, Upstream};
use weft_policy::{labels, load, validate_set, Limits, PolicySet, References};
use weft_xds::{FilterSpec, SidecarGroup};
use xds_common::{ControlPlane, INBOUND};

const JWT_SECRET: &str = "weft-hostile-e2e-secret-of-32-bytes-at-least";
const ISSUER: &str = "https://login.weft.test";

/// Header lines of one request, in order.
type Headers<'a> = &'a [(&'a str, &'a str)];

/// The issue's scenario (DENY `/admin`, `/admin/*` and `x-user: mallory` on `reviews`), an
/// ALLOW-only service (`ratings`), a case-insensitive DENY (`details`) and a service that
/// turns JWT claims into headers (`orders`).
const POLICIES: &str = r#"
apiVersion: weft.dev/v1alpha1
kind: Service
metadata: {name: reviews, namespace: default}
spec: {port: 8080, versions: [v1]}
---
apiVersion: weft.dev/v1alpha1
kind: Service
metadata: {name: ratings, namespace: default}
spec: {port: 8080, versions: [v1]}
---
apiVersion: weft.dev/v1alpha1
kind: Service
metadata: {name: orders, namespace: default}
spec: {port: 8080, versions: [v1]}
---
apiVersion: weft.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: no-admin, namespace: default}
spec:
  target: {service: reviews}
  action: DENY
  rules:
  - to: {paths: ["/admin", "/admin/*"]}
---
apiVersion: weft.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: no-mallory, namespace: default}
spec:
  target: {service: reviews}
  action: DENY
  rules:
  - when:
    - key: request.headers[x-user]
      values: [mallory]
---
apiVersion: weft.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: public-only, namespace: default}
spec:
  target: {service: ratings}
  action: ALLOW
  rules:
  - to: {methods: [GET], paths: ["/public", "/public/*", "/health"]}
  - when:
    - key: request.headers[x-tier]
      values: [gold]
---
apiVersion: weft.dev/v1alpha1
kind: RequestAuthentication
metadata: {name: login, namespace: default}
spec:
  target: {service: orders}
  jwtRules:
  - issuer: https://login.weft.test
    audiences: [orders]
    hs256Secrets: ["weft-hostile-e2e-secret-of-32-bytes-at-least"]
    outputClaimToHeaders:
    - {header: x-role, claim: role}
---
apiVersion: weft.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: finance-only-reports, namespace: default}
spec:
  target: {service: orders}
  action: ALLOW
  rules:
  - to: {paths: ["/reports/*"]}
    when:
    - key: request.auth.claims[role]
      values: [finance]
  - to: {paths: ["/orders/*"]}
"#;

/// The case-insensitive service: its app treats `/ADMIN` as `/admin`.
const CASE_POLICIES: &str = r#"
apiVersion: weft.dev/v1alpha1
kind: Service
metadata: {name: details, namespace: default}
spec: {port: 8080, versions: [v1]}
---
apiVersion: weft.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: no-admin-any-case, namespace: default}
spec:
  target: {service: details}
  action: DENY
  ignorePathCase: true
  rules:
  - to: {paths: ["/admin", "/admin/*"]}
"#;

/// Compiles `yaml` as `weft serve` does and returns each service's authz configuration.
fn compile_authz(yaml: &str) -> BTreeMap<String, String> {
    let docs = load(yaml.as_bytes(), &Limits::default()).unwrap();
    let set = PolicySet::from_documents(docs.clone());
    let errors = validate_set(&set, &labels(&docs), References::Strict);
    assert!(
        errors.is_empty(),
        "the test's policies are invalid: {errors:#?}"
    );
    let compiled = weft_compile::compile(&set).unwrap();
    compiled
        .iter()
        .map(|(id, filters)| {
            (
                id.service.clone(),
                serde_json::to_string(&filters.authz).unwrap(),
            )
        })
        .collect()
}

/// A workload: its app and the sidecar made by `weft bootstrap`, in one pod.
struct Workload {
    pod: Pod,
}

impl Workload {
    /// The host port of the sidecar's inbound listener.
    fn port(&self) -> u16 {
        self.pod.host_port(INBOUND).unwrap()
    }

    fn app(&self) -> &Upstream {
        self.pod.app()
    }
}

/// Starts the control plane with `yaml` compiled and one pod per service.
async fn mesh(
    net: &TestNet,
    yaml: &str,
    services: &[&str],
) -> (ControlPlane, BTreeMap<String, Workload>) {
    let host = network_gateway(net).unwrap();
    let cp = ControlPlane::start(0).await;
    let authz = compile_authz(yaml);
    let filters = services
        .iter()
        .map(|s| {
            (
                SidecarGroup::new("default", s, "v1"),
                vec![FilterSpec::new("authz", authz[*s].clone())],
            )
        })
        .collect();
    cp.state.set_config(1, filters, Vec::new()).unwrap();
    let mut workloads = BTreeMap::new();
    for service in services {
        let pod = cp.sidecar(net, &host, service, "v1").await;
        workloads.insert(service.to_string(), Workload { pod });
    }
    // Wait until each sidecar enforces its policies (the filter arrives over ECDS).
    for (service, w) in &workloads {
        weft_e2e::poll_until(
            &format!("{service}: authz configured"),
            Duration::from_secs(30),
            Duration::from_millis(100),
            || async {
                let configured = w.pod.stat("wasmcustom.weft.authz.allowed").await?;
                Ok(configured.map(|_| ()))
            },
        )
        .await
        .unwrap();
    }
    (cp, workloads)
}

/// `GET <target>` with `headers`, written byte for byte.
fn get(target: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    raw_get(target, "svc", headers)
}

/// The status and body of `request` sent to `port` (status 0: no reply).
async fn raw(port: u16, request: &[u8]) -> (u16, String) {
    let reply = raw_request(port, request).await;
    (reply.status, reply.body)
}

/// One row of a table: what was sent, what came back, how many requests the app saw.
struct Attempt {
    what: String,
    status: u16,
    reached_app: u64,
    want_reach: bool,
}

impl Attempt {
    fn ok(&self) -> bool {
        if self.want_reach {
            self.status == 200 && self.reached_app == 1
        } else {
            self.reached_app == 0 && self.status != 200 && self.status != 0
        }
    }
}

/// Sends `request` to `w` and counts what reached its app.
async fn attempt(w: &Workload, what: &str, request: Vec<u8>, want_reach: bool) -> Attempt {
    w.app().reset().await.unwrap();
    let (status, _) = raw(w.port(), &request).await;
    let reached_app = w.app().stats().await.unwrap().requests;
    Attempt {
        what: what.to_string(),
        status,
        reached_app,
        want_reach,
    }
}

/// Prints the table and fails naming every attempt that did not hold.
fn verdict(title: &str, table: &[Attempt]) {
    eprintln!(
        "\n{title}\n{:<58} {:>6} {:>6} {:>9}  ok",
        "attempt", "status", "app", "want"
    );
    for a in table {
        eprintln!(
            "{:<58} {:>6} {:>6} {:>9}  {}",
            a.what,
            a.status,
            a.reached_app,
            if a.want_reach { "reach" } else { "refuse" },
            if a.ok() { "yes" } else { "NO" }
        );
    }
    let failed: Vec<&str> = table
        .iter()
        .filter(|a| !a.ok())
        .map(|a| a.what.as_str())
        .collect();
    assert!(
        failed.is_empty(),
        "{title}: {} attempt(s) failed: {failed:?}",
        failed.len()
    );
}

/// Spellings of `/admin` (or of a path under it) an app resolves to the denied resource,
/// from the issue and from Envoy's and Istio's path-normalisation advisories.
const ADMIN_SPELLINGS: &[&str] = &[
    "/admin",
    "/admin/secret",
    "//admin",
    "/./admin",
    "/x/../admin",
    "/%61dmin",
    "/admin%2fsecret",
    "/admin;x",
    // Derived variants.
    "/admin%2Fsecret",
    "///admin",
    "/admin//secret",
    "/admin/./secret",
    "/admin/x/../secret",
    "/x/./../admin",
    "/%2e/admin",
    "/%2E%2E/admin",
    "/x/%2e%2e/admin",
    "/.%2e/admin",
    "/x/..%2fadmin",
    "/x%2f..%2fadmin",
    "/%2F%2Fadmin",
    "/%61%64%6d%69%6e",
    "/adm%69n/secret",
    "/admin/%2e%2e/admin/x",
    "/admin%5csecret",
    "/admin\\secret",
    "/admin;jsessionid=1/secret",
    "/admin/.",
    "/admin/",
    "/admin?x=1",
    "/admin#frag",
    "/x/../../admin",
    "/admin%00",
    "/admin/secret%00.html",
];

/// Paths the same policies leave open: they must still reach the app.
const LEGITIMATE: &[&str] = &[
    "/",
    "/reviews/1",
    "/administrator",
    "/adminx/secret",
    "/reviews/a%20b",
    "/reviews/1?admin=1",
];

#[tokio::test(flavor = "multi_thread")]
async fn no_spelling_of_a_denied_path_reaches_the_app() {
    let net = TestNet::new("hostile-paths");
    let (_cp, workloads) = mesh(&net, POLICIES, &["reviews", "ratings"]).await;
    let reviews = &workloads["reviews"];
    let ratings = &workloads["ratings"];
    let mut table = Vec::new();
    for path in ADMIN_SPELLINGS {
        table.push(attempt(reviews, &format!("DENY  {path}"), get(path, &[]), false).await);
    }
    // The absolute form of the request target.
    table.push(
        attempt(
            reviews,
            "DENY  http://svc/admin (absolute form)",
            get("http://svc/admin", &[]),
            false,
        )
        .await,
    );
    table.push(
        attempt(
            reviews,
            "DENY  http://svc//admin (absolute form)",
            get("http://svc//admin", &[]),
            false,
        )
        .await,
    );
    for path in LEGITIMATE {
        table.push(
            attempt(
                reviews,
                &format!("DENY  legit {path}"),
                get(path, &[]),
                true,
            )
            .await,
        );
    }
    // ALLOW-only: everything but GET /public, /public/* and /health is denied.
    for path in ADMIN_SPELLINGS.iter().chain(&[
        "/public/../admin",
        "/public/..;/admin",
        "/public/%2e%2e/admin",
        "/public%2f..%2fadmin",
        "/public/..%2fadmin",
        "/health/../admin",
        "/public;/../admin",
    ]) {
        table.push(attempt(ratings, &format!("ALLOW {path}"), get(path, &[]), false).await);
    }
    for path in [
        "/public",
        "/public/x",
        "/health",
        "//public/x",
        "/public/./x",
        "/%70ublic/x",
    ] {
        table.push(
            attempt(
                ratings,
                &format!("ALLOW legit {path}"),
                get(path, &[]),
                true,
            )
            .await,
        );
    }
    verdict(
        "paths against DENY (reviews) and ALLOW-only (ratings)",
        &table,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_header_sent_twice_cannot_defeat_a_header_rule() {
    let net = TestNet::new("hostile-headers");
    let (_cp, workloads) = mesh(&net, POLICIES, &["reviews", "ratings"]).await;
    let reviews = &workloads["reviews"];
    let ratings = &workloads["ratings"];
    let mut table = Vec::new();
    let deny_cases: &[(&str, Headers)] = &[
        ("mallory", &[("x-user", "mallory")]),
        (
            "alice then mallory",
            &[("x-user", "alice"), ("x-user", "mallory")],
        ),
        (
            "mallory then alice",
            &[("x-user", "mallory"), ("x-user", "alice")],
        ),
        ("alice, mallory (one line)", &[("x-user", "alice, mallory")]),
        ("X-User: mallory (case)", &[("X-User", "mallory")]),
        (
            "alice, alice, mallory",
            &[
                ("x-user", "alice"),
                ("x-user", "alice"),
                ("x-user", "mallory"),
            ],
        ),
    ];
    for (what, headers) in deny_cases {
        table.push(
            attempt(
                reviews,
                &format!("DENY x-user {what}"),
                get("/reviews/1", headers),
                false,
            )
            .await,
        );
    }
    table.push(
        attempt(
            reviews,
            "DENY x-user alice",
            get("/reviews/1", &[("x-user", "alice")]),
            true,
        )
        .await,
    );
    table.push(
        attempt(
            reviews,
            "DENY x-user alice twice",
            get("/reviews/1", &[("x-user", "alice"), ("x-user", "alice")]),
            true,
        )
        .await,
    );
    // ALLOW on a header: a second copy with the allowed value must not open the door.
    let allow_cases: &[(&str, Headers, bool)] = &[
        ("gold", &[("x-tier", "gold")], true),
        ("silver", &[("x-tier", "silver")], false),
        (
            "silver then gold",
            &[("x-tier", "silver"), ("x-tier", "gold")],
            false,
        ),
        (
            "gold then silver",
            &[("x-tier", "gold"), ("x-tier", "silver")],
            false,
        ),
        (
            "silver, gold (one line)",
            &[("x-tier", "silver, gold")],
            false,
        ),
    ];
    for (what, headers, reach) in allow_cases {
        table.push(
            attempt(
                ratings,
                &format!("ALLOW x-tier {what} on /private"),
                get("/private", headers),
                *reach,
            )
            .await,
        );
    }
    verdict("headers sent twice", &table);
}

/// Header lines of one request whose values are bytes (not always UTF-8).
type ByteHeaders<'a> = &'a [(&'a str, &'a [u8])];

/// `GET <target>` with header lines given as bytes.
fn get_bytes(target: &str, headers: ByteHeaders) -> Vec<u8> {
    let mut out =
        format!("GET {target} HTTP/1.1\r\nhost: svc\r\nconnection: close\r\n").into_bytes();
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Envoy passes header values with bytes 0x80-0xFF (obs-text) to filters. The proxy-wasm
/// SDK's `String` readers unwrap `from_utf8`, so before weft read headers as bytes one such
/// request trapped the VM, and a fail-closed sidecar answered 503 to every request after it.
/// Each row is sent, then a plain request proves the sidecar still enforces and serves.
#[tokio::test(flavor = "multi_thread")]
async fn a_header_that_is_not_utf8_neither_crashes_the_filter_nor_passes_a_rule() {
    let net = TestNet::new("hostile-bytes");
    let (_cp, workloads) = mesh(&net, POLICIES, &["reviews", "ratings", "orders"]).await;
    let (reviews, ratings, orders) = (
        &workloads["reviews"],
        &workloads["ratings"],
        &workloads["orders"],
    );
    let mut table = Vec::new();
    let cases: &[(&str, &Workload, &str, ByteHeaders, bool)] = &[
        // Read by a header rule (every copy, from the whole map).
        (
            "x-user \\xff\\xfe",
            reviews,
            "/reviews/1",
            &[("x-user", b"\xff\xfe")],
            true,
        ),
        (
            "x-user mallory\\xff",
            reviews,
            "/reviews/1",
            &[("x-user", b"mallory\xff")],
            true,
        ),
        (
            "x-user \\xff then mallory",
            reviews,
            "/reviews/1",
            &[("x-user", b"\xff"), ("x-user", b"mallory")],
            false,
        ),
        (
            "x-tier gold\\xff on /private",
            ratings,
            "/private",
            &[("x-tier", b"gold\xff")],
            false,
        ),
        (
            "x-tier \\xc3\\x28 on /public/a",
            ratings,
            "/public/a",
            &[("x-tier", b"\xc3\x28")],
            true,
        ),
        // Read as a single header (the JWT), and a header no rule names.
        (
            "authorization Bearer \\xff",
            orders,
            "/reports/q",
            &[("authorization", b"Bearer \xff\xfe")],
            false,
        ),
        (
            "x-other \\x80 on /orders/1",
            orders,
            "/orders/1",
            &[("x-other", b"\x80\x81")],
            true,
        ),
        // The explain token's header is read by authz when present.
        (
            "x-weft-explain \\xff",
            reviews,
            "/reviews/1",
            &[("x-weft-explain", b"\xff")],
            true,
        ),
    ];
    for (what, w, path, headers, reach) in cases {
        table.push(attempt(w, what, get_bytes(path, headers), *reach).await);
        // The filter is alive and still enforcing after it.
        table.push(
            attempt(
                reviews,
                &format!("  then DENY x-user mallory ({what})"),
                get("/reviews/1", &[("x-user", "mallory")]),
                false,
            )
            .await,
        );
        table.push(
            attempt(
                w,
                &format!("  then plain {path} ({what})"),
                get(path, &[]),
                !path.starts_with("/reports") && *path != "/private",
            )
            .await,
        );
    }
    verdict("header values that are not UTF-8", &table);
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_claim_headers_never_reach_the_app() {
    let net = TestNet::new("hostile-claims");
    let (_cp, workloads) = mesh(&net, POLICIES, &["orders"]).await;
    let orders = &workloads["orders"];
    let token = |role: &str| {
        hs256_jwt(
            JWT_SECRET,
            &json!({"iss": ISSUER, "aud": "orders", "sub": "u1", "role": role, "exp": now() + 600}),
        )
    };
    let customer = format!("Bearer {}", token("customer"));
    let mut rows = Vec::new();
    for (what, forged) in [
        ("one forged copy", vec!["finance"]),
        ("two forged copies", vec!["finance", "finance"]),
        ("forged copies around", vec!["finance", "admin"]),
    ] {
        for order in ["forged first", "token first"] {
            let mut headers: Vec<(&str, &str)> = Vec::new();
            if order == "token first" {
                headers.push(("authorization", &customer));
            }
            for f in &forged {
                headers.push(("x-role", f));
            }
            if order == "forged first" {
                headers.push(("authorization", &customer));
            }
            orders.app().reset().await.unwrap();
            let (status, _) = raw(orders.port(), &get("/orders/1", &headers)).await;
            let seen = orders.app().last_headers().await.unwrap();
            rows.push((
                format!("{what}, {order}"),
                status,
                seen.get("x-role").cloned(),
            ));
            // The claim rule reads the validated token, not the forged header.
            let (status, _) = raw(orders.port(), &get("/reports/q1", &headers)).await;
            rows.push((format!("{what}, {order}: /reports"), status, None));
        }
    }
    // Without a token, forged headers are removed entirely.
    orders.app().reset().await.unwrap();
    let (status, _) = raw(
        orders.port(),
        &get("/orders/1", &[("x-role", "finance"), ("x-role", "finance")]),
    )
    .await;
    let seen = orders.app().last_headers().await.unwrap();
    rows.push((
        "no token, two forged copies".into(),
        status,
        seen.get("x-role").cloned(),
    ));

    eprintln!(
        "\nclaim headers\n{:<44} {:>6}  x-role at the app",
        "attempt", "status"
    );
    let mut failed = Vec::new();
    for (what, status, seen) in &rows {
        eprintln!("{what:<44} {status:>6}  {seen:?}");
        let ok = if what.ends_with("/reports") {
            *status == 403
        } else if what.starts_with("no token") {
            *status == 200 && seen.is_none()
        } else {
            *status == 200 && seen.as_deref() == Some("customer")
        };
        if !ok {
            failed.push(what.clone());
        }
    }
    assert!(failed.is_empty(), "forged claim headers: {failed:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn case_insensitive_policies_match_every_case() {
    let net = TestNet::new("hostile-case");
    let (_cp, workloads) = mesh(&net, CASE_POLICIES, &["details"]).await;
    let details = &workloads["details"];
    let mut table = Vec::new();
    for path in [
        "/ADMIN",
        "/Admin/secret",
        "/aDmIn",
        "//ADMIN/x",
        "/%41DMIN",
        "/x/../AdMiN",
    ] {
        table.push(attempt(details, &format!("DENY(ci) {path}"), get(path, &[]), false).await);
    }
    for path in ["/Administrator", "/reviews/ADMIN"] {
        table.push(
            attempt(
                details,
                &format!("DENY(ci) legit {path}"),
                get(path, &[]),
                true,
            )
            .await,
        );
    }
    verdict("case-insensitive DENY (details)", &table);
}
