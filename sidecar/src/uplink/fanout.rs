//! Numbers each snapshot once, encodes it once and hands it to every aggregator's buffer.
//!
//! One numbering for all aggregators: each sees the same sequence numbers for the same
//! snapshots, so their histories can be compared, and a gap at one is a gap in its own stream
//! (a drop counted by its buffer), never an artefact of numbering.

use std::sync::{Arc, Mutex};

use flumewatch_proto::model::snapshot::Snapshot;

use super::buffer::{Encoded, ReplayBuffer};

/// What the pollers push to. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Fanout {
    /// The next sequence number. Held while the snapshot is handed to every buffer, so that
    /// two pollers pushing at once reach each buffer in the same, ascending order.
    next_seq: Arc<Mutex<u64>>,
    buffers: Arc<[ReplayBuffer]>,
}

impl Fanout {
    /// One buffer per aggregator, in the order they were given.
    pub fn new(buffers: Vec<ReplayBuffer>) -> Self {
        Self {
            next_seq: Arc::new(Mutex::new(1)),
            buffers: buffers.into(),
        }
    }

    /// Numbers `snapshot`, encodes it and queues it for every aggregator; returns its sequence
    /// number. Never waits: a buffer that is full (its aggregator slow or unreachable) drops its
    /// own oldest, and the others and the poller do not notice.
    pub fn push(&self, snapshot: Snapshot) -> u64 {
        // Only ever held for this synchronous block: no await, no other lock taken first.
        let mut next = self.next_seq.lock().unwrap_or_else(|e| e.into_inner());
        let seq = *next;
        *next += 1;
        let encoded = Arc::new(Encoded::new(seq, snapshot));
        for buffer in self.buffers.iter() {
            buffer.push(encoded.clone());
        }
        seq
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    fn snapshot() -> Snapshot {
        flumewatch_testkit::snapshot::ok(0, SystemTime::now(), vec![])
    }

    #[test]
    fn every_buffer_gets_every_snapshot_under_one_numbering() {
        let (a, b) = (ReplayBuffer::new(10), ReplayBuffer::new(10));
        let fanout = Fanout::new(vec![a.clone(), b.clone()]);
        for expected in 1..=3 {
            assert_eq!(fanout.push(snapshot()), expected);
        }
        for buffer in [&a, &b] {
            let seqs: Vec<u64> = (0..3)
                .filter_map(|after| buffer.next_after(after).map(|s| s.seq))
                .collect();
            assert_eq!(seqs, [1, 2, 3]);
        }
        let (x, y) = (a.next_after(0).unwrap(), b.next_after(0).unwrap());
        assert_eq!(
            x.encoded.as_ptr(),
            y.encoded.as_ptr(),
            "the encoded bytes are shared, not copied per aggregator"
        );
    }

    #[test]
    fn a_full_buffer_drops_only_its_own_oldest() {
        let (stuck, live) = (ReplayBuffer::new(3), ReplayBuffer::new(10));
        let fanout = Fanout::new(vec![stuck.clone(), live.clone()]);
        for _ in 0..5 {
            fanout.push(snapshot());
        }
        // The live aggregator acknowledges as it goes; the stuck one never does.
        live.ack(5);
        assert_eq!((stuck.len(), stuck.dropped()), (3, 2));
        assert_eq!(stuck.next_after(0).map(|s| s.seq), Some(3));
        assert_eq!((live.len(), live.dropped()), (0, 0));
        assert_eq!(fanout.push(snapshot()), 6);
        assert_eq!(live.next_after(5).map(|s| s.seq), Some(6));
    }
}
