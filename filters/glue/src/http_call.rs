//! Fire-and-forget HTTP callouts (traffic mirroring).
//!
//! The proxy-wasm host (`proxy-wasm-cpp-host`, `exports::http_call`) owns every callout by
//! the plugin's root context, not by the stream that dispatched it, so a copy outlives the
//! request it was made from: it completes on its own and its answer is dropped (the stream's
//! `on_http_call_response` is a no-op, or the stream is gone and the SDK ignores the token).

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType};
use std::time::Duration;

/// Request headers to leave out of a copy: hop-by-hop, and those describing a body the copy
/// may not carry in the same framing.
const SKIPPED: &[&str] = &[
    "connection",
    "keep-alive",
    "transfer-encoding",
    "upgrade",
    "te",
    "content-length",
];

/// The current request's headers, ready for a copy to `authority` (Envoy's shadow naming:
/// `reviews` becomes `reviews-shadow`, so the shadow can tell copies from real traffic).
pub fn request_headers_for_copy(authority_suffix: &str) -> Vec<(String, String)> {
    let headers = hostcalls::get_map(MapType::HttpRequestHeaders).unwrap_or_default();
    headers
        .into_iter()
        .filter(|(name, _)| !SKIPPED.contains(&name.as_str()))
        .map(|(name, value)| {
            if name == ":authority" {
                let (host, port) = match value.rsplit_once(':') {
                    Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => {
                        (h.to_string(), format!(":{p}"))
                    }
                    _ => (value.clone(), String::new()),
                };
                (name, format!("{host}{authority_suffix}{port}"))
            } else {
                (name, value)
            }
        })
        .collect()
}

/// The current request body chunk (`size` bytes as passed to `on_http_request_body`).
pub fn request_body_chunk(size: usize) -> Vec<u8> {
    hostcalls::get_buffer(BufferType::HttpRequestBody, 0, size)
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Sends a request to `cluster` without waiting for it. Errors are the host's status, as text
/// (`BadArgument` for an unknown cluster).
pub fn dispatch_detached(
    cluster: &str,
    headers: &[(String, String)],
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<(), String> {
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    hostcalls::dispatch_http_call(cluster, headers, body, Vec::new(), timeout)
        .map(|_token| ())
        .map_err(|status| format!("dispatch to {cluster}: {status:?}"))
}
