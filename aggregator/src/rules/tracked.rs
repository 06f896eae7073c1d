//! The tracked alerts: one (rule, target) lifecycle and the alert it shows, how a lifecycle
//! step changes that alert, and the questions asked of a set of them (what to announce, what
//! to forget, whether any critical one fires).

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::state::{Phase, Tracker, Transition};
use super::Rule;
use crate::alert::{Alert, AlertStatus, Severity};

/// How long a resolved alert stays listed (and available to notify) before it is forgotten.
pub const RESOLVED_RETENTION: Duration = Duration::from_secs(15 * 60);

/// One (rule, target) lifecycle and the alert it shows.
#[derive(Debug, Clone)]
pub struct Tracked {
    pub tracker: Tracker,
    pub alert: Alert,
    /// The evaluation pass that last looked at this target.
    pub(super) seen: u64,
    /// What the condition said at the last evaluation (ticks replay it).
    pub(super) holds: bool,
    pub(super) resolved_at: Option<Instant>,
    /// [`super::compose::render_inputs`] of what the alert shows; `None` before the first render.
    pub(super) rendered: Option<u64>,
}

impl Tracked {
    /// A new, inactive lifecycle for `alert`, looked at in evaluation pass `pass`.
    pub(super) fn new(alert: Alert, pass: u64) -> Self {
        Self {
            tracker: Tracker::default(),
            alert,
            seen: pass,
            holds: false,
            resolved_at: None,
            rendered: None,
        }
    }

    /// Its rule may read differently now (a reload): the next evaluation renders it afresh.
    pub fn render_again(mut self) -> Self {
        self.rendered = None;
        self
    }
}

/// Applies a lifecycle step to the alert; false when the target is to be forgotten (a pending
/// alert whose condition stopped holding).
pub(super) fn settle(
    tracked: &mut Tracked,
    transition: Transition,
    rule: &Rule,
    host: &str,
    wall: SystemTime,
    now: Instant,
) -> bool {
    match transition {
        Transition::Unchanged => {}
        Transition::Pending => {
            tracked.alert.status = AlertStatus::Pending;
            tracked.alert.active_since = wall;
            tracked.alert.firing_since = None;
            tracked.alert.resolved_at = None;
            tracked.resolved_at = None;
        }
        Transition::Fired => {
            if tracked.alert.status != AlertStatus::Pending {
                tracked.alert.active_since = wall;
            }
            tracked.alert.status = AlertStatus::Firing;
            tracked.alert.firing_since = Some(wall);
            tracked.alert.resolved_at = None;
            tracked.resolved_at = None;
            tracing::info!(alert = %tracked.alert.alertname, severity = %rule.severity, host, value = tracked.alert.value, "alert firing");
        }
        Transition::Cleared => return false,
        Transition::Resolved => {
            mark_resolved(tracked, now, wall);
            tracing::info!(alert = %tracked.alert.alertname, host, "alert resolved");
        }
    }
    true
}

fn mark_resolved(tracked: &mut Tracked, now: Instant, wall: SystemTime) {
    tracked.alert.status = AlertStatus::Resolved;
    tracked.alert.resolved_at = Some(wall);
    tracked.resolved_at = Some(now);
}

/// Drops resolved alerts older than [`RESOLVED_RETENTION`].
pub fn expire<K: Eq + std::hash::Hash>(alerts: &mut HashMap<K, Tracked>, now: Instant) {
    alerts.retain(|_, t| {
        !matches!(t.tracker.phase, Phase::Resolved { .. })
            || t.resolved_at
                .is_some_and(|at| now.saturating_duration_since(at) < RESOLVED_RETENTION)
    });
}

/// Whether any of these alerts is a firing critical one (ClusterDegraded counts such agents).
pub fn has_firing_critical<'a>(alerts: impl IntoIterator<Item = &'a Tracked>) -> bool {
    alerts
        .into_iter()
        .any(|t| t.alert.severity == Severity::Critical && t.alert.status == AlertStatus::Firing)
}
