//! The driver against a real `ControlPlane` (in-memory store) and `Telemetry` fed signed
//! batches: transitions are policy versions authored by the rollout, a refused write is an
//! event and nothing else, commands are checked, and a new driver resumes from the store.

use std::sync::Arc;

use weft_filter_core::telemetry::{sign, Direction, EdgeReport, Report, LATENCY_BUCKETS};
use weft_policy::Limits;
use weft_state::ControlPlane;
use weft_store::MemoryStore;
use weft_telemetry_plane::{GroupKeys, Telemetry};

use crate::machine::{Command, EventKind};
use crate::runtime::{Rollouts, RuntimeError};
use crate::EventLog;

const MESH: &str = "apiVersion: weft.dev/v1alpha1\nkind: Service\nmetadata: {name: reviews}\nspec: {port: 9080, versions: [v1, v2]}\n---\napiVersion: weft.dev/v1alpha1\nkind: Rollout\nmetadata: {name: reviews}\nspec:\n  target: {service: reviews}\n  stable: v1\n  canary: v2\n  steps: [{weight: 25}, {weight: 50}]\n  interval: 2s\n  analysis: {successRate: {min: 95}, minRequests: 10, failureThreshold: 1}\n";

fn mk_runtime(plane: &Arc<ControlPlane>, telemetry: &Arc<Telemetry>) -> Arc<Rollouts> {
    Rollouts::new(Arc::clone(plane), Arc::clone(telemetry), EventLog::memory())
}

/// `requests` received by `version`'s sidecars, `errors` of them 5xx, as a signed batch.
fn report(t: &Telemetry, version: &str, requests: u64, errors: u64) {
    let mut latency = vec![0; LATENCY_BUCKETS];
    latency[2] = requests;
    let body = serde_json::to_vec(&Report {
        namespace: "default".into(),
        service: "reviews".into(),
        version: version.into(),
        reporter: Direction::Inbound,
        dropped: 0,
        edges: vec![EdgeReport {
            source: String::new(),
            destination: "reviews".into(),
            version: version.into(),
            requests,
            status: [0, 0, requests - errors, 0, 0, errors],
            denied: 0,
            dry_run_denied: 0,
            breaker_open: 0,
            latency,
            latency_us_sum: 0,
            routes: Vec::new(),
            routes_truncated: false,
            ..EdgeReport::default()
        }],
    })
    .unwrap();
    let key = t.keys().key("default", "reviews", version);
    t.ingest(&body, Some(&sign(&key, &body))).unwrap();
}

#[test]
fn transitions_are_policy_versions_and_a_new_driver_resumes_from_the_store() {
    let plane =
        Arc::new(ControlPlane::open(Arc::new(MemoryStore::new()), Limits::default()).unwrap());
    plane.apply(MESH.as_bytes(), "alice", false, None).unwrap();
    let telemetry = Telemetry::new(GroupKeys::new(b"secret".to_vec()));
    let rollouts = mk_runtime(&plane, &telemetry);
    rollouts.tick(0);
    let history = plane.history().unwrap();
    let last = history.last().unwrap();
    assert_eq!(last.author, "rollout/reviews");
    assert_eq!(rollouts.statuses(0)[0].weight_bp, 2500);
    // Healthy traffic for one interval: the next step.
    report(&telemetry, "v2", 50, 0);
    report(&telemetry, "v1", 150, 0);
    rollouts.tick(2_000);
    assert_eq!(rollouts.statuses(2_000)[0].weight_bp, 5000);
    assert_eq!(plane.history().unwrap().len(), 3);
    // A new process: same store, fresh telemetry and controllers.
    let telemetry = Telemetry::new(GroupKeys::new(b"secret".to_vec()));
    let resumed = mk_runtime(&plane, &telemetry);
    let status = resumed.statuses(10_000).remove(0);
    assert_eq!(
        (status.phase.as_str(), status.step, status.weight_bp),
        ("Progressing", 2, 5000)
    );
    resumed.tick(10_000);
    assert_eq!(plane.history().unwrap().len(), 3, "no restart from step 1");
    // Failing traffic: rolled back in one version.
    report(&telemetry, "v2", 50, 10);
    resumed.tick(12_000);
    let status = resumed.statuses(12_000).remove(0);
    assert_eq!((status.phase.as_str(), status.weight_bp), ("RolledBack", 0));
    let kinds: Vec<EventKind> = resumed
        .events
        .list(None, 10)
        .iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, vec![EventKind::CheckFailed, EventKind::RolledBack]);
    // Finished: commands are refused, unknown rollouts are not found.
    let refused = resumed.command("default/reviews", Command::Resume, 13_000);
    assert!(
        matches!(refused, Err(RuntimeError::Command(_))),
        "{refused:?}"
    );
    let missing = resumed.command("default/nope", Command::Abort, 13_000);
    assert!(
        matches!(missing, Err(RuntimeError::NotFound(_))),
        "{missing:?}"
    );
}

#[test]
fn a_refused_write_is_an_event_and_the_store_stays_as_it_was() {
    let plane =
        Arc::new(ControlPlane::open(Arc::new(MemoryStore::new()), Limits::default()).unwrap());
    // A TrafficSplit named like the rollout already targets another service: the rollout
    // cannot create its own split under that name.
    let other = "---\napiVersion: weft.dev/v1alpha1\nkind: Service\nmetadata: {name: ratings}\nspec: {port: 9080, versions: [v1]}\n---\napiVersion: weft.dev/v1alpha1\nkind: TrafficSplit\nmetadata: {name: reviews}\nspec:\n  target: {service: ratings}\n  split: [{version: v1, weight: 100}]\n";
    plane
        .apply(format!("{MESH}{other}").as_bytes(), "alice", false, None)
        .unwrap();
    let before = plane.snapshot().version;
    let rollouts = mk_runtime(&plane, &Telemetry::new(GroupKeys::new(b"s".to_vec())));
    rollouts.tick(0);
    assert_eq!(plane.snapshot().version, before);
    let events = rollouts.events.list(None, 10);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, EventKind::WriteFailed);
    assert!(
        events[0]
            .message
            .contains("TrafficSplit/default/reviews exists and targets another service"),
        "{}",
        events[0].message
    );
    // The controller takes the store's (absent) progress back, and tries again one interval
    // later, not every tick.
    assert_eq!(rollouts.statuses(1)[0].phase, "Pending");
    for now in [200, 400, 1_800] {
        rollouts.tick(now);
    }
    assert_eq!(rollouts.events.list(None, 10).len(), 1);
    rollouts.tick(2_000);
    assert_eq!(rollouts.events.list(None, 10).len(), 2);
}

#[test]
fn the_event_log_survives_a_reopen_skips_a_torn_line_and_rotates() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path()).unwrap();
    let plane =
        Arc::new(ControlPlane::open(Arc::new(MemoryStore::new()), Limits::default()).unwrap());
    plane.apply(MESH.as_bytes(), "alice", false, None).unwrap();
    let rollouts = Rollouts::new(
        Arc::clone(&plane),
        Telemetry::new(GroupKeys::new(b"s".to_vec())),
        log,
    );
    rollouts.tick(0);
    let path = dir.path().join("events.jsonl");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("{\"torn\": ");
    std::fs::write(&path, &text).unwrap();
    let reopened = EventLog::open(dir.path()).unwrap();
    let events = reopened.list(Some("default/reviews"), 10);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, EventKind::Started);
    assert_eq!(reopened.list(Some("default/other"), 10).len(), 0);
    // Past the size bound the file is rotated, not grown.
    let big = "x".repeat(usize::try_from(crate::events::MAX_FILE_BYTES).unwrap() + 1);
    std::fs::write(&path, big).unwrap();
    reopened.push(events[0].clone());
    assert!(dir.path().join("events.jsonl.1").exists());
    assert!(std::fs::metadata(&path).unwrap().len() < 4096);
}
