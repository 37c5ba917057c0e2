use super::*;
use std::path::PathBuf;

#[test]
fn version_keys_sort_as_numbers_under_the_prefix() {
    let keys = Keys::new("/mesh-a/");
    assert_eq!(keys.head, "/mesh-a/policy/head");
    assert_eq!(
        keys.version(42),
        "/mesh-a/policy/versions/00000000000000000042"
    );
    // etcd sorts keys as bytes: zero-padding makes that the numeric order.
    assert!(keys.version(9) < keys.version(10));
    assert!(keys.version(99_999) < keys.version(100_000));
    assert!(keys.version(u64::MAX).starts_with(&keys.versions));
}

#[test]
fn a_head_that_is_not_a_version_is_a_bad_record_naming_the_key() {
    assert_eq!(parse_version("/w/policy/head", b"17").ok(), Some(17));
    for bad in [&b""[..], b"-1", b"1.5", b"\xff", b"18446744073709551616"] {
        let e = parse_version("/w/policy/head", bad).unwrap_err();
        assert!(e.to_string().contains("/w/policy/head"), "{e}");
    }
    let e = decode("/w/policy/versions/1", b"{not json").unwrap_err();
    assert!(e.to_string().contains("/w/policy/versions/1"), "{e}");
}

#[test]
fn endpoints_and_tls_flags_are_checked_before_connecting() {
    let err = |s: EtcdSettings| s.connect_options().err().map(|e| e.to_string());
    assert!(err(EtcdSettings::new(vec!["http://127.0.0.1:2379".into()])).is_none());
    let e = err(EtcdSettings::new(vec!["127.0.0.1:2379".into()])).unwrap_or_default();
    assert!(
        e.contains("--etcd-endpoints") && e.contains("127.0.0.1:2379"),
        "{e}"
    );
    let e = err(EtcdSettings::new(vec!["ftp://x".into()])).unwrap_or_default();
    assert!(e.contains("--etcd-endpoints"), "{e}");
    let mut ca_on_http = EtcdSettings::new(vec!["http://127.0.0.1:2379".into()]);
    ca_on_http.tls.ca = Some(PathBuf::from("/nonexistent/ca.pem"));
    let e = err(ca_on_http).unwrap_or_default();
    assert!(e.contains("https://"), "{e}");
    let mut missing = EtcdSettings::new(vec!["https://127.0.0.1:2379".into()]);
    missing.tls.ca = Some(PathBuf::from("/nonexistent/ca.pem"));
    let e = err(missing).unwrap_or_default();
    assert!(e.contains("--etcd-ca /nonexistent/ca.pem"), "{e}");
    let mut half = EtcdSettings::new(vec!["https://127.0.0.1:2379".into()]);
    half.tls.cert = Some(PathBuf::from("/nonexistent/cert.pem"));
    let e = err(half).unwrap_or_default();
    assert!(e.contains("go together"), "{e}");
}

#[test]
fn no_endpoint_is_refused() {
    let e = EtcdStore::connect(EtcdSettings::new(Vec::new()))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("--etcd-endpoints"), "{e}");
}

#[test]
fn an_unreachable_etcd_fails_calls_after_the_deadline_and_health_names_it() {
    // A port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let mut settings = EtcdSettings::new(vec![format!("http://127.0.0.1:{port}")]);
    settings.timeout = Duration::from_millis(300);
    settings.health_bound = Duration::from_millis(200);
    let store = EtcdStore::connect(settings).unwrap();
    let e = store.latest().unwrap_err();
    assert!(matches!(e, StoreError::Unavailable(_)), "{e}");
    assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
    assert!(e.to_string().contains("refused"), "{e}");
    std::thread::sleep(Duration::from_millis(400));
    let unhealthy = store.health().unwrap_err();
    assert!(unhealthy.contains("etcd unreachable since"), "{unhealthy}");
}

#[test]
fn a_record_under_another_version_key_is_refused() {
    let keys = Keys::new("/w");
    let record = Record {
        version: 3,
        author: "a".into(),
        time_unix_ms: 1,
        operation: weft_store::Operation::Apply,
        diff: Default::default(),
        documents: Default::default(),
    };
    let body = serde_json::to_vec(&record).unwrap();
    assert_eq!(
        decode_at(&keys, keys.version(3).as_bytes(), &body).ok(),
        Some(record)
    );
    let e = decode_at(&keys, keys.version(4).as_bytes(), &body).unwrap_err();
    assert!(e.to_string().contains("holds version 3"), "{e}");
    assert!(e.to_string().contains(&keys.version(4)), "{e}");
}
