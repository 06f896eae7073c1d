//! One receiver's delivery state: groups waiting to merge into its next message, its outbox,
//! the rate-limit minute and throttling pause, and when it may next send.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use super::dingtalk::client::SendError;
use super::dingtalk::message::GroupNotice;
use super::store::OutboxRow;
use super::{Notifier, ReceiverStatus, RETRY_STALLED};

pub(super) struct Outgoing {
    pub(super) row: OutboxRow,
    pub(super) attempts: u32,
    pub(super) not_before: Instant,
}

impl ReceiverState {
    /// Until when DingTalk's pause or the rate-limit minute (at most `limit` sends) holds this
    /// receiver back; `None` when neither does.
    pub(super) fn held_until(&self, limit: usize) -> Option<Instant> {
        let minute_ends = (self.recent.len() >= limit)
            .then(|| {
                self.recent
                    .front()
                    .map(|first| *first + Duration::from_secs(60))
            })
            .flatten();
        minute_ends.max(self.paused_until)
    }

    pub(super) fn empty() -> Self {
        Self {
            pending: BTreeMap::new(),
            outbox: VecDeque::new(),
            in_flight: false,
            recent: VecDeque::new(),
            paused_until: None,
            notes: Vec::new(),
            next_heartbeat: None,
            unrecorded: Vec::new(),
            peer_delivered: false,
            commit_failing: false,
        }
    }
}

/// A delivery whose notification-log write failed (the shared database was away): written
/// again until it sticks, before this replica takes the sender role again.
pub(super) struct Unrecorded {
    pub(super) row: OutboxRow,
    pub(super) entries: Vec<(String, super::dispatch::LogEntry)>,
    pub(super) forget_before: std::time::SystemTime,
}

pub(super) struct ReceiverState {
    /// Groups due but not yet in a message: they merge while the receiver waits.
    pub(super) pending: BTreeMap<String, GroupNotice>,
    /// Messages committed to the outbox, oldest first.
    pub(super) outbox: VecDeque<Outgoing>,
    pub(super) in_flight: bool,
    /// Send attempts within the last minute.
    pub(super) recent: VecDeque<Instant>,
    pub(super) paused_until: Option<Instant>,
    /// Fleet changes (retired agents) for the next message, announced once.
    pub(super) notes: Vec<String>,
    /// When the daily heartbeat goes next (receivers that have one).
    pub(super) next_heartbeat: Option<std::time::SystemTime>,
    /// Replicas: deliveries not yet in the shared notification log.
    pub(super) unrecorded: Vec<Unrecorded>,
    /// Replicas: a message of this receiver turned out delivered by the peer.
    pub(super) peer_delivered: bool,
    /// The last commit to the outbox failed (logged once until one succeeds).
    pub(super) commit_failing: bool,
}

impl ReceiverState {
    /// Something is waiting to go into a message.
    pub(super) fn has_news(&self) -> bool {
        !self.pending.is_empty() || !self.notes.is_empty()
    }
}

pub(super) struct SendResult {
    /// By name: a reload may renumber receivers while a send is in flight.
    pub(super) receiver: String,
    pub(super) result: Result<(), SendError>,
}

impl Notifier {
    /// Receiver states for the current config, carrying over by name what `old` held.
    pub(super) fn regroup(
        &self,
        old_names: &[String],
        mut old: Vec<ReceiverState>,
    ) -> Vec<ReceiverState> {
        let mut shared = self.handle.lock();
        let old_status = std::mem::take(&mut shared.receivers);
        shared.receivers = self
            .config
            .receivers
            .iter()
            .map(|r| {
                old_status
                    .iter()
                    .find(|s| s.name == r.name)
                    .cloned()
                    .unwrap_or(ReceiverStatus {
                        name: r.name.clone(),
                        ..Default::default()
                    })
            })
            .collect();
        self.config
            .receivers
            .iter()
            .map(|r| {
                let mut state = match old_names.iter().position(|n| *n == r.name) {
                    Some(i) => std::mem::replace(&mut old[i], ReceiverState::empty()),
                    None => ReceiverState::empty(),
                };
                // A reload may set, move or remove the heartbeat.
                state.next_heartbeat = r
                    .heartbeat
                    .map(|beat| beat.next_after(std::time::SystemTime::now()));
                state
            })
            .collect()
    }

    /// When a receiver with something to send may next send: its retry time, the end of a
    /// throttling pause or of the rate-limit minute, whichever is latest.
    pub(super) fn next_send_at(&self, states: &[ReceiverState], now: Instant) -> Option<Instant> {
        let limit = self.config.rate_limit_per_minute as usize;
        states
            .iter()
            .filter(|s| !s.in_flight && (!s.outbox.is_empty() || s.has_news()))
            .map(|s| {
                let ready = s.outbox.front().map_or(now, |o| o.not_before);
                let at = s.held_until(limit).map_or(ready, |held| held.max(ready));
                if at <= now {
                    now + RETRY_STALLED
                } else {
                    at
                }
            })
            .min()
    }
}
