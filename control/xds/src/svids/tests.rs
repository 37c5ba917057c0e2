//! Installing what was signed while the lock was released: only what is still wanted.

use super::*;

fn ca(dir: &std::path::Path) -> Arc<weft_ca::Identity> {
    Arc::new(weft_ca::Identity::open(dir, weft_ca::CaSettings::default()).unwrap())
}

fn key(service: &str) -> IdentityKey {
    ("default".into(), service.into())
}

fn present(services: &[&str]) -> BTreeSet<IdentityKey> {
    services.iter().map(|s| key(s)).collect()
}

fn cert(state: &SvidState, service: &str) -> Option<String> {
    state
        .svids
        .get(&key(service))
        .map(|(s, _)| s.serial.clone())
}

/// Unix ms now (SVIDs carry real validity times).
fn now() -> u64 {
    let since = std::time::UNIX_EPOCH.elapsed().unwrap();
    u64::try_from(since.as_millis()).unwrap()
}

#[test]
fn due_lists_missing_identities_and_with_renewals_stale_ones() {
    let dir = tempfile::tempdir().unwrap();
    let now = now();
    let mut state = SvidState::new(ca(dir.path()));
    let all = present(&["a", "b"]);
    let request = state.due(&all, false, now).unwrap();
    assert_eq!(request.keys, [key("a"), key("b")]);
    assert!(state.install(Some(request.sign()), &all, now));
    assert!(state.due(&all, false, now).is_none());
    assert!(state.due(&all, true, now).is_none(), "fresh");
    // Past half the lifetime: due for renewal only.
    let later = now + 13 * 3600 * 1000;
    assert!(state.due(&all, false, later).is_none());
    assert_eq!(
        state.due(&all, true, later).map(|r| r.keys),
        Some(vec![key("a"), key("b")])
    );
}

/// The registration changed while signing: an identity that left gets nothing, and the
/// SVIDs of identities no longer present are dropped.
#[test]
fn an_identity_that_left_while_signing_is_not_installed() {
    let dir = tempfile::tempdir().unwrap();
    let now = now();
    let mut state = SvidState::new(ca(dir.path()));
    let signed = state.due(&present(&["a", "b"]), false, now).unwrap().sign();
    assert!(state.install(Some(signed), &present(&["a"]), now));
    assert!(cert(&state, "a").is_some());
    assert_eq!(cert(&state, "b"), None);
    assert!(state.install(None, &present(&[]), now), "a left");
    assert_eq!(cert(&state, "a"), None);
    assert!(!state.install(None, &present(&[]), now), "nothing changed");
}

/// Two streams of one identity signed at once: the first installed stays (no churn).
#[test]
fn a_fresh_svid_installed_meanwhile_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let now = now();
    let mut state = SvidState::new(ca(dir.path()));
    let all = present(&["a"]);
    let first = state.due(&all, false, now).unwrap().sign();
    let second = state.due(&all, false, now).unwrap().sign();
    assert!(state.install(Some(first), &all, now));
    let installed = cert(&state, "a");
    assert!(!state.install(Some(second), &all, now));
    assert_eq!(cert(&state, "a"), installed);
}

/// The CA was replaced while signing: what the old one signed is dropped.
#[test]
fn svids_of_a_replaced_ca_are_not_installed() {
    let (old_dir, new_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let now = now();
    let old = SvidState::new(ca(old_dir.path()));
    let mut state = SvidState::new(ca(new_dir.path()));
    let all = present(&["a"]);
    let signed = old.due(&all, false, now).unwrap().sign();
    assert!(!state.install(Some(signed), &all, now));
    assert_eq!(cert(&state, "a"), None);
    assert!(state
        .secrets(&SidecarGroup::new("default", "a", "v1"))
        .is_empty());
}
