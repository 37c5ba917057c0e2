// Over 400 lines: one table of ingest, graph, drawing and suggestion cases sharing mk_* fixtures.
use super::*;
use weft_filter_core::telemetry::{sign, AuthzOutcome, Batch, LocalReply, Record};

const NOW: u64 = 1_800_000_000_000;
const EXEC: &str = "spiffe://cluster.local/ns/default/sa/exec-portal";
const SHADOW: &str = "spiffe://cluster.local/ns/default/sa/shadow-dashboard";

fn mk_telemetry() -> Arc<Telemetry> {
    let t = Telemetry::new(GroupKeys::new(b"test secret".to_vec()));
    t.set_services(vec![KnownService {
        namespace: "default".into(),
        name: "reviews".into(),
        host: "reviews".into(),
        stable: "v1".into(),
    }]);
    t
}

fn mk_record<'a>(
    source: &'a str,
    destination: &'a str,
    version: &'a str,
    status: u16,
) -> Record<'a> {
    Record {
        source,
        destination,
        version,
        status,
        latency_us: 2_500,
        authz: if status == 403 {
            AuthzOutcome::Denied
        } else {
            AuthzOutcome::Allowed
        },
        local: None,
        marks: Default::default(),
        method: "GET",
        path: "/reports/q3",
    }
}

/// A signed batch from `default/service/v1` (`reporter`) holding `records`.
fn mk_batch(
    t: &Telemetry,
    reporter: Direction,
    service: &str,
    records: &[Record<'_>],
) -> (Vec<u8>, String) {
    mk_batch_in(t, reporter, "default", service, records)
}

/// A signed batch from `namespace/service/v1` (`reporter`) holding `records`.
fn mk_batch_in(
    t: &Telemetry,
    reporter: Direction,
    namespace: &str,
    service: &str,
    records: &[Record<'_>],
) -> (Vec<u8>, String) {
    let mut batch = Batch::new(64, 16);
    for r in records {
        batch.record(r);
    }
    let body = batch
        .take(reporter, namespace, service, "v1")
        .unwrap()
        .encode()
        .unwrap();
    let sig = sign(&t.keys().key(namespace, service, "v1"), &body);
    (body, sig)
}

#[test]
fn ingest_checks_the_group_signature() {
    let t = mk_telemetry();
    let (body, sig) = mk_batch(
        &t,
        Direction::Inbound,
        "finance-reporting",
        &[mk_record(EXEC, "x", "y", 200)],
    );
    assert_eq!(t.ingest_at(&body, None, NOW), Err(IngestError::Unsigned));
    assert!(matches!(
        t.ingest_at(&body, Some("00"), NOW),
        Err(IngestError::BadSignature(_))
    ));
    // Another group's key does not sign for this group.
    let forged = sign(&t.keys().key("default", "shipping", "v1"), &body);
    assert!(matches!(
        t.ingest_at(&body, Some(&forged), NOW),
        Err(IngestError::BadSignature(_))
    ));
    assert!(matches!(
        t.ingest_at(b"{", Some(&sig), NOW),
        Err(IngestError::Malformed(_))
    ));
    assert_eq!(t.ingest_at(&body, Some(&sig), NOW), Ok(1));
    assert_eq!(t.stats.rejected.load(Ordering::Relaxed), 4);
    assert_eq!(t.stats.batches.load(Ordering::Relaxed), 1);
}

#[test]
fn the_graph_merges_reports_marks_denials_and_breakers_and_shows_the_split() {
    let t = mk_telemetry();
    let mut inbound = vec![mk_record(EXEC, "ignored", "ignored", 200); 10];
    inbound.extend(vec![mk_record(SHADOW, "", "", 403); 3]);
    let (body, sig) = mk_batch(&t, Direction::Inbound, "finance-reporting", &inbound);
    t.ingest_at(&body, Some(&sig), NOW).unwrap();
    let mut outbound = vec![mk_record("", "finance-reporting", "v1", 200); 10];
    // The stable fallback (no version) resolves to reviews' stable version.
    outbound.extend(vec![mk_record("", "reviews", "", 200); 9]);
    outbound.push(mk_record("", "reviews", "v2", 200));
    let mut open = mk_record("", "reviews", "v2", 503);
    open.local = Some(LocalReply::FailFast);
    outbound.push(open);
    let (body, sig) = mk_batch(&t, Direction::Outbound, "exec-portal", &outbound);
    t.ingest_at(&body, Some(&sig), NOW).unwrap();

    let g = t.graph_at(60, NOW + 1000);
    let find = |s: &str, d: &str, v: &str| {
        g.edges
            .iter()
            .find(|e| e.source == s && e.destination == d && e.version == v)
            .unwrap()
    };
    let exec = find("exec-portal", "finance-reporting", "v1");
    assert_eq!(
        exec.requests, 10,
        "the callee's count, not both reports added"
    );
    assert_eq!(exec.reported_by, vec!["inbound", "outbound"]);
    assert_eq!(exec.principals, vec![EXEC.to_string()]);
    assert_eq!((exec.p50_ms, exec.p99_ms), (Some(3), Some(3)));
    let shadow = find("shadow-dashboard", "finance-reporting", "v1");
    assert_eq!((shadow.requests, shadow.denied), (3, 3));
    let v2 = find("exec-portal", "reviews", "v2");
    assert_eq!((v2.requests, v2.breaker_open, v2.errors), (2, 1, 1));
    assert_eq!(find("exec-portal", "reviews", "v1").requests, 9);
    let split = g
        .splits
        .iter()
        .find(|s| s.destination == "reviews")
        .unwrap();
    assert_eq!(split.requests, 11);
    assert!((split.observed["v1"] - 0.818).abs() < 0.001, "{split:?}");
    let finance = g
        .nodes
        .iter()
        .find(|n| n.id == "finance-reporting")
        .unwrap();
    assert_eq!(finance.versions, vec!["v1".to_string()]);
    // Outside the window: gone from the graph, still in the Prometheus totals.
    let later = t.graph_at(60, NOW + 120_000);
    assert!(later.edges.is_empty());
    let text = prometheus::render(&t, NOW + 120_000);
    assert!(text.contains("weft_edge_requests_total{reporter=\"inbound\",source=\"exec-portal\",destination=\"finance-reporting\",version=\"v1\"} 10"), "{text}");
    assert!(text.contains("weft_edge_denied_total{reporter=\"inbound\",source=\"shadow-dashboard\",destination=\"finance-reporting\",version=\"v1\"} 3"), "{text}");
    assert!(text.contains("weft_edge_latency_ms_bucket{reporter=\"inbound\",source=\"exec-portal\",destination=\"finance-reporting\",version=\"v1\",le=\"3\"} 10"), "{text}");
    assert!(text.contains("weft_telemetry_batches_total 2"));
}

/// What the demo lost: aborts the caller's fault stage injected never reach the callee, so
/// its report lacks them; the caller's report adds them to the edge, with fail-fasts, the
/// delays, dry-run verdicts and the breaker's phase.
#[test]
fn local_replies_of_the_caller_are_added_to_the_callees_view_by_cause() {
    let t = mk_telemetry();
    t.set_services(vec![KnownService {
        namespace: "default".into(),
        name: "ratings".into(),
        host: "ratings".into(),
        stable: "v1".into(),
    }]);
    let reviews = "spiffe://cluster.local/ns/default/sa/reviews";
    let mut served = mk_record(reviews, "", "", 200);
    served.latency_us = 40_000;
    let (body, sig) = mk_batch(&t, Direction::Inbound, "ratings", &vec![served; 52]);
    t.ingest_at(&body, Some(&sig), NOW).unwrap();
    // The caller saw the 52 come back, answered 45 with an abort and 3 with a fail-fast.
    let mut outbound = Vec::new();
    let mut reached = mk_record("", "ratings", "", 200);
    reached.latency_us = 41_000;
    reached.marks.fault.delayed = true;
    reached.marks.breaker.phase = Some(weft_filter_core::breaker::Phase::Closed);
    outbound.extend(vec![reached.clone(); 10]);
    reached.marks.fault.delayed = false;
    reached.marks.fault.would_abort = true;
    outbound.extend(vec![reached; 42]);
    let mut abort = mk_record("", "ratings", "", 503);
    abort.local = Some(LocalReply::Aborted);
    outbound.extend(vec![abort; 45]);
    let mut fail_fast = mk_record("", "ratings", "", 503);
    fail_fast.local = Some(LocalReply::FailFast);
    fail_fast.marks.breaker.phase = Some(weft_filter_core::breaker::Phase::Open);
    outbound.extend(vec![fail_fast; 3]);
    let (body, sig) = mk_batch(&t, Direction::Outbound, "reviews", &outbound);
    t.ingest_at(&body, Some(&sig), NOW + 10).unwrap();

    let g = t.graph_at(60, NOW + 1000);
    let e = g
        .edges
        .iter()
        .find(|e| e.source == "reviews" && e.destination == "ratings")
        .unwrap();
    assert_eq!(e.version, "v1", "the stable fallback resolved");
    assert_eq!((e.requests, e.total_requests), (100, 100));
    assert_eq!((e.errors, e.error_rate), (48, 0.48));
    assert_eq!(
        (e.aborted, e.breaker_open, e.unreached, e.denied),
        (45, 3, 0, 0)
    );
    assert_eq!(
        e.local_replies,
        [("aborted", 45), ("fail_fast", 3)].into_iter().collect()
    );
    assert_eq!(e.status.get("2xx"), Some(&52));
    assert_eq!(e.status.get("5xx"), Some(&48));
    // Latency is the callee's measure of what it served (40 ms: the 50 ms bucket).
    assert_eq!((e.p50_ms, e.p99_ms), (Some(50), Some(50)));
    assert_eq!((e.delayed, e.would_abort, e.would_fail_fast), (10, 42, 0));
    let b = e.breaker.as_ref().unwrap();
    assert_eq!((b.state, b.closed, b.open, b.half_open), ("open", 52, 3, 0));
    // One node per service, one arrow with its label; no two boxes overlap.
    let ids: Vec<&str> = g.nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids, vec!["ratings", "reviews"]);
    assert_eq!(g.links.len(), 1);
    let text: Vec<&str> = g.links[0].lines.iter().map(|l| l.text.as_str()).collect();
    assert!(text[0].starts_with("v1: 100 rq"), "{text:?}");
    assert!(
        text.iter()
            .any(|l| l.contains("aborted 45 · fail-fast 3 · delayed 10")),
        "{text:?}"
    );
    assert!(text.iter().any(|l| l.contains("breaker open")), "{text:?}");
    assert!(
        text.iter().any(|l| l.contains("dry run would: abort 42")),
        "{text:?}"
    );
    assert_eq!(g.links[0].status, "breaker");
    let boxes: Vec<layout::Rect> = g
        .nodes
        .iter()
        .map(|n| n.rect)
        .chain(g.links.iter().map(|l| l.label))
        .collect();
    for (i, a) in boxes.iter().enumerate() {
        for b in &boxes[i + 1..] {
            assert!(!a.intersects(b), "{a:?} {b:?}");
        }
    }
}

#[test]
fn the_suggestion_allows_exactly_the_seen_callers_and_parses_as_a_policy() {
    let t = mk_telemetry();
    let other = "spiffe://cluster.local/ns/default/sa/auditor";
    let mut records = vec![mk_record(EXEC, "", "", 200); 5];
    let mut post = mk_record(other, "", "", 200);
    post.method = "POST";
    post.path = "/reports";
    records.push(post);
    records.extend(vec![mk_record(SHADOW, "", "", 403); 2]);
    records.push(mk_record("", "", "", 200));
    let (body, sig) = mk_batch(&t, Direction::Inbound, "finance-reporting", &records);
    t.ingest_at(&body, Some(&sig), NOW).unwrap();
    let s = suggest::suggest_at(&t, "default", "finance-reporting", 300, true, NOW);
    let principals: Vec<&str> = s.callers.iter().map(|c| c.principal.as_str()).collect();
    assert_eq!(principals, vec![other, EXEC]);
    assert_eq!(s.callers[1].methods, vec!["GET"]);
    assert_eq!(s.callers[1].paths, vec!["/reports/q3"]);
    assert_eq!(s.excluded.len(), 2, "{:?}", s.excluded);
    assert!(s.yaml.contains("dryRun: true"), "{}", s.yaml);
    assert!(
        s.yaml
            .contains("left out: spiffe://cluster.local/ns/default/sa/shadow-dashboard"),
        "{}",
        s.yaml
    );
    let docs =
        weft_policy::parse_documents(s.yaml.as_bytes(), &weft_policy::Limits::default()).unwrap();
    assert_eq!(docs.len(), 1);
}

#[test]
fn windows_parse_with_units_and_bounds() {
    assert_eq!(routes_parse("30s"), Ok(30));
    assert_eq!(routes_parse("5m"), Ok(300));
    assert_eq!(routes_parse("1h"), Ok(3600));
    assert_eq!(routes_parse("90"), Ok(90));
    assert!(routes_parse("2h").is_err());
    assert!(routes_parse("0s").is_err());
    assert!(routes_parse("5d").is_err());
    assert!(routes_parse("m").is_err());
    // Overflowing products are refused, not wrapped: (2^62 + 1) * 60 wraps to 60 s.
    assert!(routes_parse("4611686018427387905m").is_err());
    assert!(routes_parse("5124095576030431h").is_err());
    assert!(routes_parse("99999999999999999999").is_err());
}

fn routes_parse(text: &str) -> Result<u64, String> {
    routes::parse_window(Some(text))
}

#[test]
fn a_caller_allowed_once_but_denied_when_last_seen_is_left_out() {
    let t = mk_telemetry();
    let (body, sig) = mk_batch(
        &t,
        Direction::Inbound,
        "shipping",
        &[mk_record(SHADOW, "", "", 200), mk_record(EXEC, "", "", 200)],
    );
    t.ingest_at(&body, Some(&sig), NOW).unwrap();
    let (body, sig) = mk_batch(
        &t,
        Direction::Inbound,
        "shipping",
        &[mk_record(SHADOW, "", "", 403)],
    );
    t.ingest_at(&body, Some(&sig), NOW + 10_000).unwrap();
    let s = suggest::suggest_at(&t, "default", "shipping", 300, false, NOW + 20_000);
    assert_eq!(s.callers.len(), 1, "{s:?}");
    assert_eq!(s.callers[0].principal, EXEC);
    assert_eq!(s.excluded[0].0, SHADOW);
    assert!(!s.yaml.contains("dryRun"), "{}", s.yaml);
}

#[test]
fn the_suggestion_for_a_reviews_leaves_out_callers_of_b_reviews() {
    let t = mk_telemetry();
    let caller_of_a = "spiffe://cluster.local/ns/a/sa/productpage";
    let caller_of_b = "spiffe://cluster.local/ns/b/sa/ratings";
    let (body, sig) = mk_batch_in(
        &t,
        Direction::Inbound,
        "a",
        "reviews",
        &[mk_record(caller_of_a, "", "", 200)],
    );
    t.ingest_at(&body, Some(&sig), NOW).unwrap();
    let (body, sig) = mk_batch_in(
        &t,
        Direction::Inbound,
        "b",
        "reviews",
        &[mk_record(caller_of_b, "", "", 200)],
    );
    t.ingest_at(&body, Some(&sig), NOW).unwrap();
    let a = suggest::suggest_at(&t, "a", "reviews", 300, false, NOW);
    let principals: Vec<&str> = a.callers.iter().map(|c| c.principal.as_str()).collect();
    assert_eq!(principals, vec![caller_of_a]);
    let b = suggest::suggest_at(&t, "b", "reviews", 300, false, NOW);
    let principals: Vec<&str> = b.callers.iter().map(|c| c.principal.as_str()).collect();
    assert_eq!(principals, vec![caller_of_b]);
    let none = suggest::suggest_at(&t, "default", "reviews", 300, false, NOW);
    assert!(none.callers.is_empty(), "{none:?}");
}

#[test]
fn hostile_counts_saturate_instead_of_overflowing() {
    let mut big = crate::window::Counts {
        requests: u64::MAX,
        ..Default::default()
    };
    big.status = [u64::MAX; 6];
    big.latency[0] = u64::MAX;
    let mut sum = big.clone();
    sum.merge(&big);
    sum.add_caller_view(&big);
    assert_eq!(sum.requests, u64::MAX);
    assert_eq!(sum.errors(), u64::MAX);
    assert_eq!(
        sum.quantile_ms(0.99),
        Some(weft_filter_core::telemetry::LATENCY_BOUNDS_MS[0])
    );
}

#[test]
fn a_gateways_waf_verdicts_are_on_the_edge_from_external() {
    use weft_filter_core::telemetry::INGRESS_SOURCE;
    let t = mk_telemetry();
    let mut blocked = mk_record(INGRESS_SOURCE, "gateway", "v1", 403);
    blocked.authz = AuthzOutcome::Allowed;
    blocked.local = Some(LocalReply::WafBlocked);
    let mut detected = mk_record(INGRESS_SOURCE, "gateway", "v1", 200);
    detected.marks.waf.detected = true;
    let mut records = vec![blocked; 4];
    records.extend(vec![detected; 2]);
    records.extend(vec![mk_record("", "reviews", "v1", 200); 2]);
    let (body, sig) = mk_batch(&t, Direction::Outbound, "gateway", &records);
    t.ingest_at(&body, Some(&sig), NOW).unwrap();
    let g = t.graph_at(60, NOW + 1000);
    let e = g.edges.iter().find(|e| e.destination == "gateway").unwrap();
    assert_eq!((e.source.as_str(), e.version.as_str()), (EXTERNAL, "v1"));
    assert_eq!((e.requests, e.waf_blocked, e.waf_would_block), (6, 4, 2));
    assert_eq!(e.local_replies, [("waf", 4)].into_iter().collect());
    assert_eq!(e.reported_by, vec!["inbound"]);
    let onwards = g.edges.iter().find(|e| e.destination == "reviews").unwrap();
    assert_eq!((onwards.source.as_str(), onwards.requests), ("gateway", 2));
    let link = g.links.iter().find(|l| l.destination == "gateway").unwrap();
    let text: Vec<&str> = link.lines.iter().map(|l| l.text.as_str()).collect();
    assert!(text.iter().any(|l| l.contains("waf blocked 4")), "{text:?}");
    assert!(text.iter().any(|l| l.contains("waf-block 2")), "{text:?}");
    assert_eq!(link.status, "denied");
    // Not a caller a policy could name.
    let s = suggest::suggest_at(&t, "default", "gateway", 60, true, NOW + 1000);
    assert!(s.callers.is_empty(), "{s:?}");
}
