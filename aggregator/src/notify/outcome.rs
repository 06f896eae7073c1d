//! A send's outcome: delivered groups enter the notification log; failures are retried with
//! backoff (longer when DingTalk throttles) or, when DingTalk refuses for good, dropped and counted.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::dispatch::{Dispatcher, LogEntry};
use super::receiver::{ReceiverState, SendResult};
use super::store::LogKey;
use super::{Notifier, MAX_BACKOFF};
use crate::alert::Alert;

impl Notifier {
    pub(super) fn finish(
        &self,
        done: SendResult,
        states: &mut [ReceiverState],
        log: &mut HashMap<LogKey, LogEntry>,
        dispatcher: &mut Dispatcher,
    ) {
        let Some(index) = self
            .config
            .receivers
            .iter()
            .position(|r| r.name == done.receiver)
        else {
            return;
        };
        let state = &mut states[index];
        state.in_flight = false;
        let name = done.receiver;
        let Some(mut outgoing) = state.outbox.pop_front() else {
            return;
        };
        let wall = SystemTime::now();
        let mut shared = self.handle.lock();
        let Some(status) = shared.receivers.get_mut(index) else {
            return;
        };
        match done.result {
            Ok(()) => {
                status.sent += 1;
                let entries: Vec<(String, LogEntry)> = outgoing
                    .row
                    .groups
                    .iter()
                    .map(|(key, firing, resolved)| {
                        let previous = log.get(&(name.clone(), key.clone()));
                        let entry =
                            LogEntry::after(previous, firing.clone(), resolved.clone(), wall);
                        (key.clone(), entry)
                    })
                    .collect();
                let forget_before = wall
                    .checked_sub(self.config.log_retention())
                    .unwrap_or(std::time::UNIX_EPOCH);
                log.retain(|_, e| e.sent_at.is_some_and(|at| at >= forget_before));
                if let Err(e) = self.store.delivered(&outgoing.row, &entries, forget_before) {
                    tracing::error!(error = %e, "delivered, but the notification log could not be written");
                    if self.store.postgres().is_some() {
                        state.unrecorded.push(super::receiver::Unrecorded {
                            row: outgoing.row.clone(),
                            entries: entries.clone(),
                            forget_before,
                        });
                        self.handle
                            .unrecorded()
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                for ((key, firing, resolved), (_, entry)) in outgoing.row.groups.iter().zip(entries)
                {
                    // The group came due again while this message waited (DingTalk down, say):
                    // if nothing changed since, it has just been said.
                    let unchanged = state.pending.get(key).is_some_and(|waiting| {
                        let fps = |alerts: &[Alert]| {
                            alerts
                                .iter()
                                .map(|a| a.fingerprint)
                                .collect::<BTreeSet<_>>()
                        };
                        let told: BTreeSet<u64> = fps(&waiting.firing)
                            .union(&waiting.muted)
                            .copied()
                            .collect();
                        told == *firing && fps(&waiting.resolved) == *resolved
                    });
                    if unchanged {
                        state.pending.remove(key);
                    }
                    log.insert((name.clone(), key.clone()), entry);
                    dispatcher.delivered(&(index, key.clone()), resolved);
                }
                tracing::info!(receiver = %name, groups = outgoing.row.groups.len(), "DingTalk message sent");
            }
            Err(e) => {
                status.failed_attempts += 1;
                status.last_error = e.to_string();
                if let Some(code) = e.errcode() {
                    status.last_errcode = code;
                    *status.errcodes.entry(code).or_default() += 1;
                }
                if e.retryable() {
                    let recorded = self.store.attempt_failed(
                        &outgoing.row.msg_uuid,
                        e.errcode().unwrap_or(0),
                        &e.errmsg(),
                    );
                    if let Err(e) = recorded {
                        tracing::warn!(error = %e, "cannot note the failed attempt in the notification history");
                    }
                    outgoing.attempts += 1;
                    let backoff =
                        Duration::from_secs(1 << outgoing.attempts.min(6)).min(MAX_BACKOFF);
                    let wait = if e.throttled() {
                        self.config.throttle_pause.max(backoff)
                    } else {
                        backoff
                    };
                    if e.throttled() {
                        state.paused_until = Some(Instant::now() + wait);
                    }
                    tracing::debug!(receiver = %name, error = %e, retry_in = ?wait, "DingTalk send failed; will retry");
                    outgoing.not_before = Instant::now() + wait;
                    state.outbox.push_front(outgoing);
                } else {
                    status.dropped += 1;
                    tracing::error!(receiver = %name, error = %e, "DingTalk refused the message for good; check the robot's settings");
                    let dropped =
                        self.store
                            .discard(&outgoing.row, e.errcode().unwrap_or(0), &e.errmsg());
                    if let Err(e) = dropped {
                        tracing::error!(error = %e, "cannot drop a refused message from the outbox");
                    }
                }
            }
        }
    }
}
