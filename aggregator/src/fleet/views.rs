//! Read-only views of the fleet for queries, metrics and the notifier: agents with their
//! sidecar, alerts, rules with their health.

use std::collections::BTreeMap;
use std::time::Duration;

use super::sidecar::SidecarState;
use super::{AgentState, Fleet};
use crate::alert::Alert;
use crate::rules::engine::RuleHealth;

/// An agent with its sidecar's view, for queries: its state without rule windows or alerts
/// (see [`AgentState::view`]).
#[derive(Debug, Clone)]
pub struct AgentView {
    pub state: AgentState,
    pub sidecar: SidecarState,
}

/// A rule with its health, for queries.
#[derive(Debug, Clone)]
pub struct RuleView {
    pub rule: crate::rules::Rule,
    pub health: RuleHealth,
    pub active_alerts: u32,
    /// (poll interval, detection time at it), for each interval the fleet's sidecars use.
    pub detection: Vec<(Duration, Duration)>,
}

/// The interval detection times are shown at while no sidecar is connected.
const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(10);

impl Fleet {
    /// Agents matching every given label (and the host, when given), sorted by host and agent.
    pub fn agents(&self, labels: &BTreeMap<String, String>, host: Option<&str>) -> Vec<AgentView> {
        let state = self.lock();
        state
            .agents
            .values()
            .filter(|a| host.is_none_or(|h| h == a.host))
            .filter_map(|a| {
                let sidecar = state.sidecars.get(&a.host)?;
                let matches = labels
                    .iter()
                    .all(|(k, v)| sidecar.hello.labels.get(k) == Some(v));
                matches.then(|| AgentView {
                    state: a.view(false),
                    sidecar: sidecar.clone(),
                })
            })
            .collect()
    }

    /// How many agents the fleet holds.
    pub fn agent_count(&self) -> usize {
        self.lock().agents.len()
    }

    /// One agent; with `agent` empty, the host's only agent.
    pub fn agent(&self, host: &str, agent: &str) -> Result<AgentView, LookupError> {
        let state = self.lock();
        let found = if agent.is_empty() {
            let mut on_host = state.agents.values().filter(|a| a.host == host);
            match (on_host.next(), on_host.next()) {
                (Some(only), None) => only,
                (None, _) => return Err(LookupError::UnknownHost(host.to_owned())),
                (Some(_), Some(_)) => return Err(LookupError::Ambiguous(host.to_owned())),
            }
        } else {
            state
                .agents
                .get(&(host.to_owned(), agent.to_owned()))
                .ok_or_else(|| LookupError::UnknownAgent(host.to_owned(), agent.to_owned()))?
        };
        let sidecar = state
            .sidecars
            .get(host)
            .ok_or_else(|| LookupError::UnknownHost(host.to_owned()))?;
        Ok(AgentView {
            state: found.view(true),
            sidecar: sidecar.clone(),
        })
    }

    /// Every pending, firing or recently resolved alert, most severe first.
    pub fn alerts(&self) -> Vec<Alert> {
        let state = self.lock();
        let mut alerts: Vec<Alert> = state
            .agents
            .values()
            .flat_map(|a| a.eval.alerts.values())
            .chain(state.sidecars.values().flat_map(|s| s.alerts.values()))
            .chain(state.cluster_alerts.values())
            .map(|t| t.alert.clone())
            .collect();
        // Sorted after the fleet is let go: ingest waits for the lock, not for the sort.
        drop(state);
        alerts.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then_with(|| a.labels.0.cmp(&b.labels.0))
        });
        alerts
    }

    /// The rules in force with their health.
    pub fn rules(&self) -> Vec<RuleView> {
        let state = self.lock();
        let mut active = vec![0u32; state.rules.rules.len()];
        let trackers = state
            .agents
            .values()
            .flat_map(|a| a.eval.alerts.iter().map(|(k, t)| (k.0, t)))
            .chain(
                state
                    .sidecars
                    .values()
                    .flat_map(|s| s.alerts.iter().map(|(k, t)| (k.0, t))),
            )
            .chain(state.cluster_alerts.iter().map(|(k, t)| (k.0, t)));
        for (rule, tracked) in trackers {
            if tracked.tracker.is_active() {
                if let Some(count) = active.get_mut(rule) {
                    *count += 1;
                }
            }
        }
        let mut intervals: Vec<Duration> = state
            .sidecars
            .values()
            .map(|s| s.hello.poll_interval)
            .filter(|i| !i.is_zero())
            .collect();
        intervals.sort();
        intervals.dedup();
        if intervals.is_empty() {
            intervals.push(DEFAULT_POLL_INTERVAL);
        }
        state
            .rules
            .rules
            .iter()
            .enumerate()
            .map(|(i, rule)| RuleView {
                rule: rule.clone(),
                health: state.health.get(i).cloned().unwrap_or_default(),
                active_alerts: active[i],
                detection: intervals
                    .iter()
                    .map(|&interval| (interval, rule.detection(interval)))
                    .collect(),
            })
            .collect()
    }

    /// Sidecars with an open stream right now.
    pub fn connected_sidecars(&self) -> usize {
        self.lock()
            .sidecars
            .values()
            .filter(|s| s.connected)
            .count()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("no agent {1:?} on host {0:?}")]
    UnknownAgent(String, String),
    #[error("no agent on host {0:?}")]
    UnknownHost(String),
    #[error("host {0:?} has several agents: name one")]
    Ambiguous(String),
}
