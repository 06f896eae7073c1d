//! Alertmanager-style grouping: alerts join groups by route and `group_by` labels (`[]`: one
//! group; `["..."]`: one per alert); a new group waits `group_wait`, then flushes every
//! `group_interval`; a flush notifies only when the notification log says something changed or
//! the (escalating) repeat interval passed. One incident, one message: when a receiver's group
//! flushes with something to say, its other groups with news (still in their first
//! `group_wait`, or with alerts not yet told) come along.
//! A reload keeps every group's schedule. Pure: time is `now`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::config::{NotifyConfig, RouteOpts};
use super::store::LogKey;
use crate::alert::{Alert, AlertStatus};

/// Identifies a group: receiver and the values of its group_by labels.
pub type GroupKey = (usize, String);

#[derive(Debug, Clone)]
struct Group {
    opts: RouteOpts,
    labels: BTreeMap<String, String>,
    alerts: BTreeMap<u64, Alert>,
    next_flush: Instant,
    /// Flushed at least once: past its first `group_wait`.
    flushed: bool,
}

/// `group_by = ["..."]`: every label, one group per alert (as in Alertmanager).
pub const GROUP_BY_ALL: &str = "...";

/// Why a message, or one group's part of it, is sent (Alertmanager's notification reasons).
/// Ordered by weight: a message says the weightiest reason of its groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// The receiver's daily heartbeat.
    Heartbeat,
    /// No alert news: agents left the fleet (retired, or forgotten after a long silence).
    FleetChange,
    /// Nothing changed; `repeat_interval` passed.
    Reminder,
    /// Everything the group had notified resolved.
    AllResolved,
    /// Some notified alerts resolved, others still fire.
    SomeResolved,
    /// Alerts fire that the last message did not name.
    NewAlerts,
    /// The group's first message.
    FirstNotification,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Heartbeat => "heartbeat",
            Reason::FleetChange => "fleet_change",
            Reason::Reminder => "reminder",
            Reason::AllResolved => "all_resolved",
            Reason::SomeResolved => "some_resolved",
            Reason::NewAlerts => "new_alerts",
            Reason::FirstNotification => "first_notification",
        }
    }

    /// A message's reason from its groups': the weightiest, except that a group's first
    /// message riding along with groups told before makes "new alerts", not "first".
    pub fn of_message(groups: impl IntoIterator<Item = Reason>) -> Reason {
        let reasons: Vec<Reason> = groups.into_iter().collect();
        let top = reasons.iter().copied().max().unwrap_or(Reason::FleetChange);
        if top == Reason::FirstNotification && reasons.iter().any(|r| *r != top) {
            Reason::NewAlerts
        } else {
            top
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Reason::Heartbeat,
            Reason::FleetChange,
            Reason::Reminder,
            Reason::AllResolved,
            Reason::SomeResolved,
            Reason::NewAlerts,
            Reason::FirstNotification,
        ]
        .into_iter()
        .find(|r| r.as_str() == text)
    }
}

/// What the notification log remembers of the last message for a group.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogEntry {
    pub firing: BTreeSet<u64>,
    pub resolved: BTreeSet<u64>,
    pub sent_at: Option<SystemTime>,
    /// Reminders sent in a row since the group last changed (escalating repeat intervals).
    pub reminders: u32,
}

impl LogEntry {
    /// Some of `resolved` were told as firing and their resolution not yet.
    pub fn newly_resolved(&self, resolved: &BTreeSet<u64>) -> bool {
        resolved
            .iter()
            .any(|fp| self.firing.contains(fp) && !self.resolved.contains(fp))
    }

    /// The entry after a message with these alerts was delivered at `at`.
    pub fn after(
        previous: Option<&LogEntry>,
        firing: BTreeSet<u64>,
        resolved: BTreeSet<u64>,
        at: SystemTime,
    ) -> Self {
        let reminders = match previous {
            // A resolution told or a silence since does not restart the escalation; a change
            // in what fires does.
            Some(p) if p.firing == firing && !firing.is_empty() => p.reminders.saturating_add(1),
            _ => 0,
        };
        Self {
            firing,
            resolved,
            sent_at: Some(at),
            reminders,
        }
    }
}

/// A group whose flush is due, with its alerts split.
#[derive(Debug, Clone, PartialEq)]
pub struct Due {
    pub key: GroupKey,
    pub labels: BTreeMap<String, String>,
    pub firing: Vec<Alert>,
    pub resolved: Vec<Alert>,
    pub opts: RouteOpts,
}

#[derive(Debug, Default)]
pub struct Dispatcher {
    groups: BTreeMap<GroupKey, Group>,
    /// Resolved alerts that opened a group to have their resolution told: once each, or a
    /// resolution nobody will send (send_resolved off, silenced) would open one forever.
    reopened: BTreeSet<u64>,
}

impl Dispatcher {
    /// Takes the fleet's current alerts (pending ones are ignored).
    pub fn observe(&mut self, alerts: &[Alert], config: &NotifyConfig, now: Instant) {
        self.observe_told(alerts, config, &HashMap::new(), now);
    }

    /// [`Self::observe`], knowing what was told (`log`): an alert that resolved while its
    /// group was gone (the aggregator restarted) but was told as firing opens a group again,
    /// so its resolution is announced.
    pub fn observe_told(
        &mut self,
        alerts: &[Alert],
        config: &NotifyConfig,
        log: &HashMap<LogKey, LogEntry>,
        now: Instant,
    ) {
        let mut present: BTreeSet<(GroupKey, u64)> = BTreeSet::new();
        for alert in alerts.iter().filter(|a| a.status != AlertStatus::Pending) {
            // Without receivers the root route names none: nothing to group (a reload may add
            // receivers later, and the notifier must still be running then).
            let routes = config.routes_for(&alert.labels.0);
            for opts in routes
                .into_iter()
                .filter(|o| o.receiver < config.receivers.len())
            {
                let labels: BTreeMap<String, String> =
                    if opts.group_by.iter().any(|k| k == GROUP_BY_ALL) {
                        alert.labels.0.clone()
                    } else {
                        opts.group_by
                            .iter()
                            .map(|k| (k.clone(), alert.labels.get(k).unwrap_or("").to_owned()))
                            .collect()
                    };
                let key = (
                    opts.receiver,
                    labels
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(","),
                );
                present.insert((key.clone(), alert.fingerprint));
                match self.groups.get_mut(&key) {
                    Some(group) => {
                        // A reload may have changed the route's timers; the schedule stays.
                        if group.opts != *opts {
                            group.opts = opts.clone();
                        }
                        group.alerts.insert(alert.fingerprint, alert.clone());
                    }
                    // Only a firing alert opens a group: a resolved one alone has nothing to
                    // say, unless it was told as firing and its resolution was not.
                    None if alert.status == AlertStatus::Firing
                        || (opts.send_resolved
                            && !self.reopened.contains(&alert.fingerprint)
                            && config.receivers.get(opts.receiver).is_some_and(|r| {
                                log.get(&(r.name.clone(), key.1.clone())).is_some_and(|e| {
                                    e.firing.contains(&alert.fingerprint)
                                        && !e.resolved.contains(&alert.fingerprint)
                                })
                            })) =>
                    {
                        if alert.status == AlertStatus::Resolved {
                            self.reopened.insert(alert.fingerprint);
                        }
                        let next_flush = self
                            .follow_up(opts.receiver, alert)
                            .unwrap_or(now + opts.group_wait);
                        let group = Group {
                            opts: opts.clone(),
                            labels,
                            alerts: BTreeMap::from([(alert.fingerprint, alert.clone())]),
                            next_flush,
                            flushed: false,
                        };
                        self.groups.insert(key, group);
                    }
                    None => {}
                }
            }
        }
        self.reopened
            .retain(|fp| alerts.iter().any(|a| a.fingerprint == *fp));
        // Alerts the fleet forgot (resolved long ago, or their agent's rules changed).
        for (key, group) in &mut self.groups {
            group
                .alerts
                .retain(|fp, _| present.contains(&(key.clone(), *fp)));
        }
        self.groups.retain(|_, g| !g.alerts.is_empty());
    }

    /// When a new group for `alert` should flush if it is more of an incident the receiver
    /// was already told about (the same host, or for a fleet-level alert the same cluster,
    /// firing in a group that has flushed) and no more severe than what was told: with that
    /// incident's next follow-up, not a message of its own. A more severe alert (a warning
    /// turning critical) waits only its own `group_wait`.
    fn follow_up(&self, receiver: usize, alert: &Alert) -> Option<Instant> {
        let mut told = None;
        let mut next = None;
        for group in self
            .groups
            .iter()
            .filter(|(key, g)| key.0 == receiver && g.flushed)
            .map(|(_, g)| g)
        {
            let related = group
                .alerts
                .values()
                .filter(|a| a.status == AlertStatus::Firing && same_incident(a, alert));
            for a in related {
                told = told.max(Some(a.severity));
                next = Some(next.map_or(group.next_flush, |n: Instant| n.min(group.next_flush)));
            }
        }
        next.filter(|_| told.is_some_and(|t| alert.severity <= t))
    }

    /// Groups whose flush time has come; each is rescheduled `group_interval` later.
    pub fn due(&mut self, now: Instant) -> Vec<Due> {
        self.due_within(now, Duration::ZERO)
    }

    /// When some group's flush time has come: it and every group due within `window` after
    /// it, so groups that formed moments apart (one incident seen by several rules or
    /// clusters) go out in one message. No group goes early unless another is due.
    pub fn due_within(&mut self, now: Instant, window: Duration) -> Vec<Due> {
        let mut out = Vec::new();
        if self.next_flush().is_none_or(|first| first > now) {
            return out;
        }
        for (key, group) in &mut self.groups {
            if group.next_flush > now + window {
                continue;
            }
            out.push(group.flush(key, now));
        }
        out
    }

    /// The rest of `receiver`'s groups (not among `taken`), as they are now, their schedules
    /// untouched: a message is going to that receiver, and those with news go along (see
    /// [`Self::flushed_now`]).
    pub fn others(&self, receiver: usize, taken: &BTreeMap<String, impl Sized>) -> Vec<Due> {
        self.groups
            .iter()
            .filter(|(key, _)| key.0 == receiver && !taken.contains_key(&key.1))
            .map(|(key, group)| group.due(key))
            .collect()
    }

    /// A group went along in a message now: its next flush is `group_interval` away.
    pub fn flushed_now(&mut self, key: &GroupKey, now: Instant) {
        if let Some(group) = self.groups.get_mut(key) {
            group.flush(key, now);
        }
    }

    /// After a reload renumbered the receivers (`old_names` → `new_names`): groups of
    /// receivers that remain keep their alerts. A group that has flushed flushes at once, as
    /// Alertmanager's re-formed groups do: with nothing new it sends nothing (the notification
    /// log says so) and its next flush is `group_interval` after the reload; news waiting for
    /// its turn goes now instead of being put off by the reload. One still in its first wait
    /// keeps that wait: a reload never restarts `group_wait`.
    pub fn reconfigure(&mut self, old_names: &[String], new_names: &[String], now: Instant) {
        let groups = std::mem::take(&mut self.groups);
        for ((receiver, labels), mut group) in groups {
            let Some(name) = old_names.get(receiver) else {
                continue;
            };
            let Some(index) = new_names.iter().position(|n| n == name) else {
                continue;
            };
            group.opts.receiver = index;
            if group.flushed {
                group.next_flush = now;
            }
            self.groups.insert((index, labels), group);
        }
    }

    /// A message naming these resolved alerts went out: they leave their group (unless they
    /// fire again meanwhile). Empty groups are dropped.
    pub fn delivered(&mut self, key: &GroupKey, resolved: &BTreeSet<u64>) {
        if let Some(group) = self.groups.get_mut(key) {
            group
                .alerts
                .retain(|fp, a| !(resolved.contains(fp) && a.status == AlertStatus::Resolved));
            if group.alerts.is_empty() {
                self.groups.remove(key);
            }
        }
    }

    pub fn next_flush(&self) -> Option<Instant> {
        self.groups.values().map(|g| g.next_flush).min()
    }
}

/// Two alerts about the same place: the same host, or (for a fleet-level alert, which has
/// no host) the same cluster.
fn same_incident(a: &Alert, b: &Alert) -> bool {
    match (a.labels.get("host"), b.labels.get("host")) {
        (Some(x), Some(y)) => x == y,
        _ => a
            .labels
            .get("cluster")
            .is_some_and(|c| b.labels.get("cluster") == Some(c)),
    }
}

impl Group {
    /// Flushes now: its alerts split, the next flush `group_interval` away.
    fn flush(&mut self, key: &GroupKey, now: Instant) -> Due {
        self.next_flush = now + self.opts.group_interval;
        self.flushed = true;
        self.due(key)
    }

    /// Its alerts split, as a flush would take them.
    fn due(&self, key: &GroupKey) -> Due {
        let (firing, resolved): (Vec<Alert>, Vec<Alert>) = self
            .alerts
            .values()
            .cloned()
            .partition(|a| a.status == AlertStatus::Firing);
        Due {
            key: key.clone(),
            labels: self.labels.clone(),
            firing,
            resolved,
            opts: self.opts.clone(),
        }
    }
}

/// Why a flush that must notify does (see [`needs_update`]).
pub fn reason(
    entry: Option<&LogEntry>,
    firing: &BTreeSet<u64>,
    resolved: &BTreeSet<u64>,
) -> Reason {
    let Some(entry) = entry.filter(|e| !e.firing.is_empty()) else {
        return Reason::FirstNotification;
    };
    if !firing.is_subset(&entry.firing) {
        return Reason::NewAlerts;
    }
    let newly_resolved = entry.newly_resolved(resolved);
    match (newly_resolved, firing.is_empty()) {
        (true, true) => Reason::AllResolved,
        (true, false) => Reason::SomeResolved,
        (false, _) => Reason::Reminder,
    }
}

/// Whether a flush must notify (Alertmanager's dedup stage): new firing alerts, newly
/// resolved ones (with send_resolved), or firing ones not repeated for `repeat_interval`.
pub fn needs_update(
    entry: Option<&LogEntry>,
    firing: &BTreeSet<u64>,
    resolved: &BTreeSet<u64>,
    opts: &RouteOpts,
    now: SystemTime,
) -> bool {
    let Some(entry) = entry else {
        return !firing.is_empty();
    };
    if !firing.is_subset(&entry.firing) {
        return true;
    }
    let newly_resolved = entry.newly_resolved(resolved);
    if opts.send_resolved && newly_resolved {
        return true;
    }
    if firing.is_empty() {
        return false;
    }
    let repeat = opts.repeat_after(entry.reminders);
    entry
        .sent_at
        .is_none_or(|at| now.duration_since(at).unwrap_or_default() >= repeat)
}

#[cfg(test)]
#[path = "dispatch_tests.rs"]
mod tests;
