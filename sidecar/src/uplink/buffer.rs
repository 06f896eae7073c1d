//! Snapshots the aggregator has not acknowledged yet, in sequence order, bounded.
//!
//! The poller pushes, the uplink sends from it and forgets what the aggregator acknowledged.
//! When the aggregator is unreachable for long, the oldest snapshots are dropped and counted:
//! memory stays bounded and the newest state still gets through.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use flumewatch_proto::v1 as pb;
use tokio::sync::watch;

use crate::snapshot::Snapshot;

/// Shared by the pollers (producers) and the uplink (consumer). Cheap to clone.
#[derive(Debug, Clone)]
pub struct ReplayBuffer {
    inner: Arc<Mutex<Inner>>,
    /// Latest sequence number pushed: the uplink waits on this instead of polling the buffer.
    newest: watch::Sender<u64>,
}

#[derive(Debug)]
struct Inner {
    capacity: usize,
    next_seq: u64,
    /// Encoded once at push time, so a replay after a reconnect costs no conversion.
    pending: VecDeque<pb::Snapshot>,
    dropped: u64,
}

impl ReplayBuffer {
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                capacity: capacity.max(1),
                next_seq: 1,
                pending: VecDeque::new(),
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

    /// Numbers the snapshot and queues it; returns its sequence number.
    pub fn push(&self, mut snapshot: Snapshot) -> u64 {
        let seq = {
            let mut inner = self.lock();
            let seq = inner.next_seq;
            inner.next_seq += 1;
            snapshot.seq = seq;
            if inner.pending.len() == inner.capacity {
                inner.pending.pop_front();
                inner.dropped += 1;
            }
            inner.pending.push_back(pb::Snapshot::from(&snapshot));
            seq
        };
        self.newest.send_replace(seq);
        seq
    }

    /// Forgets everything up to and including `seq`.
    pub fn ack(&self, seq: u64) {
        let mut inner = self.lock();
        while inner.pending.front().is_some_and(|s| s.seq <= seq) {
            inner.pending.pop_front();
        }
    }

    /// The first pending snapshot after `seq`, if any, marked as backfill when a newer
    /// snapshot of the same agent is queued behind it.
    pub fn next_after(&self, seq: u64) -> Option<pb::Snapshot> {
        let inner = self.lock();
        // Sequence numbers in the queue are consecutive except where drops cut the front.
        let first = inner.pending.front()?.seq;
        let index = if seq < first {
            0
        } else {
            (seq - first + 1) as usize
        };
        let mut next = inner.pending.get(index)?.clone();
        // From the back: the newest snapshot of a replayed agent is usually near the end.
        next.backfill = inner
            .pending
            .iter()
            .skip(index + 1)
            .rev()
            .any(|later| later.agent == next.agent);
        Some(next)
    }

    /// Wakes whenever a snapshot is pushed.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.newest.subscribe()
    }

    pub fn len(&self) -> usize {
        self.lock().pending.len()
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
    use crate::snapshot::ScrapeOutcome;

    fn snapshot() -> Snapshot {
        Snapshot {
            seq: 0,
            agent: "a1".into(),
            scraped_at: SystemTime::now(),
            scrape_duration: Duration::ZERO,
            outcome: ScrapeOutcome::Ok,
            components: vec![],
            backfill: false,
        }
    }

    #[test]
    fn numbers_in_order_and_forgets_acknowledged() {
        let buffer = ReplayBuffer::new(10);
        for expected in 1..=5 {
            assert_eq!(buffer.push(snapshot()), expected);
        }
        assert_eq!(buffer.next_after(0).map(|s| s.seq), Some(1));
        assert_eq!(buffer.next_after(3).map(|s| s.seq), Some(4));
        assert_eq!(buffer.next_after(5), None);
        buffer.ack(3);
        assert_eq!(buffer.len(), 2);
        assert_eq!(buffer.next_after(0).map(|s| s.seq), Some(4));
        buffer.ack(99);
        assert!(buffer.is_empty());
        assert_eq!(buffer.push(snapshot()), 6);
    }

    #[test]
    fn older_snapshots_of_an_agent_are_sent_as_backfill() {
        let buffer = ReplayBuffer::new(10);
        let mut other = snapshot();
        other.agent = "a2".into();
        buffer.push(snapshot());
        buffer.push(other);
        buffer.push(snapshot());
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
    fn full_buffer_drops_oldest_and_counts() {
        let buffer = ReplayBuffer::new(3);
        for _ in 0..5 {
            buffer.push(snapshot());
        }
        assert_eq!(buffer.len(), 3);
        assert_eq!(buffer.dropped(), 2);
        assert_eq!(buffer.next_after(0).map(|s| s.seq), Some(3));
        assert_eq!(buffer.next_after(1).map(|s| s.seq), Some(3));
        assert_eq!(*buffer.subscribe().borrow(), 5);
    }
}
