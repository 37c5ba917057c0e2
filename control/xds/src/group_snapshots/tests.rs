use super::*;
use crate::test_support::{mk_resource, CDS, ECDS};

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
    mesh: Vec<(String, Vec<Resource>)>,
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
            mesh: Vec::new(),
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
                mesh: &self.mesh,
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
    fixture.mesh = vec![(rds.to_string(), vec![mk_resource(rds, "mesh", "r")])];
    let built = fixture.build(&[mk_group("v9")]).unwrap();
    let (_, snapshot) = &built[0];
    assert!(snapshot.has_type(ECDS));
    assert!(names(snapshot, ECDS).is_empty());
    assert_eq!(names(snapshot, rds), ["mesh"]);
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
    fixture.mesh = vec![(
        CDS.to_string(),
        vec![
            mk_resource(CDS, "reviews", "a"),
            mk_resource(CDS, "reviews", "b"),
        ],
    )];
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
