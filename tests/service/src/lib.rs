//! The upstream service of weft's end-to-end tests.
//!
//! Every request is answered `200` with a JSON echo naming the service, its version, the method,
//! path and request headers, so a test can tell which backend Envoy picked and what the filters
//! added. Request headers steer one request (`x-fail`, `x-delay-ms`, `x-reset`); paths under
//! `/_admin/` steer the whole service and read its counters, and are themselves never counted.
//!
//! Test-only instrumentation ([`serve_with_instrumentation`], a second port): the same
//! `/_admin/*`, plus `/_forward/<host:port>/<path>` (send the request on from inside the
//! container's network namespace, e.g. into its sidecar's loopback outbound listener) and
//! `/_probe/<host:port>` (can a TCP connection be made from here?). It exists so a test can
//! drive an app that, like a real one in a pod, listens on loopback only; never run it in a
//! real deployment: it is an open proxy.
#![forbid(unsafe_code)]

use std::{
    collections::BTreeMap,
    convert::Infallible,
    future::Future,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use http_body_util::Full;
use hyper::{
    body::{Bytes, Incoming},
    header::{HeaderMap, HeaderValue, CONTENT_TYPE},
    server::conn::http1,
    service::service_fn,
    Method, Request, Response, StatusCode,
};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::{net::TcpListener, sync::Notify};

mod instrument;
pub use instrument::FORWARD_FAILED;
#[cfg(test)]
mod tests;

/// Who this instance says it is in every answer.
#[derive(Clone, Debug)]
pub struct Identity {
    pub service: String,
    pub version: String,
}

/// Serves connections from `listener` until `shutdown` resolves.
pub async fn serve(listener: TcpListener, identity: Identity, shutdown: impl Future<Output = ()>) {
    serve_with_instrumentation(listener, None, identity, shutdown).await;
}

/// [`serve`], and when `instrumentation` is given, the test-only instrumentation port on it
/// (see the crate docs), sharing the app's counters.
pub async fn serve_with_instrumentation(
    listener: TcpListener,
    instrumentation: Option<TcpListener>,
    identity: Identity,
    shutdown: impl Future<Output = ()>,
) {
    let state = Arc::new(State::new(identity));
    if let Some(instrumentation) = instrumentation {
        let task = tokio::spawn(instrument::serve(instrumentation, state.clone()));
        run_app(listener, state, shutdown).await;
        task.abort();
    } else {
        run_app(listener, state, shutdown).await;
    }
}

async fn run_app(listener: TcpListener, state: Arc<State>, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => return,
        };
        match accepted {
            Ok((stream, _peer)) => {
                tokio::spawn(serve_connection(stream, state.clone()));
            }
            // Out of file descriptors and the like: back off instead of spinning.
            Err(error) => {
                eprintln!("accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn serve_connection(stream: tokio::net::TcpStream, state: Arc<State>) {
    let _ = stream.set_nodelay(true);
    // A second descriptor of the same socket, so that an `x-reset` can set SO_LINGER 0 after hyper
    // has taken the stream: closing the last descriptor then sends RST instead of FIN.
    let socket = match socket2::SockRef::from(&stream).try_clone() {
        Ok(socket) => socket,
        Err(error) => {
            eprintln!("dup of accepted socket failed: {error}");
            return;
        }
    };
    let reset = Arc::new(Notify::new());
    let service = {
        let reset = reset.clone();
        service_fn(move |request| handle(request, state.clone(), reset.clone()))
    };
    let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = connection => {}
        () = reset.notified() => {
            let _ = socket.set_linger(Some(Duration::ZERO));
        }
    }
}

type Reply = Response<Full<Bytes>>;

async fn handle(
    request: Request<Incoming>,
    state: Arc<State>,
    reset: Arc<Notify>,
) -> Result<Reply, Infallible> {
    if let Some(admin_path) = request.uri().path().strip_prefix("/_admin/") {
        return Ok(admin(
            &state,
            request.method(),
            admin_path,
            request.uri().query(),
        ));
    }
    let path = request.uri().path().to_owned();
    let _in_flight = state.begin(&path, request.headers());

    if header(request.headers(), "x-reset").is_some_and(|v| v == "1") {
        reset.notify_one();
        // The connection task drops this future together with the socket.
        std::future::pending::<()>().await;
    }

    let mode = state.mode();
    let delay_ms = match header(request.headers(), "x-delay-ms") {
        Some(value) => match value.parse::<u64>() {
            Ok(ms) => ms,
            Err(_) => return Ok(error_reply("x-delay-ms must be a number of milliseconds")),
        },
        None => mode.delay_ms,
    };
    let fail = match header(request.headers(), "x-fail") {
        Some(value) => match value.parse::<u16>() {
            Ok(status) => status,
            Err(_) => return Ok(error_reply("x-fail must be an HTTP status")),
        },
        None if mode.fail_every > 1 && !state.lock().requests.is_multiple_of(mode.fail_every) => 0,
        None => mode.fail,
    };
    if delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    }
    let status = match fail {
        0 => StatusCode::OK,
        code => match StatusCode::from_u16(code) {
            Ok(status) => status,
            Err(_) => return Ok(error_reply("fail status must be within 100..=999")),
        },
    };
    let body = json!({
        "service": state.identity.service,
        "version": state.identity.version,
        "method": request.method().as_str(),
        "path": path,
        "headers": headers_json(request.headers()),
    });
    let mut reply = json_reply(status, &body);
    let headers = reply.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&state.identity.service) {
        headers.insert("x-service", value);
    }
    if let Ok(value) = HeaderValue::from_str(&state.identity.version) {
        headers.insert("x-version", value);
    }
    Ok(reply)
}

fn admin(state: &State, method: &Method, path: &str, query: Option<&str>) -> Reply {
    match (method, path) {
        (&Method::GET, "stats") => json_reply(StatusCode::OK, &state.stats()),
        (&Method::GET, "last") => json_reply(StatusCode::OK, &state.last()),
        (&Method::POST, "reset") => {
            state.reset();
            json_reply(StatusCode::OK, &json!({"reset": true}))
        }
        (&Method::POST, "mode") => match parse_mode(query.unwrap_or(""), state.mode()) {
            Ok(mode) => {
                state.set_mode(mode);
                json_reply(
                    StatusCode::OK,
                    &json!({"fail": mode.fail, "fail_every": mode.fail_every, "delay_ms": mode.delay_ms}),
                )
            }
            Err(message) => error_reply(message),
        },
        _ => json_reply(
            StatusCode::NOT_FOUND,
            &json!({"error": "unknown admin endpoint"}),
        ),
    }
}

/// Applies `fail=`, `fail_every=` and `delay_ms=` from a query string; absent keys keep their value.
fn parse_mode(query: &str, mut mode: Mode) -> Result<Mode, &'static str> {
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "fail" => {
                mode.fail = value.parse().map_err(|_| "fail must be an HTTP status")?;
                if mode.fail != 0 && StatusCode::from_u16(mode.fail).is_err() {
                    return Err("fail must be 0 or within 100..=999");
                }
            }
            "fail_every" => {
                mode.fail_every = value.parse().map_err(|_| "fail_every must be a number")?;
            }
            "delay_ms" => {
                mode.delay_ms = value.parse().map_err(|_| "delay_ms must be a number")?;
            }
            _ => return Err("mode accepts fail, fail_every and delay_ms"),
        }
    }
    Ok(mode)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// Request headers as a JSON object; repeated headers are joined with ", ".
fn headers_json(headers: &HeaderMap) -> Value {
    let mut map: BTreeMap<&str, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        map.entry(name.as_str())
            .and_modify(|joined| {
                joined.push_str(", ");
                joined.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    json!(map)
}

fn json_reply(status: StatusCode, body: &Value) -> Reply {
    let mut reply = Response::new(Full::new(Bytes::from(body.to_string())));
    *reply.status_mut() = status;
    reply
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    reply
}

fn error_reply(message: &str) -> Reply {
    json_reply(StatusCode::BAD_REQUEST, &json!({"error": message}))
}

// === impl State ===

#[derive(Clone, Copy, Debug, Default)]
struct Mode {
    /// 0 answers normally.
    fail: u16,
    /// With `fail`: only every n-th request fails (5 = 20 %); 0 or 1 = every request.
    fail_every: u64,
    delay_ms: u64,
}

struct State {
    identity: Identity,
    inner: Mutex<Counters>,
}

#[derive(Default)]
struct Counters {
    requests: u64,
    in_flight: u64,
    peak_in_flight: u64,
    by_path: BTreeMap<String, u64>,
    last_headers: Value,
    mode: Mode,
}

impl State {
    fn new(identity: Identity) -> Self {
        Self {
            identity,
            inner: Mutex::new(Counters::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Counters> {
        // Counters stay meaningful even if a holder panicked.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a request; the returned guard keeps it in flight until dropped.
    fn begin<'a>(&'a self, path: &str, headers: &HeaderMap) -> InFlight<'a> {
        let mut counters = self.lock();
        counters.requests += 1;
        *counters.by_path.entry(path.to_owned()).or_default() += 1;
        counters.last_headers = headers_json(headers);
        counters.in_flight += 1;
        counters.peak_in_flight = counters.peak_in_flight.max(counters.in_flight);
        InFlight(self)
    }

    fn stats(&self) -> Value {
        let counters = self.lock();
        json!({
            "requests": counters.requests,
            "in_flight": counters.in_flight,
            "peak_in_flight": counters.peak_in_flight,
            "by_path": counters.by_path,
        })
    }

    fn last(&self) -> Value {
        match &self.lock().last_headers {
            Value::Null => json!({}),
            headers => headers.clone(),
        }
    }

    fn reset(&self) {
        let mut counters = self.lock();
        counters.requests = 0;
        counters.peak_in_flight = counters.in_flight;
        counters.by_path.clear();
        counters.last_headers = Value::Null;
    }

    fn mode(&self) -> Mode {
        self.lock().mode
    }

    fn set_mode(&self, mode: Mode) {
        self.lock().mode = mode;
    }
}

struct InFlight<'a>(&'a State);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut counters = self.0.lock();
        counters.in_flight = counters.in_flight.saturating_sub(1);
    }
}
