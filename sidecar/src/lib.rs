//! flumewatch sidecar: polls the Flume agents on one host and streams typed snapshots to the
//! aggregator.
//!
//! ```text
//!  Flume /metrics ──HTTP──▶ flume::client ─bytes─▶ flume::parse ─▶ Snapshot
//!        (per agent, every interval: poller)                             │
//!                                                                        ▼
//!  aggregator ◀──gRPC Ingest/Report── uplink::session ◀── uplink::ReplayBuffer (bounded, unacked)
//!                       acks ──────────────────────────▶ forget acknowledged snapshots
//! ```
//!
//! The typed [`Snapshot`](flumewatch_proto::model::Snapshot) and its wire mapping are the shared
//! model in `flumewatch-proto`; only Flume's JSON is read here.

pub mod config;
pub mod flume;
mod poller;
mod stats;
pub mod uplink;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::Config;

/// Why the sidecar could not start. Not retryable without a config change.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(#[from] reqwest::Error),
    #[error("invalid aggregator address: {0}")]
    Aggregator(#[from] tonic::transport::Error),
}

/// Runs the sidecar until `shutdown` is cancelled, then stops polling and gives the uplink up
/// to [`uplink::DRAIN_GRACE`] to hand over what the aggregator has not acknowledged.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), RunError> {
    let client = flume::FlumeClient::new(config.timeout, config.max_body_bytes)?;
    let buffer = uplink::ReplayBuffer::with_window(config.buffer, config.replay_window);
    let stats = Arc::new(stats::Stats::default());
    let uplink = uplink::Uplink::new(&config, buffer.clone(), stats.clone())?;
    tracing::info!(
        host = %config.host,
        agents = config.agents.len(),
        aggregator = %config.aggregator,
        interval = %humantime::format_duration(config.interval),
        "sidecar started"
    );

    let tracker = TaskTracker::new();
    for endpoint in config.agents.clone() {
        let poller = poller::Poller {
            endpoint,
            client: client.clone(),
            interval: config.interval,
            buffer: buffer.clone(),
            stats: stats.clone(),
        };
        tracker.spawn(poller.run(shutdown.clone()));
    }
    tracker.spawn(uplink.run(shutdown.clone()));
    tracker.close();
    tracker.wait().await;
    tracing::info!(
        unsent = buffer.len(),
        dropped = buffer.dropped(),
        "sidecar stopped"
    );
    Ok(())
}
