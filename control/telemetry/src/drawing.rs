//! The graph as a drawing: the text of every box (a service; the label of the arrow from
//! one service to another, a block of lines per version), its size in the page's font, and
//! the positions [`crate::layout`] gives them. The page only draws what this says, so the
//! boxes it draws are the boxes the layout kept apart.

use std::collections::BTreeMap;

use crate::graph::{Graph, GraphEdge, LabelLine, Link};
use crate::layout::{layout, Rect, Size};

/// The page draws every box's text in a 12 px monospace font: one character is 0.6 em
/// (7.2 px) in the usual monospace fonts (DejaVu Sans Mono, Liberation Mono); a little
/// more is kept so a wider fallback font still fits.
pub const CHAR_W: f64 = 7.6;
pub const LINE_H: f64 = 15.0;
pub const PAD: f64 = 6.0;

/// Width of `text` in the page's font: wide (East Asian) characters count twice.
fn text_width(text: &str) -> f64 {
    let cells: usize = text
        .chars()
        .map(|c| if u32::from(c) >= 0x1100 { 2 } else { 1 })
        .sum();
    cells as f64 * CHAR_W
}

fn size_of<'a>(lines: impl Iterator<Item = &'a str>) -> Size {
    let (mut w, mut n) = (0.0f64, 0usize);
    for line in lines {
        w = w.max(text_width(line));
        n += 1;
    }
    Size {
        w: w + 2.0 * PAD,
        h: n.max(1) as f64 * LINE_H + 2.0 * PAD,
    }
}

/// The lines a service's box shows: its name, the versions called, a rollout's badge.
pub fn node_lines(service: &str, versions: &[String], badge: Option<&str>) -> Vec<String> {
    let mut lines = vec![service.to_string()];
    if !versions.is_empty() {
        lines.push(versions.join(" · "));
    }
    if let Some(badge) = badge {
        lines.push(badge.to_string());
    }
    lines
}

fn ms(v: Option<u64>) -> String {
    v.map_or_else(|| "–".to_string(), |v| format!("{v}ms"))
}

/// A version's block of an arrow's label: its traffic, then (when there are any) what was
/// answered locally and why, the breaker's phase, the dry-run verdicts.
pub fn edge_lines(e: &GraphEdge) -> Vec<LabelLine> {
    let line = |kind, text: String| LabelLine { text, kind };
    let mut out = vec![line(
        "head",
        format!(
            "{}: {} rq {}/s · err {}% · p50 {} p99 {}",
            e.version,
            e.requests,
            e.rate_per_sec,
            round1(e.error_rate * 100.0),
            ms(e.p50_ms),
            ms(e.p99_ms)
        ),
    )];
    let causes: Vec<String> = [
        ("denied", e.denied),
        ("aborted", e.aborted),
        ("fail-fast", e.breaker_open),
        ("unreached", e.unreached),
        ("waf blocked", e.waf_blocked),
    ]
    .iter()
    .filter(|(_, n)| *n > 0)
    .map(|(what, n)| format!("{what} {n}"))
    .chain((e.delayed > 0).then(|| format!("delayed {} ({}/s)", e.delayed, e.delayed_per_sec)))
    .collect();
    if !causes.is_empty() {
        out.push(line("cause", format!("  {}", causes.join(" · "))));
    }
    if let Some(b) = &e.breaker {
        out.push(line("breaker", format!("  breaker {}", b.state)));
    }
    let dry: Vec<String> = [
        ("deny", e.dry_run_denied),
        ("abort", e.would_abort),
        ("delay", e.would_delay),
        ("fail-fast", e.would_fail_fast),
        ("waf-block", e.waf_would_block),
    ]
    .iter()
    .filter(|(_, n)| *n > 0)
    .map(|(what, n)| format!("{what} {n}"))
    .collect();
    if !dry.is_empty() {
        out.push(line(
            "dry-run",
            format!("  dry run would: {}", dry.join(" · ")),
        ));
    }
    out
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// The worst state of an arrow's edges, for its colour.
fn status(edges: &[&GraphEdge]) -> &'static str {
    if edges.iter().any(|e| e.denied > 0 || e.waf_blocked > 0) {
        "denied"
    } else if edges
        .iter()
        .any(|e| e.breaker.as_ref().is_some_and(|b| b.state != "closed") || e.breaker_open > 0)
    {
        "breaker"
    } else if edges.iter().any(|e| e.errors > 0) {
        "error"
    } else {
        "ok"
    }
}

/// Lays `graph` out: its services' boxes (with `badges`), one labelled arrow per caller and
/// callee service, and the drawing's size.
pub(crate) fn draw(graph: &mut Graph, badges: &BTreeMap<String, String>) {
    let index: BTreeMap<String, usize> = graph
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.service.clone(), i))
        .collect();
    for node in &mut graph.nodes {
        node.badge = badges.get(&node.service).cloned();
    }
    let sizes: Vec<Size> = graph
        .nodes
        .iter()
        .map(|n| {
            let lines = node_lines(&n.service, &n.versions, n.badge.as_deref());
            size_of(lines.iter().map(String::as_str))
        })
        .collect();
    // One arrow per (caller, callee) service pair, its versions in order.
    let mut pairs: BTreeMap<(&str, &str), Vec<&GraphEdge>> = BTreeMap::new();
    for e in &graph.edges {
        pairs
            .entry((e.source.as_str(), e.destination.as_str()))
            .or_default()
            .push(e);
    }
    let mut links = Vec::with_capacity(pairs.len());
    let mut wanted = Vec::with_capacity(pairs.len());
    for ((source, destination), list) in &pairs {
        let (Some(&a), Some(&b)) = (index.get(*source), index.get(*destination)) else {
            continue;
        };
        let lines: Vec<LabelLine> = list.iter().flat_map(|e| edge_lines(e)).collect();
        let size = size_of(lines.iter().map(|l| l.text.as_str()));
        wanted.push((a, b, size));
        links.push(Link {
            source: source.to_string(),
            destination: destination.to_string(),
            versions: list.iter().map(|e| e.version.clone()).collect(),
            lines,
            status: status(list),
            label: Rect::default(),
            points: Vec::new(),
        });
    }
    let placed = layout(&sizes, &wanted);
    for (node, rect) in graph.nodes.iter_mut().zip(placed.nodes) {
        node.rect = rect;
    }
    for (link, route) in links.iter_mut().zip(placed.edges) {
        link.label = route.label;
        link.points = route.points;
    }
    graph.links = links;
    graph.width = placed.width;
    graph.height = placed.height;
}
