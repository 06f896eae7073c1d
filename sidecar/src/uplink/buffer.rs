//! Snapshots one aggregator has not acknowledged yet, plus a short window of those it has, in
//! sequence order, bounded.
//!
//! Each aggregator reported to has its own buffer: the [`Fanout`](super::Fanout) hands every
//! snapshot to each of them, and that aggregator's uplink sends from it. Acknowledged snapshots
//! are kept for the replay window: an aggregator keeps snapshots in memory, so one that crashed
//! and restarted answers the Hello with "nothing held" and gets the window again instead of a
//! gap. When the aggregator is unreachable for long, the oldest snapshots are dropped
//! (acknowledged ones first, uncounted; then unacknowledged ones, counted): memory stays
//! bounded, the newest state still gets through, and the other aggregators' buffers are not
//! touched.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use flumewatch_proto::v1 as pb;
use prost::bytes::Bytes;
use prost::Message;
use tokio::sync::watch;

use flumewatch_proto::model::snapshot::Snapshot;

/// Shared by the fan-out (producer) and one uplink (consumer). Cheap to clone.
#[derive(Debug, Clone)]
pub struct ReplayBuffer {
    inner: Arc<Mutex<Inner>>,
    /// Latest sequence number pushed: the uplink waits on this instead of polling the buffer.
    newest: watch::Sender<u64>,
}

#[derive(Debug)]
struct Inner {
    capacity: usize,
    /// How long acknowledged snapshots stay for a restarted aggregator (by scrape time).
    window: Duration,
    /// Acknowledged ones (seq <= `acked`) first, then those waiting.
    pending: VecDeque<Arc<Encoded>>,
    acked: u64,
    dropped: u64,
}

/// A snapshot numbered and encoded once, shared by every aggregator's buffer.
///
/// Protobuf-encoded at push: a few hundred bytes each instead of a tree of small allocations
/// several times that size, which matters on a Flume host with a long window. These bytes are
/// what goes on the wire: a send shares them, never decodes them, and a second aggregator costs
/// a pointer per snapshot, not a copy.
#[derive(Debug)]
pub(super) struct Encoded {
    seq: u64,
    agent: String,
    scraped_at: SystemTime,
    bytes: Bytes,
}

impl Encoded {
    /// Numbers `snapshot` as `seq` and encodes it, with `backfill` unset (decided when sending).
    pub(super) fn new(seq: u64, mut snapshot: Snapshot) -> Self {
        snapshot.seq = seq;
        // Backfill is decided when sending (`next_after`), which can only add the flag.
        snapshot.backfill = false;
        Self {
            seq,
            bytes: pb::Snapshot::from(&snapshot).encode_to_vec().into(),
            agent: snapshot.agent,
            scraped_at: snapshot.scraped_at,
        }
    }
}

/// A buffered snapshot on its way out: the wire form made at push, shared rather than copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub seq: u64,
    /// A newer snapshot of the same agent is queued behind this one: send it as backfill.
    pub backfill: bool,
    /// The `flumewatch.v1.Snapshot` as encoded at push, with `backfill` unset.
    pub encoded: Bytes,
}

impl Inner {
    fn waiting(&self) -> usize {
        self.pending
            .iter()
            .rev()
            .take_while(|s| s.seq > self.acked)
            .count()
    }

    /// Forgets acknowledged snapshots scraped before the window.
    fn expire(&mut self, now: SystemTime) {
        let cutoff = now
            .checked_sub(self.window)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        while self
            .pending
            .front()
            .is_some_and(|s| s.seq <= self.acked && s.scraped_at < cutoff)
        {
            self.pending.pop_front();
        }
    }
}

impl ReplayBuffer {
    /// Without a replay window: acknowledged snapshots are forgotten at once.
    pub fn new(capacity: usize) -> Self {
        Self::with_window(capacity, Duration::ZERO)
    }

    pub fn with_window(capacity: usize, window: Duration) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                capacity: capacity.max(1),
                window,
                pending: VecDeque::new(),
                acked: 0,
                dropped: 0,
            })),
            newest: watch::Sender::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the queue half-updated in a way that
        // matters more than losing the sidecar: keep going with the data as it is.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a snapshot the [`Fanout`](super::Fanout) numbered; a full buffer drops its oldest.
    /// Never waits on the aggregator: the lock is only held to edit the queue.
    pub(super) fn push(&self, snapshot: Arc<Encoded>) {
        let seq = snapshot.seq;
        {
            let mut inner = self.lock();
            if inner.pending.len() == inner.capacity {
                let oldest = inner.pending.pop_front().map_or(0, |s| s.seq);
                if oldest > inner.acked {
                    inner.dropped += 1;
                }
            }
            inner.pending.push_back(snapshot);
        }
        self.newest.send_replace(seq);
    }

    /// Marks everything up to and including `seq` acknowledged; it stays for the window.
    pub fn ack(&self, seq: u64) {
        let mut inner = self.lock();
        inner.acked = inner.acked.max(seq);
        inner.expire(SystemTime::now());
    }

    /// The first pending snapshot after `seq`, if any, marked as backfill when a newer
    /// snapshot of the same agent is queued behind it.
    pub fn next_after(&self, seq: u64) -> Option<Outgoing> {
        let inner = self.lock();
        // Sequence numbers in the queue are consecutive except where drops cut the front.
        let first = inner.pending.front()?.seq;
        let index = if seq < first {
            0
        } else {
            (seq - first + 1) as usize
        };
        let queued = inner.pending.get(index)?;
        // From the back: the newest snapshot of a replayed agent is usually near the end.
        let backfill = inner
            .pending
            .iter()
            .skip(index + 1)
            .rev()
            .any(|later| later.agent == queued.agent);
        Some(Outgoing {
            seq: queued.seq,
            backfill,
            encoded: queued.bytes.clone(),
        })
    }

    /// Wakes whenever a snapshot is pushed.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.newest.subscribe()
    }

    /// Snapshots the aggregator has not acknowledged.
    pub fn len(&self) -> usize {
        self.lock().waiting()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Snapshots dropped because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::uplink::Fanout;

    fn snapshot() -> Snapshot {
        flumewatch_testkit::snapshot::ok(0, SystemTime::now(), vec![])
    }

    /// `buffer` as the only aggregator's, and what numbers and pushes into it.
    fn alone(buffer: ReplayBuffer) -> (Fanout, ReplayBuffer) {
        (Fanout::new(vec![buffer.clone()]), buffer)
    }

    #[test]
    fn numbers_in_order_and_forgets_acknowledged() {
        let (fanout, buffer) = alone(ReplayBuffer::new(10));
        for expected in 1..=5 {
            assert_eq!(fanout.push(snapshot()), expected);
        }
        assert_eq!(buffer.next_after(0).map(|s| s.seq), Some(1));
        assert_eq!(buffer.next_after(3).map(|s| s.seq), Some(4));
        assert_eq!(buffer.next_after(5), None);
        buffer.ack(3);
        assert_eq!(buffer.len(), 2);
        assert_eq!(buffer.next_after(0).map(|s| s.seq), Some(4));
        buffer.ack(99);
        assert!(buffer.is_empty());
        assert_eq!(fanout.push(snapshot()), 6);
    }

    #[test]
    fn older_snapshots_of_an_agent_are_sent_as_backfill() {
        let (fanout, buffer) = alone(ReplayBuffer::new(10));
        let mut other = snapshot();
        other.agent = "a2".into();
        fanout.push(snapshot());
        fanout.push(other);
        fanout.push(snapshot());
        assert!(
            buffer.next_after(0).unwrap().backfill,
            "a1 has a newer snapshot queued"
        );
        assert!(
            !buffer.next_after(1).unwrap().backfill,
            "a2's only snapshot"
        );
        assert!(!buffer.next_after(2).unwrap().backfill, "a1's newest");
    }

    #[test]
    fn acknowledged_snapshots_stay_for_a_restarted_aggregator() {
        let (fanout, buffer) = alone(ReplayBuffer::with_window(10, Duration::from_secs(3600)));
        for _ in 0..5 {
            fanout.push(snapshot());
        }
        buffer.ack(3);
        assert_eq!(buffer.len(), 2, "two wait for an acknowledgement");
        // A restarted aggregator holds nothing: everything comes again, older ones as backfill.
        let replay = buffer.next_after(0).unwrap();
        assert_eq!(replay.seq, 1);
        assert!(replay.backfill);
        // The aggregator that acknowledged them gets only what is new.
        assert_eq!(buffer.next_after(3).map(|s| s.seq), Some(4));
        // Full: acknowledged ones go first, uncounted; then waiting ones, counted.
        for _ in 0..7 {
            fanout.push(snapshot());
        }
        assert_eq!(buffer.dropped(), 0);
        assert_eq!(buffer.next_after(0).map(|s| s.seq), Some(3));
        for _ in 0..2 {
            fanout.push(snapshot());
        }
        assert_eq!(buffer.dropped(), 1, "snapshot 4 was never acknowledged");
        assert_eq!(buffer.len(), 10);
    }

    #[test]
    fn the_window_is_by_scrape_time() {
        let (fanout, buffer) = alone(ReplayBuffer::with_window(10, Duration::from_secs(60)));
        let mut old = snapshot();
        old.scraped_at = SystemTime::now() - Duration::from_secs(120);
        fanout.push(old);
        fanout.push(snapshot());
        buffer.ack(2);
        assert_eq!(
            buffer.next_after(0).map(|s| s.seq),
            Some(2),
            "2 min old: gone"
        );
    }

    #[test]
    fn full_buffer_drops_oldest_and_counts() {
        let (fanout, buffer) = alone(ReplayBuffer::new(3));
        for _ in 0..5 {
            fanout.push(snapshot());
        }
        assert_eq!(buffer.len(), 3);
        assert_eq!(buffer.dropped(), 2);
        assert_eq!(buffer.next_after(0).map(|s| s.seq), Some(3));
        assert_eq!(buffer.next_after(1).map(|s| s.seq), Some(3));
        assert_eq!(*buffer.subscribe().borrow(), 5);
    }
}
