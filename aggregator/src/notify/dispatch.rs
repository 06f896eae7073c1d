//! Alertmanager-style grouping: alerts join groups by route and `group_by` labels; a new group
//! waits `group_wait`, then flushes every `group_interval`; a flush notifies only when the
//! notification log says something changed or `repeat_interval` passed. Pure: time is `now`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::config::{NotifyConfig, RouteOpts};
use crate::alert::{Alert, AlertStatus};

/// Identifies a group: receiver and the values of its group_by labels.
pub type GroupKey = (usize, String);

#[derive(Debug, Clone)]
struct Group {
    opts: RouteOpts,
    labels: BTreeMap<String, String>,
    alerts: BTreeMap<u64, Alert>,
    next_flush: Instant,
}

/// Why a message, or one group's part of it, is sent (Alertmanager's notification reasons).
/// Ordered by weight: a message says the weightiest reason of its groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
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
            Reason::Reminder => "reminder",
            Reason::AllResolved => "all_resolved",
            Reason::SomeResolved => "some_resolved",
            Reason::NewAlerts => "new_alerts",
            Reason::FirstNotification => "first_notification",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
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
}

impl Dispatcher {
    /// Takes the fleet's current alerts (pending ones are ignored).
    pub fn observe(&mut self, alerts: &[Alert], config: &NotifyConfig, now: Instant) {
        let mut present: BTreeSet<(GroupKey, u64)> = BTreeSet::new();
        for alert in alerts.iter().filter(|a| a.status != AlertStatus::Pending) {
            for opts in config.routes_for(&alert.labels.0) {
                let labels: BTreeMap<String, String> = opts
                    .group_by
                    .iter()
                    .map(|k| (k.clone(), alert.labels.get(k).unwrap_or("").to_owned()))
                    .collect();
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
                        group.alerts.insert(alert.fingerprint, alert.clone());
                    }
                    // Only a firing alert opens a group: a resolved one alone has nothing to say.
                    None if alert.status == AlertStatus::Firing => {
                        let group = Group {
                            opts: opts.clone(),
                            labels,
                            alerts: BTreeMap::from([(alert.fingerprint, alert.clone())]),
                            next_flush: now + opts.group_wait,
                        };
                        self.groups.insert(key, group);
                    }
                    None => {}
                }
            }
        }
        // Alerts the fleet forgot (resolved long ago, or their agent's rules changed).
        for (key, group) in &mut self.groups {
            group
                .alerts
                .retain(|fp, _| present.contains(&(key.clone(), *fp)));
        }
        self.groups.retain(|_, g| !g.alerts.is_empty());
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
            group.next_flush = now + group.opts.group_interval;
            let (firing, resolved): (Vec<Alert>, Vec<Alert>) = group
                .alerts
                .values()
                .cloned()
                .partition(|a| a.status == AlertStatus::Firing);
            out.push(Due {
                key: key.clone(),
                labels: group.labels.clone(),
                firing,
                resolved,
                opts: group.opts.clone(),
            });
        }
        out
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
    let newly_resolved = resolved
        .iter()
        .any(|fp| entry.firing.contains(fp) && !entry.resolved.contains(fp));
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
    let newly_resolved = resolved
        .iter()
        .any(|fp| entry.firing.contains(fp) && !entry.resolved.contains(fp));
    if opts.send_resolved && newly_resolved {
        return true;
    }
    if firing.is_empty() {
        return false;
    }
    entry
        .sent_at
        .is_none_or(|at| now.duration_since(at).unwrap_or_default() >= opts.repeat_interval)
}

#[cfg(test)]
#[path = "dispatch_tests.rs"]
mod tests;
