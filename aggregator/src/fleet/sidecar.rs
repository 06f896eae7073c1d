//! Sidecar registration: who reports as which host, which stream owns the connection, where a
//! resumed stream carries on, and the sidecar's own statistics.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use flumewatch_proto::v1 as pb;
use tokio::time::Instant;

use super::{Fleet, Now};
use crate::rules::engine::{SidecarFacts, TargetKey, Tracked};

/// What a sidecar says about itself when it opens a stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Hello {
    pub host: String,
    pub instance_id: String,
    pub agents: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub version: String,
    pub poll_interval: Duration,
}

/// What the aggregator knows about one sidecar (one host).
#[derive(Debug, Clone)]
pub struct SidecarState {
    pub hello: Hello,
    /// Highest sequence number stored from `hello.instance_id`.
    pub last_seq: u64,
    pub connected: bool,
    /// When `connected` last changed.
    pub since: SystemTime,
    /// Identifies the stream that owns the connection, so a stale stream closing after a
    /// reconnect does not mark the sidecar disconnected.
    pub(super) stream_id: u64,
    pub stats: Option<pb::SidecarStats>,
    /// When its last snapshot arrived (or it connected), for SidecarSilent.
    pub(super) last_snapshot_at: Instant,
    /// Sidecar-scope alerts (SidecarSilent).
    pub(super) alerts: HashMap<TargetKey, Tracked>,
}

impl SidecarState {
    /// A sidecar known but not (yet) connected: nothing received, silent since `now`.
    pub(super) fn known(hello: Hello, now: Now) -> Self {
        Self {
            hello,
            last_seq: 0,
            connected: false,
            since: now.wall,
            stream_id: 0,
            stats: None,
            last_snapshot_at: now.mono,
            alerts: HashMap::new(),
        }
    }

    pub(super) fn facts(&self) -> SidecarFacts<'_> {
        SidecarFacts {
            host: &self.hello.host,
            labels: &self.hello.labels,
            poll_interval: self.hello.poll_interval,
            last_snapshot_at: self.last_snapshot_at,
        }
    }

    /// Connected and heard from within three poll intervals (at least 30 s).
    pub(super) fn is_fresh(&self, now: Instant) -> bool {
        let limit = (self.hello.poll_interval * 3).max(Duration::from_secs(30));
        self.connected && now.saturating_duration_since(self.last_snapshot_at) < limit
    }
}

/// A stream's registration: its id and the sequence number it resumes after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registration {
    pub stream_id: u64,
    pub resume_after: u64,
}

impl Fleet {
    /// A sidecar opened a stream. The same instance resumes where it left off; a new instance
    /// (the sidecar restarted) starts a new sequence.
    pub fn connect(&self, hello: Hello, now: Now) -> Registration {
        let mut state = self.lock();
        state.next_stream_id += 1;
        let stream_id = state.next_stream_id;
        // A new instance (the sidecar restarted) may bring retired agents back.
        state
            .retired
            .retain(|(h, _), instance| h != &hello.host || *instance == hello.instance_id);
        let mut hello = hello;
        let retired = &state.retired;
        hello
            .agents
            .retain(|a| !Fleet::is_retired(retired, &hello.host, a, &hello.instance_id));
        state.add_agents(&hello);
        let previous = state.sidecars.remove(&hello.host);
        if previous.as_ref().is_none_or(|p| p.hello != hello) {
            state.membership += 1;
        }
        let resume_after = match &previous {
            Some(known) if known.hello.instance_id == hello.instance_id => known.last_seq,
            Some(known) if known.connected => {
                tracing::warn!(
                    host = %hello.host,
                    "a second sidecar instance reports as this host while the first is connected; the newer one wins"
                );
                0
            }
            _ => 0,
        };
        let alerts = previous.map(|p| p.alerts).unwrap_or_default();
        let sidecar = SidecarState {
            last_seq: resume_after,
            connected: true,
            stream_id,
            alerts,
            ..SidecarState::known(hello, now)
        };
        state.sidecars.insert(sidecar.hello.host.clone(), sidecar);
        Registration {
            stream_id,
            resume_after,
        }
    }

    /// Counts a snapshot that could not be read, so the sequence still advances.
    pub fn skip(&self, host: &str, stream_id: u64, seq: u64) {
        let mut state = self.lock();
        if let Some(sidecar) = state.sidecars.get_mut(host) {
            if sidecar.stream_id == stream_id && seq > sidecar.last_seq {
                sidecar.last_seq = seq;
            }
        }
    }

    pub fn record_stats(&self, host: &str, stream_id: u64, stats: pb::SidecarStats) {
        let mut state = self.lock();
        if let Some(sidecar) = state.sidecars.get_mut(host) {
            if sidecar.stream_id == stream_id {
                sidecar.stats = Some(stats);
            }
        }
    }

    /// The stream ended; its sidecar's agents now show as disconnected (unless a newer stream
    /// from the same sidecar took over).
    pub fn disconnect(&self, host: &str, stream_id: u64, now: Now) {
        let mut state = self.lock();
        if let Some(sidecar) = state.sidecars.get_mut(host) {
            if sidecar.stream_id == stream_id && sidecar.connected {
                sidecar.connected = false;
                sidecar.since = now.wall;
            }
        }
    }
}
