//! Table-driven tests of validation, matching, sampling, header triggers, the safety caps
//! and the delay schedule. They run natively and, through wasm-bindgen-test, on wasm32.

use super::*;
use serde_json::{json, Value};

use crate::testing::Req;

fn mk_fault(config: Value) -> Fault {
    Fault::from_json(config.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}: {config}"))
}

fn mk_abort_all(extra: Value) -> Value {
    let mut policy =
        json!({"name": "p", "abort": {"percent": 100.0, "http_status": 503, "body": "boom"}});
    if let (Some(p), Some(e)) = (policy.as_object_mut(), extra.as_object()) {
        p.extend(e.clone());
    }
    json!({"percent_cap": 100.0, "policies": [policy]})
}

/// The binomial 99.9 % interval (normal approximation, z = 3.29).
fn within_999(observed: u64, n: u64, p: f64) -> bool {
    let mean = n as f64 * p;
    let spread = 3.29 * (n as f64 * p * (1.0 - p)).sqrt();
    (mean - spread).floor() <= observed as f64 && observed as f64 <= (mean + spread).ceil()
}

const NOW: u64 = 1_767_225_600_000;

// === validation ===

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn bad_configs_name_the_field() {
    let p = |policy: Value| json!({"policies": [policy]});
    let cases: Vec<(Value, &str)> = vec![
        (json!({"polices": []}), "polices"),
        (
            p(json!({"name": "a", "abort": {"percent": 60.0, "http_status": 503}})),
            "policies[0].abort.percent",
        ),
        (
            p(json!({"name": "a", "delay": {"percent": 50.5, "fixed_ms": 10}})),
            "policies[0].delay.percent",
        ),
        (
            p(json!({"name": "a", "abort": {"percent": 0.005, "http_status": 503}})),
            "policies[0].abort.percent",
        ),
        (
            p(json!({"name": "a", "abort": {"percent": -1.0, "http_status": 503}})),
            "policies[0].abort.percent",
        ),
        (
            p(json!({"name": "a", "abort": {"percent": 1.0, "http_status": 99}})),
            "policies[0].abort.http_status",
        ),
        (
            p(
                json!({"name": "a", "abort": {"percent": 1.0, "http_status": 503, "grpc_status": 17}}),
            ),
            "policies[0].abort.grpc_status",
        ),
        (
            p(json!({"name": "a", "abort": {"percent": 1.0, "status": 503}})),
            "policies[0].abort.status",
        ),
        (
            p(json!({"name": "a", "delay": {"percent": 1.0, "fixed_ms": 0}})),
            "policies[0].delay.fixed_ms",
        ),
        (
            p(json!({"name": "a", "delay": {"percent": 1.0, "fixed_ms": 300, "max_ms": 200}})),
            "policies[0].delay.max_ms",
        ),
        (
            p(json!({"name": "a", "delay": {"percent": 1.0, "fixed_ms": 300_001}})),
            "policies[0].delay.fixed_ms",
        ),
        (p(json!({"name": "a"})), "policies[0]"),
        (
            p(json!({"name": "a b", "allow_header_trigger": true})),
            "policies[0].name",
        ),
        (
            p(json!({"name": "", "allow_header_trigger": true})),
            "policies[0].name",
        ),
        (
            p(json!({"name": "a", "allow_header_trigger": true, "match": {"hosts": ["a*b"]}})),
            "policies[0].match.hosts[0]",
        ),
        (
            p(
                json!({"name": "a", "allow_header_trigger": true, "match": {"path_prefixes": ["api"]}}),
            ),
            "policies[0].match.path_prefixes[0]",
        ),
        (
            p(
                json!({"name": "a", "allow_header_trigger": true, "match": {"principals": ["spiffe://*/x"]}}),
            ),
            "policies[0].match.principals[0]",
        ),
        (
            p(
                json!({"name": "a", "allow_header_trigger": true, "match": {"headers": [{"name": "x y"}]}}),
            ),
            "policies[0].match.headers[0].name",
        ),
        (
            p(
                json!({"name": "a", "allow_header_trigger": true, "match": {"headers": [{"name": "x", "exact": "1", "prefix": "1"}]}}),
            ),
            "policies[0].match.headers[0]",
        ),
        (
            p(json!({"name": "a", "allow_header_trigger": true, "match": {"host": "x"}})),
            "policies[0].match.host",
        ),
        (
            json!({"policies": [{"name": "a", "allow_header_trigger": true}, {"name": "a", "allow_header_trigger": true}]}),
            "policies[1].name",
        ),
        (json!({"percent_cap": 0.0}), "percent_cap"),
        (json!({"percent_cap": 100.5}), "percent_cap"),
        (json!({"trigger_header": "X Fault"}), "trigger_header"),
        (json!({"max_header_delay_ms": 0}), "max_header_delay_ms"),
    ];
    for (config, field) in cases {
        let err = Fault::from_json(config.to_string().as_bytes())
            .expect_err(&format!("accepted {config}"));
        assert_eq!(err.field, field, "{config}: {err}");
    }
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn percent_cap_is_raised_only_explicitly() {
    let policy = json!({"name": "a", "abort": {"percent": 80.0, "http_status": 503}});
    let err = Fault::from_json(json!({"policies": [policy]}).to_string().as_bytes()).unwrap_err();
    assert!(
        err.reason.contains("80.00 exceeds percent_cap 50.00"),
        "{err}"
    );
    mk_fault(json!({"percent_cap": 80.0, "policies": [policy]}));
    // The smallest step is accepted.
    mk_fault(json!({"policies": [{"name": "a", "abort": {"percent": 0.01, "http_status": 503}}]}));
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn config_round_trips_and_defaults_apply() {
    let fault = mk_fault(json!({"policies": [{
        "name": "r", "match": {"hosts": ["ratings"]},
        "abort": {"percent": 20.0, "http_status": 503, "grpc_status": 14, "body": "x"},
        "delay": {"percent": 10.0, "fixed_ms": 200, "max_ms": 400},
        "expires_at_unix_ms": NOW,
    }]}));
    let config = fault.config();
    assert_eq!(config.percent_cap, DEFAULT_PERCENT_CAP);
    assert_eq!(config.max_concurrent_delays, 100);
    assert_eq!(config.trigger_header, "x-weft-fault");
    let again = serde_json::to_vec(config).unwrap();
    assert_eq!(Fault::from_json(&again).unwrap().config(), config);
    // An unconditional policy serializes without `match`.
    let bare = mk_fault(json!({"policies": [{"name": "b", "allow_header_trigger": true}]}));
    assert!(!serde_json::to_string(bare.config())
        .unwrap()
        .contains("match"));
}

// === matching, expiry, replies ===

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn policies_match_by_destination_caller_and_header() {
    let fault = mk_fault(json!({"percent_cap": 100.0, "policies": [
        {"name": "host", "match": {"hosts": ["ratings", "*.shop.svc"]}, "abort": {"percent": 100.0, "http_status": 501}},
        {"name": "path", "match": {"path_prefixes": ["/slow"]}, "abort": {"percent": 100.0, "http_status": 502}},
        {"name": "peer", "match": {"principals": ["spiffe://td/ns/a/*"]}, "abort": {"percent": 100.0, "http_status": 503}},
        {"name": "caller", "match": {"headers": [{"name": "x-caller", "exact": "reviews"}]}, "abort": {"percent": 100.0, "http_status": 504}},
        {"name": "both", "match": {"hosts": ["db"], "headers": [{"name": "x-canary"}]}, "abort": {"percent": 100.0, "http_status": 505}},
    ]}));
    let cases: Vec<(Req, Option<u16>)> = vec![
        (Req::new("ratings", "/"), Some(501)),
        (Req::new("Ratings:9080", "/"), Some(501)),
        (Req::new("db.shop.svc", "/"), Some(501)),
        (Req::new("shop.svc", "/"), None),
        (Req::new("details", "/slow/x"), Some(502)),
        (Req::new("details", "/fast"), None),
        (
            Req::new("details", "/").peer("spiffe://td/ns/a/sa/x"),
            Some(503),
        ),
        (Req::new("details", "/").peer("spiffe://td/ns/b/sa/x"), None),
        (
            Req::new("details", "/").with("x-caller", "reviews"),
            Some(504),
        ),
        (Req::new("details", "/").with("x-caller", "reviewsX"), None),
        (Req::new("db", "/"), None),
        (Req::new("db", "/").with("x-canary", ""), Some(505)),
        (Req::new("[::1]:80", "/"), None),
    ];
    let mut rng = Rng::new(1);
    for (req, status) in cases {
        let decision = fault.decide(&req, NOW, 0, &mut rng);
        assert_eq!(decision.abort.map(|a| a.status), status, "{req:?}");
    }
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn an_expired_policy_switches_itself_off() {
    let fault = mk_fault(json!({"percent_cap": 100.0, "policies": [
        {"name": "soon", "abort": {"percent": 100.0, "http_status": 503}, "expires_at_unix_ms": NOW + 1000},
        {"name": "later", "abort": {"percent": 100.0, "http_status": 500}, "expires_at_unix_ms": NOW + 2000},
    ]}));
    let req = Req::new("a", "/");
    let mut rng = Rng::new(2);
    let at = |now| fault.decide(&req, now, 0, &mut Rng::new(now));
    assert_eq!(at(NOW + 999).abort.map(|a| a.status), Some(503));
    let d = at(NOW + 1000);
    assert_eq!((d.policy, d.abort.map(|a| a.status)), (Some(1), Some(500)));
    assert_eq!(d.skipped, vec![(0, Skip::Expired)]);
    let d = fault.decide(&req, NOW + 5000, 0, &mut rng);
    assert!(d.is_noop() && d.policy.is_none(), "{d:?}");
    assert_eq!(d.skipped, vec![(0, Skip::Expired), (1, Skip::Expired)]);
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn a_dry_run_policy_is_reported_and_never_stands_in_front_of_an_enforced_one() {
    let fault = mk_fault(json!({"percent_cap": 100.0, "policies": [
        {"name": "try", "dry_run": true, "abort": {"percent": 100.0, "http_status": 503},
         "delay": {"percent": 100.0, "fixed_ms": 100}},
        {"name": "real", "match": {"path_prefixes": ["/real"]},
         "abort": {"percent": 100.0, "http_status": 500}},
    ]}));
    let would = Some(DryRun {
        policy: 0,
        would_abort: true,
        would_delay: true,
    });
    let d = fault.decide(&Req::new("a", "/"), NOW, 0, &mut Rng::new(1));
    assert!(d.is_noop() && d.policy.is_none(), "{d:?}");
    assert_eq!(d.dry_run, would);
    let d = fault.decide(&Req::new("a", "/real"), NOW, 0, &mut Rng::new(1));
    assert_eq!((d.policy, d.abort.map(|a| a.status)), (Some(1), Some(500)));
    assert_eq!(d.delay_ms, None);
    assert_eq!(d.dry_run, would);
    // Without dry-run policies nothing is reported.
    let d = mk_fault(mk_abort_all(json!({}))).decide(&Req::new("a", "/"), NOW, 0, &mut Rng::new(1));
    assert_eq!(d.dry_run, None);
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn the_time_matters_only_with_an_expiry() {
    let expiring = mk_fault(json!({"policies": [
        {"name": "e", "abort": {"percent": 50.0, "http_status": 503}, "expires_at_unix_ms": NOW},
    ]}));
    assert!(expiring.needs_time());
    let timeless = mk_fault(json!({"policies": [
        {"name": "a", "match": {"hosts": ["a"]}, "abort": {"percent": 50.0, "http_status": 503},
         "delay": {"percent": 50.0, "fixed_ms": 10}},
        {"name": "b", "delay": {"percent": 50.0, "fixed_ms": 20, "max_ms": 40}},
    ]}));
    assert!(!timeless.needs_time());
    // Without an expiry the decision is the same at any time (the filter passes 0).
    for (i, host) in ["a", "b", "a:80"].into_iter().enumerate() {
        let req = Req::new(host, "/");
        for seed in 0..200 {
            let seed = seed + 1000 * i as u64;
            let at = |now| timeless.decide(&req, now, 0, &mut Rng::new(seed));
            assert_eq!(at(0), at(NOW), "{host} {seed}");
        }
    }
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn grpc_requests_get_a_trailers_only_reply() {
    /// `(status, grpc-status, grpc-message, body)`
    type Expected<'a> = (u16, Option<&'a str>, Option<&'a str>, &'a str);
    let cases: Vec<(Value, Option<&str>, Expected)> = vec![
        (json!({}), None, (503, None, None, "boom")),
        (
            json!({}),
            Some("application/grpc"),
            (200, Some("14"), Some("boom"), ""),
        ),
        (
            json!({}),
            Some("application/grpc+proto"),
            (200, Some("14"), Some("boom"), ""),
        ),
        (
            json!({"abort": {"percent": 100.0, "http_status": 503, "grpc_status": 8, "body": "50% off"}}),
            Some("application/grpc"),
            (200, Some("8"), Some("50%25 off"), ""),
        ),
        (
            json!({}),
            Some("application/json"),
            (503, None, None, "boom"),
        ),
    ];
    for (extra, content_type, (status, grpc_status, grpc_message, body)) in cases {
        let fault = mk_fault(mk_abort_all(extra.clone()));
        let mut req = Req::new("a", "/");
        if let Some(ct) = content_type {
            req = req.with("content-type", ct);
        }
        let reply = fault.decide(&req, NOW, 0, &mut Rng::new(3)).abort.unwrap();
        let header = |name: &str| {
            reply
                .headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(
            (
                reply.status,
                header("grpc-status"),
                header("grpc-message"),
                reply.body.as_str()
            ),
            (status, grpc_status, grpc_message, body),
            "{extra} {content_type:?}"
        );
    }
    assert_eq!(
        [400, 401, 403, 404, 429, 503, 418].map(grpc_status_for_http),
        [13, 16, 7, 12, 14, 14, 2]
    );
    assert_eq!(percent_encode_grpc_message("é\n"), "%C3%A9%0A");
}

// === sampling ===

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn sampling_100k_draws_lies_within_the_binomial_999_interval() {
    const DRAWS: u64 = 100_000;
    for (seed, abort_pct, delay_pct) in [
        (11, 20.0, 50.0),
        (12, 0.01, 1.5),
        (13, 50.0, 0.1),
        (14, 33.33, 7.0),
    ] {
        let fault = mk_fault(
            json!({"max_concurrent_delays": 1, "policies": [{"name": "p",
            "abort": {"percent": abort_pct, "http_status": 503},
            "delay": {"percent": delay_pct, "fixed_ms": 10}}]}),
        );
        let req = Req::new("a", "/");
        let mut rng = Rng::new(seed);
        let (mut aborts, mut delays, mut both) = (0, 0, 0);
        for _ in 0..DRAWS {
            let d = fault.decide(&req, NOW, 0, &mut rng);
            aborts += u64::from(d.abort.is_some());
            delays += u64::from(d.delay_ms.is_some());
            both += u64::from(d.abort.is_some() && d.delay_ms.is_some());
        }
        let (pa, pd) = (abort_pct / 100.0, delay_pct / 100.0);
        assert!(
            within_999(aborts, DRAWS, pa),
            "aborts {aborts} at {abort_pct}%"
        );
        assert!(
            within_999(delays, DRAWS, pd),
            "delays {delays} at {delay_pct}%"
        );
        // Abort and delay are drawn independently.
        assert!(
            within_999(both, DRAWS, pa * pd),
            "both {both} at {abort_pct}% x {delay_pct}%"
        );
    }
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn delay_ranges_are_drawn_uniformly_within_bounds() {
    let fault = mk_fault(json!({"percent_cap": 100.0, "policies": [{"name": "p",
        "delay": {"percent": 100.0, "fixed_ms": 200, "max_ms": 203}}]}));
    let mut seen = [0u64; 4];
    let mut rng = Rng::new(5);
    for _ in 0..40_000 {
        let ms = fault
            .decide(&Req::new("a", "/"), NOW, 0, &mut rng)
            .delay_ms
            .unwrap();
        seen[usize::try_from(ms - 200).unwrap()] += 1;
    }
    assert!(
        seen.iter().all(|&n| within_999(n, 40_000, 0.25)),
        "{seen:?}"
    );
    let fixed = mk_fault(json!({"percent_cap": 100.0, "policies": [{"name": "p",
        "delay": {"percent": 100.0, "fixed_ms": 200}}]}));
    assert_eq!(
        fixed.decide(&Req::new("a", "/"), NOW, 0, &mut rng).delay_ms,
        Some(200)
    );
}

// === header trigger and the concurrency cap ===

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn header_triggers_apply_only_where_the_policy_allows() {
    let fault = mk_fault(json!({"policies": [
        {"name": "open", "match": {"path_prefixes": ["/open"]}, "allow_header_trigger": true},
        {"name": "closed", "match": {"path_prefixes": ["/closed"]}, "delay": {"percent": 0.0, "fixed_ms": 10}},
    ]}));
    let cases: Vec<(&str, &str, Option<u16>, Option<u64>)> = vec![
        ("/open", "abort=503", Some(503), None),
        ("/open", "delay=200ms", None, Some(200)),
        ("/open", "delay=2s, abort=418", Some(418), Some(2000)),
        ("/open", "delay=150", None, Some(150)),
        ("/open", "delay=10001ms", None, None),
        ("/open", "abort=600", None, None),
        ("/open", "explode=1", None, None),
        ("/open", "", None, None),
        ("/closed", "abort=503", None, None),
        ("/closed", "delay=200ms", None, None),
        ("/other", "abort=503", None, None),
    ];
    let mut rng = Rng::new(6);
    for (path, header, abort, delay) in cases {
        let d = fault.decide(
            &Req::new("a", path).with("x-weft-fault", header),
            NOW,
            0,
            &mut rng,
        );
        assert_eq!(
            (d.abort.map(|a| a.status), d.delay_ms),
            (abort, delay),
            "{path} {header:?}"
        );
        assert_eq!(
            d.by_header,
            abort.is_some() || delay.is_some(),
            "{path} {header:?}"
        );
    }
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn past_the_concurrency_cap_no_delay_is_injected() {
    let fault = mk_fault(
        json!({"percent_cap": 100.0, "max_concurrent_delays": 2, "policies": [{"name": "p",
        "abort": {"percent": 100.0, "http_status": 503},
        "delay": {"percent": 100.0, "fixed_ms": 50}}]}),
    );
    let req = Req::new("a", "/");
    let mut rng = Rng::new(7);
    for (pending, delayed) in [(0, true), (1, true), (2, false), (50, false)] {
        let d = fault.decide(&req, NOW, pending, &mut rng);
        assert_eq!(d.delay_ms.is_some(), delayed, "{pending} pending");
        assert_eq!(d.skipped.contains(&(0, Skip::DelayCap)), !delayed);
        // The abort is independent of the delay cap.
        assert!(d.abort.is_some());
    }
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn max_active_bounds_the_requests_one_policy_holds() {
    let fault = mk_fault(json!({"percent_cap": 100.0, "policies": [
        {"name": "other", "match": {"path_prefixes": ["/other"]},
         "delay": {"percent": 100.0, "fixed_ms": 50}},
        {"name": "slow", "max_active": 2, "delay": {"percent": 100.0, "fixed_ms": 50}}]}));
    let (slow, other) = (Req::new("a", "/"), Req::new("a", "/other"));
    let mut load = FaultLoad::new();
    let mut rng = Rng::new(3);
    let mut held = 0;
    for _ in 0..5 {
        let d = fault.decide_with(&slow, NOW, held, &mut load, &mut rng);
        if d.delay_ms.is_some() {
            load.delay_started(1);
            held += 1;
        } else {
            assert_eq!(d.skipped, vec![(1, Skip::MaxActive)]);
        }
    }
    assert_eq!((load.active(1), held), (2, 2));
    // Another policy's delays are not held against it.
    let d = fault.decide_with(&other, NOW, held, &mut load, &mut rng);
    assert!(d.delay_ms.is_some() && d.skipped.is_empty(), "{d:?}");
    // A released request frees a place.
    load.delay_ended(1);
    let d = fault.decide_with(&slow, NOW, held, &mut load, &mut rng);
    assert!(d.delay_ms.is_some(), "{d:?}");
    // `decide` has no running counts: the cap does not apply there.
    assert!(fault.decide(&slow, NOW, 0, &mut rng).delay_ms.is_some());
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn max_percent_bounds_the_faulted_share_even_by_header() {
    let fault = mk_fault(json!({"policies": [
        {"name": "p", "max_percent": 25.0, "allow_header_trigger": true}]}));
    let req = Req::new("a", "/").with("x-weft-fault", "abort=503");
    let mut load = FaultLoad::new();
    let mut rng = Rng::new(4);
    let mut aborted = 0;
    for n in 1..=100u64 {
        let d = fault.decide_with(&req, NOW, 0, &mut load, &mut rng);
        if d.abort.is_some() {
            aborted += 1;
        } else {
            assert_eq!(d.skipped, vec![(0, Skip::MaxPercent)]);
        }
        // The share never exceeds the cap, and reaches it whenever it can.
        assert_eq!(aborted, n / 4, "after {n}");
    }
    // Sampled faults are held to it too: abort 50 % and delay 50 % under a 30 % cap.
    let fault = mk_fault(json!({"percent_cap": 100.0, "policies": [{"name": "q",
        "max_percent": 30.0, "abort": {"percent": 50.0, "http_status": 503},
        "delay": {"percent": 50.0, "fixed_ms": 10}}]}));
    let mut load = FaultLoad::new();
    let faulted = (0..2000)
        .filter(|_| {
            !fault
                .decide_with(&Req::new("a", "/"), NOW, 0, &mut load, &mut rng)
                .is_noop()
        })
        .count();
    assert!((590..=600).contains(&faulted), "{faulted} of 2000");
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn bad_caps_name_the_field() {
    for (policy, field) in [
        (
            json!({"name": "a", "max_active": 0, "allow_header_trigger": true}),
            "policies[0].max_active",
        ),
        (
            json!({"name": "a", "max_active": 100_001, "allow_header_trigger": true}),
            "policies[0].max_active",
        ),
        (
            json!({"name": "a", "max_percent": 0.0, "allow_header_trigger": true}),
            "policies[0].max_percent",
        ),
        (
            json!({"name": "a", "max_percent": 100.5, "allow_header_trigger": true}),
            "policies[0].max_percent",
        ),
        (
            json!({"name": "a", "max_percent": 1.001, "allow_header_trigger": true}),
            "policies[0].max_percent",
        ),
    ] {
        let config = json!({"policies": [policy]});
        let err = Fault::from_json(config.to_string().as_bytes()).unwrap_err();
        assert_eq!(err.field, field, "{config}: {err}");
    }
}

// === tick period and schedule ===

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn tick_period_follows_from_the_configured_delays() {
    let delay = |ms: u64| json!({"name": format!("d{ms}"), "delay": {"percent": 1.0, "fixed_ms": ms, "max_ms": ms * 2}});
    let abort = json!({"name": "a", "abort": {"percent": 1.0, "http_status": 503}});
    let cases: Vec<(Vec<Value>, Option<u64>)> = vec![
        (vec![], None),
        (vec![abort.clone()], None),
        (vec![abort, delay(200)], Some(10)),
        (vec![delay(200), delay(30)], Some(1)),
        (vec![delay(1)], Some(1)),
        (vec![delay(100_000)], Some(schedule::MAX_TICK_MS)),
        (
            vec![json!({"name": "h", "allow_header_trigger": true})],
            Some(5),
        ),
    ];
    for (policies, tick) in cases {
        let fault = mk_fault(json!({"policies": policies}));
        assert_eq!(fault.tick_period_ms(), tick, "{policies:?}");
    }
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn schedule_resumes_what_is_due_in_due_order() {
    let mut s = DelaySchedule::new();
    assert_eq!(s.pause(7, 1000, 200, "a"), 1200);
    assert_eq!(s.pause(8, 1005, 100, "b"), 1105);
    assert_eq!(s.pause(9, 1010, 190, "c"), 1200);
    assert_eq!((s.len(), s.next_due_ms()), (3, Some(1105)));
    // Time passed in: nothing before its due time, everything at or after it.
    let steps: Vec<(u64, Vec<(u32, &str)>)> = vec![
        (1104, vec![]),
        (1105, vec![(8, "b")]),
        (1105, vec![]),
        (1199, vec![]),
        // Same due time: in the order they were paused.
        (1250, vec![(7, "a"), (9, "c")]),
    ];
    for (now, due) in steps {
        assert_eq!(s.take_due(now), due, "at {now}");
    }
    assert!(s.is_empty() && s.next_due_ms().is_none());
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn schedule_cancellation_drops_a_gone_client_without_error() {
    let mut s = DelaySchedule::new();
    s.pause(1, 0, 100, ());
    s.pause(2, 0, 100, ());
    s.pause(3, 0, 300, ());
    assert_eq!(s.cancel(2), Some(()));
    assert_eq!(
        s.cancel(2),
        None,
        "a second cancel (on_done after resume) is harmless"
    );
    assert_eq!(s.cancel(42), None);
    assert!(!s.contains(2) && s.contains(1));
    assert_eq!(s.take_due(100), vec![(1, ())]);
    // Re-pausing a context replaces its entry rather than duplicating it.
    s.pause(3, 100, 50, ());
    assert_eq!((s.len(), s.next_due_ms()), (1, Some(150)));
    assert_eq!(s.take_due(u64::MAX), vec![(3, ())]);
    // Due times saturate instead of wrapping.
    assert_eq!(s.pause(4, u64::MAX - 1, 10, ()), u64::MAX);
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn trigger_header_grammar() {
    let ok: Vec<(&str, Trigger)> = vec![
        (
            "abort=503",
            Trigger {
                abort_status: Some(503),
                delay_ms: None,
            },
        ),
        (
            "delay=200ms",
            Trigger {
                abort_status: None,
                delay_ms: Some(200),
            },
        ),
        (
            " delay = 3s ,abort=500,",
            Trigger {
                abort_status: Some(500),
                delay_ms: Some(3000),
            },
        ),
    ];
    for (value, trigger) in ok {
        assert_eq!(parse_trigger(value, 10_000), Ok(trigger), "{value}");
    }
    for bad in [
        "",
        "abort",
        "abort=x",
        "abort=199",
        "delay=0",
        "delay=20m",
        "delay=11s",
        "reset=1",
    ] {
        assert!(parse_trigger(bad, 10_000).is_err(), "{bad}");
    }
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn the_shipped_example_configuration_is_accepted() {
    // The JSON block under `value: |` in the worked Envoy example.
    let yaml = include_str!("../../../../envoy-configs/fault/fault-sidecar.yaml");
    let start = yaml.find("value: |").unwrap();
    let json: String = yaml[start..]
        .lines()
        .skip(1)
        .take_while(|l| !l.trim_start().starts_with("- name:"))
        .collect::<Vec<_>>()
        .join("\n");
    let fault = Fault::from_json(json.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{json}"));
    assert_eq!(
        fault.policy_names().collect::<Vec<_>>(),
        ["ratings-chaos", "ratings-debug"]
    );
    assert_eq!(fault.tick_period_ms(), Some(5));
}

use crate::testing::Counting;

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn each_request_attribute_is_read_at_most_once() {
    let fault = mk_fault(json!({"percent_cap": 100.0, "policies": [
        {"name": "a", "match": {"hosts": ["db"], "headers": [{"name": "x-caller", "exact": "a"}]}, "abort": {"percent": 100.0, "http_status": 501}},
        {"name": "b", "match": {"hosts": ["db"], "path_prefixes": ["/x"], "headers": [{"name": "x-caller", "exact": "b"}]}, "abort": {"percent": 100.0, "http_status": 502}},
        {"name": "c", "match": {"path_prefixes": ["/"], "headers": [{"name": "x-caller"}]}, "abort": {"percent": 100.0, "http_status": 503}},
    ]}));
    let req = Counting {
        req: Req::new("db:5432", "/x/y").with("x-caller", "c"),
        reads: Default::default(),
    };
    let d = fault.decide(&req, NOW, 0, &mut Rng::new(1));
    assert_eq!(d.abort.map(|a| a.status), Some(503));
    let reads = req.reads.into_inner();
    let mut unique = reads.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(reads.len(), unique.len(), "read twice: {reads:?}");
    // No policy for this host: only `:authority` is read.
    let only_db = mk_fault(json!({"policies": [
        {"name": "a", "match": {"hosts": ["db"], "headers": [{"name": "x-caller"}]}, "delay": {"percent": 50.0, "fixed_ms": 5}},
    ]}));
    let req = Counting {
        req: Req::new("web", "/").with("x-caller", "c"),
        reads: Default::default(),
    };
    assert!(only_db
        .decide(&req, NOW, 0, &mut Rng::new(1))
        .policy
        .is_none());
    assert_eq!(req.reads.into_inner(), vec![":authority"]);
}
