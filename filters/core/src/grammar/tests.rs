//! The grammar's edge cases, including those where policy validation and the authz filter
//! used to disagree (each kept its own copy of the principal and CIDR rules).

use super::*;

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn principals_follow_the_spiffe_spec_in_one_place() {
    // Accepted before by the filter but refused by validation: now refused by both, since
    // validation calls this function.
    for (bad, why) in [
        ("spiffe://Cluster.Local/ns/a/sa/b", "invalid trust domain"),
        ("spiffe://td/ns//sa/b", "path segments"),
        ("spiffe://td/ns/a b", "path segments"),
        ("spiffe://*", "invalid trust domain"),
        ("spiffe://Bad TD*", "invalid trust domain"),
        ("spiffe://td", "missing path"),
        ("cluster.local/ns/a", "must start with spiffe://"),
        ("spiffe://td/*/b", "`*` is allowed only"),
    ] {
        let err = parse_principal(bad).err().unwrap_or_default();
        assert!(err.contains(why), "{bad}: {err}");
        assert!(err.contains("invalid principal"), "{bad}: {err}");
    }
    for (ok, want) in [
        ("*", StrMatcher::Any),
        ("*/sa/b", StrMatcher::Suffix("/sa/b".into())),
        (
            "spiffe://cluster.local/ns/*",
            StrMatcher::Prefix("spiffe://cluster.local/ns/".into()),
        ),
        (
            "spiffe://cluster.local/ns/a/sa/b",
            StrMatcher::Exact("spiffe://cluster.local/ns/a/sa/b".into()),
        ),
    ] {
        assert_eq!(parse_principal(ok), Ok(want), "{ok}");
    }
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn cidr_with_host_bits_is_refused() {
    // The filter used to mask `10.0.0.1/8` to `10.0.0.0/8` while validation refused it.
    let err = Cidr::parse("10.0.0.1/8").err().unwrap_or_default();
    assert!(err.contains("host bits are set"), "{err}");
    let err = Cidr::parse("fd00::1/8").err().unwrap_or_default();
    assert!(err.contains("host bits are set"), "{err}");
    assert_eq!(
        Cidr::parse("10.0.0.0/8"),
        Ok(Cidr::V4 {
            network: 0x0a00_0000,
            mask: 0xff00_0000
        })
    );
    assert!(Cidr::parse("10.1.2.3").is_ok());
    assert!(Cidr::parse("0.0.0.0/0").is_ok());
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn durations_and_percentages() {
    assert_eq!(parse_duration_ms("1m30s"), Ok(90_000));
    assert!(parse_duration_ms("25h").is_err());
    assert!(parse_duration_ms("10").is_err());
    assert_eq!(percent_to_bp(12.5), Ok(1250));
    assert!(percent_to_bp(100.5).is_err());
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn every_value_prints_back_the_pattern_it_was_parsed_from() {
    let round = |json: &str| -> Result<String, String> {
        let rule: crate::authz::Rule = serde_json::from_str(json).map_err(|e| e.to_string())?;
        serde_json::to_string(&rule).map_err(|e| e.to_string())
    };
    for json in [
        r#"{"principals":["spiffe://td/ns/a/sa/b","spiffe://td/ns/*","*/sa/b","*"]}"#,
        r#"{"namespaces":["shop","team-*"]}"#,
        r#"{"methods":["GET","*"]}"#,
        r#"{"paths":["/a","/a/*","*.json","*","/a/{*}/b/{**}","/x/{*}/"]}"#,
        r#"{"hosts":["example.com","*.example.com","api.*"]}"#,
        r#"{"ip_blocks":["10.0.0.0/8","10.1.2.3","fd00::/8","::1"]}"#,
    ] {
        assert_eq!(round(json).as_deref(), Ok(json));
    }
    // Normalised on the way in: hosts lower-cased, a full-length block printed as the address.
    assert_eq!(
        round(r#"{"hosts":["API.Example"],"not_ip_blocks":["10.1.2.3/32"]}"#).as_deref(),
        Ok(r#"{"hosts":["api.example"],"not_ip_blocks":["10.1.2.3"]}"#)
    );
    // Refused values name their index; an empty list names the list.
    for (json, at) in [
        (r#"{"paths":["/a","a"]}"#, "must start with `/`"),
        (r#"{"namespaces":["a/b"]}"#, "must not contain `/`"),
        (r#"{"methods":[]}"#, "must not be empty"),
    ] {
        let err = round(json).err().unwrap_or_default();
        assert!(err.contains(at), "{json}: {err}");
    }
}
