// Over 400 lines: the stream loop, its token checks and the refusals it sends share the stream's state; the tests at the end need its guard.
//! One ADS stream: the task that runs a connection's state machine (SotW or Delta) in a
//! `select!` loop around its requests, its group's snapshots, its join token's checks and
//! NACK retries. Snapshots arrive through a `watch` receiver, so a slow sidecar only ever
//! skips to the newest snapshot and never delays another.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest,
};
use tokio::sync::mpsc;
use tokio_stream::{wrappers::ReceiverStream, Stream};
use tonic::{Request, Status, Streaming};

use crate::delta::DeltaConnection;
use crate::event::Event;
use crate::nack_retry::{NackRetry, RetryAction};
use crate::resource::SotwResponse;
use crate::snapshot::Snapshot;
use crate::sotw::{ProtocolError, SotwConnection};
use crate::state::{check_node, truncated, NodeIdentity, NodeKey, Refusal, Refused, XdsState};
use crate::token_watch::{Now, TokenAction, TokenEvent, TokenWatch};

/// Responses queued per stream before its task waits for the sidecar to read.
const STREAM_BUFFER: usize = 8;

/// The stream of one ADS stream's responses (ended by an error status or by the stream task
/// ending).
pub(crate) type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Starts the task that runs one ADS stream; its responses come out of the returned stream.
pub(crate) fn start<M: Machine>(
    state: &Arc<XdsState>,
    request: Request<Streaming<M::Request>>,
) -> ResponseStream<M::Response> {
    let peer_ip = request.remote_addr().map(|a| a.ip().to_string());
    let token = request
        .metadata()
        .get(crate::bootstrap::TOKEN_METADATA_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    tokio::spawn(drive::<M>(
        Arc::clone(state),
        request.into_inner(),
        tx,
        peer_ip,
        token,
    ));
    Box::pin(ReceiverStream::new(rx))
}

/// Marks the sidecar disconnected however the stream task ends.
struct ConnectionGuard {
    state: Arc<XdsState>,
    node: NodeKey,
    connection: u64,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.state.disconnected(&self.node, self.connection);
    }
}

/// Counts and logs a refused stream; returns its status.
fn refuse(state: &XdsState, node: Option<&Node>, refused: Refused) -> Status {
    let (node_id, claimed) = match node {
        Some(node) => {
            let identity = NodeIdentity::from_node(node, None);
            (
                truncated(&identity.id, 256),
                truncated(&format!("{}/{}", identity.namespace, identity.service), 256),
            )
        }
        None => (String::new(), String::new()),
    };
    state.refused(Refusal {
        node_id,
        claimed,
        token_identity: None,
        reason: refused.reason.into(),
        message: refused.message.clone(),
        at_ms: std::time::UNIX_EPOCH
            .elapsed()
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        logged: false,
    });
    Status::new(refused.code, refused.message)
}

async fn drive<M: Machine>(
    state: Arc<XdsState>,
    mut requests: Streaming<M::Request>,
    tx: mpsc::Sender<Result<M::Response, Status>>,
    peer_ip: Option<String>,
    token: Option<String>,
) {
    let limits = state.limits();
    let first = match tokio::time::timeout(limits.first_message_timeout, requests.message()).await {
        Ok(Ok(Some(first))) => first,
        Ok(Ok(None)) => return,
        // Undecodable or over the size limit: the client learns why its stream ended.
        Ok(Err(status)) => {
            let _ = tx.send(Err(status)).await;
            return;
        }
        Err(_) => {
            let refused = Refused {
                reason: "first_message_timeout",
                code: tonic::Code::DeadlineExceeded,
                message: format!(
                    "no request within {} ms of opening the stream",
                    limits.first_message_timeout.as_millis()
                ),
            };
            let _ = tx.send(Err(refuse(&state, None, refused))).await;
            return;
        }
    };
    let Some(node) = M::node(&first).cloned() else {
        let _ = tx
            .send(Err(Status::invalid_argument(
                "the first request must carry the node",
            )))
            .await;
        return;
    };
    if let Err(refused) = check_node(&node, &limits) {
        let _ = tx.send(Err(refuse(&state, Some(&node), refused))).await;
        return;
    }
    let identity = NodeIdentity::from_node(&node, peer_ip);
    // With the CA on, nothing (no certificate, no configuration) before the token checks out.
    let (mut token, mut token_watch) = match admit_token(&state, &identity, token) {
        Ok(admitted) => admitted,
        Err(status) => {
            let _ = tx.send(Err(status)).await;
            return;
        }
    };
    let (connection, mut snapshots) = match state.connected(&identity, M::PROTOCOL) {
        Ok(connected) => connected,
        Err(refused) => {
            let _ = tx.send(Err(refuse(&state, Some(&node), refused))).await;
            return;
        }
    };
    let node_key = identity.key();
    let _guard = ConnectionGuard {
        state: Arc::clone(&state),
        node: node_key.clone(),
        connection,
    };
    tracing::info!(node = %identity.id, service = %identity.service, version = %identity.version, protocol = M::PROTOCOL, "sidecar connected");
    let mut machine = M::new(snapshots.borrow_and_update().clone());
    let mut next = Some(first);
    let mut retry = NackRetry::default();
    // The oldest push this sidecar has not acknowledged yet (push-to-ACK metric).
    let mut push_pending = None;
    loop {
        let responses = match next.take() {
            Some(request) => machine.handle_request(request),
            None => tokio::select! {
                message = requests.message() => match message {
                    Ok(Some(request)) => machine.handle_request(request),
                    Ok(None) => break,
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        break;
                    }
                },
                changed = snapshots.changed() => match changed {
                    Ok(()) => {
                        let snapshot = snapshots.borrow_and_update().clone();
                        if snapshot.revision != machine.snapshot_revision() {
                            // A new policy: it gets its own retries, and a retry still
                            // due for the old one stays due (a held type is only released
                            // by it).
                            retry.new_revision();
                        }
                        Ok(machine.handle_update(snapshot))
                    }
                    Err(_) => break,
                },
                Ok(()) = revoked(token.as_mut()) => {
                    let action = token_watch.on_event(TokenEvent::Revocation, Now::current());
                    match token_step(&state, &identity, token.as_ref(), &mut token_watch, action) {
                        Ok(()) => Ok(Vec::new()),
                        Err(status) => {
                            let _ = tx.send(Err(status)).await;
                            break;
                        }
                    }
                },
                () = sleep_until(token_watch.deadline()) => {
                    let action = token_watch.on_tick(Now::current());
                    match token_step(&state, &identity, token.as_ref(), &mut token_watch, action) {
                        Ok(()) => Ok(Vec::new()),
                        Err(status) => {
                            let _ = tx.send(Err(status)).await;
                            break;
                        }
                    }
                },
                () = sleep_until(retry.deadline()) => match retry.on_tick(tokio::time::Instant::now()) {
                    RetryAction::Wait => Ok(Vec::new()),
                    action => {
                        let mut out = machine.resend_nacked(false);
                        if action == RetryAction::Retry {
                            state.refresh_group(&identity.group());
                        }
                        out.extend(machine.handle_update(snapshots.borrow_and_update().clone()));
                        Ok(out)
                    }
                },
            },
        };
        let responses = match responses {
            Ok(responses) => responses,
            Err(error) => {
                let _ = tx
                    .send(Err(Status::invalid_argument(error.to_string())))
                    .await;
                break;
            }
        };
        let pushed = responses.len();
        for response in responses {
            if tx.send(Ok(response)).await.is_err() {
                return;
            }
        }
        let synced = machine
            .is_synced()
            .then(|| (machine.snapshot_revision(), machine.running_modules()));
        let events = machine.drain_events();
        state
            .metrics()
            .after_round(pushed, &events, &mut push_pending);
        if let Some(message) = events.iter().rev().find_map(|e| match e {
            Event::Nacked(nack) => Some(nack.message.as_str()),
            _ => None,
        }) {
            retry.schedule(tokio::time::Instant::now(), message);
        }
        state.record(&node_key, events, synced);
    }
    tracing::info!(node = %identity.id, "sidecar stream ended");
}

/// The join token of a stream (the CA is on), with what re-checking it needs.
struct StreamToken {
    authority: Arc<weft_ca::Identity>,
    token: String,
    revocations: tokio::sync::watch::Receiver<u64>,
}

/// Checks the stream's token when it starts; the watch then says when to check it again.
fn admit_token(
    state: &XdsState,
    identity: &NodeIdentity,
    token: Option<String>,
) -> Result<(Option<StreamToken>, TokenWatch), Status> {
    let Some(authority) = state.identity() else {
        return Ok((None, TokenWatch::off()));
    };
    let revocations = authority.tokens.subscribe_revocations();
    let token = token.unwrap_or_default();
    let exp = authenticate(state, &authority, &token, identity)?;
    let watch = TokenWatch::admitted(exp, Now::current());
    Ok((
        Some(StreamToken {
            authority,
            token,
            revocations,
        }),
        watch,
    ))
}

/// Resolves at the next revocation (never without a token; `Err` when the token store is
/// gone, which disables the branch).
async fn revoked(
    token: Option<&mut StreamToken>,
) -> Result<(), tokio::sync::watch::error::RecvError> {
    match token {
        Some(token) => token.revocations.changed().await,
        None => std::future::pending().await,
    }
}

/// Resolves at `deadline` (never without one).
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Performs what the token watch asked for; `Err` ends the stream with that status.
fn token_step(
    state: &XdsState,
    identity: &NodeIdentity,
    token: Option<&StreamToken>,
    watch: &mut TokenWatch,
    action: TokenAction,
) -> Result<(), Status> {
    let (TokenAction::Check, Some(token)) = (action, token) else {
        return Ok(());
    };
    match authenticate(state, &token.authority, &token.token, identity) {
        Ok(exp) => {
            watch.on_event(TokenEvent::Verified { exp }, Now::current());
            Ok(())
        }
        Err(status) => {
            watch.on_event(TokenEvent::Refused, Now::current());
            Err(status)
        }
    }
}

/// Verifies `token` and that it names the identity the node claims; a refusal is logged,
/// counted and returned as the stream's status. Returns the token's expiry (unix seconds).
fn authenticate(
    state: &XdsState,
    authority: &weft_ca::Identity,
    token: &str,
    identity: &NodeIdentity,
) -> Result<u64, Status> {
    let claimed = format!("{}/{}", identity.namespace, identity.service);
    let refuse = |reason: &str, message: String, token_identity: Option<String>| {
        state.refused(Refusal {
            node_id: identity.id.clone(),
            claimed: claimed.clone(),
            token_identity,
            reason: reason.into(),
            message: message.clone(),
            at_ms: std::time::UNIX_EPOCH
                .elapsed()
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            logged: false,
        });
        message
    };
    let claims = authority
        .tokens
        .verify(token, std::time::SystemTime::now())
        .map_err(|e| Status::unauthenticated(refuse(e.reason(), e.to_string(), None)))?;
    let holder = format!("{}/{}", claims.namespace, claims.service);
    if holder != claimed {
        let message = format!(
            "token {} is for {holder}; node {:?} claims {claimed}",
            claims.id, identity.id
        );
        return Err(Status::permission_denied(refuse(
            "identity_mismatch",
            message,
            Some(holder),
        )));
    }
    Ok(claims.exp)
}

/// What the stream loop needs from a connection state machine.
pub(crate) trait Machine: Send + 'static {
    type Request: prost::Message + Default + Send + 'static;
    type Response: Send + 'static;
    const PROTOCOL: &'static str;
    fn new(snapshot: Arc<Snapshot>) -> Self;
    fn node(request: &Self::Request) -> Option<&Node>;
    fn handle_request(
        &mut self,
        request: Self::Request,
    ) -> Result<Vec<Self::Response>, ProtocolError>;
    fn handle_update(&mut self, snapshot: Arc<Snapshot>) -> Vec<Self::Response>;
    fn resend_nacked(&mut self, force: bool) -> Vec<Self::Response>;
    fn is_synced(&self) -> bool;
    fn snapshot_revision(&self) -> u64;
    fn running_modules(&self) -> Arc<BTreeMap<String, String>>;
    fn drain_events(&mut self) -> Vec<Event>;
}

macro_rules! impl_machine {
    ($machine:ty, $request:ty, $response:ty, $protocol:literal) => {
        impl Machine for $machine {
            type Request = $request;
            type Response = $response;
            const PROTOCOL: &'static str = $protocol;
            fn new(snapshot: Arc<Snapshot>) -> Self {
                <$machine>::new(snapshot)
            }
            fn node(request: &Self::Request) -> Option<&Node> {
                request.node.as_ref()
            }
            fn handle_request(
                &mut self,
                request: Self::Request,
            ) -> Result<Vec<Self::Response>, ProtocolError> {
                <$machine>::handle_request(self, request)
            }
            fn handle_update(&mut self, snapshot: Arc<Snapshot>) -> Vec<Self::Response> {
                <$machine>::handle_update(self, snapshot)
            }
            fn resend_nacked(&mut self, force: bool) -> Vec<Self::Response> {
                <$machine>::resend_nacked(self, force)
            }
            fn is_synced(&self) -> bool {
                <$machine>::is_synced(self)
            }
            fn snapshot_revision(&self) -> u64 {
                <$machine>::snapshot_revision(self)
            }
            fn running_modules(&self) -> Arc<BTreeMap<String, String>> {
                <$machine>::running_modules(self)
            }
            fn drain_events(&mut self) -> Vec<Event> {
                <$machine>::drain_events(self)
            }
        }
    };
}

impl_machine!(SotwConnection, DiscoveryRequest, SotwResponse, "sotw");
impl_machine!(
    DeltaConnection,
    DeltaDiscoveryRequest,
    DeltaDiscoveryResponse,
    "delta"
);

#[cfg(test)]
mod tests {
    use super::*;

    /// With `panic = "unwind"` (the release profile since issue 15) a panic in one stream's
    /// task ends that task only: its guard still marks the sidecar disconnected, the state
    /// (whose mutex ignores poisoning) keeps serving the other streams.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_panic_in_one_stream_task_ends_only_that_stream() {
        let settings = crate::XdsSettings {
            module_source: crate::ModuleSource {
                cluster: "weft_xds".into(),
                base_url: "http://cp".into(),
            },
            grace: std::time::Duration::from_secs(60),
            mesh_warmup: std::time::Duration::ZERO,
        };
        let state = XdsState::new(settings, crate::WasmModules::default());
        let node = |id: &str| NodeIdentity {
            id: id.into(),
            namespace: "default".into(),
            service: "reviews".into(),
            version: "v1".into(),
            inbound: None,
            filters: None,
        };
        let (calm, doomed) = (node("calm"), node("doomed"));
        let Ok((calm_connection, _)) = state.connected(&calm, "sotw") else {
            panic!("refused")
        };
        let task = {
            let state = Arc::clone(&state);
            tokio::spawn(async move {
                let Ok((connection, _)) = state.connected(&doomed, "sotw") else {
                    return;
                };
                let _guard = ConnectionGuard {
                    state: Arc::clone(&state),
                    node: doomed.key(),
                    connection,
                };
                let _held = state.lock();
                panic!("a bug in one stream");
            })
        };
        let outcome = task.await;
        assert!(outcome.is_err_and(|e| e.is_panic()));
        let rows: Vec<(String, bool)> = state
            .sidecars()
            .into_iter()
            .map(|s| (s.node_id, s.connected))
            .collect();
        assert_eq!(
            rows,
            [("calm".to_string(), true), ("doomed".to_string(), false)]
        );
        state.disconnected(&calm.key(), calm_connection);
        assert!(state.sidecars().iter().all(|s| !s.connected));
    }
}
