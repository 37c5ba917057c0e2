use super::*;
use weft_filter_core::suite::Suite;
use weft_policy::{load, Limits};
use weft_xds::{SUITE_INBOUND, SUITE_OUTBOUND};

const DOCS: &str = "apiVersion: weft.dev/v1alpha1\nkind: Service\nmetadata: {name: reviews, namespace: shop}\nspec: {port: 9080, versions: [v1, v2]}\n---\napiVersion: weft.dev/v1alpha1\nkind: Service\nmetadata: {name: ratings, namespace: shop}\nspec: {port: 8080, host: ratings.example, versions: [v1], stableVersion: v1}\n---\napiVersion: weft.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: shop}\nspec:\n  target: {service: reviews, versions: [v2]}\n  rules: [{to: {methods: [GET]}}]\n";

fn mk_snapshot(version: u64, yaml: &str) -> Snapshot {
    let documents = PolicySet::from_documents(load(yaml.as_bytes(), &Limits::default()).unwrap());
    Snapshot {
        version,
        compiled: weft_compile::compile(&documents).unwrap(),
        documents,
    }
}

fn mk_keys() -> GroupKeys {
    GroupKeys::new(b"secret".to_vec())
}

const SEPARATE: Mode = Mode {
    layout: Layout::Separate,
    telemetry: true,
};

fn shape(specs: &[FilterSpec]) -> Vec<(&str, &str, FailureMode)> {
    specs
        .iter()
        .map(|s| (s.name.as_str(), s.module.as_str(), s.failure))
        .collect()
}

#[test]
fn every_compiled_group_gets_its_entries_in_chain_order() {
    let out = sidecar_resources(&mk_snapshot(7, DOCS), &mk_keys(), SEPARATE);
    assert_eq!(out.revision, 7);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let groups: Vec<String> = out.filters.keys().map(ToString::to_string).collect();
    assert_eq!(
        groups,
        ["shop/ratings/v1", "shop/reviews/v1", "shop/reviews/v2"]
    );
    let v2 = &out.filters[&SidecarGroup::new("shop", "reviews", "v2")];
    use FailureMode::{FailClosed, FailOpen};
    assert_eq!(
        shape(v2),
        [
            ("weft.authz", "authz", FailClosed),
            ("weft.canary", "canary", FailOpen),
            ("weft.fault", "fault", FailOpen),
            ("weft.breaker", "breaker", FailOpen),
            ("weft.telemetry.inbound", "telemetry", FailOpen),
            ("weft.telemetry.outbound", "telemetry", FailOpen),
        ]
    );
}

#[test]
fn entries_carry_the_compiled_json_and_the_groups_own_telemetry_key() {
    let snapshot = mk_snapshot(3, DOCS);
    let out = sidecar_resources(&snapshot, &mk_keys(), SEPARATE);
    let id = snapshot
        .compiled
        .keys()
        .find(|id| id.to_string() == "shop/reviews/v2")
        .unwrap();
    let v2 = &out.filters[&SidecarGroup::new("shop", "reviews", "v2")];
    assert_eq!(
        v2[0].configuration,
        serde_json::to_string(&snapshot.compiled[id].authz).unwrap()
    );
    let authz: serde_json::Value = serde_json::from_str(&v2[0].configuration).unwrap();
    assert_eq!(authz["policies"].as_array().map(Vec::len), Some(1));
    let v1 = &out.filters[&SidecarGroup::new("shop", "reviews", "v1")];
    let v1_authz: serde_json::Value = serde_json::from_str(&v1[0].configuration).unwrap();
    assert_eq!(v1_authz["policies"].as_array().map(Vec::len), Some(0));
    let inbound: TelemetryConfig = serde_json::from_str(&v2[4].configuration).unwrap();
    assert_eq!(
        (inbound.direction, inbound.version.as_str(), inbound.key),
        (
            Direction::Inbound,
            "v2",
            mk_keys().key_hex("shop", "reviews", "v2")
        )
    );
    assert_ne!(
        mk_keys().key_hex("shop", "reviews", "v2"),
        mk_keys().key_hex("shop", "reviews", "v1")
    );
}

#[test]
fn without_the_telemetry_module_no_telemetry_entries() {
    let mode = Mode {
        layout: Layout::Separate,
        telemetry: false,
    };
    let out = sidecar_resources(&mk_snapshot(1, DOCS), &mk_keys(), mode);
    for specs in out.filters.values() {
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            ["weft.authz", "weft.canary", "weft.fault", "weft.breaker"]
        );
    }
}

#[test]
fn suite_layout_gives_two_entries_with_the_groups_telemetry() {
    let mode = Mode {
        layout: Layout::Suite,
        telemetry: false,
    };
    let out = sidecar_resources(&mk_snapshot(1, DOCS), &mk_keys(), mode);
    let specs = &out.filters[&SidecarGroup::new("shop", "reviews", "v2")];
    assert_eq!(
        shape(specs),
        [
            (SUITE_INBOUND, "suite", FailureMode::FailClosed),
            (SUITE_OUTBOUND, "suite", FailureMode::FailOpen),
        ]
    );
    let inbound = Suite::from_json(specs[0].configuration.as_bytes()).unwrap();
    assert_eq!(inbound.enabled(), ["telemetry", "authz"]);
    let t = inbound.telemetry.unwrap();
    assert_eq!(
        (t.direction, t.service.as_str(), t.key),
        (
            Direction::Inbound,
            "reviews",
            mk_keys().key_hex("shop", "reviews", "v2")
        )
    );
    let outbound = Suite::from_json(specs[1].configuration.as_bytes()).unwrap();
    assert_eq!(
        outbound.enabled(),
        ["telemetry", "canary", "fault", "breaker"]
    );
}

#[test]
fn services_default_host_to_name_and_stable_to_first_version() {
    let out = sidecar_resources(&mk_snapshot(1, DOCS), &mk_keys(), SEPARATE);
    let services: Vec<(&str, &str, u16, &str)> = out
        .services
        .iter()
        .map(|s| {
            (
                s.name.as_str(),
                s.host.as_str(),
                s.port,
                s.stable_version.as_str(),
            )
        })
        .collect();
    assert_eq!(
        services,
        [
            ("ratings", "ratings.example", 8080, "v1"),
            ("reviews", "reviews", 9080, "v1"),
        ]
    );
}

#[test]
fn the_group_view_is_the_entries_verbatim() {
    let out = sidecar_resources(&mk_snapshot(9, DOCS), &mk_keys(), SEPARATE);
    let group = SidecarGroup::new("shop", "reviews", "v2");
    let view = out.group_view(&group).unwrap();
    assert_eq!(view.revision, 9);
    let specs = &out.filters[&group];
    assert_eq!(view.filters.len(), specs.len());
    for (shown, sent) in view.filters.iter().zip(specs) {
        assert_eq!(
            (
                &shown.name,
                &shown.module,
                shown.failure,
                &shown.configuration
            ),
            (&sent.name, &sent.module, sent.failure, &sent.configuration)
        );
    }
    assert!(out
        .group_view(&SidecarGroup::new("shop", "reviews", "v9"))
        .is_none());
}

#[test]
fn an_empty_snapshot_translates_to_nothing() {
    let out = sidecar_resources(
        &Snapshot {
            version: 0,
            documents: PolicySet::new(),
            compiled: Default::default(),
        },
        &mk_keys(),
        SEPARATE,
    );
    assert_eq!(out, SidecarResources::default());
}

#[test]
fn both_layouts_serve_either_bootstrap_the_entries_it_names() {
    let mode = Mode {
        layout: Layout::Both,
        telemetry: true,
    };
    let out = sidecar_resources(&mk_snapshot(1, DOCS), &mk_keys(), mode);
    let specs = &out.filters[&SidecarGroup::new("shop", "reviews", "v2")];
    let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            SUITE_INBOUND,
            SUITE_OUTBOUND,
            "weft.authz",
            "weft.canary",
            "weft.fault",
            "weft.breaker",
            "weft.telemetry.inbound",
            "weft.telemetry.outbound",
        ]
    );
    // Each layout's entries are exactly what that layout alone serves.
    for layout in [Layout::Suite, Layout::Separate] {
        let alone = sidecar_resources(
            &mk_snapshot(1, DOCS),
            &mk_keys(),
            Mode {
                layout,
                telemetry: true,
            },
        );
        for spec in &alone.filters[&SidecarGroup::new("shop", "reviews", "v2")] {
            assert!(specs.contains(spec), "{layout:?}: {}", spec.name);
        }
    }
    assert!(out.errors.is_empty(), "{:?}", out.errors);
}
