use super::*;
use sha2::Digest;
use std::io::Write;
use weft_policy::{load, Limits};

fn mk_set(n: usize) -> PolicySet {
    let yaml = format!("apiVersion: weft.dev/v1alpha1\nkind: Service\nmetadata: {{name: svc{n}}}\nspec: {{port: 80, versions: [v1]}}\n");
    PolicySet::from_documents(load(yaml.as_bytes(), &Limits::default()).unwrap())
}

fn mk_new(parent: u64, n: usize) -> NewRecord {
    NewRecord {
        parent,
        author: format!("alice{n}"),
        operation: Operation::Apply,
        diff: DocDiff::default(),
        documents: mk_set(n),
    }
}

fn exercise(store: &dyn Store) {
    assert!(store.latest().unwrap().is_none());
    for i in 0..3 {
        let r = store.append(mk_new(i as u64, i)).unwrap();
        assert_eq!(r.version, i as u64 + 1);
    }
    assert!(matches!(
        store.append(mk_new(1, 9)),
        Err(StoreError::Conflict {
            parent: 1,
            latest: 3
        })
    ));
    assert_eq!(store.get(2).unwrap().unwrap().documents, mk_set(1));
    assert!(store.get(0).unwrap().is_none() && store.get(4).unwrap().is_none());
    let history = store.history().unwrap();
    assert_eq!(
        history.iter().map(|h| h.version).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(history[2].author, "alice2");
}

#[test]
fn memory_store_contract() {
    exercise(&MemoryStore::new());
}

#[test]
fn file_store_contract_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = FileStore::open(dir.path()).unwrap();
        exercise(&store);
        // A second process on the same directory is refused.
        assert!(matches!(
            FileStore::open(dir.path()),
            Err(StoreError::Locked(_))
        ));
    }
    let store = FileStore::open(dir.path()).unwrap();
    assert_eq!(store.recovery(), None);
    assert_eq!(store.latest().unwrap().unwrap().version, 3);
    assert_eq!(store.get(3).unwrap().unwrap().documents, mk_set(2));
}

#[test]
fn torn_tails_are_truncated_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("policy.log");
    {
        let store = FileStore::open(dir.path()).unwrap();
        store.append(mk_new(0, 0)).unwrap();
        store.append(mk_new(1, 1)).unwrap();
    }
    let good = std::fs::read(&log).unwrap();
    let first_len =
        HEADER_LEN_FOR_TESTS + u32::from_le_bytes([good[0], good[1], good[2], good[3]]) as usize;
    // Every cut of the second frame, and a flipped payload byte, lose only version 2.
    let mut cuts: Vec<Vec<u8>> = (first_len..good.len())
        .step_by(7)
        .map(|n| good[..n].to_vec())
        .collect();
    let mut flipped = good.clone();
    let last = flipped.len() - 2;
    flipped[last] ^= 0x55;
    cuts.push(flipped);
    for bytes in cuts {
        std::fs::write(&log, &bytes).unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        let dropped = (bytes.len() - first_len) as u64;
        if dropped > 0 {
            assert_eq!(
                store.recovery().map(|r| (r.offset, r.dropped_bytes)),
                Some((first_len as u64, dropped))
            );
        }
        assert_eq!(store.latest().unwrap().unwrap().version, 1);
        assert_eq!(store.append(mk_new(1, 5)).unwrap().version, 2);
        drop(store);
        let store = FileStore::open(dir.path()).unwrap();
        assert_eq!(store.recovery(), None);
        assert_eq!(store.latest().unwrap().unwrap().documents, mk_set(5));
    }
}

#[test]
fn a_gap_in_versions_is_corruption_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = FileStore::open(dir.path()).unwrap();
        store.append(mk_new(0, 0)).unwrap();
    }
    let log = dir.path().join("policy.log");
    let bytes = std::fs::read(&log).unwrap();
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    f.write_all(&bytes).unwrap(); // version 1 again
    drop(f);
    assert!(matches!(
        FileStore::open(dir.path()),
        Err(StoreError::CorruptRecord {
            index: 1,
            version: 2,
            ..
        })
    ));
}

const HEADER_LEN_FOR_TESTS: usize = 36;

/// Three records; returns the log's bytes and each frame's offset.
fn three_records(dir: &std::path::Path) -> (Vec<u8>, Vec<u64>) {
    {
        let store = FileStore::open(dir).unwrap();
        for i in 0..3 {
            store.append(mk_new(i as u64, i)).unwrap();
        }
    }
    let report = verify(dir).unwrap();
    assert!(report.ok(), "{report:?}");
    let offsets = report.frames.iter().map(|f| f.offset).collect();
    (std::fs::read(dir.join("policy.log")).unwrap(), offsets)
}

#[test]
fn damage_in_the_middle_refuses_the_open_and_names_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let (mut bytes, offsets) = three_records(dir.path());
    // A flipped byte inside the second record's payload; the third is intact.
    let at = offsets[1] as usize + HEADER_LEN_FOR_TESTS + 5;
    bytes[at] ^= 0x20;
    std::fs::write(dir.path().join("policy.log"), &bytes).unwrap();
    let err = FileStore::open(dir.path()).unwrap_err();
    let StoreError::CorruptRecord {
        index,
        offset,
        version,
        valid_after,
        ..
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(
        (*index, *offset, *version, *valid_after),
        (1, offsets[1], 2, Some(offsets[2]))
    );
    let message = err.to_string();
    assert!(
        message.contains("record #1 (version 2)")
            && message.contains("checksum mismatch")
            && message.contains(&format!("--truncate-at {}", offsets[1])),
        "{message}"
    );
    // Nothing was dropped.
    assert_eq!(std::fs::read(dir.path().join("policy.log")).unwrap(), bytes);

    let report = verify(dir.path()).unwrap();
    assert_eq!(report.frames.len(), 1);
    assert_eq!(report.bad.as_ref().map(|b| b.offset), Some(offsets[1]));
    assert_eq!(
        report
            .after_bad
            .iter()
            .map(|f| (f.offset, f.last_version))
            .collect::<Vec<_>>(),
        [(offsets[2], 3)]
    );

    // A repair names what it loses; only frame boundaries are accepted.
    let refused = repair(dir.path(), offsets[1] + 1, false).unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("not the start of a readable record"),
        "{refused}"
    );
    let plan = repair(dir.path(), offsets[1], true).unwrap();
    assert_eq!(plan.last_kept_version, 1);
    assert_eq!(
        plan.lost.iter().map(|f| f.last_version).collect::<Vec<_>>(),
        [3]
    );
    assert_eq!(std::fs::read(dir.path().join("policy.log")).unwrap(), bytes);
    let done = repair(dir.path(), offsets[1], false).unwrap();
    assert_eq!(
        std::fs::read(&done.saved_to).unwrap(),
        &bytes[offsets[1] as usize..]
    );
    let store = FileStore::open(dir.path()).unwrap();
    assert_eq!(store.recovery(), None);
    assert_eq!(store.latest().unwrap().unwrap().version, 1);
    assert_eq!(store.append(mk_new(1, 7)).unwrap().version, 2);
    // The server holds the lock: no repair under it.
    assert!(matches!(
        repair(dir.path(), 0, true),
        Err(StoreError::Locked(_))
    ));
}

#[test]
fn a_whole_final_record_that_does_not_decode_is_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (mut bytes, _) = three_records(dir.path());
    // A well-formed frame (matching checksum) whose payload is not a record.
    let payload = b"{\"version\": \"three\"}";
    bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&sha2::Sha256::digest(payload));
    bytes.extend_from_slice(payload);
    std::fs::write(dir.path().join("policy.log"), &bytes).unwrap();
    let err = FileStore::open(dir.path()).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::CorruptRecord {
                index: 3,
                version: 4,
                valid_after: None,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("written whole"), "{err}");
}

#[test]
fn compaction_keeps_every_version_and_shrinks_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let policy = Compaction {
        after_records: 4,
        after_bytes: u64::MAX,
    };
    let mut expected = Vec::new();
    let mut uncompacted = 0u64;
    {
        let store = FileStore::open_with(dir.path(), policy).unwrap();
        for i in 0..6 {
            // Versions alternate between two sets: the snapshot stores each document once.
            let r = store.append(mk_new(i as u64, i % 2)).unwrap();
            expected.push(r);
        }
        uncompacted += expected
            .iter()
            .map(|r| (serde_json::to_vec(r).unwrap().len() + HEADER_LEN_FOR_TESTS) as u64)
            .sum::<u64>();
        // Auto-compacted after version 4, then two records appended.
        let report = verify(dir.path()).unwrap();
        let kinds: Vec<_> = report
            .frames
            .iter()
            .map(|f| (f.kind, f.first_version, f.last_version))
            .collect();
        assert_eq!(
            kinds,
            [("snapshot", 1, 4), ("record", 5, 5), ("record", 6, 6)]
        );
        let c = store.compact().unwrap();
        assert_eq!((c.versions, c.documents), (6, 2));
        assert!(
            c.bytes_after < c.bytes_before && c.bytes_after < uncompacted,
            "{c:?}"
        );
    }
    let store = FileStore::open_with(dir.path(), policy).unwrap();
    assert_eq!(store.recovery(), None);
    for r in &expected {
        assert_eq!(store.get(r.version).unwrap().as_ref(), Some(r));
    }
    assert_eq!(
        store.history().unwrap(),
        expected.iter().map(RecordSummary::from).collect::<Vec<_>>()
    );
    assert_eq!(store.append(mk_new(6, 3)).unwrap().version, 7);
    drop(store);
    // A torn tail after a snapshot is still only a torn tail.
    let log = dir.path().join("policy.log");
    let mut bytes = std::fs::read(&log).unwrap();
    bytes.truncate(bytes.len() - 3);
    std::fs::write(&log, &bytes).unwrap();
    let store = FileStore::open_with(dir.path(), policy).unwrap();
    assert!(store.recovery().is_some());
    assert_eq!(store.latest().unwrap().unwrap().version, 6);
}

#[test]
fn the_data_dir_is_0700_and_its_files_0600() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("data");
    {
        let store = FileStore::open(&dir).unwrap();
        assert!(store.warnings().is_empty(), "{:?}", store.warnings());
        store.append(mk_new(0, 0)).unwrap();
        store.compact().unwrap();
    }
    assert_eq!(mode(&dir), 0o700);
    for f in ["policy.log", "LOCK"] {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
    }
    // Found looser: tightened, and said so.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        dir.join("policy.log"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let store = FileStore::open(&dir).unwrap();
    assert_eq!(store.warnings().len(), 2, "{:?}", store.warnings());
    assert!(
        store.warnings()[0].contains("had mode 755, tightened to 700"),
        "{:?}",
        store.warnings()
    );
    assert_eq!((mode(&dir), mode(&dir.join("policy.log"))), (0o700, 0o600));
}

#[test]
fn a_long_history_compacts_to_what_changed() {
    // 300 versions of a 50-document set, each changing one document's port.
    let doc = |i: usize, port: usize| {
        format!("apiVersion: weft.dev/v1alpha1\nkind: Service\nmetadata: {{name: svc{i}}}\nspec: {{port: {port}, versions: [v1, v2], stableVersion: v1}}\n")
    };
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open_with(
        dir.path(),
        Compaction {
            after_records: usize::MAX,
            after_bytes: u64::MAX,
        },
    )
    .unwrap();
    let mut ports = vec![1000usize; 50];
    for v in 0..300usize {
        ports[v % 50] += 1;
        let yaml: Vec<String> = (0..50).map(|i| doc(i, ports[i])).collect();
        let docs = load(yaml.join("---\n").as_bytes(), &Limits::default()).unwrap();
        let new = NewRecord {
            parent: v as u64,
            author: "a".into(),
            operation: Operation::Apply,
            diff: DocDiff::default(),
            documents: PolicySet::from_documents(docs),
        };
        store.append(new).unwrap();
    }
    let c = store.compact().unwrap();
    println!(
        "300 versions x 50 documents: {} -> {} bytes, {} distinct documents",
        c.bytes_before, c.bytes_after, c.documents
    );
    // The first version's 50, then one new document per later version.
    assert_eq!(c.documents, 50 + 299);
    assert!(c.bytes_after * 10 < c.bytes_before, "{c:?}");
    let again = FileStore::open(dir.path());
    assert!(matches!(again, Err(StoreError::Locked(_))));
    drop(store);
    let store = FileStore::open(dir.path()).unwrap();
    assert_eq!(store.history().unwrap().len(), 300);
    assert_eq!(store.get(123).unwrap().unwrap().documents.len(), 50);
}
