//! The hooks end to end against a fake Envoy: the callbacks of [`crate::abi`] defined here
//! over one thread's fake stream (headers, replies, filter state, metrics), so the whole path
//! — configuration on the "main thread", a worker's stages, a request's decision, its reply,
//! its stats — runs in a unit test. Real Envoy runs the same in `tests/tests/native_suite.rs`.

use crate::abi::{EnvoyBuffer, EnvoyHttpHeader, ModuleBuffer, ModuleHttpHeader};
use crate::hooks;
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::c_void;

/// A local reply the fake received: status, headers, body.
type Sent = (u32, Vec<(String, String)>, String);

#[derive(Default)]
struct Fake {
    request: Vec<(String, String)>,
    response: Vec<(String, String)>,
    replies: Vec<Sent>,
    filter_state: HashMap<String, Vec<u8>>,
    /// Metric names by id, and their counts.
    metrics: Vec<String>,
    counts: HashMap<usize, u64>,
    route_cache_cleared: u32,
    continued: u32,
    source: String,
}

thread_local! {
    static FAKE: RefCell<Fake> = RefCell::new(Fake::default());
}

fn fake<R>(f: impl FnOnce(&mut Fake) -> R) -> R {
    FAKE.with(|fake| f(&mut fake.borrow_mut()))
}

/// # Safety
/// `b` must describe `length` readable bytes (or be null).
unsafe fn text(b: ModuleBuffer) -> String {
    // SAFETY: per the contract (the glue passes buffers borrowing live data).
    String::from_utf8_lossy(unsafe { crate::envoy::hook_bytes(b.ptr, b.length) }).into_owned()
}

fn map(header_type: u32) -> &'static str {
    if header_type == 0 {
        "request"
    } else {
        "response"
    }
}

fn headers_of(f: &mut Fake, header_type: u32) -> &mut Vec<(String, String)> {
    if map(header_type) == "request" {
        &mut f.request
    } else {
        &mut f.response
    }
}

// The fake keeps every string it hands out alive in the thread-local until the next write, as
// Envoy keeps its header map; the glue copies at once.

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_log(_level: u32, _message: ModuleBuffer) {}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_log_enabled(_level: u32) -> bool {
    false
}

#[no_mangle]
unsafe extern "C" fn envoy_dynamic_module_callback_http_get_header(
    _filter: *mut c_void,
    header_type: u32,
    key: ModuleBuffer,
    result: *mut EnvoyBuffer,
    index: usize,
    optional_size: *mut usize,
) -> bool {
    // SAFETY: the glue's key buffer.
    let key = unsafe { text(key) };
    fake(|f| {
        let values: Vec<&(String, String)> = headers_of(f, header_type)
            .iter()
            .filter(|(k, _)| *k == key)
            .collect();
        // SAFETY: the glue passes valid out-pointers.
        unsafe {
            *optional_size = values.len();
            match values.get(index) {
                Some((_, v)) => {
                    *result = EnvoyBuffer {
                        ptr: v.as_ptr(),
                        length: v.len(),
                    };
                    true
                }
                None => false,
            }
        }
    })
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_get_headers_size(
    _filter: *mut c_void,
    header_type: u32,
) -> usize {
    fake(|f| headers_of(f, header_type).len())
}

#[no_mangle]
unsafe extern "C" fn envoy_dynamic_module_callback_http_get_headers(
    _filter: *mut c_void,
    header_type: u32,
    result: *mut EnvoyHttpHeader,
) -> bool {
    fake(|f| {
        for (i, (k, v)) in headers_of(f, header_type).iter().enumerate() {
            // SAFETY: the glue sized `result` with `get_headers_size`.
            unsafe {
                *result.add(i) = EnvoyHttpHeader {
                    key_ptr: k.as_ptr(),
                    key_length: k.len(),
                    value_ptr: v.as_ptr(),
                    value_length: v.len(),
                };
            }
        }
        true
    })
}

#[no_mangle]
unsafe extern "C" fn envoy_dynamic_module_callback_http_add_header(
    _filter: *mut c_void,
    header_type: u32,
    key: ModuleBuffer,
    value: ModuleBuffer,
) -> bool {
    // SAFETY: the glue's buffers.
    let (key, value) = unsafe { (text(key), text(value)) };
    fake(|f| headers_of(f, header_type).push((key, value)));
    true
}

#[no_mangle]
unsafe extern "C" fn envoy_dynamic_module_callback_http_set_header(
    _filter: *mut c_void,
    header_type: u32,
    key: ModuleBuffer,
    value: ModuleBuffer,
) -> bool {
    // SAFETY: the glue's buffers.
    let key = unsafe { text(key) };
    // SAFETY: the glue's value buffer (null: remove the header).
    let value = (!value.ptr.is_null()).then(|| unsafe { text(value) });
    fake(|f| {
        let headers = headers_of(f, header_type);
        headers.retain(|(k, _)| *k != key);
        if let Some(value) = value {
            headers.push((key, value));
        }
    });
    true
}

#[no_mangle]
unsafe extern "C" fn envoy_dynamic_module_callback_http_send_response(
    _filter: *mut c_void,
    status_code: u32,
    headers: *mut ModuleHttpHeader,
    headers_size: usize,
    body: ModuleBuffer,
    _details: ModuleBuffer,
) {
    let mut pairs = Vec::new();
    for i in 0..headers_size {
        // SAFETY: the glue's header vector of `headers_size` entries.
        let h = unsafe { *headers.add(i) };
        // SAFETY: each entry borrows live strings.
        let (k, v) = unsafe {
            (
                text(ModuleBuffer {
                    ptr: h.key_ptr,
                    length: h.key_length,
                }),
                text(ModuleBuffer {
                    ptr: h.value_ptr,
                    length: h.value_length,
                }),
            )
        };
        pairs.push((k, v));
    }
    // SAFETY: the glue's body buffer.
    let body = unsafe { text(body) };
    fake(|f| f.replies.push((status_code, pairs, body)));
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_get_body_size(_f: *mut c_void, _t: u32) -> usize {
    0
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_get_body_chunks_size(
    _f: *mut c_void,
    _t: u32,
) -> usize {
    0
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_get_body_chunks(
    _f: *mut c_void,
    _t: u32,
    _r: *mut EnvoyBuffer,
) -> bool {
    false
}

#[no_mangle]
unsafe extern "C" fn envoy_dynamic_module_callback_http_set_filter_state_bytes(
    _filter: *mut c_void,
    key: ModuleBuffer,
    value: ModuleBuffer,
) -> bool {
    // SAFETY: the glue's buffers.
    let (key, value) = unsafe { (text(key), text(value)) };
    fake(|f| f.filter_state.insert(key, value.into_bytes()));
    true
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_get_filter_state_bytes(
    _filter: *mut c_void,
    _key: ModuleBuffer,
    _result: *mut EnvoyBuffer,
) -> bool {
    false
}

#[no_mangle]
unsafe extern "C" fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
    _filter: *mut c_void,
    attribute_id: u32,
    result: *mut EnvoyBuffer,
) -> bool {
    if attribute_id != crate::abi::ATTR_SOURCE_ADDRESS {
        return false;
    }
    fake(|f| {
        // SAFETY: a valid out-pointer; the string lives in the thread-local.
        unsafe {
            *result = EnvoyBuffer {
                ptr: f.source.as_ptr(),
                length: f.source.len(),
            };
        }
    });
    true
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_filter_get_attribute_int(
    _filter: *mut c_void,
    _attribute_id: u32,
    _result: *mut u64,
) -> bool {
    false
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_filter_continue_decoding(_filter: *mut c_void) {
    fake(|f| f.continued += 1);
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_clear_route_cache(_filter: *mut c_void) {
    fake(|f| f.route_cache_cleared += 1);
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_filter_scheduler_new(
    _filter: *mut c_void,
) -> *mut c_void {
    std::ptr::null_mut()
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_filter_scheduler_commit(
    _scheduler: *mut c_void,
    _event_id: u64,
) {
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_filter_scheduler_delete(_scheduler: *mut c_void) {}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_filter_http_callout(
    _filter: *mut c_void,
    _callout_id: *mut u64,
    _cluster: ModuleBuffer,
    _headers: *mut ModuleHttpHeader,
    _headers_size: usize,
    _body: ModuleBuffer,
    _timeout: u64,
) -> u32 {
    2
}

unsafe fn define(name: ModuleBuffer, id: *mut usize) -> u32 {
    // SAFETY: the glue's name buffer and out-pointer.
    let name = unsafe { text(name) };
    let index = fake(|f| {
        f.metrics.push(name);
        f.metrics.len() - 1
    });
    // SAFETY: a valid out-pointer.
    unsafe { *id = index };
    0
}

/// The three define callbacks: each records the name and hands out its index.
macro_rules! define_stubs {
    ($($name:ident),*) => {$(
        #[no_mangle]
        unsafe extern "C" fn $name(
            _c: *mut c_void,
            name: ModuleBuffer,
            _l: *mut ModuleBuffer,
            _n: usize,
            id: *mut usize,
        ) -> u32 {
            // SAFETY: forwarded as received.
            unsafe { define(name, id) }
        }
    )*};
}

define_stubs!(
    envoy_dynamic_module_callback_http_filter_config_define_counter,
    envoy_dynamic_module_callback_http_filter_config_define_gauge,
    envoy_dynamic_module_callback_http_filter_config_define_histogram
);

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_filter_config_increment_counter(
    _c: *mut c_void,
    id: usize,
    _l: *mut ModuleBuffer,
    _n: usize,
    value: u64,
) -> u32 {
    fake(|f| *f.counts.entry(id).or_default() += value);
    0
}

/// Gauges and histograms: accepted, not recorded.
macro_rules! ignored_updates {
    ($($name:ident),*) => {$(
        #[no_mangle]
        extern "C" fn $name(
            _c: *mut c_void,
            _id: usize,
            _l: *mut ModuleBuffer,
            _n: usize,
            _value: u64,
        ) -> u32 {
            0
        }
    )*};
}

ignored_updates!(
    envoy_dynamic_module_callback_http_filter_config_increment_gauge,
    envoy_dynamic_module_callback_http_filter_config_decrement_gauge,
    envoy_dynamic_module_callback_http_filter_config_set_gauge,
    envoy_dynamic_module_callback_http_filter_config_record_histogram_value
);

// --- the tests -------------------------------------------------------------------------------

fn buffer(bytes: &[u8]) -> EnvoyBuffer {
    EnvoyBuffer {
        ptr: bytes.as_ptr(),
        length: bytes.len(),
    }
}

fn configure(json: &str) -> *const c_void {
    let config_envoy = 0x1000 as *mut c_void;
    hooks::envoy_dynamic_module_on_http_filter_config_new(
        config_envoy,
        buffer(b"weft.suite"),
        buffer(json.as_bytes()),
    )
}

fn count(name: &str) -> u64 {
    fake(|f| {
        f.metrics
            .iter()
            .enumerate()
            .filter(|(_, n)| n.as_str() == name)
            .map(|(id, _)| f.counts.get(&id).copied().unwrap_or(0))
            .sum()
    })
}

/// One request through the hooks: its request-headers status.
fn request(config: *const c_void, method: &str, path: &str, extra: &[(&str, &str)]) -> u32 {
    fake(|f| {
        f.request = [
            (":method", method),
            (":path", path),
            (":authority", "reviews"),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        f.response.clear();
        f.source = "10.1.2.3:5555".into();
    });
    let filter_envoy = 0x2000 as *mut c_void;
    let module = hooks::envoy_dynamic_module_on_http_filter_new(config, filter_envoy);
    assert!(!module.is_null());
    let status =
        hooks::envoy_dynamic_module_on_http_filter_request_headers(filter_envoy, module, true);
    hooks::envoy_dynamic_module_on_http_filter_stream_complete(filter_envoy, module);
    hooks::envoy_dynamic_module_on_http_filter_destroy(module);
    status
}

#[test]
fn a_bad_configuration_is_refused() {
    assert!(configure(
        r#"{"authz": {"policies": [{"name": "p", "action": "ALLOW", "rulez": []}]}}"#
    )
    .is_null());
    assert!(configure("[]").is_null());
    assert!(configure("{not json").is_null());
}

#[test]
fn authz_decides_replies_and_counts_through_the_hooks() {
    let config = configure(
        r#"{"authz": {"policies": [
            {"name": "no-admin", "action": "DENY", "rules": [{"paths": ["/admin/*"]}]},
            {"name": "lan", "action": "ALLOW", "rules": [{"ip_blocks": ["10.0.0.0/8"]}]}]}}"#,
    );
    assert!(!config.is_null());
    assert!(fake(|f| f
        .metrics
        .iter()
        .any(|m| m == "weft.authz.allowed")));

    assert_eq!(
        request(config, "GET", "/reports", &[]),
        crate::abi::STATUS_CONTINUE
    );
    assert!(fake(|f| f.replies.is_empty()));

    assert_eq!(
        request(config, "GET", "/admin/users", &[]),
        crate::abi::STATUS_STOP
    );
    let (status, _, body) = fake(|f| f.replies.pop()).unwrap();
    assert_eq!(status, 403);
    assert!(body.contains("no-admin"), "{body}");
    let why = fake(|f| f.filter_state.get("wasm.weft_decision").cloned()).unwrap();
    assert!(String::from_utf8(why).unwrap().contains("no-admin"));

    assert_eq!(count("weft.authz.allowed"), 1);
    assert_eq!(count("weft.authz.denied"), 1);
    assert_eq!(count("weft.authz.policy.no-admin.denied"), 1);
    hooks::envoy_dynamic_module_on_http_filter_config_destroy(config);
}

#[test]
fn the_canary_sets_its_cluster_header_and_clears_the_route_cache() {
    let config = configure(
        r#"{"canary": {"cluster_header": "x-weft-cluster", "services": [{
            "host": "reviews", "stable": "v1",
            "versions": {"v1": {"cluster": "reviews-v1"}, "v2": {"cluster": "reviews-v2"}},
            "rules": [{"header": {"name": "x-beta", "value": "true"}, "version": "v2"}],
            "split": [{"version": "v1", "weight": 10000}]}]}}"#,
    );
    assert!(!config.is_null());
    let before = fake(|f| f.route_cache_cleared);
    assert_eq!(
        request(config, "GET", "/", &[("x-beta", "true")]),
        crate::abi::STATUS_CONTINUE
    );
    let cluster = fake(|f| {
        f.request
            .iter()
            .find(|(k, _)| k == "x-weft-cluster")
            .map(|(_, v)| v.clone())
    });
    assert_eq!(cluster.as_deref(), Some("reviews-v2"));
    assert!(fake(|f| f.route_cache_cleared) > before);
    hooks::envoy_dynamic_module_on_http_filter_config_destroy(config);
}

#[test]
fn the_breaker_reads_the_response_status_and_opens() {
    let config = configure(
        r#"{"breaker": {"cluster_header": "x-weft-cluster", "clusters": {"native-v1": {
            "consecutive_failures": 2, "open_interval_ms": 60000, "half_open_probes": 1}}}}"#,
    );
    assert!(!config.is_null());
    let filter_envoy = 0x3000 as *mut c_void;
    // Two requests the upstream answers 503 (`:status` read in place), then one refused.
    for _ in 0..2 {
        fake(|f| {
            f.request = [
                (":method", "GET"),
                (":path", "/"),
                ("x-weft-cluster", "native-v1"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
            f.response.clear();
        });
        let module = hooks::envoy_dynamic_module_on_http_filter_new(config, filter_envoy);
        assert_eq!(
            hooks::envoy_dynamic_module_on_http_filter_request_headers(filter_envoy, module, true),
            crate::abi::STATUS_CONTINUE
        );
        fake(|f| f.response = vec![(":status".to_string(), "503".to_string())]);
        hooks::envoy_dynamic_module_on_http_filter_stream_complete(filter_envoy, module);
        hooks::envoy_dynamic_module_on_http_filter_destroy(module);
    }
    assert_eq!(
        request(config, "GET", "/", &[("x-weft-cluster", "native-v1")]),
        crate::abi::STATUS_STOP
    );
    let (status, _, _) = fake(|f| f.replies.pop()).unwrap();
    assert_eq!(status, 503);
    assert_eq!(count("weft.breaker.native-v1.opens"), 1);
    hooks::envoy_dynamic_module_on_http_filter_config_destroy(config);
}
