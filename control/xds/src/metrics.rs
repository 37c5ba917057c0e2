//! The xDS server's own metrics, in Prometheus text: connected sidecars, responses pushed,
//! NACKs, and the time from a push to the sidecar's acknowledgement.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use weft_prometheus_text::{Kind, Writer};

use crate::event::Event;
use crate::sidecar::SidecarStatus;

/// Upper bounds (seconds) of the push-to-ACK histogram.
pub const PUSH_ACK_BOUNDS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Debug, Default)]
pub struct XdsMetrics {
    pushes: AtomicU64,
    nacks: AtomicU64,
    acks: AtomicU64,
    /// Per bound, plus the overflow bucket.
    push_ack: [AtomicU64; PUSH_ACK_BOUNDS.len() + 1],
    push_ack_micros: AtomicU64,
}

// === impl XdsMetrics ===

impl XdsMetrics {
    /// After one round of a stream: `pushed` responses went out and the sidecar reported
    /// `events`. `pending` is the stream's oldest unacknowledged push.
    pub fn after_round(&self, pushed: usize, events: &[Event], pending: &mut Option<Instant>) {
        if pushed > 0 {
            self.pushes.fetch_add(pushed as u64, Ordering::Relaxed);
        }
        for event in events {
            match event {
                Event::Nacked(_) => {
                    self.nacks.fetch_add(1, Ordering::Relaxed);
                    *pending = None;
                }
                Event::Acked { .. } => {
                    self.acks.fetch_add(1, Ordering::Relaxed);
                    if let Some(sent) = pending.take() {
                        self.observe(sent.elapsed().as_secs_f64());
                    }
                }
            }
        }
        if pushed > 0 && pending.is_none() {
            *pending = Some(Instant::now());
        }
    }

    fn observe(&self, seconds: f64) {
        let bucket = PUSH_ACK_BOUNDS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(PUSH_ACK_BOUNDS.len());
        if let Some(slot) = self.push_ack.get(bucket) {
            slot.fetch_add(1, Ordering::Relaxed);
        }
        self.push_ack_micros
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }

    /// Prometheus text.
    pub fn render(&self, sidecars: &[SidecarStatus]) -> String {
        let mut out = Writer::new();
        let connected = sidecars.iter().filter(|s| s.connected).count();
        out.single(
            "weft_xds_connected_sidecars",
            "Sidecars with an open ADS stream.",
            Kind::Gauge,
            connected,
        );
        for (name, help, value) in [
            ("weft_xds_pushes_total", "xDS responses sent.", &self.pushes),
            (
                "weft_xds_acks_total",
                "Acknowledgements received.",
                &self.acks,
            ),
            (
                "weft_xds_nacks_total",
                "Refusals (NACKs) received.",
                &self.nacks,
            ),
        ] {
            out.single(name, help, Kind::Counter, value.load(Ordering::Relaxed));
        }
        let name = "weft_xds_push_ack_seconds";
        out.family(
            name,
            "From a push to the sidecar's acknowledgement.",
            Kind::Histogram,
        );
        let counts: Vec<u64> = self
            .push_ack
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let overflow = counts.get(PUSH_ACK_BOUNDS.len()).copied().unwrap_or(0);
        let sum = self.push_ack_micros.load(Ordering::Relaxed) as f64 / 1e6;
        out.histogram(name, "", &PUSH_ACK_BOUNDS, &counts, overflow, sum);
        out.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Nack;

    #[test]
    fn counts_pushes_acks_nacks_and_times_push_to_ack() {
        let m = XdsMetrics::default();
        let mut pending = None;
        m.after_round(3, &[], &mut pending);
        assert!(pending.is_some());
        let ack = Event::Acked {
            type_url: "t".into(),
            version: "1".into(),
        };
        m.after_round(0, std::slice::from_ref(&ack), &mut pending);
        assert!(pending.is_none());
        m.after_round(1, &[], &mut pending);
        let nack = Event::Nacked(Nack {
            type_url: "t".into(),
            rejected_version: "2".into(),
            revision: 2,
            nonce: "n".into(),
            code: 13,
            message: "no".into(),
        });
        m.after_round(0, &[nack], &mut pending);
        let text = m.render(&[]);
        assert!(text.contains("weft_xds_pushes_total 4"), "{text}");
        assert!(text.contains("weft_xds_acks_total 1"), "{text}");
        assert!(text.contains("weft_xds_nacks_total 1"), "{text}");
        assert!(text.contains("weft_xds_push_ack_seconds_count 1"), "{text}");
        assert!(text.contains("weft_xds_connected_sidecars 0"), "{text}");
    }
}
