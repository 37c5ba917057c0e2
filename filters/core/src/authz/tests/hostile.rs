//! A hostile caller against the decision core: path variants, repeated headers, spoofed
//! addresses, an empty configuration. The same cases run in real Envoy in `tests/`.

use super::*;

/// The issue's policy: DENY `/admin` and `/admin/*`, and `x-user: mallory`.
const ADMIN_DENY: &str = r#"{"policies": [
    {"name": "no-admin", "action": "DENY", "rules": [
        {"paths": ["/admin", "/admin/*"]},
        {"headers": [{"name": "x-user", "values": ["mallory"]}]}]}]}"#;

fn authz(json: &str) -> Authz {
    Authz::from_json(json.as_bytes()).unwrap()
}

fn get(path: &'static str) -> Req {
    Req {
        path: Some(path),
        headers: Vec::new(),
        ..mk_req()
    }
}

/// `(policy, status)` of a denial, or `None` when allowed.
fn outcome(authz: &Authz, req: &Req) -> Option<(String, u16)> {
    match authz.decide(req, NOW).verdict {
        Verdict::Allow { .. } => None,
        Verdict::Deny { policy, status, .. } => Some((policy, status)),
    }
}

/// Paths the app sees as `/admin` or below it; from the issue and from Envoy's and Istio's
/// path-normalization advisories (CVE-2019-9901 dot segments, CVE-2020-8659-style escaped
/// slashes, CVE-2021-29492 `%2F`, CVE-2021-31920 `//`, Tomcat `..;`, double encoding).
pub(crate) const ADMIN_VARIANTS: &[&str] = &[
    "/admin",
    "//admin",
    "/./admin",
    "/x/../admin",
    "/%61dmin",
    "/admin%2fsecret",
    "/admin/",
    "/admin/.",
    "/admin%2F",
    "/%2e%2e/admin",
    "/.%2e/admin",
    "/%2E/admin",
    "///admin",
    "/admin//secret",
    "/public/../admin",
    "/public/%2e%2e/admin",
    "/public%2f..%2fadmin",
    "/public%2F%2E%2E%2Fadmin",
    "/public\\..\\admin",
    "/public%5c..%5cadmin",
    "/%61%64%6d%69%6e",
    "/%41dmin/../admin",
    "/a/b/c/../../../admin",
    "/../../../admin",
    "/admin?x=1",
    "/admin#top",
    "/admin/x/..",
    "/./././admin/./x",
];

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn no_path_variant_gets_past_a_deny() {
    let authz = authz(ADMIN_DENY);
    for path in ADMIN_VARIANTS {
        assert_eq!(
            outcome(&authz, &get(path)),
            Some(("no-admin".into(), 403)),
            "{path:?}"
        );
    }
    for path in [
        "/public",
        "/public/admin",
        "/administrator",
        "/adminx/y",
        "/%2561dmin",
    ] {
        assert_eq!(outcome(&authz, &get(path)), None, "{path:?}");
    }
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn no_path_variant_gets_past_an_allow_only_policy() {
    let authz = authz(
        r#"{"policies": [{"name": "public-only", "action": "ALLOW", "rules": [{"paths": ["/public", "/public/*"]}]}]}"#,
    );
    for path in ADMIN_VARIANTS {
        assert_eq!(
            outcome(&authz, &get(path)),
            Some((DEFAULT_DENY_POLICY.into(), 403)),
            "{path:?}"
        );
    }
    for path in [
        "/public",
        "/public/a",
        "//public//a",
        "/%70ublic/x",
        "/x/../public/y",
    ] {
        assert_eq!(outcome(&authz, &get(path)), None, "{path:?}");
    }
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn path_parameters_are_refused_or_stripped_and_bad_escapes_are_400() {
    let reject = authz(ADMIN_DENY);
    for path in ["/admin;x", "/public/..;/admin", "/public;a=b"] {
        assert_eq!(
            outcome(&reject, &get(path)),
            Some((INVALID_PATH_POLICY.into(), 400)),
            "{path:?}"
        );
    }
    let d = reject.decide(&get("/admin;x"), NOW);
    assert!(
        matches!(&d.verdict, Verdict::Deny { body, .. } if body.contains("path parameters")),
        "{d:?}"
    );
    let strip = authz(&ADMIN_DENY.replacen('{', r#"{"path_parameters": "strip", "#, 1));
    for path in [
        "/admin;x",
        "/public/..;/admin",
        "/admin;jsessionid=1/secret",
    ] {
        assert_eq!(
            outcome(&strip, &get(path)),
            Some(("no-admin".into(), 403)),
            "{path:?}"
        );
    }
    assert_eq!(outcome(&strip, &get("/public;v=1/x")), None);
    for path in ["/admin%00", "/%zzadmin", "/admin%", "/admin%2"] {
        assert_eq!(
            outcome(&reject, &get(path)),
            Some((INVALID_PATH_POLICY.into(), 400)),
            "{path:?}"
        );
    }
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn ignore_path_case_is_per_policy() {
    let policies = |ignore: bool| {
        authz(&format!(
            r#"{{"policies": [{{"name": "no-admin", "action": "DENY", "ignore_path_case": {ignore},
                "rules": [{{"paths": ["/Admin/*", "/admin"]}}]}}]}}"#
        ))
    };
    let (exact, folded) = (policies(false), policies(true));
    for path in ["/ADMIN", "/aDmIn", "/%41DMIN", "/ADMIN/x"] {
        assert_eq!(outcome(&exact, &get(path)), None, "{path:?}");
        assert_eq!(
            outcome(&folded, &get(path)),
            Some(("no-admin".into(), 403)),
            "{path:?}"
        );
    }
}

fn with_users(users: &[&str]) -> Req {
    let mut req = get("/public");
    for u in users {
        req.headers.push(("x-user", (*u).to_string()));
    }
    req
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn a_repeated_header_cannot_dodge_a_deny() {
    let authz = authz(ADMIN_DENY);
    let denied = Some(("no-admin".to_string(), 403));
    assert_eq!(outcome(&authz, &with_users(&["mallory"])), denied);
    assert_eq!(outcome(&authz, &with_users(&["alice", "mallory"])), denied);
    assert_eq!(outcome(&authz, &with_users(&["mallory", "alice"])), denied);
    assert_eq!(outcome(&authz, &with_users(&["alice, mallory"])), denied);
    assert_eq!(outcome(&authz, &with_users(&["alice,mallory "])), denied);
    assert_eq!(outcome(&authz, &with_users(&["alice"])), None);
    assert_eq!(outcome(&authz, &with_users(&["alice", "bob"])), None);
    // A negated DENY condition (deny everyone but alice) holds when any copy is not alice.
    let not_alice = authz_json(json!({"policies": [{"name": "only-alice", "action": "DENY",
        "rules": [{"headers": [{"name": "x-user", "values": ["alice"], "not": true}]}]}]}));
    assert_eq!(outcome(&not_alice, &with_users(&["alice"])), None);
    for users in [
        &["alice", "mallory"][..],
        &["mallory", "alice"],
        &["alice, mallory"],
        &[],
    ] {
        assert_eq!(
            outcome(&not_alice, &with_users(users)),
            Some(("only-alice".into(), 403)),
            "{users:?}"
        );
    }
}

fn authz_json(v: serde_json::Value) -> Authz {
    mk_authz(v)
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn an_allow_needs_every_copy_of_a_repeated_header() {
    let allow = authz_json(json!({"policies": [{"name": "alice", "action": "ALLOW",
        "rules": [{"headers": [{"name": "x-user", "values": ["alice"]}]}]}]}));
    assert_eq!(outcome(&allow, &with_users(&["alice"])), None);
    assert_eq!(outcome(&allow, &with_users(&["alice", "alice"])), None);
    for users in [
        &["alice", "mallory"][..],
        &["mallory", "alice"],
        &["alice, mallory"],
        &[],
    ] {
        assert_eq!(
            outcome(&allow, &with_users(users)),
            Some((DEFAULT_DENY_POLICY.into(), 403)),
            "{users:?}"
        );
    }
    // A negated ALLOW condition (anyone but mallory) fails when any copy or element is mallory.
    let not_mallory = authz_json(
        json!({"policies": [{"name": "not-mallory", "action": "ALLOW",
        "rules": [{"headers": [{"name": "x-user", "values": ["mallory"], "not": true}]}]}]}),
    );
    assert_eq!(outcome(&not_mallory, &with_users(&["alice"])), None);
    assert_eq!(outcome(&not_mallory, &with_users(&[])), None);
    for users in [
        &["alice", "mallory"][..],
        &["mallory", "alice"],
        &["alice, mallory"],
    ] {
        assert_eq!(
            outcome(&not_mallory, &with_users(users)),
            Some((DEFAULT_DENY_POLICY.into(), 403)),
            "{users:?}"
        );
    }
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn ip_blocks_see_the_peer_and_remote_ip_blocks_the_client() {
    let req = Req {
        source: Some("10.0.0.9:4000"),
        remote: Some("203.0.113.7"),
        ..get("/public")
    };
    let deny = |field: &str, block: &str| {
        authz_json(json!({"policies": [{"name": "d", "action": "DENY",
            "rules": [{ field: [block] }]}]}))
    };
    let denied = Some(("d".to_string(), 403));
    assert_eq!(outcome(&deny("ip_blocks", "10.0.0.0/8"), &req), denied);
    assert_eq!(outcome(&deny("ip_blocks", "203.0.113.0/24"), &req), None);
    assert_eq!(
        outcome(&deny("remote_ip_blocks", "203.0.113.0/24"), &req),
        denied
    );
    assert_eq!(outcome(&deny("remote_ip_blocks", "10.0.0.0/8"), &req), None);
    assert_eq!(
        outcome(&deny("not_remote_ip_blocks", "10.0.0.0/8"), &req),
        denied
    );
    // A spoofed X-Forwarded-For header is just a header: it never feeds ipBlocks.
    let spoofed = Req {
        headers: vec![("x-forwarded-for", "10.1.1.1".into())],
        source: Some("198.51.100.4:1234"),
        ..get("/public")
    };
    assert_eq!(
        outcome(&deny("ip_blocks", "198.51.100.0/24"), &spoofed),
        denied
    );
    let allow = authz_json(json!({"policies": [{"name": "a", "action": "ALLOW",
        "rules": [{"ip_blocks": ["10.0.0.0/8"]}]}]}));
    assert_eq!(
        outcome(&allow, &spoofed),
        Some((DEFAULT_DENY_POLICY.into(), 403))
    );
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn an_empty_configuration_denies_unless_it_says_allow_all() {
    for empty in ["{}", r#"{"trust_domain": "x.test"}"#, r#"{"policies": []}"#] {
        let authz = Authz::from_json(empty.as_bytes()).unwrap();
        let d = authz.decide(&get("/public"), NOW);
        assert_eq!(
            d.verdict,
            Verdict::Deny {
                policy: NO_CONFIGURATION_POLICY.into(),
                status: 403,
                body: "access denied: no authorization configuration\n".into(),
                headers: vec![],
            },
            "{empty}"
        );
        assert_eq!(d.reason.to_string(), "no authorization configuration");
    }
    let open = Authz::from_json(br#"{"allow_all": true}"#).unwrap();
    assert_eq!(
        open.decide(&get("/admin"), NOW).verdict,
        Verdict::Allow { policy: None }
    );
    // Path hygiene still applies with allow_all.
    assert_eq!(
        outcome(&open, &get("/a;b")),
        Some((INVALID_PATH_POLICY.into(), 400))
    );
    let err = Authz::from_json(
        br#"{"allow_all": true, "policies": [{"name": "d", "action": "DENY", "rules": [{}]}]}"#,
    )
    .unwrap_err();
    assert_eq!(err.field, "allow_all");
}
