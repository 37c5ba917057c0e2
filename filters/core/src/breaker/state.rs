//! The shared state of one upstream's breaker and its fixed byte form.
//!
//! [`BreakerState`] lives in Envoy shared data, where every worker thread updates it by
//! compare-and-swap, so it is plain data with a fixed little-endian encoding led by a format
//! version; anything else decodes to `None`.

/// Buckets of the rolling failure-rate window.
pub const WINDOW_BUCKETS: usize = 10;
/// Length of [`BreakerState::encode`]'s output.
pub const ENCODED_LEN: usize = 46 + WINDOW_BUCKETS * 8;
const FORMAT_VERSION: u8 = 1;

/// Where the breaker is. The discriminant is what the `state` gauge shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Phase {
    #[default]
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half-open",
        }
    }

    fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::Closed),
            1 => Some(Self::Open),
            2 => Some(Self::HalfOpen),
            _ => None,
        }
    }
}

/// Requests and failures seen in one bucket of the rolling window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bucket {
    pub requests: u32,
    pub failures: u32,
}

/// Rolling window: bucket `i` holds bucket index `i (mod WINDOW_BUCKETS)`; `head` is the newest
/// bucket index (`now_ms / bucket_ms`) recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    pub head: u64,
    pub buckets: [Bucket; WINDOW_BUCKETS],
}

/// The shared state of one upstream's breaker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BreakerState {
    pub phase: Phase,
    /// Bumped on every phase change; a result whose ticket carries an older generation only
    /// releases its in-flight slot (a slow request from before an open cannot close or
    /// re-open the breaker).
    pub generation: u32,
    /// Admitted requests that have not ended yet, across all workers.
    pub in_flight: u32,
    pub consecutive_failures: u32,
    /// Half-open only: probes admitted / succeeded in this generation.
    pub probes_admitted: u32,
    pub probe_successes: u32,
    /// Open only: when half-open may begin.
    pub open_until_ms: u64,
    /// The nominal (un-jittered) open interval of the last open; 0 after closing.
    pub open_interval_ms: u64,
    pub window: Window,
}

// === impl Window ===

impl Window {
    /// Count one request at `now_ms`; the window's totals afterwards.
    pub fn record(&mut self, now_ms: u64, bucket_ms: u64, failed: bool) -> (u32, u32) {
        self.record_n(now_ms, bucket_ms, 1, u32::from(failed))
    }

    /// Count `requests` requests, `failures` of them failed, at `now_ms` (a worker's batch
    /// of successes); the window's totals afterwards.
    pub fn record_n(
        &mut self,
        now_ms: u64,
        bucket_ms: u64,
        requests: u32,
        failures: u32,
    ) -> (u32, u32) {
        let index = now_ms / bucket_ms.max(1);
        if index > self.head {
            // Clear the buckets that fell out of the window since `head`.
            let stale = (index - self.head).min(WINDOW_BUCKETS as u64);
            for step in 0..stale {
                self.buckets[slot(index - step)] = Bucket::default();
            }
            self.head = index;
        }
        // Another worker may have a clock a hair behind: count it in the newest bucket.
        let bucket = &mut self.buckets[slot(self.head)];
        bucket.requests = bucket.requests.saturating_add(requests);
        bucket.failures = bucket.failures.saturating_add(failures);
        self.totals()
    }

    pub fn totals(&self) -> (u32, u32) {
        self.buckets.iter().fold((0u32, 0u32), |(r, f), b| {
            (r.saturating_add(b.requests), f.saturating_add(b.failures))
        })
    }
}

fn slot(index: u64) -> usize {
    (index % WINDOW_BUCKETS as u64) as usize
}

// === impl BreakerState ===

impl BreakerState {
    /// Fixed little-endian layout, [`ENCODED_LEN`] bytes, led by a format version.
    pub fn encode(&self) -> Vec<u8> {
        self.to_bytes().to_vec()
    }

    /// [`encode`](Self::encode) without the allocation: the same bytes in an array.
    pub fn to_bytes(&self) -> [u8; ENCODED_LEN] {
        let mut out = [0u8; ENCODED_LEN];
        let mut w = Writer {
            bytes: &mut out,
            at: 2,
        };
        w.bytes[0] = FORMAT_VERSION;
        w.bytes[1] = self.phase as u8;
        w.put(self.generation.to_le_bytes());
        w.put(self.in_flight.to_le_bytes());
        w.put(self.consecutive_failures.to_le_bytes());
        w.put(self.probes_admitted.to_le_bytes());
        w.put(self.probe_successes.to_le_bytes());
        w.put(self.open_until_ms.to_le_bytes());
        w.put(self.open_interval_ms.to_le_bytes());
        w.put(self.window.head.to_le_bytes());
        for b in &self.window.buckets {
            w.put(b.requests.to_le_bytes());
            w.put(b.failures.to_le_bytes());
        }
        out
    }

    /// `None` for anything [`encode`](Self::encode) did not produce.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; ENCODED_LEN] = bytes.try_into().ok()?;
        if bytes[0] != FORMAT_VERSION {
            return None;
        }
        let mut r = Reader { bytes, at: 2 };
        let mut state = Self {
            phase: Phase::from_u8(bytes[1])?,
            generation: r.u32(),
            in_flight: r.u32(),
            consecutive_failures: r.u32(),
            probes_admitted: r.u32(),
            probe_successes: r.u32(),
            open_until_ms: r.u64(),
            open_interval_ms: r.u64(),
            window: Window {
                head: r.u64(),
                buckets: [Bucket::default(); WINDOW_BUCKETS],
            },
        };
        for bucket in &mut state.window.buckets {
            *bucket = Bucket {
                requests: r.u32(),
                failures: r.u32(),
            };
        }
        Some(state)
    }
}

/// Writes consecutive fields; the layout above fills exactly [`ENCODED_LEN`] bytes.
struct Writer<'a> {
    bytes: &'a mut [u8; ENCODED_LEN],
    at: usize,
}

impl Writer<'_> {
    fn put<const N: usize>(&mut self, value: [u8; N]) {
        if let Some(dst) = self.bytes.get_mut(self.at..self.at + N) {
            dst.copy_from_slice(&value);
        }
        self.at += N;
    }
}

/// Reads consecutive fields of a record already known to be [`ENCODED_LEN`] bytes long.
struct Reader<'a> {
    bytes: &'a [u8; ENCODED_LEN],
    at: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        if let Some(src) = self.bytes.get(self.at..self.at + N) {
            out.copy_from_slice(src);
        }
        self.at += N;
        out
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }

    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }
}
