//! What the aggregator keeps for one Flume agent: its newest snapshot (as wire bytes), bounded
//! history, and the rates between its two newest good polls (worked out from the history when
//! asked).

use std::sync::Arc;
use std::time::SystemTime;

use flumewatch_proto::model::decode::decode_into;
use flumewatch_proto::model::snapshot::{ComponentKind, Gauge, ScrapeOutcome, Snapshot};
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
    /// Shared with [`Latest`] while this is the agent's newest snapshot: one copy of it.
    encoded: Arc<[u8]>,
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

    pub fn bytes(&self) -> &[u8] {
        &self.encoded
    }

    pub fn into_bytes(self) -> Arc<[u8]> {
        self.encoded
    }
}

/// An agent's newest snapshot by scrape time. Rules judge a snapshot as it arrives, decoded
/// into the ingest thread's buffer; afterwards only views read it, so it is kept as the bytes
/// that came (1–2 KiB for 20 components where the decoded form takes ~20 KiB, most of it cold
/// memory that every new snapshot would otherwise be decoded into), with what the agent list
/// and the health checks read at hand.
#[derive(Debug, Clone)]
pub struct Latest {
    pub seq: u64,
    pub scraped_at: SystemTime,
    pub outcome: ScrapeOutcome,
    pub component_count: u32,
    /// The fullest running channel's fill percentage, when one reports it.
    pub max_channel_fill: Option<f64>,
    /// The same bytes as the history's newest entry, not a copy.
    encoded: Arc<[u8]>,
}

impl Latest {
    /// `snapshot`, whose wire bytes are `encoded`.
    fn of(snapshot: &Snapshot, encoded: Arc<[u8]>) -> Self {
        Self {
            seq: snapshot.seq,
            scraped_at: snapshot.scraped_at,
            outcome: snapshot.outcome.clone(),
            component_count: snapshot.components.len() as u32,
            max_channel_fill: snapshot
                .components
                .iter()
                .filter(|c| c.kind == ComponentKind::Channel && !c.is_stopped())
                .filter_map(|c| c.gauge(Gauge::ChannelFillPercentage))
                .reduce(f64::max),
            encoded,
        }
    }

    /// The snapshot, decoded again.
    pub fn snapshot(&self) -> Snapshot {
        let mut snapshot = Snapshot::default();
        if decode_into(&self.encoded, &mut snapshot).is_err() {
            // Cannot happen: the bytes decoded on arrival (or are our own encoding). Say what
            // is known rather than nothing.
            snapshot = Snapshot {
                seq: self.seq,
                scraped_at: self.scraped_at,
                outcome: self.outcome.clone(),
                ..Snapshot::default()
            };
        }
        snapshot
    }

    /// The snapshot as its wire message.
    pub fn proto(&self) -> pb::Snapshot {
        pb::Snapshot::decode(&*self.encoded).unwrap_or_else(|_| (&self.snapshot()).into())
    }
}

#[derive(Debug, Clone)]
pub struct AgentState {
    pub host: String,
    pub agent: String,
    /// Newest snapshot by scrape time: what alerts were last judged on.
    pub latest: Option<Latest>,
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

    /// A copy for views: everything but the rule windows and alert lifecycles (tens of KiB
    /// an agent that no view reads; /metrics copies every agent on each scrape, under the
    /// fleet lock). The history only `with_history` (GetAgent).
    pub fn view(&self, with_history: bool) -> Self {
        Self {
            host: self.host.clone(),
            agent: self.agent.clone(),
            latest: self.latest.clone(),
            history: if with_history {
                self.history.clone()
            } else {
                History::default()
            },
            last_seen: self.last_seen,
            consecutive_failures: self.consecutive_failures,
            received: self.received,
            duplicates: self.duplicates,
            resets: self.resets,
            eval: AgentEval::default(),
        }
    }

    /// Takes one snapshot in sequence order, `entry` being its wire bytes. Replayed snapshots
    /// land in the history; only one at least as new as the current latest becomes the
    /// latest. Returns whether it did. `reset`: a component of it restarted since the previous
    /// good poll.
    pub fn apply(
        &mut self,
        snapshot: &Snapshot,
        entry: HistoryEntry,
        now: SystemTime,
        history_len: usize,
        reset: bool,
    ) -> bool {
        self.received += 1;
        self.last_seen = Some(now);
        let is_newest = self
            .latest
            .as_ref()
            .is_none_or(|latest| snapshot.scraped_at >= latest.scraped_at);
        if is_newest {
            if snapshot.outcome.is_ok() {
                self.consecutive_failures = 0;
                self.resets += u64::from(reset);
            } else {
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
            }
            self.latest = Some(Latest::of(snapshot, entry.encoded.clone()));
        }
        if history_len > 0 {
            self.history.push(entry, history_len);
        }
        is_newest
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
        previous.map_or_else(Vec::new, |previous| {
            rates::compute(&previous, &latest.snapshot())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn scraped(seq: u64, at_secs: u64) -> Snapshot {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(at_secs);
        flumewatch_testkit::snapshot::ok(seq, at, Vec::new())
    }

    #[test]
    fn the_newest_snapshot_is_held_once_and_a_replay_keeps_latest() {
        let mut agent = AgentState::new("h", "a1");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let newest = scraped(1, 20);
        assert!(agent.apply(&newest, HistoryEntry::new(&newest), now, 10, false));
        let latest = agent.latest.clone().expect("latest");
        // This clone, the agent's Latest and the history's newest entry: one copy of the bytes.
        assert_eq!(Arc::strong_count(&latest.encoded), 3);

        // A replayed older snapshot lands in the history only; Latest still reads the newest.
        let replayed = scraped(2, 10);
        assert!(!agent.apply(&replayed, HistoryEntry::new(&replayed), now, 10, false));
        let latest = agent.latest.as_ref().expect("latest");
        assert_eq!((latest.seq, latest.snapshot().seq), (1, 1));
        assert_eq!(agent.history.seqs().collect::<Vec<_>>(), [1, 2]);
        let held: Vec<u64> = agent.history.snapshots().iter().map(|s| s.seq).collect();
        assert_eq!(held, [1, 2]);
    }
}
