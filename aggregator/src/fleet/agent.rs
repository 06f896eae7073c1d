//! What the aggregator keeps for one Flume agent: latest snapshot, bounded history, rates.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::SystemTime;

use flumewatch_proto::model::snapshot::Snapshot;
use flumewatch_proto::v1 as pb;
use prost::Message;

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

    pub fn to_proto(&self) -> pb::Snapshot {
        // Our own encoding: it decodes.
        pb::Snapshot::decode(&*self.encoded).unwrap_or_default()
    }

    pub fn decode(&self) -> Option<Snapshot> {
        Snapshot::try_from(self.to_proto()).ok()
    }
}

#[derive(Debug, Clone)]
pub struct AgentState {
    pub host: String,
    pub agent: String,
    /// Newest snapshot by scrape time: what alerts are judged on.
    pub latest: Option<Arc<Snapshot>>,
    /// Newest successful snapshot, the base for the next rates.
    last_ok: Option<Arc<Snapshot>>,
    /// Recent snapshots oldest first, replays included, at most `history_len`.
    pub history: VecDeque<HistoryEntry>,
    /// Between the two newest successful snapshots; empty while the newest poll failed.
    pub rates: Vec<ComponentRates>,
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
            last_ok: None,
            history: VecDeque::new(),
            rates: Vec::new(),
            last_seen: None,
            consecutive_failures: 0,
            received: 0,
            duplicates: 0,
            resets: 0,
            eval: AgentEval::default(),
        }
    }

    /// Takes one snapshot in sequence order. Replayed snapshots land in the history; only one
    /// at least as new as the current latest becomes the latest (returns whether it did).
    pub fn apply(
        &mut self,
        snapshot: Arc<Snapshot>,
        entry: Option<HistoryEntry>,
        now: SystemTime,
        history_len: usize,
    ) -> bool {
        self.received += 1;
        self.last_seen = Some(now);
        if history_len > 0 {
            if self.history.len() >= history_len {
                self.history.pop_front();
            }
            self.history
                .push_back(entry.unwrap_or_else(|| HistoryEntry::new(&snapshot)));
        }
        let is_newest = self
            .latest
            .as_ref()
            .is_none_or(|latest| snapshot.scraped_at >= latest.scraped_at);
        if !is_newest {
            return false;
        }
        if snapshot.outcome.is_ok() {
            self.consecutive_failures = 0;
            if let Some(prev) = &self.last_ok {
                self.rates = rates::compute(prev, &snapshot);
                self.resets += self.rates.iter().any(|r| r.reset) as u64;
            }
            self.last_ok = Some(snapshot.clone());
        } else {
            self.consecutive_failures = self.consecutive_failures.saturating_add(1);
            self.rates.clear();
        }
        self.latest = Some(snapshot);
        true
    }
}
