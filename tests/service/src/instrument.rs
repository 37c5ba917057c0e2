//! The test-only instrumentation port: `/_admin/*`, `/_forward/<host:port>/<path>` and
//! `/_probe/<host:port>`. See the crate docs for why it exists and why it is never deployed.

use std::{convert::Infallible, sync::Arc, time::Duration};

use http_body_util::{BodyExt, Full};
use hyper::{
    body::Incoming,
    header::{HeaderName, HeaderValue},
    server::conn::http1,
    service::service_fn,
    Request, Response, StatusCode,
};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};

use crate::{admin, json_reply, Reply, State};

/// Set on a reply the forwarder made itself (it could not reach the target), so a test can
/// tell "nothing there" from a status the target answered.
pub const FORWARD_FAILED: &str = "x-forward-failed";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(15);

pub(crate) async fn serve(listener: TcpListener, state: Arc<State>) {
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => {
                let state = state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| handle(request, state.clone()));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            Err(error) => {
                eprintln!("instrumentation accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn handle(request: Request<Incoming>, state: Arc<State>) -> Result<Reply, Infallible> {
    let path = request.uri().path().to_owned();
    if let Some(admin_path) = path.strip_prefix("/_admin/") {
        return Ok(admin(
            &state,
            request.method(),
            admin_path,
            request.uri().query(),
        ));
    }
    if let Some(target) = path.strip_prefix("/_probe/") {
        return Ok(probe(target).await);
    }
    if let Some(rest) = path.strip_prefix("/_forward/") {
        let (authority, tail) = match rest.find('/') {
            Some(at) => rest.split_at(at),
            None => (rest, "/"),
        };
        let path_and_query = match request.uri().query() {
            Some(query) => format!("{tail}?{query}"),
            None => tail.to_owned(),
        };
        let authority = authority.to_owned();
        return Ok(forward(request, &authority, &path_and_query).await);
    }
    Ok(json_reply(
        StatusCode::NOT_FOUND,
        &json!({"error": "instrumentation serves /_admin/*, /_forward/<host:port>/<path> and /_probe/<host:port>"}),
    ))
}

/// Whether a TCP connection to `target` can be made from here, as JSON
/// `{"target", "connected", "error"}`.
async fn probe(target: &str) -> Reply {
    let (connected, error) = match connect(target).await {
        Ok(_) => (true, String::new()),
        Err(error) => (false, error),
    };
    json_reply(
        StatusCode::OK,
        &json!({"target": target, "connected": connected, "error": error}),
    )
}

async fn connect(target: &str) -> Result<TcpStream, String> {
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("connect timed out after {CONNECT_TIMEOUT:?}")),
    }
}

/// Sends `request` (method, every header including `Host`, body) to `authority` as
/// `path_and_query` over HTTP/1.1 and answers with what came back.
async fn forward(request: Request<Incoming>, authority: &str, path_and_query: &str) -> Reply {
    let stream = match connect(authority).await {
        Ok(stream) => stream,
        Err(error) => return failed("connect", &error),
    };
    let (mut sender, connection) =
        match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
            Ok(parts) => parts,
            Err(error) => return failed("handshake", &error.to_string()),
        };
    tokio::spawn(connection);
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => return failed("request body", &error.to_string()),
    };
    let mut outgoing = Request::new(Full::new(body));
    *outgoing.method_mut() = parts.method;
    match path_and_query.parse() {
        Ok(uri) => *outgoing.uri_mut() = uri,
        Err(error) => return failed("path", &error.to_string()),
    }
    *outgoing.headers_mut() = parts.headers;
    outgoing.headers_mut().remove(hyper::header::CONTENT_LENGTH);
    let response = match tokio::time::timeout(RESPONSE_TIMEOUT, sender.send_request(outgoing)).await
    {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => return failed("response", &error.to_string()),
        Err(_) => return failed("response", "timed out"),
    };
    let (parts, body) = response.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => return failed("response body", &error.to_string()),
    };
    let mut reply = Response::new(Full::new(body));
    *reply.status_mut() = parts.status;
    for (name, value) in &parts.headers {
        // The body is whole now: hyper frames it again.
        if name != hyper::header::TRANSFER_ENCODING
            && name != hyper::header::CONTENT_LENGTH
            && name != hyper::header::CONNECTION
        {
            reply.headers_mut().append(name.clone(), value.clone());
        }
    }
    reply
}

fn failed(stage: &'static str, error: &str) -> Reply {
    let mut reply = json_reply(
        StatusCode::BAD_GATEWAY,
        &json!({"error": format!("{stage}: {error}")}),
    );
    reply.headers_mut().insert(
        HeaderName::from_static(FORWARD_FAILED),
        HeaderValue::from_static(stage),
    );
    reply
}
