//! The host seam itself: `MockHost`'s bookkeeping, shared-data CAS over the trait, and the
//! request view acting as a host. Natively and, through wasm-bindgen-test, on wasm32.

use super::shared::{self, SharedError, Updated};
use super::*;
use crate::suite::MemoRequest;

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn seed_creates_once_and_update_refuses_a_missing_key() {
    let host = MockHost::new();
    assert_eq!(
        shared::update(&host, "k", 4, |_| (Some(b"x".to_vec()), ())),
        Err(SharedError::Missing)
    );
    assert_eq!(shared::seed(&host, "k", b"0"), Ok(true));
    assert_eq!(shared::seed(&host, "k", b"9"), Ok(false));
    assert_eq!(shared::read(&host, "k"), Ok(Some(b"0".to_vec())));
    assert_eq!(
        host.count(|c| matches!(c, Call::SharedSet { cas: None, .. })),
        1
    );
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn update_retries_lost_races_and_gives_up_after_its_attempts() {
    let host = MockHost::new();
    shared::seed(&host, "k", b"1").unwrap();
    host.conflict_next_cas(2);
    let mut steps = 0;
    let updated = shared::update(&host, "k", 4, |bytes| {
        steps += 1;
        (Some([bytes, b"+"].concat()), steps)
    });
    assert_eq!(
        updated,
        Ok(Updated {
            value: 3,
            cas_retries: 2
        })
    );
    assert_eq!(host.shared_record("k").unwrap().0, b"1+".to_vec());

    host.conflict_next_cas(3);
    assert_eq!(
        shared::update(&host, "k", 3, |_| (Some(b"z".to_vec()), ())),
        Err(SharedError::Contended { attempts: 3 })
    );
    // Nothing to write: one read, no write.
    host.clear_calls();
    shared::update(&host, "k", 3, |_| (None::<Vec<u8>>, ())).unwrap();
    assert_eq!(host.calls(), vec![Call::SharedGet("k".into())]);
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn the_request_view_writes_through_and_remembers_what_it_wrote() {
    let host = MockHost::request("GET", "reviews", "/").header("x-a", "1");
    let req = MemoRequest::new(&host);
    assert_eq!(req.header("x-a").as_deref(), Some("1"));
    req.set_request_header("x-a", Some("2"));
    req.set_request_header("x-b", Some("3"));
    assert_eq!(req.header("x-a").as_deref(), Some("2"));
    assert_eq!(req.header("x-b").as_deref(), Some("3"));
    req.replace_request_header("x-c", "4");
    assert_eq!(req.header_values("x-c"), vec!["4".to_string()]);
    // One host read (the first x-a); every later answer came from memory.
    assert_eq!(host.count(|c| matches!(c, Call::ReadHeader(_))), 1);
    assert_eq!(host.request_header("x-a").as_deref(), Some("2"));
    assert_eq!(host.request_header("x-c").as_deref(), Some("4"));
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn metrics_are_defined_once_by_name_and_moved_by_id() {
    let host = MockHost::new();
    let a = Counter::new(&host, "weft.a");
    let again = Counter::new(&host, "weft.a");
    assert_eq!(a, again);
    a.add(&host, 3);
    again.inc(&host);
    let g = Gauge::new(&host, "weft.g");
    g.set(&host, 7);
    g.add(&host, -2);
    assert_eq!(host.metric("weft.a"), Some(4));
    assert_eq!(host.metric("weft.g"), Some(5));
    assert_eq!(host.metric("weft.none"), None);
    assert_eq!(stat_segment("a.b/c"), "a_b_c");
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn properties_decode_as_the_host_encodes_them() {
    let host = MockHost::new()
        .with_property_u64("response.code", 503)
        .peer("spiffe://cluster.local/ns/a/sa/b");
    assert_eq!(host.property_u64(&["response", "code"]), Some(503));
    assert_eq!(
        host.peer_principal().as_deref(),
        Some("spiffe://cluster.local/ns/a/sa/b")
    );
    assert_eq!(MockHost::new().peer("").peer_principal(), None);
}
