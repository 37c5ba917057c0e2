//! Table-driven tests of service matching, precedence, split accuracy, sticky monotonicity
//! and validation. They run natively and, through wasm-bindgen-test, on wasm32.

use super::*;
use serde_json::{json, Value};

use crate::testing::Req;

/// The example service: v1/v2 75/25, beta header and cookie rules, sticky on x-user.
fn reviews() -> Value {
    json!({
        "host": "reviews",
        "stable": "v1",
        "versions": {"v1": {"cluster": "reviews-v1"}, "v2": {"cluster": "reviews-v2"}},
        "rules": [
            {"header": {"name": "x-beta", "value": "true"}, "version": "v2"},
            {"cookie": {"name": "beta", "value": "1"}, "version": "v2"},
            {"claim": {"name": "tier"}, "version": "v2"}
        ],
        "split": [{"version": "v1", "weight": 7500}, {"version": "v2", "weight": 2500}],
        "sticky": {"key": {"header": "x-user"}, "salt": "reviews-2026"},
        "cohort": {"request_header": "x-weft-cohort", "response_header": "x-weft-version"},
        "mirror": {"cluster": "reviews-shadow", "percent_bp": 1000}
    })
}

fn mk(services: Value) -> Canary {
    Canary::from_json(json!({"services": services}).to_string().as_bytes()).unwrap()
}

fn split_of(weights: &[(&str, u32)]) -> Value {
    let versions: serde_json::Map<String, Value> = weights
        .iter()
        .map(|(v, _)| ((*v).to_string(), json!({"cluster": format!("c-{v}")})))
        .collect();
    let split: Vec<Value> = weights
        .iter()
        .map(|(v, w)| json!({"version": v, "weight": w}))
        .collect();
    json!([{"host": "svc", "stable": weights[0].0, "versions": versions, "split": split,
            "sticky": {"key": {"header": "x-user"}, "salt": "s"}}])
}

/// z = 3.29 two-sided 99.9 % interval for a binomial count (normal approximation).
fn within_999(observed: u64, n: u64, weight_bp: u32) -> bool {
    let p = f64::from(weight_bp) / 10_000.0;
    let mean = n as f64 * p;
    let spread = 3.29 * (n as f64 * p * (1.0 - p)).sqrt();
    (observed as f64) >= (mean - spread).floor() && (observed as f64) <= (mean + spread).ceil()
}

fn version_of(c: &Canary, req: &Req, rng: &mut Rng) -> String {
    c.decide(req, rng)
        .map(|d| d.version_name.to_string())
        .unwrap_or_default()
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn bucket_is_pinned_across_targets() {
    // sha256("reviews-2026" ‖ "alice") — the wasm32 run must give the same buckets.
    let b = bucket("reviews-2026", "alice");
    assert!(b < 10_000);
    assert_eq!(b, bucket("reviews-2026", "alice"));
    assert_ne!(
        bucket("reviews-2026", "alice"),
        bucket("other-salt", "alice")
    );
    // Pinned: sha256("ab") first 8 bytes = fb8e20fc2e4c3f24 -> mod 10000.
    assert_eq!(
        bucket("a", "b"),
        u32::try_from(0xfb8e_20fc_2e4c_3f24_u64 % 10_000).unwrap()
    );
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn service_matching_by_host_port_and_path_prefix() {
    let mut api = reviews();
    api["name"] = json!("reviews-api");
    api["path_prefix"] = json!("/api/");
    api["stable"] = json!("v2");
    api["split"] = json!([{"version": "v2", "weight": 10000}]);
    api["rules"] = json!([]);
    let c = mk(json!([api, reviews()]));
    let mut rng = Rng::new(1);
    let cases: &[(Req, Option<usize>)] = &[
        (Req::new("reviews", "/"), Some(1)),
        (Req::new("Reviews:9080", "/"), Some(1)),
        (
            Req::new("reviews:9080", "/").with(":path", "/api/x"),
            Some(0),
        ),
        (Req::new("reviews", "/").with(":path", "/apix"), Some(1)),
        (Req::new("ratings", "/"), None),
        (Req::new("reviews.default", "/"), None),
        (Req::new("[::1]:80", "/"), None),
    ];
    for (req, want) in cases {
        assert_eq!(c.service_for(req), *want, "{req:?}");
        assert_eq!(c.decide(req, &mut rng).map(|d| d.service), *want, "{req:?}");
    }
    assert_eq!(strip_port("[::1]:80"), "[::1]");
    assert_eq!(strip_port("host"), "host");
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn precedence_cohort_then_rules_then_split() {
    let c = mk(json!([reviews()]));
    let mut rng = Rng::new(2);
    let base = || Req::new("reviews", "/");
    let cases: Vec<(Req, &str, Reason)> = vec![
        (base().with("x-beta", "true"), "v2", Reason::Rule(0)),
        (base().with("cookie", "a=b; beta=1"), "v2", Reason::Rule(1)),
        (base().with("cookie", "beta=\"1\""), "v2", Reason::Rule(1)),
        (
            base().with("x-weft-claim-tier", "gold"),
            "v2",
            Reason::Rule(2),
        ),
        (
            base().with("x-weft-cohort", "v1").with("x-beta", "true"),
            "v1",
            Reason::Cohort,
        ),
        (base().with("x-weft-cohort", "v2"), "v2", Reason::Cohort),
    ];
    for (req, want, reason) in &cases {
        let d = c.decide(req, &mut rng).unwrap();
        assert_eq!((d.version_name, d.reason), (*want, *reason), "{req:?}");
        assert_eq!(d.cluster, format!("reviews-{want}"));
        assert_eq!(d.cohort_request_header, Some("x-weft-cohort"));
        assert_eq!(d.cohort_response_header, Some("x-weft-version"));
    }
    // Not matching: wrong value, unknown cohort version; falls to the split.
    for req in [
        base().with("x-beta", "false"),
        base().with("cookie", "beta=0; xbeta=1"),
        base().with("x-weft-cohort", "v9"),
        base().with("x-user", "bob"),
    ] {
        let d = c.decide(&req, &mut rng).unwrap();
        assert!(
            matches!(d.reason, Reason::Sticky(_) | Reason::Random(_)),
            "{req:?}: {d:?}"
        );
    }
    assert!(matches!(
        c.decide(&base().with("x-user", "bob"), &mut rng)
            .unwrap()
            .reason,
        Reason::Sticky(_)
    ));
    assert!(matches!(
        c.decide(&base().with("x-user", ""), &mut rng)
            .unwrap()
            .reason,
        Reason::Random(_)
    ));

    let mut no_honour = reviews();
    no_honour["cohort"]["honour_incoming"] = json!(false);
    let c = mk(json!([no_honour]));
    let d = c
        .decide(
            &base().with("x-weft-cohort", "v1").with("x-beta", "true"),
            &mut rng,
        )
        .unwrap();
    assert_eq!((d.version_name, d.reason), ("v2", Reason::Rule(0)));
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn sticky_keys_cookie_and_claim_sources() {
    let mut rng = Rng::new(3);
    for (source, req) in [
        (
            json!({"cookie": "uid"}),
            Req::new("reviews", "/").with("cookie", "x=1; uid=alice"),
        ),
        (
            json!({"claim": "user.id"}),
            Req::new("reviews", "/").with("x-weft-claim-user-id", "alice"),
        ),
        (
            json!({"header": "X-User"}),
            Req::new("reviews", "/").with("x-user", "alice"),
        ),
    ] {
        let mut s = reviews();
        s["sticky"]["key"] = source.clone();
        let c = mk(json!([s]));
        let d = c.decide(&req, &mut rng).unwrap();
        assert_eq!(
            d.reason,
            Reason::Sticky(bucket("reviews-2026", "alice")),
            "{source}"
        );
    }
}

/// 10,000 sticky keys land on each version within the binomial 99.9 % interval.
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn sticky_split_matches_weights_for_10000_keys() {
    let splits: &[&[(&str, u32)]] = &[
        &[("v1", 7500), ("v2", 2500)],
        &[("v1", 9990), ("v2", 10)],
        &[("v1", 5000), ("v2", 3000), ("v3", 2000)],
        &[("v1", 0), ("v2", 10000)],
    ];
    let mut rng = Rng::new(4);
    for weights in splits {
        let c = mk(split_of(weights));
        let n = 10_000u64;
        let mut counts = vec![0u64; weights.len()];
        for k in 0..n {
            let req = Req::new("svc", "/").with("x-user", &format!("user-{k}"));
            let v = version_of(&c, &req, &mut rng);
            let i = weights.iter().position(|(name, _)| *name == v).unwrap();
            counts[i] += 1;
        }
        for ((name, w), got) in weights.iter().zip(&counts) {
            assert!(
                within_999(*got, n, *w),
                "{weights:?}: {name} got {got} of {n}"
            );
        }
    }
}

/// The same for the random draw (no sticky key), with 100,000 draws.
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn random_split_and_mirror_sample_match_weights() {
    let mut s = reviews();
    s["split"] = json!([{"version": "v1", "weight": 7500}, {"version": "v2", "weight": 2500}]);
    let c = mk(json!([s]));
    let mut rng = Rng::new(5);
    let n = 100_000u64;
    let (mut v2, mut mirrored) = (0u64, 0u64);
    for _ in 0..n {
        let d = c.decide(&Req::new("reviews", "/"), &mut rng).unwrap();
        assert!(matches!(d.reason, Reason::Random(_)));
        v2 += u64::from(d.version_name == "v2");
        mirrored += u64::from(d.mirror.is_some());
    }
    assert!(within_999(v2, n, 2500), "v2 got {v2} of {n}");
    assert!(within_999(mirrored, n, 1000), "mirrored {mirrored} of {n}");

    for (percent, expect_all) in [(0, false), (10_000, true)] {
        let mut s = reviews();
        s["mirror"]["percent_bp"] = json!(percent);
        let c = mk(json!([s]));
        assert!((0..1000).all(|_| c
            .decide(&Req::new("reviews", "/"), &mut rng)
            .unwrap()
            .mirror
            .is_some()
            == expect_all));
    }
}

/// Raising v2 from 10 % to 20 % moves only v1 users to v2, never back, for every key.
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn raising_canary_weight_moves_users_one_way() {
    let before = mk(split_of(&[("v1", 9000), ("v2", 1000)]));
    let after = mk(split_of(&[("v1", 8000), ("v2", 2000)]));
    let mut rng = Rng::new(6);
    let n = 10_000u64;
    let (mut moved, mut v2_before) = (0u64, 0u64);
    for k in 0..n {
        let req = Req::new("svc", "/").with("x-user", &format!("user-{k}"));
        let (a, b) = (
            version_of(&before, &req, &mut rng),
            version_of(&after, &req, &mut rng),
        );
        assert!(
            !(a == "v2" && b == "v1"),
            "user-{k} moved back from v2 to v1"
        );
        moved += u64::from(a != b);
        v2_before += u64::from(a == "v2");
        // Stable per key: the same request decides the same again.
        assert_eq!(b, version_of(&after, &req, &mut rng));
    }
    assert!(within_999(v2_before, n, 1000), "{v2_before}");
    assert!(within_999(moved, n, 1000), "moved {moved}");
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn bad_config_is_rejected_naming_the_field() {
    let with = |path: &[&str], value: Value| {
        let mut s = reviews();
        let mut at = &mut s;
        for p in &path[..path.len() - 1] {
            at = if let Ok(i) = p.parse::<usize>() {
                &mut at[i]
            } else {
                &mut at[*p]
            };
        }
        let last = path[path.len() - 1];
        if value.is_null() {
            at.as_object_mut().unwrap().remove(last);
        } else {
            at[last] = value;
        }
        json!({"services": [s]})
    };
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            with(&["split", "1", "weight"], json!(2000)),
            "services[0].split",
            "sum to 9500",
        ),
        (
            with(&["split"], json!([])),
            "services[0].split",
            "must not be empty",
        ),
        (
            with(&["split", "1", "version"], json!("v3")),
            "services[0].split[1].version",
            "unknown version `v3`",
        ),
        (
            with(&["split", "1", "version"], json!("v1")),
            "services[0].split[1].version",
            "already",
        ),
        (
            with(&["split", "0", "weight"], json!(10001)),
            "services[0].split[0].weight",
            "more than",
        ),
        (
            with(&["rules", "1", "version"], json!("v7")),
            "services[0].rules[1].version",
            "unknown version",
        ),
        (
            with(&["rules", "0", "cookie"], json!({"name": "x"})),
            "services[0].rules[0]",
            "exactly one",
        ),
        (
            with(&["rules", "0", "header", "name"], json!("bad header")),
            "services[0].rules[0].header.name",
            "not a valid",
        ),
        (
            with(&["stable"], json!("v3")),
            "services[0].stable",
            "unknown version",
        ),
        (
            with(&["versions"], json!({})),
            "services[0].versions",
            "at least one",
        ),
        (
            with(&["versions", "v2", "cluster"], json!("")),
            "services[0].versions.v2.cluster",
            "non-empty",
        ),
        (with(&["host"], json!("")), "services[0].host", "host name"),
        (
            with(&["path_prefix"], json!("api")),
            "services[0].path_prefix",
            "start with",
        ),
        (
            with(&["mirror", "percent_bp"], json!(10001)),
            "services[0].mirror.percent_bp",
            "more than",
        ),
        (
            with(&["cohort", "request_header"], json!("x y")),
            "services[0].cohort.request_header",
            "not a valid",
        ),
        (
            with(&["sticky", "key"], json!({"cookie": "a=b"})),
            "services[0].sticky.key.cookie",
            "not a valid",
        ),
        (
            with(&["splitt"], json!([])),
            "services[0].splitt",
            "unknown field",
        ),
        (
            with(&["split", "0", "weight"], json!(-1)),
            "services[0].split[0].weight",
            "invalid value",
        ),
        (
            json!({"services": [reviews(), reviews()]}),
            "services[1].host",
            "also used",
        ),
        (
            json!({"cluster_header": ":authority"}),
            "cluster_header",
            "not a valid",
        ),
        (json!({"services": {}}), "services", "invalid type"),
    ];
    for (config, field, reason) in cases {
        let err = Canary::from_json(config.to_string().as_bytes()).unwrap_err();
        assert_eq!(err.field, field, "{config}: {err}");
        assert!(err.reason.contains(reason), "{config}: {err}");
    }
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn config_round_trips_and_empty_config_passes_through() {
    let c = mk(json!([reviews()]));
    let text = serde_json::to_string(c.config()).unwrap();
    let again = Canary::from_json(text.as_bytes()).unwrap();
    assert_eq!(again.config(), c.config());
    assert_eq!(c.cluster_header(), "x-weft-cluster");
    assert_eq!(c.services()[0].name, "reviews");
    assert_eq!(
        c.services()[0].versions[c.services()[0].stable()].cluster,
        "reviews-v1"
    );

    let empty = Canary::from_json(b"{}").unwrap();
    assert!(empty
        .decide(&Req::new("reviews", "/"), &mut Rng::new(7))
        .is_none());
}

/// Serde errors name the field path in compact and pretty JSON, with escapes in keys.
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn serde_errors_name_the_path_in_any_layout() {
    let mut unknown = reviews();
    unknown["rules"][1]["cookie"]["valu"] = json!("1");
    let mut missing = reviews();
    missing.as_object_mut().unwrap().remove("split");
    let mut escaped = reviews();
    escaped["versions"]["v\"2"] = json!({"cluster": 7});
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({"services": [unknown]}),
            "services[0].rules[1].cookie.valu",
            "unknown field",
        ),
        (
            json!({"services": [reviews(), missing]}),
            "services[1]",
            "missing field `split`",
        ),
        (
            json!({"services": [escaped]}),
            "services[0].versions.v\\\"2.cluster",
            "invalid type",
        ),
        (json!({"servicez": []}), "servicez", "unknown field"),
    ];
    for (config, field, reason) in cases {
        for text in [
            config.to_string(),
            serde_json::to_string_pretty(&config).unwrap(),
        ] {
            let err = Canary::from_json(text.as_bytes()).unwrap_err();
            assert_eq!(err.field, field, "{text}: {err}");
            assert!(err.reason.contains(reason), "{text}: {err}");
        }
    }
    assert_eq!(Canary::from_json(b"[]").unwrap_err().field, "configuration");
    assert_eq!(
        Canary::from_json(b"{} x").unwrap_err().field,
        "configuration"
    );
}

use crate::testing::Counting;

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn each_header_is_read_at_most_once() {
    let canary = mk(json!([{
        "host": "reviews",
        "stable": "v1",
        "versions": {"v1": {"cluster": "reviews-v1"}, "v2": {"cluster": "reviews-v2"}},
        "rules": [
            {"cookie": {"name": "beta", "value": "1"}, "version": "v2"},
            {"header": {"name": "x-team", "value": "a"}, "version": "v2"},
            {"cookie": {"name": "alpha"}, "version": "v2"},
            {"header": {"name": "x-team", "value": "b"}, "version": "v2"}
        ],
        "split": [{"version": "v1", "weight": 5000}, {"version": "v2", "weight": 5000}],
        "sticky": {"key": {"cookie": "uid"}, "salt": "s"}
    }]));
    let req = Counting {
        req: Req::new("reviews", "/")
            .with("cookie", "beta=0; uid=\"u-1\"")
            .with("x-team", "c"),
        reads: Default::default(),
    };
    let d = canary.decide(&req, &mut Rng::new(1)).unwrap();
    assert_eq!(d.reason, Reason::Sticky(bucket("s", "u-1")));
    let mut reads = req.reads.into_inner();
    let all = reads.len();
    reads.sort();
    reads.dedup();
    assert_eq!(all, reads.len(), "read twice: {reads:?}");
    // A service without rules, cohort or sticky key reads only `:authority`.
    let plain = mk(json!([{"host": "reviews", "stable": "v1",
        "versions": {"v1": {"cluster": "c1"}, "v2": {"cluster": "c2"}},
        "split": [{"version": "v1", "weight": 7500}, {"version": "v2", "weight": 2500}]}]));
    let req = Counting {
        req: Req::new("reviews:80", "/").with("cookie", "uid=1"),
        reads: Default::default(),
    };
    assert!(plain.decide(&req, &mut Rng::new(1)).is_some());
    assert_eq!(req.reads.into_inner(), vec![":authority"]);
}
