//! Evaluation: reads an agent's newest snapshot and windows (or a sidecar's silence, or a
//! cluster's share of critical agents), steps each (rule, target) lifecycle, keeps the alerts.
//!
//! Conditions judge data (windows end at the newest scrape time); hold-downs judge the
//! aggregator's monotonic clock, so a sidecar's clock skew cannot fire or resolve anything.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use flumewatch_proto::model::snapshot::{Component, ComponentKind, Gauge, Snapshot};
use flumewatch_proto::model::vocabulary;
use tokio::time::Instant;

use super::condition::{Metric, Scope};
use super::facts::{AgentFacts, ClusterFacts, ComponentFacts, Fixed};
use super::series::AgentSeries;
use super::state::{Phase, Tracker, Transition};
use super::template::format_value;
use super::{Language, Rule, RuleSet};
use crate::alert::{Alert, AlertStatus, Labels, Severity};

/// How long a resolved alert stays listed (and available to notify) before it is forgotten.
pub const RESOLVED_RETENTION: Duration = Duration::from_secs(15 * 60);
/// A poll interval counts as at least this long when judging a sidecar's silence.
const MIN_POLL_FOR_SILENCE: Duration = Duration::from_secs(10);

/// One (rule, target) lifecycle and the alert it shows.
#[derive(Debug, Clone)]
pub struct Tracked {
    pub tracker: Tracker,
    pub alert: Alert,
    /// The evaluation pass that last looked at this target.
    seen: u64,
    /// What the condition said at the last evaluation (ticks replay it).
    holds: bool,
    resolved_at: Option<Instant>,
}

/// Identifies a target within one agent: the rule and, for component rules, the component.
pub type TargetKey = (usize, Option<(ComponentKind, String)>);

/// Everything the rules keep about one agent.
#[derive(Debug, Clone, Default)]
pub struct AgentEval {
    pub series: AgentSeries,
    pub alerts: HashMap<TargetKey, Tracked>,
    pass: u64,
}

/// When and how often each rule was evaluated (parallel to `RuleSet::rules`).
#[derive(Debug, Clone, Default)]
pub struct RuleHealth {
    pub evaluations: u64,
    pub last_evaluation: Option<SystemTime>,
}

/// What the evaluation needs to know about an agent's sidecar.
pub struct SidecarFacts<'a> {
    pub host: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    pub poll_interval: Duration,
    pub last_snapshot_at: Instant,
}

/// One evaluation's inputs: the rules, the language, and the two clocks.
pub struct Evaluator<'a> {
    pub rules: &'a RuleSet,
    pub language: Language,
    pub now: Instant,
    pub wall: SystemTime,
    pub health: &'a mut Vec<RuleHealth>,
    /// Alerts that were firing when the aggregator last stopped, by fingerprint: (active since,
    /// firing since). One that holds again resumes firing instead of serving its `for` again.
    pub restored: &'a RefCell<HashMap<u64, (SystemTime, SystemTime)>>,
}

impl Evaluator<'_> {
    fn count(&mut self, rule: usize) {
        if self.health.len() < self.rules.rules.len() {
            self.health
                .resize(self.rules.rules.len(), RuleHealth::default());
        }
        let health = &mut self.health[rule];
        health.evaluations += 1;
        health.last_evaluation = Some(self.wall);
    }

    /// Judges one agent on its newest snapshot (it just arrived).
    pub fn agent(
        &mut self,
        eval: &mut AgentEval,
        agent: &str,
        latest: Option<&Arc<Snapshot>>,
        consecutive_failures: u32,
        sidecar: &SidecarFacts<'_>,
    ) {
        eval.pass += 1;
        let pass = eval.pass;
        let data_ok = latest.is_some_and(|s| s.outcome.is_ok());
        for (index, rule) in self.rules.rules.iter().enumerate() {
            if !rule.applies_to_labels(sidecar.labels) {
                continue;
            }
            // Most rules have no alert on most agents: then a false condition needs no key.
            let tracking = eval.alerts.keys().any(|k| k.0 == index);
            match rule.scope {
                Scope::Component => {
                    let Some(snapshot) = latest.filter(|_| data_ok) else {
                        // A failed poll says nothing about components: keep their alerts as
                        // they are until there is data again.
                        for (key, tracked) in eval.alerts.iter_mut() {
                            if key.0 == index {
                                tracked.seen = pass;
                            }
                        }
                        continue;
                    };
                    for component in snapshot.components.iter().filter(|c| applies(rule, c)) {
                        let facts = ComponentFacts {
                            component,
                            series: &eval.series,
                            specs: &self.rules.specs,
                        };
                        let value = rule.condition.eval(&facts);
                        if value.is_none() && !tracking {
                            continue;
                        }
                        let key = (index, Some((component.kind, component.name.clone())));
                        let target = Target {
                            host: sidecar.host,
                            agent: Some(agent),
                            component: Some(component),
                            group: None,
                            labels: sidecar.labels,
                        };
                        self.step(&mut eval.alerts, key, rule, value, &target, true, pass);
                    }
                }
                Scope::Agent => {
                    let facts = AgentFacts {
                        failed_polls: consecutive_failures,
                        series: &eval.series,
                    };
                    let value = rule.condition.eval(&facts);
                    let target = Target {
                        host: sidecar.host,
                        agent: Some(agent),
                        component: None,
                        group: None,
                        labels: sidecar.labels,
                    };
                    self.step(
                        &mut eval.alerts,
                        (index, None),
                        rule,
                        value,
                        &target,
                        true,
                        pass,
                    );
                }
                Scope::Sidecar | Scope::Cluster => continue,
            }
            self.count(index);
        }
        // Targets not looked at (a component that vanished, a rule that no longer matches).
        let stale: Vec<TargetKey> = eval
            .alerts
            .iter()
            .filter(|(_, t)| t.seen != pass)
            .map(|(k, _)| k.clone())
            .collect();
        for key in stale {
            if let Some(rule) = self.rules.rules.get(key.0) {
                let target = Target {
                    host: sidecar.host,
                    agent: Some(agent),
                    component: None,
                    group: None,
                    labels: sidecar.labels,
                };
                self.step(&mut eval.alerts, key, rule, None, &target, true, pass);
            } else {
                eval.alerts.remove(&key);
            }
        }
    }

    /// Between polls nothing an agent reported changed, only time did: advance the hold-downs
    /// of its pending and firing alerts with what their conditions last said. When the agent's
    /// sidecar is not `fresh`, component alerts stay as they are (stale data judges nothing).
    pub fn advance_agent(&mut self, eval: &mut AgentEval, host: &str, fresh: bool) {
        let rules = self.rules;
        eval.alerts.retain(|key, tracked| {
            let Some(rule) = rules.rules.get(key.0) else {
                return false;
            };
            if rule.scope == Scope::Component && !fresh {
                return true;
            }
            let transition = tracked
                .tracker
                .step(tracked.holds, false, self.now, &rule.hold);
            settle(tracked, transition, rule, host, self.wall, self.now)
        });
    }

    /// Judges one sidecar's silence (on ticks).
    pub fn sidecar(
        &mut self,
        alerts: &mut HashMap<TargetKey, Tracked>,
        sidecar: &SidecarFacts<'_>,
    ) {
        let silence = self.now.saturating_duration_since(sidecar.last_snapshot_at);
        let stale_polls = silence.as_secs_f64()
            / sidecar
                .poll_interval
                .max(MIN_POLL_FOR_SILENCE)
                .as_secs_f64();
        for (index, rule) in self.rules.rules.iter().enumerate() {
            if rule.scope != Scope::Sidecar || !rule.applies_to_labels(sidecar.labels) {
                continue;
            }
            let value = rule
                .condition
                .eval(&Fixed(Metric::StalePolls, stale_polls.floor()));
            let target = Target {
                host: sidecar.host,
                agent: None,
                component: None,
                group: None,
                labels: sidecar.labels,
            };
            self.step(alerts, (index, None), rule, value, &target, false, 0);
            self.count(index);
        }
    }

    /// Judges every group of agents sharing a label value. `agents` yields, per agent, its
    /// sidecar labels and whether it has a firing critical alert.
    pub fn clusters<'l>(
        &mut self,
        alerts: &mut HashMap<(usize, String), Tracked>,
        agents: impl Iterator<Item = (&'l BTreeMap<String, String>, bool)> + Clone,
    ) {
        for (index, rule) in self.rules.rules.iter().enumerate() {
            if rule.scope != Scope::Cluster {
                continue;
            }
            let mut groups: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
            for (labels, critical) in agents.clone() {
                if !rule.applies_to_labels(labels) {
                    continue;
                }
                if let Some(group) = labels.get(&rule.group_by) {
                    let entry = groups.entry(group.as_str()).or_default();
                    entry.0 += 1;
                    entry.1 += usize::from(critical);
                }
            }
            let empty = BTreeMap::new();
            for (group, (total, critical)) in &groups {
                let facts = ClusterFacts {
                    critical: *critical,
                    total: *total,
                };
                let value = rule.condition.eval(&facts);
                let target = Target {
                    host: "",
                    agent: None,
                    component: None,
                    group: Some((&rule.group_by, group)),
                    labels: &empty,
                };
                self.step(
                    alerts,
                    (index, (*group).to_owned()),
                    rule,
                    value,
                    &target,
                    false,
                    0,
                );
            }
            // A group that emptied out stops holding.
            let gone: Vec<(usize, String)> = alerts
                .keys()
                .filter(|(i, g)| *i == index && !groups.contains_key(g.as_str()))
                .cloned()
                .collect();
            for key in gone {
                let target = Target {
                    host: "",
                    agent: None,
                    component: None,
                    group: Some((&rule.group_by, &key.1)),
                    labels: &empty,
                };
                self.step(alerts, key.clone(), rule, None, &target, false, 0);
            }
            self.count(index);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn step<K: Eq + std::hash::Hash + Clone>(
        &self,
        alerts: &mut HashMap<K, Tracked>,
        key: K,
        rule: &Rule,
        value: Option<f64>,
        target: &Target<'_>,
        on_poll: bool,
        pass: u64,
    ) {
        if value.is_none() && !alerts.contains_key(&key) {
            return;
        }
        let tracked = alerts.entry(key.clone()).or_insert_with(|| Tracked {
            tracker: Tracker::default(),
            alert: new_alert(rule, target, self.wall),
            seen: pass,
            holds: false,
            resolved_at: None,
        });
        tracked.seen = pass;
        tracked.holds = value.is_some();
        let restored = match (value, &tracked.tracker.phase) {
            (Some(_), Phase::Inactive) => self
                .restored
                .borrow_mut()
                .remove(&tracked.alert.fingerprint),
            _ => None,
        };
        let transition = match restored {
            Some((active_since, firing_since)) => {
                tracked.tracker = Tracker::restored_firing(self.now);
                tracked.alert.status = AlertStatus::Firing;
                tracked.alert.active_since = active_since;
                tracked.alert.firing_since = Some(firing_since);
                Transition::Unchanged
            }
            None => tracked
                .tracker
                .step(value.is_some(), on_poll, self.now, &rule.hold),
        };
        if let Some(v) = value {
            tracked.alert.value = v;
            tracked.alert.annotations = annotations(rule, target, v, self.language);
        }
        if !settle(tracked, transition, rule, target.host, self.wall, self.now) {
            alerts.remove(&key);
        }
    }
}

/// Applies a lifecycle step to the alert; false when the target is to be forgotten (a pending
/// alert whose condition stopped holding).
fn settle(
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

/// How many of these alerts are firing and how many resolved: when the pair changes, something
/// is to be announced.
pub fn announced<'a>(tracked: impl IntoIterator<Item = &'a Tracked>) -> (usize, usize) {
    tracked
        .into_iter()
        .fold((0, 0), |(firing, resolved), t| match t.alert.status {
            AlertStatus::Firing => (firing + 1, resolved),
            AlertStatus::Resolved => (firing, resolved + 1),
            AlertStatus::Pending => (firing, resolved),
        })
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

fn applies(rule: &Rule, component: &Component) -> bool {
    !component.is_stopped()
        && rule.kinds.contains(&component.kind)
        && rule.components.matches(&component.name)
}

struct Target<'a> {
    host: &'a str,
    agent: Option<&'a str>,
    component: Option<&'a Component>,
    group: Option<(&'a str, &'a str)>,
    labels: &'a BTreeMap<String, String>,
}

fn kind_label(component: &Component) -> String {
    match vocabulary::kind_name(component.kind) {
        "" => component.kind_name.to_ascii_lowercase(),
        name => name.to_ascii_lowercase(),
    }
}

fn new_alert(rule: &Rule, target: &Target<'_>, wall: SystemTime) -> Alert {
    let mut labels: BTreeMap<String, String> = match target.group {
        // A fleet-level alert is about the group, not about any one agent's labels.
        Some((label, value)) => BTreeMap::from([(label.to_owned(), value.to_owned())]),
        None => target.labels.clone(),
    };
    if !target.host.is_empty() {
        labels.insert("host".into(), target.host.to_owned());
    }
    if let Some(agent) = target.agent {
        labels.insert("agent".into(), agent.to_owned());
    }
    if let Some(component) = target.component {
        labels.insert("kind".into(), kind_label(component));
        labels.insert("component".into(), component.name.clone());
    }
    labels.extend(rule.labels.clone());
    labels.insert("alertname".into(), rule.name.clone());
    labels.insert("severity".into(), rule.severity.as_str().to_owned());
    let labels = Labels(labels);
    Alert {
        fingerprint: labels.fingerprint(),
        alertname: rule.name.clone(),
        severity: rule.severity,
        status: AlertStatus::Pending,
        labels,
        annotations: BTreeMap::new(),
        value: 0.0,
        active_since: wall,
        firing_since: None,
        resolved_at: None,
    }
}

fn annotations(
    rule: &Rule,
    target: &Target<'_>,
    value: f64,
    language: Language,
) -> BTreeMap<String, String> {
    let mut fields: BTreeMap<&str, String> = BTreeMap::new();
    fields.insert("alertname", rule.name.clone());
    fields.insert("severity", rule.severity.as_str().to_owned());
    fields.insert("host", target.host.to_owned());
    fields.insert("value", format_value(value));
    fields.insert("threshold", format_value(rule.condition.threshold()));
    if let Some(agent) = target.agent {
        fields.insert("agent", agent.to_owned());
    }
    if let Some(component) = target.component {
        fields.insert("kind", kind_label(component));
        fields.insert("component", component.name.clone());
    }
    let cluster = match target.group {
        Some((_, value)) => Some(value.to_owned()),
        None => target.labels.get("cluster").cloned(),
    };
    if let Some(cluster) = cluster {
        fields.insert("cluster", cluster);
    }
    let mut out = BTreeMap::new();
    if let Some(t) = rule.summary.get(language) {
        out.insert("summary".to_owned(), t.render(&fields, target.labels));
    }
    if let Some(t) = rule.description.get(language) {
        out.insert("description".to_owned(), t.render(&fields, target.labels));
    }
    out.insert("value".to_owned(), format_value(value));
    // What the old script showed for every channel alert.
    if let Some(c) = target
        .component
        .filter(|c| c.kind == ComponentKind::Channel)
    {
        for (key, gauge) in [
            ("channel_size", Gauge::ChannelSize),
            ("channel_capacity", Gauge::ChannelCapacity),
            ("channel_fill_percentage", Gauge::ChannelFillPercentage),
        ] {
            if let Some(v) = c.gauge(gauge) {
                out.insert(key.to_owned(), format_value(v));
            }
        }
    }
    out
}

/// Whether any of these alerts is a firing critical one (ClusterDegraded counts such agents).
pub fn has_firing_critical<'a>(alerts: impl IntoIterator<Item = &'a Tracked>) -> bool {
    alerts
        .into_iter()
        .any(|t| t.alert.severity == Severity::Critical && t.alert.status == AlertStatus::Firing)
}
