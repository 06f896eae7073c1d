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

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use config::NotifyConfig;
use dingtalk::client::{self, SendError};
use dingtalk::message::{self, GroupNotice};
use dispatch::{Dispatcher, LogEntry};
use mute::Silence;
use store::{GroupFingerprints, LogKey, OutboxRow, Store};

use crate::alert::Alert;
use crate::fleet::Fleet;

/// How often the pipeline looks at the fleet's alerts.
const STEP: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Groups falling due this close together share one message.
const COALESCE: Duration = Duration::from_secs(1);
/// How long after a start alerts that were firing before it may still resume.
const RESTORE_WINDOW: Duration = Duration::from_secs(15 * 60);
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Send results waiting for the pipeline: at most one per receiver is in flight; a sender
/// beyond this waits, it is never lost.
const RESULTS_QUEUE: usize = 16;

/// What a receiver has done, for status queries.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReceiverStatus {
    pub name: String,
    pub sent: u64,
    pub failed_attempts: u64,
    pub dropped: u64,
    pub queued: u64,
    pub last_error: String,
    pub last_errcode: i64,
    /// Group flushes that had nothing new to say (deduplicated, silenced or inhibited).
    pub suppressed: u64,
    /// DingTalk errcodes seen, with counts.
    pub errcodes: BTreeMap<i64, u64>,
}

/// State shared with the query service: silences and receiver status.
#[derive(Debug, Default)]
pub struct Shared {
    pub silences: Vec<Silence>,
    pub receivers: Vec<ReceiverStatus>,
}

/// Cheap handle to the shared notification state.
#[derive(Clone, Default)]
pub struct NotifyHandle {
    shared: Arc<Mutex<Shared>>,
    store: Option<Store>,
}

impl NotifyHandle {
    pub fn new(store: Option<Store>) -> Self {
        let silences = store
            .as_ref()
            .and_then(|s| s.silences().ok())
            .unwrap_or_default();
        Self {
            shared: Arc::new(Mutex::new(Shared {
                silences,
                receivers: Vec::new(),
            })),
            store,
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores a silence (durably first).
    pub fn add_silence(&self, silence: Silence) -> Result<(), store::StoreError> {
        if let Some(store) = &self.store {
            store.save_silence(&silence)?;
        }
        let mut shared = self.lock();
        shared.silences.retain(|s| s.id != silence.id);
        shared.silences.push(silence);
        Ok(())
    }

    /// Ends a silence now; false when there is no such silence.
    pub fn expire_silence(&self, id: &str, now: SystemTime) -> Result<bool, store::StoreError> {
        let silence = {
            let mut shared = self.lock();
            let Some(silence) = shared.silences.iter_mut().find(|s| s.id == id) else {
                return Ok(false);
            };
            if silence.ends_at > now {
                silence.ends_at = now;
            }
            silence.clone()
        };
        if let Some(store) = &self.store {
            store.save_silence(&silence)?;
        }
        Ok(true)
    }
}

struct Outgoing {
    row: OutboxRow,
    attempts: u32,
    not_before: Instant,
}

impl ReceiverState {
    fn empty() -> Self {
        Self {
            pending: BTreeMap::new(),
            outbox: VecDeque::new(),
            in_flight: false,
            recent: VecDeque::new(),
            paused_until: None,
        }
    }
}

struct ReceiverState {
    /// Groups due but not yet in a message: they merge while the receiver waits.
    pending: BTreeMap<String, GroupNotice>,
    /// Messages committed to the outbox, oldest first.
    outbox: VecDeque<Outgoing>,
    in_flight: bool,
    /// Send attempts within the last minute.
    recent: VecDeque<Instant>,
    paused_until: Option<Instant>,
}

struct SendResult {
    /// By name: a reload may renumber receivers while a send is in flight.
    receiver: String,
    result: Result<(), SendError>,
}

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
    http: reqwest::Client,
}

impl Notifier {
    pub fn new(
        mut updates: watch::Receiver<NotifyConfig>,
        fleet: Fleet,
        handle: NotifyHandle,
        store: Store,
    ) -> Result<Self, reqwest::Error> {
        let config = updates.borrow_and_update().clone();
        Ok(Self {
            config,
            updates,
            fleet,
            handle,
            store,
            http: client::http_client(SEND_TIMEOUT)?,
        })
    }

    /// Receiver states for the current config, carrying over by name what `old` held.
    fn regroup(&self, old_names: &[String], mut old: Vec<ReceiverState>) -> Vec<ReceiverState> {
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
            .map(|r| match old_names.iter().position(|n| *n == r.name) {
                Some(i) => std::mem::replace(&mut old[i], ReceiverState::empty()),
                None => ReceiverState::empty(),
            })
            .collect()
    }

    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut log: HashMap<LogKey, LogEntry> =
            self.store.nflog().unwrap_or_default().into_iter().collect();
        let mut states = self.regroup(&[], Vec::new());
        match self.store.outbox() {
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
        let started = Instant::now();
        let mut persisted: HashMap<u64, (SystemTime, SystemTime)> = self
            .store
            .firing()
            .unwrap_or_default()
            .into_iter()
            .map(|(fp, a, f)| (fp, (a, f)))
            .collect();
        let (results_tx, mut results) = mpsc::channel::<SendResult>(RESULTS_QUEUE);
        let mut ticker = tokio::time::interval(STEP);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let alerts_changed = self.fleet.alerts_changed();
        loop {
            // Wake when an alert fires or resolves and when a group's flush falls due, not
            // only on the next step: a page should not wait for a timer to come round.
            let next_flush = dispatcher.next_flush().unwrap_or_else(far_future);
            let sent_only = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(done) = results.recv() => {
                    self.finish(done, &mut states, &mut log, &mut dispatcher);
                    true
                }
                _ = ticker.tick() => false,
                _ = alerts_changed.notified() => false,
                _ = tokio::time::sleep_until(next_flush) => false,
            };
            if sent_only {
                // The receiver is free again: the next queued message may go now.
                self.send(&mut states, &results_tx, Instant::now(), SystemTime::now());
                continue;
            }
            if self.updates.has_changed().unwrap_or(false) {
                let old_names: Vec<String> = self
                    .config
                    .receivers
                    .iter()
                    .map(|r| r.name.clone())
                    .collect();
                self.config = self.updates.borrow_and_update().clone();
                states = self.regroup(&old_names, states);
                // Groups re-form under the new routes; the notification log keeps
                // them from being announced twice.
                dispatcher = Dispatcher::default();
                tracing::info!(
                    receivers = self.config.receivers.len(),
                    "notification settings reloaded"
                );
            }
            let now = Instant::now();
            let wall = SystemTime::now();
            let alerts = self.fleet.alerts();
            self.persist_firing(
                &alerts,
                &mut persisted,
                now.saturating_duration_since(started) > RESTORE_WINDOW,
            );
            dispatcher.observe(&alerts, &self.config, now);
            self.flush(&alerts, &mut dispatcher, &mut states, &log, now, wall);
            self.send(&mut states, &results_tx, now, wall);
        }
        let queued: usize = states
            .iter()
            .map(|s| s.outbox.len() + usize::from(!s.pending.is_empty()))
            .sum();
        if queued > 0 {
            tracing::info!(
                queued,
                "stopping; undelivered messages stay in the outbox for the next start"
            );
        }
    }

    /// Keeps the state database's list of firing alerts current, so a restart resumes them.
    /// Alerts not (yet) re-evaluated after a restart are kept until `forget_absent`.
    fn persist_firing(
        &self,
        alerts: &[Alert],
        persisted: &mut HashMap<u64, (SystemTime, SystemTime)>,
        forget_absent: bool,
    ) {
        let firing: HashMap<u64, (SystemTime, SystemTime)> = alerts
            .iter()
            .filter(|a| a.status == crate::alert::AlertStatus::Firing)
            .map(|a| {
                (
                    a.fingerprint,
                    (a.active_since, a.firing_since.unwrap_or(a.active_since)),
                )
            })
            .collect();
        let present: BTreeSet<u64> = alerts.iter().map(|a| a.fingerprint).collect();
        let started: Vec<(u64, SystemTime, SystemTime)> = firing
            .iter()
            .filter(|(fp, t)| persisted.get(*fp) != Some(*t))
            .map(|(fp, (a, f))| (*fp, *a, *f))
            .collect();
        let stopped: Vec<u64> = persisted
            .keys()
            .filter(|fp| !firing.contains_key(*fp) && (present.contains(*fp) || forget_absent))
            .copied()
            .collect();
        if started.is_empty() && stopped.is_empty() {
            return;
        }
        match self.store.sync_firing(&started, &stopped) {
            Ok(()) => {
                for (fp, a, f) in started {
                    persisted.insert(fp, (a, f));
                }
                for fp in stopped {
                    persisted.remove(&fp);
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot record firing alerts"),
        }
    }

    /// Due groups, muted and deduplicated, join their receiver's pending message.
    fn flush(
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

    /// Starts a send for every receiver that may send now.
    fn send(
        &self,
        states: &mut [ReceiverState],
        results: &mpsc::Sender<SendResult>,
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
            let paused = state.paused_until.is_some_and(|t| now < t);
            let limited = state.recent.len() >= self.config.rate_limit_per_minute as usize;
            if state.in_flight || paused || limited {
                continue;
            }
            if state.outbox.is_empty() && !state.pending.is_empty() {
                let groups: Vec<(String, GroupNotice)> =
                    std::mem::take(&mut state.pending).into_iter().collect();
                let notices: Vec<GroupNotice> = groups.iter().map(|(_, g)| g.clone()).collect();
                let rendered = message::render(&notices, &receiver.style, wall);
                if rendered.omitted > 0 {
                    tracing::warn!(receiver = %receiver.name, omitted = rendered.omitted, "message shortened to fit DingTalk's size limit");
                }
                let meta: Vec<GroupFingerprints> = groups
                    .iter()
                    .map(|(k, g)| {
                        (
                            k.clone(),
                            g.firing.iter().map(|a| a.fingerprint).collect(),
                            g.resolved.iter().map(|a| a.fingerprint).collect(),
                        )
                    })
                    .collect();
                match self
                    .store
                    .queue(&receiver.name, &rendered.body, &meta, wall)
                {
                    Ok(id) => state.outbox.push_back(Outgoing {
                        row: OutboxRow {
                            id,
                            receiver: receiver.name.clone(),
                            body: rendered.body,
                            groups: meta,
                        },
                        attempts: 0,
                        not_before: now,
                    }),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot store a message in the outbox; it will be rebuilt at the next flush")
                    }
                }
            }
            let Some(next) = state.outbox.front() else {
                continue;
            };
            if next.not_before > now {
                continue;
            }
            state.in_flight = true;
            state.recent.push_back(now);
            let (http, robot, body, results, name) = (
                self.http.clone(),
                receiver.robot.clone(),
                next.row.body.clone(),
                results.clone(),
                receiver.name.clone(),
            );
            let now_ms = wall
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            tokio::spawn(async move {
                let result = client::send(&http, &robot, body, now_ms).await;
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
            status.queued = (state.outbox.len() + usize::from(!state.pending.is_empty())) as u64;
        }
    }

    fn finish(
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
                if let Err(e) = self.store.delivered(&outgoing.row, wall) {
                    tracing::error!(error = %e, "delivered, but the notification log could not be written");
                }
                for (key, firing, resolved) in &outgoing.row.groups {
                    // The group came due again while this message waited (DingTalk down, say):
                    // if nothing changed since, it has just been said.
                    let unchanged = state.pending.get(key).is_some_and(|waiting| {
                        let fps = |alerts: &[Alert]| {
                            alerts
                                .iter()
                                .map(|a| a.fingerprint)
                                .collect::<BTreeSet<_>>()
                        };
                        fps(&waiting.firing) == *firing && fps(&waiting.resolved) == *resolved
                    });
                    if unchanged {
                        state.pending.remove(key);
                    }
                    log.insert(
                        (name.clone(), key.clone()),
                        LogEntry {
                            firing: firing.clone(),
                            resolved: resolved.clone(),
                            sent_at: Some(wall),
                        },
                    );
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
                    if let Err(e) = self.store.discard(outgoing.row.id) {
                        tracing::error!(error = %e, "cannot drop a refused message from the outbox");
                    }
                }
            }
        }
    }
}
