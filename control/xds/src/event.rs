//! What a connection state machine tells the rest of the control plane: which versions a
//! sidecar acknowledged and which it refused, with Envoy's reason.

use serde::{Deserialize, Serialize};

#[cfg(test)]
mod tests;

/// A configuration Envoy refused (a NACK), as Envoy described it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nack {
    pub type_url: String,
    /// The version Envoy refused (it keeps the last one it accepted), in the protocol's own
    /// terms: SotW's `version_info` (a content hash), Delta's `system_version_info`.
    pub rejected_version: String,
    /// The policy revision of the refused response: recorded the same way by SotW and
    /// Delta (see `reply_event`), so a sidecar's status reads alike on either protocol.
    pub revision: u64,
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

/// The response a sidecar's reply answers, as its connection sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Answered {
    /// The response's version in the protocol's own terms.
    pub version: String,
    /// The snapshot revision the response was made from.
    pub revision: u64,
}

/// The one ACK/NACK core of SotW and Delta: what a reply (`error` set: a NACK) to the
/// response `answered` (sent with `nonce`) says.
pub(crate) fn reply_event(
    type_url: &str,
    nonce: &str,
    error: Option<&envoy_types::pb::google::rpc::Status>,
    answered: Answered,
) -> Event {
    match error {
        Some(status) => Event::Nacked(Nack {
            type_url: type_url.to_string(),
            rejected_version: answered.version,
            revision: answered.revision,
            nonce: nonce.to_string(),
            code: status.code,
            message: status.message.clone(),
        }),
        None => Event::Acked {
            type_url: type_url.to_string(),
            version: answered.version,
        },
    }
}
