//! The notifier as one of several replicas on a shared PostgreSQL: every replica groups and
//! judges, only the lease holder sends. A standby follows the shared notification log, so
//! that when the lease comes to it (the sender died, or the database came back) it resumes
//! the old sender's outbox under the same msgUuids, and its groups say only what was not said.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use super::dispatch::{Dispatcher, LogEntry};
use super::receiver::{Outgoing, ReceiverState};
use super::store::LogKey;
use super::Notifier;

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
        states: &mut [ReceiverState],
        log: &mut HashMap<LogKey, LogEntry>,
        dispatcher: &mut Dispatcher,
        now: Instant,
    ) -> Option<i64> {
        for state in states.iter_mut() {
            state.pending.clear();
            state.notes.clear();
            // A POST under way keeps its entry: its outcome is recorded when it ends.
            state.outbox.truncate(usize::from(state.in_flight));
        }
        let epoch = epoch?;
        if !self.record_unrecorded(states) {
            return None;
        }
        let (entries, rows) = match (self.store.nflog(), self.store.outbox()) {
            (Ok(entries), Ok(rows)) => (entries, rows),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "cannot read the shared state to take over sending; trying again");
                return None;
            }
        };
        *log = entries.into_iter().collect();
        let mut resumed = 0;
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
            if state.outbox.front().is_some_and(|o| o.row.id == row.id) {
                continue;
            }
            resumed += 1;
            state.outbox.push_back(Outgoing {
                row,
                attempts: 0,
                not_before: now,
            });
        }
        // Every group that has flushed is judged again now against the shared log: what the
        // old sender told stays told, what it had not told yet goes out.
        let names: Vec<String> = self
            .config
            .receivers
            .iter()
            .map(|r| r.name.clone())
            .collect();
        dispatcher.reconfigure(&names, &names, now);
        tracing::info!(
            epoch,
            resumed,
            "sending: resuming from the shared notification log"
        );
        Some(epoch)
    }

    /// Writes deliveries whose log entry the database missed; true when none is left.
    fn record_unrecorded(&self, states: &mut [ReceiverState]) -> bool {
        for state in states.iter_mut() {
            state.unrecorded.retain(|u| {
                self.store
                    .delivered(&u.row, &u.entries, u.forget_before)
                    .is_err()
            });
        }
        states.iter().all(|s| s.unrecorded.is_empty())
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
