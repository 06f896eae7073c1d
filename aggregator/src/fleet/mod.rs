//! The fleet: every sidecar and agent the aggregator has heard from, behind one cheap handle.
//!
//! A std mutex guards the state; it is never held across an `.await`, and every critical
//! section is a few map operations, so 10 000 streams contend only briefly.

mod agent;
pub mod rates;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use flumewatch_proto::v1 as pb;
use flumewatch_sidecar::snapshot::Snapshot;

pub use agent::AgentState;

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
    stream_id: u64,
    pub stats: Option<pb::SidecarStats>,
}

/// A stream's registration: its id and the sequence number it resumes after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registration {
    pub stream_id: u64,
    pub resume_after: u64,
}

/// What became of one snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Stored,
    /// Already held (a replay after a lost ack).
    Duplicate,
    /// The stream was replaced by a newer one from the same sidecar; nothing stored.
    StaleStream,
}

/// An agent with its sidecar's view, for queries.
#[derive(Debug, Clone)]
pub struct AgentView {
    pub state: AgentState,
    pub sidecar: SidecarState,
}

#[derive(Debug, Default)]
struct State {
    sidecars: HashMap<String, SidecarState>,
    /// Keyed by (host, agent).
    agents: BTreeMap<(String, String), AgentState>,
    next_stream_id: u64,
}

/// Cheap to clone; every clone sees the same fleet.
#[derive(Debug, Clone)]
pub struct Fleet {
    state: Arc<Mutex<State>>,
    /// Snapshots kept per agent for `GetAgent`'s history.
    history_len: usize,
}

impl Fleet {
    pub fn new(history_len: usize) -> Self {
        Self {
            state: Arc::new(Mutex::new(State::default())),
            history_len,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A sidecar opened a stream. The same instance resumes where it left off; a new instance
    /// (the sidecar restarted) starts a new sequence.
    pub fn connect(&self, hello: Hello, now: SystemTime) -> Registration {
        let mut state = self.lock();
        state.next_stream_id += 1;
        let stream_id = state.next_stream_id;
        for agent in &hello.agents {
            state
                .agents
                .entry((hello.host.clone(), agent.clone()))
                .or_insert_with(|| AgentState::new(&hello.host, agent));
        }
        let resume_after = match state.sidecars.get(&hello.host) {
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
        state.sidecars.insert(
            hello.host.clone(),
            SidecarState {
                hello,
                last_seq: resume_after,
                connected: true,
                since: now,
                stream_id,
                stats: None,
            },
        );
        Registration {
            stream_id,
            resume_after,
        }
    }

    /// Stores one snapshot from stream `stream_id` of `host`'s sidecar.
    pub fn record(
        &self,
        host: &str,
        stream_id: u64,
        snapshot: Snapshot,
        now: SystemTime,
    ) -> Recorded {
        let mut state = self.lock();
        let Some(sidecar) = state.sidecars.get_mut(host) else {
            return Recorded::StaleStream;
        };
        if sidecar.stream_id != stream_id {
            return Recorded::StaleStream;
        }
        let duplicate = snapshot.seq <= sidecar.last_seq;
        if !duplicate {
            sidecar.last_seq = snapshot.seq;
        }
        let history_len = self.history_len;
        let agent = state
            .agents
            .entry((host.to_owned(), snapshot.agent.clone()))
            .or_insert_with(|| AgentState::new(host, &snapshot.agent));
        if duplicate {
            agent.duplicates += 1;
            return Recorded::Duplicate;
        }
        agent.apply(snapshot, now, history_len);
        Recorded::Stored
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
    pub fn disconnect(&self, host: &str, stream_id: u64, now: SystemTime) {
        let mut state = self.lock();
        if let Some(sidecar) = state.sidecars.get_mut(host) {
            if sidecar.stream_id == stream_id && sidecar.connected {
                sidecar.connected = false;
                sidecar.since = now;
            }
        }
    }

    /// Agents matching every given label (and the host, when given), sorted by host and agent.
    pub fn agents(&self, labels: &BTreeMap<String, String>, host: Option<&str>) -> Vec<AgentView> {
        let state = self.lock();
        state
            .agents
            .values()
            .filter(|a| host.is_none_or(|h| h == a.host))
            .filter_map(|a| {
                let sidecar = state.sidecars.get(&a.host)?;
                let matches = labels
                    .iter()
                    .all(|(k, v)| sidecar.hello.labels.get(k) == Some(v));
                matches.then(|| AgentView {
                    state: a.clone(),
                    sidecar: sidecar.clone(),
                })
            })
            .collect()
    }

    /// One agent; with `agent` empty, the host's only agent.
    pub fn agent(&self, host: &str, agent: &str) -> Result<AgentView, LookupError> {
        let state = self.lock();
        let found = if agent.is_empty() {
            let mut on_host = state.agents.values().filter(|a| a.host == host);
            match (on_host.next(), on_host.next()) {
                (Some(only), None) => only,
                (None, _) => return Err(LookupError::UnknownHost(host.to_owned())),
                (Some(_), Some(_)) => return Err(LookupError::Ambiguous(host.to_owned())),
            }
        } else {
            state
                .agents
                .get(&(host.to_owned(), agent.to_owned()))
                .ok_or_else(|| LookupError::UnknownAgent(host.to_owned(), agent.to_owned()))?
        };
        let sidecar = state
            .sidecars
            .get(host)
            .ok_or_else(|| LookupError::UnknownHost(host.to_owned()))?;
        Ok(AgentView {
            state: found.clone(),
            sidecar: sidecar.clone(),
        })
    }

    /// Sidecars with an open stream right now.
    pub fn connected_sidecars(&self) -> usize {
        self.lock()
            .sidecars
            .values()
            .filter(|s| s.connected)
            .count()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("no agent {1:?} on host {0:?}")]
    UnknownAgent(String, String),
    #[error("no agent on host {0:?}")]
    UnknownHost(String),
    #[error("host {0:?} has several agents: name one")]
    Ambiguous(String),
}

#[cfg(test)]
mod tests;
