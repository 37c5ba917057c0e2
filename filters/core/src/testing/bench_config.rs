//! The benchmark's filter configurations (`bench/run.py`), for the per-request cost tools
//! (`examples/percall.rs` here, `percall_stages` in weft-suite-stages).

pub const AUTHZ: &str = r#"{"trust_domain": "weft.test", "policies": [{"name": "block-admin", "action": "DENY", "rules": [{"paths": ["/admin/*"]}]}, {"name": "exec-only", "action": "ALLOW", "rules": [{"principals": ["spiffe://weft.test/ns/corp/sa/exec-portal"], "methods": ["GET"], "paths": ["/reports/*"]}]}]}"#;
/// The suite's authz of the benchmark: no principal (S5 runs without mTLS).
pub const AUTHZ_NO_PEER: &str = r#"{"trust_domain": "weft.test", "policies": [{"name": "block-admin", "action": "DENY", "rules": [{"paths": ["/admin/*"]}]}, {"name": "exec-only", "action": "ALLOW", "rules": [{"methods": ["GET"], "paths": ["/reports/*"]}]}]}"#;
pub const CANARY: &str = r#"{"cluster_header": "x-weft-cluster", "services": [{"host": "reviews", "stable": "v1", "versions": {"v1": {"cluster": "v1"}, "v2": {"cluster": "v2"}}, "split": [{"version": "v1", "weight": 7500}, {"version": "v2", "weight": 2500}]}]}"#;
pub const STICKY: &str = r#"{"cluster_header": "x-weft-cluster", "services": [{"host": "reviews", "stable": "v1", "versions": {"v1": {"cluster": "v1"}, "v2": {"cluster": "v2"}}, "split": [{"version": "v1", "weight": 7500}, {"version": "v2", "weight": 2500}], "sticky": {"key": {"header": "x-user"}, "salt": "bench"}}]}"#;
pub const FAULT: &str = r#"{"percent_cap": 100, "max_concurrent_delays": 10000, "policies": [{"name": "bench-delay", "delay": {"percent": 0.0, "fixed_ms": 20}}]}"#;
/// The breaker of S4: cluster `v1` from the route.
pub const BREAKER_V1: &str = r#"{"clusters": {"v1": {"consecutive_failures": 5, "failure_rate": {"threshold_percent": 50, "window_ms": 10000, "min_requests": 20}, "open_interval_ms": 5000, "half_open_probes": 3, "max_concurrent": 100}}}"#;
/// The breaker of S5: clusters `v1` and `v2` from the canary's header.
pub const BREAKER_V1_V2: &str = r#"{"cluster_header": "x-weft-cluster", "clusters": {"v1": {"consecutive_failures": 5, "failure_rate": {"threshold_percent": 50, "window_ms": 10000, "min_requests": 20}, "open_interval_ms": 5000, "half_open_probes": 3, "max_concurrent": 100}, "v2": {"consecutive_failures": 5, "failure_rate": {"threshold_percent": 50, "window_ms": 10000, "min_requests": 20}, "open_interval_ms": 5000, "half_open_probes": 3, "max_concurrent": 100}}}"#;
/// Outbound telemetry as a mesh sidecar runs it (not in the benchmark's scenarios).
pub const TELEMETRY: &str = r#"{"direction": "outbound", "namespace": "default", "service": "productpage", "version": "v1", "key": "00ff00ff00ff00ff00ff00ff00ff00ff"}"#;
