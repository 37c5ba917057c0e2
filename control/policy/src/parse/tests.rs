use super::*;
use crate::PolicyError;

const SERVICE: &str = "apiVersion: weft.dev/v1alpha1\nkind: Service\nmetadata: {name: reviews, namespace: shop}\nspec: {port: 9080, versions: [v1, v2]}\n";

fn errors(input: &str) -> Vec<FieldError> {
    match parse_documents(input.as_bytes(), &Limits::default()) {
        Err(PolicyError::Invalid(list)) => list,
        other => panic!("expected validation errors, got {other:?}"),
    }
}

#[test]
fn yaml_multi_document_and_json_forms_agree() {
    let yaml = format!("{SERVICE}---\n{}", SERVICE.replace("reviews", "ratings"));
    let from_yaml = parse_documents(yaml.as_bytes(), &Limits::default()).unwrap();
    assert_eq!(from_yaml.len(), 2);
    let json = serde_json::to_string(&from_yaml).unwrap();
    assert!(json.starts_with('['));
    assert_eq!(
        parse_documents(json.as_bytes(), &Limits::default()).unwrap(),
        from_yaml
    );
    let one = serde_json::to_string(&from_yaml[0]).unwrap();
    assert_eq!(
        parse_documents(one.as_bytes(), &Limits::default()).unwrap(),
        vec![from_yaml[0].clone()]
    );
}

#[test]
fn empty_documents_are_skipped_but_an_empty_request_is_refused() {
    let docs = parse_documents(
        format!("---\n{SERVICE}---\n").as_bytes(),
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(docs.len(), 1);
    let errs = errors("# nothing\n");
    assert_eq!(errs[0].reason, "no documents");
}

#[test]
fn every_unknown_field_is_reported_with_its_path() {
    let y = "apiVersion: weft.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: a, namespace: shop, nam: x}\nspec:\n  target: {service: reviews}\n  bogus: 1\n  rules:\n  - from: {principalz: [x]}\n    to: {methods: [GET], pathz: [x]}\n";
    let fields: Vec<String> = errors(y).into_iter().map(|e| e.field).collect();
    assert_eq!(
        fields,
        [
            "metadata.nam",
            "spec.bogus",
            "spec.rules[0].from.principalz",
            "spec.rules[0].to.pathz"
        ]
    );
}

#[test]
fn errors_name_document_kind_namespace_name_and_index() {
    let y = format!("{SERVICE}---\napiVersion: weft.dev/v1alpha1\nkind: Service\nmetadata: {{name: b}}\nspec: {{port: x, versions: []}}\n");
    let errs = errors(&y);
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].document, "Service/default/b (#2)");
    assert_eq!(errs[0].field, "spec.port");
    assert!(
        errs[0].reason.contains("expected u16"),
        "{}",
        errs[0].reason
    );
}

#[test]
fn envelope_errors() {
    let cases = [
        (
            "kind: Service\nmetadata: {name: a}\nspec: {port: 1, versions: [v1]}\n",
            "apiVersion",
            "missing field",
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {port: 1, versions: [v1]}\n",
            "apiVersion",
            "unsupported",
        ),
        (
            "apiVersion: weft.dev/v1alpha1\nkind: VirtualService\nmetadata: {name: a}\nspec: {}\n",
            "kind",
            "unknown kind",
        ),
        (
            "apiVersion: weft.dev/v1alpha1\nmetadata: {name: a}\nspec: {}\n",
            "kind",
            "missing field",
        ),
        (
            "apiVersion: weft.dev/v1alpha1\nkind: Service\nspec: {port: 1, versions: [v1]}\n",
            "(document)",
            "missing field `metadata`",
        ),
        ("- just\n- a list\n", "(document)", "must be a mapping"),
        ("apiVersion: [unclosed\n", "(document)", "invalid YAML"),
        ("{\"apiVersion\": ", "(document)", "invalid JSON"),
    ];
    for (input, field, reason) in cases {
        let errs = errors(input);
        assert!(
            errs.iter()
                .any(|e| e.field == field && e.reason.contains(reason)),
            "{input:?}: {errs:?}"
        );
    }
}

#[test]
fn too_large_is_refused_before_parsing() {
    let limits = Limits {
        max_bytes: 64,
        ..Limits::default()
    };
    // Not even valid YAML: the size alone decides.
    let input = vec![b'{'; 65];
    assert_eq!(
        parse_documents(&input, &limits),
        Err(PolicyError::TooLarge {
            size: 65,
            limit: 64
        })
    );
}

#[test]
fn too_deep_is_refused_before_typed_deserialisation() {
    let nested = format!("{}1{}", "[".repeat(40), "]".repeat(40));
    let y = format!("apiVersion: weft.dev/v1alpha1\nkind: Service\nmetadata: {{name: a}}\nspec: {{port: 1, versions: [v1], x: {nested}}}\n");
    let errs = errors(&y);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].reason.contains("more than the limit of 32"),
        "{errs:?}"
    );
    // Far past the parsers' own recursion limits: an error, not a stack overflow.
    for deep in [
        format!("{}1{}", "[".repeat(2_000), "]".repeat(2_000)),
        format!("a: {}1{}", "[".repeat(2_000), "]".repeat(2_000)),
    ] {
        assert!(matches!(
            parse_documents(
                deep.as_bytes(),
                &Limits {
                    max_bytes: usize::MAX,
                    ..Limits::default()
                }
            ),
            Err(PolicyError::Invalid(_))
        ));
    }
}

#[test]
fn too_many_documents() {
    let limits = Limits {
        max_documents: 2,
        ..Limits::default()
    };
    let y = format!("{SERVICE}---\n{SERVICE}---\n{SERVICE}");
    let Err(PolicyError::Invalid(errs)) = parse_documents(y.as_bytes(), &limits) else {
        panic!("expected an error")
    };
    assert!(errs[0].reason.contains("3 documents"));
}

#[test]
fn depth_counts_levels() {
    assert_eq!(depth(&serde_json::json!(1)), 0);
    assert_eq!(depth(&serde_json::json!({"a": [1]})), 2);
    assert_eq!(depth(&serde_json::json!({"a": {"b": {}}, "c": 1})), 3);
}

#[test]
fn documents_round_trip_through_json() {
    let docs = parse_documents(SERVICE.as_bytes(), &Limits::default()).unwrap();
    let back: Vec<Document> = serde_json::from_value(serde_json::to_value(&docs).unwrap()).unwrap();
    assert_eq!(back, docs);
}

#[test]
fn block_nesting_is_measured_on_the_tree() {
    let mut y = String::from("apiVersion: weft.dev/v1alpha1\nkind: Service\nmetadata: {name: a}\nspec:\n  port: 1\n  versions: [v1]\n  x:\n");
    for i in 0..40 {
        y.push_str(&format!("{}k:\n", " ".repeat(4 + 2 * i)));
    }
    let errs = errors(&y);
    assert_eq!(
        (errs[0].document.as_str(), errs[0].field.as_str()),
        ("Service/default/a (#1)", "(document)")
    );
    assert!(errs[0].reason.contains("limit of 32"), "{errs:?}");
}

#[test]
fn flow_prescan_ignores_brackets_in_quotes_and_comments() {
    let deep = "[".repeat(40);
    assert_eq!(
        flow_depth_over(&format!("a: '{deep}'\nb: \"{deep}\" # {deep}\n"), 32),
        None
    );
    assert_eq!(
        flow_depth_over(&format!("a: [\"]\", [\"]\", {deep}"), 32),
        Some(33)
    );
    assert_eq!(flow_depth_over("a: 'it''s [' [[", 1), Some(2));
}

#[test]
fn a_secret_that_does_not_type_check_is_not_quoted_back() {
    let secret = "a-secret-of-at-least-32-bytes-long!!";
    let y = format!("apiVersion: weft.dev/v1alpha1\nkind: RequestAuthentication\nmetadata: {{name: a}}\nspec:\n  target: {{service: s}}\n  jwtRules: [{{issuer: i, hs256Secrets: {secret}}}]\n");
    let errs = errors(&y);
    assert_eq!(errs[0].field, "spec.jwtRules[0].hs256Secrets", "{errs:?}");
    assert!(!format!("{errs:?}").contains(secret), "{errs:?}");
    // A redacted placeholder given back is refused, never stored as the secret.
    let placeholder = crate::secret::redact(secret);
    let y = format!("apiVersion: weft.dev/v1alpha1\nkind: Service\nmetadata: {{name: s}}\nspec: {{port: 1, versions: [v1]}}\n---\napiVersion: weft.dev/v1alpha1\nkind: RequestAuthentication\nmetadata: {{name: a}}\nspec:\n  target: {{service: s}}\n  jwtRules: [{{issuer: i, hs256Secrets: ['{placeholder}']}}]\n");
    let Err(PolicyError::Invalid(errs)) = crate::load(y.as_bytes(), &Limits::default()) else {
        panic!("a placeholder was accepted as a secret")
    };
    assert_eq!(
        errs[0].field, "spec.jwtRules[0].hs256Secrets[0]",
        "{errs:?}"
    );
    assert!(errs[0].reason.contains("redacted placeholder"), "{errs:?}");
}

#[test]
fn prescan_counts_aliases_outside_quotes_and_comments() {
    let text = "a: &x [1]\nb: *x\nc: [*x, *x]\nd: '*x'\ne: \"*x\" # *x\nf: a*b\ng:\n- *x\n";
    assert_eq!(prescan(text, 32).aliases, 4);
    let many = format!("a: &x 1\nb: [{}]\n", vec!["*x"; 1001].join(", "));
    let Err(PolicyError::Invalid(errs)) = parse_documents(many.as_bytes(), &Limits::default())
    else {
        panic!("1001 aliases were parsed")
    };
    assert_eq!(
        errs[0].reason,
        "1001 YAML aliases (`*name`), more than the limit of 1000"
    );
}
