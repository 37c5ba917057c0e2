//! Test helpers shared by the filter cores' tests; [`suite_config`] also by
//! weft-suite-stages' tests; [`bench_config`] by the per-request cost examples.

pub mod bench_config;
pub mod suite_config;

#[cfg(test)]
use crate::RequestAttributes;
#[cfg(test)]
use std::cell::RefCell;

#[cfg(test)]
/// Wraps a request and records every attribute a decision asks for (header names, and
/// `peer` for the peer principal), so tests can check each is read at most once.
pub(crate) struct Counting<R> {
    pub(crate) req: R,
    pub(crate) reads: RefCell<Vec<String>>,
}

#[cfg(test)]
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

#[cfg(test)]
/// A request as the host would present it: pseudo-headers and headers, and an optional
/// mTLS peer; `GET` always.
#[derive(Debug, Clone, Default)]
pub(crate) struct Req {
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) principal: Option<String>,
}

#[cfg(test)]
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

#[cfg(test)]
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
