//! A host for unit tests: canned request, properties and shared data; every call recorded.
//! (Over 400 lines: one recording fake of every `Host` method plus its inspection helpers;
//! split up, the fake would lose its one place.)

use super::{Host, HostError, MetricId, MetricKind, SharedRecord};
use crate::RequestAttributes;
use std::cell::{Cell, RefCell};
use std::time::Duration;

/// One call a stage made to the host, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// A request header (or pseudo-header) read, by name; `header_values` reads are `*name`.
    ReadHeader(String),
    /// A property read, its path joined with `.`.
    ReadProperty(String),
    ReadResponseHeader(String),
    Now,
    SetHeader(String, Option<String>),
    AddHeader(String, String),
    SetProperty(String, Vec<u8>),
    LocalReply {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    DefineMetric(MetricKind, String),
    /// A metric moved: its name and the delta (a `record` is `Record`).
    Increment(String, i64),
    Record(String, u64),
    SharedGet(String),
    SharedSet {
        key: String,
        cas: Option<u32>,
    },
    Dispatch(String),
    SetTick(Duration),
    ReadHeaders,
    ReadCallResponse,
    ReadBody(usize),
    SetContext(u32),
    Resume,
}

/// A host for unit tests. Build the request with [`header`](Self::header) and
/// [`with_property`](Self::with_property); after the stage ran, inspect [`calls`](Self::calls),
/// [`metric`](Self::metric) and [`request_header`](Self::request_header).
#[derive(Debug, Default)]
pub struct MockHost {
    headers: RefCell<Vec<(String, String)>>,
    response_headers: Vec<(String, String)>,
    properties: RefCell<Vec<(String, Vec<u8>)>>,
    now_ms: Cell<u64>,
    calls: RefCell<Vec<Call>>,
    /// Defined metrics by id: kind, name, value.
    metrics: RefCell<Vec<(MetricKind, String, i64)>>,
    /// Shared data: key, bytes, CAS.
    shared: RefCell<Vec<(String, Vec<u8>, u32)>>,
    /// The next this-many CAS writes fail as if another worker wrote first.
    cas_conflicts: Cell<u32>,
    next_token: Cell<u32>,
    body: Vec<u8>,
    /// Contexts that are gone: switching to them fails with `NotFound`.
    gone: RefCell<Vec<u32>>,
    /// Dispatches fail (e.g. an unknown cluster).
    dispatch_fails: bool,
    /// What `http_call_response_status` answers.
    call_status: Cell<Option<u16>>,
}

// === impl MockHost ===

impl MockHost {
    pub fn new() -> Self {
        Self::default()
    }

    /// A request with `:method`, `:path` and `:authority`.
    pub fn request(method: &str, authority: &str, path: &str) -> Self {
        Self::new()
            .header(":method", method)
            .header(":authority", authority)
            .header(":path", path)
    }

    /// One more copy of request header `name`.
    pub fn header(self, name: &str, value: &str) -> Self {
        self.headers
            .borrow_mut()
            .push((name.to_string(), value.to_string()));
        self
    }

    pub fn response_header_value(mut self, name: &str, value: &str) -> Self {
        self.response_headers
            .push((name.to_string(), value.to_string()));
        self
    }

    /// A property, its path joined with `.` (e.g. `response.code`).
    pub fn with_property(self, path: &str, value: &[u8]) -> Self {
        self.put_property(path, value);
        self
    }

    /// Set (or change) a property between callbacks, e.g. `response.code` before `on_log`.
    pub fn put_property(&self, path: &str, value: &[u8]) {
        let mut properties = self.properties.borrow_mut();
        properties.retain(|(p, _)| p != path);
        properties.push((path.to_string(), value.to_vec()));
    }

    pub fn with_property_u64(self, path: &str, value: u64) -> Self {
        self.with_property(path, &value.to_le_bytes())
    }

    /// The mTLS peer's URI SAN.
    pub fn peer(self, principal: &str) -> Self {
        self.with_property("connection.uri_san_peer_certificate", principal.as_bytes())
    }

    /// The request body the stage reads chunk by chunk.
    pub fn body(mut self, body: &[u8]) -> Self {
        self.body = body.to_vec();
        self
    }

    /// Every dispatch fails as for an unknown cluster.
    pub fn failing_dispatch(mut self) -> Self {
        self.dispatch_fails = true;
        self
    }

    /// Context `context_id` went away: switching to it fails.
    pub fn context_gone(&self, context_id: u32) {
        self.gone.borrow_mut().push(context_id);
    }

    /// The status the next `on_http_call_response` reads (`None`: no response).
    pub fn set_call_response(&self, status: Option<u16>) {
        self.call_status.set(status);
    }

    pub fn set_now(&self, now_ms: u64) {
        self.now_ms.set(now_ms);
    }

    /// Make the next `n` CAS writes fail with a mismatch.
    pub fn conflict_next_cas(&self, n: u32) {
        self.cas_conflicts.set(n);
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.borrow().clone()
    }

    /// Forget the calls so far (e.g. those of `on_configure`).
    pub fn clear_calls(&self) {
        self.calls.borrow_mut().clear();
    }

    /// How many calls crossed to the host (what each costs in a real proxy).
    pub fn call_count(&self) -> usize {
        self.calls.borrow().len()
    }

    /// The calls matching `f`.
    pub fn count(&self, f: impl Fn(&Call) -> bool) -> usize {
        self.calls.borrow().iter().filter(|c| f(c)).count()
    }

    /// A metric's value by name (`None`: never defined).
    pub fn metric(&self, name: &str) -> Option<i64> {
        self.metrics
            .borrow()
            .iter()
            .find(|(_, n, _)| n == name)
            .map(|(_, _, v)| *v)
    }

    /// The metrics with a non-zero value, sorted by name.
    pub fn moved_metrics(&self) -> Vec<(String, i64)> {
        let mut moved: Vec<(String, i64)> = self
            .metrics
            .borrow()
            .iter()
            .filter(|(_, _, v)| *v != 0)
            .map(|(_, n, v)| (n.clone(), *v))
            .collect();
        moved.sort();
        moved
    }

    /// The local replies sent: status and body.
    pub fn replies(&self) -> Vec<(u16, String)> {
        self.calls
            .borrow()
            .iter()
            .filter_map(|c| match c {
                Call::LocalReply { status, body, .. } => Some((*status, body.clone())),
                _ => None,
            })
            .collect()
    }

    /// The request header's first copy as the stages left it (no call recorded).
    pub fn request_header(&self, name: &str) -> Option<String> {
        self.headers
            .borrow()
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }

    /// A shared-data record's bytes and CAS.
    pub fn shared_record(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.shared
            .borrow()
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, b, c)| (b.clone(), *c))
    }

    fn record(&self, call: Call) {
        self.calls.borrow_mut().push(call);
    }

    fn metric_name(&self, id: MetricId) -> String {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.metrics.borrow().get(i).map(|(_, n, _)| n.clone()))
            .unwrap_or_default()
    }

    fn move_metric(&self, id: MetricId, f: impl FnOnce(&mut i64)) {
        if let Ok(i) = usize::try_from(id) {
            if let Some((_, _, v)) = self.metrics.borrow_mut().get_mut(i) {
                f(v);
            }
        }
    }
}

impl RequestAttributes for MockHost {
    fn method(&self) -> Option<String> {
        self.header(":method")
    }

    fn path(&self) -> Option<String> {
        self.header(":path")
    }

    fn header(&self, name: &str) -> Option<String> {
        self.record(Call::ReadHeader(name.to_string()));
        self.request_header(name)
    }

    fn header_values(&self, name: &str) -> Vec<String> {
        self.record(Call::ReadHeader(format!("*{name}")));
        self.headers
            .borrow()
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn source_address(&self) -> Option<String> {
        self.property_string(&["source", "address"])
    }

    fn remote_address(&self) -> Option<String> {
        self.property_string(&["source", "address"])
    }

    fn peer_principal(&self) -> Option<String> {
        self.property_string(&["connection", "uri_san_peer_certificate"])
            .filter(|s| !s.is_empty())
    }
}

impl Host for MockHost {
    fn now_millis(&self) -> u64 {
        self.record(Call::Now);
        self.now_ms.get()
    }

    fn seed(&self, context_id: u32) -> u64 {
        u64::from(context_id)
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        let path = path.join(".");
        self.record(Call::ReadProperty(path.clone()));
        self.properties
            .borrow()
            .iter()
            .find(|(p, _)| *p == path)
            .map(|(_, v)| v.clone())
    }

    /// Recorded, and readable afterwards as Envoy's filter state is (by later stages).
    fn set_property(&self, name: &str, value: &[u8]) {
        self.record(Call::SetProperty(name.to_string(), value.to_vec()));
        self.put_property(name, value);
    }

    fn set_request_header(&self, name: &str, value: Option<&str>) {
        self.record(Call::SetHeader(name.to_string(), value.map(str::to_string)));
        let mut headers = self.headers.borrow_mut();
        match value {
            None => headers.retain(|(n, _)| n != name),
            Some(value) => match headers.iter_mut().find(|(n, _)| n == name) {
                Some((_, old)) => *old = value.to_string(),
                None => headers.push((name.to_string(), value.to_string())),
            },
        }
    }

    fn add_request_header(&self, name: &str, value: &str) {
        self.record(Call::AddHeader(name.to_string(), value.to_string()));
        self.headers
            .borrow_mut()
            .push((name.to_string(), value.to_string()));
    }

    fn request_headers(&self) -> Vec<(String, String)> {
        self.record(Call::ReadHeaders);
        self.headers.borrow().clone()
    }

    fn request_body(&self, size: usize) -> Vec<u8> {
        self.record(Call::ReadBody(size));
        self.body.iter().take(size).copied().collect()
    }

    fn response_header(&self, name: &str) -> Option<String> {
        self.record(Call::ReadResponseHeader(name.to_string()));
        self.response_headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }

    fn send_local_reply(&self, status: u16, headers: &[(String, String)], body: &str) {
        self.record(Call::LocalReply {
            status,
            headers: headers.to_vec(),
            body: body.to_string(),
        });
    }

    fn define_metric(&self, kind: MetricKind, name: &str) -> Result<MetricId, HostError> {
        self.record(Call::DefineMetric(kind, name.to_string()));
        let mut metrics = self.metrics.borrow_mut();
        let index = match metrics.iter().position(|(_, n, _)| n == name) {
            Some(index) => index,
            None => {
                metrics.push((kind, name.to_string(), 0));
                metrics.len() - 1
            }
        };
        MetricId::try_from(index).map_err(|_| HostError::Refused("too many metrics".into()))
    }

    fn increment_metric(&self, id: MetricId, delta: i64) {
        self.record(Call::Increment(self.metric_name(id), delta));
        self.move_metric(id, |v| *v += delta);
    }

    fn record_metric(&self, id: MetricId, value: u64) {
        self.record(Call::Record(self.metric_name(id), value));
        self.move_metric(id, |v| *v = i64::try_from(value).unwrap_or(i64::MAX));
    }

    fn shared_get(&self, key: &str) -> Result<SharedRecord, HostError> {
        self.record(Call::SharedGet(key.to_string()));
        Ok(match self.shared_record(key) {
            Some((bytes, cas)) => (Some(bytes), Some(cas)),
            None => (None, None),
        })
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        self.record(Call::SharedSet {
            key: key.to_string(),
            cas,
        });
        let mut shared = self.shared.borrow_mut();
        let current = shared.iter_mut().find(|(k, _, _)| k == key);
        if cas.is_some() && self.cas_conflicts.get() > 0 {
            self.cas_conflicts.set(self.cas_conflicts.get() - 1);
            // Another worker wrote in between: the record moves on, this write is refused.
            if let Some((_, _, c)) = current {
                *c += 1;
            }
            return Err(HostError::CasMismatch);
        }
        match current {
            Some((_, bytes, c)) => {
                if cas.is_some_and(|cas| cas != *c) {
                    return Err(HostError::CasMismatch);
                }
                *bytes = value.to_vec();
                *c += 1;
            }
            None => shared.push((key.to_string(), value.to_vec(), 1)),
        }
        Ok(())
    }

    fn dispatch_http_call(
        &self,
        upstream: &str,
        _headers: &[(String, String)],
        _body: Option<&[u8]>,
        _timeout: Duration,
    ) -> Result<u32, HostError> {
        self.record(Call::Dispatch(upstream.to_string()));
        if self.dispatch_fails {
            return Err(HostError::Refused("BadArgument".into()));
        }
        let token = self.next_token.get() + 1;
        self.next_token.set(token);
        Ok(token)
    }

    fn http_call_response_status(&self) -> Option<u16> {
        self.record(Call::ReadCallResponse);
        self.call_status.get()
    }

    fn set_tick_period(&self, period: Duration) -> Result<(), HostError> {
        self.record(Call::SetTick(period));
        Ok(())
    }

    fn set_effective_context(&self, context_id: u32) -> Result<(), HostError> {
        self.record(Call::SetContext(context_id));
        if self.gone.borrow().contains(&context_id) {
            return Err(HostError::NotFound);
        }
        Ok(())
    }

    fn resume_http_request(&self) -> Result<(), HostError> {
        self.record(Call::Resume);
        Ok(())
    }
}
