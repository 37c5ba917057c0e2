//! SotW and Delta record a sidecar's replies through one core ([`reply_event`]): the same
//! NACK reads the same in a sidecar's status whichever protocol it speaks.

use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use envoy_types::pb::google::rpc::Status;

use super::*;
use crate::delta::DeltaConnection;
use crate::sotw::SotwConnection;
use crate::test_support::{mk_snapshot, ECDS};

fn refused() -> Status {
    Status {
        code: 13,
        message: "Unable to create Wasm plugin weft.authz".into(),
        details: vec![],
    }
}

/// What a status shows of a NACK, apart from the protocol's own version and nonce.
fn shown(events: &[Event]) -> Vec<(String, u64, i32, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Nacked(n) => Some((n.type_url.clone(), n.revision, n.code, n.message.clone())),
            Event::Acked { .. } => None,
        })
        .collect()
}

/// SotW: subscribe at revision 1, ACK it, get revision 2, NACK it.
fn sotw_nack_of_revision_2() -> Vec<Event> {
    let mut c = SotwConnection::new(mk_snapshot(1, &[("weft.authz", "a1")]));
    let first = c
        .handle_request(DiscoveryRequest {
            type_url: ECDS.into(),
            resource_names: vec!["weft.authz".into()],
            ..Default::default()
        })
        .unwrap()
        .remove(0);
    let ack = DiscoveryRequest {
        type_url: ECDS.into(),
        resource_names: vec!["weft.authz".into()],
        version_info: first.version_info.clone(),
        response_nonce: first.nonce.clone(),
        ..Default::default()
    };
    assert!(c.handle_request(ack.clone()).unwrap().is_empty());
    let second = c
        .handle_update(mk_snapshot(2, &[("weft.authz", "a2")]))
        .remove(0);
    c.handle_request(DiscoveryRequest {
        response_nonce: second.nonce,
        error_detail: Some(refused()),
        ..ack
    })
    .unwrap();
    c.drain_events()
}

/// Delta: the same, with the snapshot moving on to revision 3 before the NACK arrives.
fn delta_nack_of_revision_2() -> Vec<Event> {
    let mut c = DeltaConnection::new(mk_snapshot(1, &[("weft.authz", "a1")]));
    let first = c
        .handle_request(DeltaDiscoveryRequest {
            type_url: ECDS.into(),
            resource_names_subscribe: vec!["weft.authz".into()],
            ..Default::default()
        })
        .unwrap()
        .remove(0);
    let reply = |nonce: &str, error: Option<Status>| DeltaDiscoveryRequest {
        type_url: ECDS.into(),
        response_nonce: nonce.into(),
        error_detail: error,
        ..Default::default()
    };
    assert!(c
        .handle_request(reply(&first.nonce, None))
        .unwrap()
        .is_empty());
    let second = c
        .handle_update(mk_snapshot(2, &[("weft.authz", "a2")]))
        .remove(0);
    c.handle_update(mk_snapshot(3, &[("weft.authz", "a3")]));
    c.handle_request(reply(&second.nonce, Some(refused())))
        .unwrap();
    c.drain_events()
}

#[test]
fn the_same_nack_is_recorded_the_same_way_by_sotw_and_delta() {
    let sotw = sotw_nack_of_revision_2();
    let delta = delta_nack_of_revision_2();
    let want = vec![(
        ECDS.to_string(),
        2,
        13,
        "Unable to create Wasm plugin weft.authz".to_string(),
    )];
    assert_eq!(shown(&sotw), want, "{sotw:?}");
    assert_eq!(shown(&delta), want, "{delta:?}");
}

#[test]
fn delta_names_the_refused_responses_version_not_the_newest_snapshots() {
    let events = delta_nack_of_revision_2();
    match events.as_slice() {
        [Event::Acked { version, .. }, Event::Nacked(nack)] => {
            assert_eq!(version, "1");
            assert_eq!(nack.rejected_version, "2");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_core_maps_a_reply_to_an_ack_or_a_nack() {
    let answered = || Answered {
        version: "v7".into(),
        revision: 7,
    };
    assert_eq!(
        reply_event(ECDS, "3", None, answered()),
        Event::Acked {
            type_url: ECDS.into(),
            version: "v7".into()
        }
    );
    assert_eq!(
        reply_event(ECDS, "3", Some(&refused()), answered()),
        Event::Nacked(Nack {
            type_url: ECDS.into(),
            rejected_version: "v7".into(),
            revision: 7,
            nonce: "3".into(),
            code: 13,
            message: "Unable to create Wasm plugin weft.authz".into(),
        })
    );
}
