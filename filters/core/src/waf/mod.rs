//! The edge WAF's decisions, host-free: protocol limits, detection rules with anomaly
//! scoring, paranoia levels and exclusions, over the request head and (form and JSON) body.
//!
//! [`Waf::check_head`] judges the head and says whether the body is to be held for
//! inspection ([`BodyPlan`]); [`Waf::check_body`] adds what the body shows; [`Waf::verdict`]
//! turns the [`Assessment`] into pass, block or (detect mode) a would-block, with the reason
//! for the access log: the limit and its reason code, or the rule ids and the score. Every
//! value is decoded through bounded layers ([`decode`]) and SQL/HTML are tokenised
//! (`sqli`, `xss`); the work per request is bounded by the limits (each inspected value
//! is cut at its limit) and the body inspection size.

pub mod config;
#[cfg(all(test, not(target_arch = "wasm32")))]
mod corpus_tests;
pub mod decode;
mod json;
pub mod request;
pub mod rules;
mod sqli;
#[cfg(test)]
mod tests;
mod view;
mod xss;

pub use config::{Exclusion, LimitStatus, Limits, Mode, WafConfig};
pub use request::BodyKind;
pub use rules::Category;

use crate::ConfigError;
use request::Location;
use rules::{View, RULES};

/// The compiled WAF of one configuration.
#[derive(Debug, Clone)]
pub struct Waf {
    config: WafConfig,
}

/// The request head as the WAF reads it.
pub struct Head<'a> {
    pub method: &'a str,
    /// `:path` with the query.
    pub path: &'a str,
    /// Every header entry (pseudo-headers included or not: they are skipped).
    pub headers: &'a [(String, String)],
    /// The head is the whole request (no body follows).
    pub end_of_stream: bool,
}

/// A protocol limit the request broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The reason code (`body_too_large`, ...), also the reply's body.
    pub reason: &'static str,
    pub status: u16,
    pub detail: String,
}

/// A rule that matched, and on what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleMatch {
    pub rule: u32,
    pub category: Category,
    pub score: u32,
    /// The target's name (`q`, `header:user-agent`, `path`, `body`).
    pub target: String,
}

/// What to do with the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyPlan {
    /// No body.
    None,
    /// Hold it (up to `inspect_body_bytes`) and inspect it as this kind.
    Inspect(BodyKind),
    /// Let it stream, counting its bytes against `max_body_bytes`.
    Stream,
}

/// Everything found so far about one request.
#[derive(Debug, Clone)]
pub struct Assessment {
    pub matches: Vec<RuleMatch>,
    /// The first limit broken.
    pub refusal: Option<Refusal>,
    pub body: BodyPlan,
    /// The path without the query (for exclusions and body targets).
    path: String,
    /// Arguments counted so far.
    args: u32,
}

/// What happens to the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// Refused: the reply's status and reason code, and the access-log line.
    Block {
        status: u16,
        reason: &'static str,
        log: String,
    },
    /// Detect mode: it would have been refused; the access-log line.
    Detected {
        log: String,
    },
}

impl Assessment {
    /// The anomaly score: each matching rule counts once.
    pub fn score(&self) -> u32 {
        let mut seen: Vec<u32> = Vec::new();
        let mut score = 0;
        for m in &self.matches {
            if !seen.contains(&m.rule) {
                seen.push(m.rule);
                score += m.score;
            }
        }
        score
    }

    /// The distinct rule ids that matched, in order.
    pub fn rule_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = Vec::new();
        for m in &self.matches {
            if !ids.contains(&m.rule) {
                ids.push(m.rule);
            }
        }
        ids
    }

    /// The distinct categories that matched.
    pub fn categories(&self) -> Vec<Category> {
        let mut cats: Vec<Category> = self.matches.iter().map(|m| m.category).collect();
        cats.sort();
        cats.dedup();
        cats
    }
}

/// Cut `s` to at most `max` bytes on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("")
}

// === impl Waf ===

impl Waf {
    pub fn new(config: WafConfig) -> Result<Self, ConfigError> {
        config.validate(|id| rules::find(id).is_some())?;
        Ok(Self { config })
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        Self::new(crate::error::parse_json(bytes)?)
    }

    pub fn config(&self) -> &WafConfig {
        &self.config
    }

    /// The name for logs and stats.
    pub fn name(&self) -> &str {
        if self.config.name.is_empty() {
            "waf"
        } else {
            &self.config.name
        }
    }

    fn limit(&self, a: &mut Assessment, reason: &'static str, status: u16, detail: String) {
        if a.refusal.is_none() {
            a.refusal = Some(Refusal {
                reason,
                status,
                detail,
            });
        }
    }

    fn excluded(&self, path: &str, rule: u32, target: &str) -> bool {
        self.config
            .exclusions
            .iter()
            .any(|e| e.covers(path, rule, target))
    }

    fn add(&self, a: &mut Assessment, rule: u32, target: &str) {
        let Some(r) = rules::find(rule) else { return };
        if r.paranoia > self.config.paranoia || self.excluded(&a.path, rule, target) {
            return;
        }
        a.matches.push(RuleMatch {
            rule,
            category: r.category,
            score: r.score,
            target: target.to_string(),
        });
    }

    /// Runs every target rule of the configured paranoia over the value `raw` of the
    /// target `name`: decoded once, each derived view built at most once.
    fn inspect(&self, a: &mut Assessment, location: Location, name: &str, raw: &str) {
        let max = match location {
            Location::Header => self.config.limits.max_header_bytes,
            Location::Path => self.config.limits.max_request_line,
            _ => self.config.limits.max_arg_bytes,
        };
        let raw = cut(raw, max as usize);
        if raw.is_empty() {
            return;
        }
        let url = decode::url_decode_full(raw);
        let norm = decode::normalise_decoded(&url);
        let view = View::new(location, name, raw, &url, &norm);
        for rule in RULES {
            if rule.paranoia <= self.config.paranoia && rule.matches(&view) {
                self.add(a, rule.id, name);
            }
        }
    }

    /// Counts and inspects arguments (query, form or JSON), refusing past the limits.
    fn args<V: AsRef<str>>(&self, a: &mut Assessment, args: &[(String, V)], names: bool) {
        let limits = &self.config.limits;
        for (name, value) in args {
            let value = value.as_ref();
            a.args = a.args.saturating_add(1);
            if a.args > limits.max_args {
                self.limit(
                    a,
                    "too_many_args",
                    limits.status.too_many_args,
                    format!("more than {} arguments", limits.max_args),
                );
                return;
            }
            if name.len() + value.len() > limits.max_arg_bytes as usize {
                self.limit(
                    a,
                    "arg_too_long",
                    limits.status.arg_too_long,
                    format!(
                        "argument {:?} is {} bytes, over {}",
                        cut(name, 64),
                        name.len() + value.len(),
                        limits.max_arg_bytes
                    ),
                );
            }
            self.inspect(a, Location::Arg, name, value);
            if names {
                self.inspect(a, Location::ArgName, name, name);
            }
        }
    }

    /// Judges the head: limits, then the rules over path, query, cookies and headers.
    pub fn check_head(&self, head: &Head<'_>) -> Assessment {
        let limits = &self.config.limits;
        let (path, query) = head.path.split_once('?').unwrap_or((head.path, ""));
        let mut a = Assessment {
            matches: Vec::new(),
            refusal: None,
            body: BodyPlan::None,
            path: path.to_string(),
            args: 0,
        };
        if !limits.methods.iter().any(|m| m == head.method) {
            self.limit(
                &mut a,
                "method_not_allowed",
                limits.status.method_not_allowed,
                format!("method {:?}", cut(head.method, 32)),
            );
        }
        let line = head.method.len() + 1 + head.path.len();
        if line > limits.max_request_line as usize {
            self.limit(
                &mut a,
                "request_line_too_long",
                limits.status.request_line_too_long,
                format!(
                    "request line {line} bytes, over {}",
                    limits.max_request_line
                ),
            );
        }
        let headers: Vec<&(String, String)> = head
            .headers
            .iter()
            .filter(|(n, _)| !n.starts_with(':'))
            .collect();
        if headers.len() > limits.max_headers as usize {
            self.limit(
                &mut a,
                "too_many_headers",
                limits.status.too_many_headers,
                format!("{} headers, over {}", headers.len(), limits.max_headers),
            );
        }
        if let Some((n, v)) = headers
            .iter()
            .find(|(n, v)| n.len() + v.len() > limits.max_header_bytes as usize)
        {
            self.limit(
                &mut a,
                "header_too_large",
                limits.status.header_too_large,
                format!(
                    "header {:?} is {} bytes, over {}",
                    cut(n, 64),
                    n.len() + v.len(),
                    limits.max_header_bytes
                ),
            );
        }
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        let length: Option<u64> = header("content-length").and_then(|v| v.trim().parse().ok());
        if let Some(len) = length.filter(|l| *l > limits.max_body_bytes) {
            self.limit(
                &mut a,
                "body_too_large",
                limits.status.body_too_large,
                format!("content-length {len}, over {}", limits.max_body_bytes),
            );
        }
        let has_body = !head.end_of_stream || length.is_some_and(|l| l > 0);
        let media = header("content-type").map(request::media_type);
        if has_body {
            if let Some(media) = &media {
                if !limits.content_types.is_empty() && !limits.content_types.contains(media) {
                    self.limit(
                        &mut a,
                        "content_type_not_allowed",
                        limits.status.content_type_not_allowed,
                        format!("content-type {:?}", cut(media, 64)),
                    );
                }
            }
        }
        // Request rules.
        if rules::overlong_raw(query) {
            self.add(&mut a, 920260, "query");
        }
        if decode::has_invalid_percent(head.path) {
            self.add(&mut a, rules::INVALID_PERCENT, "path");
        }
        if has_body && matches!(head.method, "GET" | "HEAD") {
            self.add(&mut a, rules::BODY_ON_GET, "body");
        }
        if header("user-agent").is_none_or(|ua| ua.trim().is_empty()) {
            self.add(&mut a, rules::NO_USER_AGENT, "header:user-agent");
        }
        if let Some((n, _)) = headers.iter().find(|(n, _)| {
            rules::SCANNER_HEADERS
                .iter()
                .any(|s| n.eq_ignore_ascii_case(s))
        }) {
            self.add(&mut a, rules::SCANNER_HEADER, &format!("header:{n}"));
        }
        // Targets.
        self.inspect(&mut a, Location::Path, "path", path);
        self.args(&mut a, &request::parse_query(query), true);
        for (name, value) in &headers {
            let lower = name.to_ascii_lowercase();
            if lower == "cookie" {
                for (cn, cv) in request::parse_cookies(value) {
                    self.inspect(&mut a, Location::Cookie, &format!("cookie:{cn}"), &cv);
                }
                continue;
            }
            self.inspect(&mut a, Location::Header, &format!("header:{lower}"), value);
        }
        a.body = if !has_body {
            BodyPlan::None
        } else {
            match media.as_deref().map(request::body_kind) {
                Some(kind @ (BodyKind::Form | BodyKind::Json))
                    if self.config.inspect_body_bytes > 0 =>
                {
                    BodyPlan::Inspect(kind)
                }
                _ => BodyPlan::Stream,
            }
        };
        a
    }

    /// How many body bytes to hold for inspection.
    pub fn inspect_body_bytes(&self) -> usize {
        self.config.inspect_body_bytes as usize
    }

    pub fn max_body_bytes(&self) -> u64 {
        self.config.limits.max_body_bytes
    }

    /// The body refused for its size (counted as it streamed, or held).
    pub fn body_too_large(&self, a: &mut Assessment, seen: u64) {
        let limits = &self.config.limits;
        self.limit(
            a,
            "body_too_large",
            limits.status.body_too_large,
            format!(
                "body over {} bytes (at least {seen})",
                limits.max_body_bytes
            ),
        );
    }

    /// The assessment of a streamed body found over the limit after `seen` bytes.
    pub fn oversized_body(&self, seen: u64) -> Assessment {
        let mut a = Assessment {
            matches: Vec::new(),
            refusal: None,
            body: BodyPlan::None,
            path: String::new(),
            args: 0,
        };
        self.body_too_large(&mut a, seen);
        a
    }

    /// Inspects the held body (its first `inspect_body_bytes`; `complete`: that is all of it).
    pub fn check_body(&self, a: &mut Assessment, kind: BodyKind, body: &[u8], complete: bool) {
        let body = body.get(..self.inspect_body_bytes()).unwrap_or(body);
        let text = decode::lossy(body.to_vec());
        match kind {
            BodyKind::Form => self.args(a, &request::parse_query(&text), true),
            BodyKind::Json => {
                let parsed = complete.then(|| json::parse(&text)).flatten();
                match parsed {
                    Some(doc) => {
                        let max = self.config.limits.max_args as usize;
                        let (leaves, keys) = json::args(doc, max);
                        self.args(a, &leaves, false);
                        // A key repeated (the same field of every array item) matches the
                        // same rules on the same target name: inspected once.
                        let mut seen = std::collections::HashSet::new();
                        for name in keys.iter().take(max) {
                            if seen.insert(name.as_ref()) {
                                self.inspect(a, Location::ArgName, name, name);
                            }
                        }
                    }
                    None => {
                        if complete {
                            self.add(a, rules::BODY_PARSE, "body");
                        }
                        // A cut (or broken) document: its string literals.
                        let strings: Vec<(String, String)> = json_strings(&text)
                            .into_iter()
                            .map(|s| ("body".to_string(), s))
                            .collect();
                        self.args(a, &strings, false);
                    }
                }
            }
            BodyKind::Opaque => {}
        }
    }

    /// The outcome, with its access-log line.
    pub fn verdict(&self, a: &Assessment) -> Verdict {
        let detect = self.config.mode == Mode::Detect;
        let (status, reason, log) = if let Some(r) = &a.refusal {
            (
                r.status,
                r.reason,
                format!(
                    "waf[{}]: {} {}: {}",
                    self.name(),
                    r.status,
                    r.reason,
                    r.detail
                ),
            )
        } else {
            let score = a.score();
            if score < self.config.inbound_threshold {
                return Verdict::Pass;
            }
            let rules: Vec<String> = a
                .rule_ids()
                .iter()
                .filter_map(|id| {
                    a.matches
                        .iter()
                        .find(|m| m.rule == *id)
                        .map(|m| format!("{}@{}", m.rule, cut(&m.target, 64)))
                })
                .collect();
            (
                self.config.block_status,
                "anomaly_score",
                format!(
                    "waf[{}]: {} anomaly score {} >= {}: rules {}",
                    self.name(),
                    self.config.block_status,
                    score,
                    self.config.inbound_threshold,
                    rules.join(",")
                ),
            )
        };
        if detect {
            Verdict::Detected {
                log: format!("{log} (detect mode: not blocked)"),
            }
        } else {
            Verdict::Block {
                status,
                reason,
                log,
            }
        }
    }
}

/// The string literals of a JSON text (complete or cut), unescaped as JSON would.
fn json_strings(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '"' {
            continue;
        }
        let mut s = String::new();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => match chars.next() {
                    Some('n') => s.push('\n'),
                    Some('t') => s.push('\t'),
                    Some('u') => {
                        let hex: String = chars.by_ref().take(4).collect();
                        if let Some(ch) =
                            u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32)
                        {
                            s.push(ch);
                        }
                    }
                    Some(other) => s.push(other),
                    None => break,
                },
                _ => s.push(c),
            }
        }
        out.push(s);
    }
    out
}
