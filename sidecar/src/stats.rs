//! The sidecar's own counters, reported to each aggregator alongside the snapshots: the poll
//! counts are the sidecar's, the buffer and connect counts that aggregator's own.

use std::sync::atomic::{AtomicU64, Ordering};

use flumewatch_proto::v1 as pb;

use crate::uplink::ReplayBuffer;

#[derive(Debug, Default)]
pub struct Stats {
    polls: AtomicU64,
    poll_failures: AtomicU64,
}

impl Stats {
    pub fn record_poll(&self, ok: bool) {
        self.polls.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.poll_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// As sent to one aggregator: `buffer` is its buffer, `connects` the streams opened to it.
    pub fn to_proto(&self, buffer: &ReplayBuffer, connects: u64) -> pb::SidecarStats {
        pb::SidecarStats {
            polls: self.polls.load(Ordering::Relaxed),
            poll_failures: self.poll_failures.load(Ordering::Relaxed),
            buffered: buffer.len() as u64,
            dropped: buffer.dropped(),
            connects,
        }
    }
}
