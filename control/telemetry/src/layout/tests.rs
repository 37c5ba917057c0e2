//! The layout: no overlaps, layers follow the calls, crossings are removed where they can
//! be, cycles and self loops are laid out, and bad indices are ignored.

use super::*;

fn node(name: &str) -> Size {
    Size {
        w: 7.5 * name.len() as f64 + 16.0,
        h: 36.0,
    }
}

fn label(lines: usize) -> Size {
    Size {
        w: 200.0,
        h: 16.0 * lines as f64 + 8.0,
    }
}

/// The demo mesh: eight workloads, the gateway, and the calls the demo makes.
fn demo() -> (Vec<Size>, Vec<(usize, usize, Size)>) {
    let names = [
        "gateway",
        "exec-portal",
        "shadow-dashboard",
        "finance-reporting",
        "shipping",
        "reviews",
        "ratings",
        "payments",
    ];
    let nodes = names.iter().map(|n| node(n)).collect();
    let edges = [
        (0, 5, 3),
        (1, 3, 2),
        (1, 5, 3),
        (1, 4, 2),
        (2, 4, 2),
        (2, 3, 2),
        (5, 6, 4),
        (5, 4, 2),
        (1, 7, 3),
    ]
    .iter()
    .map(|&(a, b, l)| (a, b, label(l)))
    .collect();
    (nodes, edges)
}

#[test]
fn the_demo_mesh_has_no_overlapping_boxes_and_callers_left_of_callees() {
    let (nodes, edges) = demo();
    let l = layout(&nodes, &edges);
    assert_eq!(l.overlaps(), Vec::<(usize, usize)>::new(), "{l:#?}");
    for &(a, b, _) in &edges {
        assert!(l.nodes[a].x < l.nodes[b].x, "{a} -> {b}: {l:#?}");
    }
    for (e, route) in l.edges.iter().enumerate() {
        let (a, b, _) = edges[e];
        assert!(route.label.x > l.nodes[a].x && route.label.x < l.nodes[b].x);
        assert_eq!(
            route.points.first(),
            Some(&(l.nodes[a].x + l.nodes[a].w / 2.0, l.nodes[a].y))
        );
        assert_eq!(
            route.points.last(),
            Some(&(l.nodes[b].x - l.nodes[b].w / 2.0, l.nodes[b].y))
        );
    }
    for r in l.nodes.iter().chain(l.edges.iter().map(|e| &e.label)) {
        assert!(
            r.x - r.w / 2.0 >= 0.0 && r.x + r.w / 2.0 <= l.width,
            "{r:?} in {}",
            l.width
        );
        assert!(
            r.y - r.h / 2.0 >= 0.0 && r.y + r.h / 2.0 <= l.height,
            "{r:?} in {}",
            l.height
        );
    }
}

/// Crossings of a layout whose edges all join neighbouring ranks: each route is caller,
/// label, callee in three columns; two pieces cross when their ends swap order.
fn two_rank_crossings(l: &Layout, edges: &[(usize, usize, Size)]) -> usize {
    let ys: Vec<[f64; 3]> = edges
        .iter()
        .zip(&l.edges)
        .map(|(&(a, b, _), r)| [l.nodes[a].y, r.label.y, l.nodes[b].y])
        .collect();
    let mut n = 0;
    for (i, e) in ys.iter().enumerate() {
        for f in &ys[i + 1..] {
            for k in 0..2 {
                if (e[k] - f[k]) * (e[k + 1] - f[k + 1]) < 0.0 {
                    n += 1;
                }
            }
        }
    }
    n
}

#[test]
fn crossings_are_removed_when_an_order_without_them_exists() {
    // Listed so that the first order crosses: a -> d, b -> c, a -> c.
    let nodes: Vec<Size> = ["a", "b", "c", "d"].iter().map(|n| node(n)).collect();
    let edges = vec![(0, 3, label(1)), (1, 2, label(1)), (0, 2, label(1))];
    let reversed = back_edges(4, &edges);
    assert_eq!(ranks(4, &edges, &reversed), vec![0, 0, 1, 1]);
    let l = layout(&nodes, &edges);
    assert_eq!(two_rank_crossings(&l, &edges), 0, "{l:#?}");
    assert!(l.overlaps().is_empty());
}

#[test]
fn barycentre_sweeps_reach_zero_crossings_on_a_crossed_ladder() {
    // Columns: 0 = [0, 1, 2], 2 = [3, 4, 5], wired in reverse: ordering must flip.
    let nodes: Vec<Size> = (0..6).map(|_| node("svc")).collect();
    let edges: Vec<(usize, usize, Size)> =
        vec![(0, 5, label(1)), (1, 4, label(1)), (2, 3, label(1))];
    let l = layout(&nodes, &edges);
    assert_eq!(two_rank_crossings(&l, &edges), 0, "{l:#?}");
    assert!(l.overlaps().is_empty());
}

#[test]
fn cycles_self_loops_and_bad_indices_are_laid_out_without_overlaps() {
    let nodes: Vec<Size> = ["a", "b", "c"].iter().map(|n| node(n)).collect();
    let edges = vec![
        (0, 1, label(2)),
        (1, 2, label(2)),
        (2, 0, label(2)),
        (1, 1, label(1)),
        (0, 9, label(1)),
    ];
    let l = layout(&nodes, &edges);
    assert!(l.overlaps().is_empty(), "{l:#?}");
    assert_eq!(l.edges.len(), 5);
    // The back edge c -> a starts at c and ends at a.
    let back = &l.edges[2];
    assert_eq!(
        back.points.first().map(|p| p.0),
        Some(l.nodes[2].x - l.nodes[2].w / 2.0)
    );
    assert!(back.points.len() >= 3);
    // The self loop leaves and re-enters b.
    let own = &l.edges[3];
    assert!(own.label.x > l.nodes[1].x, "{own:?}");
    assert!(l.edges[4].points.is_empty());
}

#[test]
fn long_edges_get_dummies_and_their_labels_stay_next_to_the_caller() {
    // a -> b -> c and a -> c: the long edge's label sits in the column after a.
    let nodes: Vec<Size> = ["a", "b", "c"].iter().map(|n| node(n)).collect();
    let edges = vec![(0, 1, label(1)), (1, 2, label(1)), (0, 2, label(3))];
    let l = layout(&nodes, &edges);
    assert!(l.overlaps().is_empty(), "{l:#?}");
    let long = &l.edges[2];
    assert!(long.label.x < l.nodes[1].x, "{long:?}");
    assert!(
        long.points.len() >= 5,
        "label ends, dummies, ends: {long:?}"
    );
}

#[test]
fn many_services_in_one_column_are_stacked_apart() {
    let mut nodes = vec![node("caller")];
    let mut edges = Vec::new();
    for i in 0..40 {
        nodes.push(node(&format!("service-{i}")));
        edges.push((0, i + 1, label(1 + i % 3)));
    }
    let l = layout(&nodes, &edges);
    assert!(l.overlaps().is_empty());
    assert!(l.height > 40.0 * 36.0);
}

#[test]
fn an_empty_graph_has_an_empty_layout() {
    let l = layout(&[], &[]);
    assert!(l.nodes.is_empty() && l.edges.is_empty());
    assert!(l.width > 0.0 && l.height > 0.0);
}
