use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime};

use super::*;

fn settings() -> CaSettings {
    CaSettings {
        svid_ttl: Duration::from_secs(60),
        root_propagation: Duration::ZERO,
        ..CaSettings::default()
    }
}

fn pem_count(bundle: &str) -> usize {
    bundle.matches("BEGIN CERTIFICATE").count()
}

#[test]
fn svids_carry_the_spiffe_id_and_a_fresh_serial_and_the_root_persists() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::open(dir.path(), settings()).unwrap();
    let a = ca.issue("shop", "reviews").unwrap();
    let b = ca.issue("shop", "reviews").unwrap();
    assert_eq!(a.spiffe_id, "spiffe://cluster.local/ns/shop/sa/reviews");
    assert_ne!(a.serial, b.serial);
    assert_ne!(a.key_pem, b.key_pem);
    assert!(a.not_after_ms - a.not_before_ms >= 60_000);
    let (_, pem) = x509_parser::pem::parse_x509_pem(a.cert_chain_pem.as_bytes()).unwrap();
    let cert = pem.parse_x509().unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    assert_eq!(
        san.value.general_names,
        vec![x509_parser::extensions::GeneralName::URI(
            "spiffe://cluster.local/ns/shop/sa/reviews"
        )]
    );
    assert_eq!(cert.raw_serial_as_string().replace(':', ""), a.serial);
    assert!(!cert.is_ca());
    let key_mode = std::fs::metadata(dir.path().join("root-1.key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);
    // Every file the CA writes is the operator's alone, in a 0700 directory.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let entry = entry.unwrap();
        let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", entry.path().display());
    }
    let bundle = ca.trust_bundle();
    drop(ca);
    let reopened = Ca::open(dir.path(), settings()).unwrap();
    assert_eq!(
        reopened.trust_bundle(),
        bundle,
        "the same root after a restart"
    );
    assert_eq!(
        reopened.issue("shop", "reviews").unwrap().root_generation,
        1
    );
    assert!(matches!(
        reopened.issue("shop", "a/b"),
        Err(CaError::BadName { .. })
    ));
}

#[test]
fn root_rotation_trusts_both_roots_and_signs_with_the_new_one_after_propagation() {
    let dir = tempfile::tempdir().unwrap();
    let slow = CaSettings {
        root_propagation: Duration::from_secs(3600),
        ..settings()
    };
    let ca = Ca::open(dir.path(), slow).unwrap();
    ca.rotate_root().unwrap();
    assert_eq!(pem_count(&ca.trust_bundle()), 2);
    assert_eq!(
        ca.signing_generation(),
        1,
        "the new root is only trusted yet"
    );
    drop(ca);
    let ca = Ca::open(dir.path(), settings()).unwrap();
    ca.rotate_root().unwrap();
    assert_eq!(ca.signing_generation(), 3);
    assert_eq!(ca.issue("d", "s").unwrap().root_generation, 3);
    let roots = ca.roots();
    assert!(roots[0].retired_at_ms.is_some() && roots[2].retired_at_ms.is_none());
    // Retired roots stay one SVID lifetime: all three are trusted.
    assert_eq!(pem_count(&ca.trust_bundle()), 3);
}

#[test]
fn tokens_verify_and_are_refused_when_tampered_expired_foreign_or_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = Tokens::open(dir.path()).unwrap();
    let (token, record) = tokens
        .create("shop", "reviews", Duration::from_secs(60))
        .unwrap();
    let now = SystemTime::now();
    let claims = tokens.verify(&token, now).unwrap();
    assert_eq!(
        (claims.namespace.as_str(), claims.service.as_str()),
        ("shop", "reviews")
    );
    assert_eq!(claims, record.claims);

    // Another service's claims with this signature.
    let (head, tag) = token.split_once('.').unwrap();
    let forged_claims = Claims {
        service: "payments".into(),
        ..claims.clone()
    };
    use base64::Engine;
    let forged_head = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&forged_claims).unwrap());
    assert_eq!(
        tokens.verify(&format!("{forged_head}.{tag}"), now),
        Err(TokenError::BadSignature)
    );
    assert!(matches!(
        tokens.verify(head, now),
        Err(TokenError::Malformed(_))
    ));
    assert_eq!(tokens.verify("", now), Err(TokenError::Missing));
    assert!(matches!(
        tokens.verify(&token, now + Duration::from_secs(61)),
        Err(TokenError::Expired { .. })
    ));
    // A token from another control plane.
    let other_dir = tempfile::tempdir().unwrap();
    let other = Tokens::open(other_dir.path()).unwrap();
    assert_eq!(other.verify(&token, now), Err(TokenError::BadSignature));

    let revocations = tokens.subscribe_revocations();
    assert!(tokens.revoke(&claims.id).unwrap());
    assert!(revocations.has_changed().unwrap());
    assert!(!tokens.revoke("nope").unwrap());
    assert!(matches!(
        tokens.verify(&token, now),
        Err(TokenError::Revoked { .. })
    ));
    drop(tokens);
    let reopened = Tokens::open(dir.path()).unwrap();
    assert!(
        matches!(
            reopened.verify(&token, now),
            Err(TokenError::Revoked { .. })
        ),
        "revocations survive a restart"
    );
    assert!(reopened.list()[0].revoked_at.is_some());
    let secret_mode = std::fs::metadata(dir.path().join("token-secret"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(secret_mode & 0o777, 0o600);
}

#[test]
fn a_torn_log_line_is_dropped_and_later_appends_stay_readable() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = Tokens::open(dir.path()).unwrap();
    let (first, _) = tokens.create("d", "a", Duration::from_secs(60)).unwrap();
    drop(tokens);
    let log = dir.path().join("tokens.jsonl");
    let mut text = std::fs::read_to_string(&log).unwrap();
    text.push_str("{\"create\":{\"id\":");
    std::fs::write(&log, text).unwrap();
    let tokens = Tokens::open(dir.path()).unwrap();
    let (second, _) = tokens.create("d", "b", Duration::from_secs(60)).unwrap();
    drop(tokens);
    let tokens = Tokens::open(dir.path()).unwrap();
    let now = SystemTime::now();
    assert!(tokens.verify(&first, now).is_ok());
    assert!(tokens.verify(&second, now).is_ok());
    assert_eq!(tokens.list().len(), 2);
}

#[test]
fn server_certificates_carry_names_and_stay_on_the_oldest_trusted_root() {
    use x509_parser::extensions::GeneralName;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::open(dir.path(), settings()).unwrap();
    let names = ["weft-control".to_string(), "10.1.2.3".to_string()];
    let cert = ca
        .issue_server("weft-system", "weft-control", &names)
        .unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert.cert_chain_pem.as_bytes()).unwrap();
    let parsed = pem.parse_x509().unwrap();
    let san = parsed.subject_alternative_name().unwrap().unwrap();
    assert_eq!(
        san.value.general_names,
        vec![
            GeneralName::URI("spiffe://cluster.local/ns/weft-system/sa/weft-control"),
            GeneralName::DNSName("weft-control"),
            GeneralName::IPAddress(&[10, 1, 2, 3]),
        ]
    );
    // A rotation: the new root signs SVIDs at once (no propagation here), but the server
    // certificate stays on root 1 while root 1 is in the bundle.
    ca.rotate_root().unwrap();
    assert_eq!(ca.signing_generation(), 2);
    assert_eq!(ca.issue("shop", "reviews").unwrap().root_generation, 2);
    assert_eq!(ca.oldest_trusted_generation(), 1);
    let after = ca
        .issue_server("weft-system", "weft-control", &names)
        .unwrap();
    assert_eq!(after.root_generation, 1);
    assert!(matches!(
        ca.issue_server("weft-system", "weft-control", &["bad name!".into()]),
        Err(CaError::BadServerName(_))
    ));
}

#[test]
fn the_control_planes_namespace_gets_neither_a_token_nor_an_svid() {
    let dir = tempfile::tempdir().unwrap();
    let identity = Identity::open(dir.path(), settings()).unwrap();
    let hour = Duration::from_secs(3600);
    for namespace in ["weft-system", "WEFT-System"] {
        assert!(matches!(
            identity.tokens.create(namespace, "weft-control", hour),
            Err(CaError::Reserved {
                what: "namespace",
                ..
            })
        ));
        assert!(matches!(
            identity.ca.issue(namespace, "weft-control"),
            Err(CaError::Reserved { .. })
        ));
    }
    assert!(identity.tokens.list().is_empty(), "nothing was recorded");
    // The xDS server's own certificate is still made (by `issue_server` only).
    let server = identity
        .ca
        .issue_server("weft-system", "weft-control", &["localhost".into()])
        .unwrap();
    assert!(server
        .spiffe_id
        .ends_with("/ns/weft-system/sa/weft-control"));
    // A correctly signed token naming the reserved namespace (made by hand) is refused too.
    let forged = identity
        .tokens
        .sign(&Claims {
            id: "00".into(),
            namespace: "weft-system".into(),
            service: "weft-control".into(),
            exp: u64::MAX / 2,
        })
        .unwrap();
    assert!(matches!(
        identity.tokens.verify(&forged, SystemTime::now()),
        Err(TokenError::Malformed(_))
    ));
}

#[test]
fn token_lifetimes_are_bounded_and_a_huge_one_neither_overflows_nor_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = Tokens::open(dir.path()).unwrap();
    for ttl in [
        Duration::ZERO,
        MAX_TOKEN_TTL + Duration::from_secs(1),
        Duration::from_secs(u64::MAX),
        Duration::MAX,
    ] {
        assert!(
            matches!(
                tokens.create("shop", "reviews", ttl),
                Err(CaError::OutOfRange {
                    what: "token ttl",
                    ..
                })
            ),
            "{ttl:?}"
        );
    }
    let (token, record) = tokens.create("shop", "reviews", MAX_TOKEN_TTL).unwrap();
    assert!(tokens.verify(&token, SystemTime::now()).is_ok());
    assert!(record.claims.exp > record.created);
    // A token with a far expiry, as a control plane before the bound wrote when asked for
    // `ttlSeconds: 18446744073709551615` (the sum wrapped): recorded and signed, yet refused.
    for exp in [
        u64::MAX,
        u64::MAX / 2,
        record.created + 10 * MAX_TOKEN_TTL.as_secs(),
    ] {
        let claims = Claims {
            exp,
            ..record.claims.clone()
        };
        let far = tokens.sign(&claims).unwrap();
        assert_eq!(
            tokens.verify(&far, SystemTime::now()),
            Err(TokenError::Malformed(
                "expiry beyond the maximum token lifetime"
            )),
            "{exp}"
        );
    }
}

#[test]
fn ca_settings_out_of_range_are_refused_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "svid_ttl",
            CaSettings {
                svid_ttl: MAX_SVID_TTL + Duration::from_secs(1),
                ..CaSettings::default()
            },
        ),
        (
            "svid_ttl",
            CaSettings {
                svid_ttl: Duration::ZERO,
                ..CaSettings::default()
            },
        ),
        (
            "root_ttl",
            CaSettings {
                root_ttl: Duration::MAX,
                ..CaSettings::default()
            },
        ),
        (
            "root_propagation",
            CaSettings {
                root_propagation: Duration::from_secs(u64::MAX),
                ..CaSettings::default()
            },
        ),
    ];
    for (field, settings) in cases {
        match Ca::open(dir.path(), settings) {
            Err(CaError::OutOfRange { what, .. }) => assert_eq!(what, field),
            Err(other) => panic!("{field}: {other}"),
            Ok(_) => panic!("{field}: accepted"),
        }
    }
    // The largest allowed values work end to end (issue, rotate, trust).
    let ca = Ca::open(
        dir.path(),
        CaSettings {
            svid_ttl: MAX_SVID_TTL,
            root_ttl: MAX_ROOT_TTL,
            root_propagation: MAX_ROOT_PROPAGATION,
            ..CaSettings::default()
        },
    )
    .unwrap();
    let svid = ca.issue("shop", "reviews").unwrap();
    assert!(svid.not_after_ms - svid.not_before_ms >= MAX_SVID_TTL.as_millis() as u64);
    ca.rotate_root().unwrap();
    assert_eq!(pem_count(&ca.trust_bundle()), 2);
}

#[test]
fn replicas_share_roots_tokens_and_rotation_with_keys_sealed() {
    use std::sync::Arc;
    let memory = Arc::new(weft_store::MemoryShared::default());
    let state: Arc<dyn weft_store::SharedState> = memory.clone();
    let kek = Arc::new(crate::Kek::from_bytes(&[42u8; 32]).unwrap());
    let open = || {
        crate::Identity::open_shared(Arc::clone(&state), Arc::clone(&kek), CaSettings::default())
            .unwrap()
    };
    let (one, two) = (open(), open());
    assert_eq!(one.ca.roots(), two.ca.roots(), "one first root for both");
    assert_eq!(one.ca.trust_bundle(), two.ca.trust_bundle());
    // An SVID from either chains to the same root.
    assert_eq!(two.ca.issue("shop", "cart").unwrap().root_generation, 1);
    // A rotation through one is seen by the other once it reloads.
    let rotated = two.ca.rotate_root().unwrap();
    assert_eq!(rotated.generation, 2);
    assert!(one.reload().unwrap());
    assert_eq!(one.ca.roots().len(), 2);
    assert_eq!(one.ca.trust_bundle(), two.ca.trust_bundle());
    // A rotation computed on stale roots does not add a root beside the other's: it reads
    // again and becomes generation 3.
    let stale = one.ca.rotate_root().unwrap();
    assert_eq!(stale.generation, 3);
    assert!(two.reload().unwrap());
    assert_eq!(two.ca.roots().len(), 3);
    // A token made on one joins on the other at once; a revocation on the other reaches one.
    let (token, record) = one
        .tokens
        .create("shop", "cart", std::time::Duration::from_secs(60))
        .unwrap();
    assert!(two
        .tokens
        .verify(&token, std::time::SystemTime::now())
        .is_ok());
    let revocations = one.tokens.subscribe_revocations();
    assert!(two.tokens.revoke(&record.claims.id).unwrap());
    assert!(one.tokens.reload().unwrap());
    assert!(revocations.has_changed().unwrap());
    assert!(one
        .tokens
        .verify(&token, std::time::SystemTime::now())
        .is_err());
    // Nothing private in clear in the shared state.
    for (key, bytes) in memory.raw() {
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("PRIVATE KEY"), "{key} holds a key in clear");
    }
    // A replica with another KEK refuses to start, naming the document and both KEK ids.
    let other = Arc::new(crate::Kek::from_bytes(&[43u8; 32]).unwrap());
    let refused = crate::Identity::open_shared(Arc::clone(&state), other, CaSettings::default());
    let error = refused.err().unwrap().to_string();
    assert!(
        error.contains("ca/mesh/root-1") && error.contains(kek.id()),
        "{error}"
    );
}

/// Shared state whose document `racing` is changed by "another replica" (a root rotation)
/// between a rekey's read and its first write.
struct Racing {
    inner: std::sync::Arc<weft_store::MemoryShared>,
    rotate: std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl weft_store::SharedState for Racing {
    fn read(&self, name: &str) -> Result<Option<weft_store::Versioned>, weft_store::StoreError> {
        self.inner.read(name)
    }
    fn write(
        &self,
        name: &str,
        bytes: Vec<u8>,
        expected: i64,
    ) -> Result<Option<i64>, weft_store::StoreError> {
        if name == "ca/mesh" {
            if let Some(rotate) = self.rotate.lock().unwrap().take() {
                rotate();
            }
        }
        self.inner.write(name, bytes, expected)
    }
    fn list(
        &self,
        dir: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, weft_store::StoreError> {
        self.inner.list(dir, limit)
    }
    fn append(&self, dir: &str, bytes: Vec<u8>) -> Result<(), weft_store::StoreError> {
        self.inner.append(dir, bytes)
    }
    fn describe(&self, name: &str) -> String {
        self.inner.describe(name)
    }
}

#[test]
fn rekey_reseals_every_value_by_compare_and_swap_and_is_idempotent() {
    use std::sync::Arc;
    let memory = Arc::new(weft_store::MemoryShared::default());
    let state: Arc<dyn weft_store::SharedState> = memory.clone();
    let old = Arc::new(crate::Kek::from_bytes(&[1u8; 32]).unwrap());
    let one =
        crate::Identity::open_shared(Arc::clone(&state), Arc::clone(&old), CaSettings::default())
            .unwrap();
    let telemetry = crate::secrets::open_named_secret(&*state, &old, "telemetry", None).unwrap();
    let seeded =
        crate::secrets::open_named_secret(&*state, &old, "explain", Some([9u8; 32])).unwrap();
    assert_eq!(seeded, [9u8; 32], "a migrated value is kept");
    // The new KEK, opening the old one's values meanwhile.
    let both = || {
        crate::Kek::from_bytes(&[2u8; 32])
            .unwrap()
            .with_previous(crate::Kek::from_bytes(&[1u8; 32]).unwrap())
            .unwrap()
    };
    // Another replica rotates the root between the rekey's read of ca/mesh and its write:
    // the rekey reads again (the new root is kept, and sealed with the new KEK).
    let rotator =
        crate::Identity::open_shared(Arc::clone(&state), Arc::new(both()), CaSettings::default())
            .unwrap();
    let racing = Racing {
        inner: Arc::clone(&memory),
        rotate: std::sync::Mutex::new(Some(Box::new(move || {
            rotator.ca.rotate_root().unwrap();
        }))),
    };
    let report = crate::rekey::rekey(&racing, &both()).unwrap();
    // Roots 1 (old) and 2 (sealed new by the rotating replica) of ca/mesh; the token secret,
    // two named secrets re-sealed.
    assert_eq!((report.resealed, report.current), (4, 1), "{report:?}");
    assert_eq!(
        report.documents,
        [
            "ca/mesh",
            "ca/token-secret",
            "secrets/explain",
            "secrets/telemetry"
        ]
    );
    let again = crate::rekey::rekey(&*state, &both()).unwrap();
    assert_eq!((again.resealed, again.current), (0, 5), "{again:?}");
    // Only the new KEK now: everything opens, the same values.
    let new = Arc::new(crate::Kek::from_bytes(&[2u8; 32]).unwrap());
    let two =
        crate::Identity::open_shared(Arc::clone(&state), Arc::clone(&new), CaSettings::default())
            .unwrap();
    assert_eq!(two.ca.roots().len(), 2, "the concurrent rotation was kept");
    assert_eq!(
        crate::secrets::open_named_secret(&*state, &new, "telemetry", None).unwrap(),
        telemetry
    );
    let (token, _) = two
        .tokens
        .create("shop", "cart", std::time::Duration::from_secs(60))
        .unwrap();
    assert!(one
        .tokens
        .verify(&token, std::time::SystemTime::now())
        .is_ok());
    // The old KEK alone opens nothing any more, and says which key sealed it.
    let error = crate::Identity::open_shared(Arc::clone(&state), old, CaSettings::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("sealed with key-encryption key") && error.contains(new.id()),
        "{error}"
    );
    // A rekey whose previous key does not open the values refuses, naming both ids.
    let wrong = crate::Kek::from_bytes(&[3u8; 32])
        .unwrap()
        .with_previous(crate::Kek::from_bytes(&[4u8; 32]).unwrap())
        .unwrap();
    let error = crate::rekey::rekey(&*state, &wrong)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("ca/mesh/root-1") && error.contains(new.id()) && error.contains(wrong.id()),
        "{error}"
    );
    for (key, bytes) in memory.raw() {
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("PRIVATE KEY"), "{key} holds a key in clear");
    }
}

#[test]
fn a_malformed_moved_or_short_shared_secret_is_refused_naming_it() {
    use weft_store::SharedState;
    let state = weft_store::MemoryShared::default();
    let kek = crate::Kek::from_bytes(&[7u8; 32]).unwrap();
    let open = |name: &str| {
        crate::secrets::open_named_secret(&state, &kek, name, None)
            .unwrap_err()
            .to_string()
    };
    // Not a sealed value at all.
    state
        .write("secrets/telemetry", b"{not json".to_vec(), 0)
        .unwrap();
    let error = open("telemetry");
    assert!(
        error.contains("secrets/telemetry") && error.contains("not a sealed value"),
        "{error}"
    );
    // A sealed value copied from another name does not open here.
    let moved = kek.seal(&[1u8; 32], "secrets/other").unwrap();
    state
        .write("secrets/explain", serde_json::to_vec(&moved).unwrap(), 0)
        .unwrap();
    assert!(
        crate::secrets::open_named_secret(&state, &kek, "explain", None).is_err(),
        "a value sealed for secrets/other opened as secrets/explain"
    );
    // Sealed in place, but not 32 bytes.
    let short = kek.seal(&[1u8; 16], "secrets/short").unwrap();
    state
        .write("secrets/short", serde_json::to_vec(&short).unwrap(), 0)
        .unwrap();
    let error = open("short");
    assert!(
        error.contains("secrets/short") && error.contains("32 bytes"),
        "{error}"
    );
}
