use std::net::SocketAddr;

use serde_json::Value;
use tokio::{io::AsyncReadExt, io::AsyncWriteExt, net::TcpListener, sync::oneshot};

use super::*;

struct Running {
    addr: SocketAddr,
    client: reqwest::Client,
    _stop: oneshot::Sender<()>,
}

async fn mk_service() -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let identity = Identity {
        service: "reviews".into(),
        version: "v2".into(),
    };
    tokio::spawn(serve(listener, identity, async move {
        let _ = stopped.await;
    }));
    Running {
        addr,
        client: reqwest::Client::new(),
        _stop: stop,
    }
}

impl Running {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn get_json(&self, path: &str) -> Value {
        self.client
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn echoes_identity_path_and_headers() {
    let svc = mk_service().await;
    let response = svc
        .client
        .get(svc.url("/a/b?q=1"))
        .header("x-probe", "yes")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-service"], "reviews");
    assert_eq!(response.headers()["x-version"], "v2");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["service"], "reviews");
    assert_eq!(body["version"], "v2");
    assert_eq!(body["method"], "GET");
    assert_eq!(body["path"], "/a/b");
    assert_eq!(body["headers"]["x-probe"], "yes");
}

#[tokio::test]
async fn per_request_failure_and_admin_counters() {
    let svc = mk_service().await;
    let response = svc
        .client
        .get(svc.url("/x"))
        .header("x-fail", "503")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    svc.get_json("/y").await;
    let stats = svc.get_json("/_admin/stats").await;
    assert_eq!(stats["requests"], 2);
    assert_eq!(stats["by_path"]["/x"], 1);
    assert_eq!(stats["in_flight"], 0);
    assert_eq!(stats["peak_in_flight"], 1);
    let last = svc.get_json("/_admin/last").await;
    assert!(last.get("x-fail").is_none(), "{last}");
    svc.client
        .post(svc.url("/_admin/reset"))
        .send()
        .await
        .unwrap();
    assert_eq!(svc.get_json("/_admin/stats").await["requests"], 0);
}

#[tokio::test]
async fn global_mode_fails_and_recovers() {
    let svc = mk_service().await;
    let set = |query: &'static str| svc.client.post(svc.url(&format!("/_admin/mode?{query}")));
    assert_eq!(set("fail=502").send().await.unwrap().status(), 200);
    let response = svc.client.get(svc.url("/")).send().await.unwrap();
    assert_eq!(response.status(), 502);
    set("fail=0&delay_ms=0").send().await.unwrap();
    let response = svc.client.get(svc.url("/")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(set("fail=nope").send().await.unwrap().status(), 400);
}

#[tokio::test]
async fn fail_every_fails_exactly_one_request_in_n() {
    let svc = mk_service().await;
    let set = svc
        .client
        .post(svc.url("/_admin/mode?fail=503&fail_every=5"));
    assert_eq!(set.send().await.unwrap().status(), 200);
    let mut failed = 0;
    for _ in 0..100 {
        let response = svc.client.get(svc.url("/")).send().await.unwrap();
        if response.status() == 503 {
            failed += 1;
        }
    }
    assert_eq!(failed, 20);
}

#[tokio::test]
async fn concurrent_delayed_requests_raise_peak_in_flight() {
    let svc = mk_service().await;
    let slow = || {
        svc.client
            .get(svc.url("/slow"))
            .header("x-delay-ms", "200")
            .send()
    };
    let (a, b, c) = tokio::join!(slow(), slow(), slow());
    for response in [a, b, c] {
        assert_eq!(response.unwrap().status(), 200);
    }
    let stats = svc.get_json("/_admin/stats").await;
    assert_eq!(stats["peak_in_flight"], 3);
    assert_eq!(stats["in_flight"], 0);
}

#[tokio::test]
async fn reset_header_drops_the_connection_without_a_response() {
    let svc = mk_service().await;
    let mut stream = tokio::net::TcpStream::connect(svc.addr).await.unwrap();
    stream
        .write_all(b"GET /boom HTTP/1.1\r\nhost: x\r\nx-reset: 1\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = stream.read_to_end(&mut buf).await;
    // RST surfaces as ConnectionReset; either way no response bytes arrive.
    assert!(buf.is_empty(), "got {:?}", String::from_utf8_lossy(&buf));
    assert_eq!(
        read.map_err(|e| e.kind()).err(),
        Some(std::io::ErrorKind::ConnectionReset)
    );
    let stats = svc.get_json("/_admin/stats").await;
    assert_eq!(stats["requests"], 1);
    assert_eq!(stats["in_flight"], 0);
}

/// An app on loopback with the instrumentation port: `(app, instrumentation)` addresses.
async fn mk_instrumented() -> (SocketAddr, SocketAddr, oneshot::Sender<()>) {
    let app = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let instrumentation = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addrs = (
        app.local_addr().unwrap(),
        instrumentation.local_addr().unwrap(),
    );
    let (stop, stopped) = oneshot::channel::<()>();
    let identity = Identity {
        service: "reviews".into(),
        version: "v1".into(),
    };
    tokio::spawn(serve_with_instrumentation(
        app,
        Some(instrumentation),
        identity,
        async move {
            let _ = stopped.await;
        },
    ));
    (addrs.0, addrs.1, stop)
}

#[tokio::test]
async fn instrumentation_forwards_method_path_headers_and_body_and_shares_the_counters() {
    let (app, instrumentation, _stop) = mk_instrumented().await;
    let client = reqwest::Client::new();
    let response = client
        .post(format!("http://{instrumentation}/_forward/{app}/a//b?q=1"))
        .header("host", "reviews")
        .header("x-fail", "418")
        .body("payload")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 418);
    assert_eq!(response.headers()["x-version"], "v1");
    assert!(response.headers().get(FORWARD_FAILED).is_none());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["method"], "POST");
    assert_eq!(body["path"], "/a//b", "the path is sent on unchanged");
    assert_eq!(body["headers"]["host"], "reviews");
    let stats: Value = client
        .get(format!("http://{instrumentation}/_admin/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["requests"], 1);
    assert_eq!(stats["by_path"]["/a//b"], 1);
}

#[tokio::test]
async fn instrumentation_reports_what_it_cannot_reach() {
    let (app, instrumentation, _stop) = mk_instrumented().await;
    // A port nobody listens on: bind one, note it, close it.
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let client = reqwest::Client::new();
    let response = client
        .get(format!("http://{instrumentation}/_forward/{closed}/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    assert_eq!(response.headers()[FORWARD_FAILED], "connect");
    let probe = |target: SocketAddr| {
        let client = client.clone();
        async move {
            client
                .get(format!("http://{instrumentation}/_probe/{target}"))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let refused = probe(closed).await;
    assert_eq!(refused["connected"], false);
    assert!(
        refused["error"].as_str().unwrap().contains("refused"),
        "{refused}"
    );
    assert_eq!(probe(app).await["connected"], true);
}
