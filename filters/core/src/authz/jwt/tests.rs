//! JWT validation cases: HS256 signed here, RS256/ES256 from the generated fixtures.

use super::fixtures::*;
use super::JwtError;
use crate::authz::tests::{mk_authz, mk_hs256, mk_req, Req, HS_SECRET, NOW};
use crate::authz::{Authz, Verdict};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::json;

const INVALID: &str = r#"Bearer realm="weft", error="invalid_token""#;

/// One provider with every key kind, an ALLOW policy needing `sub=alice`.
fn mk_jwt_authz(provider: serde_json::Value) -> Authz {
    let mut p = json!({
        "name": "idp", "issuer": ISSUER, "audiences": ["weft", "other-app"],
        "keys": {"hs256_secrets": [HS_SECRET], "jwks": JWKS},
    });
    p.as_object_mut()
        .unwrap()
        .extend(provider.as_object().unwrap().clone());
    mk_authz(json!({
        "policies": [{"name": "alice", "action": "ALLOW", "rules": [{"claims": [{"name": "sub", "values": ["alice"]}]}]}],
        "jwt": [p],
    }))
}

fn with_auth(value: &str) -> Req {
    let mut r = mk_req();
    r.headers.push(("authorization", value.to_string()));
    r
}

fn hs(claims: serde_json::Value) -> String {
    let mut base = json!({"iss": ISSUER, "aud": "weft", "sub": "alice", "exp": NOW + 600});
    base.as_object_mut()
        .unwrap()
        .extend(claims.as_object().unwrap().clone());
    mk_hs256(&base)
}

/// Replaces the header segment of a token, keeping its payload and signature.
fn with_header(token: &str, header: serde_json::Value) -> String {
    let (_, rest) = token.split_once('.').unwrap();
    format!("{}.{rest}", URL_SAFE_NO_PAD.encode(header.to_string()))
}

/// Flips one bit in the decoded signature.
fn tamper_sig(token: &str) -> String {
    let (input, sig) = token.rsplit_once('.').unwrap();
    let mut sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
    sig[5] ^= 0x10;
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// Drops the last byte of the decoded signature.
fn short_sig(token: &str) -> String {
    let (input, sig) = token.rsplit_once('.').unwrap();
    let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(&sig[..sig.len() - 1]))
}

enum Want {
    Allow,
    /// Valid token, but the ALLOW policy did not match.
    NoMatch,
    Invalid(JwtError),
    Missing,
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn a_token_without_exp_is_refused_unless_the_provider_opts_out() {
    let never_expires = mk_hs256(&json!({"iss": ISSUER, "aud": "weft", "sub": "alice"}));
    let req = with_auth(&format!("Bearer {never_expires}"));
    let strict = mk_jwt_authz(json!({}));
    let d = strict.decide(&req, NOW);
    assert!(
        matches!(&d.verdict, Verdict::Deny { status: 401, .. }),
        "{d:?}"
    );
    assert_eq!(
        d.reason.to_string(),
        "jwt provider \"idp\": token has no exp"
    );
    let lenient = mk_jwt_authz(json!({"require_exp": false}));
    assert_eq!(
        lenient.decide(&req, NOW).verdict,
        Verdict::Allow {
            policy: Some("alice".into())
        }
    );
    // The opt-out does not extend to expired tokens.
    let expired =
        mk_hs256(&json!({"iss": ISSUER, "aud": "weft", "sub": "alice", "exp": NOW - 600}));
    let d = lenient.decide(&with_auth(&format!("Bearer {expired}")), NOW);
    assert!(
        matches!(&d.verdict, Verdict::Deny { status: 401, .. }),
        "{d:?}"
    );
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn a_repeated_token_header_is_refused() {
    let authz = mk_jwt_authz(json!({}));
    let token = hs(json!({}));
    let mut req = with_auth(&format!("Bearer {token}"));
    req.headers
        .push(("authorization", format!("Bearer {token}")));
    let d = authz.decide(&req, NOW);
    assert!(
        matches!(&d.verdict, Verdict::Deny { status: 401, policy, .. } if policy == "jwt:idp"),
        "{d:?}"
    );
    assert_eq!(
        d.reason.to_string(),
        "jwt provider \"idp\": header authorization sent 2 times"
    );
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn tokens() {
    use JwtError::*;
    let swapped_payload = {
        let (h, rest) = RS256_VALID.split_once('.').unwrap();
        let (_, sig) = rest.split_once('.').unwrap();
        let (_, other_payload) = ES256_WRONG_ISS.split_once('.').unwrap();
        let other_payload = other_payload.split_once('.').unwrap().0;
        format!("{h}.{other_payload}.{sig}")
    };
    #[rustfmt::skip]
    let cases: Vec<(&str, String, Want)> = vec![
        ("rs256 valid", RS256_VALID.into(), Want::Allow),
        ("rs256 no kid", RS256_NO_KID.into(), Want::Allow),
        ("rs256 expired", RS256_EXPIRED.into(), Want::Invalid(Expired)),
        ("rs256 nbf", RS256_NOT_YET.into(), Want::Invalid(NotYetValid)),
        ("rs256 wrong iss", RS256_WRONG_ISS.into(), Want::Invalid(WrongIssuer)),
        ("rs256 wrong aud", RS256_WRONG_AUD.into(), Want::Invalid(WrongAudience)),
        ("rs256 bad signature", tamper_sig(RS256_VALID), Want::Invalid(BadSignature)),
        ("rs256 swapped payload", swapped_payload, Want::Invalid(BadSignature)),
        ("rs256 short signature", short_sig(RS256_VALID), Want::Invalid(BadSignature)),
        ("rs256 unknown kid", with_header(RS256_VALID, json!({"alg": "RS256", "kid": "nope"})), Want::Invalid(BadSignature)),
        ("es256 valid", ES256_VALID.into(), Want::Allow),
        ("es256 no kid", ES256_NO_KID.into(), Want::Allow),
        ("es256 expired", ES256_EXPIRED.into(), Want::Invalid(Expired)),
        ("es256 nbf", ES256_NOT_YET.into(), Want::Invalid(NotYetValid)),
        ("es256 wrong iss", ES256_WRONG_ISS.into(), Want::Invalid(WrongIssuer)),
        ("es256 wrong aud", ES256_WRONG_AUD.into(), Want::Invalid(WrongAudience)),
        ("es256 bad signature", tamper_sig(ES256_VALID), Want::Invalid(BadSignature)),
        ("es256 as rs256", with_header(ES256_VALID, json!({"alg": "RS256"})), Want::Invalid(BadSignature)),
        ("rs256 as hs256", with_header(RS256_VALID, json!({"alg": "HS256"})), Want::Invalid(BadSignature)),
        ("hs256 valid", hs(json!({})), Want::Allow),
        ("hs256 other subject", hs(json!({"sub": "bob"})), Want::NoMatch),
        ("hs256 aud array", hs(json!({"aud": ["x", "other-app"]})), Want::Allow),
        ("hs256 aud missing", hs(json!({"aud": null})), Want::Invalid(WrongAudience)),
        ("hs256 aud wrong type", hs(json!({"aud": 7})), Want::Invalid(WrongAudience)),
        ("hs256 iss missing", hs(json!({"iss": null})), Want::Invalid(WrongIssuer)),
        ("hs256 no exp", mk_hs256(&json!({"iss": ISSUER, "aud": "weft", "sub": "alice"})), Want::Invalid(MissingExpiry)),
        ("hs256 expired", hs(json!({"exp": NOW - 61})), Want::Invalid(Expired)),
        ("hs256 expired within skew", hs(json!({"exp": NOW - 60})), Want::Allow),
        ("hs256 fractional exp", hs(json!({"exp": (NOW + 1) as f64 + 0.5})), Want::Allow),
        ("hs256 exp not a number", hs(json!({"exp": "never"})), Want::Invalid(Malformed)),
        ("hs256 nbf future", hs(json!({"nbf": NOW + 61})), Want::Invalid(NotYetValid)),
        ("hs256 nbf within skew", hs(json!({"nbf": NOW + 60})), Want::Allow),
        ("hs256 bad signature", tamper_sig(&hs(json!({}))), Want::Invalid(BadSignature)),
        ("alg none", with_header(&hs(json!({})), json!({"alg": "none"})), Want::Invalid(UnsupportedAlg)),
        ("alg HS512", with_header(&hs(json!({})), json!({"alg": "HS512"})), Want::Invalid(UnsupportedAlg)),
        ("crit header", with_header(&hs(json!({})), json!({"alg": "HS256", "crit": ["exp"]})), Want::Invalid(Malformed)),
        ("header not json", with_header(&hs(json!({})), json!("HS256")), Want::Invalid(Malformed)),
        ("one segment", "abc".into(), Want::Invalid(Malformed)),
        ("two segments", "abc.def".into(), Want::Invalid(Malformed)),
        ("four segments", format!("{}.x", hs(json!({}))), Want::Invalid(Malformed)),
        ("empty token", String::new(), Want::Invalid(Malformed)),
        ("not base64", "a$b.c.d".into(), Want::Invalid(Malformed)),
        ("padded base64", format!("{}=", hs(json!({}))), Want::Invalid(Malformed)),
        ("huge", "a".repeat(20_000), Want::Invalid(Malformed)),
        ("unicode", "ä.ö.ü".into(), Want::Invalid(Malformed)),
        ("payload not an object", mk_hs256(&json!(["iss"])), Want::Invalid(Malformed)),
    ];
    let authz = mk_jwt_authz(json!({}));
    for (name, token, want) in cases {
        let d = authz.decide(&with_auth(&format!("Bearer {token}")), NOW);
        match want {
            Want::Allow => assert_eq!(
                d.verdict,
                Verdict::Allow {
                    policy: Some("alice".into())
                },
                "case {name:?}: {}",
                d.reason
            ),
            Want::NoMatch => assert!(
                matches!(&d.verdict, Verdict::Deny { status: 403, .. }),
                "case {name:?}: {d:?}"
            ),
            Want::Invalid(e) => {
                let want = Verdict::Deny {
                    policy: "jwt:idp".into(),
                    status: 401,
                    body: "jwt verification failed\n".into(),
                    headers: vec![("www-authenticate".into(), INVALID.into())],
                };
                assert_eq!(d.verdict, want, "case {name:?}");
                assert_eq!(
                    d.reason.to_string(),
                    format!("jwt provider \"idp\": {e}"),
                    "case {name:?}"
                );
            }
            Want::Missing => unreachable!(),
        }
    }
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn extraction_and_required() {
    let token = hs(json!({}));
    #[rustfmt::skip]
    let cases: Vec<(&str, serde_json::Value, Req, Want)> = vec![
        ("no token, optional", json!({}), mk_req(), Want::NoMatch),
        ("no token, required", json!({"required": true}), mk_req(), Want::Missing),
        ("other scheme is no token", json!({"required": true}), with_auth("Basic dXNlcjpwYXNz"), Want::Missing),
        ("other scheme, optional", json!({}), with_auth("Basic dXNlcjpwYXNz"), Want::NoMatch),
        ("scheme case-insensitive", json!({}), with_auth(&format!("bearer {token}")), Want::Allow),
        ("empty token", json!({}), with_auth("Bearer "), Want::Invalid(JwtError::Malformed)),
        ("custom header, no prefix", json!({"from_header": "X-JWT", "prefix": ""}),
            { let mut r = mk_req(); r.headers.push(("x-jwt", token.clone())); r }, Want::Allow),
        ("custom header ignores authorization", json!({"from_header": "x-jwt", "required": true}),
            with_auth(&format!("Bearer {token}")), Want::Missing),
    ];
    for (name, provider, req, want) in cases {
        let d = mk_jwt_authz(provider).decide(&req, NOW);
        match want {
            Want::Allow => assert_eq!(
                d.verdict,
                Verdict::Allow {
                    policy: Some("alice".into())
                },
                "case {name:?}"
            ),
            Want::NoMatch => assert!(
                matches!(&d.verdict, Verdict::Deny { status: 403, .. }),
                "case {name:?}: {d:?}"
            ),
            Want::Invalid(_) => assert!(
                matches!(&d.verdict, Verdict::Deny { status: 401, .. }),
                "case {name:?}: {d:?}"
            ),
            Want::Missing => {
                let want = Verdict::Deny {
                    policy: "jwt:idp".into(),
                    status: 401,
                    body: "jwt is missing\n".into(),
                    headers: vec![("www-authenticate".into(), r#"Bearer realm="weft""#.into())],
                };
                assert_eq!(d.verdict, want, "case {name:?}");
            }
        }
    }
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn providers_sharing_a_header_route_by_issuer() {
    let authz = mk_authz(json!({
        "policies": [{"name": "alice", "action": "ALLOW", "rules": [{"claims": [{"name": "sub", "values": ["alice"]}]}]}],
        "jwt": [
            {"name": "first", "issuer": "https://first.example", "keys": {"hs256_secrets": [HS_SECRET]}},
            {"name": "idp", "issuer": ISSUER, "required": true, "keys": {"jwks": serde_json::from_str::<serde_json::Value>(JWKS).unwrap()}},
        ],
    }));
    let d = authz.decide(&with_auth(&format!("Bearer {ES256_VALID}")), NOW);
    assert_eq!(
        d.verdict,
        Verdict::Allow {
            policy: Some("alice".into())
        },
        "{}",
        d.reason
    );
    // A token naming neither issuer goes to the first provider, which refuses it.
    let d = authz.decide(&with_auth(&format!("Bearer {RS256_WRONG_ISS}")), NOW);
    assert!(
        matches!(&d.verdict, Verdict::Deny { policy, status: 401, .. } if policy == "jwt:first"),
        "{d:?}"
    );
    // The required provider counts a token routed to another provider as present.
    let token = mk_hs256(&json!({"iss": "https://first.example", "sub": "alice", "exp": NOW + 60}));
    let d = authz.decide(&with_auth(&format!("Bearer {token}")), NOW);
    assert_eq!(
        d.verdict,
        Verdict::Allow {
            policy: Some("alice".into())
        },
        "{}",
        d.reason
    );
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn jwks_as_json_string_and_no_audiences() {
    let authz = mk_jwt_authz(json!({"audiences": [], "keys": {"jwks": JWKS}}));
    for token in [RS256_VALID, RS256_WRONG_AUD, ES256_WRONG_AUD] {
        let d = authz.decide(&with_auth(&format!("Bearer {token}")), NOW);
        assert_eq!(
            d.verdict,
            Verdict::Allow {
                policy: Some("alice".into())
            },
            "{}",
            d.reason
        );
    }
}

/// Deterministic mutations of valid tokens: none may panic, and none but the original
/// may pass (base64url's unused trailing bits are rejected by the strict decoder).
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn mutated_tokens_never_panic_nor_pass() {
    let authz = mk_jwt_authz(json!({}));
    let hs_token = hs(json!({}));
    for original in [RS256_VALID, ES256_VALID, hs_token.as_str()] {
        let bytes = original.as_bytes();
        for i in (0..bytes.len()).step_by(5) {
            for replacement in [b'A', b'.', b'_', b'=', 0xff] {
                if bytes[i] == replacement {
                    continue;
                }
                let mut mutated = bytes.to_vec();
                mutated[i] = replacement;
                let mutated = String::from_utf8_lossy(&mutated);
                let d = authz.decide(&with_auth(&format!("Bearer {mutated}")), NOW);
                assert!(
                    matches!(&d.verdict, Verdict::Deny { status: 401, .. }),
                    "mutation at {i} to {replacement:#x} of {original} passed: {}",
                    d.reason
                );
            }
            let truncated = &original[..i];
            let d = authz.decide(&with_auth(&format!("Bearer {truncated}")), NOW);
            assert!(
                matches!(&d.verdict, Verdict::Deny { status: 401, .. }),
                "truncated at {i}"
            );
        }
    }
}
