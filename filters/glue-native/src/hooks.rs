//! The event hooks Envoy 1.40 resolves in the module (`envoy_dynamic_module_on_*`), wired to
//! the suite's host-free pipeline (`weft_suite_stages`) exactly as `filters/suite` wires the
//! proxy-wasm callbacks.
//!
//! Threads: `config_new`/`config_destroy` run on the main thread; every filter hook on the
//! stream's worker. The main thread parses and validates the configuration and defines its
//! metrics (Envoy allows that only there); each worker builds its own [`Stages`] from the
//! same JSON on its first stream (the stages are single-threaded, as one VM per worker is
//! in wasm), keyed by the configuration in a thread-local list.
//!
//! Every pointer Envoy hands back is one this module gave it: the configuration's
//! `Box<Arc<ConfigShared>>` (freed in `config_destroy`) and each stream's `Box<StreamFilter>`
//! (freed in `filter_destroy`, after which Envoy calls nothing with it).

use crate::abi::{self, EnvoyBuffer, EnvoyHttpHeader, STATUS_CONTINUE, STATUS_STOP};
use crate::envoy::{self, hook_bytes};
use crate::host::{ConfigShared, Core, NativeHost};
use crate::timer::TICK_EVENT;
use std::cell::{Cell, RefCell};
use std::ffi::{c_char, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use weft_filter_core::explain::TRACE_HEADER;
use weft_filter_core::host::Flow;
use weft_filter_core::registry::SUITE_MODULE;
use weft_filter_core::suite::Suite;
use weft_suite_stages::{Stages, SuiteRequest, Ticks};

/// The ABI version string of Envoy 1.40.0 (`v0.2.0` in the release binary). Envoy logs a
/// warning on a mismatch and loads the module anyway.
pub const ABI_VERSION: &str = "v0.2.0";
static ABI_VERSION_C: &[u8] = b"v0.2.0\0";

/// One worker's stages for one configuration.
struct Worker {
    core: Core,
    stages: Stages,
    ticks: RefCell<Ticks>,
}

/// One stream: Envoy's module pointer for it.
struct StreamFilter {
    worker: Rc<Worker>,
    id: u32,
    request: RefCell<SuiteRequest>,
    done: Cell<bool>,
}

thread_local! {
    /// This worker's stages, one entry per live configuration.
    static WORKERS: RefCell<Vec<Rc<Worker>>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f`, turning a panic into `fallback` (a panic must not unwind into Envoy).
fn guarded<R>(what: &str, fallback: R, f: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(value) => value,
        Err(_) => {
            log::error!("weft-suite: internal error in {what}");
            fallback
        }
    }
}

/// The stream behind a module pointer.
///
/// # Safety
/// `module` must be a pointer `filter_new` returned and `filter_destroy` has not freed.
unsafe fn stream<'a>(module: *const c_void) -> Option<&'a StreamFilter> {
    // SAFETY: per the contract, a live `Box<StreamFilter>` (or null).
    unsafe { module.cast::<StreamFilter>().as_ref() }
}

/// Runs `f` as stream `module` (Envoy's `filter`), restoring the previous context after:
/// hooks nest (a local reply runs this stream's response hooks inside its request hook).
/// `fallback` answers when there is no stream or `f` panicked.
fn as_stream<R>(
    filter: *mut c_void,
    module: *const c_void,
    what: &str,
    fallback: impl FnOnce(envoy::Filter) -> R,
    f: impl FnOnce(&StreamFilter, &NativeHost<'_>) -> R,
) -> R {
    let envoy_filter = envoy::Filter(filter);
    // SAFETY: Envoy passes back the pointer `filter_new` returned for this stream, until
    // `filter_destroy`.
    let Some(stream) = (unsafe { stream(module) }) else {
        return fallback(envoy_filter);
    };
    let core = &stream.worker.core;
    let saved = core.enter(stream.id, envoy_filter);
    let host = NativeHost(core);
    let result = match catch_unwind(AssertUnwindSafe(|| f(stream, &host))) {
        Ok(value) => value,
        Err(_) => {
            log::error!("weft-suite: internal error in {what}");
            fallback(envoy_filter)
        }
    };
    send_replies(core);
    core.leave(saved);
    result
}

/// What a stream's request gets when the module cannot decide: a 500 (fail closed).
fn fail_closed(filter: envoy::Filter) -> u32 {
    filter.send_response(500, &[], "weft: internal error\n");
    STATUS_STOP
}

fn go_on(_: envoy::Filter) -> u32 {
    STATUS_CONTINUE
}

/// Sends the local replies the stage call asked for, each with the response headers its
/// stream's response hook would have added (the cohort header, the explain trace).
fn send_replies(core: &Core) {
    core.send_replies(|id| {
        let Some(module) = core.module_of(id) else {
            return Vec::new();
        };
        // SAFETY: the module pointer of a stream that is still registered (live).
        let Some(stream) = (unsafe { stream(module) }) else {
            return Vec::new();
        };
        let Ok(mut request) = stream.request.try_borrow_mut() else {
            return Vec::new();
        };
        let mut headers: Vec<(String, String)> =
            request.take_response_header().into_iter().collect();
        if let Some(Some(trace)) = request.take_trace_header(&stream.worker.stages) {
            headers.push((TRACE_HEADER.to_string(), trace));
        }
        headers
    });
}

/// A stage's flow as a request status (`StopIteration`, or `StopIterationAndBuffer` for a
/// body: both are 1).
fn status(flow: Flow) -> u32 {
    match flow {
        Flow::Continue => STATUS_CONTINUE,
        Flow::Pause => STATUS_STOP,
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    crate::logger::init();
    ABI_VERSION_C.as_ptr().cast()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    config_envoy: *mut c_void,
    _name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> *const c_void {
    crate::logger::init();
    // SAFETY: Envoy's configuration bytes, valid for this hook; copied before it returns.
    let bytes = unsafe { hook_bytes(config.ptr, config.length) }.to_vec();
    guarded("configuration", std::ptr::null(), || {
        configure(envoy::Config(config_envoy), bytes)
    })
}

/// Validates the configuration and defines its metrics (main thread). Null refuses it:
/// Envoy fails to start, or NACKs an update keeping the previous configuration.
fn configure(config: envoy::Config, bytes: Vec<u8>) -> *const c_void {
    // An absent configuration means "the empty object", as for the wasm module.
    let json = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}".to_vec()
    } else {
        bytes
    };
    let suite = match Suite::from_json(&json) {
        Ok(suite) => suite,
        Err(err) => {
            log::error!("weft-{SUITE_MODULE}: {err}");
            return std::ptr::null();
        }
    };
    let enabled = suite.enabled();
    // The stages define their metrics (and seed the breaker's shared records) on a core
    // that only records; these stages are dropped, each worker builds its own.
    let definer = Core::defining(config);
    drop(Stages::new(suite, definer.root_id, &NativeHost(&definer)));
    let shared = Arc::new(ConfigShared {
        envoy: config,
        json,
        metrics: definer.definitions(),
        alive: AtomicBool::new(true),
    });
    log::info!(
        "weft-suite (native): configured, stages [{}]",
        enabled.join(", ")
    );
    Box::into_raw(Box::new(shared)).cast_const().cast()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(config: *const c_void) {
    if config.is_null() {
        return;
    }
    // SAFETY: the `Box<Arc<ConfigShared>>` `configure` leaked; Envoy destroys it once, after
    // its last stream.
    let shared = unsafe { Box::from_raw(config.cast::<Arc<ConfigShared>>().cast_mut()) };
    shared.alive.store(false, Ordering::Release);
}

/// This worker's stages for `config`, built on its first stream; drops those of destroyed
/// configurations on the way.
fn worker_for(config: &Arc<ConfigShared>) -> Option<Rc<Worker>> {
    WORKERS.with(|workers| {
        let mut workers = workers.borrow_mut();
        workers.retain(|w| {
            let live = w
                .core
                .config()
                .is_some_and(|c| c.alive.load(Ordering::Acquire));
            if !live {
                w.core.shutdown();
            }
            live
        });
        if let Some(found) = workers
            .iter()
            .find(|w| w.core.config().is_some_and(|c| Arc::ptr_eq(c, config)))
        {
            return Some(Rc::clone(found));
        }
        let suite = match Suite::from_json(&config.json) {
            Ok(suite) => suite,
            Err(err) => {
                log::error!("weft-{SUITE_MODULE}: {err}");
                return None;
            }
        };
        let core = Core::worker(Arc::clone(config));
        let host = NativeHost(&core);
        let stages = Stages::new(suite, core.root_id, &host);
        let mut ticks = Ticks::default();
        ticks.configure(&host, &stages);
        let worker = Rc::new(Worker {
            core,
            stages,
            ticks: RefCell::new(ticks),
        });
        workers.push(Rc::clone(&worker));
        Some(worker)
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: *const c_void,
    filter: *mut c_void,
) -> *const c_void {
    guarded("stream creation", std::ptr::null(), || {
        // SAFETY: the configuration pointer `configure` returned, alive while its streams are.
        let Some(config) = (unsafe { config.cast::<Arc<ConfigShared>>().as_ref() }) else {
            return std::ptr::null();
        };
        let Some(worker) = worker_for(config) else {
            return std::ptr::null();
        };
        let id = worker.core.register(envoy::Filter(filter));
        let stream = StreamFilter {
            request: RefCell::new(SuiteRequest::new(id)),
            worker,
            id,
            done: Cell::new(false),
        };
        let worker = Rc::clone(&stream.worker);
        let module: *const c_void = Box::into_raw(Box::new(stream)).cast_const().cast();
        worker.core.set_module(id, module);
        module
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    filter: *mut c_void,
    module: *const c_void,
    end_of_stream: bool,
) -> u32 {
    // A tick that came due with no stream to wake the worker runs at its next request.
    // SAFETY: as in `as_stream`: the pointer `filter_new` returned for this stream.
    if let Some(stream) = unsafe { stream(module) } {
        if stream.worker.core.take_due() {
            run_tick(&stream.worker, stream.id);
        }
    }
    as_stream(filter, module, "request headers", fail_closed, |s, host| {
        let Ok(mut request) = s.request.try_borrow_mut() else {
            return STATUS_CONTINUE;
        };
        let flow = request.on_request_headers(&s.worker.stages, host, end_of_stream);
        if flow == Flow::Pause {
            s.worker.core.set_held(s.id, true);
        }
        status(flow)
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    filter: *mut c_void,
    module: *const c_void,
    end_of_stream: bool,
) -> u32 {
    as_stream(filter, module, "request body", go_on, |s, host| {
        // A held request keeps its body too (StopIterationAndBuffer) until the tick resumes it.
        if s.worker.core.is_held(s.id) {
            return STATUS_STOP;
        }
        let Ok(mut request) = s.request.try_borrow_mut() else {
            return STATUS_CONTINUE;
        };
        let size = envoy::Filter(filter).received_request_body_size();
        // Pause: the WAF holds the body to judge it whole, or refused it.
        status(request.on_request_body(&s.worker.stages, host, size, end_of_stream))
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    filter: *mut c_void,
    module: *const c_void,
) -> u32 {
    as_stream(filter, module, "request trailers", go_on, |s, host| {
        let Ok(mut request) = s.request.try_borrow_mut() else {
            return STATUS_CONTINUE;
        };
        status(request.on_request_trailers(&s.worker.stages, host))
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    filter: *mut c_void,
    module: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    as_stream(filter, module, "response headers", go_on, |s, _| {
        let Ok(mut request) = s.request.try_borrow_mut() else {
            return STATUS_CONTINUE;
        };
        let filter = envoy::Filter(filter);
        if let Some((name, version)) = request.take_response_header() {
            filter.set_header(abi::HEADER_RESPONSE, &name, Some(&version));
        }
        if let Some(trace) = request.take_trace_header(&s.worker.stages) {
            filter.set_header(abi::HEADER_RESPONSE, TRACE_HEADER, trace.as_deref());
        }
        STATUS_CONTINUE
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    _filter: *mut c_void,
    _module: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    STATUS_CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    _filter: *mut c_void,
    _module: *const c_void,
) -> u32 {
    STATUS_CONTINUE
}

/// proxy-wasm's `on_done` (a delayed request whose client left is released), then `on_log`.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    filter: *mut c_void,
    module: *const c_void,
) {
    as_stream(
        filter,
        module,
        "stream completion",
        |_| (),
        |s, host| {
            if let Ok(mut request) = s.request.try_borrow_mut() {
                if !s.done.replace(true) {
                    request.on_done(&s.worker.stages, host);
                }
                request.on_log(&s.worker.stages, host);
            }
        },
    );
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_destroy(module: *const c_void) {
    if module.is_null() {
        return;
    }
    // SAFETY: the `Box<StreamFilter>` `filter_new` leaked; Envoy destroys it once and calls
    // nothing with it afterwards.
    let stream = unsafe { Box::from_raw(module.cast::<StreamFilter>().cast_mut()) };
    guarded("stream destruction", (), || {
        let core = &stream.worker.core;
        if !stream.done.replace(true) {
            // No stream_complete (a stream torn down early): release a held request.
            let saved = core.enter_root(stream.id);
            if let Ok(request) = stream.request.try_borrow() {
                request.on_done(&stream.worker.stages, &NativeHost(core));
            }
            send_replies(core);
            core.leave(saved);
        }
        core.forget(stream.id);
    });
}

/// A tick event from the timer thread, delivered through the carrier stream's scheduler.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    _filter: *mut c_void,
    module: *const c_void,
    event_id: u64,
) {
    if event_id != TICK_EVENT {
        return;
    }
    // SAFETY: a live stream's module pointer (Envoy drops events of destroyed streams).
    let Some(stream) = (unsafe { stream(module) }) else {
        return;
    };
    if stream.worker.core.take_due() {
        run_tick(&stream.worker, stream.id);
    }
}

/// The root's `on_tick`, from stream `carrier`'s hook: the tick's due work, acting as the
/// root (and as the streams it resumes).
fn run_tick(worker: &Rc<Worker>, carrier: u32) {
    let worker = Rc::clone(worker);
    let core = &worker.core;
    let saved = core.enter_root(carrier);
    guarded("tick", (), || {
        if let Ok(mut ticks) = worker.ticks.try_borrow_mut() {
            ticks.on_tick(&NativeHost(core), &worker.stages, crate::host::now_millis());
        }
    });
    send_replies(core);
    core.leave(saved);
}

#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    _filter: *mut c_void,
    module: *const c_void,
    callout_id: u64,
    result: u32,
    headers: *const EnvoyHttpHeader,
    headers_size: usize,
    _body_chunks: *const EnvoyBuffer,
    _body_chunks_size: usize,
) {
    // SAFETY: a live stream's module pointer.
    let Some(stream) = (unsafe { stream(module) }) else {
        return;
    };
    let status = if result == abi::CALLOUT_SUCCESS {
        // SAFETY: Envoy's header array for this hook, `headers_size` entries (or null).
        status_of(unsafe { hook_headers(headers, headers_size) })
    } else {
        None
    };
    let worker = Rc::clone(&stream.worker);
    let core = &worker.core;
    if !core.callout_answered(callout_id, status) {
        return;
    }
    let saved = core.enter_root(stream.id);
    guarded("callout answer", (), || {
        let token = u32::try_from(callout_id).unwrap_or(u32::MAX);
        worker
            .stages
            .on_http_call_response(&NativeHost(core), token);
    });
    core.leave(saved);
}

/// Borrows the response headers Envoy passed to a hook.
///
/// # Safety
/// `headers` must point to `size` headers valid for the hook (or be null).
unsafe fn hook_headers<'a>(headers: *const EnvoyHttpHeader, size: usize) -> &'a [EnvoyHttpHeader] {
    if headers.is_null() || size == 0 {
        return &[];
    }
    // SAFETY: per the contract.
    unsafe { std::slice::from_raw_parts(headers, size) }
}

fn status_of(headers: &[EnvoyHttpHeader]) -> Option<u16> {
    headers.iter().find_map(|h| {
        // SAFETY: Envoy's header bytes, valid for the hook.
        let key = unsafe { hook_bytes(h.key_ptr, h.key_length) };
        if key != b":status" {
            return None;
        }
        // SAFETY: as above.
        let value = unsafe { hook_bytes(h.value_ptr, h.value_length) };
        std::str::from_utf8(value).ok()?.parse().ok()
    })
}

/// Per-route configuration is not supported: refused (null), so Envoy rejects it.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_new(
    _name: EnvoyBuffer,
    _config: EnvoyBuffer,
) -> *const c_void {
    log::error!("weft-suite: per-route configuration is not supported");
    std::ptr::null()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_destroy(
    _config: *const c_void,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    _config_envoy: *mut c_void,
    _config: *const c_void,
    _event_id: u64,
) {
}

/// Envoy's `onLocalReply`: nothing to change (`Continue`).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_local_reply(
    _filter: *mut c_void,
    _module: *const c_void,
    _response_code: u32,
    _details: EnvoyBuffer,
    _reset_imminent: bool,
) -> u32 {
    0
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _filter: *mut c_void,
    _module: *const c_void,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _filter: *mut c_void,
    _module: *const c_void,
) {
}

// Streamed callouts (never started by weft): the hooks exist because Envoy resolves them.

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _filter: *mut c_void,
    _module: *const c_void,
    _stream_id: u64,
    _headers: *const EnvoyHttpHeader,
    _headers_size: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _filter: *mut c_void,
    _module: *const c_void,
    _stream_id: u64,
    _data: *const EnvoyBuffer,
    _data_count: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _filter: *mut c_void,
    _module: *const c_void,
    _stream_id: u64,
    _trailers: *const EnvoyHttpHeader,
    _trailers_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _filter: *mut c_void,
    _module: *const c_void,
    _stream_id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _filter: *mut c_void,
    _module: *const c_void,
    _stream_id: u64,
    _reason: u32,
) {
}

#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_callout_done(
    _config_envoy: *mut c_void,
    _config: *const c_void,
    _callout_id: u64,
    _result: u32,
    _headers: *const EnvoyHttpHeader,
    _headers_size: usize,
    _body_chunks: *const EnvoyBuffer,
    _body_chunks_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_headers(
    _config_envoy: *mut c_void,
    _config: *const c_void,
    _stream_id: u64,
    _headers: *const EnvoyHttpHeader,
    _headers_size: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_data(
    _config_envoy: *mut c_void,
    _config: *const c_void,
    _stream_id: u64,
    _data: *const EnvoyBuffer,
    _data_count: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_trailers(
    _config_envoy: *mut c_void,
    _config: *const c_void,
    _stream_id: u64,
    _trailers: *const EnvoyHttpHeader,
    _trailers_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_complete(
    _config_envoy: *mut c_void,
    _config: *const c_void,
    _stream_id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_reset(
    _config_envoy: *mut c_void,
    _config: *const c_void,
    _stream_id: u64,
    _reason: u32,
) {
}
