//! weft's control-plane benchmark (issue 10): how long from `POST /api/v1/apply` until the
//! sidecars run the new policy, and what `weft serve` costs in memory and CPU per ADS stream.
//!
//! - [`fleet`]: simulated sidecars, real gRPC ADS (state of the world) streams multiplexed on
//!   a few HTTP/2 connections, subscribing and ACKing like Envoy with weft's bootstrap;
//! - [`tracker`]: which stream received and ACKed which apply, and when;
//! - [`sim`] and [`envoy`]: the two scenarios, simulated streams and real Envoy sidecars;
//! - [`server`]: the `weft serve` under test (a child process) and /proc sampling;
//! - [`report`]: the JSON and Markdown results.
#![forbid(unsafe_code)]

mod delta_stream;
pub mod envoy;
pub mod etcd;
pub mod fleet;
pub mod policy;
pub mod report;
pub mod server;
pub mod sim;
pub mod stats;
pub mod tracker;

/// [`server::apply`] off the async runtime.
pub async fn apply_async(server: &server::WeftServer, documents: String) -> anyhow::Result<u64> {
    let token = server.token.clone().ok_or_else(|| {
        anyhow::anyhow!(
            "{} wrote no admin.token: apply through the replica that started first",
            server.api
        )
    })?;
    let api = server.api.clone();
    tokio::task::spawn_blocking(move || server::apply(&api, &token, &documents)).await?
}
