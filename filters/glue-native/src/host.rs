//! The stages' [`Host`] over the dynamic-module ABI: [`Core`] is one worker's view of one
//! configuration (its live filters, the "effective context", the tick), [`NativeHost`] the
//! trait implementation the unchanged stages call.
//!
//! proxy-wasm semantics are kept where the stages rely on them: context ids (a root per
//! worker, one id per stream), `set_effective_context` to act as another stream of the same
//! worker (the fault stage resuming a delayed request from the tick), the root's tick, and
//! shared-data records with CAS (here ordinary process memory, [`crate::shared`]).

use crate::abi;
use crate::envoy::{self, MetricKind as Kind, Scheduler};
use crate::hash::IdHasher;
use crate::timer;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use weft_filter_core::host::{HostError, MetricId, MetricKind, SharedRecord};
use weft_filter_core::{Host, RequestAttributes};

/// One metric defined in `on_http_filter_config_new`.
#[derive(Debug, Clone)]
pub struct MetricDef {
    pub name: String,
    pub kind: Kind,
    pub id: usize,
}

/// A configuration as every worker shares it (behind `Arc`; the stages themselves are
/// per worker, built from `json`).
#[derive(Debug)]
pub struct ConfigShared {
    pub envoy: envoy::Config,
    /// The configuration as accepted on the main thread (whitespace-only became `{}`).
    pub json: Vec<u8>,
    /// Metric ids by [`MetricId`] (the index).
    pub metrics: Vec<MetricDef>,
    /// False once Envoy destroyed the configuration: workers drop their stages for it.
    pub alive: AtomicBool,
}

/// Where metric definitions go.
#[derive(Debug)]
pub enum Metrics {
    /// In `on_http_filter_config_new` (main thread): defined in Envoy and remembered.
    Defining(envoy::Config, RefCell<Vec<MetricDef>>),
    /// On a worker: only what the main thread defined.
    Defined(Arc<ConfigShared>),
}

/// The live streams of one worker, by context id.
type Streams = HashMap<u32, Stream, BuildHasherDefault<IdHasher>>;

/// Which context the stages act as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effective {
    Root,
    Stream(u32, envoy::Filter),
}

/// A live stream of this worker.
#[derive(Debug)]
pub struct Stream {
    pub filter: envoy::Filter,
    /// The module's own pointer for the stream (set once `filter_new` made it).
    pub module: *const std::ffi::c_void,
    pub started: Instant,
    /// Its request headers were held (a delay): body chunks wait too.
    pub held: bool,
}

#[derive(Debug, Default)]
struct Tick {
    period: Option<Duration>,
    /// A stream holding a delayed request whose scheduler wakes the worker for the tick, and
    /// that scheduler. Without one the tick runs at the worker's next request.
    carrier: Option<(u32, Scheduler)>,
    /// Set by the timer thread when a tick is due.
    due: Arc<AtomicBool>,
}

/// One worker's state for one configuration.
#[derive(Debug)]
pub struct Core {
    metrics: Metrics,
    pub root_id: u32,
    /// This worker's entry in the tick timer.
    key: u64,
    effective: Cell<Effective>,
    /// The stream whose hook is running (a tick carrier when the root arms the tick).
    hook: Cell<Option<u32>>,
    streams: RefCell<Streams>,
    tick: RefCell<Tick>,
    callout_status: Cell<Option<u16>>,
    /// Callouts the root started (their answers go to the stages' root handler).
    root_callouts: RefCell<Vec<u64>>,
    /// Local replies the stages asked for, sent when their hook's stage call returned
    /// (see [`Core::send_replies`]).
    replies: RefCell<Vec<Reply>>,
    next_id: Cell<u32>,
}

/// A local reply waiting for its stage call to return.
#[derive(Debug)]
struct Reply {
    stream: u32,
    filter: envoy::Filter,
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

/// What a hook saved before acting as its stream; [`Core::leave`] restores it.
#[derive(Debug, Clone, Copy)]
pub struct Saved(Effective, Option<u32>);

const ROOT_ID: u32 = 1;

// === impl Core ===

impl Core {
    /// The main thread's core for defining metrics while the configuration is created.
    pub fn defining(config: envoy::Config) -> Self {
        Self::new(Metrics::Defining(config, RefCell::new(Vec::new())))
    }

    /// A worker's core for `config`.
    pub fn worker(config: Arc<ConfigShared>) -> Self {
        Self::new(Metrics::Defined(config))
    }

    fn new(metrics: Metrics) -> Self {
        static KEYS: AtomicU64 = AtomicU64::new(1);
        Self {
            metrics,
            root_id: ROOT_ID,
            key: KEYS.fetch_add(1, Ordering::Relaxed),
            effective: Cell::new(Effective::Root),
            hook: Cell::new(None),
            streams: RefCell::new(Streams::default()),
            tick: RefCell::new(Tick::default()),
            callout_status: Cell::new(None),
            root_callouts: RefCell::new(Vec::new()),
            replies: RefCell::new(Vec::new()),
            next_id: Cell::new(ROOT_ID + 1),
        }
    }

    /// The metrics defined so far (main thread).
    pub fn definitions(&self) -> Vec<MetricDef> {
        match &self.metrics {
            Metrics::Defining(_, defs) => defs.borrow().clone(),
            Metrics::Defined(config) => config.metrics.clone(),
        }
    }

    pub fn config(&self) -> Option<&Arc<ConfigShared>> {
        match &self.metrics {
            Metrics::Defined(config) => Some(config),
            Metrics::Defining(..) => None,
        }
    }

    fn envoy_config(&self) -> envoy::Config {
        match &self.metrics {
            Metrics::Defining(config, _) => *config,
            Metrics::Defined(config) => config.envoy,
        }
    }

    /// A new stream of this worker: its context id. If the root wants ticks and nothing
    /// carries them, this stream does.
    pub fn register(&self, filter: envoy::Filter) -> u32 {
        let id = self.next_id.get();
        self.next_id.set(id.wrapping_add(1).max(ROOT_ID + 1));
        self.streams.borrow_mut().insert(
            id,
            Stream {
                filter,
                module: std::ptr::null(),
                started: Instant::now(),
                held: false,
            },
        );
        id
    }

    /// The stream is gone: forget it, and hand the tick's wake-up to another held stream if
    /// it carried it.
    pub fn forget(&self, id: u32) {
        self.streams.borrow_mut().remove(&id);
        let carried = matches!(self.tick.borrow().carrier, Some((c, _)) if c == id);
        if carried {
            self.drop_carrier();
            let held = self
                .streams
                .borrow()
                .iter()
                .find_map(|(id, s)| s.held.then_some(*id));
            if self.tick.borrow().period.is_some() {
                self.carry_tick(held);
            }
        }
    }

    /// Whether a tick came due since the last call (the timer thread marks it).
    pub fn take_due(&self) -> bool {
        let tick = self.tick.borrow();
        tick.period.is_some() && tick.due.swap(false, Ordering::AcqRel)
    }

    /// Acts as stream `id` (whose hook is running) until [`leave`](Self::leave).
    pub fn enter(&self, id: u32, filter: envoy::Filter) -> Saved {
        let saved = Saved(self.effective.get(), self.hook.get());
        self.effective.set(Effective::Stream(id, filter));
        self.hook.set(Some(id));
        saved
    }

    /// Acts as the root, from stream `carrier`'s hook (a tick or a callout answer).
    pub fn enter_root(&self, carrier: u32) -> Saved {
        let saved = Saved(self.effective.get(), self.hook.get());
        self.effective.set(Effective::Root);
        self.hook.set(Some(carrier));
        saved
    }

    pub fn leave(&self, saved: Saved) {
        self.effective.set(saved.0);
        self.hook.set(saved.1);
    }

    /// Sends the local replies the stage call that just returned asked for.
    ///
    /// Envoy runs a local reply through the stream's response hooks at once, inside the call;
    /// proxy-wasm defers it to the end of the callback. Deferring here too keeps the wasm
    /// order (the canary's cohort header is added to a fault abort) and never re-enters a
    /// stream whose request state is still borrowed.
    ///
    /// Envoy does not run a module's own local reply through its response hook, so
    /// `extra_headers(stream)` supplies what that hook would have added.
    pub fn send_replies(&self, extra_headers: impl Fn(u32) -> Vec<(String, String)>) {
        let replies = std::mem::take(&mut *self.replies.borrow_mut());
        for mut reply in replies {
            reply.headers.extend(extra_headers(reply.stream));
            reply
                .filter
                .send_response(reply.status, &reply.headers, &reply.body);
        }
    }

    /// Records the module pointer of stream `id`.
    pub fn set_module(&self, id: u32, module: *const std::ffi::c_void) {
        if let Some(stream) = self.streams.borrow_mut().get_mut(&id) {
            stream.module = module;
        }
    }

    /// The module pointer of live stream `id`.
    pub fn module_of(&self, id: u32) -> Option<*const std::ffi::c_void> {
        self.streams.borrow().get(&id).map(|s| s.module)
    }

    pub fn set_held(&self, id: u32, held: bool) {
        if let Some(stream) = self.streams.borrow_mut().get_mut(&id) {
            stream.held = held;
        }
    }

    pub fn is_held(&self, id: u32) -> bool {
        self.streams.borrow().get(&id).is_some_and(|s| s.held)
    }

    /// An answer to callout `id` arrived with `status`: whether the root started it.
    pub fn callout_answered(&self, id: u64, status: Option<u16>) -> bool {
        self.callout_status.set(status);
        let mut root = self.root_callouts.borrow_mut();
        match root.iter().position(|c| *c == id) {
            Some(at) => {
                root.swap_remove(at);
                true
            }
            None => false,
        }
    }

    fn stream_filter(&self) -> Option<envoy::Filter> {
        match self.effective.get() {
            Effective::Stream(_, filter) => Some(filter),
            Effective::Root => None,
        }
    }

    /// The stream to act through for a root action that needs one (a callout, a scheduler).
    fn carrier_filter(&self) -> Option<envoy::Filter> {
        self.stream_filter().or_else(|| {
            let id = self.hook.get()?;
            self.streams.borrow().get(&id).map(|s| s.filter)
        })
    }

    /// Makes stream `id` (if any) wake the worker for its ticks.
    fn carry_tick(&self, id: Option<u32>) {
        let Some(id) = id else { return };
        let Some(filter) = self.streams.borrow().get(&id).map(|s| s.filter) else {
            return;
        };
        let scheduler = filter.new_scheduler();
        if let Some(old) = timer::set_scheduler(self.key, Some(scheduler)) {
            old.delete();
        }
        self.tick.borrow_mut().carrier = Some((id, scheduler));
    }

    fn drop_carrier(&self) {
        let carrier = self.tick.borrow_mut().carrier.take();
        if carrier.is_some() {
            // Out of the timer first: after this it never commits to the scheduler.
            if let Some(scheduler) = timer::set_scheduler(self.key, None) {
                scheduler.delete();
            }
        }
    }

    /// The root's tick period. Arming it from a stream's hook (the fault stage holding that
    /// stream's request) makes that stream wake the worker; otherwise ticks run at requests.
    fn set_tick(&self, period: Duration) {
        if matches!(self.metrics, Metrics::Defining(..)) {
            return;
        }
        if period.is_zero() {
            self.tick.borrow_mut().period = None;
            self.drop_carrier();
            if let Some(scheduler) = timer::disarm(self.key) {
                scheduler.delete();
            }
            return;
        }
        let due = {
            let mut tick = self.tick.borrow_mut();
            tick.period = Some(period);
            Arc::clone(&tick.due)
        };
        if !timer::arm(self.key, period, &due) {
            return;
        }
        let has_carrier = self.tick.borrow().carrier.is_some();
        if !has_carrier && self.effective.get() == Effective::Root {
            // Armed by the root acting for a stream's hook: the fault stage's pause.
            if let Some(hook) = self.hook.get() {
                if self.streams.borrow().contains_key(&hook) {
                    self.carry_tick(Some(hook));
                }
            }
        }
    }

    /// The worker goes away (its configuration was destroyed): no more ticks.
    pub fn shutdown(&self) {
        self.tick.borrow_mut().period = None;
        self.drop_carrier();
        if let Some(scheduler) = timer::disarm(self.key) {
            scheduler.delete();
        }
    }

    fn define(&self, kind: Kind, name: &str) -> Result<MetricId, HostError> {
        let position = |defs: &[MetricDef]| {
            defs.iter()
                .position(|d| d.name == name && d.kind == kind)
                .and_then(|i| MetricId::try_from(i).ok())
        };
        match &self.metrics {
            Metrics::Defined(config) => position(&config.metrics).ok_or_else(|| {
                log::debug!("weft-suite: metric {name} was not defined at configuration");
                HostError::Refused("metric not defined at configuration".into())
            }),
            Metrics::Defining(config, defs) => {
                if let Some(id) = position(&defs.borrow()) {
                    return Ok(id);
                }
                let Some(envoy_id) = config.define(kind, name) else {
                    log::warn!("weft-suite: cannot define metric {name}");
                    return Err(HostError::Refused("define refused".into()));
                };
                let mut defs = defs.borrow_mut();
                defs.push(MetricDef {
                    name: name.to_string(),
                    kind,
                    id: envoy_id,
                });
                MetricId::try_from(defs.len() - 1)
                    .map_err(|_| HostError::Refused("too many metrics".into()))
            }
        }
    }

    fn metric(&self, id: MetricId) -> Option<(Kind, usize)> {
        let index = usize::try_from(id).ok()?;
        match &self.metrics {
            Metrics::Defined(config) => config.metrics.get(index).map(|d| (d.kind, d.id)),
            Metrics::Defining(_, defs) => defs.borrow().get(index).map(|d| (d.kind, d.id)),
        }
    }
}

/// The stages' host: the worker's core, acting as its effective context.
#[derive(Debug, Clone, Copy)]
pub struct NativeHost<'a>(pub &'a Core);

impl NativeHost<'_> {
    fn request_header(&self, name: &str) -> Option<String> {
        self.0.stream_filter()?.header(abi::HEADER_REQUEST, name)
    }
}

impl RequestAttributes for NativeHost<'_> {
    fn method(&self) -> Option<String> {
        self.request_header(":method")
    }

    fn path(&self) -> Option<String> {
        self.request_header(":path")
    }

    fn header(&self, name: &str) -> Option<String> {
        self.request_header(name)
    }

    fn header_values(&self, name: &str) -> Vec<String> {
        self.0
            .stream_filter()
            .map(|f| f.header_values(abi::HEADER_REQUEST, name))
            .unwrap_or_default()
    }

    fn header_map(&self) -> Option<Vec<(String, String)>> {
        Some(self.0.stream_filter()?.headers(abi::HEADER_REQUEST))
    }

    /// `source.address`: the downstream remote address (the socket peer on weft's listeners,
    /// `use_remote_address: true` with no trusted hops), as in the wasm glue.
    fn source_address(&self) -> Option<String> {
        self.0
            .stream_filter()?
            .attribute_string(abi::ATTR_SOURCE_ADDRESS)
    }

    fn peer_principal(&self) -> Option<String> {
        self.0
            .stream_filter()?
            .attribute_string(abi::ATTR_CONNECTION_URI_SAN_PEER_CERTIFICATE)
            .filter(|s| !s.is_empty())
    }
}

/// The filter state key of property `name`: `wasm.<name>`, as the wasm filters' properties
/// are named (built without the formatting machinery: it runs on every breaker mark).
fn state_key(name: &str) -> String {
    let mut key = String::with_capacity(5 + name.len());
    key.push_str("wasm.");
    key.push_str(name);
    key
}

/// Milliseconds since the Unix epoch (the process clock is the host clock here).
pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Host for NativeHost<'_> {
    fn now_millis(&self) -> u64 {
        now_millis()
    }

    fn seed(&self, context_id: u32) -> u64 {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        (u64::from(nanos) << 32) ^ u64::from(context_id) ^ now_millis().rotate_left(17) ^ self.0.key
    }

    /// The properties the stages read, from the ABI's attributes, headers and filter state.
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        let core = self.0;
        let filter = core.stream_filter()?;
        let int = |v: u64| Some(v.to_le_bytes().to_vec());
        match path {
            ["response", "code"] => filter
                .header_u64(abi::HEADER_RESPONSE, ":status")
                .and_then(int),
            ["response", "flags"] => filter.attribute_int(abi::ATTR_RESPONSE_FLAGS).and_then(int),
            ["request", "duration"] => {
                let Effective::Stream(id, _) = core.effective.get() else {
                    return None;
                };
                let started = core.streams.borrow().get(&id).map(|s| s.started)?;
                int(u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX))
            }
            ["xds", "cluster_name"] => filter
                .attribute_string(abi::ATTR_XDS_CLUSTER_NAME)
                .map(String::into_bytes),
            ["source", "address"] => filter
                .attribute_string(abi::ATTR_SOURCE_ADDRESS)
                .map(String::into_bytes),
            [name] => filter.filter_state(&state_key(name)),
            _ => None,
        }
    }

    /// Filter state `wasm.<name>`, the key the wasm filters' properties have, so the access
    /// log's `%FILTER_STATE(wasm.weft_decision:PLAIN)%` reads both.
    fn set_property(&self, name: &str, value: &[u8]) {
        if let Some(filter) = self.0.stream_filter() {
            if !filter.set_filter_state(&state_key(name), value) {
                log::debug!("weft: cannot set filter state wasm.{name}");
            }
        }
    }

    fn set_request_header(&self, name: &str, value: Option<&str>) {
        if let Some(filter) = self.0.stream_filter() {
            if !filter.set_header(abi::HEADER_REQUEST, name, value) {
                log::warn!("weft: cannot set request header {name}");
            }
            filter.clear_route_cache();
        }
    }

    fn add_request_header(&self, name: &str, value: &str) {
        if let Some(filter) = self.0.stream_filter() {
            if !filter.add_header(abi::HEADER_REQUEST, name, value) {
                log::warn!("weft: cannot add request header {name}");
            }
            filter.clear_route_cache();
        }
    }

    fn request_headers(&self) -> Vec<(String, String)> {
        self.0
            .stream_filter()
            .map(|f| f.headers(abi::HEADER_REQUEST))
            .unwrap_or_default()
    }

    /// The body so far: what earlier chunks left buffered (a stage held them) and the chunk
    /// this hook received, as proxy-wasm's request body buffer holds them.
    fn request_body(&self, size: usize) -> Vec<u8> {
        let Some(filter) = self.0.stream_filter() else {
            return Vec::new();
        };
        let received = filter.received_request_body();
        let mut body = if received.len() < size {
            filter.buffered_request_body()
        } else {
            Vec::new()
        };
        body.extend(received);
        body.truncate(size);
        body
    }

    fn response_header(&self, name: &str) -> Option<String> {
        self.0.stream_filter()?.header(abi::HEADER_RESPONSE, name)
    }

    fn send_local_reply(&self, status: u16, headers: &[(String, String)], body: &str) {
        match self.0.effective.get() {
            Effective::Stream(stream, filter) => self.0.replies.borrow_mut().push(Reply {
                stream,
                filter,
                status,
                headers: headers.to_vec(),
                body: body.to_string(),
            }),
            Effective::Root => log::error!("weft: local reply {status} with no stream to answer"),
        }
    }

    fn define_metric(&self, kind: MetricKind, name: &str) -> Result<MetricId, HostError> {
        let kind = match kind {
            MetricKind::Counter => Kind::Counter,
            MetricKind::Gauge => Kind::Gauge,
            MetricKind::Histogram => Kind::Histogram,
        };
        self.0.define(kind, name)
    }

    fn increment_metric(&self, id: MetricId, delta: i64) {
        let config = self.0.envoy_config();
        match self.0.metric(id) {
            Some((Kind::Counter, envoy_id)) if delta > 0 => {
                config.increment_counter(envoy_id, delta.unsigned_abs());
            }
            Some((Kind::Gauge, envoy_id)) => config.add_gauge(envoy_id, delta),
            _ => {}
        }
    }

    fn record_metric(&self, id: MetricId, value: u64) {
        let config = self.0.envoy_config();
        match self.0.metric(id) {
            Some((Kind::Gauge, envoy_id)) => config.set_gauge(envoy_id, value),
            Some((Kind::Histogram, envoy_id)) => config.record_histogram(envoy_id, value),
            _ => {}
        }
    }

    fn shared_get(&self, key: &str) -> Result<SharedRecord, HostError> {
        Ok(crate::shared::get(key))
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        crate::shared::set(key, value, cas)
    }

    fn dispatch_http_call(
        &self,
        upstream: &str,
        headers: &[(String, String)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, HostError> {
        let core = self.0;
        let filter = core
            .carrier_filter()
            .ok_or_else(|| HostError::Refused("no stream to carry the callout".into()))?;
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let id = filter
            .http_callout(upstream, headers, body, timeout_ms)
            .map_err(|result| HostError::Refused(format!("callout init result {result}")))?;
        if core.effective.get() == Effective::Root {
            core.root_callouts.borrow_mut().push(id);
        }
        // Tokens are u32 in the trait; Envoy's ids count up from 1 per stream.
        Ok(u32::try_from(id).unwrap_or(u32::MAX))
    }

    fn http_call_response_status(&self) -> Option<u16> {
        self.0.callout_status.get()
    }

    fn set_tick_period(&self, period: Duration) -> Result<(), HostError> {
        self.0.set_tick(period);
        Ok(())
    }

    fn set_effective_context(&self, context_id: u32) -> Result<(), HostError> {
        let core = self.0;
        if context_id == core.root_id {
            core.effective.set(Effective::Root);
            return Ok(());
        }
        let filter = core
            .streams
            .borrow()
            .get(&context_id)
            .map(|s| s.filter)
            .ok_or(HostError::NotFound)?;
        core.effective.set(Effective::Stream(context_id, filter));
        Ok(())
    }

    fn resume_http_request(&self) -> Result<(), HostError> {
        let core = self.0;
        let Effective::Stream(id, filter) = core.effective.get() else {
            return Err(HostError::NotFound);
        };
        core.set_held(id, false);
        filter.continue_decoding();
        Ok(())
    }
}
