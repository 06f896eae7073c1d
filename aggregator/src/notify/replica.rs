//! The notifier as one of several replicas on a shared PostgreSQL: every replica groups and
//! judges, only the lease holder sends. A standby follows the shared notification log, so
//! that when the lease comes to it (the sender died, or the database came back) it resumes
//! the old sender's outbox under the same msgUuids, and its groups say only what was not said.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use super::dispatch::{Dispatcher, LogEntry};
use super::receiver::{Outgoing, ReceiverState};
use super::store::{LogKey, OutboxRow, StoreError};
use super::Notifier;
use crate::ha::HaView;
use std::sync::atomic::Ordering;

/// How often a replica reads what its peer changed: the notification log (standby),
/// silences (both), and retries its own unrecorded deliveries.
pub(super) const SYNC_EVERY: Duration = Duration::from_secs(2);

impl Notifier {
    /// The lease epoch changed (`epoch`: the new term, or none): take the sender's work over,
    /// or hand it back. Returns the term now served (a takeover that cannot read the shared
    /// state yet is tried again at the next turn of the loop).
    pub(super) fn change_term(
        &self,
        epoch: Option<i64>,
        view: &HaView,
        states: &mut [ReceiverState],
        log: &mut HashMap<LogKey, LogEntry>,
        dispatcher: &mut Dispatcher,
        now: Instant,
    ) -> Option<i64> {
        for state in states.iter_mut() {
            state.pending.clear();
            // A POST under way keeps its entry: its outcome is recorded when it ends.
            state.outbox.truncate(usize::from(state.in_flight));
            // Fleet changes are only this replica's to tell while it holds the lease (they
            // are announced once, by whoever sends then).
            if epoch.is_none() {
                state.notes.clear();
            }
        }
        let epoch = epoch?;
        if !self.record_unrecorded(states) {
            return None;
        }
        // A peer that sent while the database was away records it when the database is
        // back: what it said must be in the log before this replica judges against it.
        if let Some(pg) = self.store.postgres() {
            match pg.peers_settling(&view.replica, view.peer_missing_after) {
                Ok(false) => {}
                Ok(true) => {
                    tracing::info!(
                        "sender lease taken; waiting for the other replica to record what it sent"
                    );
                    return None;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the other replicas' state; trying again");
                    return None;
                }
            }
        }
        let (entries, rows) = match (self.store.nflog(), self.store.outbox()) {
            (Ok(entries), Ok(rows)) => (entries, rows),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "cannot read the shared state to take over sending; trying again");
                return None;
            }
        };
        *log = entries.into_iter().collect();
        let resumed = self.adopt(states, rows, now);
        // Every group that has flushed is judged again now against the shared log: what the
        // old sender told stays told, what it had not told yet goes out.
        self.judge_again(dispatcher, now);
        tracing::info!(
            epoch,
            resumed,
            "sending: resuming from the shared notification log"
        );
        Some(epoch)
    }

    /// Writes deliveries whose log entry the database missed; true when none is left. One
    /// the database refuses for good is given up (logged), not retried for ever.
    pub(super) fn record_unrecorded(&self, states: &mut [ReceiverState]) -> bool {
        for state in states.iter_mut() {
            state.unrecorded.retain(|u| {
                match self.store.delivered(&u.row, &u.entries, u.forget_before) {
                    Ok(()) => false,
                    Err(StoreError::Unavailable(_)) => true,
                    Err(e) => {
                        tracing::error!(error = %e, msg_uuid = %u.row.msg_uuid, "cannot record a delivery in the shared log; giving up on it");
                        false
                    }
                }
            });
        }
        let left: usize = states.iter().map(|s| s.unrecorded.len()).sum();
        self.handle.unrecorded().store(left, Ordering::Relaxed);
        left == 0
    }

    /// A peer delivered a message this replica was about to send (it recorded it late, after
    /// an outage): take in what it told and judge every group again, as at a takeover.
    pub(super) fn resync_after_peer(
        &self,
        states: &mut [ReceiverState],
        log: &mut HashMap<LogKey, LogEntry>,
        dispatcher: &mut Dispatcher,
        now: Instant,
    ) {
        for state in states.iter_mut() {
            state.peer_delivered = false;
            state.pending.clear();
        }
        self.merge_newer(log);
        self.judge_again(dispatcher, now);
    }

    /// Every group that has flushed flushes again now, judged against the log as it is (as
    /// after a reload): what was told stays told, what was not goes out.
    fn judge_again(&self, dispatcher: &mut Dispatcher, now: Instant) {
        let names: Vec<String> = self
            .config
            .receivers
            .iter()
            .map(|r| r.name.clone())
            .collect();
        dispatcher.reconfigure(&names, &names, now);
    }

    /// Takes in the shared log's entries newer than this replica's.
    fn merge_newer(&self, log: &mut HashMap<LogKey, LogEntry>) {
        match self.store.nflog() {
            Ok(entries) => {
                for (key, entry) in entries {
                    let newer = log
                        .get(&key)
                        .is_none_or(|mine| mine.sent_at < entry.sent_at);
                    if newer {
                        log.insert(key, entry);
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot read the shared notification log"),
        }
    }

    /// Messages in the shared outbox this sender does not hold: committed by a peer whose
    /// term ended during the commit.
    fn adopt_outbox(&self, states: &mut [ReceiverState]) {
        if let Ok(rows) = self.store.outbox() {
            let adopted = self.adopt(states, rows, Instant::now());
            if adopted > 0 {
                tracing::info!(adopted, "taking over messages the other replica queued");
            }
        }
    }

    /// Queues the shared outbox's messages this replica does not hold yet; how many.
    fn adopt(&self, states: &mut [ReceiverState], rows: Vec<OutboxRow>, now: Instant) -> usize {
        let mut adopted = 0;
        for row in rows {
            let Some(index) = self
                .config
                .receivers
                .iter()
                .position(|r| r.name == row.receiver)
            else {
                continue;
            };
            let state = &mut states[index];
            if state.outbox.iter().any(|o| o.row.id == row.id) {
                continue;
            }
            adopted += 1;
            state.outbox.push_back(Outgoing {
                row,
                attempts: 0,
                not_before: now,
            });
        }
        adopted
    }

    /// What the peer changed: silences always; the notification log while this replica is
    /// not the sender (the sender is its only writer).
    pub(super) fn sync_shared(
        &self,
        states: &mut [ReceiverState],
        log: &mut HashMap<LogKey, LogEntry>,
        dispatcher: &mut Dispatcher,
        sending: bool,
    ) {
        self.record_unrecorded(states);
        if let Err(e) = self.handle.refresh_silences() {
            tracing::debug!(error = %e, "cannot read the shared silences");
        }
        if sending {
            // The sender is the log's and the outbox's only writer, but a peer whose term
            // ended mid-commit (or that recorded late) may have added to them.
            self.merge_newer(log);
            self.adopt_outbox(states);
            return;
        }
        match self.store.nflog() {
            Ok(entries) => {
                *log = entries.into_iter().collect();
                for ((receiver, key), entry) in log.iter() {
                    if let Some(index) = self
                        .config
                        .receivers
                        .iter()
                        .position(|r| r.name == *receiver)
                    {
                        dispatcher.delivered(&(index, key.clone()), &entry.resolved);
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot read the shared notification log"),
        }
    }
}
