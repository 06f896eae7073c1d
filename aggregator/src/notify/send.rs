//! Sending: within DingTalk's rate limit, pending groups render into one message that is
//! committed to the outbox (under a new msgUuid, with its history row) first, then POSTed in a
//! task of its own, given up after the receiver's `send_timeout`.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::dingtalk::client;
use super::dingtalk::message::{self, GroupNotice};
use super::dispatch::{self, LogEntry};
use super::receiver::{Outgoing, ReceiverState, SendResult};
use super::store::history::NotifiedAlert;
use super::store::postgres::Claim;
use super::store::LogKey;
use super::store::{GroupFingerprints, NewMessage};
use super::{Notifier, RETRY_STALLED};
use crate::alert::AlertStatus;
use crate::ha::Permit;

impl Notifier {
    /// Commits a message to the outbox (and the history), due at `now`.
    pub(super) fn commit(
        &self,
        state: &mut ReceiverState,
        message: NewMessage<'_>,
        now: Instant,
        wall: SystemTime,
    ) -> Result<(), super::store::StoreError> {
        let keep_since = wall
            .checked_sub(self.config.history_retention)
            .unwrap_or(UNIX_EPOCH);
        let row = self.store.queue(message, wall, keep_since)?;
        state.outbox.push_back(Outgoing {
            row,
            attempts: 0,
            not_before: now,
        });
        Ok(())
    }

    /// Starts a send for every receiver that may send now. A replica that is not the sender
    /// (`permit` withheld) forgets what its groups would say: the sender says it, and the
    /// shared notification log tells this one what was said.
    pub(super) fn send(
        &self,
        states: &mut [ReceiverState],
        results: &mpsc::Sender<SendResult>,
        log: &HashMap<LogKey, LogEntry>,
        permit: &Permit,
        now: Instant,
        wall: SystemTime,
    ) {
        for (index, state) in states.iter_mut().enumerate() {
            let receiver = &self.config.receivers[index];
            while state
                .recent
                .front()
                .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
            {
                state.recent.pop_front();
            }
            let held = state
                .held_until(self.config.rate_limit_per_minute as usize)
                .is_some_and(|until| now < until);
            match permit {
                Permit::Withheld => {
                    state.pending.clear();
                    state.notes.clear();
                    continue;
                }
                // Kept for the takeover: fleet changes are announced by this replica now.
                Permit::TakingOver => continue,
                Permit::Single | Permit::Lease { .. } => {}
            }
            if state.in_flight || held {
                continue;
            }
            if state.outbox.is_empty() && state.has_news() {
                let mut groups: Vec<(String, GroupNotice)> =
                    std::mem::take(&mut state.pending).into_iter().collect();
                // A notice may have waited (rate limit, DingTalk down) while an earlier message
                // was delivered: say what is new against what was told by now.
                for (key, notice) in &mut groups {
                    let entry = log.get(&(receiver.name.clone(), key.clone()));
                    let fps = |alerts: &[crate::alert::Alert]| -> BTreeSet<u64> {
                        alerts.iter().map(|a| a.fingerprint).collect()
                    };
                    notice.reason =
                        dispatch::reason(entry, &fps(&notice.firing), &fps(&notice.resolved));
                    notice.notified = entry.map(|e| e.firing.clone()).unwrap_or_default();
                }
                let notices: Vec<GroupNotice> = groups.iter().map(|(_, g)| g.clone()).collect();
                let notes = std::mem::take(&mut state.notes);
                let rendered = message::render(&notices, &notes, &receiver.style, wall);
                if rendered.omitted > 0 {
                    tracing::warn!(receiver = %receiver.name, omitted = rendered.omitted, "message shortened to fit DingTalk's size limit");
                }
                let meta: Vec<GroupFingerprints> = groups
                    .iter()
                    .map(|(k, g)| {
                        (
                            k.clone(),
                            // Told-and-muted alerts stay on record as told (see GroupNotice).
                            g.firing
                                .iter()
                                .map(|a| a.fingerprint)
                                .chain(g.muted.iter().copied())
                                .collect(),
                            g.resolved.iter().map(|a| a.fingerprint).collect(),
                        )
                    })
                    .collect();
                let message = NewMessage {
                    receiver: &receiver.name,
                    body: &rendered.body,
                    groups: meta,
                    title: &rendered.title,
                    reason: rendered.reason.as_str(),
                    alerts: &carried(&notices),
                };
                let committed = self.commit(state, message, now, wall);
                if committed.is_ok() {
                    state.commit_failing = false;
                }
                if let Err(e) = committed {
                    // Once per stretch of failures: a database outage must not flood the log.
                    if !state.commit_failing {
                        tracing::error!(error = %e, "cannot store a message in the outbox; trying again every second");
                    }
                    state.commit_failing = true;
                    // Kept waiting, unless a newer flush of the same group came meanwhile.
                    for (key, notice) in groups {
                        state.pending.entry(key).or_insert(notice);
                    }
                    state.notes.splice(0..0, notes);
                }
            }
            let Some(next) = state.outbox.front_mut() else {
                continue;
            };
            if next.not_before > now {
                continue;
            }
            let timeout = match self.may_post(next, permit, receiver.send_timeout, now) {
                Posting::Go(timeout) => timeout,
                Posting::Later => {
                    next.not_before = now + RETRY_STALLED;
                    continue;
                }
                Posting::Gone => {
                    // Delivered by the peer that claimed it: what it said is in the shared
                    // log now, and this replica's groups must be judged against that.
                    state.outbox.pop_front();
                    state.peer_delivered = true;
                    continue;
                }
            };
            state.in_flight = true;
            state.recent.push_back(now);
            let (http, robot, body, results, name, timeout) = (
                self.http.clone(),
                receiver.robot.clone(),
                next.row.body.clone(),
                results.clone(),
                receiver.name.clone(),
                timeout,
            );
            let now_ms = wall
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            tokio::spawn(async move {
                let result = client::send(&http, &robot, body, now_ms, timeout).await;
                let _ = results
                    .send(SendResult {
                        receiver: name,
                        result,
                    })
                    .await;
            });
        }
        let mut shared = self.handle.lock();
        for (status, state) in shared.receivers.iter_mut().zip(states.iter()) {
            status.queued = (state.outbox.len() + usize::from(state.has_news())) as u64;
        }
    }
}

/// A POST cut short this close to the end of the lease would not be worth starting.
const LEAST_POST: Duration = Duration::from_secs(2);

/// Whether the next message of a receiver may be POSTed now.
enum Posting {
    /// Yes, given up after this long.
    Go(Duration),
    Later,
    /// No longer in the shared outbox: delivered (or dropped) by another sender.
    Gone,
}

impl Notifier {
    /// A single aggregator counts the attempt and sends. A replica first claims the message
    /// under its lease (see [`Pg::claim`](super::store::postgres::Pg::claim)); while the
    /// database is away it sends from its own queue, each POST given up before its term ends,
    /// so that no successor can start the same message while one is under way.
    fn may_post(
        &self,
        next: &Outgoing,
        permit: &Permit,
        send_timeout: Duration,
        now: Instant,
    ) -> Posting {
        let (
            Permit::Lease {
                replica,
                epoch,
                valid_until,
                peer_alive_within,
            },
            Some(pg),
        ) = (permit, self.store.postgres())
        else {
            if let Err(e) = self.store.attempt_started(&next.row.msg_uuid) {
                tracing::warn!(error = %e, "cannot count the attempt in the notification history");
            }
            return Posting::Go(send_timeout);
        };
        let claimed = pg.claim(&next.row, replica, *epoch, send_timeout, *peer_alive_within);
        // A failed claim may have waited out connect and statement timeouts: the term's
        // remainder is measured after it, not from the loop's `now`.
        let left = valid_until.saturating_duration_since(Instant::now().max(now));
        match claimed {
            Ok(Claim::Granted) => Posting::Go(send_timeout),
            Ok(Claim::Wait | Claim::Refused) => Posting::Later,
            Ok(Claim::Gone) => Posting::Gone,
            Err(e) if left >= 2 * LEAST_POST => {
                tracing::warn!(error = %e, "state database away: sending from the local queue under a valid lease");
                Posting::Go(send_timeout.min(left - LEAST_POST))
            }
            Err(e) => {
                tracing::debug!(error = %e, "state database away and the lease nearly over: waiting");
                Posting::Later
            }
        }
    }
}

/// The alerts a message carries, once each per state, for its history row.
fn carried(notices: &[GroupNotice]) -> Vec<NotifiedAlert> {
    let mut seen = std::collections::BTreeSet::new();
    notices
        .iter()
        .flat_map(|g| {
            let firing = g.firing.iter().map(|a| (a, AlertStatus::Firing));
            firing.chain(g.resolved.iter().map(|a| (a, AlertStatus::Resolved)))
        })
        .filter(|(a, status)| seen.insert((a.fingerprint, *status == AlertStatus::Firing)))
        .map(|(a, status)| NotifiedAlert {
            fingerprint: a.fingerprint,
            alertname: a.alertname.clone(),
            status,
        })
        .collect()
}
