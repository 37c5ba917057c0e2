use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use envoy_types::pb::google::rpc::Status;

use super::*;
use crate::test_support::{mk_snapshot, ECDS};

fn sub(names: &[&str]) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: ECDS.into(),
        resource_names_subscribe: names.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn ack(nonce: &str) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: ECDS.into(),
        response_nonce: nonce.into(),
        ..Default::default()
    }
}

fn bodies(resp: &DeltaDiscoveryResponse) -> Vec<String> {
    resp.resources
        .iter()
        .filter_map(|r| r.resource.as_ref())
        .map(|a| String::from_utf8_lossy(&a.value).into_owned())
        .collect()
}

fn conn() -> DeltaConnection {
    DeltaConnection::new(mk_snapshot(1, &[("a", "a1"), ("b", "b1")]))
}

#[test]
fn explicit_subscription_sends_named_resources() {
    let mut c = conn();
    let out = c.handle_request(sub(&["a"])).unwrap();
    assert_eq!(bodies(&out[0]), ["a1"]);
    assert_eq!(out[0].resources[0].name, "a");
    assert!(out[0].removed_resources.is_empty());
    assert_eq!(out[0].system_version_info, "1");
}

#[test]
fn first_request_without_names_is_wildcard() {
    let mut c = conn();
    let out = c.handle_request(sub(&[])).unwrap();
    assert_eq!(bodies(&out[0]), ["a1", "b1"]);
}

#[test]
fn ack_and_nack_are_recorded_for_the_latest_nonce_only() {
    let mut c = conn();
    let r = c.handle_request(sub(&["a"])).unwrap().remove(0);
    assert!(c.handle_request(ack("999")).unwrap().is_empty());
    assert!(c.drain_events().is_empty(), "unknown nonce");
    assert!(c.handle_request(ack(&r.nonce)).unwrap().is_empty());
    assert_eq!(
        c.drain_events(),
        [Event::Acked {
            type_url: ECDS.into(),
            version: "1".into()
        }]
    );
    assert!(c.is_synced());

    let u = c.handle_update(mk_snapshot(2, &[("a", "a2")])).remove(0);
    let mut n = ack(&u.nonce);
    n.error_detail = Some(Status {
        code: 13,
        message: "Unable to create Wasm plugin a".into(),
        details: vec![],
    });
    assert!(
        c.handle_request(n).unwrap().is_empty(),
        "a NACK is not answered with the same resources"
    );
    assert!(
        c.handle_update(mk_snapshot(3, &[("a", "a3")])).is_empty(),
        "held until released"
    );
    assert!(!c.is_synced());
    match c.drain_events().as_slice() {
        [Event::Nacked(nack)] => {
            assert_eq!(nack.rejected_version, "2");
            let out = c.resend_nacked(false);
            assert_eq!(bodies(&out[0]), ["a3"]);
            assert_eq!(nack.message, "Unable to create Wasm plugin a");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn update_sends_only_changed_resources_and_removals() {
    let mut c = conn();
    c.handle_request(sub(&[])).unwrap();
    let out = c.handle_update(mk_snapshot(2, &[("a", "a1"), ("c", "c1")]));
    assert_eq!(bodies(&out[0]), ["c1"]);
    assert_eq!(out[0].removed_resources, ["b"]);
    assert!(c
        .handle_update(mk_snapshot(3, &[("a", "a1"), ("c", "c1")]))
        .is_empty());
}

#[test]
fn missing_explicit_name_is_reported_removed_once() {
    let mut c = conn();
    let out = c.handle_request(sub(&["a", "zzz"])).unwrap();
    assert_eq!(bodies(&out[0]), ["a1"]);
    assert_eq!(out[0].removed_resources, ["zzz"]);
    assert!(c
        .handle_update(mk_snapshot(2, &[("a", "a1"), ("b", "b2")]))
        .is_empty());
    let out = c.handle_update(mk_snapshot(3, &[("a", "a1"), ("zzz", "z1")]));
    assert_eq!(bodies(&out[0]), ["z1"]);
}

#[test]
fn initial_resource_versions_avoid_resending_on_reconnect() {
    let snapshot = mk_snapshot(1, &[("a", "a1"), ("b", "b1")]);
    let a_version = snapshot.get(ECDS, "a").unwrap().version.clone();
    let mut c = DeltaConnection::new(snapshot);
    let mut r = sub(&["a", "b"]);
    r.initial_resource_versions = [
        ("a".to_string(), a_version),
        ("b".to_string(), "old".to_string()),
    ]
    .into_iter()
    .collect();
    let out = c.handle_request(r).unwrap();
    assert_eq!(bodies(&out[0]), ["b1"]);
}

#[test]
fn reconnect_with_nothing_new_still_gets_an_answer() {
    let snapshot = mk_snapshot(1, &[("a", "a1")]);
    let a_version = snapshot.get(ECDS, "a").unwrap().version.clone();
    let mut c = DeltaConnection::new(snapshot);
    let mut r = sub(&["a"]);
    r.initial_resource_versions = [("a".to_string(), a_version)].into_iter().collect();
    let out = c.handle_request(r).unwrap();
    assert_eq!(out.len(), 1);
    assert!(out[0].resources.is_empty() && out[0].removed_resources.is_empty());
}

#[test]
fn unsubscribe_then_subscribe_sends_again() {
    let mut c = conn();
    let r = c.handle_request(sub(&["a", "b"])).unwrap().remove(0);
    let mut u = ack(&r.nonce);
    u.resource_names_unsubscribe = vec!["b".into()];
    assert!(c.handle_request(u).unwrap().is_empty());
    assert!(
        c.handle_update(mk_snapshot(2, &[("a", "a1"), ("b", "b2")]))
            .is_empty(),
        "b is not watched"
    );
    let out = c.handle_request(sub(&["b"])).unwrap();
    assert_eq!(bodies(&out[0]), ["b2"]);
}

#[test]
fn star_toggles_wildcard() {
    let mut c = conn();
    c.handle_request(sub(&["a"])).unwrap();
    let out = c.handle_request(sub(&["*"])).unwrap();
    assert_eq!(bodies(&out[0]), ["b1"]);
    let mut u = sub(&[]);
    u.resource_names_unsubscribe = vec!["*".into()];
    c.handle_request(u).unwrap();
    assert!(c
        .handle_update(mk_snapshot(2, &[("a", "a1"), ("b", "b2")]))
        .is_empty());
}

#[test]
fn missing_type_url_is_a_protocol_error() {
    let mut c = conn();
    let mut r = sub(&[]);
    r.type_url.clear();
    assert_eq!(c.handle_request(r), Err(ProtocolError::MissingTypeUrl));
}

#[test]
fn resend_nacked_sends_the_refused_resources_again() {
    let mut c = conn();
    let r = c.handle_request(sub(&["a"])).unwrap().remove(0);
    assert!(c.resend_nacked(true).is_empty());
    let mut n = ack(&r.nonce);
    n.error_detail = Some(Status {
        code: 13,
        message: "fetching".into(),
        details: vec![],
    });
    c.handle_request(n).unwrap();
    let again = c.resend_nacked(true);
    assert_eq!(bodies(&again[0]), ["a1"]);
    assert_ne!(again[0].nonce, r.nonce);
    c.handle_request(ack(&again[0].nonce)).unwrap();
    assert!(c.is_synced());
}

#[test]
fn each_outstanding_response_is_acked_or_nacked_on_its_own() {
    let mut c = conn();
    let first = c.handle_request(sub(&["a"])).unwrap().remove(0);
    // A second response (a newly subscribed name) goes out before Envoy answered the first.
    let second = c.handle_request(sub(&["b"])).unwrap().remove(0);
    assert_ne!(first.nonce, second.nonce);
    c.handle_request(ack(&second.nonce)).unwrap();
    assert!(!c.is_synced(), "the first response is still unanswered");
    let mut n = ack(&first.nonce);
    n.error_detail = Some(Status {
        code: 13,
        message: "fetching".into(),
        details: vec![],
    });
    c.handle_request(n).unwrap();
    let events = c.drain_events();
    assert!(
        matches!(events.as_slice(), [Event::Acked { .. }, Event::Nacked(_)]),
        "{events:?}"
    );
    assert!(!c.is_synced());
    let again = c.resend_nacked(true);
    assert_eq!(bodies(&again[0]), ["a1"], "only what was refused");
    c.handle_request(ack(&again[0].nonce)).unwrap();
    assert!(c.is_synced());
}

#[test]
fn a_type_the_snapshot_does_not_hold_is_not_answered_until_it_does() {
    let mut c = conn();
    let mut r = sub(&[]);
    r.type_url = crate::type_url::LISTENER.into();
    assert!(c.handle_request(r).unwrap().is_empty());
    let cds = crate::test_support::mk_resource(crate::type_url::LISTENER, "c", "c1");
    let snapshot = Snapshot::new(2, [(crate::type_url::LISTENER.to_string(), vec![cds])]).unwrap();
    let out = c.handle_update(Arc::new(snapshot));
    assert_eq!(bodies(&out[0]), ["c1"]);
}

#[test]
fn running_modules_are_those_sent_and_not_removed() {
    let snapshot =
        crate::snapshot::Snapshot::clone(&conn().snapshot).with_modules(BTreeMap::from([
            ("a".to_string(), ("authz".to_string(), "aa".into())),
            ("b".to_string(), ("canary".to_string(), "bb".into())),
        ]));
    let mut c = DeltaConnection::new(Arc::new(snapshot));
    let r = c.handle_request(sub(&["a"])).unwrap().remove(0);
    c.handle_request(ack(&r.nonce)).unwrap();
    assert!(c.is_synced());
    assert_eq!(
        c.running_modules(),
        Arc::new(BTreeMap::from([("authz".to_string(), "aa".to_string())]))
    );
}
