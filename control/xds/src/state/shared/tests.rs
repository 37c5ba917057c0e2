use super::*;

fn mk_row(node: &str, connected: bool, since_ms: u64, ip: &str) -> SharedSidecar {
    SharedSidecar {
        node_id: node.into(),
        namespace: "default".into(),
        service: "api".into(),
        version: "v1".into(),
        inbound_address: Some(format!("{ip}:15006")),
        connected,
        protocol: "sotw".into(),
        synced_revision: Some(3),
        modules: BTreeMap::new(),
        current_nack: None,
        nack_count: 0,
        endpoint: Some((ip.into(), 15006)),
        since_ms,
        replica: String::new(),
    }
}

fn mk_rows(rows: &[(&str, SharedSidecar)]) -> BTreeMap<String, Vec<u8>> {
    rows.iter()
        .map(|(replica, row)| {
            let name = format!("{replica}/{}", row_name(&row.key()));
            (name, serde_json::to_vec(row).unwrap())
        })
        .collect()
}

fn live(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

#[test]
fn of_two_rows_of_a_sidecar_that_moved_the_connected_newest_is_believed() {
    let rows = mk_rows(&[
        ("r2", mk_row("api-0", true, 100, "10.0.0.5")),
        ("r3", mk_row("api-0", true, 200, "10.0.0.5")),
    ]);
    let view = remote_view(
        Some("r1"),
        &rows,
        &live(&["r1", "r2", "r3"]),
        &mut ParsedRows::default(),
    );
    assert_eq!(view.len(), 1);
    assert_eq!(view.values().next().unwrap().replica, "r3");
    // The newer row is disconnected: the older, connected one stands.
    let rows = mk_rows(&[
        ("r2", mk_row("api-0", true, 100, "10.0.0.5")),
        ("r3", mk_row("api-0", false, 200, "10.0.0.5")),
    ]);
    let view = remote_view(
        Some("r1"),
        &rows,
        &live(&["r1", "r2", "r3"]),
        &mut ParsedRows::default(),
    );
    assert_eq!(view.values().next().unwrap().replica, "r2");
}

#[test]
fn a_gone_replicas_sidecars_are_disconnected_but_keep_their_endpoints() {
    let rows = mk_rows(&[("r2", mk_row("api-0", true, 100, "10.0.0.5"))]);
    let view = remote_view(
        Some("r1"),
        &rows,
        &live(&["r1", "r3"]),
        &mut ParsedRows::default(),
    );
    let row = view.values().next().unwrap();
    assert!(!row.connected);
    assert_eq!(row.endpoint().unwrap().ip, "10.0.0.5");
}

#[test]
fn own_rows_and_rows_that_do_not_parse_are_skipped() {
    let mut rows = mk_rows(&[("r1", mk_row("web-0", true, 1, "10.0.0.2"))]);
    rows.insert("r2/default/api/x".into(), b"{not json".to_vec());
    rows.insert("no-slash".into(), b"{}".to_vec());
    assert!(remote_view(
        Some("r1"),
        &rows,
        &live(&["r1", "r2"]),
        &mut ParsedRows::default()
    )
    .is_empty());
}

#[test]
fn row_names_cannot_make_another_path() {
    let key = NodeKey {
        id: "../r9/x%2F".into(),
        namespace: "default".into(),
        service: "a/b".into(),
    };
    let name = row_name(&key);
    assert_eq!(name, "default/a%2Fb/..%2Fr9%2Fx%252F");
    assert_eq!(name.matches('/').count(), 2);
}

#[test]
fn a_remote_sidecar_stands_in_for_a_local_one_only_when_it_moved() {
    let remote_row = |connected| {
        let mut row = mk_row("api-0", connected, 5, "10.0.0.5");
        row.replica = "r2".into();
        row
    };
    let local_status = |connected| {
        let mut status = remote_row(connected).status();
        status.replica = Some("r1".into());
        status
    };
    let key = remote_row(true).key();
    let remote = BTreeMap::from([(key.clone(), remote_row(true))]);
    // Disconnected here, connected there: it moved.
    let list = with_remote(
        BTreeMap::from([(key.clone(), local_status(false))]),
        &remote,
    );
    assert_eq!(list[0].replica.as_deref(), Some("r2"));
    // Connected here: this server's own status stands.
    let list = with_remote(BTreeMap::from([(key.clone(), local_status(true))]), &remote);
    assert_eq!(list[0].replica.as_deref(), Some("r1"));
    // Not here at all: listed from the row.
    let list = with_remote(BTreeMap::new(), &remote);
    assert_eq!((list.len(), list[0].connected), (1, true));
}

#[test]
fn rows_are_parsed_again_only_when_their_bytes_change() {
    let mut parsed = ParsedRows::default();
    let all = live(&["r1", "r2"]);
    let mut rows = mk_rows(&[
        ("r2", mk_row("api-0", true, 100, "10.0.0.5")),
        ("r2", mk_row("api-1", true, 100, "10.0.0.6")),
    ]);
    assert_eq!(remote_view(Some("r1"), &rows, &all, &mut parsed).len(), 2);
    // A held row whose bytes did not move is not parsed again: corrupt what is held to see it.
    let api0 = format!("r2/{}", row_name(&mk_row("api-0", true, 0, "").key()));
    parsed.0.get_mut(&api0).unwrap().1.as_mut().unwrap().version = "held".into();
    let view = remote_view(Some("r1"), &rows, &all, &mut parsed);
    assert_eq!(view.values().filter(|r| r.version == "held").count(), 1);
    // A changed row is parsed again; a row gone is forgotten.
    rows.insert(
        api0.clone(),
        serde_json::to_vec(&mk_row("api-0", true, 300, "10.0.0.7")).unwrap(),
    );
    let api1 = format!("r2/{}", row_name(&mk_row("api-1", true, 0, "").key()));
    rows.remove(&api1);
    let view = remote_view(Some("r1"), &rows, &all, &mut parsed);
    assert_eq!(view.len(), 1);
    let row = view.values().next().unwrap();
    assert_eq!((row.version.as_str(), row.since_ms), ("v1", 300));
    assert_eq!(parsed.0.len(), 1);
}
