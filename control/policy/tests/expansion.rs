//! Inputs that expand: YAML alias bombs (exponential "billion laughs" and quadratic), deep
//! nesting in JSON and YAML. Each is refused with a clear error, and the refusal's peak heap
//! (measured by a counting allocator: this test binary's global allocator) stays under
//! 50 MiB. The time of each refusal is printed (`--nocapture`), not asserted: a loaded
//! 2-core machine running an unoptimised build must not make the test flaky.
#![cfg(test)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;
use weft_policy::{parse_documents, Limits, PolicyError};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// The tests of this binary measure one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

// SAFETY: forwards to the system allocator unchanged; only counts bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let grow = new_size - layout.size();
                let now = CURRENT.fetch_add(grow, Ordering::Relaxed) + grow;
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                CURRENT.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const MIB: usize = 1024 * 1024;

/// Parses `input` with the default limits; returns the errors, the peak heap above what was
/// allocated before, and the time taken.
fn refuse(name: &str, input: &str) -> (Vec<String>, usize) {
    let _one = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    assert!(
        input.len() <= Limits::default().max_bytes,
        "{name}: {} bytes",
        input.len()
    );
    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let start = Instant::now();
    let result = parse_documents(input.as_bytes(), &Limits::default());
    let took = start.elapsed();
    let peak = PEAK.load(Ordering::Relaxed) - base;
    let Err(PolicyError::Invalid(errors)) = result else {
        panic!("{name}: expected a refusal, got {result:?}")
    };
    let reasons: Vec<String> = errors.iter().map(|e| e.reason.clone()).collect();
    println!(
        "{name}: {} input bytes refused in {took:?}, peak heap {:.1} MiB: {reasons:?}",
        input.len(),
        peak as f64 / MIB as f64
    );
    assert!(peak < 50 * MIB, "{name}: peak heap {peak} bytes");
    (reasons, peak)
}

fn billion_laughs() -> String {
    let mut y = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..10 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        y.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    y
}

#[test]
fn billion_laughs_is_refused_by_the_node_budget() {
    let (reasons, _) = refuse("billion laughs", &billion_laughs());
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(
        reasons[0].contains("the input expands to more than 100000 nodes"),
        "{reasons:?}"
    );
}

#[test]
fn billion_laughs_padded_to_the_size_limit_is_refused_the_same_way() {
    // 50 000 padding events raise serde_norway's own alias-jump cap (100 x the events) to
    // 5 million jumps; ours does not move.
    let mut y = billion_laughs();
    y.push_str(&format!("pad: [{}]\n", vec!["p"; 50_000].join(", ")));
    let (reasons, _) = refuse("padded billion laughs", &y);
    assert!(
        reasons[0].contains("the input expands to more than"),
        "{reasons:?}"
    );
}

#[test]
fn quadratic_aliases_are_refused() {
    // One anchored list of 60 000 items aliased 150 000 times: 9 * 10^9 nodes from 570 KB,
    // refused by the alias count before it is parsed.
    let mut y = String::from("a: &a [");
    y.push_str(&vec!["x"; 60_000].join(","));
    y.push_str("]\nb: [");
    y.push_str(&vec!["*a"; 150_000].join(","));
    y.push_str("]\n");
    let (reasons, peak) = refuse("quadratic aliases", &y);
    assert_eq!(
        reasons,
        ["150000 YAML aliases (`*name`), more than the limit of 1000"]
    );
    assert!(peak < 4 * MIB, "{peak}");
    // Under the alias count (1 000 aliases of 60 000 items), the node budget stops it.
    let mut y = String::from("a: &a [");
    y.push_str(&vec!["x"; 60_000].join(","));
    y.push_str("]\nb: [");
    y.push_str(&vec!["*a"; 1000].join(","));
    y.push_str("]\n");
    let (reasons, _) = refuse("quadratic aliases under the alias count", &y);
    assert!(
        reasons[0].contains("the input expands to more than 100000 nodes"),
        "{reasons:?}"
    );
}

#[test]
fn a_long_scalar_aliased_many_times_is_refused_by_the_byte_budget() {
    let mut y = format!("a: &a {}\nb: [", "s".repeat(64 * 1024));
    y.push_str(&vec!["*a"; 100].join(","));
    y.push_str("]\n");
    let (reasons, _) = refuse("aliased long scalar", &y);
    assert!(
        reasons[0].contains("the input expands to more than 4194304 bytes of scalars"),
        "{reasons:?}"
    );
}

#[test]
fn a_few_aliases_in_a_real_document_still_work() {
    let y = "apiVersion: weft.dev/v1alpha1\nkind: Service\nmetadata: {name: a, labels: &l {team: x}, annotations: *l}\nspec: {port: 1, versions: &v [v1, v2], stableVersion: v1}\n";
    let docs = parse_documents(y.as_bytes(), &Limits::default()).unwrap();
    assert_eq!(
        docs[0].metadata.annotations.get("team").map(String::as_str),
        Some("x")
    );
}

#[test]
fn deep_nesting_is_refused_in_json_and_yaml() {
    // Flow nesting (JSON or YAML): the pre-scan, before a parser runs.
    let json = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let (reasons, _) = refuse("deep JSON", &json);
    assert!(
        reasons[0].contains("more than the limit of 32"),
        "{reasons:?}"
    );
    // serde_json's own recursion limit (128) would also stop it, given a higher limit:
    let limits = Limits {
        max_depth: 10_000,
        ..Limits::default()
    };
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let Err(PolicyError::Invalid(e)) = parse_documents(deep.as_bytes(), &limits) else {
        panic!("200 levels of JSON parsed")
    };
    assert!(e[0].reason.contains("recursion limit exceeded"), "{e:?}");
    // Block nesting (YAML indentation): serde_norway's recursion limit, then ours.
    let mut yaml = String::new();
    for i in 0..200 {
        yaml.push_str(&format!("{}k:\n", " ".repeat(i)));
    }
    let (reasons, _) = refuse("deep YAML", &yaml);
    assert!(
        reasons[0].contains("recursion limit exceeded"),
        "{reasons:?}"
    );
    let Err(PolicyError::Invalid(e)) = parse_documents(yaml.as_bytes(), &limits) else {
        panic!("200 levels of YAML parsed")
    };
    assert!(e[0].reason.contains("recursion limit exceeded"), "{e:?}");
}

#[test]
fn an_input_of_too_many_items_is_refused_before_it_is_parsed() {
    // 1 MiB of tiny scalars would hold ~350 000 events (~54 MiB) in the YAML loader.
    let max = Limits::default().max_bytes;
    let flow = format!("a: [{}]\n", vec!["p"; max / 2 - 8].join(","));
    let (reasons, peak) = refuse("1 MiB flow list", &flow);
    assert!(
        reasons[0].contains("lines and commas, more than the limit of 100000 nodes"),
        "{reasons:?}"
    );
    assert!(peak < 2 * MIB, "{peak}");
    let block = "- p\n".repeat(max / 4 - 1);
    let (reasons, _) = refuse("1 MiB block list", &block);
    assert!(reasons[0].contains("lines and commas"), "{reasons:?}");
}
