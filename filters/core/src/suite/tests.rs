//! The suite's configuration sections and the shared request view. They run natively and,
//! through wasm-bindgen-test, on wasm32.

use super::*;
use crate::rng::Rng;
use crate::testing::suite_config::{AUTHZ, BREAKER, CANARY, NO_FAULT as FAULT, TELEMETRY};
use crate::testing::{Counting, Req};
use crate::RequestAttributes;
use std::cell::RefCell;

fn suite(sections: &[(&str, &str)]) -> Result<Suite, ConfigError> {
    let body: Vec<String> = sections
        .iter()
        .map(|(name, json)| format!("\"{name}\": {json}"))
        .collect();
    Suite::from_json(format!("{{{}}}", body.join(", ")).as_bytes())
}

fn field_of(sections: &[(&str, &str)]) -> String {
    suite(sections).unwrap_err().field
}

#[test]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn every_section_is_optional() {
    let all = suite(&[
        ("telemetry", TELEMETRY),
        ("authz", AUTHZ),
        ("canary", CANARY),
        ("fault", FAULT),
        ("breaker", BREAKER),
    ])
    .unwrap();
    assert_eq!(all.enabled(), STAGES);
    let none = Suite::from_json(br#"{"listener": "outbound"}"#).unwrap();
    assert!(none.enabled().is_empty());
    let two = suite(&[("breaker", BREAKER), ("authz", AUTHZ), ("fault", "null")]).unwrap();
    assert_eq!(two.enabled(), ["authz", "breaker"]);
    let telemetry = all.telemetry.unwrap();
    assert_eq!(telemetry.direction, crate::telemetry::Direction::Outbound);
    assert_eq!(telemetry.key_bytes(), Some([0x00, 0xff].repeat(8)));
}

#[test]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_bad_section_is_named_with_the_field_inside_it() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[(
                "authz",
                r#"{"policies": [{"name": "p", "action": "MAYBE"}]}"#,
            )],
            "authz.policies[0].action",
        ),
        (
            &[
                ("authz", AUTHZ),
                (
                    "canary",
                    r#"{"services": [{"host": "r", "stable": "v1", "versions": {"v1": {"cluster": "c"}},
                        "split": [{"version": "v1", "weight": "half"}]}]}"#,
                ),
            ],
            "canary.services[0].split[0].weight",
        ),
        (
            &[(
                "fault",
                r#"{"policies": [{"name": "p", "delay": {"percent": 10, "fixed_ms": 5}}], "tick": 1}"#,
            )],
            "fault.tick",
        ),
        (
            &[("breaker", r#"{"cluster_header": "X Bad"}"#)],
            "breaker.cluster_header",
        ),
        (&[("canary", "[]")], "canary"),
        (
            &[("telemetry", r#"{"direction": "sideways"}"#)],
            "telemetry.direction",
        ),
    ];
    for (sections, field) in cases {
        assert_eq!(field_of(sections), *field, "{sections:?}");
    }
}

#[test]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn unknown_sections_and_broken_json_are_refused() {
    let err = Suite::from_json(br#"{"authz": {}, "canaries": {}}"#).unwrap_err();
    assert_eq!(err.field, "canaries");
    assert!(err.reason.contains("expected one of"), "{err}");
    // Cut short inside a section: serde names the section it was in.
    let err = Suite::from_json(br#"{"authz": {"#).unwrap_err();
    assert_eq!(err.field, "authz");
    assert!(Suite::from_json(b"[]").is_err());
    assert!(Suite::from_json(br#"{"fault": {}} trailing"#).is_err());
}

#[test]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn the_stages_of_one_request_read_each_attribute_once() {
    let suite = suite(&[
        ("authz", AUTHZ),
        ("canary", CANARY),
        ("fault", FAULT),
        ("breaker", BREAKER),
    ])
    .unwrap();
    let counting = Counting {
        req: Req::new("reviews:8080", "/reports/q3").with("x-user", "user-42"),
        reads: RefCell::new(Vec::new()),
    };
    let req = MemoRequest::new(counting);
    let mut rng = Rng::new(7);
    let authz = suite.authz.as_ref().unwrap().decide(&req, 0);
    assert!(matches!(authz.verdict, crate::authz::Verdict::Allow { .. }));
    let canary = suite.canary.as_ref().unwrap();
    let cluster = canary.decide(&req, &mut rng).unwrap().cluster.to_string();
    // The filter writes the cluster header; the breaker then reads it without the host.
    req.note_header(canary.cluster_header(), Some(&cluster));
    let fault = suite.fault.as_ref().unwrap().decide(&req, 0, 0, &mut rng);
    assert_eq!(fault.policy, Some(0));
    assert_eq!(req.header("x-weft-cluster"), Some(cluster));
    // The request again, as a later stage asks for it.
    assert_eq!(req.path().as_deref(), Some("/reports/q3"));
    assert_eq!(req.authority().as_deref(), Some("reviews:8080"));

    let mut reads = req.inner().reads.borrow().clone();
    let total = reads.len();
    reads.sort();
    reads.dedup();
    assert_eq!(total, reads.len(), "read twice: {reads:?}");
    assert!(!reads.contains(&"x-weft-cluster".to_string()), "{reads:?}");
}

#[test]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_noted_header_replaces_or_removes_what_was_read() {
    let counting = Counting {
        req: Req::new("a", "/").with("x-weft-cluster", "from-caller"),
        reads: RefCell::new(Vec::new()),
    };
    let req = MemoRequest::new(counting);
    assert_eq!(req.header("x-weft-cluster").as_deref(), Some("from-caller"));
    req.note_header("x-weft-cluster", None);
    assert_eq!(req.header("x-weft-cluster"), None);
    req.note_header("x-weft-cluster", Some("v2"));
    assert_eq!(req.header("x-weft-cluster").as_deref(), Some("v2"));
    assert_eq!(req.inner().reads.borrow().len(), 1);
}

#[test]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn an_inbound_suite_without_authz_denies() {
    use crate::authz::{Verdict, NO_CONFIGURATION_POLICY};
    let req = Req::new("reviews", "/reviews/1");
    for config in [
        "{}",
        &format!(r#"{{"telemetry": {TELEMETRY}}}"#),
        r#"{"listener": "inbound"}"#,
        &format!(r#"{{"listener": "inbound", "fault": {FAULT}}}"#),
    ] {
        let suite = Suite::from_json(config.as_bytes()).unwrap();
        let authz = suite.authz.as_ref().expect("authz stage is on");
        let verdict = authz.decide(&req, 0).verdict;
        assert!(
            matches!(&verdict, Verdict::Deny { policy, status: 403, .. } if policy == NO_CONFIGURATION_POLICY),
            "{config}: {verdict:?}"
        );
    }
    // Outbound chains have no authz stage.
    for config in [
        format!(r#"{{"canary": {CANARY}}}"#),
        r#"{"listener": "outbound"}"#.to_string(),
    ] {
        assert!(
            Suite::from_json(config.as_bytes()).unwrap().authz.is_none(),
            "{config}"
        );
    }
    assert!(Suite::from_json(br#"{"listener": "sideways"}"#).is_err());
}

#[test]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn marks_are_published_unless_telemetry_is_here_or_the_configuration_says_no() {
    let publish = |config: &str| Suite::from_json(config.as_bytes()).unwrap().publish_marks;
    assert!(publish(&format!(r#"{{"canary": {CANARY}}}"#)));
    assert!(publish(
        r#"{"publish_marks": true, "listener": "outbound"}"#
    ));
    assert!(!publish(
        r#"{"publish_marks": false, "listener": "outbound"}"#
    ));
    assert!(!publish(&format!(r#"{{"telemetry": {TELEMETRY}}}"#)));
    assert!(!publish(&format!(
        r#"{{"telemetry": {TELEMETRY}, "publish_marks": true}}"#
    )));
    let err = Suite::from_json(br#"{"publish_marks": "no"}"#).unwrap_err();
    assert!(err.to_string().contains("publish_marks"), "{err}");
}

#[test]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn every_copy_of_a_header_is_read_once_and_follows_writes() {
    let memo = MemoRequest::new(Counting {
        req: Req::new("reviews", "/").with("x-user", "alice"),
        reads: RefCell::new(Vec::new()),
    });
    assert_eq!(memo.header_values("x-user"), ["alice"]);
    assert_eq!(memo.header_values("x-user"), ["alice"]);
    assert_eq!(memo.inner().reads.borrow().as_slice(), ["x-user"]);
    // A stage replaced every copy (authz writing a claim header), or removed them all.
    memo.note_header("x-user", Some("bob"));
    assert_eq!(memo.header_values("x-user"), ["bob"]);
    memo.note_header("x-user", None);
    assert!(memo.header_values("x-user").is_empty());
    assert_eq!(memo.header("x-user"), None);
    assert_eq!(memo.inner().reads.borrow().len(), 1);
}

/// A host that lists its header map in one read and counts the reads of each kind; with
/// `prefers`, it says one map read is cheaper than single reads (the wasm glue).
struct MapHost {
    map: Vec<(String, String)>,
    map_reads: RefCell<u32>,
    name_reads: RefCell<u32>,
    prefers: bool,
}

impl RequestAttributes for MapHost {
    fn method(&self) -> Option<String> {
        self.header(":method")
    }
    fn path(&self) -> Option<String> {
        self.header(":path")
    }
    fn header(&self, name: &str) -> Option<String> {
        *self.name_reads.borrow_mut() += 1;
        self.map
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }
    fn prefers_header_map(&self) -> bool {
        self.prefers
    }
    fn header_values(&self, _: &str) -> Vec<String> {
        *self.name_reads.borrow_mut() += 1;
        Vec::new()
    }
    fn header_map(&self) -> Option<Vec<(String, String)>> {
        *self.map_reads.borrow_mut() += 1;
        Some(self.map.clone())
    }
    fn source_address(&self) -> Option<String> {
        None
    }
    fn peer_principal(&self) -> Option<String> {
        None
    }
}

#[test]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_host_that_prefers_the_map_answers_every_header_from_one_read() {
    let map = [
        (":method", "GET"),
        (":path", "/reports/q"),
        (":authority", "reviews"),
        ("x-user", "alice"),
        ("x-user", "mallory"),
    ]
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .to_vec();
    let host = |prefers| MapHost {
        map: map.clone(),
        map_reads: RefCell::new(0),
        name_reads: RefCell::new(0),
        prefers,
    };
    let req = MemoRequest::new(host(true));
    assert_eq!(req.method().as_deref(), Some("GET"));
    assert_eq!(req.path().as_deref(), Some("/reports/q"));
    assert_eq!(req.authority().as_deref(), Some("reviews"));
    // The first copy, as Envoy's single read gives it; every copy for a list.
    assert_eq!(req.header("x-user").as_deref(), Some("alice"));
    assert_eq!(req.header_values("x-user"), ["alice", "mallory"]);
    assert_eq!(req.header("x-absent"), None);
    assert_eq!(
        (
            *req.inner().map_reads.borrow(),
            *req.inner().name_reads.borrow()
        ),
        (1, 0)
    );
    // Writes are seen as written; an added copy makes the next unknown name read the map again.
    req.note_header(":path", Some("/rewritten"));
    req.note_header("x-user", None);
    assert_eq!(req.path().as_deref(), Some("/rewritten"));
    assert_eq!(req.header("x-user"), None);
    req.note_added("x-other");
    assert_eq!(req.header("x-other2"), None);
    assert_eq!(*req.inner().map_reads.borrow(), 2);
    assert_eq!(*req.inner().name_reads.borrow(), 0);

    // A host that reads headers in place (the native glue) is asked name by name.
    let req = MemoRequest::new(host(false));
    assert_eq!(req.method().as_deref(), Some("GET"));
    assert_eq!(req.header("x-user").as_deref(), Some("alice"));
    assert_eq!(
        (
            *req.inner().map_reads.borrow(),
            *req.inner().name_reads.borrow()
        ),
        (0, 2)
    );
}

#[test]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn every_header_list_comes_from_one_read_of_the_whole_map() {
    let map = [("x-a", "1"), ("x-b", "2"), ("X-A", "3")]
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .to_vec();
    let req = MemoRequest::new(MapHost {
        map,
        map_reads: RefCell::new(0),
        name_reads: RefCell::new(0),
        prefers: false,
    });
    assert_eq!(req.header_values("x-a"), ["1", "3"]);
    assert_eq!(req.header_values("x-b"), ["2"]);
    assert!(req.header_values("x-none").is_empty());
    // A header a stage wrote is seen as written, not as the map had it.
    req.note_header("x-b", Some("written"));
    assert_eq!(req.header_values("x-b"), ["written"]);
    assert_eq!(*req.inner().map_reads.borrow(), 1);
    assert_eq!(*req.inner().name_reads.borrow(), 0);
}

#[test]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn properties_are_read_once_and_what_a_stage_wrote_is_read_back_from_memory() {
    use crate::host::{Call, Host, MockHost};
    let host = MockHost::request("GET", "reviews", "/")
        .with_property_u64("response.code", 503)
        .with_property("response.codes", b"not this one");
    let view = MemoRequest::new(&host).remember_writes();
    assert_eq!(view.property_u64(&["response", "code"]), Some(503));
    assert_eq!(view.property_u64(&["response", "code"]), Some(503));
    assert_eq!(
        view.property(&["response", "code"]),
        Some(503u64.to_le_bytes().to_vec())
    );
    assert_eq!(view.property(&["response", "flags"]), None);
    assert_eq!(view.property(&["response", "flags"]), None);
    // A stage's mark goes to the host and is carried to the next callback's view, which
    // answers it (and an overwrite of it) without a read.
    view.set_property("weft_breaker", b"closed");
    let next = MemoRequest::with_carried(&host, view.into_carried());
    assert_eq!(
        next.property(&["weft_breaker"]).as_deref(),
        Some(&b"closed"[..])
    );
    next.set_property("weft_breaker", b"open");
    assert_eq!(
        next.property(&["weft_breaker"]).as_deref(),
        Some(&b"open"[..])
    );
    let reads: Vec<Call> = host
        .calls()
        .into_iter()
        .filter(|c| matches!(c, Call::ReadProperty(_)))
        .collect();
    assert_eq!(
        reads,
        [
            Call::ReadProperty("response.code".into()),
            Call::ReadProperty("response.flags".into()),
        ]
    );
    assert_eq!(host.count(|c| matches!(c, Call::SetProperty(..))), 2);
    // Without a reader in the suite, a write is not copied: a read asks the host.
    let plain = MemoRequest::new(&host);
    plain.set_property("weft_fault", b"delayed");
    assert_eq!(
        plain.property(&["weft_fault"]).as_deref(),
        Some(&b"delayed"[..])
    );
    assert_eq!(
        host.count(|c| *c == Call::ReadProperty("weft_fault".into())),
        1
    );
}

#[test]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_request_header_write_makes_the_route_read_again() {
    use crate::host::{Call, Host, MockHost};
    let host = MockHost::request("GET", "reviews", "/")
        .with_property("xds.cluster_name", b"reviews-v1")
        .with_property("source.address", b"10.0.0.1:5000");
    let view = MemoRequest::new(&host);
    let cluster = || view.property_string(&["xds", "cluster_name"]);
    assert_eq!(cluster().as_deref(), Some("reviews-v1"));
    assert_eq!(cluster().as_deref(), Some("reviews-v1"), "from memory");
    assert_eq!(
        view.property(&["source", "address"]).map(|a| a.len()),
        Some(13)
    );
    // Envoy matches the routes again after the write: the cluster is asked again, the
    // caller's address (not the route's) is not.
    view.set_request_header("x-weft-cluster", Some("reviews-v2"));
    host.put_property("xds.cluster_name", b"reviews-v2");
    assert_eq!(cluster().as_deref(), Some("reviews-v2"));
    view.add_request_header("x-cohort", "v2");
    host.put_property("xds.cluster_name", b"reviews-v3");
    assert_eq!(cluster().as_deref(), Some("reviews-v3"));
    assert_eq!(
        view.property(&["source", "address"]).map(|a| a.len()),
        Some(13)
    );
    let reads = |path: &str| host.count(|c| *c == Call::ReadProperty(path.into()));
    assert_eq!(reads("xds.cluster_name"), 3);
    assert_eq!(reads("source.address"), 1);
}

#[test]
fn only_what_the_route_decides_is_route_derived() {
    for key in [
        "xds.cluster_name",
        "xds.cluster_metadata",
        "xds.route_name",
        "xds.route_metadata",
        "xds.upstream_host_metadata",
        "route_name",
        "cluster_name",
    ] {
        assert!(super::memo::is_route_derived(key), "{key}");
    }
    for key in [
        "source.address",
        "xds.node",
        "xds.listener_direction",
        "weft_breaker",
        "response.code",
    ] {
        assert!(!super::memo::is_route_derived(key), "{key}");
    }
}

#[test]
fn a_property_key_matches_only_its_own_path() {
    assert!(super::memo::is_path("response.code", &["response", "code"]));
    assert!(super::memo::is_path("weft_breaker", &["weft_breaker"]));
    assert!(!super::memo::is_path(
        "response.codes",
        &["response", "code"]
    ));
    assert!(!super::memo::is_path("response.code", &["response", "cod"]));
    assert!(!super::memo::is_path("response.code", &["response"]));
    assert!(!super::memo::is_path("responsecode", &["response", "code"]));
    assert!(!super::memo::is_path("response", &["response", "code"]));
}

#[test]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn an_added_copy_sends_the_next_list_of_copies_to_the_host() {
    let memo = MemoRequest::new(Counting {
        req: Req::new("reviews", "/").with("x-user", "alice"),
        reads: RefCell::new(Vec::new()),
    });
    memo.note_header("x-user", Some("bob"));
    assert_eq!(memo.header_values("x-user"), ["bob"]);
    assert!(memo.inner().reads.borrow().is_empty());
    // As `add_request_header` leaves it: the written value is no longer every copy.
    memo.note_added("x-user");
    assert_eq!(memo.header("x-user").as_deref(), Some("bob"));
    assert_eq!(memo.header_values("x-user"), ["alice"]);
    assert_eq!(memo.inner().reads.borrow().as_slice(), ["x-user"]);
}

#[test]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn with_telemetry_inside_the_marks_stay_in_memory_and_the_decision_goes_to_the_host() {
    use crate::host::{Call, Host, MockHost};
    use crate::telemetry::{BREAKER_PROPERTY, DECISION_PROPERTY, FAULT_PROPERTY};
    let host = MockHost::request("GET", "reviews", "/");
    let view = MemoRequest::new(&host).keep_marks();
    view.set_property(BREAKER_PROPERTY, b"closed");
    view.set_property(FAULT_PROPERTY, b"delayed");
    view.set_property(DECISION_PROPERTY, b"authz deny");
    let written: Vec<Call> = host
        .calls()
        .into_iter()
        .filter(|c| matches!(c, Call::SetProperty(..)))
        .collect();
    assert_eq!(
        written,
        [Call::SetProperty(
            DECISION_PROPERTY.into(),
            b"authz deny".to_vec()
        )]
    );
    // The next callback's view (on_log) reads them from memory and keeps the rule.
    let next = MemoRequest::with_carried(&host, view.into_carried());
    assert_eq!(
        next.property(&[BREAKER_PROPERTY]).as_deref(),
        Some(&b"closed"[..])
    );
    assert_eq!(
        next.property(&[FAULT_PROPERTY]).as_deref(),
        Some(&b"delayed"[..])
    );
    next.set_property(BREAKER_PROPERTY, b"open");
    assert_eq!(host.count(|c| matches!(c, Call::SetProperty(..))), 1);
    assert_eq!(host.count(|c| matches!(c, Call::ReadProperty(..))), 0);

    // Without it (a telemetry module outside this one may read them) every mark is written.
    let plain = MemoRequest::new(&host);
    plain.set_property(BREAKER_PROPERTY, b"closed");
    assert_eq!(host.count(|c| matches!(c, Call::SetProperty(..))), 2);
}
