//! What a connection state machine tells the rest of the control plane: which versions a
//! sidecar acknowledged and which it refused, with Envoy's reason.

use serde::Serialize;

/// A configuration Envoy refused (a NACK), as Envoy described it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Nack {
    pub type_url: String,
    /// The version Envoy refused (it keeps the last one it accepted).
    pub rejected_version: String,
    pub nonce: String,
    /// `error_detail.code` (a gRPC status code; Envoy uses 13 INTERNAL for most).
    pub code: i32,
    /// `error_detail.message`, e.g. "Unable to create Wasm plugin weft.authz".
    pub message: String,
}

/// What happened on one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Acked { type_url: String, version: String },
    Nacked(Nack),
}
