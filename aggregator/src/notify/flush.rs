//! Flushing due groups: silences and inhibition mute, the notification log deduplicates, and
//! what is left joins the receiver's pending message, with the receiver's groups still waiting
//! their first turn (one incident, one message).

use std::collections::{BTreeSet, HashMap};
use std::time::SystemTime;

use tokio::time::Instant;

use super::dingtalk::message::GroupNotice;
use super::dispatch::{self, Dispatcher, Due, LogEntry};
use super::mute::Silence;
use super::receiver::ReceiverState;
use super::store::LogKey;
use super::{mute, Notifier, COALESCE};
use crate::alert::Alert;

impl Notifier {
    /// Due groups, muted and deduplicated, join their receiver's pending message; a receiver
    /// that is about to get a message takes along its groups still in their first wait.
    pub(super) fn flush(
        &self,
        alerts: &[Alert],
        dispatcher: &mut Dispatcher,
        states: &mut [ReceiverState],
        log: &HashMap<LogKey, LogEntry>,
        now: Instant,
        wall: SystemTime,
    ) {
        let silences = self.handle.lock().silences.clone();
        let mut speaking = BTreeSet::new();
        for due in dispatcher.due_within(now, COALESCE) {
            let receiver = due.key.0;
            if self.judge(due, alerts, &silences, dispatcher, states, log, wall) {
                speaking.insert(receiver);
            }
        }
        for receiver in speaking {
            for due in dispatcher.waiting(receiver, now) {
                self.judge(due, alerts, &silences, dispatcher, states, log, wall);
            }
        }
    }

    /// One flushed group: true when it has something to say and joined the pending message.
    #[allow(clippy::too_many_arguments)]
    fn judge(
        &self,
        due: Due,
        alerts: &[Alert],
        silences: &[Silence],
        dispatcher: &mut Dispatcher,
        states: &mut [ReceiverState],
        log: &HashMap<LogKey, LogEntry>,
        wall: SystemTime,
    ) -> bool {
        let receiver = &self.config.receivers[due.key.0];
        let entry = log.get(&(receiver.name.clone(), due.key.1.clone()));
        let audible = |a: &&Alert| {
            mute::silenced_by(silences, &a.labels.0, wall).is_empty()
                && !mute::inhibited(a, alerts, &self.config.inhibit)
        };
        // Whoever was told it fires is told it is over, even if it was muted since.
        let was_notified = |a: &&Alert| {
            receiver.send_resolved_when_muted
                && entry.is_some_and(|e| e.firing.contains(&a.fingerprint))
        };
        let firing: Vec<Alert> = due.firing.iter().filter(audible).cloned().collect();
        let resolved: Vec<Alert> = if due.opts.send_resolved {
            due.resolved
                .iter()
                .filter(|a| audible(a) || was_notified(a))
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        let firing_fps: BTreeSet<u64> = firing.iter().map(|a| a.fingerprint).collect();
        let resolved_fps: BTreeSet<u64> = resolved.iter().map(|a| a.fingerprint).collect();
        if dispatch::needs_update(entry, &firing_fps, &resolved_fps, &due.opts, wall) {
            states[due.key.0].pending.insert(
                due.key.1.clone(),
                GroupNotice {
                    group_labels: due.labels,
                    reason: dispatch::reason(entry, &firing_fps, &resolved_fps),
                    notified: entry.map(|e| e.firing.clone()).unwrap_or_default(),
                    firing,
                    resolved,
                },
            );
            return true;
        }
        if let Some(status) = self.handle.lock().receivers.get_mut(due.key.0) {
            status.suppressed += 1;
        }
        if due.firing.is_empty() {
            // Nothing to say about a group whose alerts all resolved quietly.
            let all: BTreeSet<u64> = due.resolved.iter().map(|a| a.fingerprint).collect();
            dispatcher.delivered(&due.key, &all);
        }
        false
    }
}
