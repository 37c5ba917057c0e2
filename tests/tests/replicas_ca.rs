//! Replicas with the mesh CA, over etcd, end to end: a real 3-member etcd cluster, three real
//! `weft serve --store etcd --ca --etcd-kek K` replicas, real Envoy sidecars (SDS, join
//! tokens, xDS over TLS listing every replica).
//!
//! - a replica without the KEK, or with another one, refuses to start and says why;
//! - one root CA for all: a join token minted on replica 1 joins a sidecar pinned to replica
//!   2; an SVID from the shared CA is accepted over mTLS by sidecars of every replica (authz
//!   sees its verified SPIFFE id; another identity is refused);
//! - a root rotation started on replica 2 reaches the trust bundle of every sidecar, on every
//!   replica;
//! - an operator created on replica 1 acts on replica 3; revoked on 3, refused on 1;
//! - the audit log listed from any replica holds the changes made through all of them;
//! - kill -9 the replica serving the most sidecars (SVIDs of 20 s): they move to the
//!   survivors and their SVIDs keep renewing (the serial changes, then changes again),
//!   0 failed mTLS requests meanwhile;
//! - an explain token minted through replica 1 is honoured by a sidecar configured by
//!   replica 2 (one explain master key, sealed in etcd); a forged and an expired one are not;
//! - no value in etcd holds a private key or a shared secret in clear;
//! - KEK rotation: a replica with the new KEK and the old one as previous, `weft etcd rekey`
//!   (counts, idempotent, refused when the keys open nothing), every sealed value then under
//!   the new KEK; a replica with the new KEK only serves and issues an SVID to a new sidecar;
//!   one with the old KEK only refuses to start naming the new key's id.
#![cfg(test)]

mod etcd_common;
mod weft_serve;
mod xds_common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_common::{
    assert_nothing_secret_in_clear, etcd_flags, kek_file, raw_values, share_admin_token,
    EtcdCluster,
};
use serde_json::Value;
use weft_e2e::{
    http_client, xds_support::network_gateway, EnvoyOptions, Pod, TestNet, UpstreamOptions,
    ADMIN_SOCKET,
};
use weft_serve::{ca_mesh_args, weft_bin, WeftServer};
use weft_xds::bootstrap::{self, BootstrapParams, XdsUpstreamTls};
use xds_common::INBOUND;

const SVID_TTL: Duration = Duration::from_secs(20);

const POLICY: &str = "apiVersion: weft.dev/v1alpha1
kind: Service
metadata: {name: web}
spec: {port: 9080, versions: [v1]}
---
apiVersion: weft.dev/v1alpha1
kind: Service
metadata: {name: api}
spec: {port: 9080, versions: [v1]}
---
apiVersion: weft.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: api-from-web}
spec:
  target: {service: api}
  action: ALLOW
  rules:
  - from: {principals: [\"spiffe://cluster.local/ns/default/sa/web\"]}
";

fn args(gateway: &str, endpoints: &str, kek: Option<&Path>) -> Vec<String> {
    let mut args = ca_mesh_args(gateway);
    args.extend(["--svid-ttl", "20s", "--root-propagation", "2s"].map(str::to_string));
    args.extend(etcd_flags(endpoints, kek));
    args
}

fn start(bin: &Path, data: &Path, args: &[String]) -> WeftServer {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    WeftServer::start(bin, data, &args)
}

/// `weft serve` that must refuse to start: its stderr.
fn refused_start(bin: &Path, data: &Path, args: &[String]) -> String {
    let out = std::process::Command::new(bin)
        .args(["serve", "--data-dir"])
        .arg(data)
        .args([
            "--insecure-listen",
            "127.0.0.1:0",
            "--allow-unsigned-modules",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(!out.status.success(), "started without the right KEK");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

async fn call(
    server: &WeftServer,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&str>,
) -> (u16, Value) {
    let url = format!("{}{path}", server.api);
    let request = match method {
        "POST" => http_client()
            .post(url)
            .header("content-type", "application/json")
            .body(body.unwrap_or("").to_string()),
        "DELETE" => http_client().delete(url),
        _ => http_client().get(url),
    }
    .header("authorization", format!("Bearer {token}"));
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn join_token(server: &WeftServer, service: &str) -> String {
    let body = format!(r#"{{"service": "{service}", "ttlSeconds": 3600}}"#);
    let (status, out) = call(server, "POST", "/api/v1/tokens", &server.token, Some(&body)).await;
    assert_eq!(status, 201, "{out}");
    out["token"].as_str().unwrap().to_string()
}

/// Node ids of the sidecars connected to `server`.
async fn connected(server: &WeftServer) -> Vec<String> {
    let (_, body) = call(server, "GET", "/api/v1/xds/sidecars", &server.token, None).await;
    body["sidecars"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["connected"] == true)
        .filter_map(|s| s["node_id"].as_str().map(str::to_string))
        .collect()
}

/// The serial of the sidecar's own certificate and the serials of the CAs it trusts.
async fn certs(pod: &Pod) -> (String, Vec<String>) {
    let body: Value = serde_json::from_str(&pod.sidecar().admin_get("/certs").await.unwrap())
        .unwrap_or(Value::Null);
    let (mut own, mut cas) = (String::new(), Vec::new());
    for context in body["certificates"].as_array().into_iter().flatten() {
        for cert in context["cert_chain"].as_array().into_iter().flatten() {
            own = cert["serial_number"].as_str().unwrap_or("").to_string();
        }
        for cert in context["ca_cert"].as_array().into_iter().flatten() {
            cas.push(cert["serial_number"].as_str().unwrap_or("").to_string());
        }
    }
    cas.sort();
    cas.dedup();
    (own, cas)
}

/// An mTLS client presenting `identity` (certificate + key PEM), no connection reuse (every
/// request is a new handshake with the sidecar's current certificate).
fn mtls_client(identity: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .use_rustls_tls()
        .danger_accept_invalid_certs(true)
        .min_tls_version(reqwest::tls::Version::TLS_1_3)
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .identity(reqwest::Identity::from_pem(identity.as_bytes()).unwrap())
        .build()
        .unwrap()
}

async fn direct(client: &reqwest::Client, pod: &Pod) -> Result<u16, String> {
    client
        .get(format!(
            "{}/api/1",
            pod.url(INBOUND).replace("http://", "https://")
        ))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| format!("{e}"))
}

struct Mesh {
    net: TestNet,
    gateway: String,
    bundle: String,
    ports: Vec<u16>,
}

impl Mesh {
    /// A sidecar of `service` with node id `node`, presenting `token`, listing the replicas
    /// of `ports` (by index) as its xDS endpoints.
    async fn sidecar(&self, service: &str, node: &str, token: &str, replicas: &[usize]) -> Pod {
        let mut params =
            BootstrapParams::new(service, "v1", &self.gateway, self.ports[replicas[0]]);
        params.xds_more = replicas[1..]
            .iter()
            .map(|&i| (self.gateway.clone(), self.ports[i]))
            .collect();
        params.admin_socket = Some(ADMIN_SOCKET.into());
        params.node_id = Some(node.into());
        params.sds = true;
        params.token = Some(token.into());
        params.xds_tls =
            Some(XdsUpstreamTls::new(&self.bundle, "cluster.local", &self.gateway).unwrap());
        let mut options = EnvoyOptions::new(bootstrap::render(&params).unwrap()).ports([INBOUND]);
        options.hostname = node.into();
        Pod::start(&self.net, options, UpstreamOptions::new(service, "v1"))
            .await
            .unwrap()
    }
}

async fn until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_share_the_ca_tokens_operators_and_audit_through_etcd() {
    let bin = weft_bin();
    let etcd = EtcdCluster::start(3);
    let endpoints = etcd.endpoints();
    let files = tempfile::tempdir().unwrap();
    let kek = kek_file(files.path(), "kek", 0x5a);
    let net = TestNet::new("replicas-ca");
    let gateway = network_gateway(&net).unwrap();
    let dirs: Vec<_> = (0..6).map(|_| tempfile::tempdir().unwrap()).collect();

    // Replica 1 creates the CA in etcd (and the first admin); 2 and 3 read them. The admin
    // token is replica 1's first-start file, handed to the others' CLI.
    let r1 = start(
        &bin,
        dirs[0].path(),
        &args(&gateway, &endpoints, Some(&kek)),
    );
    share_admin_token(dirs[0].path(), dirs[1..3].iter().map(|d| d.path()));
    let replicas = [
        r1,
        start(
            &bin,
            dirs[1].path(),
            &args(&gateway, &endpoints, Some(&kek)),
        ),
        start(
            &bin,
            dirs[2].path(),
            &args(&gateway, &endpoints, Some(&kek)),
        ),
    ];
    // Without the KEK, or with another one, a replica does not start.
    let without = refused_start(&bin, dirs[3].path(), &args(&gateway, &endpoints, None));
    assert!(without.contains("--etcd-kek"), "{without}");
    let other = kek_file(files.path(), "other-kek", 0xa5);
    let wrong = refused_start(
        &bin,
        dirs[3].path(),
        &args(&gateway, &endpoints, Some(&other)),
    );
    assert!(wrong.contains("sealed with key-encryption key"), "{wrong}");
    println!(
        "refused starts: without KEK: {}\n  other KEK: {}",
        last_line(&without),
        last_line(&wrong)
    );

    let policy = files.path().join("policy.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    replicas[0].apply_file(&bin, &policy);
    let (_, ca) = call(&replicas[0], "GET", "/api/v1/ca", &replicas[0].token, None).await;
    let bundle = ca["trustBundle"].as_str().unwrap().to_string();
    for r in &replicas[1..] {
        let (_, other) = call(r, "GET", "/api/v1/ca", &r.token, None).await;
        assert_eq!(other["roots"], ca["roots"], "one CA for every replica");
    }
    let mesh = Mesh {
        net,
        gateway,
        bundle,
        ports: replicas.iter().map(|r| r.xds_port).collect(),
    };

    // Tokens minted on replica 1 only. `api-pinned` lists replica 2 alone: it joins there.
    let (web_token, api_token) = (
        join_token(&replicas[0], "web").await,
        join_token(&replicas[0], "api").await,
    );
    let mut pods = Vec::new();
    for (i, (service, token)) in [
        ("web", &web_token),
        ("api", &api_token),
        ("api", &api_token),
        ("web", &web_token),
    ]
    .into_iter()
    .enumerate()
    {
        let order = [i % 3, (i + 1) % 3, (i + 2) % 3];
        pods.push((
            format!("{service}-{i}"),
            mesh.sidecar(service, &format!("{service}-{i}"), token, &order)
                .await,
        ));
    }
    pods.push((
        "api-pinned".into(),
        mesh.sidecar("api", "api-pinned", &api_token, &[1]).await,
    ));
    until(
        "api-pinned on replica 2",
        Duration::from_secs(30),
        || async {
            connected(&replicas[1])
                .await
                .contains(&"api-pinned".to_string())
        },
    )
    .await;
    println!("a token minted on replica 1 joined api-pinned on replica 2");

    // A fourth holder of the shared CA (the test, with the KEK) issues an SVID: sidecars on
    // every replica accept it over mTLS, authz sees the identity.
    // (Blocking calls: the store runs its own runtime.)
    let (state, test_ca) = tokio::task::block_in_place(|| {
        let state = Arc::new(
            weft_etcd::EtcdStore::connect(weft_etcd::EtcdSettings::new(
                endpoints.split(',').map(str::to_string).collect(),
            ))
            .unwrap(),
        );
        let ca = weft_ca::Ca::open_shared(
            Arc::clone(&state) as Arc<dyn weft_store::SharedState>,
            "ca/mesh",
            Arc::new(weft_ca::Kek::from_file(&kek).unwrap()),
            weft_ca::CaSettings {
                svid_ttl: Duration::from_secs(3600),
                ..Default::default()
            },
        )
        .unwrap();
        (state, ca)
    });
    let svid = |service: &str| {
        let s = test_ca.issue("default", service).unwrap();
        format!("{}{}", s.cert_chain_pem, s.key_pem)
    };
    let (web, intruder) = (mtls_client(&svid("web")), mtls_client(&svid("intruder")));
    let apis: Vec<&Pod> = pods
        .iter()
        .filter(|(n, _)| n.starts_with("api"))
        .map(|(_, p)| p)
        .collect();
    for pod in &apis {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let got = direct(&web, pod).await;
            if got == Ok(200) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "mTLS to an api sidecar: {got:?}\n{}",
                pod.sidecar().logs().await
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(direct(&intruder, pod).await, Ok(403));
    }
    let placement: Vec<Vec<String>> = futures_join(&replicas).await;
    println!(
        "sidecars per replica: {placement:?}; web SVID accepted by every api sidecar, intruder 403"
    );

    // One explain master key for every replica (sealed in etcd): a token minted through
    // replica 1 is honoured by api-pinned, configured by replica 2; a forged one and an
    // expired one are not.
    let pinned = &pods
        .iter()
        .find(|(n, _)| n == "api-pinned")
        .expect("api-pinned")
        .1;
    let minted = explain_token(&replicas[0], 300).await;
    let trace = explained(&web, pinned, &minted).await;
    println!("explain token minted on replica 1, api-pinned (replica 2): {trace:?}");
    assert!(
        trace
            .as_deref()
            .is_some_and(|t| t.starts_with("default/api inbound authz=allow")),
        "{trace:?}"
    );
    let mut forged = minted.clone();
    let last = if forged.ends_with('0') { "1" } else { "0" };
    forged.replace_range(forged.len() - 1.., last);
    let short = explain_token(&replicas[0], 1).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    for (what, bad) in [("forged", &forged), ("expired", &short)] {
        assert_eq!(explained(&web, pinned, bad).await, None, "{what}");
    }

    // Root rotation through replica 2: every sidecar's bundle carries the new root.
    let (code, out, err) = replicas[1].cli(&bin, &["ca", "rotate", "-o", "json"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let rotated: Value = serde_json::from_str(&out).unwrap();
    let serial = rotated["root"]["serial"].as_str().unwrap().to_string();
    let started = Instant::now();
    for (name, pod) in &pods {
        until(
            &format!("{name} trusts the new root"),
            Duration::from_secs(30),
            || async { certs(pod).await.1.contains(&serial) },
        )
        .await;
    }
    println!(
        "root rotated on replica 2: new root {serial} in all {} sidecars' bundles after {} ms",
        pods.len(),
        started.elapsed().as_millis()
    );
    for r in &replicas {
        until(
            "every replica signs with root 2",
            Duration::from_secs(10),
            || async {
                call(r, "GET", "/api/v1/ca", &r.token, None).await.1["signingGeneration"] == 2
            },
        )
        .await;
    }

    // An operator made on replica 1 acts on replica 3; revoked on 3, refused on 1.
    let body = r#"{"name": "sec-one", "role": "security-admin"}"#;
    let (status, created) = call(
        &replicas[0],
        "POST",
        "/api/v1/operators",
        &replicas[0].token,
        Some(body),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let sec = created["token"].as_str().unwrap().to_string();
    until(
        "sec-one known on replica 3",
        Duration::from_secs(5),
        || async {
            call(&replicas[2], "GET", "/api/v1/tokens", &sec, None)
                .await
                .0
                == 200
        },
    )
    .await;
    let body = r#"{"service": "api", "ttlSeconds": 600}"#;
    let (status, out) = call(&replicas[2], "POST", "/api/v1/tokens", &sec, Some(body)).await;
    assert_eq!(status, 201, "{out}");
    let (status, out) = call(
        &replicas[2],
        "DELETE",
        "/api/v1/operators/sec-one",
        &replicas[2].token,
        None,
    )
    .await;
    assert_eq!(status, 200, "{out}");
    let revoked = Instant::now();
    until(
        "sec-one refused on replica 1",
        Duration::from_secs(5),
        || async {
            call(&replicas[0], "GET", "/api/v1/tokens", &sec, None)
                .await
                .0
                == 401
        },
    )
    .await;
    println!("operator made on replica 1 acted on replica 3; revoked there, refused on replica 1 after {} ms", revoked.elapsed().as_millis());

    // The audit log from any replica holds the changes of all three.
    let wanted = [
        ("operator:admin", "POST /api/v1/operators"),
        ("operator:admin", "POST /api/v1/ca/rotate"),
        ("operator:sec-one", "POST /api/v1/tokens"),
        ("operator:admin", "DELETE /api/v1/operators/{name}"),
    ];
    for r in &replicas {
        let (status, audit) = call(r, "GET", "/api/v1/audit", &r.token, None).await;
        assert_eq!(status, 200, "{audit}");
        let entries = audit["entries"].as_array().unwrap();
        for (who, route) in wanted {
            assert!(
                entries.iter().any(|e| e["principal"] == who
                    && e["route"] == route
                    && e["outcome"] == "allowed"),
                "{route} by {who} missing from {}: {audit}",
                r.api
            );
        }
    }
    println!("audit: the changes made through replicas 1, 2 and 3 are listed by each");

    // kill -9 the replica (not 2, where api-pinned lives alone) serving the most sidecars.
    let placement: Vec<Vec<String>> = futures_join(&replicas).await;
    let victim = if placement[0].len() >= placement[2].len() {
        0
    } else {
        2
    };
    let moved: Vec<&(String, Pod)> = pods
        .iter()
        .filter(|(n, _)| placement[victim].contains(n))
        .collect();
    assert!(
        !moved.is_empty(),
        "no sidecar on replica {}: {placement:?}",
        victim + 1
    );
    let before: Vec<String> = futures_serials(&moved).await;
    // The test's client SVID again, from the root that signs now (the rotation retires the
    // first root's SVIDs).
    tokio::task::block_in_place(|| test_ca.reload().unwrap());
    let web = mtls_client(&svid("web"));
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (stop, web) = (Arc::clone(&stop), web.clone());
        let targets: Vec<String> = apis
            .iter()
            .map(|p| p.url(INBOUND).replace("http://", "https://"))
            .collect();
        tokio::spawn(async move {
            let (mut sent, mut failed) = (0u64, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                for url in &targets {
                    sent += 1;
                    match web.get(format!("{url}/api/1")).send().await {
                        Ok(r) if r.status() == 200 => {}
                        other => failed.push(format!("{url}: {:?}", other.map(|r| r.status()))),
                    }
                }
            }
            (sent, failed)
        })
    };
    let mut replicas = replicas;
    let killed = Instant::now();
    replicas[victim].kill();
    let survivors: Vec<usize> = (0..3).filter(|&i| i != victim).collect();
    for (name, _) in &moved {
        until(
            &format!("{name} on a survivor"),
            Duration::from_secs(30),
            || async {
                let mut on = false;
                for &i in &survivors {
                    on |= connected(&replicas[i]).await.contains(name);
                }
                on
            },
        )
        .await;
    }
    let reconnected = killed.elapsed();
    // Each moved sidecar's SVID changes (issued by its new replica), then changes again
    // (renewed there at half its 20 s lifetime).
    for ((name, pod), old) in moved.iter().zip(&before) {
        let mut seen = vec![old.clone()];
        let deadline = Instant::now() + SVID_TTL * 2;
        while seen.len() < 3 {
            assert!(
                Instant::now() < deadline,
                "{name}: SVID not renewed twice: {seen:?}"
            );
            let now = certs(pod).await.0;
            if !now.is_empty() && seen.last() != Some(&now) {
                seen.push(now);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        println!("{name}: SVID serials {seen:?}");
    }
    stop.store(true, Ordering::Relaxed);
    let (sent, failed) = traffic.await.unwrap();
    println!(
        "kill -9 replica {}: {} sidecars on the survivors after {} ms, SVIDs renewed there; {sent} mTLS requests meanwhile, {} failed",
        victim + 1,
        moved.len(),
        reconnected.as_millis(),
        failed.len()
    );
    assert!(failed.is_empty(), "{failed:?}");

    // Nothing secret in clear anywhere in etcd; the sealed values are there.
    let values = raw_values(&endpoints).await;
    let sealed = assert_nothing_secret_in_clear(&values, &["telemetry", "explain"]);
    println!(
        "etcd: {} keys read raw, {sealed} sealed values, nothing secret in clear",
        values.len()
    );
    assert!(
        sealed >= 6,
        "the mesh CA's 2 keys, the operator CA's, the token secret, the telemetry secret and \
         the explain master key are sealed"
    );

    // KEK rotation. A replica runs with the new KEK and the old one as previous; `weft etcd
    // rekey` re-seals every value (counts; a second run changes nothing; a previous key that
    // opens nothing is refused); a replica with the new KEK only then serves, and the CA
    // issues an SVID to a new sidecar joining it; a replica with the old KEK only refuses.
    let new = kek_file(files.path(), "new-kek", 0x3c);
    let new_id = weft_ca::Kek::from_file(&new).unwrap().id().to_string();
    let gateway = mesh.gateway.clone();
    let with_previous = |kek: &Path, previous: Option<&Path>| {
        let mut a = args(&gateway, &endpoints, Some(kek));
        if let Some(previous) = previous {
            a.extend(["--etcd-kek-previous".into(), previous.display().to_string()]);
        }
        a
    };
    share_admin_token(dirs[0].path(), dirs[3..].iter().map(|d| d.path()));
    let rotating = start(&bin, dirs[3].path(), &with_previous(&new, Some(&kek)));
    let rekey = |current: &Path, previous: &Path| {
        let out = std::process::Command::new(&bin)
            .args([
                "etcd",
                "rekey",
                "-o",
                "json",
                "--etcd-endpoints",
                &endpoints,
            ])
            .arg("--etcd-kek")
            .arg(current)
            .arg("--etcd-kek-previous")
            .arg(previous)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = rekey(&new, &kek);
    assert_eq!(code, 0, "{out}\n{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    println!("weft etcd rekey: {report}");
    assert_eq!(report["kekId"], new_id.as_str());
    assert_eq!(report["current"], 0, "{report}");
    assert!(report["resealed"].as_u64().unwrap() >= 6, "{report}");
    let (code, out, err) = rekey(&new, &kek);
    assert_eq!(code, 0, "{out}\n{err}");
    let again: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(again["resealed"], 0, "idempotent: {again}");
    assert_eq!(again["current"], report["resealed"], "{again}");
    let (code, out, err) = rekey(&other, &kek);
    println!(
        "rekey whose keys open nothing: exit {code}: {}",
        last_line(&err)
    );
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(
        err.contains("sealed with key-encryption key") && err.contains(&new_id),
        "{err}"
    );
    let values = raw_values(&endpoints).await;
    assert_nothing_secret_in_clear(&values, &["telemetry", "explain"]);
    for (key, value) in &values {
        for (i, _) in value.match_indices("\"kekId\"") {
            assert!(
                value[i..].starts_with(&format!("\"kekId\":\"{new_id}\"")),
                "{key} is not sealed with the new KEK: {value}"
            );
        }
    }
    // The new KEK alone: it serves, and a sidecar joining it gets an SVID.
    let fresh = start(&bin, dirs[4].path(), &with_previous(&new, None));
    let mut mesh = mesh;
    mesh.ports.push(fresh.xds_port);
    let token = join_token(&fresh, "api").await;
    let joined = mesh.sidecar("api", "api-after-rekey", &token, &[3]).await;
    until(
        "an SVID for api-after-rekey",
        Duration::from_secs(30),
        || async { !certs(&joined).await.0.is_empty() },
    )
    .await;
    // Its inbound listener takes the mesh's policy once its first configuration is in.
    let (web, intruder) = (mtls_client(&svid("web")), mtls_client(&svid("intruder")));
    until(
        "mTLS to api-after-rekey",
        Duration::from_secs(60),
        || async { direct(&web, &joined).await == Ok(200) },
    )
    .await;
    assert_eq!(direct(&intruder, &joined).await, Ok(403));
    println!("after rekey: a replica with the new KEK only issued an SVID to a new sidecar");
    let old_only = refused_start(&bin, dirs[5].path(), &with_previous(&kek, None));
    println!("the old KEK only: {}", last_line(&old_only));
    assert!(
        old_only.contains("sealed with key-encryption key") && old_only.contains(&new_id),
        "{old_only}"
    );
    drop((rotating, fresh, joined));
    drop(pods);
    tokio::task::block_in_place(|| drop((test_ca, state)));
}

/// An explain token for `default/api`, minted through `server`.
async fn explain_token(server: &WeftServer, ttl: u64) -> String {
    let body = format!(r#"{{"ttlSeconds": {ttl}}}"#);
    let path = "/api/v1/explain/default/api/tokens";
    let (status, out) = call(server, "POST", path, &server.token, Some(&body)).await;
    assert_eq!(status, 201, "{out}");
    out["token"].as_str().unwrap().to_string()
}

/// The sidecar's decision trace for an mTLS call carrying explain token `token`.
async fn explained(client: &reqwest::Client, pod: &Pod, token: &str) -> Option<String> {
    let response = client
        .get(format!(
            "{}/api/1",
            pod.url(INBOUND).replace("http://", "https://")
        ))
        .header(weft_filter_core::explain::TOKEN_HEADER, token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response
        .headers()
        .get(weft_filter_core::explain::TRACE_HEADER)
        .map(|v| v.to_str().unwrap().to_string())
}

fn last_line(text: &str) -> &str {
    text.lines().last().unwrap_or("")
}

async fn futures_join(replicas: &[WeftServer]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for r in replicas {
        out.push(connected(r).await);
    }
    out
}

async fn futures_serials(pods: &[&(String, Pod)]) -> Vec<String> {
    let mut out = Vec::new();
    for (_, pod) in pods {
        out.push(certs(pod).await.0);
    }
    out
}
