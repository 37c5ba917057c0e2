//! A layered (Sugiyama) layout of the service graph, host-free: boxes of known size for
//! the services and for the edges' labels, placed left to right so that no two boxes
//! overlap, with few crossings.
//!
//! 1. Cycles are broken by reversing the back edges of a depth-first search.
//! 2. Layers: the longest path from a service nobody calls. Services sit in even columns;
//!    every edge gets its label as a box in the odd column right after its caller's (the
//!    "label node" of a labelled Sugiyama layout) and zero-width dummies in the columns it
//!    crosses after that, so each piece of an edge joins neighbouring columns.
//! 3. Crossing reduction: barycentre sweeps, right then left, keeping the ordering with the
//!    fewest crossings (counted exactly).
//! 4. Coordinates: columns as wide as their widest box; within a column boxes keep their
//!    order, pulled towards the mean height of their neighbours, and a final pass pushes
//!    them apart by their heights plus a gap. That last pass is what guarantees that no
//!    two boxes overlap; [`Layout::overlaps`] checks it (the tests and the e2e do too).
//!
//! No crate was taken for this: `layout-rs` lays out whole dot graphs and renders its own
//! SVG, while the page needs label boxes as first-class nodes, sizes measured by the
//! caller, and positions as data (decision D67).

/// Width and height of a box.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Size {
    pub w: f64,
    pub h: f64,
}

/// A placed box: its centre and size.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Rect {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

impl Rect {
    /// Whether the two boxes share any area (touching edges do not count).
    pub fn intersects(&self, other: &Rect) -> bool {
        (self.x - other.x).abs() * 2.0 < self.w + other.w
            && (self.y - other.y).abs() * 2.0 < self.h + other.h
    }
}

/// One laid-out edge: its label's box and the polyline from the caller's box through the
/// label to the callee's box.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Route {
    pub label: Rect,
    pub points: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub nodes: Vec<Rect>,
    pub edges: Vec<Route>,
    pub width: f64,
    pub height: f64,
}

/// Horizontal gap between columns, vertical gap between boxes of a column, margin.
const COLUMN_GAP: f64 = 36.0;
const ROW_GAP: f64 = 14.0;
const MARGIN: f64 = 12.0;
/// Height a dummy (an edge passing through a column) keeps free.
const DUMMY_H: f64 = 8.0;
const SWEEPS: usize = 12;
const MAX_REORDERED: usize = 1500;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Vertex {
    Node(usize),
    Label(usize),
    Dummy,
}

/// Lays out `nodes` (their sizes) and `edges` (caller, callee, label size). Edges naming a
/// node out of range are laid out as if absent (their route is empty).
pub fn layout(nodes: &[Size], edges: &[(usize, usize, Size)]) -> Layout {
    let n = nodes.len();
    let valid = |&(a, b, _): &(usize, usize, Size)| a < n && b < n;
    let reversed = back_edges(n, edges);
    let rank = ranks(n, edges, &reversed);
    let columns = rank.iter().map(|r| 2 * r + 1).max().unwrap_or(0) + 1;
    let columns = columns.max(
        edges
            .iter()
            .filter(|e| valid(e))
            .map(|(a, _, _)| rank.get(*a).map_or(0, |r| 2 * r + 2))
            .max()
            .unwrap_or(0),
    );
    // Vertices per column, their sizes, and each edge's chain of vertex ids.
    let mut kind: Vec<Vertex> = Vec::new();
    let mut size: Vec<Size> = Vec::new();
    let mut column_of: Vec<usize> = Vec::new();
    let mut add = |k: Vertex, s: Size, c: usize, kind: &mut Vec<Vertex>| {
        kind.push(k);
        size.push(s);
        column_of.push(c);
        kind.len() - 1
    };
    for (i, s) in nodes.iter().enumerate() {
        add(Vertex::Node(i), *s, 2 * rank[i], &mut kind);
    }
    let mut chains: Vec<Vec<usize>> = Vec::with_capacity(edges.len());
    for (e, &(a, b, label)) in edges.iter().enumerate() {
        if a >= n || b >= n {
            chains.push(Vec::new());
            continue;
        }
        let (from, to) = if reversed[e] { (b, a) } else { (a, b) };
        let start = 2 * rank[from];
        let mut chain = vec![from];
        chain.push(add(Vertex::Label(e), label, start + 1, &mut kind));
        let end = if from == to { start } else { 2 * rank[to] };
        for c in start + 2..end {
            chain.push(add(
                Vertex::Dummy,
                Size { w: 0.0, h: DUMMY_H },
                c,
                &mut kind,
            ));
        }
        chain.push(to);
        chains.push(chain);
    }
    let vertices = kind.len();
    // Neighbours in the column before and after.
    let mut left: Vec<Vec<usize>> = vec![Vec::new(); vertices];
    let mut right: Vec<Vec<usize>> = vec![Vec::new(); vertices];
    for chain in &chains {
        for pair in chain.windows(2) {
            let (u, v) = (pair[0], pair[1]);
            if column_of[u] < column_of[v] {
                right[u].push(v);
                left[v].push(u);
            } else {
                // A self loop's way back, or the label back to its own node.
                left[u].push(v);
                right[v].push(u);
            }
        }
    }
    let mut order: Vec<Vec<usize>> = vec![Vec::new(); columns];
    for (v, &c) in column_of.iter().enumerate() {
        order[c].push(v);
    }
    let order = reduce_crossings(order, &left, &right, vertices);
    let (placed, width, height) = coordinates(&order, &size, &left, &right, vertices);
    let nodes_out = (0..n).map(|i| placed[i]).collect();
    let edges_out = chains
        .iter()
        .enumerate()
        .map(|(e, chain)| route(e, chain, &kind, &placed, reversed.get(e) == Some(&true)))
        .collect();
    Layout {
        nodes: nodes_out,
        edges: edges_out,
        width,
        height,
    }
}

/// Edges that close a cycle in a depth-first search from every node in order: laid out
/// reversed (self loops are not reversed; they have their own shape).
fn back_edges(n: usize, edges: &[(usize, usize, Size)]) -> Vec<bool> {
    let mut out_edges: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (e, &(a, b, _)) in edges.iter().enumerate() {
        if a < n && b < n && a != b {
            out_edges[a].push(e);
        }
    }
    // 0 new, 1 on the stack, 2 done.
    let mut state = vec![0u8; n];
    let mut reversed = vec![false; edges.len()];
    for root in 0..n {
        if state[root] != 0 {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
        state[root] = 1;
        while let Some(&mut (v, ref mut next)) = stack.last_mut() {
            if let Some(&e) = out_edges[v].get(*next) {
                *next += 1;
                let w = edges[e].1;
                match state[w] {
                    0 => {
                        state[w] = 1;
                        stack.push((w, 0));
                    }
                    1 => reversed[e] = true,
                    _ => {}
                }
            } else {
                state[v] = 2;
                stack.pop();
            }
        }
    }
    reversed
}

/// Longest path from the sources of the acyclic graph (back edges reversed).
fn ranks(n: usize, edges: &[(usize, usize, Size)], reversed: &[bool]) -> Vec<usize> {
    let mut succ: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut indegree = vec![0usize; n];
    for (e, &(a, b, _)) in edges.iter().enumerate() {
        if a >= n || b >= n || a == b {
            continue;
        }
        let (from, to) = if reversed[e] { (b, a) } else { (a, b) };
        succ[from].push(to);
        indegree[to] += 1;
    }
    let mut rank = vec![0usize; n];
    let mut ready: Vec<usize> = (0..n).filter(|&v| indegree[v] == 0).collect();
    while let Some(v) = ready.pop() {
        for &w in &succ[v] {
            rank[w] = rank[w].max(rank[v] + 1);
            indegree[w] -= 1;
            if indegree[w] == 0 {
                ready.push(w);
            }
        }
    }
    rank
}

/// Crossings between two neighbouring columns, counted pair by pair.
fn crossings(order: &[Vec<usize>], right: &[Vec<usize>], vertices: usize) -> usize {
    let mut pos = vec![0usize; vertices];
    for column in order {
        for (i, &v) in column.iter().enumerate() {
            pos[v] = i;
        }
    }
    let mut total = 0;
    for column in order {
        let segments: Vec<(usize, usize)> = column
            .iter()
            .flat_map(|&u| right[u].iter().map(move |&v| (u, v)))
            .map(|(u, v)| (pos[u], pos[v]))
            .collect();
        for (i, a) in segments.iter().enumerate() {
            for b in &segments[i + 1..] {
                if (a.0 < b.0 && a.1 > b.1) || (a.0 > b.0 && a.1 < b.1) {
                    total += 1;
                }
            }
        }
    }
    total
}

/// Barycentre sweeps; the best ordering seen wins.
fn reduce_crossings(
    mut order: Vec<Vec<usize>>,
    left: &[Vec<usize>],
    right: &[Vec<usize>],
    vertices: usize,
) -> Vec<Vec<usize>> {
    // Counting is quadratic in a column's edges: a mesh this large keeps its first order.
    if vertices > MAX_REORDERED {
        return order;
    }
    let mut best = order.clone();
    let mut best_crossings = crossings(&order, right, vertices);
    let mut pos = vec![0.0f64; vertices];
    for sweep in 0..SWEEPS {
        if best_crossings == 0 {
            break;
        }
        let forward = sweep % 2 == 0;
        let columns: Vec<usize> = if forward {
            (1..order.len()).collect()
        } else {
            (0..order.len().saturating_sub(1)).rev().collect()
        };
        for c in columns {
            for column in &order {
                for (i, &v) in column.iter().enumerate() {
                    pos[v] = i as f64;
                }
            }
            let neighbours = if forward { left } else { right };
            let mut keyed: Vec<(f64, usize)> = order[c]
                .iter()
                .map(|&v| {
                    let ns = &neighbours[v];
                    let key = if ns.is_empty() {
                        pos[v]
                    } else {
                        ns.iter().map(|&u| pos[u]).sum::<f64>() / ns.len() as f64
                    };
                    (key, v)
                })
                .collect();
            keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
            order[c] = keyed.into_iter().map(|(_, v)| v).collect();
        }
        let now = crossings(&order, right, vertices);
        if now < best_crossings {
            best_crossings = now;
            best = order.clone();
        }
    }
    best
}

/// Column x from the widest box before it; y pulled towards the neighbours, then pushed
/// apart so no two boxes of a column overlap.
fn coordinates(
    order: &[Vec<usize>],
    size: &[Size],
    left: &[Vec<usize>],
    right: &[Vec<usize>],
    vertices: usize,
) -> (Vec<Rect>, f64, f64) {
    let mut x = vec![0.0f64; vertices];
    let mut y = vec![0.0f64; vertices];
    let mut at = MARGIN;
    for column in order {
        let width = column.iter().map(|&v| size[v].w).fold(0.0, f64::max);
        for &v in column {
            x[v] = at + width / 2.0;
        }
        at += width + COLUMN_GAP;
    }
    let width = (at - COLUMN_GAP + MARGIN).max(2.0 * MARGIN);
    for column in order {
        separate(column, size, &mut y, None);
    }
    for round in 0..8 {
        let columns: Vec<&Vec<usize>> = if round % 2 == 0 {
            order.iter().collect()
        } else {
            order.iter().rev().collect()
        };
        for column in columns {
            let wanted: Vec<f64> = column
                .iter()
                .map(|&v| {
                    let ns: Vec<usize> = left[v].iter().chain(&right[v]).copied().collect();
                    if ns.is_empty() {
                        y[v]
                    } else {
                        ns.iter().map(|&u| y[u]).sum::<f64>() / ns.len() as f64
                    }
                })
                .collect();
            separate(column, size, &mut y, Some(&wanted));
        }
    }
    let top = (0..vertices)
        .map(|v| y[v] - size[v].h / 2.0)
        .fold(f64::INFINITY, f64::min);
    let shift = if top.is_finite() { MARGIN - top } else { 0.0 };
    let mut bottom: f64 = 2.0 * MARGIN;
    let placed = (0..vertices)
        .map(|v| {
            let r = Rect {
                x: x[v],
                y: y[v] + shift,
                w: size[v].w,
                h: size[v].h,
            };
            bottom = bottom.max(r.y + r.h / 2.0 + MARGIN);
            r
        })
        .collect();
    (placed, width, bottom)
}

/// Places one column's boxes in order, as near their wanted centres as possible (least
/// squares) while at least [`ROW_GAP`] apart: with `z = y - offset` (the offset being the
/// room the boxes above need) the gaps become "z never decreases", an isotonic regression
/// solved exactly by pooling adjacent violators.
fn separate(column: &[usize], size: &[Size], y: &mut [f64], wanted: Option<&[f64]>) {
    let mut offsets = Vec::with_capacity(column.len());
    let mut offset = 0.0;
    let mut previous: Option<usize> = None;
    for &v in column {
        if let Some(p) = previous {
            offset += (size[p].h + size[v].h) / 2.0 + ROW_GAP;
        }
        offsets.push(offset);
        previous = Some(v);
    }
    // Blocks of pooled targets: (sum, count).
    let mut blocks: Vec<(f64, usize)> = Vec::with_capacity(column.len());
    for (i, offset) in offsets.iter().enumerate() {
        let want = wanted.and_then(|w| w.get(i).copied()).unwrap_or(0.0);
        let mut block = (want - offset, 1usize);
        // Pool with the blocks before while they would sit lower than this one.
        while let Some(&(sum, count)) = blocks.last() {
            if sum / count as f64 <= block.0 / block.1 as f64 {
                break;
            }
            blocks.pop();
            block = (sum + block.0, count + block.1);
        }
        blocks.push(block);
    }
    let mut i = 0;
    for (sum, count) in blocks {
        let z = sum / count as f64;
        for _ in 0..count {
            if let (Some(&v), Some(o)) = (column.get(i), offsets.get(i)) {
                y[v] = z + o;
            }
            i += 1;
        }
    }
}

/// The polyline of edge `e`: out of the caller's right side, through its chain, into the
/// callee's left side (a reversed edge is drawn back from its caller).
fn route(e: usize, chain: &[usize], kind: &[Vertex], placed: &[Rect], reversed: bool) -> Route {
    let label = chain.iter().find(|&&v| kind[v] == Vertex::Label(e)).map_or(
        Rect {
            x: 0.0,
            y: 0.0,
            w: 0.0,
            h: 0.0,
        },
        |&v| placed[v],
    );
    let mut points = Vec::with_capacity(chain.len() + 2);
    let last = chain.len().saturating_sub(1);
    for (i, &v) in chain.iter().enumerate() {
        let r = placed[v];
        match kind[v] {
            Vertex::Node(_) if i == 0 => points.push((r.x + r.w / 2.0, r.y)),
            // A self loop comes back into its node's right side.
            Vertex::Node(_) if chain.first() == chain.last() => {
                points.push((r.x + r.w / 2.0, r.y + r.h / 4.0));
            }
            Vertex::Node(_) if i == last => points.push((r.x - r.w / 2.0, r.y)),
            Vertex::Label(_) => {
                points.push((r.x - r.w / 2.0, r.y));
                points.push((r.x + r.w / 2.0, r.y));
            }
            _ => points.push((r.x, r.y)),
        }
    }
    if chain.first() == chain.last() && points.len() == 4 {
        // The label's right end turns back: go round it below.
        points.truncate(2);
        let back = placed[chain[0]];
        points.push((label.x + label.w / 2.0, label.y + label.h / 2.0 + 4.0));
        points.push((back.x + back.w / 2.0, back.y + back.h / 4.0));
    }
    if reversed {
        points.reverse();
    }
    Route { label, points }
}

impl Layout {
    /// Pairs of boxes (services and labels, numbered services first) that overlap: empty
    /// for every layout this module makes.
    pub fn overlaps(&self) -> Vec<(usize, usize)> {
        let boxes: Vec<&Rect> = self
            .nodes
            .iter()
            .chain(self.edges.iter().map(|e| &e.label))
            .collect();
        let mut out = Vec::new();
        for (i, a) in boxes.iter().enumerate() {
            for (j, b) in boxes.iter().enumerate().skip(i + 1) {
                if a.w > 0.0 && b.w > 0.0 && a.intersects(b) {
                    out.push((i, j));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
