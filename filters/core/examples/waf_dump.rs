//! The WAF engine's whole output (verdict, every rule match with its target, the refusal)
//! over the committed corpora and over values derived from them, one line per request: the
//! check that a change meant to be faster detects exactly what it detected before.
//!
//! `cargo run --release -p weft-filter-core --example waf_dump > after.txt`, the same on the
//! earlier commit, then `diff`. Each corpus request is judged at paranoia 1 and 2; every
//! string found in a corpus request (query values, form values, bodies, paths) and variants
//! of it (cut in half, upper-cased, after each shell separator, behind a binary directory)
//! is then sent as a query value, a form value, a JSON leaf, a JSON key, a header and a
//! cookie.

use std::fmt::Write as _;
use weft_filter_core::waf::{BodyPlan, Head, Waf, WafConfig};

fn corpus(name: &str) -> Result<Vec<serde_json::Value>, Box<dyn std::error::Error>> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/waf-corpus")
        .join(name);
    let text = std::fs::read_to_string(&path)?;
    let mut out = Vec::new();
    for line in text.lines() {
        out.push(serde_json::from_str(line)?);
    }
    Ok(out)
}

struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<String>,
}

fn judge(waf: &Waf, r: &Request) -> String {
    let mut headers = r.headers.clone();
    if let Some(b) = &r.body {
        headers.push(("content-length".into(), b.len().to_string()));
    }
    let mut a = waf.check_head(&Head {
        method: &r.method,
        path: &r.path,
        headers: &headers,
        end_of_stream: r.body.is_none(),
    });
    if let (BodyPlan::Inspect(kind), Some(b)) = (a.body, &r.body) {
        let complete = b.len() <= waf.inspect_body_bytes();
        waf.check_body(&mut a, kind, b.as_bytes(), complete);
    }
    format!("{:?} {:?} {:?}", waf.verdict(&a), a.matches, a.refusal)
}

fn from_corpus(r: &serde_json::Value) -> Request {
    let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    Request {
        method: s(&r["method"]),
        path: s(&r["path"]),
        headers: r["headers"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), s(v))).collect())
            .unwrap_or_default(),
        body: r.get("body").map(s),
    }
}

/// Percent-encode everything but unreserved bytes (a value placed in a query or form).
fn encode(v: &str) -> String {
    let mut out = String::new();
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn seeds(all: &[serde_json::Value]) -> Vec<String> {
    let mut seeds = std::collections::BTreeSet::new();
    for r in all {
        let req = from_corpus(r);
        let (path, query) = req.path.split_once('?').unwrap_or((&req.path, ""));
        seeds.insert(path.to_string());
        for part in query
            .split('&')
            .chain(req.body.as_deref().unwrap_or("").split('&'))
        {
            let value = part.split_once('=').map_or(part, |(_, v)| v);
            seeds.insert(value.to_string());
        }
        if let Some(b) = req.body {
            seeds.insert(b);
        }
        for (_, v) in req.headers {
            seeds.insert(v);
        }
    }
    seeds.into_iter().filter(|s| !s.is_empty()).collect()
}

fn variants(seed: &str) -> Vec<String> {
    let half = seed
        .char_indices()
        .nth(seed.chars().count() / 2)
        .map_or(seed.len(), |(i, _)| i);
    let mut out = vec![
        seed.to_string(),
        seed[..half].to_string(),
        seed.to_ascii_uppercase(),
        format!("/usr/local/bin//usr/bin/{seed}"),
    ];
    for sep in [";", "|", "&&", "`", "$(", "\n", "; /bin/", "| /usr/bin/"] {
        out.push(format!("x{sep}{seed}"));
    }
    out
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut all = corpus("attacks.jsonl")?;
    all.extend(corpus("benign.jsonl")?);
    let mut out = String::new();
    for paranoia in [1, 2] {
        let waf = Waf::new(WafConfig {
            paranoia,
            ..WafConfig::default()
        })?;
        for r in &all {
            let id = r["id"].as_str().unwrap_or_default();
            let _ = writeln!(out, "p{paranoia} {id}: {}", judge(&waf, &from_corpus(r)));
        }
        for seed in seeds(&all) {
            for v in variants(&seed) {
                let e = encode(&v);
                let json = serde_json::to_string(&v)?;
                let form = "application/x-www-form-urlencoded".to_string();
                let ct = |t: &str| vec![("content-type".to_string(), t.to_string())];
                let post = |t: &str, body: String| Request {
                    method: "POST".into(),
                    path: "/submit".into(),
                    headers: ct(t),
                    body: Some(body),
                };
                let requests = [
                    Request {
                        method: "GET".into(),
                        path: format!("/search?q={e}"),
                        headers: Vec::new(),
                        body: None,
                    },
                    post(&form, format!("a=1&q={e}")),
                    post(
                        "application/json",
                        format!(r#"{{"a": [1, {json}], "b": {{"c": {json}}}}}"#),
                    ),
                    post("application/json", format!(r#"{{{json}: 1}}"#)),
                    Request {
                        method: "GET".into(),
                        path: "/".into(),
                        headers: vec![
                            ("x-note".into(), v.clone()),
                            ("cookie".into(), format!("s={e}")),
                        ],
                        body: None,
                    },
                ];
                for r in &requests {
                    let _ = writeln!(out, "p{paranoia} {json}: {}", judge(&waf, r));
                }
            }
        }
    }
    print!("{out}");
    Ok(())
}
