use super::*;
use crate::mesh::{MeshEndpoint, MeshService, StaticService};
use crate::test_support::{mk_resource, CDS, ECDS};
use std::collections::BTreeSet;

fn mk_modules() -> WasmModules {
    let mut modules = WasmModules::default();
    modules.insert("authz", b"\0asm".to_vec(), "ab".repeat(32));
    modules.insert("canary", b"\0asm".to_vec(), "cd".repeat(32));
    modules
}

fn mk_source() -> ModuleSource {
    ModuleSource {
        cluster: "weft_xds".into(),
        base_url: "http://weft-control".into(),
    }
}

fn mk_group(version: &str) -> SidecarGroup {
    SidecarGroup::new("shop", "reviews", version)
}

struct Fixture {
    filters: BTreeMap<SidecarGroup, Vec<FilterSpec>>,
    modules: WasmModules,
    source: ModuleSource,
    refresh: HashMap<SidecarGroup, u64>,
    mesh: Option<MeshIndex>,
    secrets: BTreeMap<SidecarGroup, Vec<Resource>>,
}

impl Fixture {
    fn new() -> Self {
        Self {
            filters: BTreeMap::from([
                (
                    mk_group("v1"),
                    vec![FilterSpec::new("authz", r#"{"policies":[]}"#.into())],
                ),
                (
                    mk_group("v2"),
                    vec![
                        FilterSpec::new("authz", "{}".into()),
                        FilterSpec::new("canary", "{}".into()),
                    ],
                ),
            ]),
            modules: mk_modules(),
            source: mk_source(),
            refresh: HashMap::new(),
            mesh: None,
            secrets: BTreeMap::new(),
        }
    }

    fn build(
        &self,
        groups: &[SidecarGroup],
    ) -> Result<Vec<(SidecarGroup, Snapshot)>, PublishError> {
        build_snapshots(
            groups.iter().cloned(),
            &SnapshotInputs {
                revision: 4,
                filters: &self.filters,
                modules: &self.modules,
                module_source: &self.source,
                refresh: &self.refresh,
                mesh: self.mesh.as_ref(),
                secrets: &self.secrets,
            },
        )
    }
}

fn names(snapshot: &Snapshot, type_url: &str) -> Vec<String> {
    snapshot
        .resources(type_url)
        .map(|r| r.name.clone())
        .collect()
}

#[test]
fn each_group_gets_its_own_filter_entries_at_the_revision() {
    let fixture = Fixture::new();
    let built = fixture.build(&[mk_group("v1"), mk_group("v2")]).unwrap();
    let shown: Vec<(String, u64, Vec<String>)> = built
        .iter()
        .map(|(g, s)| (g.to_string(), s.revision, names(s, ECDS)))
        .collect();
    assert_eq!(
        shown,
        [
            (
                "shop/reviews/v1".to_string(),
                4,
                vec!["weft.authz".to_string()]
            ),
            (
                "shop/reviews/v2".to_string(),
                4,
                vec!["weft.authz".to_string(), "weft.canary".to_string()]
            ),
        ]
    );
}

#[test]
fn a_group_no_policy_declares_gets_an_empty_filter_list_and_the_mesh() {
    let mut fixture = Fixture::new();
    let rds = type_url::ROUTE;
    let services = [MeshService::new("shop", "reviews", 9080, "v1")];
    fixture.mesh = Some(MeshIndex::new(&services, &BTreeSet::new(), &[], None));
    let built = fixture.build(&[mk_group("v9")]).unwrap();
    let (_, snapshot) = &built[0];
    assert!(snapshot.has_type(ECDS));
    assert!(names(snapshot, ECDS).is_empty());
    assert_eq!(names(snapshot, rds), ["edge", "outbound"]);
    assert_eq!(names(snapshot, CDS), ["reviews"]);
}

#[test]
fn secrets_go_only_to_the_groups_given_them() {
    let mut fixture = Fixture::new();
    fixture.secrets = BTreeMap::from([(
        mk_group("v1"),
        vec![mk_resource(SECRET_TYPE, "spiffe", "s")],
    )]);
    let built = fixture.build(&[mk_group("v1"), mk_group("v2")]).unwrap();
    assert_eq!(names(&built[0].1, SECRET_TYPE), ["spiffe"]);
    assert!(!built[1].1.has_type(SECRET_TYPE));
}

#[test]
fn a_refresh_changes_only_that_groups_ecds_version() {
    let mut fixture = Fixture::new();
    let before = fixture.build(&[mk_group("v1"), mk_group("v2")]).unwrap();
    fixture.refresh.insert(mk_group("v1"), 2);
    let after = fixture.build(&[mk_group("v1"), mk_group("v2")]).unwrap();
    let version = |built: &[(SidecarGroup, Snapshot)], i: usize| {
        built[i].1.get(ECDS, "weft.authz").unwrap().version.clone()
    };
    assert_ne!(version(&before, 0), version(&after, 0));
    assert_eq!(version(&before, 1), version(&after, 1));
}

#[test]
fn a_missing_module_refuses_the_whole_build_naming_group_and_filter() {
    let mut fixture = Fixture::new();
    fixture
        .filters
        .get_mut(&mk_group("v2"))
        .unwrap()
        .push(FilterSpec::new("fault", "{}".into()));
    let error = fixture
        .build(&[mk_group("v1"), mk_group("v2")])
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "group shop/reviews/v2: filter weft.fault needs module \"fault\", which is not loaded"
    );
}

#[test]
fn duplicate_resources_are_refused_as_inconsistent() {
    let mut fixture = Fixture::new();
    // A static service named like a mesh host: two clusters of one name.
    let services = [MeshService::new("shop", "reviews", 9080, "v1")];
    let statics = [StaticService {
        name: "reviews".into(),
        host: "example.com".into(),
        port: 443,
    }];
    fixture.mesh = Some(MeshIndex::new(&services, &BTreeSet::new(), &statics, None));
    let error = fixture.build(&[mk_group("v1")]).unwrap_err();
    assert!(
        matches!(
            &error,
            PublishError::Inconsistent { group, source: SnapshotError::Duplicate { name, .. } }
                if group == "shop/reviews/v1" && name == "reviews"
        ),
        "{error}"
    );
}

#[test]
fn each_snapshot_knows_the_module_hash_of_its_filter_entries() {
    let fixture = Fixture::new();
    let built = fixture.build(&[mk_group("v2")]).unwrap();
    let (_, snapshot) = &built[0];
    assert_eq!(
        *snapshot.modules_of(["weft.authz", "weft.canary", "weft.unknown"]),
        BTreeMap::from([
            ("authz".to_string(), "ab".repeat(32)),
            ("canary".to_string(), "cd".repeat(32)),
        ])
    );
    // Every filter entry of the group (what each of its sidecars subscribes to): one map,
    // shared by all of them.
    let names: Vec<String> = snapshot
        .resources(crate::resource::type_url::EXTENSION_CONFIG)
        .map(|r| r.name.clone())
        .collect();
    let first = snapshot.modules_of(names.iter().map(String::as_str));
    let again = snapshot.modules_of(names.iter().map(String::as_str));
    assert!(std::sync::Arc::ptr_eq(&first, &again), "{names:?}");
    assert_eq!(first.len(), names.len());
    assert_eq!(
        snapshot
            .modules_of(["weft.canary"])
            .keys()
            .collect::<Vec<_>>(),
        ["canary"]
    );
    // A subscription to part of the entries (not the shared map above): its modules are
    // made once per selection and shared by the streams that select alike.
    let part = std::collections::BTreeSet::from(["weft.canary".to_string()]);
    let selection = snapshot.selection(crate::resource::type_url::EXTENSION_CONFIG, Some(&part));
    let once = snapshot.modules_of_selection(&selection);
    let same = snapshot.selection(crate::resource::type_url::EXTENSION_CONFIG, Some(&part));
    assert!(std::sync::Arc::ptr_eq(&selection, &same));
    assert!(std::sync::Arc::ptr_eq(
        &once,
        &snapshot.modules_of_selection(&same)
    ));
    assert_eq!(*once, *snapshot.modules_of(["weft.canary"]));
}

#[test]
fn streams_that_subscribe_alike_share_one_selection() {
    use crate::resource::type_url;
    use std::collections::BTreeSet;
    use std::sync::Arc;
    let fixture = Fixture::new();
    let built = fixture.build(&[mk_group("v2")]).unwrap();
    let (_, snapshot) = &built[0];
    let all = snapshot.selection(type_url::EXTENSION_CONFIG, None);
    assert!(Arc::ptr_eq(
        &all,
        &snapshot.selection(type_url::EXTENSION_CONFIG, None)
    ));
    let names: Vec<&str> = all.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        snapshot
            .select(type_url::EXTENSION_CONFIG, None)
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>()
    );
    // A narrower subscription is its own selection, with its own version.
    let one: BTreeSet<String> = [names[0].to_string()].into();
    let narrow = snapshot.selection(type_url::EXTENSION_CONFIG, Some(&one));
    assert_eq!(narrow.resources.len(), 1);
    assert_ne!(narrow.version, all.version);
    assert!(Arc::ptr_eq(
        &narrow,
        &snapshot.selection(type_url::EXTENSION_CONFIG, Some(&one))
    ));
    // Past the memo's bound (a sidecar naming arbitrary resources) selections are still right.
    for i in 0..100 {
        let names: BTreeSet<String> = [format!("no-such-{i}"), names[0].to_string()].into();
        let selection = snapshot.selection(type_url::EXTENSION_CONFIG, Some(&names));
        assert_eq!(selection.resources.len(), 1);
        assert_eq!(selection.version, narrow.version);
    }
}

fn mk_endpoint(service: &str, version: &str, ip: &str) -> MeshEndpoint {
    MeshEndpoint {
        group: SidecarGroup::new("shop", service, version),
        ip: ip.into(),
        port: 15006,
    }
}

fn eds_addresses(snapshot: &Snapshot) -> Vec<String> {
    use envoy_types::pb::envoy::config::core::v3::address::Address;
    use envoy_types::pb::envoy::config::endpoint::v3::{
        lb_endpoint::HostIdentifier, ClusterLoadAssignment,
    };
    use prost::Message;
    let mut out = Vec::new();
    for resource in snapshot.resources(crate::resource::type_url::ENDPOINT) {
        let cla = ClusterLoadAssignment::decode(resource.body.value.as_slice()).unwrap();
        for e in cla.endpoints.iter().flat_map(|l| &l.lb_endpoints) {
            if let Some(HostIdentifier::Endpoint(ep)) = &e.host_identifier {
                if let Some(Address::SocketAddress(s)) =
                    ep.address.as_ref().unwrap().address.as_ref()
                {
                    out.push(format!("{}={}", resource.name, s.address));
                }
            }
        }
    }
    out
}

#[test]
fn a_service_that_declares_its_calls_gets_only_their_clusters_endpoints_and_routes() {
    let mut fixture = Fixture::new();
    let mut web = MeshService::new("shop", "web", 80, "v1");
    web.calls = Some(vec![("shop".into(), "reviews".into())]);
    let mut leaf = MeshService::new("shop", "ratings", 9080, "v1");
    leaf.calls = Some(vec![]);
    let services = [web, MeshService::new("shop", "reviews", 9080, "v1"), leaf];
    let endpoints = BTreeSet::from([
        mk_endpoint("web", "v1", "10.0.0.1"),
        mk_endpoint("reviews", "v2", "10.0.0.2"),
        mk_endpoint("ratings", "v1", "10.0.0.3"),
    ]);
    fixture.mesh = Some(MeshIndex::new(&services, &endpoints, &[], None));
    let web_v1 = SidecarGroup::new("shop", "web", "v1");
    let ratings_v1 = SidecarGroup::new("shop", "ratings", "v1");
    let built = fixture
        .build(&[web_v1, ratings_v1, mk_group("v1")])
        .unwrap();
    let by_group: BTreeMap<String, &Snapshot> =
        built.iter().map(|(g, s)| (g.to_string(), s)).collect();

    let web = by_group["shop/web/v1"];
    assert_eq!(
        names(web, CDS),
        ["outbound|9080|v2|reviews.shop", "reviews"]
    );
    assert_eq!(
        eds_addresses(web),
        ["outbound|9080|v2|reviews.shop=10.0.0.2"]
    );
    let routes = crate::mesh_routes::route_configuration("outbound", &services[1..2], &[]);
    let served = web.get(type_url::ROUTE, "outbound").unwrap();
    assert_eq!(
        *served.body,
        envoy_types::util::pack_any(routes),
        "only reviews is routed"
    );

    // A leaf calls nothing: no mesh cluster, no endpoint, and its routes only 404.
    let leaf = by_group["shop/ratings/v1"];
    assert!(names(leaf, CDS).is_empty());
    assert!(eds_addresses(leaf).is_empty());

    // A service that declares nothing may call every service, as before.
    let reviews = by_group["shop/reviews/v1"];
    assert_eq!(names(reviews, CDS).len(), 6);
    assert_eq!(
        eds_addresses(reviews).len(),
        5,
        "web and ratings: version and stable clusters; reviews v2: its version cluster"
    );
    // The same cluster in two groups is one allocation.
    let shared = |s: &Snapshot| std::sync::Arc::clone(&s.get(CDS, "reviews").unwrap().body);
    assert!(std::sync::Arc::ptr_eq(&shared(web), &shared(reviews)));
}
