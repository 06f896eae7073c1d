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
//! The agents polled are the [`Roster`](roster::Roster): the `--flume` entries and, with
//! `--discover`, those [`discover`] finds in the process table (re-scanned on an interval; the
//! roster only grows). Each new agent gets its own poller; the aggregator learns of it from its
//! first snapshot (a Hello is only read when a stream opens), and every later Hello lists it.
//!
//! The typed [`Snapshot`](flumewatch_proto::model::Snapshot) and its wire mapping are the shared
//! model in `flumewatch-proto`; only Flume's JSON is read here.

pub mod config;
pub mod discover;
pub mod flume;
mod poller;
mod roster;
mod stats;
pub mod uplink;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::Config;

/// Why the sidecar could not start. Not retryable without a config change.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("invalid aggregator address: {0}")]
    Aggregator(#[from] tonic::transport::Error),
    #[error("--discover: {0}")]
    Discover(#[from] discover::ScanError),
}

/// Runs the sidecar until `shutdown` is cancelled, then stops polling and gives the uplink up
/// to [`uplink::DRAIN_GRACE`] to hand over what the aggregator has not acknowledged.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), RunError> {
    let client = flume::FlumeClient::new(config.timeout, config.max_body_bytes);
    let buffer = uplink::ReplayBuffer::with_window(config.buffer, config.replay_window);
    let stats = Arc::new(stats::Stats::default());
    let roster = roster::Roster::new(config.agents.clone());
    // The first scan comes before the uplink's first Hello, so that it lists the agents found.
    let discoverer = match &config.discover {
        Some(discovery) => {
            let mut discoverer = discover::Discoverer::new(discovery.clone(), roster.clone());
            discoverer.scan_once().await?;
            Some(discoverer)
        }
        None => None,
    };
    let uplink = uplink::Uplink::new(&config, buffer.clone(), stats.clone(), roster.clone())?;
    let agents = roster.agents();
    tracing::info!(
        host = %config.host,
        agents = agents.len(),
        discover = config.discover.is_some(),
        aggregator = %config.aggregator,
        interval = %humantime::format_duration(config.interval),
        "sidecar started"
    );
    if agents.is_empty() {
        tracing::warn!("no flume agent to poll yet; looking for them in the process table");
    }

    let tracker = TaskTracker::new();
    // Starts polling one agent: those known now, and later those discovery finds.
    let mut start = {
        let (tracker, shutdown) = (tracker.clone(), shutdown.clone());
        let (buffer, stats, interval) = (buffer.clone(), stats.clone(), config.interval);
        move |endpoint| {
            let poller = poller::Poller {
                endpoint,
                client: client.clone(),
                interval,
                buffer: buffer.clone(),
                stats: stats.clone(),
            };
            tracker.spawn(poller.run(shutdown.clone()));
        }
    };
    agents.into_iter().for_each(&mut start);
    if let Some(discoverer) = discoverer {
        tracker.spawn(discoverer.run(start, shutdown.clone()));
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
