use super::reference::reference_normalize;
use super::{normalize, PathError, PathParameters};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const REJECT: PathParameters = PathParameters::Reject;
const STRIP: PathParameters = PathParameters::Strip;

fn norm(raw: &str, params: PathParameters) -> Result<String, PathError> {
    normalize(raw, params).map(|p| p.into_owned())
}

#[test]
fn hostile_variants_normalize_to_the_path_the_app_sees() {
    let cases: &[(&str, &str)] = &[
        ("/admin", "/admin"),
        ("//admin", "/admin"),
        ("///admin//x", "/admin/x"),
        ("/./admin", "/admin"),
        ("/x/../admin", "/admin"),
        ("/%61dmin", "/admin"),
        ("/%41DMIN", "/ADMIN"),
        ("/admin%2fsecret", "/admin/secret"),
        ("/admin%2Fsecret", "/admin/secret"),
        ("/%2e%2e/admin", "/admin"),
        ("/%2E%2E/admin", "/admin"),
        ("/admin/.", "/admin/"),
        ("/admin%2F", "/admin/"),
        ("/.%2e/admin", "/admin"),
        ("/%2e/admin", "/admin"),
        ("/../../admin", "/admin"),
        ("/..", "/"),
        ("/a/b/..", "/a/"),
        ("/admin/x/..", "/admin/"),
        ("\\admin", "/admin"),
        ("/x\\..\\admin", "/admin"),
        ("/x%5c..%5cadmin", "/admin"),
        ("/x%5C..%5Cadmin", "/admin"),
        ("/admin?x=/public", "/admin"),
        ("/public?/../admin", "/public"),
        ("/admin#frag", "/admin"),
        ("/admin%3f", "/admin%3F"),
        ("/admin%3Fx", "/admin%3Fx"),
        ("/a%20b", "/a%20b"),
        ("/%7euser", "/~user"),
        ("admin", "/admin"),
        ("", "/"),
        ("/", "/"),
        ("/admin/", "/admin/"),
        ("/admin//", "/admin/"),
        ("/...", "/..."),
        ("/admin..", "/admin.."),
        ("/.admin", "/.admin"),
    ];
    for (raw, want) in cases {
        assert_eq!(norm(raw, REJECT).as_deref(), Ok(*want), "{raw:?}");
        assert_eq!(norm(raw, STRIP).as_deref(), Ok(*want), "{raw:?} (strip)");
    }
}

#[test]
fn escapes_are_decoded_exactly_once() {
    // `%25` is `%`, not unreserved: it stays encoded, so `%2561` never becomes `a`.
    assert_eq!(norm("/%2561dmin", REJECT).as_deref(), Ok("/%2561dmin"));
    assert_eq!(
        norm("/%252e%252e/admin", REJECT).as_deref(),
        Ok("/%252e%252e/admin")
    );
    assert_eq!(norm("/%25%32%65", REJECT).as_deref(), Ok("/%252e"));
}

#[test]
fn bad_escapes_and_nul_are_refused() {
    for raw in ["/admin%", "/admin%2", "/%zz", "/%g0admin", "/%%61"] {
        assert_eq!(norm(raw, REJECT), Err(PathError::InvalidEscape), "{raw:?}");
        assert_eq!(norm(raw, STRIP), Err(PathError::InvalidEscape), "{raw:?}");
    }
    for raw in ["/admin%00", "/admin\0", "/%00/x"] {
        assert_eq!(norm(raw, STRIP), Err(PathError::Nul), "{raw:?}");
    }
    // After the query nothing is looked at.
    assert_eq!(norm("/public?%zz", REJECT).as_deref(), Ok("/public"));
}

#[test]
fn path_parameters_are_rejected_by_default_or_stripped() {
    assert_eq!(PathParameters::default(), REJECT);
    for raw in ["/admin;x", "/public/..;/admin", "/;/admin", "/admin;"] {
        assert_eq!(norm(raw, REJECT), Err(PathError::PathParameter), "{raw:?}");
    }
    let stripped: &[(&str, &str)] = &[
        ("/admin;x", "/admin"),
        ("/admin;x=1/secret", "/admin/secret"),
        ("/public/..;/admin", "/admin"),
        ("/public/..;jsessionid=1/admin", "/admin"),
        ("/;x/admin", "/admin"),
        ("/admin;", "/admin"),
        ("/.;/admin", "/admin"),
    ];
    for (raw, want) in stripped {
        assert_eq!(norm(raw, STRIP).as_deref(), Ok(*want), "{raw:?}");
    }
    // An encoded `;` is a literal character of the segment, never a parameter.
    assert_eq!(norm("/admin%3bx", REJECT).as_deref(), Ok("/admin%3Bx"));
}

#[test]
fn a_normal_path_is_borrowed() {
    for (raw, want) in [
        ("/api/v1/items", "/api/v1/items"),
        ("/api/?q=/../x", "/api/"),
        ("/", "/"),
    ] {
        assert!(
            matches!(normalize(raw, REJECT), Ok(std::borrow::Cow::Borrowed(p)) if p == want),
            "{raw:?}"
        );
    }
}

/// A small seeded generator, so the property test is the same on every run and on wasm.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Random paths from pieces that matter to normalization, compared with the reference
/// normalizer: the same path, or the same refusal.
#[test]
fn agrees_with_the_reference_normalizer_on_random_paths() {
    const PIECES: &[&str] = &[
        "/",
        "//",
        "\\",
        ".",
        "..",
        "%2e",
        "%2E",
        "%2f",
        "%2F",
        "%5c",
        "%5C",
        "a",
        "admin",
        "Admin",
        "%61",
        "%41",
        "%64min",
        ";",
        ";x",
        "%3b",
        "%3B",
        "%",
        "%z",
        "%zz",
        "%0",
        "%00",
        "%25",
        "%2561",
        "?",
        "?q=/admin",
        "#",
        "%7e",
        "~",
        "-",
        "_",
        "%20",
        "%ff",
        "é",
        "public",
        "x",
        "%2e%2e",
        ".%2e",
        "%2e.",
        "\0",
    ];
    let rounds = if cfg!(target_arch = "wasm32") {
        20_000
    } else {
        100_000
    };
    let mut rng = XorShift(0x5eed_1234_abcd_ef01);
    for _ in 0..rounds {
        let n = (rng.next() % 10) as usize;
        let mut raw = String::new();
        for _ in 0..n {
            raw.push_str(PIECES[(rng.next() % PIECES.len() as u64) as usize]);
        }
        for (params, strip) in [(REJECT, false), (STRIP, true)] {
            let ours = normalize(&raw, params);
            let theirs = reference_normalize(&raw, strip);
            // Both refusing is agreement (either way the answer is 400), whichever fault
            // each names first.
            match (&ours, &theirs) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{raw:?} strip={strip}"),
                (Err(_), Err(_)) => {}
                _ => panic!("{raw:?} strip={strip}: {ours:?} vs {theirs:?}"),
            }
        }
    }
}
