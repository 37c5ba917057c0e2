//! Every transition of the breaker, table-driven where the cases are a table, including
//! concurrent probe admission through CAS and the jittered back-off bounds. They run natively
//! and, through wasm-bindgen-test, on wasm32.

use super::*;
use crate::rng::Rng;

fn mk_policy(json: &str) -> Policy {
    let config = format!(r#"{{"clusters": {{"up": {json}}}}}"#);
    Breaker::from_json(config.as_bytes())
        .unwrap()
        .policy("up")
        .cloned()
        .unwrap()
}

/// Consecutive 3, open 1000 ms (no jitter), back-off x2 capped at 3000, 2 probes.
fn mk_simple() -> Policy {
    mk_policy(
        r#"{"consecutive_failures": 3, "open_interval_ms": 1000, "max_open_interval_ms": 3000,
            "jitter_percent": 0, "half_open_probes": 2}"#,
    )
}

fn admit_ok(p: &Policy, now: u64, s: &mut BreakerState) -> Ticket {
    match p.admit(now, s).0 {
        Admission::Admitted(t) => t,
        Admission::Rejected(r) => unreachable!("rejected {r:?} in {s:?}"),
    }
}

/// Drive the closed breaker open with consecutive failures at `now`.
fn trip(p: &Policy, now: u64, s: &mut BreakerState, rng: &mut Rng) {
    for _ in 0..p.consecutive_failures {
        let t = admit_ok(p, now, s);
        p.on_result(now, t, Outcome::Failure, rng, s);
    }
    assert_eq!(s.phase, Phase::Open);
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn defaults_and_round_trip_of_config() {
    let b = Breaker::from_json(br#"{"clusters": {"reviews": {}}}"#).unwrap();
    let p = b.policy("reviews").unwrap();
    assert_eq!(p.consecutive_failures, 5);
    assert_eq!(p.half_open_probes, 3);
    assert_eq!(p.reject_status, 503);
    assert_eq!(p.backoff_permille, 2000);
    assert!(p.on_5xx && p.on_connect_failure && p.on_reset && p.on_timeout && !p.on_gateway);
    assert!(b.policy("ratings").is_none());
    let json = serde_json::to_vec(b.config()).unwrap();
    assert_eq!(Breaker::from_json(&json).unwrap(), b);
    assert!(Breaker::from_json(b"").is_err());
    assert!(Breaker::from_json(b"{}")
        .unwrap()
        .clusters()
        .next()
        .is_none());
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn bad_config_names_the_field() {
    let cases = [
        (r#"{"clusterz": {}}"#, "clusterz"),
        (r#"{"cluster_header": "X-Up"}"#, "cluster_header"),
        (r#"{"clusters": {"": {}}}"#, "clusters"),
        (
            r#"{"clusters": {"a": {"half_open_probes": 0}}}"#,
            "clusters.a.half_open_probes",
        ),
        (
            r#"{"clusters": {"a": {"open_interval_ms": 0}}}"#,
            "clusters.a.open_interval_ms",
        ),
        (
            r#"{"clusters": {"a": {"open_interval_ms": 10, "max_open_interval_ms": 5}}}"#,
            "clusters.a.max_open_interval_ms",
        ),
        (
            r#"{"clusters": {"a": {"backoff_multiplier": 0.5}}}"#,
            "clusters.a.backoff_multiplier",
        ),
        (
            r#"{"clusters": {"a": {"jitter_percent": 101}}}"#,
            "clusters.a.jitter_percent",
        ),
        (
            r#"{"clusters": {"a": {"max_concurrent": 0}}}"#,
            "clusters.a.max_concurrent",
        ),
        (
            r#"{"clusters": {"a": {"reject_status": 99}}}"#,
            "clusters.a.reject_status",
        ),
        (
            r#"{"clusters": {"a": {"failure_on": []}}}"#,
            "clusters.a.failure_on",
        ),
        (
            r#"{"clusters": {"a": {"failure_on": ["4xx"]}}}"#,
            "clusters.a.failure_on[0]",
        ),
        (r#"{"clusters": {"a": {"probes": 1}}}"#, "clusters.a.probes"),
        (
            r#"{"clusters": {"a": {"failure_rate": {"threshold_percent": 0}}}}"#,
            "clusters.a.failure_rate.threshold_percent",
        ),
        (
            r#"{"clusters": {"a": {"failure_rate": {"threshold_percent": 50, "window_ms": 5}}}}"#,
            "clusters.a.failure_rate.window_ms",
        ),
        (
            r#"{"clusters": {"a": {"failure_rate": {"threshold_percent": 50, "min_requests": 0}}}}"#,
            "clusters.a.failure_rate.min_requests",
        ),
        (
            r#"{"clusters": {"a": {"consecutive_failures": -1}}}"#,
            "clusters.a.consecutive_failures",
        ),
    ];
    for (json, field) in cases {
        match Breaker::from_json(json.as_bytes()) {
            Ok(_) => unreachable!("accepted {json}"),
            Err(e) => assert_eq!(e.field, field, "{json}: {e}"),
        }
    }
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn classification_by_code_and_flags() {
    use Outcome::*;
    let all = mk_policy(r#"{"failure_on": ["5xx", "connect_failure", "reset", "timeout"]}"#);
    let gateway = mk_policy(r#"{"failure_on": ["gateway_errors"]}"#);
    let resets = mk_policy(r#"{"failure_on": ["reset"]}"#);
    let cases = [
        (&all, 200, 0, Success),
        (&all, 404, 0, Success),
        (&all, 500, 0, Failure),
        (&all, 503, flags::UPSTREAM_CONNECTION_FAILURE, Failure),
        (&all, 0, 0x4000, Neutral), // downstream went away (DC) before any response
        (&gateway, 500, 0, Success),
        (&gateway, 502, 0, Failure),
        (&gateway, 504, 0, Failure),
        (&gateway, 505, 0, Success),
        (&resets, 503, 0, Success),
        (
            &resets,
            503,
            flags::UPSTREAM_CONNECTION_TERMINATION,
            Failure,
        ),
        (&resets, 503, flags::UPSTREAM_REMOTE_RESET, Failure),
        (&resets, 503, flags::UPSTREAM_CONNECTION_FAILURE, Success),
        (&resets, 504, flags::UPSTREAM_REQUEST_TIMEOUT, Success),
        (&all, 504, flags::UPSTREAM_REQUEST_TIMEOUT, Failure),
    ];
    for (i, (policy, code, fl, want)) in cases.into_iter().enumerate() {
        assert_eq!(policy.classify(code, fl), want, "case {i}: {code} {fl:#x}");
    }
    let timeouts = mk_policy(r#"{"failure_on": ["timeout"]}"#);
    assert_eq!(
        timeouts.classify(504, flags::UPSTREAM_REQUEST_TIMEOUT),
        Failure
    );
    assert_eq!(timeouts.classify(504, 0), Success);
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn admission_reads_the_clock_only_when_open() {
    let policy = mk_policy(r#"{"half_open_probes": 2, "max_concurrent": 3}"#);
    let mut rng = Rng::new(9);
    for _ in 0..2000 {
        let mut state = BreakerState {
            phase: match rng.below(3) {
                0 => Phase::Closed,
                1 => Phase::Open,
                _ => Phase::HalfOpen,
            },
            in_flight: u32::try_from(rng.below(5)).unwrap(),
            probes_admitted: u32::try_from(rng.below(4)).unwrap(),
            open_until_ms: rng.below(2000),
            ..BreakerState::default()
        };
        if policy.admit_needs_time(&state) {
            continue;
        }
        // Any time gives the same answer: the filter passes 0 without reading the clock.
        let mut at_zero = state;
        let want = policy.admit(0, &mut at_zero);
        let now = rng.below(u64::MAX / 2);
        assert_eq!(policy.admit(now, &mut state), want, "{state:?}");
        assert_eq!(state, at_zero);
    }
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn flags_are_read_only_when_they_can_matter() {
    let policies = [
        r#"{"failure_on": ["5xx", "connect_failure", "reset", "timeout"]}"#,
        r#"{"failure_on": ["5xx"]}"#,
        r#"{"failure_on": ["gateway_errors"]}"#,
        r#"{"failure_on": ["reset"]}"#,
        r#"{"failure_on": ["timeout"]}"#,
        r#"{"failure_on": ["connect_failure", "gateway_errors"]}"#,
    ];
    let all_flags = [
        0,
        0x4000,
        flags::UPSTREAM_CONNECTION_FAILURE,
        flags::UPSTREAM_REMOTE_RESET,
        flags::UPSTREAM_CONNECTION_TERMINATION,
        flags::UPSTREAM_PROTOCOL_ERROR,
        flags::UPSTREAM_REQUEST_TIMEOUT,
        flags::UPSTREAM_MAX_STREAM_DURATION,
        u64::MAX,
    ];
    for json in policies {
        let policy = mk_policy(json);
        for code in [0, 200, 404, 499, 500, 502, 503, 504, 505, 599, 600] {
            if policy.needs_flags(code) {
                continue;
            }
            // Skipping the read (flags taken as 0) must give the same outcome for any flags.
            for fl in all_flags {
                assert_eq!(
                    policy.classify(code, 0),
                    policy.classify(code, fl),
                    "{json} {code} {fl:#x}"
                );
            }
        }
    }
    let bench = mk_policy(r#"{"failure_on": ["5xx"]}"#);
    assert!(!bench.needs_flags(200));
    let all = mk_policy(r#"{"failure_on": ["5xx", "reset"]}"#);
    assert!(all.needs_flags(200));
    assert!(!all.needs_flags(503));
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn state_bytes_round_trip_and_reject_garbage() {
    let mut s = BreakerState {
        phase: Phase::HalfOpen,
        generation: 7,
        in_flight: 42,
        consecutive_failures: 1,
        probes_admitted: 3,
        probe_successes: 2,
        open_until_ms: 1_700_000_000_123,
        open_interval_ms: 8_000,
        window: Window::default(),
    };
    s.window.head = 99;
    s.window.buckets[3] = Bucket {
        requests: 10,
        failures: 4,
    };
    let bytes = s.encode();
    assert_eq!(bytes.len(), ENCODED_LEN);
    assert_eq!(BreakerState::decode(&bytes), Some(s));
    assert_eq!(
        BreakerState::decode(&BreakerState::default().encode()),
        Some(BreakerState::default())
    );
    let mut wrong_version = bytes.clone();
    wrong_version[0] = 9;
    let mut wrong_phase = bytes.clone();
    wrong_phase[1] = 3;
    for bad in [
        &[][..],
        &bytes[..ENCODED_LEN - 1],
        &wrong_version,
        &wrong_phase,
    ] {
        assert_eq!(BreakerState::decode(bad), None);
    }
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn closed_opens_on_consecutive_failures_only() {
    let p = mk_simple();
    let mut rng = Rng::new(1);
    let mut s = BreakerState::default();
    // fail, fail, success resets the streak; then three in a row open it.
    let script = [
        (Outcome::Failure, Phase::Closed),
        (Outcome::Failure, Phase::Closed),
        (Outcome::Success, Phase::Closed),
        (Outcome::Neutral, Phase::Closed),
        (Outcome::Failure, Phase::Closed),
        (Outcome::Failure, Phase::Closed),
        (Outcome::Neutral, Phase::Closed),
        (Outcome::Failure, Phase::Open),
    ];
    for (step, (outcome, want)) in script.into_iter().enumerate() {
        let t = admit_ok(&p, 100, &mut s);
        let transition = p.on_result(100, t, outcome, &mut rng, &mut s);
        assert_eq!(s.phase, want, "step {step}");
        if want == Phase::Open {
            let reason = TripReason::ConsecutiveFailures(3);
            assert_eq!(
                transition,
                Some(Transition::Opened {
                    reason,
                    interval_ms: 1000
                })
            );
        }
    }
    assert_eq!(s.open_until_ms, 1100);
    assert_eq!(s.in_flight, 0);
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn closed_opens_on_failure_rate_with_minimum_volume() {
    // 50% over 1 s (10 buckets of 100 ms), judged from 10 requests; streaks off.
    let p = mk_policy(
        r#"{"consecutive_failures": 0, "jitter_percent": 0,
            "failure_rate": {"threshold_percent": 50, "window_ms": 1000, "min_requests": 10}}"#,
    );
    let mut rng = Rng::new(2);
    let run = |s: &mut BreakerState, rng: &mut Rng, now: u64, outcome: Outcome| {
        let t = admit_ok(&p, now, s);
        p.on_result(now, t, outcome, rng, s)
    };

    // 5 failures alone: 100% but below the minimum volume.
    let mut s = BreakerState::default();
    for i in 0..5 {
        assert_eq!(run(&mut s, &mut rng, i * 10, Outcome::Failure), None);
    }
    // 4 successes: 5/9, still below volume; the 10th request (a success) makes 5/10 = 50%.
    for i in 0..4 {
        assert_eq!(run(&mut s, &mut rng, 50 + i * 10, Outcome::Success), None);
    }
    let opened = run(&mut s, &mut rng, 95, Outcome::Success);
    let reason = TripReason::FailureRate {
        failures: 5,
        requests: 10,
    };
    assert_eq!(
        opened,
        Some(Transition::Opened {
            reason,
            interval_ms: 5000
        })
    );

    // 4 of 10 fail: under the threshold.
    let mut s = BreakerState::default();
    for i in 0..10 {
        let outcome = if i < 4 {
            Outcome::Failure
        } else {
            Outcome::Success
        };
        assert_eq!(run(&mut s, &mut rng, i * 10, outcome), None);
    }
    assert_eq!(s.phase, Phase::Closed);

    // Old failures slide out of the window: 5 failures at t=0, 5 successes 1.5 s later.
    let mut s = BreakerState::default();
    for _ in 0..5 {
        run(&mut s, &mut rng, 0, Outcome::Failure);
    }
    for _ in 0..5 {
        assert_eq!(run(&mut s, &mut rng, 1500, Outcome::Success), None);
    }
    assert_eq!(s.window.totals(), (5, 0));
    // A clock a hair behind on another worker lands in the newest bucket, not a stale one.
    run(&mut s, &mut rng, 1490, Outcome::Success);
    assert_eq!(s.window.totals(), (6, 0));
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn open_rejects_without_writing_then_half_opens() {
    let p = mk_simple();
    let mut rng = Rng::new(3);
    let mut s = BreakerState::default();
    trip(&p, 0, &mut s, &mut rng);
    for now in [0, 500, 999] {
        let before = s;
        assert_eq!(
            p.admit(now, &mut s),
            (Admission::Rejected(Rejection::Open), None)
        );
        assert_eq!(
            s, before,
            "a rejection while open changes nothing, so nothing is written"
        );
    }
    let generation = s.generation;
    let (admission, transition) = p.admit(1000, &mut s);
    assert_eq!(transition, Some(Transition::HalfOpened));
    assert_eq!(
        admission,
        Admission::Admitted(Ticket {
            generation: generation + 1,
            probe: true
        })
    );
    assert_eq!(s.phase, Phase::HalfOpen);
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn half_open_admits_exactly_k_and_k_successes_close() {
    let p = mk_simple();
    let mut rng = Rng::new(4);
    let mut s = BreakerState::default();
    trip(&p, 0, &mut s, &mut rng);
    let a = admit_ok(&p, 1000, &mut s);
    let b = admit_ok(&p, 1001, &mut s);
    assert!(a.probe && b.probe);
    for now in [1002, 1003, 5000] {
        assert_eq!(
            p.admit(now, &mut s).0,
            Admission::Rejected(Rejection::HalfOpenFull)
        );
    }
    assert_eq!(
        p.on_result(1100, a, Outcome::Success, &mut rng, &mut s),
        None
    );
    assert_eq!(s.phase, Phase::HalfOpen);
    assert_eq!(
        p.on_result(1100, b, Outcome::Success, &mut rng, &mut s),
        Some(Transition::Closed)
    );
    assert_eq!(s.phase, Phase::Closed);
    assert_eq!(
        (s.in_flight, s.open_interval_ms, s.consecutive_failures),
        (0, 0, 0)
    );
    let t = admit_ok(&p, 1200, &mut s);
    assert!(!t.probe);
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn failed_probe_reopens_with_capped_backoff() {
    let p = mk_simple();
    let mut rng = Rng::new(5);
    let mut s = BreakerState::default();
    trip(&p, 0, &mut s, &mut rng);
    // 1000 -> 2000 -> 3000 (cap) -> 3000.
    let mut now = s.open_until_ms;
    for want in [2000, 3000, 3000] {
        let probe = admit_ok(&p, now, &mut s);
        let reopened = p.on_result(now, probe, Outcome::Failure, &mut rng, &mut s);
        let reason = TripReason::ProbeFailed;
        assert_eq!(
            reopened,
            Some(Transition::Opened {
                reason,
                interval_ms: want
            })
        );
        assert_eq!((s.phase, s.open_until_ms), (Phase::Open, now + want));
        now = s.open_until_ms;
    }
    // Recovery resets the back-off: the next trip opens for the base interval again.
    for _ in 0..2 {
        let probe = admit_ok(&p, now, &mut s);
        p.on_result(now, probe, Outcome::Success, &mut rng, &mut s);
    }
    assert_eq!(s.phase, Phase::Closed);
    trip(&p, now, &mut s, &mut rng);
    assert_eq!(s.open_until_ms, now + 1000);
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn neutral_probe_returns_its_slot_and_stale_results_only_release() {
    let p = mk_simple();
    let mut rng = Rng::new(6);
    let mut s = BreakerState::default();
    // Two slow requests admitted while closed, then the breaker trips.
    let slow_fail = admit_ok(&p, 0, &mut s);
    let slow_ok = admit_ok(&p, 0, &mut s);
    trip(&p, 0, &mut s, &mut rng);
    assert_eq!(s.in_flight, 2);
    let a = admit_ok(&p, 1000, &mut s);
    let _b = admit_ok(&p, 1000, &mut s);
    // Results of the older generation neither re-open nor count as probe successes.
    assert_eq!(
        p.on_result(1001, slow_fail, Outcome::Failure, &mut rng, &mut s),
        None
    );
    assert_eq!(
        p.on_result(1001, slow_ok, Outcome::Success, &mut rng, &mut s),
        None
    );
    assert_eq!(
        (s.phase, s.probe_successes, s.in_flight),
        (Phase::HalfOpen, 0, 2)
    );
    // A probe whose client left gives the slot to the next request.
    assert_eq!(
        p.admit(1002, &mut s).0,
        Admission::Rejected(Rejection::HalfOpenFull)
    );
    p.on_result(1003, a, Outcome::Neutral, &mut rng, &mut s);
    assert!(admit_ok(&p, 1004, &mut s).probe);
    assert_eq!(s.probes_admitted, 2);
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn concurrency_cap_rejects_and_releases() {
    let p = mk_policy(
        r#"{"max_concurrent": 2, "half_open_probes": 3, "consecutive_failures": 1, "jitter_percent": 0}"#,
    );
    let mut rng = Rng::new(7);
    let mut s = BreakerState::default();
    let a = admit_ok(&p, 0, &mut s);
    let b = admit_ok(&p, 0, &mut s);
    assert_eq!(
        p.admit(0, &mut s).0,
        Admission::Rejected(Rejection::Overflow)
    );
    assert_eq!(s.in_flight, 2);
    p.on_result(1, a, Outcome::Success, &mut rng, &mut s);
    let c = admit_ok(&p, 2, &mut s);
    // The cap also bounds probes: b and c still in flight when half-open begins.
    p.on_result(3, c, Outcome::Failure, &mut rng, &mut s);
    assert_eq!(s.phase, Phase::Open);
    let probe = admit_ok(&p, 5003, &mut s);
    assert!(probe.probe);
    assert_eq!(
        p.admit(5003, &mut s).0,
        Admission::Rejected(Rejection::Overflow)
    );
    p.on_result(5004, b, Outcome::Success, &mut rng, &mut s);
    p.on_result(5004, probe, Outcome::Success, &mut rng, &mut s);
    assert_eq!(s.in_flight, 0);
    // Release never underflows.
    p.on_result(5005, b, Outcome::Success, &mut rng, &mut s);
    assert_eq!(s.in_flight, 0);
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn jittered_intervals_stay_within_bounds_and_spread() {
    let cases = [(20, 10_000u64), (0, 10_000), (100, 1_000), (50, 3)];
    for (jitter, nominal) in cases {
        let p = mk_policy(&format!(r#"{{"jitter_percent": {jitter}}}"#));
        let mut rng = Rng::new(8);
        let low = nominal - nominal * jitter / 100;
        let draws: Vec<u64> = (0..20_000).map(|_| p.jittered(nominal, &mut rng)).collect();
        let (min, max) = (draws.iter().min().copied(), draws.iter().max().copied());
        assert!(
            draws.iter().all(|d| (low..=nominal).contains(d)),
            "{jitter}% of {nominal}"
        );
        // The whole range is used: both ends are reached within 1% of the spread.
        let slack = (nominal - low) / 100;
        assert!(min.is_some_and(|m| m <= low + slack) && max.is_some_and(|m| m + slack >= nominal));
    }
    // Through the machine: a re-open after back-off is jittered from the capped interval.
    let p = mk_policy(
        r#"{"consecutive_failures": 1, "open_interval_ms": 1000, "backoff_multiplier": 1.5,
            "max_open_interval_ms": 2000, "jitter_percent": 25, "half_open_probes": 1}"#,
    );
    let mut rng = Rng::new(9);
    let mut s = BreakerState::default();
    trip(&p, 0, &mut s, &mut rng);
    assert!((750..=1000).contains(&s.open_until_ms));
    for nominal in [1500, 2000, 2000, 2000] {
        let now = s.open_until_ms;
        let probe = admit_ok(&p, now, &mut s);
        p.on_result(now, probe, Outcome::Failure, &mut rng, &mut s);
        assert_eq!(s.open_interval_ms, nominal);
        assert!(
            (nominal * 3 / 4..=nominal).contains(&(s.open_until_ms - now)),
            "{s:?}"
        );
    }
}

/// Envoy shared data for one key: the value and its CAS, bumped on every write.
struct Cell {
    bytes: Vec<u8>,
    cas: u32,
}

impl Cell {
    fn try_write(&mut self, cas: u32, bytes: Vec<u8>) -> bool {
        if cas != self.cas {
            return false;
        }
        self.bytes = bytes;
        self.cas += 1;
        true
    }
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn concurrent_probe_admission_through_cas_admits_exactly_k() {
    // Workers read the shared bytes, decide, and write back with the CAS they read; the
    // scheduler interleaves their steps at random. Whatever the interleaving, exactly K of
    // the requests arriving at half-open time become probes.
    let p = mk_policy(
        r#"{"consecutive_failures": 1, "open_interval_ms": 100, "jitter_percent": 0, "half_open_probes": 3}"#,
    );
    for seed in 0..200 {
        let mut rng = Rng::new(seed);
        let mut opened = BreakerState::default();
        trip(&p, 0, &mut opened, &mut rng);
        let mut cell = Cell {
            bytes: opened.encode(),
            cas: 1,
        };
        // 4 workers x 5 requests each; a worker holds (read cas, decided state, ticket).
        let mut pending: Vec<u32> = vec![5; 4];
        let mut read: Vec<Option<(u32, BreakerState, Admission)>> = vec![None; 4];
        let (mut probes, mut rejected, mut retries) = (0, 0, 0);
        while pending.iter().any(|&n| n > 0) {
            let w = rng.below(4) as usize;
            if pending[w] == 0 {
                continue;
            }
            match read[w].take() {
                None => {
                    let mut s = BreakerState::decode(&cell.bytes).unwrap();
                    let (admission, _) = p.admit(100, &mut s);
                    read[w] = Some((cell.cas, s, admission));
                }
                Some((cas, s, admission)) => {
                    if !cell.try_write(cas, s.encode()) {
                        retries += 1;
                        continue;
                    }
                    pending[w] -= 1;
                    match admission {
                        Admission::Admitted(t) if t.probe => probes += 1,
                        Admission::Admitted(t) => unreachable!("{t:?}"),
                        Admission::Rejected(_) => rejected += 1,
                    }
                }
            }
        }
        assert_eq!(
            (probes, rejected),
            (3, 17),
            "seed {seed}, {retries} CAS retries"
        );
        let s = BreakerState::decode(&cell.bytes).unwrap();
        assert_eq!(
            (s.phase, s.probes_admitted, s.in_flight),
            (Phase::HalfOpen, 3, 3)
        );
    }
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn phase_gauge_values_and_reject_headers() {
    assert_eq!(
        [
            Phase::Closed as u8,
            Phase::Open as u8,
            Phase::HalfOpen as u8
        ],
        [0, 1, 2]
    );
    assert_eq!(Phase::HalfOpen.as_str(), "half-open");
    let headers = [
        Rejection::Open,
        Rejection::HalfOpenFull,
        Rejection::Overflow,
    ]
    .map(Rejection::header_value);
    assert_eq!(headers, ["open", "half-open", "overflow"]);
}
