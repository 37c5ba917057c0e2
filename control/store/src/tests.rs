use super::*;
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
        Err(StoreError::Corrupt { .. })
    ));
}

const HEADER_LEN_FOR_TESTS: usize = 36;
