//! What a decision may ask of the host about the current request.
//!
//! The glue implements this with hostcalls and reads lazily, so a policy that never looks at,
//! say, the peer certificate never pays for the property read. Decisions take only this view;
//! the stages, which also act, take [`crate::Host`], which extends it.

/// A header value's bytes as text. Envoy passes values with any byte but NUL, CR and LF
/// (obs-text, 0x80-0xFF, included): bytes that are not UTF-8 become U+FFFD, so a value is
/// never lost for its encoding (read as absent, or trapping a reader that unwraps) and the
/// ASCII a rule matches on is kept (D103). Valid UTF-8 is taken without a copy.
pub fn header_text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Read-only view of one HTTP request as the proxy sees it.
pub trait RequestAttributes {
    /// `:method`
    fn method(&self) -> Option<String>;
    /// `:path` including the query string.
    fn path(&self) -> Option<String>;
    /// `:authority` / Host.
    fn authority(&self) -> Option<String> {
        self.header(":authority")
    }
    /// A request header by lower-case name. Envoy gives only the FIRST copy of a header sent
    /// several times; conditions that must see every copy use [`header_values`](Self::header_values).
    fn header(&self, name: &str) -> Option<String>;
    /// Every copy of a request header, in the order received (empty when absent).
    fn header_values(&self, name: &str) -> Vec<String> {
        self.header(name).into_iter().collect()
    }
    /// Every request header entry in the order received, when the host can list them in one
    /// read (the glue: Envoy's whole header map). `None`: ask [`header_values`](Self::header_values)
    /// per name. [`crate::suite::MemoRequest`] reads the map once and answers every name from it.
    fn header_map(&self) -> Option<Vec<(String, String)>> {
        None
    }
    /// Whether one read of the whole header map costs less than reading a few headers one
    /// by one. In proxy-wasm every host call that returns data crosses the VM boundary twice
    /// (the call, then `proxy_on_memory_allocate` for the answer), and a request's stages
    /// read at least three headers (`:method`, `:path`, `:authority`): one map read is two
    /// crossings instead of six. [`crate::suite::MemoRequest`] then answers every request
    /// header from that one read. Envoy's dynamic-module ABI reads a header in place, so the
    /// native glue says no.
    fn prefers_header_map(&self) -> bool {
        false
    }
    /// The direct downstream peer's address as text, e.g. `10.0.0.7:51234` or `10.0.0.7`
    /// (what `ipBlocks` match).
    fn source_address(&self) -> Option<String>;
    /// The original client's address, derived by the proxy from `X-Forwarded-For` through its
    /// trusted hops (what `remoteIpBlocks` match). Without trusted hops it is the peer.
    fn remote_address(&self) -> Option<String> {
        self.source_address()
    }
    /// URI SAN of the verified mTLS peer certificate (the SPIFFE id), if any.
    fn peer_principal(&self) -> Option<String>;
}
