//! Flushing due groups: silences and inhibition mute, the notification log deduplicates, and
//! what is left joins the receiver's pending message, with the receiver's groups still waiting
//! their first turn (one incident, one message).

use std::collections::{BTreeSet, HashMap};
use std::time::SystemTime;

use tokio::time::Instant;

use super::dingtalk::message::GroupNotice;
use super::dispatch::{self, Dispatcher, Due, LogEntry, Reason};
use super::mute::Silence;
use super::receiver::ReceiverState;
use super::store::LogKey;
use super::{mute, Notifier, COALESCE};
use crate::alert::Alert;

impl Notifier {
    /// Due groups, muted and deduplicated, join their receiver's pending message; a receiver
    /// that is about to get a message takes along every other group of its own with news
    /// (still in its first wait, or with alerts not yet told): one incident, one message.
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
            let key = due.key.clone();
            match self.judge(due.clone(), alerts, &silences, log, wall) {
                Some(notice) => {
                    states[key.0].pending.insert(key.1.clone(), notice);
                    speaking.insert(key.0);
                }
                None => {
                    if let Some(status) = self.handle.lock().receivers.get_mut(key.0) {
                        status.suppressed += 1;
                    }
                    if due.firing.is_empty() {
                        // Nothing to say about a group whose alerts all resolved quietly.
                        let all: BTreeSet<u64> =
                            due.resolved.iter().map(|a| a.fingerprint).collect();
                        dispatcher.delivered(&key, &all);
                    }
                }
            }
        }
        for receiver in speaking {
            for due in dispatcher.others(receiver, &states[receiver].pending) {
                let key = due.key.clone();
                // News only: a reminder keeps its own schedule.
                let Some(notice) = self
                    .judge(due, alerts, &silences, log, wall)
                    .filter(|n| n.reason != Reason::Reminder)
                else {
                    continue;
                };
                dispatcher.flushed_now(&key, now);
                states[receiver].pending.insert(key.1, notice);
            }
        }
    }

    /// What one group has to say now, muted and deduplicated; `None` when nothing.
    fn judge(
        &self,
        due: Due,
        alerts: &[Alert],
        silences: &[Silence],
        log: &HashMap<LogKey, LogEntry>,
        wall: SystemTime,
    ) -> Option<GroupNotice> {
        let receiver = &self.config.receivers[due.key.0];
        let entry = log.get(&(receiver.name.clone(), due.key.1.clone()));
        let silenced = |a: &&Alert| !mute::silenced_by(silences, &a.labels.0, wall).is_empty();
        let inhibited = |a: &&Alert| mute::inhibited(a, alerts, &self.config.inhibit);
        // Whoever was told it fires is told it is over, even if someone silenced it since
        // (an inhibited one stays quiet: its source explains it).
        let told_then_silenced = |a: &&Alert| {
            receiver.send_resolved_when_muted
                && entry.is_some_and(|e| e.firing.contains(&a.fingerprint))
        };
        let firing: Vec<Alert> = due
            .firing
            .iter()
            .filter(|a| !silenced(a) && !inhibited(a))
            .cloned()
            .collect();
        let resolved: Vec<Alert> = if due.opts.send_resolved {
            due.resolved
                .iter()
                .filter(|a| !inhibited(a) && (!silenced(a) || told_then_silenced(a)))
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        let firing_fps: BTreeSet<u64> = firing.iter().map(|a| a.fingerprint).collect();
        let resolved_fps: BTreeSet<u64> = resolved.iter().map(|a| a.fingerprint).collect();
        if !dispatch::needs_update(entry, &firing_fps, &resolved_fps, &due.opts, wall) {
            return None;
        }
        let muted = due
            .firing
            .iter()
            .filter(|a| !firing_fps.contains(&a.fingerprint))
            .filter(|a| entry.is_some_and(|e| e.firing.contains(&a.fingerprint)))
            .map(|a| a.fingerprint)
            .collect();
        Some(GroupNotice {
            group_labels: due.labels,
            reason: dispatch::reason(entry, &firing_fps, &resolved_fps),
            notified: entry.map(|e| e.firing.clone()).unwrap_or_default(),
            muted,
            firing,
            resolved,
        })
    }
}
