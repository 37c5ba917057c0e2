//! The committed corpora (`tests/waf-corpus`) through the engine with the default
//! configuration, natively: detection per category and false positives. The same corpora
//! run through real Envoy in `tests/tests/waf.rs`; this is the fast loop and the floor.
#![cfg(test)]

use super::*;
use std::collections::BTreeMap;

fn corpus(name: &str) -> Vec<serde_json::Value> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/waf-corpus")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("{}: {e}", path.display()))
        .unwrap();
    text.lines()
        .map(|l| {
            serde_json::from_str(l)
                .map_err(|e| format!("{l}: {e}"))
                .unwrap()
        })
        .collect()
}

/// The verdict of one corpus request, sent whole.
fn judge(w: &Waf, r: &serde_json::Value) -> (Verdict, Assessment) {
    let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    let body = r.get("body").map(s);
    let mut headers: Vec<(String, String)> = r["headers"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), s(v))).collect())
        .unwrap_or_default();
    if let Some(b) = &body {
        headers.push(("content-length".into(), b.len().to_string()));
    }
    let method = s(&r["method"]);
    let path = s(&r["path"]);
    let mut a = w.check_head(&Head {
        method: &method,
        path: &path,
        headers: &headers,
        end_of_stream: body.is_none(),
    });
    if let (BodyPlan::Inspect(kind), Some(b)) = (a.body, &body) {
        let complete = b.len() <= w.inspect_body_bytes();
        w.check_body(&mut a, kind, b.as_bytes(), complete);
    }
    (w.verdict(&a), a)
}

#[test]
fn attack_corpus_is_detected_per_category() {
    let w = Waf::new(WafConfig::default()).unwrap_or_else(|e| panic!("{e}"));
    let mut per: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    let mut missed = Vec::new();
    for r in corpus("attacks.jsonl") {
        let cat = r["category"].as_str().unwrap_or_default().to_string();
        let (v, _) = judge(&w, &r);
        let e = per.entry(cat).or_default();
        e.1 += 1;
        if matches!(v, Verdict::Block { .. }) {
            e.0 += 1;
        } else {
            missed.push(r["id"].as_str().unwrap_or_default().to_string());
        }
    }
    for (cat, (hit, n)) in &per {
        println!(
            "{cat}: {hit}/{n} = {:.1} %",
            f64::from(*hit) * 100.0 / f64::from(*n)
        );
    }
    println!("missed: {missed:?}");
    for (cat, (hit, n)) in &per {
        assert!(
            f64::from(*hit) >= 0.9 * f64::from(*n),
            "{cat}: {hit}/{n}; missed {missed:?}"
        );
    }
    assert!(per.values().map(|v| v.1).sum::<u32>() >= 300);
}

#[test]
fn benign_corpus_passes() {
    let w = Waf::new(WafConfig::default()).unwrap_or_else(|e| panic!("{e}"));
    let all = corpus("benign.jsonl");
    let mut fp = Vec::new();
    for r in &all {
        let (v, a) = judge(&w, r);
        if v != Verdict::Pass {
            fp.push(format!("{}: {:?}", r["id"], a.matches));
        }
    }
    println!("false positives: {}/{}: {fp:#?}", fp.len(), all.len());
    assert!(all.len() >= 1000);
    assert!(fp.len() * 100 <= all.len(), "{fp:#?}");
}
