use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use envoy_types::pb::google::rpc::Status;

use super::*;
use crate::event::Nack;
use crate::test_support::{mk_snapshot, CDS, ECDS};

fn req(type_url: &str, names: &[&str], version: &str, nonce: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        type_url: type_url.into(),
        resource_names: names.iter().map(|s| s.to_string()).collect(),
        version_info: version.into(),
        response_nonce: nonce.into(),
        ..Default::default()
    }
}

fn nack(type_url: &str, names: &[&str], version: &str, nonce: &str, msg: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        error_detail: Some(Status {
            code: 13,
            message: msg.into(),
            details: vec![],
        }),
        ..req(type_url, names, version, nonce)
    }
}

fn names(resp: &SotwResponse) -> Vec<String> {
    resp.resources
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body.value).into_owned())
        .collect()
}

fn conn() -> SotwConnection {
    SotwConnection::new(mk_snapshot(
        1,
        &[("weft.authz", "authz-a"), ("weft.canary", "canary-a")],
    ))
}

#[test]
fn first_request_is_answered_with_the_named_resources() {
    let mut c = conn();
    let out = c
        .handle_request(req(ECDS, &["weft.authz"], "", ""))
        .unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(names(&out[0]), ["authz-a"]);
    assert_eq!(out[0].type_url, ECDS);
    assert!(!out[0].nonce.is_empty());
    assert!(!c.is_synced());
}

#[test]
fn first_request_is_answered_even_when_the_client_has_the_version() {
    let mut c = conn();
    let v = c
        .handle_request(req(ECDS, &["weft.authz"], "", ""))
        .unwrap()[0]
        .version_info
        .clone();
    // A reconnect to a new control plane instance: same version, no nonce.
    let mut fresh = conn();
    let out = fresh
        .handle_request(req(ECDS, &["weft.authz"], &v, ""))
        .unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].version_info, v);
}

#[test]
fn ack_records_the_version_and_sends_nothing() {
    let mut c = conn();
    let r = c
        .handle_request(req(ECDS, &["weft.authz"], "", ""))
        .unwrap()
        .remove(0);
    let out = c
        .handle_request(req(ECDS, &["weft.authz"], &r.version_info, &r.nonce))
        .unwrap();
    assert!(out.is_empty());
    assert!(c.is_synced());
    assert_eq!(
        c.drain_events(),
        [Event::Acked {
            type_url: ECDS.into(),
            version: r.version_info
        }]
    );
    assert!(c.drain_events().is_empty());
}

#[test]
fn nack_is_recorded_with_error_detail_and_not_answered() {
    let mut c = conn();
    let r = c
        .handle_request(req(ECDS, &["weft.authz"], "", ""))
        .unwrap()
        .remove(0);
    let out = c
        .handle_request(nack(
            ECDS,
            &["weft.authz"],
            "",
            &r.nonce,
            "Unable to create Wasm plugin weft.authz",
        ))
        .unwrap();
    assert!(out.is_empty(), "resending what was refused would loop");
    assert!(!c.is_synced());
    assert_eq!(
        c.drain_events(),
        [Event::Nacked(Nack {
            type_url: ECDS.into(),
            rejected_version: r.version_info,
            revision: 1,
            nonce: r.nonce,
            code: 13,
            message: "Unable to create Wasm plugin weft.authz".into(),
        })]
    );
}

#[test]
fn after_a_nack_updates_wait_for_the_release_then_the_new_snapshot_is_sent() {
    let mut c = conn();
    let r = c
        .handle_request(req(ECDS, &["weft.authz"], "", ""))
        .unwrap()
        .remove(0);
    c.handle_request(nack(ECDS, &["weft.authz"], "", &r.nonce, "bad"))
        .unwrap();
    assert!(
        c.handle_update(mk_snapshot(2, &[("weft.authz", "authz-b")]))
            .is_empty(),
        "held"
    );
    // A changed subscription is held too.
    assert!(c
        .handle_request(req(ECDS, &["weft.authz", "weft.canary"], "", &r.nonce))
        .unwrap()
        .is_empty());
    let out = c.resend_nacked(false);
    assert_eq!(out.len(), 1);
    assert_eq!(names(&out[0]), ["authz-b"]);
    assert!(c.resend_nacked(false).is_empty(), "released once");
    let released = &out[0];
    c.handle_request(req(
        ECDS,
        &["weft.authz", "weft.canary"],
        &released.version_info,
        &released.nonce,
    ))
    .unwrap();
    let out = c.handle_update(mk_snapshot(3, &[("weft.authz", "authz-c")]));
    assert_eq!(out.len(), 1);
    assert_eq!(names(&out[0]), ["authz-c"]);
}

#[test]
fn released_without_force_sends_nothing_when_unchanged() {
    let mut c = conn();
    let r = c
        .handle_request(req(ECDS, &["weft.authz"], "", ""))
        .unwrap()
        .remove(0);
    c.handle_request(nack(ECDS, &["weft.authz"], "", &r.nonce, "bad"))
        .unwrap();
    assert!(c.resend_nacked(false).is_empty());
    let out = c.handle_update(mk_snapshot(2, &[("weft.authz", "authz-b")]));
    assert_eq!(names(&out[0]), ["authz-b"]);
}

#[test]
fn nack_then_new_snapshot_after_release() {
    let mut c = conn();
    let r = c
        .handle_request(req(ECDS, &["weft.authz"], "", ""))
        .unwrap()
        .remove(0);
    c.handle_request(nack(ECDS, &["weft.authz"], "", &r.nonce, "bad"))
        .unwrap();
    c.resend_nacked(false);
    let out = c.handle_update(mk_snapshot(2, &[("weft.authz", "authz-b")]));
    assert_eq!(out.len(), 1);
    assert_eq!(names(&out[0]), ["authz-b"]);
    let ack = c
        .handle_request(req(
            ECDS,
            &["weft.authz"],
            &out[0].version_info,
            &out[0].nonce,
        ))
        .unwrap();
    assert!(ack.is_empty());
    assert!(c.is_synced());
}

#[test]
fn stale_nonce_is_ignored() {
    let mut c = conn();
    let r1 = c
        .handle_request(req(ECDS, &["weft.authz"], "", ""))
        .unwrap()
        .remove(0);
    // A changed subscription is answered at once, whatever is in flight.
    let r2 = c
        .handle_request(req(
            ECDS,
            &["weft.authz", "weft.canary"],
            &r1.version_info,
            &r1.nonce,
        ))
        .unwrap()
        .remove(0);
    assert_ne!(r1.nonce, r2.nonce);
    c.drain_events();
    // Envoy answers the first response again after we already sent the second.
    let out = c
        .handle_request(req(
            ECDS,
            &["weft.authz", "weft.canary"],
            &r1.version_info,
            &r1.nonce,
        ))
        .unwrap();
    assert!(out.is_empty());
    assert!(
        c.drain_events().is_empty(),
        "a stale ACK is not an ACK of the latest"
    );
    assert!(!c.is_synced());
    c.handle_request(req(
        ECDS,
        &["weft.authz", "weft.canary"],
        &r2.version_info,
        &r2.nonce,
    ))
    .unwrap();
    assert!(c.is_synced());
}

#[test]
fn an_update_while_a_response_awaits_its_ack_goes_with_the_ack() {
    let mut c = conn();
    let r1 = c
        .handle_request(req(ECDS, &["weft.authz"], "", ""))
        .unwrap()
        .remove(0);
    // Two snapshots while r1 is unanswered: nothing queued behind it.
    assert!(c
        .handle_update(mk_snapshot(2, &[("weft.authz", "authz-b")]))
        .is_empty());
    assert!(c
        .handle_update(mk_snapshot(3, &[("weft.authz", "authz-c")]))
        .is_empty());
    // The ACK of r1 is answered with the newest selection only.
    let out = c
        .handle_request(req(ECDS, &["weft.authz"], &r1.version_info, &r1.nonce))
        .unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(names(&out[0]), ["authz-c"]);
    assert!(!c.is_synced());
    let r = &out[0];
    let out = c
        .handle_request(req(ECDS, &["weft.authz"], &r.version_info, &r.nonce))
        .unwrap();
    assert!(out.is_empty(), "nothing changed since");
    assert!(c.is_synced());
    assert_eq!(c.snapshot_revision(), 3);
}

#[test]
fn update_sends_only_types_whose_selection_changed() {
    let mut c = conn();
    let r = c
        .handle_request(req(ECDS, &["weft.authz"], "", ""))
        .unwrap()
        .remove(0);
    c.handle_request(req(ECDS, &["weft.authz"], &r.version_info, &r.nonce))
        .unwrap();
    // Only the canary resource changed; this stream watches authz.
    let out = c.handle_update(mk_snapshot(
        2,
        &[("weft.authz", "authz-a"), ("weft.canary", "canary-b")],
    ));
    assert!(out.is_empty());
    assert!(c.is_synced());
    assert_eq!(c.snapshot_revision(), 2);
    let out = c.handle_update(mk_snapshot(3, &[("weft.authz", "authz-c")]));
    assert_eq!(names(&out[0]), ["authz-c"]);
}

#[test]
fn changed_subscription_is_answered() {
    let mut c = conn();
    let r = c
        .handle_request(req(ECDS, &["weft.authz"], "", ""))
        .unwrap()
        .remove(0);
    let out = c
        .handle_request(req(
            ECDS,
            &["weft.authz", "weft.canary"],
            &r.version_info,
            &r.nonce,
        ))
        .unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(names(&out[0]), ["authz-a", "canary-a"]);
}

#[test]
fn empty_names_on_cds_is_wildcard_and_star_is_wildcard_everywhere() {
    let snapshot = std::sync::Arc::new(
        Snapshot::new(
            1,
            [
                (CDS.to_string(), vec![]),
                (
                    ECDS.to_string(),
                    vec![
                        crate::test_support::mk_resource(ECDS, "a", "a"),
                        crate::test_support::mk_resource(ECDS, "b", "b"),
                    ],
                ),
            ],
        )
        .unwrap(),
    );
    let mut c = SotwConnection::new(snapshot);
    let out = c.handle_request(req(ECDS, &["*"], "", "")).unwrap();
    assert_eq!(names(&out[0]), ["a", "b"]);
    let out = c.handle_request(req(CDS, &[], "", "")).unwrap();
    assert_eq!(out.len(), 1);
    assert!(out[0].resources.is_empty());
    // Empty names on a non-wildcard type selects nothing.
    let mut c = conn();
    let out = c.handle_request(req(ECDS, &[], "", "")).unwrap();
    assert!(out[0].resources.is_empty());
}

#[test]
fn missing_type_url_is_a_protocol_error() {
    let mut c = conn();
    assert_eq!(
        c.handle_request(req("", &[], "", "")),
        Err(ProtocolError::MissingTypeUrl)
    );
}

#[test]
fn node_is_taken_from_the_first_request() {
    let mut c = conn();
    let mut r = req(ECDS, &["weft.authz"], "", "");
    r.node = Some(Node {
        id: "reviews-1".into(),
        cluster: "reviews".into(),
        ..Default::default()
    });
    c.handle_request(r).unwrap();
    assert_eq!(c.node().map(|n| n.id.as_str()), Some("reviews-1"));
}

fn with_empty_cds() -> std::sync::Arc<Snapshot> {
    let resources = vec![crate::test_support::mk_resource(
        ECDS,
        "weft.authz",
        "authz-a",
    )];
    std::sync::Arc::new(
        Snapshot::new(
            1,
            [(ECDS.to_string(), resources), (CDS.to_string(), vec![])],
        )
        .unwrap(),
    )
}

#[test]
fn a_type_the_snapshot_does_not_hold_is_not_answered_until_it_does() {
    // E.g. CDS while the mesh registry warms up after a restart: an empty CDS answer would
    // remove every cluster the sidecar has.
    let mut c = conn();
    assert!(c.handle_request(req(CDS, &[], "", "")).unwrap().is_empty());
    assert!(!c.is_synced());
    let out = c.handle_update(with_empty_cds());
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].type_url, CDS);
}

#[test]
fn synced_needs_every_type_acked() {
    let mut c = SotwConnection::new(with_empty_cds());
    let e = c
        .handle_request(req(ECDS, &["weft.authz"], "", ""))
        .unwrap()
        .remove(0);
    let k = c.handle_request(req(CDS, &[], "", "")).unwrap().remove(0);
    c.handle_request(req(ECDS, &["weft.authz"], &e.version_info, &e.nonce))
        .unwrap();
    assert!(!c.is_synced());
    c.handle_request(req(CDS, &[], &k.version_info, &k.nonce))
        .unwrap();
    assert!(c.is_synced());
}

#[test]
fn resend_nacked_sends_the_refused_resources_again_with_a_new_nonce() {
    let mut c = conn();
    let r = c
        .handle_request(req(ECDS, &["weft.authz"], "", ""))
        .unwrap()
        .remove(0);
    assert!(c.resend_nacked(true).is_empty(), "nothing was refused");
    c.handle_request(nack(ECDS, &["weft.authz"], "", &r.nonce, "fetching"))
        .unwrap();
    let again = c.resend_nacked(true);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].version_info, r.version_info);
    assert_ne!(again[0].nonce, r.nonce);
    assert_eq!(names(&again[0]), ["authz-a"]);
    c.handle_request(req(
        ECDS,
        &["weft.authz"],
        &again[0].version_info,
        &again[0].nonce,
    ))
    .unwrap();
    assert!(c.is_synced());
    assert!(c.resend_nacked(true).is_empty());
}

#[test]
fn running_modules_are_those_of_the_selected_filter_entries() {
    let snapshot = Snapshot::clone(&mk_snapshot(
        1,
        &[("weft.authz", "authz-a"), ("weft.canary", "canary-a")],
    ))
    .with_modules(BTreeMap::from([
        ("weft.authz".to_string(), ("authz".to_string(), "aa".into())),
        (
            "weft.canary".to_string(),
            ("canary".to_string(), "cc".into()),
        ),
    ]));
    let mut c = SotwConnection::new(Arc::new(snapshot));
    assert!(c.running_modules().is_empty(), "nothing subscribed");
    let out = c
        .handle_request(req(ECDS, &["weft.authz"], "", ""))
        .unwrap();
    c.handle_request(req(
        ECDS,
        &["weft.authz"],
        &out[0].version_info,
        &out[0].nonce,
    ))
    .unwrap();
    assert!(c.is_synced());
    assert_eq!(
        c.running_modules(),
        Arc::new(BTreeMap::from([("authz".to_string(), "aa".to_string())]))
    );
}

/// A snapshot whose resources of a type are unchanged sends nothing for it without selecting
/// again (the type version); a change to a resource the stream did not select sends
/// nothing either; a changed subscription or a changed selected resource is sent.
#[test]
fn unchanged_types_and_unselected_changes_send_nothing() {
    let mut c = conn();
    let first = c
        .handle_request(req(ECDS, &["weft.authz"], "", ""))
        .unwrap()
        .remove(0);
    assert!(c
        .handle_request(req(
            ECDS,
            &["weft.authz"],
            &first.version_info,
            &first.nonce
        ))
        .unwrap()
        .is_empty());
    // A new revision, the same resources.
    let same = mk_snapshot(2, &[("weft.authz", "authz-a"), ("weft.canary", "canary-a")]);
    assert_eq!(same.type_version(ECDS), c.snapshot.type_version(ECDS));
    assert!(c.handle_update(same).is_empty());
    // Only the unselected canary changed.
    let canary = mk_snapshot(3, &[("weft.authz", "authz-a"), ("weft.canary", "canary-b")]);
    assert_ne!(canary.type_version(ECDS), c.snapshot.type_version(ECDS));
    assert!(c.handle_update(canary).is_empty());
    assert!(c.is_synced());
    // The subscription grows: both are sent, the canary as it is now.
    let grown = c
        .handle_request(req(
            ECDS,
            &["weft.authz", "weft.canary"],
            &first.version_info,
            &first.nonce,
        ))
        .unwrap()
        .remove(0);
    assert_eq!(names(&grown), ["authz-a", "canary-b"]);
    c.handle_request(req(
        ECDS,
        &["weft.authz", "weft.canary"],
        &grown.version_info,
        &grown.nonce,
    ))
    .unwrap();
    // The selected authz changes: sent.
    let out = c.handle_update(mk_snapshot(
        4,
        &[("weft.authz", "authz-b"), ("weft.canary", "canary-b")],
    ));
    assert_eq!(out.len(), 1);
    assert_eq!(names(&out[0]), ["authz-b", "canary-b"]);
}

#[test]
fn an_ack_repeating_its_names_is_judged_as_building_the_set_would() {
    // Every list of up to 3 names over {a, b, *} (with repeats and any order), against every
    // subscription such lists make: the fast path agrees with comparing built sets.
    let alphabet = ["a", "b", "*"];
    let mut lists: Vec<Vec<String>> = vec![Vec::new()];
    for len in 1..=3 {
        let mut at = vec![0usize; len];
        loop {
            lists.push(at.iter().map(|&i| alphabet[i].to_string()).collect());
            let Some(pos) = (0..len).rev().find(|&p| at[p] + 1 < alphabet.len()) else {
                break;
            };
            at[pos] += 1;
            at[pos + 1..].iter_mut().for_each(|i| *i = 0);
        }
    }
    for type_url in [ECDS, CDS] {
        let subscriptions: Vec<Option<BTreeSet<String>>> = lists
            .iter()
            .map(|names| subscription(type_url, names))
            .collect();
        for current in &subscriptions {
            for names in &lists {
                assert_eq!(
                    same_subscription(current.as_ref(), type_url, names),
                    *current == subscription(type_url, names),
                    "{type_url}: {current:?} vs {names:?}"
                );
            }
        }
    }
}
