//! The policy the benchmark applies: one `Service` per benchmark service and one
//! `AuthorizationPolicy` per service denying the path `/weft-bench/<marker>`. Each apply changes
//! the marker, so every sidecar group gets a new `weft.authz` configuration (and nothing
//! else changes), and a sidecar that enforces it answers that path with 403.

use std::fmt::Write;

use crate::fleet::service_name;

/// The path denied while `marker` is applied.
pub fn denied_path(marker: &str) -> String {
    format!("/weft-bench/{marker}")
}

/// The body a sidecar answers the denied path with while `marker` is applied.
pub fn deny_body(marker: &str) -> String {
    format!("denied by weft-bench {marker}")
}

/// The documents of one apply, as YAML. With `calls`, service `i` declares that it calls
/// services `i+1 ..= i+calls` (modulo the count).
pub fn documents(
    namespace: &str,
    services: usize,
    versions: usize,
    calls: Option<usize>,
    marker: &str,
) -> String {
    let versions: Vec<String> = (1..=versions.max(1)).map(|v| format!("v{v}")).collect();
    let versions = versions.join(", ");
    let path = denied_path(marker);
    let body = deny_body(marker);
    let mut out = String::new();
    let count = services.max(1);
    for index in 0..count {
        let service = service_name(index);
        let calls = match calls {
            Some(n) => {
                let called: Vec<String> = (1..=n.min(count))
                    .map(|k| service_name((index + k) % count))
                    .collect();
                format!(", calls: [{}]", called.join(", "))
            }
            None => String::new(),
        };
        let _ = write!(
            out,
            "apiVersion: weft.dev/v1alpha1\n\
             kind: Service\n\
             metadata: {{name: {service}, namespace: {namespace}}}\n\
             spec: {{port: 8080, versions: [{versions}], stableVersion: v1{calls}}}\n\
             ---\n\
             apiVersion: weft.dev/v1alpha1\n\
             kind: AuthorizationPolicy\n\
             metadata: {{name: bench-{service}, namespace: {namespace}}}\n\
             spec:\n  \
               target: {{service: {service}}}\n  \
               action: DENY\n  \
               rules:\n  \
               - to: {{paths: [\"{path}\"]}}\n  \
               denyResponse: {{status: 403, body: \"{body}\\n\"}}\n\
             ---\n"
        );
    }
    out
}

#[cfg(test)]
mod tests {

    #[test]
    fn every_service_gets_a_valid_policy_with_the_marker() {
        for calls in [None, Some(1), Some(5)] {
            let text = super::documents("bench", 3, 2, calls, "r7x1");
            assert_eq!(text.matches("/weft-bench/r7x1").count(), 3);
            let documents =
                weft_policy::load(text.as_bytes(), &weft_policy::Limits::default()).unwrap();
            assert_eq!(documents.len(), 6);
            let set = weft_policy::PolicySet::from_documents(documents);
            let errors = weft_policy::validate::validate_set(
                &set,
                &Default::default(),
                weft_policy::validate::References::Strict,
            );
            assert!(errors.is_empty(), "{errors:?}");
        }
        let ring = super::documents("bench", 3, 1, Some(1), "m");
        assert!(ring.contains("name: svc-02, namespace: bench}\nspec: {port: 8080, versions: [v1], stableVersion: v1, calls: [svc-00]}"), "{ring}");
    }
}
