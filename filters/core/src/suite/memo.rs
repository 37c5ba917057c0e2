//! One request as all the stages of the combined module see it: each attribute and property
//! read from the host at most once per callback, and a header a stage wrote visible to the
//! later stages without a read.

use crate::host::{Host, HostError, MetricId, MetricKind, SharedRecord};
use crate::telemetry::{BREAKER_PROPERTY, FAULT_PROPERTY, WAF_PROPERTY};
use crate::RequestAttributes;
use std::cell::RefCell;
use std::time::Duration;

/// Wraps the host's view of the current request (`R`) for the span of one callback.
///
/// Stages that write a request header report it with [`note_header`](Self::note_header)
/// after writing it to the host, so a later stage (the breaker reading the canary's cluster
/// header) gets the new value without asking the host again.
/// The stream properties only the telemetry stage reads (the other stages' marks).
pub const MARK_PROPERTIES: [&str; 3] = [FAULT_PROPERTY, BREAKER_PROPERTY, WAF_PROPERTY];

/// One attribute: `None` until read, then what the host gave.
type Slot = RefCell<Option<Option<String>>>;

/// The slot's value, reading it with `read` the first time.
fn cached(slot: &Slot, read: impl FnOnce() -> Option<String>) -> Option<String> {
    if let Some(value) = &*slot.borrow() {
        return value.clone();
    }
    let value = read();
    *slot.borrow_mut() = Some(value.clone());
    value
}

/// What a request's view learned in one callback and hands to the next: the pseudo-headers
/// and the peer's identity and addresses, which do not change during a request, so `on_log`
/// (telemetry) does not read them from the host again; and the stream properties the stages
/// wrote (the marks telemetry reads back in `on_log`).
#[derive(Debug, Default)]
pub struct Carried {
    method: Option<Option<String>>,
    path: Option<Option<String>>,
    authority: Option<Option<String>>,
    source_address: Option<Option<String>>,
    remote_address: Option<Option<String>>,
    peer_principal: Option<Option<String>>,
    written: Vec<(String, Vec<u8>)>,
    marks_in_memory: bool,
}

/// Whether property `key` (a path joined with `.`) comes from the route Envoy chose, or
/// from its cluster: `xds.cluster_name`, `xds.route_name`, their metadata, the upstream host's.
pub(super) fn is_route_derived(key: &str) -> bool {
    matches!(
        key,
        "route_name"
            | "route_metadata"
            | "cluster_name"
            | "cluster_metadata"
            | "upstream_host_metadata"
    ) || key.strip_prefix("xds.").is_some_and(|rest| {
        rest.starts_with("route") || rest.starts_with("cluster") || rest.starts_with("upstream")
    })
}

/// Whether `key` (a property path joined with `.`) is `path`, without joining `path`.
pub(super) fn is_path(key: &str, path: &[&str]) -> bool {
    let mut rest = key;
    for (i, segment) in path.iter().enumerate() {
        if i > 0 {
            match rest.strip_prefix('.') {
                Some(after) => rest = after,
                None => return false,
            }
        }
        match rest.strip_prefix(segment) {
            Some(after) => rest = after,
            None => return false,
        }
    }
    rest.is_empty()
}

#[derive(Debug)]
pub struct MemoRequest<R> {
    inner: R,
    method: Slot,
    path: Slot,
    authority: Slot,
    source_address: Slot,
    peer_principal: Slot,
    /// Other headers read (or written) so far, by lower-case name, and whether the value is
    /// every copy there is (`true` after this view set or removed the header: the host then
    /// has exactly that one copy, or none). The pseudo-headers every stage asks for have
    /// their own cells: no name to copy, no list to search.
    headers: RefCell<Vec<(String, Option<String>, bool)>>,
    /// Every copy of the headers read with `header_values` (authz's header conditions).
    header_lists: RefCell<Vec<(String, Vec<String>)>>,
    /// The host's whole header map, read at most once (on the first `header_values` of a name
    /// not in `header_lists`) when the host can list it; dropped when a header is added.
    header_map: RefCell<Option<Vec<(String, String)>>>,
    remote_address: Slot,
    /// Properties read so far, by path joined with `.` (in `on_log` the breaker and
    /// telemetry both want `response.code`).
    properties: RefCell<Vec<(String, Option<Vec<u8>>)>>,
    /// Stream properties the stages wrote in this request (through this view or an earlier
    /// callback's), when [`remember_writes`](Self::remember_writes) asked for it: a later
    /// read of one is answered from here, as the host would answer it (only weft's filters
    /// write these names).
    written: RefCell<Vec<(String, Vec<u8>)>>,
    remember_writes: bool,
    /// No filter outside this module reads the marks ([`keep_marks`](Self::keep_marks)): they
    /// stay in memory and are not written to the host.
    marks_in_memory: bool,
}

// === impl MemoRequest ===

impl<R: RequestAttributes> MemoRequest<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            method: Slot::default(),
            path: Slot::default(),
            authority: Slot::default(),
            source_address: Slot::default(),
            peer_principal: Slot::default(),
            headers: RefCell::new(Vec::new()),
            header_lists: RefCell::new(Vec::new()),
            header_map: RefCell::new(None),
            remote_address: Slot::default(),
            properties: RefCell::new(Vec::new()),
            written: RefCell::new(Vec::new()),
            remember_writes: false,
            marks_in_memory: false,
        }
    }

    /// Keep the stream properties the stages write, for a later read in this request (the
    /// suite's telemetry stage reads the other stages' marks in `on_log`). Without a reader
    /// they are not copied.
    pub fn remember_writes(mut self) -> Self {
        self.remember_writes = true;
        self
    }

    /// No filter outside this module reads the marks the stages leave (`MARK_PROPERTIES`:
    /// fault, breaker, WAF): the module's own telemetry stage is their only reader, or there
    /// is none (`"publish_marks": false`). They are kept in memory
    /// ([`remember_writes`](Self::remember_writes)) and not written to the host: one Envoy
    /// filter-state object fewer per request (the breaker marks every request it guards).
    /// The access log's decision (`weft_decision`) is still written. Carried to the later
    /// callbacks' views.
    pub fn keep_marks(mut self) -> Self {
        self.marks_in_memory = true;
        self.remember_writes()
    }

    /// A view that starts from what an earlier callback's view learned.
    pub fn with_carried(inner: R, carried: Carried) -> Self {
        let view = Self::new(inner);
        *view.method.borrow_mut() = carried.method;
        *view.path.borrow_mut() = carried.path;
        *view.authority.borrow_mut() = carried.authority;
        *view.source_address.borrow_mut() = carried.source_address;
        *view.remote_address.borrow_mut() = carried.remote_address;
        *view.peer_principal.borrow_mut() = carried.peer_principal;
        *view.written.borrow_mut() = carried.written;
        let view = view.remember_writes();
        if carried.marks_in_memory {
            view.keep_marks()
        } else {
            view
        }
    }

    /// What this view learned that stays true for the rest of the request (moved, not
    /// copied).
    pub fn into_carried(self) -> Carried {
        Carried {
            method: self.method.into_inner(),
            path: self.path.into_inner(),
            authority: self.authority.into_inner(),
            source_address: self.source_address.into_inner(),
            remote_address: self.remote_address.into_inner(),
            peer_principal: self.peer_principal.into_inner(),
            written: self.written.into_inner(),
            marks_in_memory: self.marks_in_memory,
        }
    }

    /// The wrapped view.
    pub fn inner(&self) -> &R {
        &self.inner
    }

    /// Record that header `name` now has `value` (`None`: removed) on the host, as its only
    /// copy.
    pub fn note_header(&self, name: &str, value: Option<&str>) {
        self.forget_route();
        let value = value.map(str::to_string);
        if let Some(slot) = self.pseudo(name) {
            // A pseudo-header has one copy: its list is the slot's value.
            let copies: Vec<String> = value.iter().cloned().collect();
            let mut lists = self.header_lists.borrow_mut();
            match lists.iter_mut().find(|(n, _)| n == name) {
                Some((_, old)) => *old = copies,
                None => lists.push((name.to_string(), copies)),
            }
            *slot.borrow_mut() = Some(value);
            return;
        }
        // Any list read before is stale; `header_values` answers from `headers` now.
        self.header_lists.borrow_mut().retain(|(n, _)| n != name);
        let mut headers = self.headers.borrow_mut();
        match headers.iter_mut().find(|(n, _, _)| n == name) {
            Some((_, old, every)) => {
                *old = value;
                *every = true;
            }
            None => headers.push((name.to_string(), value, true)),
        }
    }

    /// Record that a copy of header `name` was added on the host: the next list of its
    /// copies asks the host (the first copy, if known, is unchanged).
    pub(super) fn note_added(&self, name: &str) {
        self.forget_route();
        self.header_lists.borrow_mut().retain(|(n, _)| n != name);
        for (n, _, every) in self.headers.borrow_mut().iter_mut() {
            if n == name {
                *every = false;
            }
        }
        *self.header_map.borrow_mut() = None;
    }

    /// A request header change makes Envoy choose the route again (a routing filter's header
    /// write clears the route cache), so what was read of the route and its cluster before
    /// may no longer hold: it is read again when next asked.
    fn forget_route(&self) {
        self.properties
            .borrow_mut()
            .retain(|(key, _)| !is_route_derived(key));
    }

    /// The first copy of request header `name` (`Some(None)`: there is none) from the host's
    /// whole header map, when the host prefers one map read to single reads; `None`: ask the
    /// host for this header. The map is read at most once per callback (again after a stage
    /// added a header, which drops it); a header a stage set or removed is answered from
    /// `headers` before this is asked.
    fn first_from_map(&self, name: &str) -> Option<Option<String>> {
        if !self.inner.prefers_header_map() {
            return None;
        }
        self.with_map(|entries| {
            entries
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        })
    }

    /// Every copy of `name` from the host's whole header map, read once per request.
    fn copies_from_map(&self, name: &str) -> Option<Vec<String>> {
        self.with_map(|entries| {
            entries
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
                .collect()
        })
    }

    /// `f` of the host's whole header map, read on first use; `None` when the host cannot
    /// list it.
    fn with_map<T>(&self, f: impl FnOnce(&[(String, String)]) -> T) -> Option<T> {
        let mut map = self.header_map.borrow_mut();
        if map.is_none() {
            *map = self.inner.header_map();
        }
        map.as_deref().map(f)
    }

    fn pseudo(&self, name: &str) -> Option<&Slot> {
        match name {
            ":method" => Some(&self.method),
            ":path" => Some(&self.path),
            ":authority" => Some(&self.authority),
            _ => None,
        }
    }
}

impl<H: Host> MemoRequest<H> {
    /// `f` of property `path`: what a stage wrote, else what was read, else read from the
    /// host once (looked up without joining the path, copied only when the caller keeps it).
    fn with_property<T>(&self, path: &[&str], f: impl FnOnce(Option<&[u8]>) -> T) -> T {
        if let [name] = path {
            if let Some((_, value)) = self.written.borrow().iter().find(|(n, _)| n == name) {
                return f(Some(value));
            }
        }
        if let Some((_, value)) = self
            .properties
            .borrow()
            .iter()
            .find(|(k, _)| is_path(k, path))
        {
            return f(value.as_deref());
        }
        let value = self.inner.property(path);
        let result = f(value.as_deref());
        self.properties.borrow_mut().push((path.join("."), value));
        result
    }
}

impl<R: RequestAttributes> RequestAttributes for MemoRequest<R> {
    fn method(&self) -> Option<String> {
        cached(&self.method, || {
            self.first_from_map(":method")
                .unwrap_or_else(|| self.inner.method())
        })
    }

    fn path(&self) -> Option<String> {
        cached(&self.path, || {
            self.first_from_map(":path")
                .unwrap_or_else(|| self.inner.path())
        })
    }

    fn authority(&self) -> Option<String> {
        cached(&self.authority, || {
            self.first_from_map(":authority")
                .unwrap_or_else(|| self.inner.authority())
        })
    }

    fn header(&self, name: &str) -> Option<String> {
        match name {
            ":method" => return self.method(),
            ":path" => return self.path(),
            ":authority" => return self.authority(),
            _ => {}
        }
        if let Some((_, value, _)) = self.headers.borrow().iter().find(|(n, _, _)| n == name) {
            return value.clone();
        }
        let value = self
            .first_from_map(name)
            .unwrap_or_else(|| self.inner.header(name));
        self.headers
            .borrow_mut()
            .push((name.to_string(), value.clone(), false));
        value
    }

    fn header_values(&self, name: &str) -> Vec<String> {
        if let Some((_, value, true)) = self.headers.borrow().iter().find(|(n, _, _)| n == name) {
            return value.iter().cloned().collect();
        }
        if let Some((_, values)) = self.header_lists.borrow().iter().find(|(n, _)| n == name) {
            return values.clone();
        }
        let values = self
            .copies_from_map(name)
            .unwrap_or_else(|| self.inner.header_values(name));
        self.header_lists
            .borrow_mut()
            .push((name.to_string(), values.clone()));
        values
    }

    fn source_address(&self) -> Option<String> {
        cached(&self.source_address, || self.inner.source_address())
    }

    fn remote_address(&self) -> Option<String> {
        cached(&self.remote_address, || self.inner.remote_address())
    }

    fn peer_principal(&self) -> Option<String> {
        cached(&self.peer_principal, || self.inner.peer_principal())
    }
}

/// A borrowed request is a request too, so a view can wrap one it does not own.
impl<R: RequestAttributes + ?Sized> RequestAttributes for &R {
    fn method(&self) -> Option<String> {
        (**self).method()
    }

    fn path(&self) -> Option<String> {
        (**self).path()
    }

    fn header(&self, name: &str) -> Option<String> {
        (**self).header(name)
    }

    fn header_values(&self, name: &str) -> Vec<String> {
        (**self).header_values(name)
    }
    fn header_map(&self) -> Option<Vec<(String, String)>> {
        (**self).header_map()
    }
    fn prefers_header_map(&self) -> bool {
        (**self).prefers_header_map()
    }

    fn source_address(&self) -> Option<String> {
        (**self).source_address()
    }

    fn remote_address(&self) -> Option<String> {
        (**self).remote_address()
    }

    fn peer_principal(&self) -> Option<String> {
        (**self).peer_principal()
    }
}

/// The stages act through the view: reads come from memory after the first, a header write
/// goes to the host and into memory (so the next stage sees it without a read), everything
/// else goes straight to the host.
impl<H: Host> Host for MemoRequest<H> {
    fn now_millis(&self) -> u64 {
        self.inner.now_millis()
    }

    fn seed(&self, context_id: u32) -> u64 {
        self.inner.seed(context_id)
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        self.with_property(path, |value| value.map(<[u8]>::to_vec))
    }

    fn property_u64(&self, path: &[&str]) -> Option<u64> {
        self.with_property(path, |value| {
            let arr: [u8; 8] = value?.get(..8)?.try_into().ok()?;
            Some(u64::from_le_bytes(arr))
        })
    }

    fn set_property(&self, name: &str, value: &[u8]) {
        if !(self.marks_in_memory && MARK_PROPERTIES.contains(&name)) {
            self.inner.set_property(name, value);
        }
        if !self.remember_writes {
            return;
        }
        let mut written = self.written.borrow_mut();
        match written.iter_mut().find(|(n, _)| n == name) {
            Some((_, old)) => {
                old.clear();
                old.extend_from_slice(value);
            }
            None => written.push((name.to_string(), value.to_vec())),
        }
    }

    fn set_request_header(&self, name: &str, value: Option<&str>) {
        self.inner.set_request_header(name, value);
        self.note_header(name, value);
    }

    fn replace_request_header(&self, name: &str, value: &str) {
        self.inner.replace_request_header(name, value);
        self.note_header(name, Some(value));
    }

    fn add_request_header(&self, name: &str, value: &str) {
        self.inner.add_request_header(name, value);
        self.note_added(name);
    }

    fn request_headers(&self) -> Vec<(String, String)> {
        self.inner.request_headers()
    }

    fn request_body(&self, size: usize) -> Vec<u8> {
        self.inner.request_body(size)
    }

    fn response_header(&self, name: &str) -> Option<String> {
        self.inner.response_header(name)
    }

    fn send_local_reply(&self, status: u16, headers: &[(String, String)], body: &str) {
        self.inner.send_local_reply(status, headers, body);
    }

    fn define_metric(&self, kind: MetricKind, name: &str) -> Result<MetricId, HostError> {
        self.inner.define_metric(kind, name)
    }

    fn increment_metric(&self, id: MetricId, delta: i64) {
        self.inner.increment_metric(id, delta);
    }

    fn record_metric(&self, id: MetricId, value: u64) {
        self.inner.record_metric(id, value);
    }

    fn shared_get(&self, key: &str) -> Result<SharedRecord, HostError> {
        self.inner.shared_get(key)
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        self.inner.shared_set(key, value, cas)
    }

    fn dispatch_http_call(
        &self,
        upstream: &str,
        headers: &[(String, String)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, HostError> {
        self.inner
            .dispatch_http_call(upstream, headers, body, timeout)
    }

    fn http_call_response_status(&self) -> Option<u16> {
        self.inner.http_call_response_status()
    }

    fn set_tick_period(&self, period: Duration) -> Result<(), HostError> {
        self.inner.set_tick_period(period)
    }

    fn set_effective_context(&self, context_id: u32) -> Result<(), HostError> {
        self.inner.set_effective_context(context_id)
    }

    fn resume_http_request(&self) -> Result<(), HostError> {
        self.inner.resume_http_request()
    }
}
