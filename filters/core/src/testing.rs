//! Test helpers shared by the filter cores' tests.
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
