//! The workers' protocol on a shared record, against `MockHost`: two [`Local`]s on one host
//! are two worker threads sharing Envoy's shared data.

use super::worker::{self, Admit, Held, Hold, Local};
use super::{Breaker, BreakerState, Outcome, Phase, Policy, Rejection, Transition};
use crate::host::shared;
use crate::host::{Call, MockHost};
use crate::rng::Rng;

const KEY: &str = "weft.breaker.v1/c";

fn policy(json: &str) -> Policy {
    let breaker =
        Breaker::from_json(format!(r#"{{"clusters": {{"c": {json}}}}}"#).as_bytes()).unwrap();
    breaker.policy("c").unwrap().clone()
}

fn host() -> MockHost {
    let host = MockHost::new();
    host.set_now(1_000_000);
    assert!(shared::seed(&host, KEY, &BreakerState::default().encode()).unwrap());
    host.clear_calls();
    host
}

fn record(host: &MockHost) -> BreakerState {
    BreakerState::decode(&host.shared_record(KEY).unwrap().0).unwrap()
}

fn writes(host: &MockHost) -> usize {
    host.count(|c| matches!(c, Call::SharedSet { .. }))
}

fn admit(host: &MockHost, policy: &Policy, local: &mut Local) -> Admit {
    worker::admit(host, KEY, policy, local).unwrap().value
}

fn admitted(host: &MockHost, policy: &Policy, local: &mut Local) -> Held {
    match admit(host, policy, local) {
        Admit::Admitted(held) => held,
        Admit::Rejected(why) => panic!("rejected: {why:?}"),
    }
}

fn end(
    host: &MockHost,
    policy: &Policy,
    local: &mut Local,
    held: Held,
    outcome: Outcome,
) -> Option<Transition> {
    let mut rng = Rng::new(1);
    worker::release(host, KEY, policy, local, held, outcome, &mut rng)
        .unwrap()
        .transition
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn a_closed_breaker_admits_on_one_read_and_writes_nothing_for_successes() {
    let host = host();
    let policy = policy(r#"{"consecutive_failures": 5}"#);
    let mut local = Local::default();
    for _ in 0..50 {
        let held = admitted(&host, &policy, &mut local);
        assert_eq!(held.hold, Hold::Nothing);
        assert_eq!(
            end(&host, &policy, &mut local, held, Outcome::Success),
            None
        );
    }
    assert_eq!(host.count(|c| matches!(c, Call::SharedGet(_))), 50);
    assert_eq!(writes(&host), 0);
    // No clock either: nothing was written.
    assert_eq!(host.count(|c| *c == Call::Now), 0);
    assert_eq!(record(&host), BreakerState::default());
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn failures_are_written_and_the_other_worker_learns_the_open_from_its_next_read() {
    let host = host();
    let policy = policy(r#"{"consecutive_failures": 3, "open_interval_ms": 5000}"#);
    let (mut a, mut b) = (Local::default(), Local::default());
    let mut opened = None;
    for _ in 0..3 {
        let held = admitted(&host, &policy, &mut a);
        opened = end(&host, &policy, &mut a, held, Outcome::Failure);
    }
    assert!(matches!(opened, Some(Transition::Opened { .. })));
    assert_eq!(writes(&host), 3);
    host.clear_calls();
    // Worker b never saw a failure; its next request reads the open record and fails fast
    // without writing.
    assert_eq!(
        admit(&host, &policy, &mut b),
        Admit::Rejected(Rejection::Open)
    );
    assert_eq!(writes(&host), 0);
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn exactly_k_probes_across_workers_that_held_leases() {
    let host = host();
    let policy = policy(
        r#"{"consecutive_failures": 1, "open_interval_ms": 1000, "jitter_percent": 0,
            "half_open_probes": 3, "max_concurrent": 40}"#,
    );
    assert_eq!(policy.lease_size(), 5);
    let (mut a, mut b) = (Local::default(), Local::default());
    // Both workers lease slots while closed; a's failure opens the breaker.
    let held_b = admitted(&host, &policy, &mut b);
    assert_eq!(end(&host, &policy, &mut b, held_b, Outcome::Success), None);
    let held_a = admitted(&host, &policy, &mut a);
    assert_eq!((a.free, b.free), (4, 5));
    assert_eq!(record(&host).in_flight, 10);
    let opened = end(&host, &policy, &mut a, held_a, Outcome::Failure);
    assert!(matches!(opened, Some(Transition::Opened { .. })));
    host.set_now(1_000_000 + 1_000);
    // Half-open: twenty requests alternating between the workers, three probes in all.
    let mut probes = Vec::new();
    for i in 0..20 {
        let local = if i % 2 == 0 { &mut a } else { &mut b };
        match admit(&host, &policy, local) {
            Admit::Admitted(held) => {
                assert!(held.ticket.probe);
                assert_eq!(held.hold, Hold::Shared);
                probes.push(held);
            }
            Admit::Rejected(why) => assert_eq!(why, Rejection::HalfOpenFull),
        }
    }
    assert_eq!(probes.len(), 3);
    // The leases went back with the workers' first half-open admissions.
    assert_eq!((a.free, b.free), (0, 0));
    assert_eq!(record(&host).in_flight, 3);
    let mut closed = None;
    for (i, held) in probes.into_iter().enumerate() {
        let local = if i % 2 == 0 { &mut a } else { &mut b };
        closed = end(&host, &policy, local, held, Outcome::Success);
    }
    assert_eq!(closed, Some(Transition::Closed));
    let state = record(&host);
    assert_eq!((state.phase, state.in_flight), (Phase::Closed, 0));
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn a_fast_ticket_from_before_the_open_only_gives_its_slot_back() {
    let host = host();
    let policy = policy(
        r#"{"consecutive_failures": 2, "open_interval_ms": 5000, "max_concurrent": 16,
            "failure_rate": {"threshold_percent": 50, "window_ms": 10000, "min_requests": 20}}"#,
    );
    let (mut a, mut b) = (Local::default(), Local::default());
    let early = admitted(&host, &policy, &mut a);
    for _ in 0..2 {
        let held = admitted(&host, &policy, &mut b);
        end(&host, &policy, &mut b, held, Outcome::Failure);
    }
    let opened = record(&host);
    assert_eq!(opened.phase, Phase::Open);
    // a's request from the closed generation fails: no streak, no re-open, no window.
    assert_eq!(end(&host, &policy, &mut a, early, Outcome::Failure), None);
    let after = record(&host);
    assert_eq!(after.phase, Phase::Open);
    assert_eq!(after.generation, opened.generation);
    assert_eq!(after.open_until_ms, opened.open_until_ms);
    assert_eq!(after.window.totals(), (0, 0));
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn leases_hold_the_cap_across_workers_and_go_back_on_settle() {
    let host = host();
    let policy = policy(r#"{"max_concurrent": 4}"#);
    assert_eq!(policy.lease_size(), 1);
    let (mut a, mut b) = (Local::default(), Local::default());
    let mut held_a: Vec<Held> = (0..3).map(|_| admitted(&host, &policy, &mut a)).collect();
    let held_b = admitted(&host, &policy, &mut b);
    assert_eq!(record(&host).in_flight, 4);
    assert_eq!(
        admit(&host, &policy, &mut b),
        Admit::Rejected(Rejection::Overflow)
    );
    // a's finished request keeps its slot as a free lease: a admits on it without a write,
    // b is still refused (the price of leasing, bounded by two leases per worker).
    let first = held_a.remove(0);
    end(&host, &policy, &mut a, first, Outcome::Success);
    assert_eq!(a.free, 1);
    host.clear_calls();
    held_a.push(admitted(&host, &policy, &mut a));
    assert_eq!(writes(&host), 0);
    assert_eq!(
        admit(&host, &policy, &mut b),
        Admit::Rejected(Rejection::Overflow)
    );
    for held in held_a {
        end(&host, &policy, &mut a, held, Outcome::Success);
    }
    end(&host, &policy, &mut b, held_b, Outcome::Success);
    // Holding more than two free leases, a gave back all but one.
    assert_eq!((a.free, b.free), (1, 1));
    assert_eq!(record(&host).in_flight, 2);
    let mut rng = Rng::new(1);
    for local in [&mut a, &mut b] {
        assert!(worker::settle(&host, KEY, &policy, local, &mut rng)
            .unwrap()
            .is_some());
    }
    assert_eq!(record(&host).in_flight, 0);
    assert_eq!(
        worker::settle(&host, KEY, &policy, &mut a, &mut rng),
        Ok(None)
    );
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn successes_reach_the_window_in_batches_and_on_settle() {
    let host = host();
    let policy = policy(
        r#"{"failure_rate": {"threshold_percent": 50, "window_ms": 10000, "min_requests": 20}}"#,
    );
    assert_eq!(policy.success_batch(), 5);
    let mut local = Local::default();
    for _ in 0..12 {
        let held = admitted(&host, &policy, &mut local);
        end(&host, &policy, &mut local, held, Outcome::Success);
    }
    assert_eq!(writes(&host), 2);
    assert_eq!(record(&host).window.totals(), (10, 0));
    let mut rng = Rng::new(1);
    worker::settle(&host, KEY, &policy, &mut local, &mut rng).unwrap();
    assert_eq!(record(&host).window.totals(), (12, 0));
    // A failure carries the batch with it: the window sees both, in order.
    for _ in 0..3 {
        let held = admitted(&host, &policy, &mut local);
        end(&host, &policy, &mut local, held, Outcome::Success);
    }
    let held = admitted(&host, &policy, &mut local);
    end(&host, &policy, &mut local, held, Outcome::Failure);
    assert_eq!(record(&host).window.totals(), (16, 1));
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn a_success_breaks_a_streak_the_worker_saw() {
    let host = host();
    let policy = policy(r#"{"consecutive_failures": 3}"#);
    let (mut a, mut b) = (Local::default(), Local::default());
    for _ in 0..2 {
        let held = admitted(&host, &policy, &mut b);
        end(&host, &policy, &mut b, held, Outcome::Failure);
    }
    assert_eq!(record(&host).consecutive_failures, 2);
    // a reads the streak at admission; its success resets it, so b's next failure is the
    // first of a new streak and does not open.
    let held = admitted(&host, &policy, &mut a);
    assert_eq!(a.seen_streak, 2);
    end(&host, &policy, &mut a, held, Outcome::Success);
    assert_eq!(record(&host).consecutive_failures, 0);
    let held = admitted(&host, &policy, &mut b);
    assert_eq!(end(&host, &policy, &mut b, held, Outcome::Failure), None);
    assert_eq!(record(&host).phase, Phase::Closed);
}
