//! The local replies an abort sends: plain HTTP, or a gRPC trailers-only response.

/// A local reply for the host to send: status, headers and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbortReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// Both forms of one configured abort, built once at configuration time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct AbortReplies {
    pub http: AbortReply,
    pub grpc: AbortReply,
}

impl AbortReplies {
    pub fn new(http_status: u16, grpc_status: Option<u8>, body: &str) -> Self {
        let grpc_status = grpc_status.unwrap_or_else(|| grpc_status_for_http(http_status));
        Self {
            http: http_reply(http_status, body),
            grpc: grpc_reply(grpc_status, body),
        }
    }

    pub fn pick(&self, grpc: bool) -> AbortReply {
        if grpc {
            self.grpc.clone()
        } else {
            self.http.clone()
        }
    }
}

fn http_reply(status: u16, body: &str) -> AbortReply {
    let headers = if body.is_empty() {
        Vec::new()
    } else {
        vec![("content-type".to_string(), "text/plain".to_string())]
    };
    AbortReply {
        status,
        headers,
        body: body.to_string(),
    }
}

/// A trailers-only gRPC response: HTTP 200 whose headers carry `grpc-status` (and
/// `grpc-message`), no body. Envoy keeps these headers when it shapes the local reply
/// of a gRPC request.
fn grpc_reply(code: u8, message: &str) -> AbortReply {
    let mut headers = vec![
        ("content-type".to_string(), "application/grpc".to_string()),
        ("grpc-status".to_string(), code.to_string()),
    ];
    if !message.is_empty() {
        headers.push((
            "grpc-message".to_string(),
            percent_encode_grpc_message(message),
        ));
    }
    AbortReply {
        status: 200,
        headers,
        body: String::new(),
    }
}

/// Is this a gRPC request, by its `content-type`?
pub fn is_grpc_content_type(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| {
        ct.get(..16)
            .is_some_and(|p| p.eq_ignore_ascii_case("application/grpc"))
    })
}

/// gRPC status for an HTTP status, as gRPC's "HTTP to gRPC status code mapping" has it.
pub fn grpc_status_for_http(http_status: u16) -> u8 {
    match http_status {
        400 => 13,                   // INTERNAL
        401 => 16,                   // UNAUTHENTICATED
        403 => 7,                    // PERMISSION_DENIED
        404 => 12,                   // UNIMPLEMENTED
        429 | 502 | 503 | 504 => 14, // UNAVAILABLE
        _ => 2,                      // UNKNOWN
    }
}

/// `grpc-message` is percent-encoded: bytes outside printable ASCII, and `%` itself.
pub fn percent_encode_grpc_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for b in message.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
