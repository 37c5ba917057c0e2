//! Request bodies, for fire-and-forget HTTP callouts (traffic mirroring).
//!
//! The proxy-wasm host (`proxy-wasm-cpp-host`, `exports::http_call`) owns every callout by
//! the plugin's root context, not by the stream that dispatched it, so a copy outlives the
//! request it was made from: it completes on its own and its answer is dropped (the stream's
//! `on_http_call_response` is a no-op, or the stream is gone and the SDK ignores the token).

use proxy_wasm::hostcalls;
use proxy_wasm::types::BufferType;

/// The current request body chunk (`size` bytes as passed to `on_http_request_body`).
pub fn request_body_chunk(size: usize) -> Vec<u8> {
    hostcalls::get_buffer(BufferType::HttpRequestBody, 0, size)
        .ok()
        .flatten()
        .unwrap_or_default()
}
