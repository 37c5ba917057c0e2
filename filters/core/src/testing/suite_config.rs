//! One valid configuration section per suite stage, as the suite tests (here and in
//! weft-suite-stages) compose them.

pub const AUTHZ: &str = r#"{"policies": [
    {"name": "block-admin", "action": "DENY", "rules": [{"paths": ["/admin/*"]}]},
    {"name": "readers", "action": "ALLOW", "rules": [{"methods": ["GET"], "paths": ["/reports/*"]}]}]}"#;
pub const CANARY: &str = r#"{"cluster_header": "x-weft-cluster", "services": [{
    "host": "reviews", "stable": "v1",
    "versions": {"v1": {"cluster": "v1"}, "v2": {"cluster": "v2"}},
    "split": [{"version": "v1", "weight": 7500}, {"version": "v2", "weight": 2500}],
    "sticky": {"key": {"header": "x-user"}, "salt": "s"}}]}"#;
/// A delay that never fires (0 %).
pub const NO_FAULT: &str = r#"{"policies": [{"name": "slow", "match": {"hosts": ["reviews"]},
    "delay": {"percent": 0, "fixed_ms": 20}}]}"#;
pub const BREAKER: &str =
    r#"{"cluster_header": "x-weft-cluster", "clusters": {"v1": {}, "v2": {}}}"#;
pub const TELEMETRY: &str = r#"{"direction": "outbound", "namespace": "default",
    "service": "productpage", "version": "v1", "key": "00ff00ff00ff00ff00ff00ff00ff00ff"}"#;
