//! One uplink per aggregator: each keeps its own gRPC stream alive and feeds it every snapshot
//! in order.
//!
//! Reconnects with capped, jittered backoff; whatever its aggregator has not acknowledged stays
//! in that aggregator's [`ReplayBuffer`] and is sent again, in order, after the next connect.
//! The [`Fanout`] fills every buffer; uplinks share nothing else that can wait, so one
//! aggregator that is down, slow or black-holed costs the others nothing.

mod backoff;
mod buffer;
mod fanout;
mod pacing;
mod session;
mod wire;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flumewatch_proto::v1 as pb;
use tokio_util::sync::CancellationToken;
use tonic::transport::Endpoint;

pub use backoff::Backoff;
pub use buffer::{Outgoing, ReplayBuffer};
pub use fanout::Fanout;
pub use session::SessionError;

use crate::config::Config;
use crate::roster::Roster;
use crate::stats::Stats;

/// How long a stopping sidecar keeps trying to hand its buffered snapshots to an aggregator.
/// The uplinks drain in parallel, so this bounds the stop however many aggregators there are.
pub const DRAIN_GRACE: Duration = Duration::from_secs(3);

pub(crate) struct Uplink {
    /// The aggregator's address as configured: every log line of this uplink names it.
    pub address: String,
    pub endpoint: Endpoint,
    /// The Hello without its agents, which [`Self::hello`] takes from the roster.
    pub hello: pb::Hello,
    /// The agents polled now: each (re)connect lists them all, discovered ones included.
    pub roster: Roster,
    /// This aggregator's own buffer: its acks, drops and replay window.
    pub buffer: ReplayBuffer,
    /// The sidecar's poll counters, shared by every uplink.
    pub stats: Arc<Stats>,
    /// Streams opened to this aggregator.
    pub connects: AtomicU64,
    pub stats_every: Duration,
    pub backoff: Backoff,
    pub token: Option<crate::config::Token>,
}

impl Uplink {
    /// The uplink to the aggregator at `address`. `instance_id` is the sidecar's, the same for
    /// every aggregator: each sees the one process, under the one numbering.
    pub(crate) fn new(
        config: &Config,
        address: &str,
        instance_id: &str,
        stats: Arc<Stats>,
        roster: Roster,
    ) -> Result<Self, tonic::transport::Error> {
        let mut endpoint = Endpoint::from_shared(address.to_owned())?;
        if let Some(tls) = &config.tls {
            let mut client_tls = tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(&tls.ca));
            if let Some((cert, key)) = &tls.identity {
                client_tls = client_tls.identity(tonic::transport::Identity::from_pem(cert, key));
            }
            endpoint = endpoint.tls_config(client_tls)?;
        }
        let endpoint = endpoint
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            // Notices a vanished aggregator (host down, network cut) without waiting for TCP.
            .http2_keep_alive_interval(Duration::from_secs(20))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true);
        let hello = pb::Hello {
            host: config.host.clone(),
            instance_id: instance_id.to_owned(),
            agents: Vec::new(),
            labels: config.labels.clone().into_iter().collect(),
            sidecar_version: env!("CARGO_PKG_VERSION").to_owned(),
            poll_interval: Some(flumewatch_proto::model::time::duration(config.interval)),
        };
        Ok(Self {
            address: address.to_owned(),
            endpoint,
            hello,
            roster,
            buffer: ReplayBuffer::with_window(config.buffer, config.replay_window),
            stats,
            connects: AtomicU64::new(0),
            stats_every: config.interval,
            backoff: Backoff::new(config.reconnect_min, config.reconnect_max),
            token: config.token.clone(),
        })
    }

    /// The counters this aggregator is sent: the shared poll counts, this buffer's own.
    pub(crate) fn stats(&self) -> pb::SidecarStats {
        self.stats
            .to_proto(&self.buffer, self.connects.load(Ordering::Relaxed))
    }

    /// What a new stream opens with: the agents are those polled at this moment.
    pub(crate) fn hello(&self) -> pb::Hello {
        pb::Hello {
            agents: self.roster.names(),
            ..self.hello.clone()
        }
    }

    /// Runs until `shutdown`, then drains the buffer for at most [`DRAIN_GRACE`] (connecting
    /// once more for it if the aggregator was away).
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        let self_address = self.address.clone();
        // Whatever the uplink is waiting on (a handshake, a first ack), a stop is bounded.
        let work = self.run_until_drained(shutdown.clone());
        tokio::pin!(work);
        tokio::select! {
            _ = &mut work => {}
            _ = async {
                shutdown.cancelled().await;
                tokio::time::sleep(2 * DRAIN_GRACE).await;
            } => tracing::warn!(aggregator = %self_address, "stopping; the aggregator connection did not end in time"),
        }
    }

    async fn run_until_drained(mut self, shutdown: CancellationToken) {
        let mut was_connected = false;
        loop {
            match session::run(&self, &mut was_connected, &shutdown).await {
                Ok(()) => return,
                Err(session::SessionError::Stopped) => break,
                Err(e) if was_connected => {
                    tracing::warn!(aggregator = %self.address, error = %e, "lost the aggregator; reconnecting");
                    was_connected = false;
                    self.backoff.reset();
                }
                Err(e) => {
                    tracing::debug!(aggregator = %self.address, error = %e, "aggregator not reachable")
                }
            }
            if shutdown.is_cancelled() {
                break;
            }
            let delay = self.backoff.next_delay(fastrand::f64());
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
        }
        if self.buffer.is_empty() {
            return;
        }
        let last_try = session::run(&self, &mut was_connected, &shutdown);
        match tokio::time::timeout(DRAIN_GRACE, last_try).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(aggregator = %self.address, error = %e, unsent = self.buffer.len(), "stopping; the aggregator did not take the buffer")
            }
            Err(_) => {
                tracing::warn!(
                    aggregator = %self.address,
                    unsent = self.buffer.len(),
                    "stopping; the aggregator did not take the buffer in time"
                )
            }
        }
    }
}

/// Random per process start, so a restarted sidecar's sequence 1 is not taken for a replay.
pub(crate) fn instance_id() -> String {
    format!("{:016x}", fastrand::u64(..))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discover::Discovered;

    #[test]
    fn every_hello_lists_the_agents_polled_at_that_moment() {
        let config = crate::config::FileConfig {
            host: Some("h1".into()),
            flume: Some(vec!["a1=http://127.0.0.1:34545/metrics".into()]),
            ..Default::default()
        }
        .validate()
        .expect("valid");
        let roster = Roster::new(config.agents.clone());
        let uplink = Uplink::new(
            &config,
            &config.aggregators[0],
            &instance_id(),
            Arc::default(),
            roster.clone(),
        )
        .expect("uplink");
        assert_eq!(uplink.hello().agents, ["a1"]);
        roster.admit(&[Discovered {
            name: "a2".into(),
            port: 34546,
        }]);
        let hello = uplink.hello();
        assert_eq!(hello.agents, ["a1", "a2"], "the next connect lists it");
        assert_eq!(hello.instance_id, uplink.hello().instance_id);
    }
}
