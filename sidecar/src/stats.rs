//! The sidecar's own counters, reported to the aggregator alongside the snapshots.

use std::sync::atomic::{AtomicU64, Ordering};

use flumewatch_proto::v1 as pb;

use crate::uplink::ReplayBuffer;

#[derive(Debug, Default)]
pub struct Stats {
    polls: AtomicU64,
    poll_failures: AtomicU64,
    connects: AtomicU64,
}

impl Stats {
    pub fn record_poll(&self, ok: bool) {
        self.polls.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.poll_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn record_connect(&self) {
        self.connects.fetch_add(1, Ordering::Relaxed);
    }

    pub fn to_proto(&self, buffer: &ReplayBuffer) -> pb::SidecarStats {
        pb::SidecarStats {
            polls: self.polls.load(Ordering::Relaxed),
            poll_failures: self.poll_failures.load(Ordering::Relaxed),
            buffered: buffer.len() as u64,
            dropped: buffer.dropped(),
            connects: self.connects.load(Ordering::Relaxed),
        }
    }
}
