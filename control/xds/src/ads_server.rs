//! The ADS gRPC service, routed by hand instead of through envoy-types' generated server,
//! for what goes on the wire (D102):
//!
//! - **State of the world**: a response is sent as [`SotwResponse::grpc_chunks`] — its own
//!   small fields, then each resource's encoding as the snapshot holds it. Streams share
//!   those bytes: while 10,000 sidecars wait for the same 90 KB of endpoints, HTTP/2 holds
//!   one copy of them and 10,000 small heads, where tonic's codec encoded (and the
//!   generated server cloned) a full copy per stream.
//! - **Delta**: tonic's streaming path with [`SizedCodec`], which reserves each message's
//!   exact length before encoding it. prost's default codec grows a stream's buffer by
//!   doubling, and the unsent tail of a ~128 KB buffer kept it alive for the stream's life.
//!
//! Requests are decoded by tonic's `Streaming` in both: an undecodable request, or one over
//! the size limit, ends the stream with the gRPC status saying so.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest,
};
use http_body::Frame;
use prost::bytes::Bytes;
use prost::Message;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder, Streaming};
use tonic::codegen::{http, Body, BoxFuture, Service, StdError};
use tonic::server::{Grpc, NamedService, StreamingService};
use tonic::{Request, Response, Status};

use crate::delta::DeltaConnection;
use crate::resource::SotwResponse;
use crate::sotw::SotwConnection;
use crate::state::XdsState;
use crate::stream::{start, ResponseStream};

/// The gRPC service name (the path prefix Envoy calls).
pub const SERVICE_NAME: &str = "envoy.service.discovery.v3.AggregatedDiscoveryService";
const SOTW_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
const DELTA_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

/// Each stream's encode and decode buffers start at (and fall back to) this size: ACKs and
/// configuration updates are mostly a few KB.
const BUFFER_SIZE: usize = 4 * 1024;
/// Ready responses of one Delta stream are written out together up to this many bytes.
const YIELD_THRESHOLD: usize = 32 * 1024;

/// Both ADS methods over `state`; everything else is `UNIMPLEMENTED`, as from a generated
/// server.
#[derive(Clone)]
pub struct AdsServer {
    state: Arc<XdsState>,
    max_decoding_message_size: usize,
}

impl AdsServer {
    /// Requests larger than `max_decoding_message_size` end their stream with
    /// `OUT_OF_RANGE` before they are decoded.
    pub fn new(state: Arc<XdsState>, max_decoding_message_size: usize) -> Self {
        Self {
            state,
            max_decoding_message_size,
        }
    }
}

impl NamedService for AdsServer {
    const NAME: &'static str = SERVICE_NAME;
}

impl<B> Service<http::Request<B>> for AdsServer
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let state = Arc::clone(&self.state);
        let limit = Some(self.max_decoding_message_size);
        match request.uri().path() {
            SOTW_PATH => Box::pin(async move { Ok(sotw(&state, request, limit)) }),
            DELTA_PATH => Box::pin(async move {
                let mut grpc =
                    Grpc::new(SizedCodec::<DeltaDiscoveryResponse, DeltaDiscoveryRequest>::new())
                        .apply_max_message_size_config(limit, None);
                Ok(grpc.streaming(Delta(state), request).await)
            }),
            _ => Box::pin(async move { Ok(Status::unimplemented("").into_http()) }),
        }
    }
}

/// A SotW stream: requests decoded by tonic, responses written as shared chunks.
fn sotw<B>(
    state: &Arc<XdsState>,
    request: http::Request<B>,
    limit: Option<usize>,
) -> http::Response<tonic::body::Body>
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    let (parts, body) = request.into_parts();
    // Envoy sends xDS uncompressed; a compressed request cannot be read.
    if let Some(encoding) = parts.headers.get("grpc-encoding") {
        if encoding.as_bytes() != b"identity" {
            return Status::unimplemented(format!(
                "grpc-encoding {}: only uncompressed requests are served",
                String::from_utf8_lossy(encoding.as_bytes())
            ))
            .into_http();
        }
    }
    let requests = Streaming::new_request(
        ProtoDecoder::<DiscoveryRequest>(PhantomData),
        body,
        None,
        limit,
    );
    let request = Request::from_http(http::Request::from_parts(parts, requests));
    let responses = start::<SotwConnection>(state, request);
    let mut response = http::Response::new(tonic::body::Body::new(ChunkedBody {
        responses,
        chunks: VecDeque::new(),
        ended: false,
    }));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    response
}

/// A SotW stream's response body: each response's chunks as DATA frames, then the trailers
/// with the stream's final status. Polled by HTTP/2 only when the stream may send, so
/// responses not yet sent wait as [`SotwResponse`]s (sharing their resources' bytes).
struct ChunkedBody {
    responses: ResponseStream<SotwResponse>,
    chunks: VecDeque<Bytes>,
    ended: bool,
}

impl ChunkedBody {
    fn trailers(&mut self, status: &Status) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        self.ended = true;
        let mut trailers = http::HeaderMap::new();
        match status.add_header(&mut trailers) {
            Ok(()) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            // A status that cannot be written as headers: the stream is reset instead.
            Err(status) => Poll::Ready(Some(Err(status))),
        }
    }
}

impl http_body::Body for ChunkedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        loop {
            if let Some(chunk) = self.chunks.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(chunk))));
            }
            if self.ended {
                return Poll::Ready(None);
            }
            match self.responses.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(response))) => match response.grpc_chunks() {
                    Some(chunks) => self.chunks.extend(chunks),
                    None => {
                        return self.trailers(&Status::resource_exhausted(
                            "a response over gRPC's 4 GiB message limit",
                        ))
                    }
                },
                Poll::Ready(Some(Err(status))) => return self.trailers(&status),
                Poll::Ready(None) => return self.trailers(&Status::ok("")),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.chunks.is_empty()
    }
}

struct Delta(Arc<XdsState>);

impl StreamingService<DeltaDiscoveryRequest> for Delta {
    type Response = DeltaDiscoveryResponse;
    type ResponseStream = ResponseStream<DeltaDiscoveryResponse>;
    type Future = BoxFuture<Response<Self::ResponseStream>, Status>;

    fn call(&mut self, request: Request<Streaming<DeltaDiscoveryRequest>>) -> Self::Future {
        let state = Arc::clone(&self.0);
        Box::pin(async move { Ok(Response::new(start::<DeltaConnection>(&state, request))) })
    }
}

/// Protobuf in both directions, encoding each message into space reserved for exactly its
/// length (module comment).
pub struct SizedCodec<E, D>(PhantomData<fn(E) -> D>);

impl<E, D> SizedCodec<E, D> {
    pub fn new() -> Self {
        Self(PhantomData)
    }
}

impl<E, D> Default for SizedCodec<E, D> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E, D> Codec for SizedCodec<E, D>
where
    E: Message + Send + 'static,
    D: Message + Default + Send + 'static,
{
    type Encode = E;
    type Decode = D;
    type Encoder = SizedEncoder<E>;
    type Decoder = ProtoDecoder<D>;

    fn encoder(&mut self) -> Self::Encoder {
        SizedEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProtoDecoder(PhantomData)
    }
}

/// Reserves the message's encoded length, then encodes it.
pub struct SizedEncoder<E>(PhantomData<fn(E)>);

impl<E: Message> Encoder for SizedEncoder<E> {
    type Item = E;
    type Error = Status;

    fn encode(&mut self, item: E, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.reserve(item.encoded_len());
        item.encode(dst)
            .map_err(|error| Status::internal(format!("encoding a response: {error}")))
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::new(BUFFER_SIZE, YIELD_THRESHOLD)
    }
}

/// Plain protobuf decoding; a malformed request is `INVALID_ARGUMENT` naming the error.
pub struct ProtoDecoder<D>(PhantomData<fn() -> D>);

impl<D: Message + Default> Decoder for ProtoDecoder<D> {
    type Item = D;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<D>, Status> {
        D::decode(src)
            .map(Some)
            .map_err(|error| Status::invalid_argument(format!("malformed request: {error}")))
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::new(BUFFER_SIZE, YIELD_THRESHOLD)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> Arc<XdsState> {
        XdsState::new(
            crate::XdsSettings {
                module_source: crate::ModuleSource {
                    cluster: "weft_xds".into(),
                    base_url: "http://cp".into(),
                },
                grace: std::time::Duration::from_secs(1),
                mesh_warmup: std::time::Duration::ZERO,
            },
            crate::WasmModules::default(),
        )
    }

    /// A compressed request cannot be read: it is refused before any stream starts, with
    /// `UNIMPLEMENTED` naming the encoding; `identity` is no compression and is served.
    #[tokio::test]
    async fn a_compressed_request_is_refused_naming_the_encoding() {
        let state = state();
        for (encoding, refused) in [("gzip", true), ("identity", false)] {
            let request = http::Request::builder()
                .uri(SOTW_PATH)
                .header("content-type", "application/grpc")
                .header("grpc-encoding", encoding)
                .body(tonic::body::Body::empty())
                .unwrap();
            let response = sotw(&state, request, Some(1024));
            let status = response
                .headers()
                .get("grpc-status")
                .map(|v| v.to_str().unwrap().to_string());
            if refused {
                assert_eq!(status.as_deref(), Some("12"), "{encoding}");
                let message = response.headers()["grpc-message"].to_str().unwrap();
                assert!(message.contains("gzip"), "{message}");
            } else {
                // Served: the status comes in the trailers, at the stream's end.
                assert_eq!(status, None, "{encoding}");
            }
        }
    }
}
