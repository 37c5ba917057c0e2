//! One request as all the stages of the combined module see it: each attribute read from the
//! host at most once, and a header a stage wrote visible to the later stages without a read.

use crate::host::{Host, HostError, MetricId, MetricKind, SharedRecord};
use crate::RequestAttributes;
use std::cell::RefCell;
use std::time::Duration;

/// Wraps the host's view of the current request (`R`) for the span of one callback.
///
/// Stages that write a request header report it with [`note_header`](Self::note_header)
/// after writing it to the host, so a later stage (the breaker reading the canary's cluster
/// header) gets the new value without asking the host again.
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

#[derive(Debug)]
pub struct MemoRequest<R> {
    inner: R,
    method: Slot,
    path: Slot,
    authority: Slot,
    source_address: Slot,
    peer_principal: Slot,
    /// Other headers read (or written) so far, by lower-case name. The pseudo-headers every
    /// stage asks for have their own cells: no name to copy, no list to search.
    headers: RefCell<Vec<(String, Option<String>)>>,
    /// Every copy of the headers read with `header_values` (authz's header conditions).
    header_lists: RefCell<Vec<(String, Vec<String>)>>,
    /// The host's whole header map, read at most once (on the first `header_values` of a name
    /// not in `header_lists`) when the host can list it; dropped when a header is added.
    header_map: RefCell<Option<Vec<(String, String)>>>,
    remote_address: Slot,
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
        }
    }

    /// The wrapped view.
    pub fn inner(&self) -> &R {
        &self.inner
    }

    /// Record that header `name` now has `value` (`None`: removed) on the host.
    pub fn note_header(&self, name: &str, value: Option<&str>) {
        {
            let copies: Vec<String> = value.iter().map(|v| v.to_string()).collect();
            let mut lists = self.header_lists.borrow_mut();
            match lists.iter_mut().find(|(n, _)| n == name) {
                Some((_, old)) => *old = copies,
                None => lists.push((name.to_string(), copies)),
            }
        }
        let value = value.map(str::to_string);
        if let Some(slot) = self.pseudo(name) {
            *slot.borrow_mut() = Some(value);
            return;
        }
        let mut headers = self.headers.borrow_mut();
        match headers.iter_mut().find(|(n, _)| n == name) {
            Some((_, old)) => *old = value,
            None => headers.push((name.to_string(), value)),
        }
    }

    /// Every copy of `name` from the host's whole header map, read once per request.
    fn copies_from_map(&self, name: &str) -> Option<Vec<String>> {
        let mut map = self.header_map.borrow_mut();
        if map.is_none() {
            *map = self.inner.header_map();
        }
        let entries = map.as_ref()?;
        Some(
            entries
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
                .collect(),
        )
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

impl<R: RequestAttributes> RequestAttributes for MemoRequest<R> {
    fn method(&self) -> Option<String> {
        cached(&self.method, || self.inner.method())
    }

    fn path(&self) -> Option<String> {
        cached(&self.path, || self.inner.path())
    }

    fn authority(&self) -> Option<String> {
        cached(&self.authority, || self.inner.authority())
    }

    fn header(&self, name: &str) -> Option<String> {
        match name {
            ":method" => return self.method(),
            ":path" => return self.path(),
            ":authority" => return self.authority(),
            _ => {}
        }
        if let Some((_, value)) = self.headers.borrow().iter().find(|(n, _)| n == name) {
            return value.clone();
        }
        let value = self.inner.header(name);
        self.headers
            .borrow_mut()
            .push((name.to_string(), value.clone()));
        value
    }

    fn header_values(&self, name: &str) -> Vec<String> {
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
        self.inner.property(path)
    }

    fn set_property(&self, name: &str, value: &[u8]) {
        self.inner.set_property(name, value);
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
        // The copies changed: the next read of them asks the host.
        self.header_lists.borrow_mut().retain(|(n, _)| n != name);
        *self.header_map.borrow_mut() = None;
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
