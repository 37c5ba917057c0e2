//! Every validation error names its exact field path; serde errors keep serde's message.

use super::HS_SECRET;
use crate::authz::Authz;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::json;

fn rule_config(rule: serde_json::Value) -> serde_json::Value {
    json!({"policies": [{"name": "ok", "action": "ALLOW", "rules": [{}]},
                        {"name": "p", "action": "DENY", "rules": [{}, rule]}]})
}

fn jwt_config(provider: serde_json::Value) -> serde_json::Value {
    let mut p = json!({"name": "j", "issuer": "iss", "keys": {"hs256_secrets": [HS_SECRET]}});
    p.as_object_mut()
        .unwrap()
        .extend(provider.as_object().unwrap().clone());
    json!({ "jwt": [p] })
}

fn jwk(key: serde_json::Value) -> serde_json::Value {
    jwt_config(json!({"keys": {"jwks": {"keys": [key]}}}))
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn validation_errors() {
    let r = "policies[1].rules[1]";
    let ec = |x: &str, y: &str| json!({"kty": "EC", "crv": "P-256", "x": x, "y": y});
    let b32 = URL_SAFE_NO_PAD.encode([1u8; 32]);
    let rsa = |n: Vec<u8>, e: &[u8]| json!({"kty": "RSA", "n": URL_SAFE_NO_PAD.encode(n), "e": URL_SAFE_NO_PAD.encode(e)});
    let mut odd_2048 = vec![0xc5u8; 256];
    odd_2048[255] = 0x01;
    let mut even_2048 = odd_2048.clone();
    even_2048[255] = 0x02;
    #[rustfmt::skip]
    let cases: Vec<(serde_json::Value, String, &str)> = vec![
        (json!({"trust_domain": ""}), "trust_domain".into(), "invalid trust domain"),
        (json!({"trust_domain": "Cluster/Local"}), "trust_domain".into(), "invalid trust domain"),
        (json!({"policies": [{"name": "", "action": "DENY"}]}), "policies[0].name".into(), "must not be empty"),
        (json!({"policies": [{"name": "a", "action": "DENY"}, {"name": "a", "action": "ALLOW"}]}),
            "policies[1].name".into(), "duplicate name \"a\" (also policies[0])"),
        (rule_config(json!({"principals": ["cluster.local/ns/a/sa/b"]})), format!("{r}.principals[0]"), "invalid principal"),
        (rule_config(json!({"principals": ["spiffe://td"]})), format!("{r}.principals[0]"), "invalid principal"),
        (rule_config(json!({"not_principals": ["*", "spiffe://a/*/b"]})), format!("{r}.not_principals[1]"), "`*` is allowed only"),
        (rule_config(json!({"principals": ["ns/*"]})), format!("{r}.principals[0]"), "must start with spiffe://"),
        (rule_config(json!({"principals": []})), format!("{r}.principals"), "must not be empty"),
        (rule_config(json!({"namespaces": ["a/b"]})), format!("{r}.namespaces[0]"), "must not contain"),
        (rule_config(json!({"not_namespaces": [""]})), format!("{r}.not_namespaces[0]"), "must not be empty"),
        (rule_config(json!({"methods": ["get"]})), format!("{r}.methods[0]"), "upper-case"),
        (rule_config(json!({"not_methods": ["GET", ""]})), format!("{r}.not_methods[1]"), "upper-case"),
        (rule_config(json!({"paths": ["api/*"]})), format!("{r}.paths[0]"), "must start with `/`"),
        (rule_config(json!({"paths": ["/a/*/b"]})), format!("{r}.paths[0]"), "`*` is allowed only"),
        (rule_config(json!({"paths": ["/a?x=1"]})), format!("{r}.paths[0]"), "query string"),
        (rule_config(json!({"paths": ["/a/{**}/b"]})), format!("{r}.paths[0]"), "must be the last segment"),
        (rule_config(json!({"not_paths": ["/a/{x}"]})), format!("{r}.not_paths[0]"), "must be `{*}`"),
        (rule_config(json!({"paths": ["a/{*}"]})), format!("{r}.paths[0]"), "must start with `/`"),
        (rule_config(json!({"ip_blocks": ["10.0.0.0/8", "10.0.0.0/33"]})), format!("{r}.ip_blocks[1]"), "prefix length 33"),
        (rule_config(json!({"ip_blocks": ["10.0.0.0/8", "::/0", "10.0.0.x"]})), format!("{r}.ip_blocks[2]"), "invalid IP or CIDR"),
        (rule_config(json!({"not_ip_blocks": ["::1/129"]})), format!("{r}.not_ip_blocks[0]"), "prefix length 129"),
        (rule_config(json!({"not_ip_blocks": ["10.0.0.0/"]})), format!("{r}.not_ip_blocks[0]"), "invalid IP or CIDR"),
        (rule_config(json!({"headers": [{"name": "x"}, {"name": "bad name"}]})), format!("{r}.headers[1].name"), "invalid header name"),
        (rule_config(json!({"headers": [{"name": "x", "values": ["a*b"]}]})), format!("{r}.headers[0].values[0]"), "`*` is allowed only"),
        (rule_config(json!({"claims": [{"name": "a..b", "values": ["x"]}]})), format!("{r}.claims[0].name"), "invalid claim name"),
        (rule_config(json!({"claims": [{"name": "a", "values": []}]})), format!("{r}.claims[0].values"), "must not be empty"),
        (json!({"policies": [{"name": "d", "action": "DENY", "deny_response": {"status": 199}}]}),
            "policies[0].deny_response.status".into(), "199 is not in 200..=599"),
        (json!({"policies": [{"name": "d", "action": "DENY", "deny_response": {"status": 600}}]}),
            "policies[0].deny_response.status".into(), "600 is not in 200..=599"),
        (json!({"policies": [{"name": "d", "action": "DENY", "deny_response": {"headers": {"x": "a\nb"}}}]}),
            "policies[0].deny_response.headers[\"x\"]".into(), "CR, LF"),
        (json!({"policies": [{"name": "d", "action": "DENY", "deny_response": {"headers": {"a b": "x"}}}]}),
            "policies[0].deny_response.headers[\"a b\"]".into(), "invalid header name"),
        (json!({"jwt": [{"name": "", "issuer": "i", "keys": {"hs256_secrets": [HS_SECRET]}}]}), "jwt[0].name".into(), "must not be empty"),
        (json!({"jwt": [{"name": "a", "issuer": "i", "keys": {"hs256_secrets": [HS_SECRET]}},
                        {"name": "a", "issuer": "i", "keys": {"hs256_secrets": [HS_SECRET]}}]}),
            "jwt[1].name".into(), "duplicate name"),
        (jwt_config(json!({"issuer": " "})), "jwt[0].issuer".into(), "must not be empty"),
        (jwt_config(json!({"audiences": ["a", ""]})), "jwt[0].audiences[1]".into(), "must not be empty"),
        (jwt_config(json!({"from_header": "bad header"})), "jwt[0].from_header".into(), "invalid header name"),
        (jwt_config(json!({"keys": {}})), "jwt[0].keys".into(), "no verification keys"),
        (jwt_config(json!({"keys": {"jwks": {"keys": []}}})), "jwt[0].keys".into(), "no verification keys"),
        (jwt_config(json!({"keys": {"hs256_secrets": ["short"]}})), "jwt[0].keys.hs256_secrets[0]".into(), "at least 32 bytes"),
        (jwt_config(json!({"keys": {"jwks": "{not json"}})), "jwt[0].keys.jwks".into(), "not valid JSON"),
        (jwt_config(json!({"keys": {"jwks": [1, 2]}})), "jwt[0].keys.jwks".into(), "not a JWKS document"),
        (jwt_config(json!({"keys": {"jwks": "{\"keys\": {}}"}})), "jwt[0].keys.jwks".into(), "not a JWKS document"),
        (jwk(json!("x")), "jwt[0].keys.jwks.keys[0]".into(), "must be an object"),
        (jwk(json!({"kty": "oct", "k": "AAAA"})), "jwt[0].keys.jwks.keys[0].kty".into(), "unknown key type \"oct\""),
        (jwk(json!({"n": "AAAA"})), "jwt[0].keys.jwks.keys[0].kty".into(), "missing"),
        (jwk(json!({"kty": 1})), "jwt[0].keys.jwks.keys[0].kty".into(), "must be a string"),
        (jwk(json!({"kty": "RSA", "e": "AQAB"})), "jwt[0].keys.jwks.keys[0].n".into(), "missing"),
        (jwk(json!({"kty": "RSA", "n": "AAAA", "e": "AQAB"})), "jwt[0].keys.jwks.keys[0]".into(), "0 bits"),
        (jwk(json!({"kty": "RSA", "n": "a+b/", "e": "AQAB"})), "jwt[0].keys.jwks.keys[0].n".into(), "not base64url"),
        (jwk(rsa(vec![0xc5; 128], b"\x01\x00\x01")), "jwt[0].keys.jwks.keys[0]".into(), "1024 bits"),
        (jwk(rsa(even_2048, b"\x01\x00\x01")), "jwt[0].keys.jwks.keys[0]".into(), "must be odd"),
        (jwk(rsa(odd_2048.clone(), b"\x01\x00\x00")), "jwt[0].keys.jwks.keys[0]".into(), "exponent"),
        (jwk(rsa(odd_2048.clone(), b"\x01")), "jwt[0].keys.jwks.keys[0]".into(), "exponent"),
        (jwk({ let mut k = rsa(odd_2048.clone(), b"\x01\x00\x01"); k["alg"] = json!("RS512"); k }),
            "jwt[0].keys.jwks.keys[0].alg".into(), "unsupported alg \"RS512\""),
        (jwk({ let mut k = rsa(odd_2048, b"\x01\x00\x01"); k["use"] = json!("enc"); k }),
            "jwt[0].keys.jwks.keys[0].use".into(), "cannot verify"),
        (jwk(json!({"kty": "EC", "crv": "P-384", "x": b32, "y": b32})), "jwt[0].keys.jwks.keys[0].crv".into(), "unsupported curve"),
        (jwk(ec(&b32, "AAAA")), "jwt[0].keys.jwks.keys[0]".into(), "32 bytes"),
        (jwk(ec(&b32, &b32)), "jwt[0].keys.jwks.keys[0]".into(), "not a point on P-256"),
    ];
    for (config, field, reason) in cases {
        let err = Authz::from_json(config.to_string().as_bytes())
            .expect_err(&format!("accepted {config}"));
        assert_eq!(err.field, field, "{config}: {err}");
        assert!(err.reason.contains(reason), "{config}: {err}");
    }
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn serde_errors_name_the_field() {
    let cases: Vec<(&str, &str, &str)> = vec![
        (
            r#"{"policiez": []}"#,
            "policiez",
            "unknown field `policiez`",
        ),
        (
            r#"{"policies": [{"name": "a", "action": "ALLOW", "rules": [{}, {"methodz": []}]}]}"#,
            "policies[0].rules[1].methodz",
            "unknown field `methodz`",
        ),
        (
            r#"{"policies": [{"name": "a", "action": "PERMIT"}]}"#,
            "policies[0].action",
            "unknown variant `PERMIT`",
        ),
        (
            r#"{"policies": [{"action": "ALLOW"}]}"#,
            "policies[0]",
            "missing field `name`",
        ),
        (
            r#"{"jwt": [{"name": "j", "issuer": "i", "keys": {}, "clock_skew_seconds": -1}]}"#,
            "jwt[0].clock_skew_seconds",
            "invalid value",
        ),
        (r#"{"policies": "#, "policies", "EOF"),
        (r#"{} {}"#, "configuration", "trailing characters"),
    ];
    for (json, field, reason) in cases {
        let err = Authz::from_json(json.as_bytes()).unwrap_err();
        assert_eq!(err.field, field, "{json}: {err}");
        assert!(
            err.reason.contains(reason) && err.reason.contains("line 1 column"),
            "{json}: {err}"
        );
    }
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn config_round_trips_and_defaults() {
    let authz = Authz::from_json(br#"{"policies": [{"name": "a", "action": "AUDIT"}]}"#).unwrap();
    assert_eq!(authz.config().trust_domain, "cluster.local");
    let again = serde_json::to_vec(authz.config()).unwrap();
    assert_eq!(Authz::from_json(&again).unwrap().config(), authz.config());
}
