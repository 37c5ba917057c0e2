//! Requests written byte for byte on a TCP socket: an HTTP client library would normalise the
//! paths (`/./admin`, `%61`) and merge repeated headers before sending them, which is exactly
//! what the hostile tests must not have done for them.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A reply read to the end of the connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawReply {
    /// 0 when the connection failed, timed out or the reply had no status line.
    pub status: u16,
    pub body: String,
}

/// `GET <target> HTTP/1.1` with `headers` in the order given, `Host: <host>` and
/// `Connection: close`; nothing in `target` or the header lines is touched.
pub fn raw_get(target: &str, host: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = format!("GET {target} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// Sends `request` to `127.0.0.1:<port>` and reads the reply (at most 5 s).
pub async fn raw_request(port: u16, request: &[u8]) -> RawReply {
    raw_request_to(&format!("127.0.0.1:{port}"), request).await
}

/// [`raw_request`] to any `host:port`.
pub async fn raw_request_to(address: &str, request: &[u8]) -> RawReply {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(address).await?;
        stream.write_all(request).await?;
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await?;
        Ok::<_, std::io::Error>(out)
    };
    let Ok(Ok(bytes)) = tokio::time::timeout(Duration::from_secs(5), attempt).await else {
        return RawReply::default();
    };
    parse_reply(&bytes)
}

/// `<method> <target> HTTP/1.1` with `headers`, `Host`, `Connection: close` and `body`: with
/// `Content-Length`, or with `chunk` > 0 as chunks of that size (`Transfer-Encoding:
/// chunked`). Nothing in `target`, the headers or the body is touched.
pub fn raw_with_body(
    method: &str,
    target: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    chunk: usize,
) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    if chunk == 0 {
        out.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(body);
        return bytes;
    }
    out.push_str("transfer-encoding: chunked\r\n\r\n");
    let mut bytes = out.into_bytes();
    for piece in body.chunks(chunk) {
        bytes.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        bytes.extend_from_slice(piece);
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(b"0\r\n\r\n");
    bytes
}

/// [`raw_request`] that reads while it writes: a proxy may answer (and close) before it has
/// read the whole request, e.g. a refused upload; the reply is what matters (at most 30 s).
pub async fn raw_exchange(port: u16, request: Vec<u8>) -> RawReply {
    let attempt = async {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let (mut reader, mut writer) = stream.into_split();
        let writing = tokio::spawn(async move {
            let _ = writer.write_all(&request).await;
            writer
        });
        let mut out = Vec::new();
        let read = reader.read_to_end(&mut out).await;
        writing.abort();
        read.map(|_| out)
    };
    let Ok(Ok(bytes)) = tokio::time::timeout(Duration::from_secs(30), attempt).await else {
        return RawReply::default();
    };
    parse_reply(&bytes)
}

/// A reply as read: its status (0: no status line) and everything after the head.
fn parse_reply(bytes: &[u8]) -> RawReply {
    let text = String::from_utf8_lossy(bytes);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    RawReply { status, body }
}
