//! Polls one Flume agent on a fixed interval and queues every result, failures included, for
//! every aggregator.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::config::FlumeEndpoint;
use crate::flume::{self, FlumeClient};
use crate::stats::Stats;
use crate::uplink::Fanout;

pub(crate) struct Poller {
    pub endpoint: FlumeEndpoint,
    pub client: FlumeClient,
    pub interval: Duration,
    /// Never waits: each aggregator's buffer drops its own oldest when full.
    pub fanout: Fanout,
    pub stats: Arc<Stats>,
}

impl Poller {
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(self.interval);
        // A slow poll delays the next one instead of firing a burst to catch up.
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_ok: Option<bool> = None;
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let snapshot = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                snapshot = flume::scrape(&self.client, &self.endpoint.name, &self.endpoint.url) => snapshot,
            };
            let ok = snapshot.outcome.is_ok();
            self.stats.record_poll(ok);
            // Log transitions only: a dead agent polled every 10 s must not flood the journal.
            if last_ok != Some(ok) {
                if ok {
                    tracing::info!(agent = %self.endpoint.name, components = snapshot.components.len(), "polling flume");
                } else {
                    tracing::warn!(agent = %self.endpoint.name, outcome = snapshot.outcome.label(), error = snapshot.outcome.error(), "flume poll failed");
                }
                last_ok = Some(ok);
            }
            self.fanout.push(snapshot);
        }
    }
}
