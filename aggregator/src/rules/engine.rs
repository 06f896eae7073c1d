//! Evaluation: reads an agent's newest snapshot and windows (or a sidecar's silence, or a
//! cluster's share of critical agents), steps each (rule, target) lifecycle, keeps the alerts.
//! Building an alert is `compose`'s, the tracked lifecycles' bookkeeping is `tracked`'s (both
//! re-exported here as far as other modules use them).
//!
//! Conditions judge data (windows end at the newest scrape time); hold-downs judge the
//! aggregator's monotonic clock, so a sidecar's clock skew cannot fire or resolve anything.

use std::cell::{Cell, RefCell};
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use flumewatch_proto::model::snapshot::{Component, ComponentKind, Snapshot};
use tokio::time::Instant;

use super::compose::{new_alert, render_inputs, update, Target};
use super::condition::{Metric, Scope};
use super::facts::{AgentFacts, ClusterFacts, ComponentFacts, Fixed};
use super::series::AgentSeries;
use super::state::{Phase, Tracker, Transition};
use super::tracked::settle;
pub use super::tracked::{expire, has_firing_critical, Tracked, RESOLVED_RETENTION};
use super::{Language, Rule, RuleSet};
use crate::alert::AlertStatus;

/// A poll interval counts as at least this long when judging a sidecar's silence.
const MIN_POLL_FOR_SILENCE: Duration = Duration::from_secs(10);

/// Per cluster rule (by index), per group (its `group_by` label's value): agents, and agents
/// with a firing critical alert.
pub type ClusterTally = BTreeMap<usize, BTreeMap<String, (usize, usize)>>;

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
    /// The target is judged on good data for the first time since the restart: a restored
    /// alert whose condition is clear now resolves (and is announced as resolved) instead of
    /// being forgotten.
    pub resolve_restored: bool,
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
        latest: Option<&Snapshot>,
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
                            siblings: &snapshot.components,
                            series: &eval.series,
                            specs: &self.rules.specs,
                            peer: Cell::new(None),
                        };
                        let value = rule.condition.eval(&facts);
                        if value.is_none() && !tracking && !self.resolve_restored {
                            continue;
                        }
                        let key = (index, Some((component.kind, component.name.clone())));
                        let target = Target {
                            host: sidecar.host,
                            agent: Some(agent),
                            component: Some(component),
                            peer: facts.peer.get().map(|i| &snapshot.components[i]),
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
                        peer: None,
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
                    peer: None,
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
                peer: None,
                group: None,
                labels: sidecar.labels,
            };
            self.step(alerts, (index, None), rule, value, &target, false, 0);
            self.count(index);
        }
    }

    /// Counts one agent, with its sidecar's `labels`, into every cluster rule's groups;
    /// `critical`: it (or its sidecar) has a firing critical alert.
    pub fn tally(
        &self,
        tally: &mut ClusterTally,
        labels: &BTreeMap<String, String>,
        critical: bool,
    ) {
        for (index, rule) in self.rules.rules.iter().enumerate() {
            if rule.scope != Scope::Cluster || !rule.applies_to_labels(labels) {
                continue;
            }
            let Some(group) = labels.get(&rule.group_by) else {
                continue;
            };
            let groups = tally.entry(index).or_default();
            // Looked up by reference: no allocation per agent and tick.
            let counts = match groups.get_mut(group.as_str()) {
                Some(counts) => counts,
                None => groups.entry(group.clone()).or_default(),
            };
            counts.0 += 1;
            counts.1 += usize::from(critical);
        }
    }

    /// Judges every group of agents sharing a label value, as [`Self::tally`] counted them.
    pub fn clusters(
        &mut self,
        alerts: &mut HashMap<(usize, String), Tracked>,
        tally: &ClusterTally,
    ) {
        for (index, rule) in self.rules.rules.iter().enumerate() {
            if rule.scope != Scope::Cluster {
                continue;
            }
            let empty = BTreeMap::new();
            let no_groups = BTreeMap::new();
            let groups = tally.get(&index).unwrap_or(&no_groups);
            for (group, (total, critical)) in groups {
                let facts = ClusterFacts {
                    critical: *critical,
                    total: *total,
                };
                let value = rule.condition.eval(&facts);
                let target = Target {
                    host: "",
                    agent: None,
                    component: None,
                    peer: None,
                    group: Some((&rule.group_by, group)),
                    labels: &empty,
                };
                self.step(
                    alerts,
                    (index, group.clone()),
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
                .filter(|(i, group)| *i == index && !groups.contains_key(group))
                .cloned()
                .collect();
            for key in gone {
                let target = Target {
                    host: "",
                    agent: None,
                    component: None,
                    peer: None,
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
            if self.resolve_restored {
                self.resolve_restored_alert(alerts, key, rule, target, pass);
            }
            return;
        }
        // One hash lookup and no copy of the key, kept or removed below.
        let mut entry = match alerts.entry(key) {
            Entry::Occupied(occupied) => occupied,
            Entry::Vacant(vacant) => {
                vacant.insert_entry(Tracked::new(new_alert(rule, target, self.wall), pass))
            }
        };
        let tracked = entry.get_mut();
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
            let inputs = render_inputs(target, v, self.language);
            if tracked.rendered != Some(inputs) {
                update(&mut tracked.alert, rule, target, v, self.language);
                tracked.rendered = Some(inputs);
            }
        }
        if !settle(tracked, transition, rule, target.host, self.wall, self.now) {
            entry.remove();
        }
    }
}

impl Evaluator<'_> {
    /// A target that fired before the restart is clear at its first look since: it resolves
    /// with its old times, so whoever was told it fires hears that it is over.
    fn resolve_restored_alert<K: Eq + std::hash::Hash + Clone>(
        &self,
        alerts: &mut HashMap<K, Tracked>,
        key: K,
        rule: &Rule,
        target: &Target<'_>,
        pass: u64,
    ) {
        let mut alert = new_alert(rule, target, self.wall);
        let Some((active_since, firing_since)) =
            self.restored.borrow_mut().remove(&alert.fingerprint)
        else {
            return;
        };
        alert.status = AlertStatus::Resolved;
        alert.active_since = active_since;
        alert.firing_since = Some(firing_since);
        alert.resolved_at = Some(self.wall);
        let mut tracked = Tracked::new(alert, pass);
        tracked.tracker.phase = Phase::Resolved { at: self.now };
        tracked.resolved_at = Some(self.now);
        tracing::info!(alert = %tracked.alert.alertname, host = target.host, "an alert firing before the restart is clear: resolved");
        alerts.insert(key, tracked);
    }
}

fn applies(rule: &Rule, component: &Component) -> bool {
    !component.is_stopped()
        && rule.kinds.contains(&component.kind)
        && rule.components.matches(&component.name)
}
