//! What the aggregator keeps for one Flume agent: latest snapshot, bounded history, and the
//! rates between its two newest good polls (worked out from the history when asked).

use std::sync::Arc;
use std::time::SystemTime;

use flumewatch_proto::model::snapshot::Snapshot;
use flumewatch_proto::v1 as pb;
use prost::Message;

use super::history::History;
use super::rates::{self, ComponentRates};
use crate::rules::engine::AgentEval;

/// One history entry, kept protobuf-encoded: about 1 KiB for 20 components where the decoded
/// snapshot (hundreds of small allocations) takes about 15 KiB. Decoded only when asked for.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    pub seq: u64,
    encoded: Box<[u8]>,
}

impl HistoryEntry {
    pub fn new(snapshot: &Snapshot) -> Self {
        let wire = pb::Snapshot::from(snapshot);
        Self::from_encoded(wire.seq, &wire.encode_to_vec())
    }

    /// The snapshot's bytes as they arrived (no conversion back from the typed snapshot, no
    /// encoding again).
    pub fn from_encoded(seq: u64, encoded: &[u8]) -> Self {
        Self {
            seq,
            encoded: encoded.into(),
        }
    }

    pub fn into_bytes(self) -> Box<[u8]> {
        self.encoded
    }
}

#[derive(Debug, Clone)]
pub struct AgentState {
    pub host: String,
    pub agent: String,
    /// Newest snapshot by scrape time: what alerts are judged on.
    pub latest: Option<Arc<Snapshot>>,
    /// Recent snapshots oldest first, replays included, at most `history_len`.
    pub history: History,
    pub last_seen: Option<SystemTime>,
    pub consecutive_failures: u32,
    pub received: u64,
    pub duplicates: u64,
    pub resets: u64,
    /// Windows and alert lifecycles of the rules.
    pub eval: AgentEval,
}

impl AgentState {
    pub fn new(host: &str, agent: &str) -> Self {
        Self {
            host: host.to_owned(),
            agent: agent.to_owned(),
            latest: None,
            history: History::default(),
            last_seen: None,
            consecutive_failures: 0,
            received: 0,
            duplicates: 0,
            resets: 0,
            eval: AgentEval::default(),
        }
    }

    /// Takes one snapshot in sequence order. Replayed snapshots land in the history; only one
    /// at least as new as the current latest becomes the latest. Returns whether it did, and
    /// the snapshot it displaced when nothing else holds it (a buffer to decode the next one
    /// into). `reset`: a component of it restarted since the previous good poll.
    pub fn apply(
        &mut self,
        snapshot: Arc<Snapshot>,
        entry: Option<HistoryEntry>,
        now: SystemTime,
        history_len: usize,
        reset: bool,
    ) -> (bool, Option<Snapshot>) {
        self.received += 1;
        self.last_seen = Some(now);
        if history_len > 0 {
            let entry = entry.unwrap_or_else(|| HistoryEntry::new(&snapshot));
            self.history.push(entry, history_len);
        }
        let is_newest = self
            .latest
            .as_ref()
            .is_none_or(|latest| snapshot.scraped_at >= latest.scraped_at);
        if !is_newest {
            return (false, Arc::into_inner(snapshot));
        }
        if snapshot.outcome.is_ok() {
            self.consecutive_failures = 0;
            self.resets += u64::from(reset);
        } else {
            self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        }
        let displaced = self.latest.replace(snapshot);
        (true, displaced.and_then(Arc::into_inner))
    }

    /// Rates between the newest snapshot, when it is good, and the newest good one before it
    /// in the history (so none with `--history` below 2). Decoded on request: nothing on the
    /// ingest path pays for a view few people open.
    pub fn rates(&self) -> Vec<ComponentRates> {
        let Some(latest) = self.latest.as_ref().filter(|s| s.outcome.is_ok()) else {
            return Vec::new();
        };
        let previous = self
            .history
            .snapshots()
            .into_iter()
            .filter(|s| s.seq != latest.seq && s.outcome.is_ok())
            .filter(|s| s.scraped_at < latest.scraped_at)
            .max_by_key(|s| s.scraped_at);
        previous.map_or_else(Vec::new, |previous| rates::compute(&previous, latest))
    }
}
