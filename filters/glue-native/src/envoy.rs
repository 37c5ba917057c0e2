//! Safe wrappers over the callbacks in [`crate::abi`]: each takes Envoy's pointer as the hook
//! handed it and copies whatever Envoy returns into owned Rust values before returning.
//!
//! Every wrapper is only called with a filter pointer Envoy passed to the hook that is running
//! (or to an earlier hook of a filter that is still alive: the runtime forgets a filter in
//! `on_http_filter_destroy`), on that filter's worker thread, and with a configuration pointer
//! from `on_http_filter_config_new`, which Envoy keeps until `on_http_filter_config_destroy`.

use crate::abi::{self, EnvoyBuffer, EnvoyHttpHeader, ModuleBuffer, ModuleHttpHeader};
use std::ffi::c_void;

/// A filter pointer from a hook (see the module comment for when it is valid).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Filter(pub(crate) *mut c_void);

/// A configuration pointer from `on_http_filter_config_new`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config(pub(crate) *mut c_void);

// SAFETY: Envoy's configuration object is shared by every worker and its metric callbacks are
// thread-safe (stats are atomics); the pointer itself is only an address.
unsafe impl Send for Config {}
// SAFETY: as for `Send`: the callbacks taking it may be called from any thread.
unsafe impl Sync for Config {}

/// Copies an Envoy buffer into an owned vector (empty for a null buffer).
fn copy(buffer: EnvoyBuffer) -> Vec<u8> {
    if buffer.ptr.is_null() || buffer.length == 0 {
        return Vec::new();
    }
    // SAFETY: Envoy returned `ptr` valid for `length` bytes until the end of the hook; we copy
    // them out at once.
    unsafe { std::slice::from_raw_parts(buffer.ptr, buffer.length) }.to_vec()
}

/// Header pairs as the ABI's vector, borrowing `headers` (keep it alive for the call).
fn module_headers(headers: &[(String, String)]) -> Vec<ModuleHttpHeader> {
    headers
        .iter()
        .map(|(k, v)| ModuleHttpHeader {
            key_ptr: k.as_ptr(),
            key_length: k.len(),
            value_ptr: v.as_ptr(),
            value_length: v.len(),
        })
        .collect()
}

/// Envoy's bytes as text ([`weft_filter_core::attrs::header_text`]): never `None` for its
/// encoding, so a header with obs-text is not taken for absent.
fn text(buffer: EnvoyBuffer) -> Option<String> {
    Some(weft_filter_core::attrs::header_text(copy(buffer)))
}

/// Borrows the bytes Envoy passed to a hook (e.g. the configuration) for that hook.
///
/// # Safety
/// `ptr` must be valid for `length` bytes for the lifetime `'a` (the hook's duration).
pub(crate) unsafe fn hook_bytes<'a>(ptr: *const u8, length: usize) -> &'a [u8] {
    if ptr.is_null() || length == 0 {
        return &[];
    }
    // SAFETY: the caller guarantees `ptr`/`length` (Envoy's buffer for this hook).
    unsafe { std::slice::from_raw_parts(ptr, length) }
}

pub fn log(level: u32, message: &str) {
    // SAFETY: the buffer borrows `message` for the duration of the call.
    unsafe { abi::envoy_dynamic_module_callback_log(level, ModuleBuffer::of(message.as_bytes())) }
}

pub fn log_enabled(level: u32) -> bool {
    // SAFETY: takes a plain integer.
    unsafe { abi::envoy_dynamic_module_callback_log_enabled(level) }
}

impl Filter {
    /// Envoy's buffer for the `index`-th value of header `name` (valid until the end of the
    /// hook), and how many values it has.
    fn header_buffer(
        self,
        header_type: u32,
        name: &str,
        index: usize,
    ) -> (Option<EnvoyBuffer>, usize) {
        let mut result = EnvoyBuffer::NULL;
        let mut count = 0usize;
        // SAFETY: `self.0` is a live filter (module comment); `result` and `count` are valid
        // out-pointers; the key buffer borrows `name` for the call.
        let found = unsafe {
            abi::envoy_dynamic_module_callback_http_get_header(
                self.0,
                header_type,
                ModuleBuffer::of(name.as_bytes()),
                &mut result,
                index,
                &mut count,
            )
        };
        ((found && !result.ptr.is_null()).then_some(result), count)
    }

    /// The first value of header `name` parsed as a decimal integer (`:status`), read in
    /// place: no copy of the value.
    pub fn header_u64(self, header_type: u32, name: &str) -> Option<u64> {
        let buffer = self.header_buffer(header_type, name, 0).0?;
        // SAFETY: Envoy's value, valid until the end of the hook; parsed before returning.
        let value = unsafe { hook_bytes(buffer.ptr, buffer.length) };
        std::str::from_utf8(value).ok()?.parse().ok()
    }

    /// The `index`-th value of header `name` and how many values it has.
    fn header_at(self, header_type: u32, name: &str, index: usize) -> (Option<String>, usize) {
        let (buffer, count) = self.header_buffer(header_type, name, index);
        (buffer.and_then(text), count)
    }

    pub fn header(self, header_type: u32, name: &str) -> Option<String> {
        self.header_at(header_type, name, 0).0
    }

    pub fn header_values(self, header_type: u32, name: &str) -> Vec<String> {
        let (first, count) = self.header_at(header_type, name, 0);
        let mut values: Vec<String> = first.into_iter().collect();
        for index in 1..count {
            if let (Some(value), _) = self.header_at(header_type, name, index) {
                values.push(value);
            }
        }
        values
    }

    pub fn headers(self, header_type: u32) -> Vec<(String, String)> {
        // SAFETY: `self.0` is a live filter.
        let size = unsafe {
            abi::envoy_dynamic_module_callback_http_get_headers_size(self.0, header_type)
        };
        if size == 0 {
            return Vec::new();
        }
        let mut entries = vec![EnvoyHttpHeader::NULL; size];
        // SAFETY: `entries` has room for the `size` headers Envoy just counted, on this thread
        // with no header write in between.
        let ok = unsafe {
            abi::envoy_dynamic_module_callback_http_get_headers(
                self.0,
                header_type,
                entries.as_mut_ptr(),
            )
        };
        if !ok {
            return Vec::new();
        }
        entries
            .into_iter()
            .filter_map(|h| {
                let key = text(EnvoyBuffer {
                    ptr: h.key_ptr,
                    length: h.key_length,
                })?;
                let value = text(EnvoyBuffer {
                    ptr: h.value_ptr,
                    length: h.value_length,
                })?;
                Some((key, value))
            })
            .collect()
    }

    /// Sets (replacing every copy) or, with `None`, removes header `name`.
    pub fn set_header(self, header_type: u32, name: &str, value: Option<&str>) -> bool {
        let value = value.map_or(ModuleBuffer::NULL, |v| ModuleBuffer::of(v.as_bytes()));
        // SAFETY: `self.0` is a live filter; both buffers borrow data alive for the call.
        unsafe {
            abi::envoy_dynamic_module_callback_http_set_header(
                self.0,
                header_type,
                ModuleBuffer::of(name.as_bytes()),
                value,
            )
        }
    }

    pub fn add_header(self, header_type: u32, name: &str, value: &str) -> bool {
        // SAFETY: as for `set_header`.
        unsafe {
            abi::envoy_dynamic_module_callback_http_add_header(
                self.0,
                header_type,
                ModuleBuffer::of(name.as_bytes()),
                ModuleBuffer::of(value.as_bytes()),
            )
        }
    }

    pub fn send_response(self, status: u16, headers: &[(String, String)], body: &str) {
        let mut vector = module_headers(headers);
        // SAFETY: `self.0` is a live filter; `vector` and the strings it points into, `body`
        // and the details literal all outlive the call.
        unsafe {
            abi::envoy_dynamic_module_callback_http_send_response(
                self.0,
                u32::from(status),
                vector.as_mut_ptr(),
                vector.len(),
                ModuleBuffer::of(body.as_bytes()),
                ModuleBuffer::of(b"weft"),
            );
        }
    }

    /// The size of the request body chunk this `on_http_filter_request_body` received.
    pub fn received_request_body_size(self) -> usize {
        // SAFETY: `self.0` is a live filter.
        unsafe {
            abi::envoy_dynamic_module_callback_http_get_body_size(
                self.0,
                abi::BODY_RECEIVED_REQUEST,
            )
        }
    }

    /// The request body chunk this `on_http_filter_request_body` received.
    pub fn received_request_body(self) -> Vec<u8> {
        self.request_body(abi::BODY_RECEIVED_REQUEST)
    }

    /// The request body earlier chunks left buffered (a filter stopped and buffered them).
    pub fn buffered_request_body(self) -> Vec<u8> {
        self.request_body(abi::BODY_BUFFERED_REQUEST)
    }

    fn request_body(self, kind: u32) -> Vec<u8> {
        // SAFETY: `self.0` is a live filter.
        let count =
            unsafe { abi::envoy_dynamic_module_callback_http_get_body_chunks_size(self.0, kind) };
        if count == 0 {
            return Vec::new();
        }
        let mut chunks = vec![EnvoyBuffer::NULL; count];
        // SAFETY: `chunks` has room for the `count` chunks Envoy just counted.
        let ok = unsafe {
            abi::envoy_dynamic_module_callback_http_get_body_chunks(
                self.0,
                kind,
                chunks.as_mut_ptr(),
            )
        };
        if !ok {
            return Vec::new();
        }
        chunks.into_iter().flat_map(copy).collect()
    }

    pub fn set_filter_state(self, key: &str, value: &[u8]) -> bool {
        // SAFETY: `self.0` is a live filter; both buffers borrow data alive for the call.
        unsafe {
            abi::envoy_dynamic_module_callback_http_set_filter_state_bytes(
                self.0,
                ModuleBuffer::of(key.as_bytes()),
                ModuleBuffer::of(value),
            )
        }
    }

    pub fn filter_state(self, key: &str) -> Option<Vec<u8>> {
        let mut result = EnvoyBuffer::NULL;
        // SAFETY: `self.0` is a live filter; `result` is a valid out-pointer.
        let ok = unsafe {
            abi::envoy_dynamic_module_callback_http_get_filter_state_bytes(
                self.0,
                ModuleBuffer::of(key.as_bytes()),
                &mut result,
            )
        };
        ok.then(|| copy(result))
    }

    pub fn attribute_string(self, id: u32) -> Option<String> {
        let mut result = EnvoyBuffer::NULL;
        // SAFETY: `self.0` is a live filter; `result` is a valid out-pointer.
        let ok = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_get_attribute_string(
                self.0,
                id,
                &mut result,
            )
        };
        if ok {
            text(result)
        } else {
            None
        }
    }

    pub fn attribute_int(self, id: u32) -> Option<u64> {
        let mut result = 0u64;
        // SAFETY: `self.0` is a live filter; `result` is a valid out-pointer.
        let ok = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_get_attribute_int(
                self.0,
                id,
                &mut result,
            )
        };
        ok.then_some(result)
    }

    /// Makes the router pick the route again (after a request header it matches on changed;
    /// the wasm host does this on every header write, the ABI leaves it to the module).
    pub fn clear_route_cache(self) {
        // SAFETY: `self.0` is a live filter, on its worker thread.
        unsafe { abi::envoy_dynamic_module_callback_http_clear_route_cache(self.0) }
    }

    pub fn continue_decoding(self) {
        // SAFETY: `self.0` is a live filter, on its worker thread.
        unsafe { abi::envoy_dynamic_module_callback_http_filter_continue_decoding(self.0) }
    }

    /// A scheduler posting events to this filter's worker; delete it with [`Scheduler::delete`].
    pub fn new_scheduler(self) -> Scheduler {
        // SAFETY: `self.0` is a live filter, on its worker thread.
        Scheduler(unsafe { abi::envoy_dynamic_module_callback_http_filter_scheduler_new(self.0) })
    }

    /// Starts an HTTP callout to `cluster`; its id, or the init result Envoy refused it with.
    pub fn http_callout(
        self,
        cluster: &str,
        headers: &[(String, String)],
        body: Option<&[u8]>,
        timeout_ms: u64,
    ) -> Result<u64, u32> {
        let mut vector = module_headers(headers);
        let mut id = 0u64;
        // SAFETY: `self.0` is a live filter; every buffer and the header vector outlive the
        // call; `id` is a valid out-pointer.
        let result = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_http_callout(
                self.0,
                &mut id,
                ModuleBuffer::of(cluster.as_bytes()),
                vector.as_mut_ptr(),
                vector.len(),
                body.map_or(ModuleBuffer::NULL, ModuleBuffer::of),
                timeout_ms,
            )
        };
        if result == abi::CALLOUT_INIT_SUCCESS {
            Ok(id)
        } else {
            Err(result)
        }
    }
}

/// A filter scheduler; its events reach `on_http_filter_scheduled` on the filter's worker
/// while the filter lives (Envoy drops them afterwards).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scheduler(pub(crate) *mut c_void);

// SAFETY: `commit` is Envoy's thread-safe post to the worker's dispatcher (the ABI's way for
// other threads to reach a filter); the timer thread only commits while the runtime has not
// deleted it (both under the timer's lock).
unsafe impl Send for Scheduler {}

impl Scheduler {
    pub fn commit(self, event_id: u64) {
        // SAFETY: not deleted yet (see the `Send` impl), and commit may run on any thread.
        unsafe { abi::envoy_dynamic_module_callback_http_filter_scheduler_commit(self.0, event_id) }
    }

    /// Frees the scheduler; call once, after the timer thread can no longer commit to it.
    pub fn delete(self) {
        // SAFETY: created by `new_scheduler`, deleted once by its owner.
        unsafe { abi::envoy_dynamic_module_callback_http_filter_scheduler_delete(self.0) }
    }
}

/// The signature every config-level metric update shares.
type MetricUpdate =
    unsafe extern "C" fn(abi::ConfigEnvoyPtr, usize, *mut ModuleBuffer, usize, u64) -> u32;

/// The kinds of metric, as the define callbacks name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

impl Config {
    /// Defines a metric (only while Envoy runs `on_http_filter_config_new`); its id.
    pub fn define(self, kind: MetricKind, name: &str) -> Option<usize> {
        let mut id = 0usize;
        let name = ModuleBuffer::of(name.as_bytes());
        let none = std::ptr::null_mut();
        // SAFETY: `self.0` is the configuration of the running `config_new` hook; no labels
        // (null, 0); `id` is a valid out-pointer.
        let result = unsafe {
            match kind {
                MetricKind::Counter => {
                    abi::envoy_dynamic_module_callback_http_filter_config_define_counter(
                        self.0, name, none, 0, &mut id,
                    )
                }
                MetricKind::Gauge => {
                    abi::envoy_dynamic_module_callback_http_filter_config_define_gauge(
                        self.0, name, none, 0, &mut id,
                    )
                }
                MetricKind::Histogram => {
                    abi::envoy_dynamic_module_callback_http_filter_config_define_histogram(
                        self.0, name, none, 0, &mut id,
                    )
                }
            }
        };
        (result == abi::METRICS_SUCCESS).then_some(id)
    }

    /// One of the config-level metric updates (same arguments: id, no labels, value).
    fn update(self, update: MetricUpdate, id: usize, value: u64) {
        // SAFETY: a live configuration and an id it defined; no labels (null, 0).
        unsafe {
            update(self.0, id, std::ptr::null_mut(), 0, value);
        }
    }

    pub fn increment_counter(self, id: usize, value: u64) {
        self.update(
            abi::envoy_dynamic_module_callback_http_filter_config_increment_counter,
            id,
            value,
        );
    }

    /// Moves a gauge by `delta`.
    pub fn add_gauge(self, id: usize, delta: i64) {
        let update: MetricUpdate = if delta >= 0 {
            abi::envoy_dynamic_module_callback_http_filter_config_increment_gauge
        } else {
            abi::envoy_dynamic_module_callback_http_filter_config_decrement_gauge
        };
        self.update(update, id, delta.unsigned_abs());
    }

    pub fn set_gauge(self, id: usize, value: u64) {
        self.update(
            abi::envoy_dynamic_module_callback_http_filter_config_set_gauge,
            id,
            value,
        );
    }

    pub fn record_histogram(self, id: usize, value: u64) {
        self.update(
            abi::envoy_dynamic_module_callback_http_filter_config_record_histogram_value,
            id,
            value,
        );
    }
}

#[cfg(test)]
mod text_tests {
    use super::*;

    /// A header value with obs-text bytes is a value, never an absent header: a presence rule
    /// (`x-debug` present → DENY) must not be passed by `x-debug: \xff`.
    #[test]
    fn bytes_that_are_not_utf8_are_text_not_absence() {
        let of = |bytes: &[u8]| {
            text(EnvoyBuffer {
                ptr: bytes.as_ptr(),
                length: bytes.len(),
            })
        };
        assert_eq!(of(b"mallory\xff").as_deref(), Some("mallory\u{fffd}"));
        assert_eq!(of(b"\xc3\x28").as_deref(), Some("\u{fffd}("));
        assert_eq!(of("caf\u{e9}".as_bytes()).as_deref(), Some("caf\u{e9}"));
        assert_eq!(of(b"").as_deref(), Some(""));
    }
}
