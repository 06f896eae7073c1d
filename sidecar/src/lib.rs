//! flumewatch sidecar: polls the Flume agents on one host and streams typed snapshots to every
//! aggregator it is given (`--aggregator`, repeatable).
//!
//! ```text
//!  Flume /metrics ──HTTP──▶ flume::client ─bytes─▶ flume::parse ─▶ Snapshot
//!        (per agent, every interval: poller)                             │
//!                                                                        ▼
//!                                   uplink::Fanout (numbers and encodes once, shares the bytes)
//!                                              │                          │
//!                                              ▼                          ▼
//!                         uplink::ReplayBuffer (aggregator A)   ReplayBuffer (aggregator B) …
//!  aggregator A ◀──gRPC Ingest/Report── uplink::session ◀─┘                │
//!  aggregator B ◀──gRPC Ingest/Report── uplink::session ◀──────────────────┘
//!                       acks ──────────▶ forget what that aggregator acknowledged
//! ```
//!
//! Each aggregator has its own stream, buffer (bounded: a full one drops its own oldest,
//! counted), acknowledged position, replay window and reconnect backoff; one that is down or
//! slow costs the others nothing. All see the same sequence numbers and the same instance id.
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

/// Log lines the sidecar queues for stdout: it logs state changes, not every poll, and its
/// queue is allocated up front on a host where every MiB is the Flume agent's.
pub const LOG_QUEUE_LINES: usize = 1024;

/// Why the sidecar could not start. Not retryable without a config change.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("invalid aggregator address {address}: {source}")]
    Aggregator {
        address: String,
        source: tonic::transport::Error,
    },
    #[error("--discover: {0}")]
    Discover(#[from] discover::ScanError),
}

/// Runs the sidecar until `shutdown` is cancelled, then stops polling and gives every uplink,
/// in parallel, up to [`uplink::DRAIN_GRACE`] to hand over what its aggregator has not
/// acknowledged.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), RunError> {
    let client = flume::FlumeClient::new(config.timeout, config.max_body_bytes);
    let stats = Arc::new(stats::Stats::default());
    let roster = roster::Roster::new(config.agents.clone());
    // The first scan comes before the uplinks' first Hello, so that it lists the agents found.
    let discoverer = match &config.discover {
        Some(discovery) => {
            let mut discoverer = discover::Discoverer::new(discovery.clone(), roster.clone());
            discoverer.scan_once().await?;
            Some(discoverer)
        }
        None => None,
    };
    let instance_id = uplink::instance_id();
    let uplinks = config
        .aggregators
        .iter()
        .map(|address| {
            uplink::Uplink::new(
                &config,
                address,
                &instance_id,
                stats.clone(),
                roster.clone(),
            )
            .map_err(|source| RunError::Aggregator {
                address: address.clone(),
                source,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Kept to report what each aggregator was left without when the sidecar stops.
    let buffers: Vec<(String, uplink::ReplayBuffer)> = uplinks
        .iter()
        .map(|u| (u.address.clone(), u.buffer.clone()))
        .collect();
    let fanout = uplink::Fanout::new(buffers.iter().map(|(_, b)| b.clone()).collect());
    let agents = roster.agents();
    tracing::info!(
        host = %config.host,
        agents = agents.len(),
        discover = config.discover.is_some(),
        aggregator = %config.aggregators.join(","),
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
        let (fanout, stats, interval) = (fanout.clone(), stats.clone(), config.interval);
        move |endpoint| {
            let poller = poller::Poller {
                endpoint,
                client: client.clone(),
                interval,
                fanout: fanout.clone(),
                stats: stats.clone(),
            };
            tracker.spawn(poller.run(shutdown.clone()));
        }
    };
    agents.into_iter().for_each(&mut start);
    if let Some(discoverer) = discoverer {
        tracker.spawn(discoverer.run(start, shutdown.clone()));
    }
    // One task per aggregator: they reconnect, and drain on the way out, independently.
    for uplink in uplinks {
        tracker.spawn(uplink.run(shutdown.clone()));
    }
    tracker.close();
    tracker.wait().await;
    let (mut unsent, mut dropped) = (0, 0);
    for (address, buffer) in &buffers {
        let (left, lost) = (buffer.len(), buffer.dropped());
        if buffers.len() > 1 {
            tracing::info!(aggregator = %address, unsent = left, dropped = lost, "uplink stopped");
        }
        unsent += left;
        dropped += lost;
    }
    // Summed over the aggregators (one line each above when there are several).
    tracing::info!(unsent, dropped, "sidecar stopped");
    Ok(())
}
