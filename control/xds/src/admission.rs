//! Who may open a stream: the bounds on what one ADS stream may ask of the server, and the
//! node check every stream passes before anything else (the join token included) is read.

use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;

use crate::sidecar::NodeIdentity;

/// Bounds on what one ADS stream may ask of the server. With the CA on, a join token is a
/// credential for one identity; these keep its holder from growing the server's memory or
/// work without bound, and a stream that says nothing from holding a task forever.
#[derive(Clone, Debug)]
pub struct StreamLimits {
    /// `node.id` longer than this is refused (bytes).
    pub max_node_id_bytes: usize,
    /// `node.cluster` (the service), `namespace` and `version` longer than this are refused.
    pub max_name_bytes: usize,
    /// `node.metadata` whose encoding is longer than this is refused (bytes).
    pub max_metadata_bytes: usize,
    /// A stream that sends no request within this time is closed.
    pub first_message_timeout: Duration,
    /// With the CA on: open streams per identity (namespace, service). Replicas of one
    /// service share its identity, so this is a replica count, not one per node.
    pub max_streams_per_identity: usize,
    /// With the CA on: sidecar groups (versions) per identity that no policy declares.
    pub max_groups_per_identity: usize,
    /// Sidecar groups that no policy declares, over all identities.
    pub max_undeclared_groups: usize,
    /// HTTP/2 streams per connection (ADS, module fetches and telemetry reports share it).
    pub max_streams_per_connection: u32,
}

impl Default for StreamLimits {
    fn default() -> Self {
        Self {
            max_node_id_bytes: 256,
            max_name_bytes: 253,
            max_metadata_bytes: 16 * 1024,
            first_message_timeout: Duration::from_secs(10),
            max_streams_per_identity: 64,
            max_groups_per_identity: 16,
            max_undeclared_groups: 1024,
            max_streams_per_connection: 64,
        }
    }
}

/// A stream the server will not take, with the counter label and the gRPC status code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// `bad_node`, `too_many_streams`, `too_many_groups`, `first_message_timeout`.
    pub reason: &'static str,
    pub code: tonic::Code,
    pub message: String,
}

impl Refused {
    pub(crate) fn new(reason: &'static str, code: tonic::Code, message: String) -> Self {
        Self {
            reason,
            code,
            message,
        }
    }
}

/// Checks the parts of a node the server keeps and names things after, before anything else
/// (the token included) is looked at.
pub fn check_node(node: &Node, limits: &StreamLimits) -> Result<(), Refused> {
    use prost::Message;
    let bad = |message: String| Refused::new("bad_node", tonic::Code::InvalidArgument, message);
    if node.id.is_empty() || node.id.len() > limits.max_node_id_bytes {
        return Err(bad(format!(
            "node.id: {} bytes (1 to {} allowed)",
            node.id.len(),
            limits.max_node_id_bytes
        )));
    }
    if let Some(metadata) = &node.metadata {
        let len = metadata.encoded_len();
        if len > limits.max_metadata_bytes {
            return Err(bad(format!(
                "node.metadata: {len} bytes (at most {} allowed)",
                limits.max_metadata_bytes
            )));
        }
    }
    let identity = NodeIdentity::from_node(node, None);
    for (field, value) in [
        ("node.cluster", &identity.service),
        ("node.metadata.namespace", &identity.namespace),
        ("node.metadata.version", &identity.version),
    ] {
        let ok = !value.is_empty()
            && value.len() <= limits.max_name_bytes
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
        if !ok {
            return Err(bad(format!(
                "{field}: {:?} must be 1 to {} letters, digits, '-', '.' or '_'",
                truncated(value, 64),
                limits.max_name_bytes
            )));
        }
    }
    Ok(())
}

/// At most `max` bytes of `text`, cut at a character boundary (for logs and refusals).
pub(crate) fn truncated(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value};

    fn mk_node(id: &str, cluster: &str, meta: &[(&str, &str)]) -> Node {
        Node {
            id: id.into(),
            cluster: cluster.into(),
            metadata: Some(Struct {
                fields: meta
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.to_string(),
                            Value {
                                kind: Some(Kind::StringValue(v.to_string())),
                            },
                        )
                    })
                    .collect(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn nodes_are_checked_field_by_field() {
        let limits = StreamLimits::default();
        let ok = mk_node("reviews-v1", "reviews", &[("version", "v1")]);
        assert_eq!(check_node(&ok, &limits), Ok(()));
        let long_id = "n".repeat(257);
        let long_name = "s".repeat(254);
        let big = "x".repeat(20_000);
        let cases = [
            (mk_node(&long_id, "reviews", &[]), "node.id"),
            (mk_node("", "reviews", &[]), "node.id"),
            (mk_node("n", "", &[]), "node.cluster"),
            (mk_node("n", &long_name, &[]), "node.cluster"),
            (mk_node("n", "a/b", &[]), "node.cluster"),
            (
                mk_node("n", "r", &[("namespace", "a b")]),
                "node.metadata.namespace",
            ),
            (
                mk_node("n", "r", &[("version", "v1\n")]),
                "node.metadata.version",
            ),
            (mk_node("n", "r", &[("junk", &big)]), "node.metadata"),
        ];
        for (node, field) in cases {
            let refused = check_node(&node, &limits).unwrap_err();
            assert_eq!(refused.reason, "bad_node");
            assert_eq!(refused.code, tonic::Code::InvalidArgument);
            assert!(refused.message.starts_with(field), "{field}: {refused:?}");
        }
        // Exactly at the limits is fine.
        let edge = mk_node(&"n".repeat(256), &"s".repeat(253), &[]);
        assert_eq!(check_node(&edge, &limits), Ok(()));
    }

    #[test]
    fn truncation_respects_character_boundaries() {
        assert_eq!(truncated("abc", 5), "abc");
        assert_eq!(truncated("abcdef", 3), "abc...");
        assert_eq!(truncated("ééé", 3), "é...");
    }
}
