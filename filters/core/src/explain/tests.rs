//! Token checks, natively and on wasm32: valid, forged, expired, another service's,
//! malformed and hostile tokens.

use super::*;

const NOW: u64 = 1_796_601_600;

fn mk_explain(service: &str) -> (Explain, String) {
    let key = service_key(b"master secret", "shop", service);
    let config = ExplainConfig {
        namespace: "shop".into(),
        service: service.into(),
        key: key.clone(),
    };
    (Explain::new("explain", &config).unwrap(), key)
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn a_minted_token_is_honoured_by_its_service_only_until_it_expires() {
    let (ratings, key) = mk_explain("ratings");
    let (reviews, reviews_key) = mk_explain("reviews");
    assert_ne!(key, reviews_key, "each service has its own key");
    let token = mint(&key, "shop", "ratings", NOW + 300).unwrap();
    assert_eq!(ratings.check(&token, NOW), Ok(()));
    assert_eq!(ratings.check(&token, NOW + 299), Ok(()));
    assert_eq!(ratings.check(&token, NOW + 300), Err(Refusal::Expired));
    assert_eq!(reviews.check(&token, NOW), Err(Refusal::OtherService));
    // Another service's token re-labelled for this one: the MAC does not hold.
    let other = mint(&reviews_key, "shop", "reviews", NOW + 300).unwrap();
    let relabelled = other.replacen(".reviews.", ".ratings.", 1);
    assert_eq!(ratings.check(&relabelled, NOW), Err(Refusal::Forged));
    // A longer life than the mint allows, even correctly signed.
    let long = mint(&key, "shop", "ratings", NOW + MAX_TTL_SECS + 120).unwrap();
    assert_eq!(ratings.check(&long, NOW), Err(Refusal::Malformed));
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn forged_and_hostile_tokens_are_refused_without_a_panic() {
    let (ratings, key) = mk_explain("ratings");
    let token = mint(&key, "shop", "ratings", NOW + 300).unwrap();
    let mut flipped = token.clone().into_bytes();
    if let Some(last) = flipped.last_mut() {
        *last = if *last == b'0' { b'1' } else { b'0' };
    }
    let flipped = String::from_utf8(flipped).unwrap();
    let later = token.replacen(&(NOW + 300).to_string(), &(NOW + 600).to_string(), 1);
    let cases: Vec<(String, Refusal)> = vec![
        (flipped, Refusal::Forged),
        (later, Refusal::Forged),
        (String::new(), Refusal::Malformed),
        ("v1".into(), Refusal::Malformed),
        (
            "v2.shop.ratings.1.".to_string() + &"0".repeat(64),
            Refusal::Malformed,
        ),
        (
            format!("v1.shop.ratings.-1.{}", "0".repeat(64)),
            Refusal::Malformed,
        ),
        (
            format!("v1.shop.ratings.{}.{}", NOW + 10, "0".repeat(63)),
            Refusal::Malformed,
        ),
        (
            format!("v1.shop.ratings.{}.{}", NOW + 10, "zz".repeat(32)),
            Refusal::Malformed,
        ),
        (
            format!("v1.shop.ratings.{}.{}", NOW + 10, "é".repeat(32)),
            Refusal::Malformed,
        ),
        (
            format!("v1.shop.ratings.x.{}.{}", NOW + 10, "0".repeat(64)),
            Refusal::Malformed,
        ),
        (
            format!("v1.SHOP.ratings.{}.{}", NOW + 10, "0".repeat(64)),
            Refusal::Malformed,
        ),
        ("a".repeat(MAX_TOKEN_BYTES + 1), Refusal::Malformed),
        (".".repeat(100), Refusal::Malformed),
        (
            format!("v1.shop.ratings.99999999999999999999.{}", "0".repeat(64)),
            Refusal::Malformed,
        ),
    ];
    for (token, refusal) in cases {
        assert_eq!(ratings.check(&token, NOW), Err(refusal), "{token:?}");
    }
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn bad_configs_and_trace_values() {
    let config = |ns: &str, key: &str| ExplainConfig {
        namespace: ns.into(),
        service: "ratings".into(),
        key: key.into(),
    };
    let err = Explain::new("explain", &config("shop", "abcd")).unwrap_err();
    assert_eq!(err.field, "explain.key");
    let err = Explain::new("explain", &config("Shop", &"0".repeat(64))).unwrap_err();
    assert_eq!(err.field, "explain.namespace");
    assert_eq!(header_value("authz: allow\r\nx: é"), "authz: allow??x: ?");
    let long = header_value(&"a".repeat(5000));
    assert_eq!(long.len(), MAX_TRACE_BYTES);
    assert!(long.ends_with("..."));
}
