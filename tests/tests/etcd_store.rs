//! The etcd store against a real 3-member etcd cluster (no Envoy): appends are
//! compare-and-swap on the version (two replicas appending on the same version: exactly one
//! wins, the other gets a conflict naming both versions), every replica's watch sees every
//! version, one member down changes nothing, two down refuse changes with a clear error
//! within the deadline and fail health, and once they are back no acknowledged version is
//! missing from the history.
#![cfg(test)]

mod etcd_common;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use etcd_common::EtcdCluster;
use weft_etcd::{EtcdSettings, EtcdStore};
use weft_policy::set::DocDiff;
use weft_policy::PolicySet;
use weft_store::{NewRecord, Operation, Store, StoreError};

fn store(cluster: &EtcdCluster) -> EtcdStore {
    let mut settings =
        EtcdSettings::new(cluster.endpoints().split(',').map(str::to_string).collect());
    settings.timeout = Duration::from_millis(1500);
    settings.health_bound = Duration::from_secs(2);
    EtcdStore::connect(settings).unwrap()
}

fn change(parent: u64, author: &str) -> NewRecord {
    NewRecord {
        parent,
        author: author.into(),
        operation: Operation::Apply,
        diff: DocDiff::default(),
        documents: PolicySet::new(),
    }
}

/// Waits until `store`'s watch reports `version`.
fn watch_sees(store: &EtcdStore, version: u64) -> Duration {
    let start = Instant::now();
    let versions = store.versions();
    while *versions.borrow() != version {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "watch stuck at {}, want {version}",
            *versions.borrow()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    start.elapsed()
}

#[test]
fn etcd_store_compare_and_swap_history_watch_and_quorum_loss() {
    let mut cluster = EtcdCluster::start(3);
    let one = Arc::new(store(&cluster));
    let two = Arc::new(store(&cluster));
    assert_eq!(one.latest().unwrap(), None);
    assert_eq!(one.head().unwrap(), Some(0));

    let first = one.append(change(0, "one")).unwrap();
    assert_eq!(first.version, 1);
    assert_eq!(two.latest().unwrap().map(|r| r.author), Some("one".into()));
    let seen = watch_sees(&two, 1);
    println!(
        "replica two's watch saw version 1 after {} ms",
        seen.as_millis()
    );

    // Both replicas append on version 1 at the same instant, 20 rounds: exactly one wins.
    let mut acknowledged = vec![1];
    for round in 0..20u64 {
        let parent = 1 + round;
        let barrier = Arc::new(Barrier::new(2));
        let racers: Vec<_> = [Arc::clone(&one), Arc::clone(&two)]
            .into_iter()
            .enumerate()
            .map(|(i, store)| {
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    barrier.wait();
                    store.append(change(parent, &format!("racer-{i}")))
                })
            })
            .collect();
        let results: Vec<_> = racers.into_iter().map(|t| t.join().unwrap()).collect();
        let won: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(won.len(), 1, "round {round}: {results:?}");
        assert_eq!(won[0].version, parent + 1);
        acknowledged.push(won[0].version);
        let lost = results.iter().find_map(|r| r.as_ref().err()).unwrap();
        assert!(
            matches!(lost, StoreError::Conflict { parent: p, latest } if *p == parent && *latest == parent + 1),
            "{lost}"
        );
        assert!(
            lost.to_string().contains(&format!(
                "computed from version {parent}, store is at {}",
                parent + 1
            )),
            "{lost}"
        );
    }
    println!("20 concurrent rounds: one winner each, the loser told the version");

    // One member down: everything works.
    cluster.stop(2);
    let v = one.append(change(21, "one-member-down")).unwrap();
    acknowledged.push(v.version);
    assert_eq!(two.get(v.version).unwrap().map(|r| r.version), Some(22));
    watch_sees(&two, 22);

    // Two down: once the last member has noticed it has no leader (election timeout, 1 s),
    // a change is refused at once, clearly (never queued to commit later); health fails
    // after the bound.
    cluster.stop(1);
    std::thread::sleep(Duration::from_millis(2000));
    let started = Instant::now();
    let refused = one.append(change(22, "no-quorum")).unwrap_err();
    let took = started.elapsed();
    println!(
        "no quorum: append refused after {} ms: {refused}",
        took.as_millis()
    );
    assert!(matches!(refused, StoreError::Unavailable(_)), "{refused}");
    assert!(
        refused.to_string().contains("changes are refused"),
        "{refused}"
    );
    assert!(refused.to_string().contains("no leader"), "{refused}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    std::thread::sleep(Duration::from_millis(1000));
    let unhealthy = one.health().unwrap_err();
    println!("health: {unhealthy}");
    assert!(unhealthy.contains("etcd unreachable since"), "{unhealthy}");

    // Back: the replicas converge; every acknowledged version is in the history, in order.
    cluster.restart(1);
    cluster.restart(2);
    for i in 0..cluster.len() {
        cluster.wait_healthy(i, Duration::from_secs(30));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let v = loop {
        match two.append(change(22, "after")) {
            Ok(v) => break v,
            Err(StoreError::Unavailable(e)) if Instant::now() < deadline => {
                println!("not yet: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("{e}"),
        }
    };
    acknowledged.push(v.version);
    assert_eq!(v.version, 23, "the refused change left no version");
    watch_sees(&one, 23);
    assert!(one.health().is_ok());
    let history: Vec<u64> = one.history().unwrap().iter().map(|r| r.version).collect();
    assert_eq!(history, acknowledged);
    assert_eq!(history, (1..=23).collect::<Vec<_>>());
}
