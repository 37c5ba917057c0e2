//! The telemetry core: aggregation, caps, drop counting, signatures and config validation.
//! Natively and, through wasm-bindgen-test, on wasm32.

use super::*;

fn mk_record<'a>(source: &'a str, status: u16, latency_us: u64) -> Record<'a> {
    Record {
        source,
        destination: "finance-reporting",
        version: "v1",
        status,
        latency_us,
        authz: AuthzOutcome::Allowed,
        local: None,
        marks: Default::default(),
        method: "GET",
        path: "/reports/q3",
    }
}

#[test]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn aggregates_per_edge_with_status_classes_outcomes_and_latency() {
    let mut batch = Batch::new(8, 4);
    let exec = "spiffe://cluster.local/ns/default/sa/exec-portal";
    for _ in 0..3 {
        assert!(batch.record(&mk_record(exec, 200, 1500)));
    }
    assert!(batch.record(&mk_record(exec, 503, 250_000)));
    let mut denied = mk_record("spiffe://cluster.local/ns/default/sa/shadow", 403, 100);
    denied.authz = AuthzOutcome::Denied;
    assert!(batch.record(&denied));
    let mut dry = mk_record(exec, 200, 100);
    dry.authz = AuthzOutcome::DryRunDenied;
    dry.path = "/reports/q4";
    assert!(batch.record(&dry));

    let report = batch
        .take(Direction::Inbound, "default", "finance-reporting", "v1")
        .unwrap();
    assert!(batch.is_empty() && batch.take(Direction::Inbound, "", "", "").is_none());
    assert_eq!(report.requests(), 6);
    assert_eq!(report.edges.len(), 2);
    let e = &report.edges[0];
    assert_eq!((e.requests, e.status[2], e.status[5]), (5, 4, 1));
    assert_eq!((e.denied, e.dry_run_denied), (0, 1));
    assert_eq!(e.latency[latency_bucket(1500)], 3);
    assert_eq!(e.latency[latency_bucket(250_000)], 1);
    assert_eq!(e.latency_us_sum, 3 * 1500 + 250_000 + 100);
    assert_eq!(e.routes.len(), 2);
    assert_eq!(e.routes[0].count, 4);
    assert_eq!(report.edges[1].denied, 1);
    // The wire format round-trips.
    let json = serde_json::to_vec(&report).unwrap();
    let back: Report = serde_json::from_slice(&json).unwrap();
    assert_eq!(back, report);
}

#[test]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_full_batch_drops_new_edges_and_counts_them_and_routes_are_capped() {
    let mut batch = Batch::new(1, 1);
    assert!(batch.record(&mk_record("a", 200, 1)));
    assert!(!batch.record(&mk_record("b", 200, 1)));
    let mut other_path = mk_record("a", 200, 1);
    other_path.path = "/other";
    assert!(batch.record(&other_path), "a known edge still counts");
    batch.add_dropped(5);
    assert_eq!(batch.dropped(), 6);
    let report = batch.take(Direction::Outbound, "ns", "s", "v").unwrap();
    assert_eq!(report.dropped, 6);
    assert_eq!(report.edges[0].requests, 2);
    assert!(report.edges[0].routes_truncated);
    assert_eq!(batch.dropped(), 0);
    // Only drops pending: still worth a report (the control plane counts them).
    batch.add_dropped(1);
    assert_eq!(
        batch.take(Direction::Outbound, "", "", "").unwrap().dropped,
        1
    );
}

#[test]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn latency_buckets_status_classes_and_cluster_names() {
    assert_eq!(latency_bucket(0), 0);
    assert_eq!(latency_bucket(1000), 0);
    assert_eq!(latency_bucket(1001), 1);
    assert_eq!(latency_bucket(u64::MAX), LATENCY_BOUNDS_MS.len());
    assert_eq!(
        [0, 101, 204, 302, 403, 503, 999].map(status_class),
        [0, 1, 2, 3, 4, 5, 5]
    );
    assert_eq!(
        destination_from_cluster("outbound|9080|v2|reviews.shop"),
        Some(("reviews", "v2"))
    );
    assert_eq!(destination_from_cluster("reviews"), None);
    assert_eq!(destination_from_cluster("outbound|1|v|a|b"), None);
    assert_eq!(
        AuthzOutcome::from_property(Some(b"dry_run_deny")),
        AuthzOutcome::DryRunDenied
    );
    assert_eq!(AuthzOutcome::from_property(None), AuthzOutcome::Allowed);
    // authz writes the property as `as_str`: the two must agree.
    for outcome in [AuthzOutcome::Denied, AuthzOutcome::DryRunDenied] {
        assert_eq!(
            AuthzOutcome::from_property(Some(outcome.as_str().as_bytes())),
            outcome
        );
    }
}

#[test]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn signatures_verify_only_with_the_same_key_and_body() {
    let key = b"0123456789abcdef";
    let sig = sign(key, b"body");
    assert_eq!(sig.len(), 64);
    assert!(verify(key, b"body", &sig));
    assert!(!verify(key, b"bodx", &sig));
    assert!(!verify(b"another key.....", b"body", &sig));
    assert!(!verify(key, b"body", "zz"));
    assert!(!verify(key, b"body", ""));
}

#[test]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn config_defaults_and_errors_name_the_field() {
    let config = TelemetryConfig::from_json(b"{}").unwrap();
    assert!(!config.reports());
    assert_eq!(config, TelemetryConfig::default());
    let ok = br#"{"direction": "outbound", "namespace": "default", "service": "a",
        "version": "v1", "key": "00112233445566778899aabbccddeeff"}"#;
    let config = TelemetryConfig::from_json(ok).unwrap();
    assert_eq!(config.key_bytes().unwrap().len(), 16);
    for (json, field) in [
        (r#"{"flush_interval_ms": 5}"#, "flush_interval_ms"),
        (r#"{"max_edges": 0}"#, "max_edges"),
        (r#"{"key": "xyz"}"#, "key"),
        (r#"{"key": "00112233445566778899aabbccddeeff"}"#, "service"),
        (r#"{"path": "v1"}"#, "path"),
        (r#"{"direction": "sideways"}"#, "direction"),
        (r#"{"bogus": 1}"#, "bogus"),
    ] {
        let err = TelemetryConfig::from_json(json.as_bytes()).unwrap_err();
        assert!(
            err.field.contains(field) || err.reason.contains(field),
            "{json}: {err}"
        );
    }
}

#[test]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn stat_names_carry_every_tag_in_order_and_the_regexes_name_them() {
    let principal = "spiffe://cluster.local/ns/default/sa/exec-portal";
    let name = edge_stat_prefix(&EdgeTags {
        reporter: "inbound",
        source: service_of_principal(principal),
        record: &mk_record(principal, 200, 1_000),
    });
    assert_eq!(
        name,
        "weft.telemetry.reporter.inbound.source.exec-portal.destination.finance-reporting\
         .version.v1.status.2xx.authz.allow.breaker.pass"
    );
    let odd = edge_stat_prefix(&EdgeTags {
        reporter: "outbound",
        source: "",
        record: &Record {
            destination: "a.b",
            version: "",
            authz: AuthzOutcome::Denied,
            local: Some(LocalReply::FailFast),
            ..mk_record("", 0, 0)
        },
    });
    assert!(
        odd.contains(
            ".source.unknown.destination.a_b.version.stable.status.none.authz.deny.breaker.open"
        ),
        "{odd}"
    );
    let regexes = stat_tag_regexes();
    assert_eq!(regexes.len(), STAT_TAGS.len());
    assert_eq!(
        regexes[0].1,
        r"^wasmcustom\.weft\.telemetry\.(reporter\.([^.]+)\.)"
    );
    assert!(regexes[2]
        .1
        .ends_with(r"source\.[^.]+\.(destination\.([^.]+)\.)"));
    assert_eq!(service_of_principal("plain"), "plain");
}

#[test]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn edge_stats_define_each_combination_once_and_are_bounded() {
    let mut stats = EdgeStats::new(2);
    let mut defined = Vec::new();
    let mut get = |stats: &mut EdgeStats<usize>, source: &str, status: u16| {
        let record = Record {
            destination: "d",
            ..mk_record(source, status, 0)
        };
        let tags = EdgeTags {
            reporter: "inbound",
            source,
            record: &record,
        };
        stats.get_or_define(&tags, |name| {
            defined.push(name.to_string());
            defined.len()
        })
    };
    assert_eq!(get(&mut stats, "a", 200), Some(1));
    assert_eq!(get(&mut stats, "a", 204), Some(1), "same status class");
    assert_eq!(get(&mut stats, "a", 503), Some(2));
    assert_eq!(get(&mut stats, "b", 200), None, "full");
    assert_eq!(stats.len(), 2);
    assert!(defined[1].contains(".status.5xx."), "{defined:?}");
}

#[test]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn marks_round_trip_and_a_decision_names_its_stage() {
    use crate::breaker::Phase;
    let fault = FaultMarks {
        delayed: true,
        would_abort: false,
        would_delay: true,
    };
    assert_eq!(fault.encode(), "delayed,would_delay");
    assert_eq!(FaultMarks::parse(Some(fault.encode().as_bytes())), fault);
    assert!(FaultMarks::parse(None).is_empty());
    // Unknown words (a newer stage) are ignored, spaces trimmed.
    assert_eq!(
        FaultMarks::parse(Some(b"future, would_abort")),
        FaultMarks {
            would_abort: true,
            ..FaultMarks::default()
        }
    );
    for phase in [Phase::Closed, Phase::Open, Phase::HalfOpen] {
        for would_fail_fast in [false, true] {
            let mark = BreakerMark {
                phase: Some(phase),
                would_fail_fast,
            };
            assert_eq!(BreakerMark::parse(Some(mark.encode().as_bytes())), mark);
        }
    }
    assert_eq!(BreakerMark::default().encode(), "");
    for (decision, cause) in [
        (
            &b"authz: 403 by no-admin: DENY policy"[..],
            Some(LocalReply::Denied),
        ),
        (
            b"fault: 503 injected by policy chaos",
            Some(LocalReply::Aborted),
        ),
        (
            b"breaker: 503 fail-fast for cluster x: open",
            Some(LocalReply::FailFast),
        ),
        (b"canary", None),
        (b"", None),
    ] {
        assert_eq!(LocalReply::from_decision(Some(decision)), cause);
    }
    assert_eq!(LocalReply::from_decision(None), None);
}

#[test]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn local_replies_and_marks_are_counted_per_edge() {
    let mut batch = Batch::new(8, 4);
    let mut abort = mk_record("reviews", 503, 100);
    abort.local = Some(LocalReply::Aborted);
    let mut fail_fast = mk_record("reviews", 503, 100);
    fail_fast.local = Some(LocalReply::FailFast);
    fail_fast.marks.breaker.phase = Some(crate::breaker::Phase::Open);
    let mut delayed = mk_record("reviews", 200, 100);
    delayed.marks.fault.delayed = true;
    delayed.marks.breaker.phase = Some(crate::breaker::Phase::Closed);
    for r in [&abort, &abort, &fail_fast, &delayed] {
        assert!(batch.record(r));
    }
    let report = batch
        .take(Direction::Outbound, "default", "reviews", "v1")
        .unwrap();
    let e = &report.edges[0];
    assert_eq!(
        (e.requests, e.aborted, e.breaker_open, e.delayed),
        (4, 2, 1, 1)
    );
    assert_eq!(e.local_status, [0, 0, 0, 0, 0, 3]);
    assert_eq!(e.breaker_phases, [1, 1, 0]);
    assert_eq!(e.breaker_state.as_deref(), Some("closed"), "the last one's");
    // An older control plane's report (no new fields) still parses.
    let old = r#"{"source":"a","destination":"b","version":"","requests":1,"status":[0,0,1,0,0,0],
        "denied":0,"dry_run_denied":0,"breaker_open":0,"latency":[1],"latency_us_sum":5}"#;
    let parsed: EdgeReport = serde_json::from_str(old).unwrap();
    assert_eq!((parsed.aborted, parsed.breaker_state), (0, None));
}
