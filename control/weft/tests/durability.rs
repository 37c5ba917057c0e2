//! Crash safety: SIGKILL the real server in the middle of a stream of applies, restart it on
//! the same data directory, and find every acknowledged version intact.
#![cfg(test)]

mod support;

use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;

/// Upper bound on applies the client sends; the kill comes long before.
const MAX_APPLIES: usize = 2_000;
/// Acknowledged applies to wait for before the kill.
const KILL_AFTER: usize = 30;

fn policy_path(record: &Value) -> Option<String> {
    record["documents"]
        .as_array()?
        .iter()
        .find(|d| d["kind"] == "AuthorizationPolicy")
        .and_then(|d| d["spec"]["rules"][0]["to"]["paths"][0].as_str())
        .map(str::to_string)
}

#[test]
fn sigkill_mid_stream_loses_no_acknowledged_version() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let agent = agent();
    let apply = |agent: &ureq::Agent, base: &str, body: &str| -> Result<Value, String> {
        let mut resp = agent
            .post(format!("{base}/api/v1/apply"))
            .header("x-weft-author", "stream")
            .header("content-type", "application/yaml")
            .header("authorization", format!("Bearer {}", token_for(base)))
            .send(body)
            .map_err(|e| e.to_string())?;
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| e.to_string())?;
        if resp.status() != 200 {
            return Err(format!("HTTP {}: {text}", resp.status()));
        }
        serde_json::from_str(&text).map_err(|e| e.to_string())
    };
    assert_eq!(
        apply(&agent, &server.base, SERVICES).unwrap()["version"],
        json!(1)
    );

    // The client streams applies and records each acknowledgement: (version, path).
    let acked: Arc<Mutex<Vec<(u64, String)>>> = Arc::default();
    let client = {
        let (acked, base, agent) = (acked.clone(), server.base.clone(), agent.clone());
        std::thread::spawn(move || {
            for i in 0..MAX_APPLIES {
                let path = format!("/stream/{i}");
                match apply(&agent, &base, &mk_policy("stream", &path)) {
                    Ok(out) => acked
                        .lock()
                        .unwrap()
                        .push((out["version"].as_u64().unwrap(), path)),
                    Err(_) => return i, // the server is gone
                }
            }
            MAX_APPLIES
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < KILL_AFTER {
        assert!(
            Instant::now() < deadline,
            "too few applies acknowledged in 60s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    server.kill();
    let sent = client.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(sent < MAX_APPLIES, "the kill did not interrupt the stream");
    eprintln!(
        "killed after {} acknowledged applies ({sent} sent)",
        acked.len()
    );

    let server = Server::start(dir.path());
    let history = get_json(&agent, &format!("{}/api/v1/history", server.base));
    let versions: Vec<u64> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["version"].as_u64().unwrap())
        .collect();
    let last_acked = acked.last().unwrap().0;
    // Contiguous from 1; at most one version past the last acknowledged one (the apply in
    // flight may have become durable without its answer reaching the client).
    assert_eq!(versions, (1..=versions.len() as u64).collect::<Vec<_>>());
    let latest = *versions.last().unwrap();
    assert!(
        latest == last_acked || latest == last_acked + 1,
        "latest {latest}, last acknowledged {last_acked}"
    );
    for (version, path) in &acked {
        let record = get_json(&agent, &format!("{}/api/v1/history/{version}", server.base));
        assert_eq!(
            policy_path(&record).as_deref(),
            Some(path.as_str()),
            "version {version}"
        );
        assert_eq!(record["author"], json!("operator:admin (says: stream)"));
    }
    if latest > last_acked {
        let record = get_json(&agent, &format!("{}/api/v1/history/{latest}", server.base));
        assert_eq!(
            policy_path(&record),
            Some(format!("/stream/{}", acked.len()))
        );
    }
    // The current state is the latest version, and the server takes new applies.
    let status = get_json(&agent, &format!("{}/api/v1/status", server.base));
    assert_eq!(status["policyVersion"], json!(latest));
    assert_eq!(
        apply(&agent, &server.base, &mk_policy("after", "/after")).unwrap()["version"],
        json!(latest + 1)
    );
}

#[test]
fn sigterm_shuts_down_cleanly_and_a_restart_restores_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let out = weft(&server.base, &["apply", "-f", "-"], Some(SERVICES));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = server.terminate();
    assert_eq!(status.code(), Some(0), "weft serve exits 0 on SIGTERM");
    let server = Server::start(dir.path());
    let status = get_json(&agent(), &format!("{}/api/v1/status", server.base));
    assert_eq!(status["policyVersion"], json!(1));
}
