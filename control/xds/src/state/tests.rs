use std::time::Duration;

use super::*;
use crate::sds::{CERT_SECRET, SECRET_TYPE};

fn ca(dir: &std::path::Path) -> Arc<weft_ca::Identity> {
    let settings = weft_ca::CaSettings {
        root_propagation: Duration::ZERO,
        ..Default::default()
    };
    Arc::new(weft_ca::Identity::open(dir, settings).unwrap())
}

fn state() -> Arc<XdsState> {
    let settings = XdsSettings {
        module_source: ModuleSource {
            cluster: "weft_xds".into(),
            base_url: "http://cp".into(),
        },
        grace: Duration::from_secs(60),
        mesh_warmup: Duration::ZERO,
    };
    XdsState::new(settings, WasmModules::default())
}

fn node(id: &str, service: &str) -> NodeIdentity {
    NodeIdentity {
        id: id.into(),
        namespace: "default".into(),
        service: service.into(),
        version: "v1".into(),
        inbound: None,
        filters: None,
    }
}

/// The certificate secret a group's snapshot carries, if any.
fn certificate(state: &XdsState, service: &str) -> Option<Vec<u8>> {
    let snapshot = state.snapshot(&SidecarGroup::new("default", service, "v1"));
    snapshot
        .get(SECRET_TYPE, CERT_SECRET)
        .map(|r| r.body.value.clone())
}

fn signings(state: &XdsState) -> Vec<bool> {
    std::mem::take(&mut *state.signed_unlocked.lock().unwrap())
}

/// Every path that signs (turning the CA on, a new identity connecting, renewal after a
/// root rotation) does so with the index lock free, and what it signed is served.
#[test]
fn svids_are_signed_with_the_index_lock_released() {
    let dir = tempfile::tempdir().unwrap();
    let authority = ca(dir.path());
    let state = state();
    state.connected(&node("r1", "reviews"), "sotw").unwrap();
    assert_eq!(certificate(&state, "reviews"), None, "no CA yet");

    state.set_identity(Arc::clone(&authority)).unwrap();
    assert_eq!(signings(&state), [true], "one identity present");
    let reviews = certificate(&state, "reviews").expect("reviews has its SVID");

    // A new identity: signed before it registers, so its first snapshot has the SVID.
    state.connected(&node("p1", "productpage"), "sotw").unwrap();
    assert_eq!(signings(&state), [true]);
    assert!(certificate(&state, "productpage").is_some());

    // A second sidecar of a known identity signs nothing and shares the SVID.
    state.connected(&node("r2", "reviews"), "sotw").unwrap();
    assert_eq!(signings(&state), Vec::<bool>::new());
    assert_eq!(certificate(&state, "reviews").as_ref(), Some(&reviews));

    // Nothing due: the timer signs nothing.
    state.refresh_identities();
    assert_eq!(signings(&state), Vec::<bool>::new());

    // A rotation makes both due: one signing pass, unlocked, serves both renewed.
    let productpage = certificate(&state, "productpage").unwrap();
    authority.ca.rotate_root().unwrap();
    state.refresh_identities();
    assert_eq!(signings(&state), [true]);
    assert_ne!(certificate(&state, "reviews").unwrap(), reviews);
    assert_ne!(certificate(&state, "productpage").unwrap(), productpage);
}

/// A refused registration signs nothing (the limits are checked before signing).
#[test]
fn a_refused_stream_signs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = state();
    state.set_identity(ca(dir.path())).unwrap();
    state.set_limits(StreamLimits {
        max_undeclared_groups: 0,
        ..StreamLimits::default()
    });
    let refused = state.connected(&node("r1", "reviews"), "sotw");
    assert_eq!(refused.err().map(|r| r.reason), Some("too_many_groups"));
    assert_eq!(signings(&state), Vec::<bool>::new());
    assert!(state.sidecars().is_empty());
}
