//! Table-driven tests of matching, precedence and validation. They run natively and,
//! through wasm-bindgen-test, on wasm32-unknown-unknown.

mod explain;
mod hostile;
mod validation;

use super::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

pub(crate) const NOW: u64 = 1_700_000_000;
pub(crate) const HS_SECRET: &str = "0123456789abcdef0123456789abcdef";

/// A request as the host would present it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Req {
    pub(crate) method: Option<&'static str>,
    pub(crate) path: Option<&'static str>,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) source: Option<&'static str>,
    /// The original client through trusted hops; `None`: the peer (`source`).
    pub(crate) remote: Option<&'static str>,
    pub(crate) peer: Option<&'static str>,
}

impl RequestAttributes for Req {
    fn method(&self) -> Option<String> {
        self.method.map(str::to_string)
    }
    fn path(&self) -> Option<String> {
        self.path.map(str::to_string)
    }
    fn header(&self, name: &str) -> Option<String> {
        assert_eq!(
            name,
            name.to_ascii_lowercase(),
            "header names are asked in lower case"
        );
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }
    fn header_values(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    }
    fn source_address(&self) -> Option<String> {
        self.source.map(str::to_string)
    }
    fn remote_address(&self) -> Option<String> {
        self.remote.or(self.source).map(str::to_string)
    }
    fn peer_principal(&self) -> Option<String> {
        self.peer.map(str::to_string)
    }
}

/// `GET /api/v1/items?x=1` from `10.1.2.3:5555`, peer `spiffe://cluster.local/ns/corp/sa/web`.
pub(crate) fn mk_req() -> Req {
    Req {
        method: Some("GET"),
        path: Some("/api/v1/items?x=1"),
        headers: vec![("x-team", "payments-eu".to_string())],
        source: Some("10.1.2.3:5555"),
        remote: None,
        peer: Some("spiffe://cluster.local/ns/corp/sa/web"),
    }
}

pub(crate) fn mk_hs256(claims: &serde_json::Value) -> String {
    let seg = |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    let input = format!(
        "{}.{}",
        seg(&json!({"alg": "HS256", "typ": "JWT"})),
        seg(claims)
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(HS_SECRET.as_bytes()).unwrap();
    mac.update(input.as_bytes());
    format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

pub(crate) fn mk_authz(config: serde_json::Value) -> Authz {
    Authz::from_json(config.to_string().as_bytes()).unwrap()
}

/// Does a single ALLOW policy with this one rule admit the request?
fn rule_matches(rule: serde_json::Value, req: &Req) -> bool {
    let authz = mk_authz(json!({
        "policies": [{"name": "p", "action": "ALLOW", "rules": [rule]}],
        "jwt": [{"name": "hs", "issuer": "iss", "keys": {"hs256_secrets": [HS_SECRET]}}],
    }));
    // `weft check`'s trace runs the same rule evaluation: it must say the same.
    let explained = authz.explain(req, NOW);
    assert_eq!(explained.decision, authz.decide(req, NOW));
    let traced = explained
        .policies
        .first()
        .map(|p| p.matched_rule() == Some(0));
    let allowed = match authz.decide(req, NOW).verdict {
        Verdict::Allow { policy } => {
            assert_eq!(policy.as_deref(), Some("p"));
            true
        }
        Verdict::Deny { policy, status, .. } => {
            assert_eq!((policy.as_str(), status), (DEFAULT_DENY_POLICY, 403));
            false
        }
    };
    assert_eq!(
        traced,
        Some(allowed),
        "the trace disagrees with the decision"
    );
    allowed
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn conditions() {
    let with = |f: fn(&mut Req)| {
        let mut r = mk_req();
        f(&mut r);
        r
    };
    let token = mk_hs256(&json!({
        "iss": "iss", "sub": "alice", "groups": ["admin", "dev"], "realm": {"role": "ops"},
        "level": 3, "email_verified": true, "exp": NOW + 600,
    }));
    let with_token = {
        let mut r = mk_req();
        r.headers.push(("authorization", format!("Bearer {token}")));
        r
    };
    let no_peer = with(|r| r.peer = None);
    let no_source = with(|r| r.source = None);
    #[rustfmt::skip]
    let cases: Vec<(&str, serde_json::Value, Req, bool)> = vec![
        ("empty rule matches everything", json!({}), mk_req(), true),
        ("principal exact", json!({"principals": ["spiffe://cluster.local/ns/corp/sa/web"]}), mk_req(), true),
        ("principal exact other", json!({"principals": ["spiffe://cluster.local/ns/corp/sa/db"]}), mk_req(), false),
        ("principal prefix", json!({"principals": ["spiffe://cluster.local/ns/corp/*"]}), mk_req(), true),
        ("principal suffix", json!({"principals": ["*/sa/web"]}), mk_req(), true),
        ("principal any", json!({"principals": ["*"]}), mk_req(), true),
        ("principal any, no peer", json!({"principals": ["*"]}), no_peer.clone(), false),
        ("principal OR", json!({"principals": ["spiffe://x/y", "*/sa/web"]}), mk_req(), true),
        ("not_principals hit", json!({"not_principals": ["*/sa/web"]}), mk_req(), false),
        ("not_principals miss", json!({"not_principals": ["*/sa/db"]}), mk_req(), true),
        ("not_principals, no peer", json!({"not_principals": ["*"]}), no_peer.clone(), true),
        ("namespace", json!({"namespaces": ["corp"]}), mk_req(), true),
        ("namespace other", json!({"namespaces": ["cor"]}), mk_req(), false),
        ("namespace prefix", json!({"namespaces": ["co*"]}), mk_req(), true),
        ("namespace other trust domain", json!({"namespaces": ["corp"]}),
            with(|r| r.peer = Some("spiffe://other.td/ns/corp/sa/web")), false),
        ("namespace needs a path after it", json!({"namespaces": ["corp"]}),
            with(|r| r.peer = Some("spiffe://cluster.local/ns/corp")), false),
        ("namespace, no peer", json!({"namespaces": ["corp"]}), no_peer.clone(), false),
        ("not_namespaces hit", json!({"not_namespaces": ["corp"]}), mk_req(), false),
        ("not_namespaces miss", json!({"not_namespaces": ["prod"]}), mk_req(), true),
        ("method", json!({"methods": ["POST", "GET"]}), mk_req(), true),
        ("method is case-sensitive", json!({"methods": ["GET"]}), with(|r| r.method = Some("get")), false),
        ("method any", json!({"methods": ["*"]}), mk_req(), true),
        ("not_methods hit", json!({"not_methods": ["GET"]}), mk_req(), false),
        ("not_methods miss", json!({"not_methods": ["DELETE"]}), mk_req(), true),
        ("path exact ignores query", json!({"paths": ["/api/v1/items"]}), mk_req(), true),
        ("path exact other", json!({"paths": ["/api/v1"]}), mk_req(), false),
        ("path prefix", json!({"paths": ["/api/*"]}), mk_req(), true),
        ("path prefix is literal", json!({"paths": ["/api/*"]}), with(|r| r.path = Some("/apix")), false),
        ("path suffix", json!({"paths": ["*.json"]}), with(|r| r.path = Some("/a/b.json?q=1")), true),
        ("path suffix miss", json!({"paths": ["*.json"]}), mk_req(), false),
        ("path any", json!({"paths": ["*"]}), mk_req(), true),
        ("path template one", json!({"paths": ["/api/{*}/items"]}), mk_req(), true),
        ("path template one is one segment", json!({"paths": ["/api/{*}"]}), mk_req(), false),
        ("path template one not empty", json!({"paths": ["/api/{*}/items"]}),
            with(|r| r.path = Some("/api//items")), false),
        ("path template rest", json!({"paths": ["/api/{**}"]}), mk_req(), true),
        ("path template rest zero segments", json!({"paths": ["/api/{**}"]}), with(|r| r.path = Some("/api")), true),
        ("path template rest literal", json!({"paths": ["/api/{**}"]}), with(|r| r.path = Some("/apix/a")), false),
        ("path template too short", json!({"paths": ["/api/{*}/items/{*}"]}), mk_req(), false),
        ("path, none", json!({"paths": ["*"]}), with(|r| r.path = None), false),
        ("not_paths hit", json!({"not_paths": ["/api/*"]}), mk_req(), false),
        ("not_paths miss", json!({"not_paths": ["/admin/*"]}), mk_req(), true),
        ("host exact, port ignored", json!({"hosts": ["shop.example"]}),
            with(|r| r.headers.push((":authority", "shop.example:8080".into()))), true),
        ("host is case-insensitive", json!({"hosts": ["Shop.Example"]}),
            with(|r| r.headers.push((":authority", "SHOP.example".into()))), true),
        ("host suffix", json!({"hosts": ["*.example"]}),
            with(|r| r.headers.push((":authority", "api.example".into()))), true),
        ("host miss", json!({"hosts": ["shop.example"]}),
            with(|r| r.headers.push((":authority", "shop.example.evil".into()))), false),
        ("host [v6]:port", json!({"hosts": ["[::1]"]}),
            with(|r| r.headers.push((":authority", "[::1]:80".into()))), true),
        ("host, no authority", json!({"hosts": ["*"]}), mk_req(), false),
        ("not_hosts hit", json!({"not_hosts": ["admin.*"]}),
            with(|r| r.headers.push((":authority", "admin.example:443".into()))), false),
        ("not_hosts miss", json!({"not_hosts": ["admin.*"]}),
            with(|r| r.headers.push((":authority", "shop.example".into()))), true),
        ("ip v4 cidr, ip:port", json!({"ip_blocks": ["10.0.0.0/8"]}), mk_req(), true),
        ("ip v4 cidr miss", json!({"ip_blocks": ["10.2.0.0/16"]}), mk_req(), false),
        ("ip plain", json!({"ip_blocks": ["10.1.2.3"]}), with(|r| r.source = Some("10.1.2.3")), true),
        ("ip /0", json!({"ip_blocks": ["0.0.0.0/0"]}), mk_req(), true),
        ("ip v6 [ip]:port", json!({"ip_blocks": ["2001:db8::/32"]}),
            with(|r| r.source = Some("[2001:db8::1]:443")), true),
        ("ip v6 bare", json!({"ip_blocks": ["2001:db8::1/128"]}), with(|r| r.source = Some("2001:db8::1")), true),
        ("ip v6 vs v4 block", json!({"ip_blocks": ["10.0.0.0/8"]}), with(|r| r.source = Some("[2001:db8::1]:1")), false),
        ("ip v4-mapped v6", json!({"ip_blocks": ["10.0.0.0/8"]}),
            with(|r| r.source = Some("[::ffff:10.0.0.1]:80")), true),
        ("ip garbage source", json!({"ip_blocks": ["0.0.0.0/0"]}), with(|r| r.source = Some("nope")), false),
        ("ip, no source", json!({"ip_blocks": ["0.0.0.0/0"]}), no_source.clone(), false),
        ("not_ip_blocks hit", json!({"not_ip_blocks": ["10.0.0.0/8"]}), mk_req(), false),
        ("not_ip_blocks miss", json!({"not_ip_blocks": ["192.168.0.0/16"]}), mk_req(), true),
        ("not_ip_blocks, no source", json!({"not_ip_blocks": ["0.0.0.0/0"]}), no_source.clone(), true),
        ("header presence", json!({"headers": [{"name": "X-Team"}]}), mk_req(), true),
        ("header presence miss", json!({"headers": [{"name": "x-other"}]}), mk_req(), false),
        ("header exact", json!({"headers": [{"name": "x-team", "values": ["payments-eu"]}]}), mk_req(), true),
        ("header exact miss", json!({"headers": [{"name": "x-team", "values": ["payments"]}]}), mk_req(), false),
        ("header prefix", json!({"headers": [{"name": "x-team", "values": ["pay*"]}]}), mk_req(), true),
        ("header suffix", json!({"headers": [{"name": "x-team", "values": ["*-eu"]}]}), mk_req(), true),
        ("header any value", json!({"headers": [{"name": "x-team", "values": ["*"]}]}), mk_req(), true),
        ("header not hit", json!({"headers": [{"name": "x-team", "values": ["*-eu"], "not": true}]}), mk_req(), false),
        ("header not absent", json!({"headers": [{"name": "x-other", "not": true}]}), mk_req(), true),
        ("headers AND", json!({"headers": [{"name": "x-team"}, {"name": "x-other"}]}), mk_req(), false),
        ("claim string", json!({"claims": [{"name": "sub", "values": ["alice"]}]}), with_token.clone(), true),
        ("claim string miss", json!({"claims": [{"name": "sub", "values": ["bob"]}]}), with_token.clone(), false),
        ("claim array", json!({"claims": [{"name": "groups", "values": ["x", "dev"]}]}), with_token.clone(), true),
        ("claim nested", json!({"claims": [{"name": "realm.role", "values": ["ops"]}]}), with_token.clone(), true),
        ("claim nested missing", json!({"claims": [{"name": "realm.x.y", "values": ["ops"]}]}), with_token.clone(), false),
        ("claim number", json!({"claims": [{"name": "level", "values": ["3"]}]}), with_token.clone(), true),
        ("claim bool", json!({"claims": [{"name": "email_verified", "values": ["true"]}]}), with_token.clone(), true),
        ("claim object never equals", json!({"claims": [{"name": "realm", "values": ["ops"]}]}), with_token.clone(), false),
        ("claim not hit", json!({"claims": [{"name": "sub", "values": ["alice"], "not": true}]}), with_token.clone(), false),
        ("claim not miss", json!({"claims": [{"name": "sub", "values": ["bob"], "not": true}]}), with_token.clone(), true),
        ("claim without token", json!({"claims": [{"name": "sub", "values": ["alice"]}]}), mk_req(), false),
        ("claim not without token", json!({"claims": [{"name": "sub", "values": ["alice"], "not": true}]}), mk_req(), true),
        ("request principal exact", json!({"request_principals": ["iss/alice"]}), with_token.clone(), true),
        ("request principal other", json!({"request_principals": ["iss/bob"]}), with_token.clone(), false),
        ("request principal prefix", json!({"request_principals": ["iss/*"]}), with_token.clone(), true),
        ("request principal any", json!({"request_principals": ["*"]}), with_token.clone(), true),
        ("request principal any, no token", json!({"request_principals": ["*"]}), mk_req(), false),
        ("not_request_principals hit", json!({"not_request_principals": ["*/alice"]}), with_token.clone(), false),
        ("not_request_principals, no token", json!({"not_request_principals": ["*"]}), mk_req(), true),
        ("fields AND: all hold", json!({"methods": ["GET"], "paths": ["/api/*"], "namespaces": ["corp"]}), mk_req(), true),
        ("fields AND: one fails", json!({"methods": ["GET"], "paths": ["/admin/*"]}), mk_req(), false),
    ];
    for (name, rule, req, want) in cases {
        assert_eq!(rule_matches(rule, &req), want, "case {name:?}");
    }
}

fn policy(name: &str, action: &str, rule: serde_json::Value) -> serde_json::Value {
    json!({"name": name, "action": action, "rules": [rule]})
}

fn decide(policies: serde_json::Value, req: &Req) -> Decision {
    mk_authz(json!({ "policies": policies })).decide(req, NOW)
}

fn allow(policy: Option<&str>) -> Verdict {
    Verdict::Allow {
        policy: policy.map(str::to_string),
    }
}

fn deny(policy: &str, status: u16, body: &str) -> Verdict {
    Verdict::Deny {
        policy: policy.to_string(),
        status,
        body: body.to_string(),
        headers: vec![],
    }
}

/// Name, policies, verdict, audited, dry-run denied.
type PrecedenceCase = (
    &'static str,
    serde_json::Value,
    Verdict,
    Vec<&'static str>,
    Vec<&'static str>,
);

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn precedence() {
    let get = json!({"methods": ["GET"]});
    let post = json!({"methods": ["POST"]});
    let default_body = "access denied: no ALLOW policy matched\n";
    #[rustfmt::skip]
    let cases: Vec<PrecedenceCase> = vec![
        ("no policies: fail closed", json!([]),
            deny(NO_CONFIGURATION_POLICY, 403, "access denied: no authorization configuration\n"), vec![], vec![]),
        ("allow matches", json!([policy("a", "ALLOW", get.clone())]), allow(Some("a")), vec![], vec![]),
        ("default deny", json!([policy("a", "ALLOW", post.clone())]),
            deny(DEFAULT_DENY_POLICY, 403, default_body), vec![], vec![]),
        ("deny wins over allow", json!([policy("a", "ALLOW", get.clone()), policy("d", "DENY", get.clone())]),
            deny("d", 403, "access denied by weft policy \"d\"\n"), vec![], vec![]),
        ("deny not matching", json!([policy("d", "DENY", post.clone())]), allow(None), vec![], vec![]),
        ("second allow matches", json!([policy("a", "ALLOW", post.clone()), policy("b", "ALLOW", get.clone())]),
            allow(Some("b")), vec![], vec![]),
        ("no rules never applies", json!([{"name": "d", "action": "DENY"}]), allow(None), vec![], vec![]),
        ("allow without rules denies", json!([{"name": "a", "action": "ALLOW", "rules": []}]),
            deny(DEFAULT_DENY_POLICY, 403, default_body), vec![], vec![]),
        ("rules OR", json!([{"name": "a", "action": "ALLOW", "rules": [post.clone(), get.clone()]}]),
            allow(Some("a")), vec![], vec![]),
        ("audit listed, outcome unchanged", json!([policy("au", "AUDIT", get.clone()), policy("au2", "AUDIT", post.clone())]),
            allow(None), vec!["au"], vec![]),
        ("audit does not count as allow", json!([policy("au", "AUDIT", get.clone()), policy("a", "ALLOW", post.clone())]),
            deny(DEFAULT_DENY_POLICY, 403, default_body), vec!["au"], vec![]),
        ("dry-run deny reported, not enforced",
            json!([{"name": "dd", "action": "DENY", "dry_run": true, "rules": [get.clone()]}]),
            allow(None), vec![], vec!["dd"]),
        ("dry-run deny not matching", json!([{"name": "dd", "action": "DENY", "dry_run": true, "rules": [post.clone()]}]),
            allow(None), vec![], vec![]),
        ("dry-run allow not matching reported",
            json!([{"name": "da", "action": "ALLOW", "dry_run": true, "rules": [post.clone()]},
                   {"name": "db", "action": "ALLOW", "dry_run": true, "rules": [{"methods": ["PUT"]}]}]),
            allow(None), vec![], vec!["da", "db"]),
        ("dry-run allow matching", json!([{"name": "da", "action": "ALLOW", "dry_run": true, "rules": [get.clone()]}]),
            allow(None), vec![], vec![]),
        ("dry-run allow not matching, enforced allow matches",
            json!([{"name": "da", "action": "ALLOW", "dry_run": true, "rules": [post.clone()]}, policy("a", "ALLOW", get.clone())]),
            allow(Some("a")), vec![], vec![]),
        ("nothing dry-run reported when denied",
            json!([{"name": "dd", "action": "DENY", "dry_run": true, "rules": [get.clone()]}, policy("d", "DENY", get.clone())]),
            deny("d", 403, "access denied by weft policy \"d\"\n"), vec![], vec![]),
        ("dry-run deny with enforced allow", json!([{"name": "dd", "action": "DENY", "dry_run": true, "rules": [get.clone()]},
                   policy("a", "ALLOW", get.clone())]),
            allow(Some("a")), vec![], vec!["dd"]),
    ];
    for (name, policies, verdict, audited, dry) in cases {
        let d = decide(policies, &mk_req());
        assert_eq!(d.verdict, verdict, "case {name:?}");
        assert_eq!(d.audited, audited, "case {name:?}");
        assert_eq!(d.dry_run_denied, dry, "case {name:?}");
        assert!(!d.reason.to_string().is_empty(), "case {name:?}");
    }
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn deny_responses_and_reasons() {
    let custom = json!({"status": 451, "body": "nope\n", "headers": {"X-Reason": "policy"}});
    let d = decide(
        json!([{"name": "d", "action": "DENY", "rules": [{}, {"methods": ["GET"]}], "deny_response": custom}]),
        &mk_req(),
    );
    let want = Verdict::Deny {
        policy: "d".into(),
        status: 451,
        body: "nope\n".into(),
        headers: vec![("x-reason".into(), "policy".into())],
    };
    assert_eq!(d.verdict, want);
    assert_eq!(d.reason.to_string(), r#"DENY policy "d" rule 0 matched"#);

    // Default deny takes the first enforced ALLOW policy's response, body falling back.
    let d = decide(
        json!([{"name": "da", "action": "ALLOW", "dry_run": true, "rules": [{}], "deny_response": {"status": 418}},
               {"name": "a", "action": "ALLOW", "rules": [{"methods": ["POST"]}], "deny_response": {"status": 404}},
               {"name": "b", "action": "ALLOW", "rules": [{"methods": ["PUT"]}], "deny_response": {"status": 402}}]),
        &mk_req(),
    );
    assert_eq!(
        d.verdict,
        deny(
            DEFAULT_DENY_POLICY,
            404,
            "access denied: no ALLOW policy matched\n"
        )
    );
    // Attributed: the enforced ALLOW policies are named (the dry-run one is not).
    assert_eq!(
        d.reason.to_string(),
        "no ALLOW policy matched; ALLOW policies present: a, b"
    );

    let d = decide(
        json!([policy("a", "ALLOW", json!({"paths": ["/x", "/api/*"]}))]),
        &mk_req(),
    );
    assert_eq!(d.reason.to_string(), r#"ALLOW policy "a" rule 0 matched"#);
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn trust_domain_expands_namespaces() {
    let authz = mk_authz(
        json!({"trust_domain": "corp.example", "policies": [policy("a", "ALLOW", json!({"namespaces": ["corp"]}))]}),
    );
    let mut req = mk_req();
    assert!(matches!(
        authz.decide(&req, NOW).verdict,
        Verdict::Deny { .. }
    ));
    req.peer = Some("spiffe://corp.example/ns/corp/sa/web");
    assert_eq!(authz.decide(&req, NOW).verdict, allow(Some("a")));
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn claim_headers_forward_validated_claims_and_strip_forgeries() {
    let authz = mk_authz(json!({
        "jwt": [{"name": "corp", "issuer": "https://idp", "keys": {"hs256_secrets": [HS_SECRET]}}],
        "claim_headers": [
            {"claim": "tier", "header": "x-weft-claim-tier"},
            {"claim": "org.id", "header": "x-weft-claim-org"},
            {"claim": "missing", "header": "x-weft-claim-missing"}
        ]
    }));
    let token = mk_hs256(
        &json!({"iss": "https://idp", "tier": "beta", "org": {"id": 42}, "exp": NOW + 60}),
    );
    let mut req = mk_req();
    req.headers
        .push(("authorization", format!("Bearer {token}")));
    req.headers
        .push(("x-weft-claim-missing", "forged".to_string()));
    let d = authz.decide(&req, NOW);
    assert_eq!(
        d.request_headers,
        vec![
            ("x-weft-claim-tier".to_string(), Some("beta".to_string())),
            ("x-weft-claim-org".to_string(), Some("42".to_string())),
            ("x-weft-claim-missing".to_string(), None),
        ]
    );
    // No token: every claim header is removed.
    let d = authz.decide(&mk_req(), NOW);
    assert!(d.request_headers.iter().all(|(_, v)| v.is_none()));
    assert_eq!(d.request_headers.len(), 3);

    for (bad, field) in [
        (
            json!({"claim": "", "header": "x-a"}),
            "claim_headers[0].claim",
        ),
        (
            json!({"claim": "a", "header": "X-A"}),
            "claim_headers[0].header",
        ),
    ] {
        let err =
            Authz::from_json(json!({"claim_headers": [bad]}).to_string().as_bytes()).unwrap_err();
        assert_eq!(err.field, field);
    }
}

/// Counts every host read of the request it wraps.
struct Counting {
    req: Req,
    reads: std::cell::RefCell<Vec<String>>,
}

impl Counting {
    fn read(&self, what: &str) {
        self.reads.borrow_mut().push(what.to_string());
    }
}

impl RequestAttributes for Counting {
    fn method(&self) -> Option<String> {
        self.read(":method");
        self.req.method()
    }
    fn path(&self) -> Option<String> {
        self.read(":path");
        self.req.path()
    }
    fn header(&self, name: &str) -> Option<String> {
        self.read(name);
        self.req.header(name)
    }
    fn source_address(&self) -> Option<String> {
        self.read("source.address");
        self.req.source_address()
    }
    fn peer_principal(&self) -> Option<String> {
        self.read("peer");
        self.req.peer_principal()
    }
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn each_request_attribute_is_read_at_most_once() {
    let team =
        json!({"headers": [{"name": "x-team", "values": ["payments-*"]}], "paths": ["/api/*"]});
    let policies = json!([
        policy("d", "DENY", json!({"headers": [{"name": "x-team", "values": ["ops"]}], "methods": ["DELETE"]})),
        policy("audit", "AUDIT", team.clone()),
        policy("a", "ALLOW", json!({"headers": [{"name": "x-team", "values": ["nobody"]}], "paths": ["/api/*"]})),
        {"name": "b", "action": "ALLOW", "rules": [
            {"principals": ["spiffe://cluster.local/ns/corp/sa/web"], "methods": ["GET"], "paths": ["/api/*"], "headers": [{"name": "x-team", "values": ["payments-*"]}]},
        ]},
    ]);
    let req = Counting {
        req: mk_req(),
        reads: Default::default(),
    };
    let d = mk_authz(json!({ "policies": policies })).decide(&req, NOW);
    assert_eq!(d.verdict, allow(Some("b")));
    assert_eq!(d.audited, vec!["audit"]);
    let mut reads = req.reads.into_inner();
    let all = reads.len();
    reads.sort();
    reads.dedup();
    assert_eq!(all, reads.len(), "read twice: {reads:?}");
    // The reason is formatted only on demand.
    assert_eq!(d.reason.to_string(), r#"ALLOW policy "b" rule 0 matched"#);
}
