//! The fleet: every sidecar and agent the aggregator has heard from, their alert rules'
//! state, behind one cheap handle.
//!
//! A std mutex guards the state; it is never held across an `.await`, and every critical
//! section is a few map operations plus the rule evaluation of one agent.

mod agent;
mod clock;
mod evaluate;
mod history;
mod known;
pub mod rates;
mod reload;
mod retire;
mod sidecar;
mod views;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use tokio::time::Instant;

pub use agent::{AgentState, HistoryEntry, Latest};
pub use clock::Now;
pub use evaluate::Recorded;
pub use retire::{RetireReason, Retired};
pub use sidecar::{Hello, Registration, SidecarState};
pub use views::{AgentView, LookupError, RuleView};

use crate::rules::engine::{RuleHealth, Tracked};
use crate::rules::{Language, RuleSet};

#[derive(Debug)]
struct State {
    sidecars: HashMap<String, SidecarState>,
    /// Keyed by (host, agent).
    agents: BTreeMap<(String, String), AgentState>,
    next_stream_id: u64,
    /// See [`Fleet::membership`].
    membership: u64,
    /// Retired (host, agent) → the sidecar instance whose snapshots of it are ignored.
    retired: HashMap<(String, String), String>,
    /// Retirements waiting to be announced.
    announcements: Vec<Retired>,
    rules: Arc<RuleSet>,
    language: Language,
    health: Vec<RuleHealth>,
    cluster_alerts: HashMap<(usize, String), Tracked>,
    /// Alerts firing at the last stop, waiting to be matched (see `Evaluator::restored`).
    restored: RefCell<HashMap<u64, (SystemTime, SystemTime)>>,
    /// The (host, agent)s those alerts were on: only there is a clear condition worth a
    /// look for a restored alert to resolve.
    restored_places: HashSet<(String, String)>,
    /// When they were loaded: ones not matched within [`crate::notify::firing::RESTORE_WINDOW`] are forgotten.
    restored_at: Option<Instant>,
}

impl State {
    /// Lists `hello`'s agents (those not listed yet start empty).
    fn add_agents(&mut self, hello: &Hello) {
        for agent in &hello.agents {
            self.agents
                .entry((hello.host.clone(), agent.clone()))
                .or_insert_with(|| AgentState::new(&hello.host, agent));
        }
    }
}

/// Cheap to clone; every clone sees the same fleet.
#[derive(Debug, Clone)]
pub struct Fleet {
    state: Arc<Mutex<State>>,
    /// Time to judge one agent on a new snapshot, for `/metrics`.
    evaluation: prometheus_client::metrics::histogram::Histogram,
    /// Snapshots kept per agent for `GetAgent`'s history.
    history_len: usize,
    /// Signalled when an alert fires or resolves, so the notifier need not wait for its step.
    alerts_changed: Arc<tokio::sync::Notify>,
}

impl Fleet {
    pub fn new(history_len: usize, rules: Arc<RuleSet>, language: Language) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                sidecars: HashMap::new(),
                agents: BTreeMap::new(),
                next_stream_id: 0,
                membership: 0,
                retired: HashMap::new(),
                announcements: Vec::new(),
                health: vec![RuleHealth::default(); rules.rules.len()],
                rules,
                language,
                cluster_alerts: HashMap::new(),
                restored: RefCell::default(),
                restored_places: HashSet::new(),
                restored_at: None,
            })),
            history_len,
            alerts_changed: Arc::default(),
            evaluation: prometheus_client::metrics::histogram::Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.000_005, 2.0, 16),
            ),
        }
    }

    /// Notified (one stored permit) whenever an alert fires or resolves.
    pub fn alerts_changed(&self) -> Arc<tokio::sync::Notify> {
        self.alerts_changed.clone()
    }

    pub fn evaluation_histogram(&self) -> prometheus_client::metrics::histogram::Histogram {
        self.evaluation.clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests;
