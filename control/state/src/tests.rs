use super::*;
use weft_store::MemoryStore;

const SERVICES: &str = "apiVersion: weft.dev/v1alpha1\nkind: Service\nmetadata: {name: reviews, namespace: shop}\nspec: {port: 9080, versions: [v1, v2]}\n";

fn mk_policy(name: &str, method: &str) -> String {
    format!("apiVersion: weft.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  target: {{service: reviews}}\n  rules: [{{to: {{methods: [{method}]}}}}]\n")
}

fn mk_plane() -> ControlPlane {
    ControlPlane::open(Arc::new(MemoryStore::new()), Limits::default()).unwrap()
}

#[test]
fn apply_versions_publishes_and_skips_no_op_applies() {
    let cp = mk_plane();
    let mut rx = cp.subscribe();
    let out = cp.apply(SERVICES.as_bytes(), "alice", false, None).unwrap();
    assert_eq!((out.version, out.created), (1, true));
    assert_eq!(out.sidecars.len(), 2);
    assert!(rx.has_changed().unwrap());
    assert_eq!(rx.borrow_and_update().version, 1);
    let again = cp.apply(SERVICES.as_bytes(), "alice", false, None).unwrap();
    assert_eq!((again.version, again.created), (1, false));
    assert!(!rx.has_changed().unwrap());
}

#[test]
fn an_invalid_multi_document_apply_changes_nothing() {
    let cp = mk_plane();
    cp.apply(SERVICES.as_bytes(), "a", false, None).unwrap();
    let bad = format!("{}---\n{}", mk_policy("ok", "GET"), mk_policy("bad", "get"));
    let Err(StateError::Invalid(errs)) = cp.apply(bad.as_bytes(), "a", false, None) else {
        panic!("expected invalid")
    };
    assert_eq!(errs[0].document, "AuthorizationPolicy/shop/bad (#2)");
    assert_eq!(cp.snapshot().version, 1);
    assert_eq!(cp.history().unwrap().len(), 1);
}

#[test]
fn delete_rollback_and_conflicts() {
    let cp = mk_plane();
    cp.apply(SERVICES.as_bytes(), "a", false, None).unwrap();
    cp.apply(mk_policy("p", "GET").as_bytes(), "a", false, None)
        .unwrap();
    let key = DocKey {
        kind: Kind::AuthorizationPolicy,
        namespace: "shop".into(),
        name: "p".into(),
    };
    // The service is still referenced by the policy.
    let svc = DocKey {
        kind: Kind::Service,
        namespace: "shop".into(),
        name: "reviews".into(),
    };
    let Err(StateError::Invalid(errs)) = cp.delete(&svc, "a", false) else {
        panic!("expected invalid")
    };
    assert_eq!(errs[0].document, "AuthorizationPolicy/shop/p (stored)");
    assert_eq!(cp.delete(&key, "bob", false).unwrap().version, 3);
    assert!(matches!(
        cp.delete(&key, "bob", false),
        Err(StateError::NotFound(_))
    ));
    let back = cp.rollback(2, "carol", false).unwrap();
    assert_eq!(back.version, 4);
    assert_eq!(back.documents.added, ["AuthorizationPolicy/shop/p"]);
    assert_eq!(
        cp.record(4).unwrap().documents,
        cp.record(2).unwrap().documents
    );
    assert!(matches!(
        cp.rollback(99, "c", false),
        Err(StateError::NotFound(_))
    ));
    assert!(matches!(
        cp.apply(mk_policy("q", "PUT").as_bytes(), "a", false, Some(1)),
        Err(StateError::Conflict(_))
    ));
}

#[test]
fn dry_run_and_diff_change_nothing() {
    let cp = mk_plane();
    let out = cp.diff(SERVICES.as_bytes()).unwrap();
    assert_eq!(
        (out.version, out.created, out.sidecars.len()),
        (0, false, 2)
    );
    assert_eq!(cp.snapshot().version, 0);
    assert!(
        cp.validate(mk_policy("p", "GET").as_bytes()).is_err(),
        "unknown service before the Service exists"
    );
}

#[test]
fn reopening_a_store_restores_the_latest_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        ControlPlane::open(
            Arc::new(weft_store::FileStore::open(dir.path()).unwrap()),
            Limits::default(),
        )
        .unwrap()
    };
    let first = {
        let cp = open();
        cp.apply(SERVICES.as_bytes(), "a", false, None).unwrap();
        cp.apply(mk_policy("p", "GET").as_bytes(), "a", false, None)
            .unwrap();
        cp.snapshot()
    };
    assert_eq!(open().snapshot(), first);
}

#[test]
fn guards_see_every_touched_document_and_refuse_before_anything_is_stored() {
    let cp = mk_plane();
    cp.apply(SERVICES.as_bytes(), "a", false, None).unwrap();
    cp.apply(mk_policy("p", "GET").as_bytes(), "a", false, None)
        .unwrap();
    let seen = std::sync::Mutex::new(Vec::new());
    let refuse_p = |keys: &[DocKey]| {
        seen.lock()
            .unwrap()
            .push(keys.iter().map(ToString::to_string).collect::<Vec<_>>());
        match keys.iter().find(|k| k.name == "p") {
            Some(k) => Err(format!("document {k}: no")),
            None => Ok(()),
        }
    };
    // An apply: every document of the input, refused whole.
    let two = format!("{}---\n{}", mk_policy("q", "GET"), mk_policy("p", "POST"));
    let refused = cp.apply_guarded(two.as_bytes(), "a", false, None, &refuse_p);
    assert!(
        matches!(&refused, Err(StateError::Forbidden(m)) if m.contains("AuthorizationPolicy/shop/p"))
    );
    assert_eq!(cp.snapshot().version, 2);
    // A delete: the document.
    let key = DocKey {
        kind: Kind::AuthorizationPolicy,
        namespace: "shop".into(),
        name: "p".into(),
    };
    assert!(matches!(
        cp.delete_guarded(&key, "a", false, &refuse_p),
        Err(StateError::Forbidden(_))
    ));
    // A rollback: what it would change (version 1 lacks p: removing it is touching it).
    assert!(matches!(
        cp.rollback_guarded(1, "a", false, &refuse_p),
        Err(StateError::Forbidden(_))
    ));
    assert_eq!(cp.snapshot().version, 2);
    let seen = seen.into_inner().unwrap();
    assert_eq!(
        seen,
        vec![
            vec![
                "AuthorizationPolicy/shop/q".to_string(),
                "AuthorizationPolicy/shop/p".into()
            ],
            vec!["AuthorizationPolicy/shop/p".to_string()],
            vec!["AuthorizationPolicy/shop/p".to_string()],
        ]
    );
    // A rollback that changes nothing touches nothing.
    let allow_all = |_: &[DocKey]| Ok(());
    let out = cp.rollback_guarded(2, "a", false, &allow_all).unwrap();
    assert!(!out.created);
}

/// A store other "replicas" append to as well: [`MemoryStore`] shared, reporting its head.
struct Shared(Arc<MemoryStore>);

impl Store for Shared {
    fn append(&self, r: NewRecord) -> Result<Record, StoreError> {
        self.0.append(r)
    }
    fn latest(&self) -> Result<Option<Record>, StoreError> {
        self.0.latest()
    }
    fn get(&self, v: u64) -> Result<Option<Record>, StoreError> {
        self.0.get(v)
    }
    fn history(&self) -> Result<Vec<RecordSummary>, StoreError> {
        self.0.history()
    }
    fn head(&self) -> Result<Option<u64>, StoreError> {
        Ok(Some(self.0.latest()?.map_or(0, |r| r.version)))
    }
}

fn replicas() -> (ControlPlane, ControlPlane) {
    let shared = Arc::new(MemoryStore::new());
    let open =
        || ControlPlane::open(Arc::new(Shared(Arc::clone(&shared))), Limits::default()).unwrap();
    (open(), open())
}

#[test]
fn a_replica_catches_up_with_versions_another_one_appended() {
    let (one, two) = replicas();
    let mut rx = two.subscribe();
    one.apply(SERVICES.as_bytes(), "a", false, None).unwrap();
    assert_eq!(two.snapshot().version, 0, "not followed yet");
    assert_eq!(two.refresh().unwrap(), 1);
    assert!(rx.has_changed().unwrap());
    assert_eq!(rx.borrow_and_update().compiled, one.snapshot().compiled);
    // A change through a replica that has not refreshed is planned on the latest version,
    // not refused: it catches up under the writer lock first.
    one.apply(mk_policy("p1", "GET").as_bytes(), "a", false, None)
        .unwrap();
    let out = two
        .apply(mk_policy("p2", "GET").as_bytes(), "b", false, None)
        .unwrap();
    assert_eq!((out.version, out.created), (3, true));
    assert_eq!(two.snapshot().documents.len(), 3, "p1 kept");
    assert_eq!(one.refresh().unwrap(), 3);
    assert_eq!(one.snapshot().documents, two.snapshot().documents);
    // Nothing new: refresh publishes nothing.
    assert_eq!(two.refresh().unwrap(), 3);
    assert!(rx.has_changed().unwrap());
    rx.borrow_and_update();
    two.refresh().unwrap();
    assert!(!rx.has_changed().unwrap());
}

#[test]
fn a_change_expecting_a_version_another_replica_moved_is_a_conflict_naming_both() {
    let (one, two) = replicas();
    one.apply(SERVICES.as_bytes(), "a", false, None).unwrap();
    let Err(StateError::Conflict(why)) =
        two.apply(mk_policy("p", "GET").as_bytes(), "b", false, Some(0))
    else {
        panic!("expected a conflict")
    };
    assert!(
        why.contains("expected version 0, current version is 1"),
        "{why}"
    );
    assert_eq!(one.history().unwrap().len(), 1);
}

#[test]
fn a_local_store_is_never_re_read() {
    // The file and memory stores report no head: refresh is a no-op.
    let cp = mk_plane();
    assert_eq!(cp.refresh().unwrap(), 0);
    cp.apply(SERVICES.as_bytes(), "a", false, None).unwrap();
    assert_eq!(cp.refresh().unwrap(), 1);
    assert!(cp.health().is_ok());
}

#[test]
fn a_relative_fault_expiry_is_stored_as_the_time_of_the_apply_plus_it() {
    let cp = mk_plane();
    cp.apply(SERVICES.as_bytes(), "a", false, None).unwrap();
    let fault = "apiVersion: weft.dev/v1alpha1\nkind: FaultInjection\nmetadata: {name: f, namespace: shop}\nspec:\n  target: {service: reviews}\n  expiry: 10m\n  abort: {httpStatus: 503, percent: 5}\n";
    let before = weft_policy::expiry::now_unix_ms();
    cp.apply(fault.as_bytes(), "a", false, None).unwrap();
    let after = weft_policy::expiry::now_unix_ms();
    let key = DocKey {
        kind: Kind::FaultInjection,
        namespace: "shop".into(),
        name: "f".into(),
    };
    let weft_policy::Spec::FaultInjection(spec) = cp.get(&key).unwrap().spec else {
        panic!("not a FaultInjection")
    };
    let stored = spec.expiry.unwrap();
    let at = weft_policy::expiry::parse_rfc3339(&stored).unwrap();
    // Millisecond precision: within the apply's own window.
    assert!(before + 600_000 <= at && at <= after + 600_000, "{stored}");
    // The stored (absolute) form is what history keeps and a restart reads.
    let record = cp.record(2).unwrap();
    assert_eq!(record.documents.get(&key), Some(&cp.get(&key).unwrap()));
    let snapshot = cp.snapshot();
    let fault_filter = &snapshot.compiled.values().next().unwrap().fault;
    assert_eq!(fault_filter.policies[0].expires_at_unix_ms, Some(at));
}
