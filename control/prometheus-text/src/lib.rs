//! The Prometheus text exposition format (0.0.4), written once: `# HELP`/`# TYPE` headers,
//! label values escaped, histograms as cumulative `_bucket`s with `+Inf`, `_sum` and `_count`.
//! The telemetry plane's `/metrics` and the xDS server's own metrics both write through it.
#![forbid(unsafe_code)]

use std::fmt::{Display, Write};

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A label value with `\`, `"` and newlines escaped.
pub fn escape(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

/// `name="value",...` with the values escaped.
pub fn labels(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{name}=\"{}\"", escape(value));
    }
    out
}

/// Appends to a text exposition. Writing to a `String` cannot fail, so nothing here returns
/// an error.
#[derive(Debug, Default)]
pub struct Writer {
    out: String,
}

// === impl Writer ===

impl Writer {
    pub fn new() -> Self {
        Self::default()
    }

    /// `# HELP` and `# TYPE` of one family; its samples follow.
    pub fn family(&mut self, name: &str, help: &str, kind: Kind) {
        let _ = writeln!(
            self.out,
            "# HELP {name} {help}\n# TYPE {name} {}",
            kind.as_str()
        );
    }

    /// One sample; `labels` as [`labels`] makes them (empty: none).
    pub fn sample(&mut self, name: &str, labels: &str, value: impl Display) {
        if labels.is_empty() {
            let _ = writeln!(self.out, "{name} {value}");
        } else {
            let _ = writeln!(self.out, "{name}{{{labels}}} {value}");
        }
    }

    /// A family with one unlabelled sample.
    pub fn single(&mut self, name: &str, help: &str, kind: Kind, value: impl Display) {
        self.family(name, help, kind);
        self.sample(name, "", value);
    }

    /// One histogram's samples (after its [`Writer::family`]): `counts[i]` observations in
    /// bucket `bounds[i]` (not cumulative), `overflow` above the last bound, `sum` of all.
    pub fn histogram<B: Display>(
        &mut self,
        name: &str,
        labels: &str,
        bounds: &[B],
        counts: &[u64],
        overflow: u64,
        sum: f64,
    ) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, bound) in bounds.iter().enumerate() {
            cumulative += counts.get(i).copied().unwrap_or(0);
            let _ = writeln!(
                self.out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += overflow;
        let _ = writeln!(
            self.out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}"
        );
        self.sample(&format!("{name}_sum"), labels, sum);
        self.sample(&format!("{name}_count"), labels, cumulative);
    }

    /// Appends text another writer made.
    pub fn push_text(&mut self, text: &str) {
        self.out.push_str(text);
    }

    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_families_samples_escaped_labels_and_cumulative_histograms() {
        let mut w = Writer::new();
        w.single("up", "Is it up.", Kind::Gauge, 1);
        w.family("reqs_total", "Requests.", Kind::Counter);
        w.sample(
            "reqs_total",
            &labels(&[("svc", "a\"b\\c\nd"), ("v", "1")]),
            7,
        );
        w.family("lat", "Latency.", Kind::Histogram);
        w.histogram("lat", &labels(&[("svc", "a")]), &[1, 5], &[2, 3], 4, 12.5);
        w.family("plain", "No labels.", Kind::Histogram);
        w.histogram("plain", "", &[0.5], &[1], 0, 0.25);
        assert_eq!(
            w.finish(),
            "# HELP up Is it up.\n# TYPE up gauge\nup 1\n\
             # HELP reqs_total Requests.\n# TYPE reqs_total counter\n\
             reqs_total{svc=\"a\\\"b\\\\c\\nd\",v=\"1\"} 7\n\
             # HELP lat Latency.\n# TYPE lat histogram\n\
             lat_bucket{svc=\"a\",le=\"1\"} 2\nlat_bucket{svc=\"a\",le=\"5\"} 5\n\
             lat_bucket{svc=\"a\",le=\"+Inf\"} 9\nlat_sum{svc=\"a\"} 12.5\nlat_count{svc=\"a\"} 9\n\
             # HELP plain No labels.\n# TYPE plain histogram\n\
             plain_bucket{le=\"0.5\"} 1\nplain_bucket{le=\"+Inf\"} 1\nplain_sum 0.25\nplain_count 1\n"
        );
    }
}
