//! Notifications: fleet alerts → groups (dispatch) → mute (silences, inhibition) → dedup
//! (notification log) → one combined message per receiver → DingTalk, rate-limited and
//! retried, with an outbox in SQLite so nothing is lost or sent twice across restarts.
//!
//! One task owns the pipeline; each HTTP send runs in its own task and reports back, so a slow
//! robot never stalls grouping.

pub mod config;
pub mod dingtalk;
pub mod dispatch;
pub mod mute;
pub mod store;

pub mod firing;
mod flush;
mod handle;
pub mod heartbeat;
mod outcome;
mod receiver;
mod replica;
mod send;

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use config::NotifyConfig;
use dingtalk::client;
use dispatch::{Dispatcher, LogEntry};
use firing::FiringLog;
use receiver::{Outgoing, SendResult};
use store::{LogKey, Store};

pub use handle::{NotifyHandle, ReceiverStatus, Shared};

use crate::alert::Alert;
use crate::fleet::Fleet;
use crate::ha::Permit;

/// How soon to try again work that should already have happened: a send whose outbox write
/// failed, or a firing-state write that failed.
const RETRY_STALLED: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Groups falling due this close together share one message.
const COALESCE: Duration = Duration::from_secs(1);
/// Send results waiting for the pipeline: at most one per receiver is in flight; a sender
/// beyond this waits, it is never lost.
const RESULTS_QUEUE: usize = 16;

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(365 * 24 * 3600)
}

/// The notification pipeline task.
pub struct Notifier {
    config: NotifyConfig,
    /// Reloads publish new settings here (latest value wins).
    updates: watch::Receiver<NotifyConfig>,
    fleet: Fleet,
    handle: NotifyHandle,
    store: Store,
    firing: FiringLog,
    http: reqwest::Client,
}

/// Why the notifier could not start. Not retryable: the client or the database is broken.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot build the DingTalk client: {0}")]
    Http(#[from] reqwest::Error),
    #[error(transparent)]
    Store(#[from] store::StoreError),
}

impl Notifier {
    /// Also hands `fleet` the alerts that were firing at the last stop (see
    /// [`FiringLog::load`]): call it before anything is judged.
    pub fn new(
        updates: watch::Receiver<NotifyConfig>,
        fleet: Fleet,
        handle: NotifyHandle,
        store: Store,
    ) -> Result<Self, StartError> {
        let firing = FiringLog::load(&store, &fleet)?;
        Ok(Self::with_firing_log(
            updates, fleet, handle, store, firing,
        )?)
    }

    /// With the firing log already loaded (and handed to `fleet`) at bind time.
    pub fn with_firing_log(
        mut updates: watch::Receiver<NotifyConfig>,
        fleet: Fleet,
        handle: NotifyHandle,
        store: Store,
        firing: FiringLog,
    ) -> Result<Self, reqwest::Error> {
        let config = updates.borrow_and_update().clone();
        let http = client::http_client()?;
        Ok(Self {
            config,
            updates,
            fleet,
            handle,
            store,
            firing,
            http,
        })
    }

    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut log: HashMap<LogKey, LogEntry> =
            self.store.nflog().unwrap_or_default().into_iter().collect();
        let mut states = self.regroup(&[], Vec::new());
        // A replica takes the shared outbox over only with the sender lease (see `replica`).
        let mut ha = self.handle.ha_changes();
        let mut term: Option<i64> = None;
        let mut next_sync = Instant::now();
        let outbox = match ha {
            Some(_) => Ok(Vec::new()),
            None => self.store.outbox(),
        };
        match outbox {
            Ok(rows) => {
                for row in rows {
                    match self
                        .config
                        .receivers
                        .iter()
                        .position(|r| r.name == row.receiver)
                    {
                        Some(i) => states[i].outbox.push_back(Outgoing {
                            row,
                            attempts: 0,
                            not_before: Instant::now(),
                        }),
                        None => {
                            tracing::warn!(receiver = %row.receiver, "undelivered message for a receiver no longer configured")
                        }
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read the outbox"),
        }
        let mut dispatcher = Dispatcher::default();
        let (results_tx, mut results) = mpsc::channel::<SendResult>(RESULTS_QUEUE);
        let alerts_changed = self.fleet.alerts_changed();
        let mut updates = self.updates.clone();
        // The fleet's alerts as last read: read again only when they changed, a group falls
        // due (so a message shows current values), the restore window closes or a firing-state
        // write is to be tried again. Between those, a fleet of any size costs this loop nothing.
        let mut alerts: Vec<Alert> = Vec::new();
        let mut stale = true;
        loop {
            let now = Instant::now();
            let wall = SystemTime::now();
            let permit = match &ha {
                None => Permit::Single,
                Some(view) => {
                    let view = view.borrow().clone();
                    let epoch = view.role.valid_epoch(now);
                    if epoch != term {
                        term = self.change_term(
                            epoch,
                            &view,
                            &mut states,
                            &mut log,
                            &mut dispatcher,
                            now,
                        );
                        stale = true;
                    }
                    if now >= next_sync {
                        self.sync_shared(&mut states, &mut log, &mut dispatcher, term.is_some());
                        next_sync = now + replica::SYNC_EVERY;
                    }
                    match (term, view.role) {
                        (Some(t), crate::ha::Role::Sender { epoch, valid_until }) if t == epoch => {
                            Permit::Lease {
                                replica: view.replica,
                                epoch,
                                valid_until,
                                peer_alive_within: view.peer_missing_after,
                            }
                        }
                        // The lease is ours but the takeover waits (see `change_term`).
                        (_, crate::ha::Role::Sender { .. }) => Permit::TakingOver,
                        _ => Permit::Withheld,
                    }
                }
            };
            if stale {
                // Agents that left the fleet: every receiver hears it once.
                for retired in self.fleet.take_announcements() {
                    for (receiver, state) in self.config.receivers.iter().zip(states.iter_mut()) {
                        state.notes.push(dingtalk::message::retirement(
                            &retired,
                            receiver.style.language,
                        ));
                    }
                }
                alerts = self.fleet.alerts();
                self.firing.sync(&self.store, &alerts, now);
                dispatcher.observe_told(&alerts, &self.config, &log, now);
                stale = false;
            }
            self.flush(&alerts, &mut dispatcher, &mut states, &log, now, wall);
            self.heartbeats(&alerts, &mut states, wall);
            self.send(&mut states, &results_tx, &log, &permit, now, wall);
            if states.iter().any(|s| s.peer_delivered) {
                self.resync_after_peer(&mut states, &mut log, &mut dispatcher, Instant::now());
            }

            let now = Instant::now();
            let next_heartbeat = states
                .iter()
                .filter_map(|s| s.next_heartbeat)
                .min()
                .map(|at| now + at.duration_since(SystemTime::now()).unwrap_or_default());
            let wake = [
                dispatcher.next_flush(),
                self.next_send_at(&states, now),
                self.firing.wake_at(now),
                next_heartbeat,
                ha.is_some().then_some(next_sync),
                match &permit {
                    Permit::Lease { valid_until, .. } => Some(*valid_until),
                    _ => None,
                },
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or_else(far_future);
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(done) = results.recv() => {
                    // The receiver is free again: the next queued message may go now.
                    self.finish(done, &mut states, &mut log, &mut dispatcher);
                }
                _ = alerts_changed.notified() => stale = true,
                Some(Ok(())) = async {
                    match ha.as_mut() {
                        Some(view) => Some(view.changed().await),
                        None => None,
                    }
                } => {}
                Ok(()) = updates.changed() => {
                    let old_names: Vec<String> = self
                        .config
                        .receivers
                        .iter()
                        .map(|r| r.name.clone())
                        .collect();
                    self.config = updates.borrow_and_update().clone();
                    states = self.regroup(&old_names, states);
                    // Groups keep their schedules (a reload must not restart group_wait);
                    // alerts that route elsewhere now form new groups at the next read.
                    let new_names: Vec<String> = self
                        .config
                        .receivers
                        .iter()
                        .map(|r| r.name.clone())
                        .collect();
                    dispatcher.reconfigure(&old_names, &new_names, Instant::now());
                    stale = true;
                    tracing::info!(
                        receivers = self.config.receivers.len(),
                        "notification settings reloaded"
                    );
                }
                _ = tokio::time::sleep_until(wake) => {
                    let now = Instant::now();
                    let flush_due = dispatcher.next_flush().is_some_and(|at| at <= now);
                    stale |= flush_due || self.firing.is_due(now);
                }
            }
        }
        // A POST under way is waited for (at most its timeout) and its outcome recorded: a
        // restart or the other replica would otherwise send it again.
        let longest = self
            .config
            .receivers
            .iter()
            .map(|r| r.send_timeout)
            .max()
            .unwrap_or_default();
        let deadline = Instant::now() + longest;
        while states.iter().any(|s| s.in_flight) {
            tokio::select! {
                Some(done) = results.recv() => self.finish(done, &mut states, &mut log, &mut dispatcher),
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        let queued: usize = states
            .iter()
            .map(|s| s.outbox.len() + usize::from(s.has_news()))
            .sum();
        if queued > 0 {
            tracing::info!(
                queued,
                "stopping; undelivered messages stay in the outbox for the next start"
            );
        }
    }
}
