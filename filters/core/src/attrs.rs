//! What a decision may ask of the host about the current request.
//!
//! The cdylibs implement this with hostcalls and read lazily, so a policy that never
//! looks at, say, the peer certificate never pays for the property read.

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
    /// A request header by lower-case name; multiple values joined by `,`.
    fn header(&self, name: &str) -> Option<String>;
    /// The downstream peer's address as text, e.g. `10.0.0.7:51234` or `10.0.0.7`.
    fn source_address(&self) -> Option<String>;
    /// URI SAN of the verified mTLS peer certificate (the SPIFFE id), if any.
    fn peer_principal(&self) -> Option<String>;
}
