//! The fleet: every sidecar and agent the aggregator has heard from, their alert rules'
//! state, behind one cheap handle.
//!
//! A std mutex guards the state; it is never held across an `.await`, and every critical
//! section is a few map operations plus the rule evaluation of one agent.

mod agent;
pub mod rates;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use flumewatch_proto::model::snapshot::Snapshot;
use flumewatch_proto::v1 as pb;
use tokio::time::Instant;

pub use agent::{AgentState, HistoryEntry};

use crate::alert::Alert;
use crate::rules::engine::{self, Evaluator, RuleHealth, SidecarFacts, TargetKey, Tracked};
use crate::rules::{Language, RuleSet};

/// Both clocks: monotonic for hold-downs and staleness, wall for what people read.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub mono: Instant,
    pub wall: SystemTime,
}

impl Now {
    pub fn current() -> Self {
        Self {
            mono: Instant::now(),
            wall: SystemTime::now(),
        }
    }
}

/// What a sidecar says about itself when it opens a stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Hello {
    pub host: String,
    pub instance_id: String,
    pub agents: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub version: String,
    pub poll_interval: Duration,
}

/// What the aggregator knows about one sidecar (one host).
#[derive(Debug, Clone)]
pub struct SidecarState {
    pub hello: Hello,
    /// Highest sequence number stored from `hello.instance_id`.
    pub last_seq: u64,
    pub connected: bool,
    /// When `connected` last changed.
    pub since: SystemTime,
    /// Identifies the stream that owns the connection, so a stale stream closing after a
    /// reconnect does not mark the sidecar disconnected.
    stream_id: u64,
    pub stats: Option<pb::SidecarStats>,
    /// When its last snapshot arrived (or it connected), for SidecarSilent.
    last_snapshot_at: Instant,
    /// Sidecar-scope alerts (SidecarSilent).
    alerts: HashMap<TargetKey, Tracked>,
}

impl SidecarState {
    fn facts(&self) -> SidecarFacts<'_> {
        SidecarFacts {
            host: &self.hello.host,
            labels: &self.hello.labels,
            poll_interval: self.hello.poll_interval,
            last_snapshot_at: self.last_snapshot_at,
        }
    }

    /// Connected and heard from within three poll intervals (at least 30 s).
    fn is_fresh(&self, now: Instant) -> bool {
        let limit = (self.hello.poll_interval * 3).max(Duration::from_secs(30));
        self.connected && now.saturating_duration_since(self.last_snapshot_at) < limit
    }
}

/// A stream's registration: its id and the sequence number it resumes after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registration {
    pub stream_id: u64,
    pub resume_after: u64,
}

/// What became of one snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Stored,
    /// Already held (a replay after a lost ack).
    Duplicate,
    /// The stream was replaced by a newer one from the same sidecar; nothing stored.
    StaleStream,
}

/// An agent with its sidecar's view, for queries.
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
}

#[derive(Debug)]
struct State {
    sidecars: HashMap<String, SidecarState>,
    /// Keyed by (host, agent).
    agents: BTreeMap<(String, String), AgentState>,
    next_stream_id: u64,
    rules: Arc<RuleSet>,
    language: Language,
    health: Vec<RuleHealth>,
    cluster_alerts: HashMap<(usize, String), Tracked>,
    /// Alerts firing at the last stop, waiting to be matched (see `Evaluator::restored`).
    restored: RefCell<HashMap<u64, (SystemTime, SystemTime)>>,
    /// When they were loaded: ones not matched within [`RESTORE_WINDOW`] are forgotten.
    restored_at: Option<Instant>,
}

/// Firing and resolved alerts across the fleet (see [`engine::announced`]).
fn announced(
    agents: &BTreeMap<(String, String), AgentState>,
    sidecars: &HashMap<String, SidecarState>,
    cluster_alerts: &HashMap<(usize, String), Tracked>,
) -> (usize, usize) {
    engine::announced(
        agents
            .values()
            .flat_map(|a| a.eval.alerts.values())
            .chain(sidecars.values().flat_map(|s| s.alerts.values()))
            .chain(cluster_alerts.values()),
    )
}

/// How long alerts firing at the last stop wait for their condition to hold again.
const RESTORE_WINDOW: Duration = Duration::from_secs(15 * 60);

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
                health: vec![RuleHealth::default(); rules.rules.len()],
                rules,
                language,
                cluster_alerts: HashMap::new(),
                restored: RefCell::default(),
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

    /// Puts a new rule set in force (config reload). Alerts of rules that stay (same name and
    /// severity) keep their state; those of removed rules are dropped. Counter windows start
    /// over only when the windows the rules need changed.
    pub fn set_rules(&self, rules: Arc<RuleSet>, language: Language) {
        let mut guard = self.lock();
        let state = &mut *guard;
        let remap: Vec<Option<usize>> = state
            .rules
            .rules
            .iter()
            .map(|old| {
                rules
                    .rules
                    .iter()
                    .position(|r| r.name == old.name && r.severity == old.severity)
            })
            .collect();
        let new_index = |old: usize| remap.get(old).copied().flatten();
        let windows_changed = state.rules.specs != rules.specs;
        for agent in state.agents.values_mut() {
            let alerts = std::mem::take(&mut agent.eval.alerts);
            agent.eval.alerts = alerts
                .into_iter()
                .filter_map(|((i, t), v)| Some(((new_index(i)?, t), v)))
                .collect();
            if windows_changed {
                agent.eval.series = Default::default();
            }
        }
        for sidecar in state.sidecars.values_mut() {
            let alerts = std::mem::take(&mut sidecar.alerts);
            sidecar.alerts = alerts
                .into_iter()
                .filter_map(|((i, t), v)| Some(((new_index(i)?, t), v)))
                .collect();
        }
        let clusters = std::mem::take(&mut state.cluster_alerts);
        state.cluster_alerts = clusters
            .into_iter()
            .filter_map(|((i, g), v)| Some(((new_index(i)?, g), v)))
            .collect();
        let mut health = vec![RuleHealth::default(); rules.rules.len()];
        for (old, kept) in remap.iter().enumerate() {
            if let (Some(new), Some(h)) = (kept, state.health.get(old)) {
                health[*new] = h.clone();
            }
        }
        state.health = health;
        state.rules = rules;
        state.language = language;
    }

    /// Alerts that were firing when the aggregator last stopped (from the state database).
    pub fn restore_firing(&self, firing: impl IntoIterator<Item = (u64, SystemTime, SystemTime)>) {
        let mut state = self.lock();
        state.restored = RefCell::new(
            firing
                .into_iter()
                .map(|(fp, active, fired)| (fp, (active, fired)))
                .collect(),
        );
        state.restored_at = Some(Instant::now());
    }

    pub fn evaluation_histogram(&self) -> prometheus_client::metrics::histogram::Histogram {
        self.evaluation.clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A sidecar opened a stream. The same instance resumes where it left off; a new instance
    /// (the sidecar restarted) starts a new sequence.
    pub fn connect(&self, hello: Hello, now: Now) -> Registration {
        let mut state = self.lock();
        state.next_stream_id += 1;
        let stream_id = state.next_stream_id;
        for agent in &hello.agents {
            state
                .agents
                .entry((hello.host.clone(), agent.clone()))
                .or_insert_with(|| AgentState::new(&hello.host, agent));
        }
        let previous = state.sidecars.remove(&hello.host);
        let resume_after = match &previous {
            Some(known) if known.hello.instance_id == hello.instance_id => known.last_seq,
            Some(known) if known.connected => {
                tracing::warn!(
                    host = %hello.host,
                    "a second sidecar instance reports as this host while the first is connected; the newer one wins"
                );
                0
            }
            _ => 0,
        };
        let alerts = previous.map(|p| p.alerts).unwrap_or_default();
        state.sidecars.insert(
            hello.host.clone(),
            SidecarState {
                hello,
                last_seq: resume_after,
                connected: true,
                since: now.wall,
                stream_id,
                stats: None,
                last_snapshot_at: now.mono,
                alerts,
            },
        );
        Registration {
            stream_id,
            resume_after,
        }
    }

    /// Stores one snapshot from stream `stream_id` of `host`'s sidecar and, unless it is
    /// backfill, judges the agent's rules on it.
    pub fn record(&self, host: &str, stream_id: u64, snapshot: Snapshot, now: Now) -> Recorded {
        self.record_with(host, stream_id, snapshot, None, now)
    }

    /// [`Self::record`] with the snapshot's history entry already made from the wire message.
    pub fn record_with(
        &self,
        host: &str,
        stream_id: u64,
        snapshot: Snapshot,
        entry: Option<HistoryEntry>,
        now: Now,
    ) -> Recorded {
        let mut guard = self.lock();
        let State {
            sidecars,
            agents,
            rules,
            language,
            health,
            restored,
            ..
        } = &mut *guard;
        let restored = &*restored;
        let Some(sidecar) = sidecars.get_mut(host) else {
            return Recorded::StaleStream;
        };
        if sidecar.stream_id != stream_id {
            return Recorded::StaleStream;
        }
        let duplicate = snapshot.seq <= sidecar.last_seq;
        if !duplicate {
            sidecar.last_seq = snapshot.seq;
            sidecar.last_snapshot_at = now.mono;
        }
        let agent = agents
            .entry((host.to_owned(), snapshot.agent.clone()))
            .or_insert_with(|| AgentState::new(host, &snapshot.agent));
        if duplicate {
            agent.duplicates += 1;
            return Recorded::Duplicate;
        }
        let snapshot = Arc::new(snapshot);
        agent.eval.series.observe(&snapshot, &rules.specs);
        let newest = agent.apply(snapshot.clone(), entry, now.wall, self.history_len);
        if newest && !snapshot.backfill {
            let before = engine::announced(agent.eval.alerts.values());
            let started = Instant::now();
            let mut evaluator = Evaluator {
                rules,
                language: *language,
                now: now.mono,
                wall: now.wall,
                health,
                restored,
            };
            evaluator.agent(
                &mut agent.eval,
                &agent.agent,
                agent.latest.as_ref(),
                agent.consecutive_failures,
                &sidecar.facts(),
            );
            self.evaluation.observe(started.elapsed().as_secs_f64());
            if engine::announced(agent.eval.alerts.values()) != before {
                self.alerts_changed.notify_one();
            }
        }
        Recorded::Stored
    }

    /// Periodic evaluation: hold-downs elapse, silent sidecars and clusters are judged,
    /// old resolved alerts are forgotten.
    pub fn tick(&self, now: Now) {
        let mut guard = self.lock();
        let State {
            sidecars,
            agents,
            rules,
            language,
            health,
            cluster_alerts,
            restored,
            restored_at,
            ..
        } = &mut *guard;
        let before = announced(agents, sidecars, cluster_alerts);
        if restored_at.is_some_and(|at| now.mono.saturating_duration_since(at) > RESTORE_WINDOW) {
            restored.borrow_mut().clear();
            *restored_at = None;
        }
        let restored = &*restored;
        let mut evaluator = Evaluator {
            rules,
            language: *language,
            now: now.mono,
            wall: now.wall,
            health,
            restored,
        };
        for agent in agents.values_mut() {
            let Some(sidecar) = sidecars.get(&agent.host) else {
                continue;
            };
            let fresh = sidecar.is_fresh(now.mono);
            evaluator.advance_agent(&mut agent.eval, &agent.host, fresh);
            engine::expire(&mut agent.eval.alerts, now.mono);
        }
        for sidecar in sidecars.values_mut() {
            let SidecarState {
                hello,
                last_snapshot_at,
                alerts,
                ..
            } = sidecar;
            let facts = SidecarFacts {
                host: &hello.host,
                labels: &hello.labels,
                poll_interval: hello.poll_interval,
                last_snapshot_at: *last_snapshot_at,
            };
            evaluator.sidecar(alerts, &facts);
            engine::expire(alerts, now.mono);
        }
        let members = agents.values().filter_map(|agent| {
            let sidecar = sidecars.get(&agent.host)?;
            let critical = engine::has_firing_critical(agent.eval.alerts.values())
                || engine::has_firing_critical(sidecar.alerts.values());
            Some((&sidecar.hello.labels, critical))
        });
        evaluator.clusters(cluster_alerts, members);
        engine::expire(cluster_alerts, now.mono);
        if announced(agents, sidecars, cluster_alerts) != before {
            self.alerts_changed.notify_one();
        }
    }

    /// Counts a snapshot that could not be read, so the sequence still advances.
    pub fn skip(&self, host: &str, stream_id: u64, seq: u64) {
        let mut state = self.lock();
        if let Some(sidecar) = state.sidecars.get_mut(host) {
            if sidecar.stream_id == stream_id && seq > sidecar.last_seq {
                sidecar.last_seq = seq;
            }
        }
    }

    pub fn record_stats(&self, host: &str, stream_id: u64, stats: pb::SidecarStats) {
        let mut state = self.lock();
        if let Some(sidecar) = state.sidecars.get_mut(host) {
            if sidecar.stream_id == stream_id {
                sidecar.stats = Some(stats);
            }
        }
    }

    /// The stream ended; its sidecar's agents now show as disconnected (unless a newer stream
    /// from the same sidecar took over).
    pub fn disconnect(&self, host: &str, stream_id: u64, now: Now) {
        let mut state = self.lock();
        if let Some(sidecar) = state.sidecars.get_mut(host) {
            if sidecar.stream_id == stream_id && sidecar.connected {
                sidecar.connected = false;
                sidecar.since = now.wall;
            }
        }
    }

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
                    state: a.clone(),
                    sidecar: sidecar.clone(),
                })
            })
            .collect()
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
            state: found.clone(),
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
        state
            .rules
            .rules
            .iter()
            .enumerate()
            .map(|(i, rule)| RuleView {
                rule: rule.clone(),
                health: state.health.get(i).cloned().unwrap_or_default(),
                active_alerts: active[i],
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

#[cfg(test)]
mod tests;
