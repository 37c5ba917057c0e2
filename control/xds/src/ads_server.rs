//! The ADS gRPC service, routed by hand instead of through envoy-types' generated server,
//! for its codec. The generated server encodes with prost's default codec, which grows each
//! stream's encode buffer by doubling while it writes a message: after a 100 KB EDS
//! response the stream keeps a ~128 KB allocation alive through the unsent tail of its
//! buffer, for as long as the stream lives. With 10,000 sidecars that was ~0.8 GiB of
//! retained buffers (`scripts/bench-control`, D102). [`SizedEncoder`] reserves each
//! message's exact encoded length first, so a large response gets an allocation of its own
//! size that is freed once HTTP/2 has sent it, and the buffer falls back to its small
//! initial size.
//!
//! The service trait is still envoy-types' [`AggregatedDiscoveryService`]; only the routing
//! and the codec are written here.

use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryService;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use prost::Message;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{http, Body, BoxFuture, Service, StdError};
use tonic::server::{Grpc, NamedService, StreamingService};
use tonic::{Request, Response, Status, Streaming};

/// The gRPC service name (the path prefix Envoy calls).
pub const SERVICE_NAME: &str = "envoy.service.discovery.v3.AggregatedDiscoveryService";
const SOTW_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
const DELTA_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

/// Each stream's encode buffer starts (and falls back to) this size: ACKed configuration
/// updates are mostly a few KB.
const BUFFER_SIZE: usize = 4 * 1024;
/// Ready responses of one stream are written out together up to this many bytes.
const YIELD_THRESHOLD: usize = 32 * 1024;

/// `T`'s two ADS methods behind [`SizedCodec`]; everything else is `UNIMPLEMENTED`, as
/// from a generated server.
pub struct AdsServer<T> {
    inner: Arc<T>,
    max_decoding_message_size: usize,
}

impl<T> AdsServer<T> {
    /// Requests larger than `max_decoding_message_size` are refused with
    /// `RESOURCE_EXHAUSTED` before they are decoded.
    pub fn new(inner: T, max_decoding_message_size: usize) -> Self {
        Self {
            inner: Arc::new(inner),
            max_decoding_message_size,
        }
    }
}

impl<T> Clone for AdsServer<T> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            max_decoding_message_size: self.max_decoding_message_size,
        }
    }
}

impl<T> NamedService for AdsServer<T> {
    const NAME: &'static str = SERVICE_NAME;
}

impl<T, B> Service<http::Request<B>> for AdsServer<T>
where
    T: AggregatedDiscoveryService,
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
        let inner = Arc::clone(&self.inner);
        let limit = Some(self.max_decoding_message_size);
        match request.uri().path() {
            SOTW_PATH => Box::pin(async move {
                let mut grpc = Grpc::new(SizedCodec::<DiscoveryResponse, DiscoveryRequest>::new())
                    .apply_max_message_size_config(limit, None);
                Ok(grpc.streaming(Sotw(inner), request).await)
            }),
            DELTA_PATH => Box::pin(async move {
                let mut grpc =
                    Grpc::new(SizedCodec::<DeltaDiscoveryResponse, DeltaDiscoveryRequest>::new())
                        .apply_max_message_size_config(limit, None);
                Ok(grpc.streaming(Delta(inner), request).await)
            }),
            _ => Box::pin(async move { Ok(Status::unimplemented("").into_http()) }),
        }
    }
}

struct Sotw<T>(Arc<T>);

impl<T: AggregatedDiscoveryService> StreamingService<DiscoveryRequest> for Sotw<T> {
    type Response = DiscoveryResponse;
    type ResponseStream = T::StreamAggregatedResourcesStream;
    type Future = BoxFuture<Response<Self::ResponseStream>, Status>;

    fn call(&mut self, request: Request<Streaming<DiscoveryRequest>>) -> Self::Future {
        let inner = Arc::clone(&self.0);
        Box::pin(async move { inner.stream_aggregated_resources(request).await })
    }
}

struct Delta<T>(Arc<T>);

impl<T: AggregatedDiscoveryService> StreamingService<DeltaDiscoveryRequest> for Delta<T> {
    type Response = DeltaDiscoveryResponse;
    type ResponseStream = T::DeltaAggregatedResourcesStream;
    type Future = BoxFuture<Response<Self::ResponseStream>, Status>;

    fn call(&mut self, request: Request<Streaming<DeltaDiscoveryRequest>>) -> Self::Future {
        let inner = Arc::clone(&self.0);
        Box::pin(async move { inner.delta_aggregated_resources(request).await })
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
