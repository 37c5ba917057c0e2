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
