//! Test fixtures shared by the filter cores' tests and, for the suite configuration
//! sections, by weft-suite-stages' tests.

/// One valid configuration section per suite stage, as the suite tests compose them.
pub mod suite_config {
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
}

#[cfg(test)]
pub(crate) use request::{Counting, Req};

#[cfg(test)]
mod request {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use crate::RequestAttributes;
    use std::cell::RefCell;

    /// Wraps a request and records every attribute a decision asks for (header names, and
    /// `peer` for the peer principal), so tests can check each is read at most once.
    pub(crate) struct Counting<R> {
        pub(crate) req: R,
        pub(crate) reads: RefCell<Vec<String>>,
    }

    impl<R: RequestAttributes> RequestAttributes for Counting<R> {
        fn method(&self) -> Option<String> {
            self.req.method()
        }
        fn path(&self) -> Option<String> {
            self.header(":path")
        }
        fn header(&self, name: &str) -> Option<String> {
            self.reads.borrow_mut().push(name.to_string());
            self.req.header(name)
        }
        fn source_address(&self) -> Option<String> {
            self.req.source_address()
        }
        fn peer_principal(&self) -> Option<String> {
            self.reads.borrow_mut().push("peer".to_string());
            self.req.peer_principal()
        }
    }

    /// A request as the host would present it: pseudo-headers and headers, and an optional
    /// mTLS peer; `GET` always.
    #[derive(Debug, Clone, Default)]
    pub(crate) struct Req {
        pub(crate) headers: Vec<(&'static str, String)>,
        pub(crate) principal: Option<String>,
    }

    impl Req {
        pub(crate) fn new(authority: &str, path: &str) -> Self {
            Self {
                headers: vec![
                    (":authority", authority.to_string()),
                    (":path", path.to_string()),
                ],
                principal: None,
            }
        }
        pub(crate) fn with(mut self, name: &'static str, value: &str) -> Self {
            self.headers.retain(|(n, _)| *n != name);
            self.headers.push((name, value.to_string()));
            self
        }
        pub(crate) fn peer(mut self, principal: &str) -> Self {
            self.principal = Some(principal.to_string());
            self
        }
    }

    impl RequestAttributes for Req {
        fn method(&self) -> Option<String> {
            Some("GET".into())
        }
        fn path(&self) -> Option<String> {
            self.header(":path")
        }
        fn header(&self, name: &str) -> Option<String> {
            assert_eq!(
                name,
                name.to_ascii_lowercase(),
                "header names are asked in lower case"
            );
            self.headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
        }
        fn source_address(&self) -> Option<String> {
            None
        }
        fn peer_principal(&self) -> Option<String> {
            self.principal.clone()
        }
    }
}
