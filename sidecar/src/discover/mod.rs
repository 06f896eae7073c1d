//! `--discover`: finds the local Flume agents that serve HTTP metrics from the process table,
//! reading `/proc/<pid>/cmdline` and nothing else, and adds them to the [`Roster`].
//!
//! - `cmdline`: one command line → [`Discovered`] (pure, where Flume's flags are known);
//! - `scan`: the process table → every [`Discovered`] (blocking reads, run off the runtime).
//!
//! This module holds the loop that re-scans on an interval. It knows nothing of polling: new
//! agents are handed to a `start` callback.

mod cmdline;
#[cfg(test)]
mod fake_proc;
mod scan;

use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

pub use cmdline::{parse, DEFAULT_MONITORING_PORT};
pub use scan::{scan, ScanError};

use crate::config::{Discovery, FlumeEndpoint};
use crate::roster::Roster;

/// A local Flume agent found in the process table: polled at `http://127.0.0.1:{port}/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    /// flume-ng's `-n`/`--name`, or `agent-PORT` without one.
    pub name: String,
    /// `-Dflume.monitoring.port`, or Flume's default 41414.
    pub port: u16,
}

/// Scans the process table and admits what it finds into the roster.
pub(crate) struct Discoverer {
    settings: Discovery,
    roster: Roster,
    /// Found agents left out because the roster was full, at the last scan: a change is logged,
    /// not every scan.
    left_out: usize,
    /// The last scan failed: a failure is logged when it starts and when it ends.
    failing: bool,
}

// === impl Discoverer ===

impl Discoverer {
    pub(crate) fn new(settings: Discovery, roster: Roster) -> Self {
        Self {
            settings,
            roster,
            left_out: 0,
            failing: false,
        }
    }

    /// One scan: the agents it added to the roster, to start polling.
    pub(crate) async fn scan_once(&mut self) -> Result<Vec<FlumeEndpoint>, ScanError> {
        let root = self.settings.proc_root.clone();
        let found = match tokio::task::spawn_blocking(move || scan(&root)).await {
            Ok(result) => result?,
            // The blocking pool is shutting down with the runtime: nothing to add.
            Err(_) => return Ok(Vec::new()),
        };
        let admitted = self.roster.admit(&found);
        for agent in &admitted.added {
            tracing::info!(agent = %agent.name, url = %agent.url, "found a flume agent");
        }
        if admitted.left_out != self.left_out {
            if admitted.left_out > 0 {
                tracing::warn!(
                    left_out = admitted.left_out,
                    max = crate::roster::MAX_AGENTS,
                    "more flume agents than one sidecar reports; some are not polled"
                );
            }
            self.left_out = admitted.left_out;
        }
        Ok(admitted.added)
    }

    /// Re-scans every interval (the first scan is the caller's, before the uplink says Hello)
    /// and hands each new agent to `start`, until `shutdown`.
    pub(crate) async fn run(
        mut self,
        mut start: impl FnMut(FlumeEndpoint),
        shutdown: CancellationToken,
    ) {
        let every = self.settings.interval;
        let mut ticker = tokio::time::interval_at(Instant::now() + every, every);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            match self.scan_once().await {
                Ok(added) => {
                    if self.failing {
                        tracing::info!("reading the process table again");
                        self.failing = false;
                    }
                    added.into_iter().for_each(&mut start);
                }
                Err(e) => {
                    if !self.failing {
                        tracing::warn!(error = %e, "cannot look for flume agents; still polling the known ones");
                        self.failing = true;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::fake_proc::FakeProc;
    use super::*;

    #[tokio::test]
    async fn new_agents_are_started_and_gone_ones_kept() {
        let proc = FakeProc::new();
        proc.flume("100", "a1", 34545);
        let explicit = FlumeEndpoint {
            name: "explicit".into(),
            url: "http://127.0.0.1:41414/metrics".parse().expect("url"),
        };
        let roster = Roster::new(vec![explicit]);
        let settings = Discovery {
            interval: Duration::from_millis(10),
            proc_root: proc.path().to_owned(),
        };
        let mut discoverer = Discoverer::new(settings, roster.clone());
        let first = discoverer.scan_once().await.expect("scans");
        assert_eq!(first.len(), 1);
        assert_eq!(roster.names(), ["explicit", "a1"]);

        // a1 exits, a2 starts, and one on the explicit entry's port is already polled.
        proc.exit("100");
        proc.flume("200", "a2", 34546);
        proc.flume("300", "dup", 41414);
        let started = Arc::new(Mutex::new(Vec::new()));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(discoverer.run(
            {
                let started = started.clone();
                move |agent: FlumeEndpoint| started.lock().unwrap().push(agent.name)
            },
            shutdown.clone(),
        ));
        flumewatch_testkit::wait_for("a2 to be started", || {
            let started = started.clone();
            async move { (!started.lock().unwrap().is_empty()).then_some(()) }
        })
        .await;
        shutdown.cancel();
        task.await.expect("stops");
        assert_eq!(*started.lock().unwrap(), ["a2"]);
        assert_eq!(roster.names(), ["explicit", "a1", "a2"], "a1 is kept");
    }

    #[tokio::test]
    async fn an_unlistable_table_is_an_error() {
        let proc = FakeProc::new();
        let settings = Discovery {
            interval: Duration::from_millis(10),
            proc_root: proc.path().join("absent"),
        };
        let mut discoverer = Discoverer::new(settings, Roster::new(Vec::new()));
        assert!(discoverer.scan_once().await.is_err());
    }
}
