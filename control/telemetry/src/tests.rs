use super::*;
use weft_filter_core::telemetry::{sign, AuthzOutcome, Batch, Record};

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
        breaker_open: false,
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
    open.breaker_open = true;
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
    assert!(g.nodes.iter().any(|n| n.id == "finance-reporting@v1"));
    // Outside the window: gone from the graph, still in the Prometheus totals.
    let later = t.graph_at(60, NOW + 120_000);
    assert!(later.edges.is_empty());
    let text = prometheus::render(&t, NOW + 120_000);
    assert!(text.contains("weft_edge_requests_total{reporter=\"inbound\",source=\"exec-portal\",destination=\"finance-reporting\",version=\"v1\"} 10"), "{text}");
    assert!(text.contains("weft_edge_denied_total{reporter=\"inbound\",source=\"shadow-dashboard\",destination=\"finance-reporting\",version=\"v1\"} 3"), "{text}");
    assert!(text.contains("weft_edge_latency_ms_bucket{reporter=\"inbound\",source=\"exec-portal\",destination=\"finance-reporting\",version=\"v1\",le=\"3\"} 10"), "{text}");
    assert!(text.contains("weft_telemetry_batches_total 2"));
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
