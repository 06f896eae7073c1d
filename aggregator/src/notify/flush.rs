//! Flushing due groups: silences and inhibition mute, the notification log deduplicates, and
//! what is left joins the receiver's pending message.

use std::collections::{BTreeSet, HashMap};
use std::time::SystemTime;

use tokio::time::Instant;

use super::dingtalk::message::GroupNotice;
use super::dispatch::{self, Dispatcher, LogEntry};
use super::receiver::ReceiverState;
use super::store::LogKey;
use super::{mute, Notifier, COALESCE};
use crate::alert::Alert;

impl Notifier {
    /// Due groups, muted and deduplicated, join their receiver's pending message.
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
        for due in dispatcher.due_within(now, COALESCE) {
            let audible = |a: &&Alert| {
                mute::silenced_by(&silences, &a.labels.0, wall).is_empty()
                    && !mute::inhibited(a, alerts, &self.config.inhibit)
            };
            let firing: Vec<Alert> = due.firing.iter().filter(audible).cloned().collect();
            let resolved: Vec<Alert> = if due.opts.send_resolved {
                due.resolved.iter().filter(audible).cloned().collect()
            } else {
                Vec::new()
            };
            let firing_fps: BTreeSet<u64> = firing.iter().map(|a| a.fingerprint).collect();
            let resolved_fps: BTreeSet<u64> = resolved.iter().map(|a| a.fingerprint).collect();
            let receiver = &self.config.receivers[due.key.0];
            let entry = log.get(&(receiver.name.clone(), due.key.1.clone()));
            if dispatch::needs_update(entry, &firing_fps, &resolved_fps, &due.opts, wall) {
                states[due.key.0].pending.insert(
                    due.key.1.clone(),
                    GroupNotice {
                        group_labels: due.labels,
                        reason: dispatch::reason(entry, &firing_fps, &resolved_fps),
                        firing,
                        resolved,
                    },
                );
                continue;
            }
            if let Some(status) = self.handle.lock().receivers.get_mut(due.key.0) {
                status.suppressed += 1;
            }
            if due.firing.is_empty() {
                // Nothing to say about a group whose alerts all resolved quietly.
                let all: BTreeSet<u64> = due.resolved.iter().map(|a| a.fingerprint).collect();
                dispatcher.delivered(&due.key, &all);
            }
        }
    }
}
