use super::*;

fn mk_trust_dir(keys: &[&SigningKey]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (i, key) in keys.iter().enumerate() {
        std::fs::write(
            dir.path().join(format!("k{i}.pub")),
            key.public_key().to_pem(),
        )
        .unwrap();
    }
    dir
}

#[test]
fn a_signature_verifies_only_for_the_signed_bytes_and_a_trusted_key() {
    let (key, pem) = SigningKey::generate().unwrap();
    let (other, _) = SigningKey::generate().unwrap();
    let reloaded = SigningKey::from_pem(&pem, "key.pem").unwrap();
    assert_eq!(reloaded.public_key(), key.public_key());
    let module = b"\0asm\x01\0\0\0 module bytes".to_vec();
    let signature = key.sign(&module);
    assert_eq!(signature.len(), SIGNATURE_LEN);

    let dir = mk_trust_dir(&[&other, &key]);
    let trust = TrustList::load(dir.path()).unwrap();
    assert_eq!(trust.len(), 2);
    let signer = trust.verify(&module, &signature, "m.wasm.sig").unwrap();
    assert_eq!(signer.key_id, key.public_key().key_id());
    assert_eq!(signer.source, "k1.pub");

    let mut tampered = module.clone();
    tampered[9] ^= 1;
    assert!(matches!(
        trust.verify(&tampered, &signature, "m.wasm.sig"),
        Err(SignatureError::Untrusted { keys: 2, .. })
    ));
    let only_other = TrustList::load(&mk_trust_dir(&[&other]).path().join("k0.pub")).unwrap();
    assert!(only_other
        .verify(&module, &signature, "m.wasm.sig")
        .is_err());
    assert_eq!(
        trust.verify(&module, &signature[..63], "m.wasm.sig"),
        Err(SignatureError::Malformed {
            file: "m.wasm.sig".into(),
            len: 63
        })
    );
}

#[test]
fn signature_files_missing_or_oversized_are_named() {
    let (key, _) = SigningKey::generate().unwrap();
    let trust_dir = mk_trust_dir(&[&key]);
    let trust = TrustList::load(trust_dir.path()).unwrap();
    let modules = tempfile::tempdir().unwrap();
    assert_eq!(
        trust.verify_file(modules.path(), "a.wasm", b"x"),
        Err(SignatureError::Missing("a.wasm.sig".into()))
    );
    std::fs::write(modules.path().join("a.wasm.sig"), vec![0u8; 5000]).unwrap();
    assert!(matches!(
        trust.verify_file(modules.path(), "a.wasm", b"x"),
        Err(SignatureError::Unreadable { .. })
    ));
    std::fs::write(modules.path().join("a.wasm.sig"), key.sign(b"x")).unwrap();
    assert!(trust.verify_file(modules.path(), "a.wasm", b"x").is_ok());
}

#[test]
fn a_trust_list_that_trusts_nobody_or_holds_junk_is_refused() {
    let empty = tempfile::tempdir().unwrap();
    let error = TrustList::load(empty.path()).unwrap_err().to_string();
    assert!(error.contains("no trusted key"), "{error}");
    let (key, private_pem) = SigningKey::generate().unwrap();
    for (name, text) in [
        ("junk.pub", "hello".to_string()),
        ("private.pem", private_pem),
        (
            "bad.pub",
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n".into(),
        ),
        ("cut.pub", key.public_key().to_pem()[..40].to_string()),
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(name), text).unwrap();
        let error = TrustList::load(dir.path()).unwrap_err().to_string();
        assert!(error.contains(name), "{name}: {error}");
    }
    assert!(TrustList::load(&empty.path().join("absent.pub")).is_err());
    assert!(SigningKey::from_pem("junk", "k").is_err());
    assert!(SigningKey::from_pem(&key.public_key().to_pem(), "k").is_err());
}

#[test]
fn openssl_style_keys_are_read() {
    // `openssl genpkey -algorithm ed25519` (PKCS#8 v1) and `openssl pkey -pubout` of the
    // RFC 8032 test key 1.
    let private = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n-----END PRIVATE KEY-----\n";
    let public = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n-----END PUBLIC KEY-----\n";
    let key = SigningKey::from_pem(private, "k").unwrap();
    assert_eq!(key.public_key(), PublicKey::from_pem(public, "p").unwrap());
    // RFC 8032 test 1: the empty message.
    let signature = key.sign(b"");
    let hex: String = signature.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b");
    assert!(key.public_key().verify(b"", &signature));
}
