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

/// The documents of one apply, as YAML.
pub fn documents(namespace: &str, services: usize, versions: usize, marker: &str) -> String {
    let versions: Vec<String> = (1..=versions.max(1)).map(|v| format!("v{v}")).collect();
    let versions = versions.join(", ");
    let path = denied_path(marker);
    let body = deny_body(marker);
    let mut out = String::new();
    for index in 0..services.max(1) {
        let service = service_name(index);
        let _ = write!(
            out,
            "apiVersion: weft.dev/v1alpha1\n\
             kind: Service\n\
             metadata: {{name: {service}, namespace: {namespace}}}\n\
             spec: {{port: 8080, versions: [{versions}], stableVersion: v1}}\n\
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
        let text = super::documents("bench", 3, 2, "r7x1");
        assert_eq!(text.matches("/weft-bench/r7x1").count(), 3);
        let documents =
            weft_policy::load(text.as_bytes(), &weft_policy::Limits::default()).unwrap();
        assert_eq!(documents.len(), 6);
    }
}
