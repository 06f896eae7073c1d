//! Judging: one agent on each new snapshot, and the periodic pass over hold-downs, silent
//! sidecars and clusters. Tells the notifier when the set of firing or resolved alerts changed.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::time::SystemTime;

use flumewatch_proto::model::snapshot::Snapshot;
use tokio::time::Instant;

use super::sidecar::SidecarState;
use super::{AgentState, Fleet, HistoryEntry, Now, State};
use crate::alert::AlertStatus;
use crate::notify::firing::RESTORE_WINDOW;
use crate::rules::engine::{self, ClusterTally, Evaluator, RuleHealth, SidecarFacts, Tracked};
use crate::rules::{Language, RuleSet};

/// Agents judged per hold of the fleet lock on a tick. A pass over 10 000 agents takes about
/// 20 ms: held throughout, it would stall every stream's ingest that long, every tick.
const TICK_SLICE: usize = 500;

/// One evaluation's [`Evaluator`] over the fleet's rules, at `now`.
fn evaluator<'a>(
    rules: &'a RuleSet,
    language: Language,
    now: Now,
    health: &'a mut Vec<RuleHealth>,
    restored: &'a RefCell<HashMap<u64, (SystemTime, SystemTime)>>,
    resolve_restored: bool,
) -> Evaluator<'a> {
    Evaluator {
        rules,
        language,
        now: now.mono,
        wall: now.wall,
        health,
        restored,
        resolve_restored,
    }
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

/// An order-independent digest of which alerts are firing and which resolved: it changes when
/// any alert starts firing, resolves or is forgotten, which is exactly when the notifier has
/// something to regroup. Counts alone would miss one alert resolving as another fires.
fn announced<'a>(tracked: impl IntoIterator<Item = &'a Tracked>) -> u64 {
    tracked
        .into_iter()
        .filter_map(|t| match t.alert.status {
            AlertStatus::Firing => Some(mix(t.alert.fingerprint ^ 0x9e37_79b9_7f4a_7c15)),
            AlertStatus::Resolved => Some(mix(t.alert.fingerprint ^ 0x632b_e59b_d9b4_e019)),
            AlertStatus::Pending => None,
        })
        .fold(0, u64::wrapping_add)
}

/// splitmix64's finaliser: spreads every input bit so the digest's sum does not cancel.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

thread_local! {
    /// The (host, agent) key of the last lookup, refilled in place: looking an agent up by
    /// an owned key would cost two allocations per snapshot.
    static KEY: std::cell::RefCell<(String, String)> = const {
        std::cell::RefCell::new((String::new(), String::new()))
    };
}

/// `host`'s `agent`, added when new.
fn agent_entry<'a>(
    agents: &'a mut BTreeMap<(String, String), AgentState>,
    host: &str,
    agent: &str,
) -> &'a mut AgentState {
    KEY.with_borrow_mut(|key| {
        key.0.clear();
        key.0.push_str(host);
        key.1.clear();
        key.1.push_str(agent);
        if !agents.contains_key(key) {
            agents.insert(key.clone(), AgentState::new(host, agent));
        }
    });
    // Found or inserted just above; a second lookup keeps the borrow checker content.
    KEY.with_borrow(|key| agents.get_mut(key))
        .expect("inserted above when missing")
}

impl Fleet {
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
        self.record_into(host, stream_id, &mut { snapshot }, entry, now)
    }

    /// [`Self::record_with`] on a snapshot decoded into `buffer`, which stays the caller's:
    /// agents keep their snapshots as bytes, so one buffer per ingest thread serves every
    /// agent and stays in cache.
    pub fn record_into(
        &self,
        host: &str,
        stream_id: u64,
        buffer: &mut Snapshot,
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
            restored_places,
            retired,
            ..
        } = &mut *guard;
        let restored = &*restored;
        let Some(sidecar) = sidecars.get_mut(host) else {
            return Recorded::StaleStream;
        };
        if sidecar.stream_id != stream_id {
            return Recorded::StaleStream;
        }
        if Fleet::is_retired(retired, host, &buffer.agent, &sidecar.hello.instance_id) {
            // Acknowledged and dropped: the operator retired it.
            sidecar.last_seq = sidecar.last_seq.max(buffer.seq);
            return Recorded::Stored;
        }
        let duplicate = buffer.seq <= sidecar.last_seq;
        if !duplicate {
            sidecar.last_seq = buffer.seq;
            sidecar.last_snapshot_at = now.mono;
        }
        let agent = agent_entry(agents, host, &buffer.agent);
        if duplicate {
            agent.duplicates += 1;
            return Recorded::Duplicate;
        }
        let snapshot = &*buffer;
        agent
            .eval
            .series
            .set_poll_interval(sidecar.hello.poll_interval);
        let reset = agent.eval.series.observe(snapshot, &rules.specs);
        let entry = entry.unwrap_or_else(|| HistoryEntry::new(snapshot));
        let newest = agent.apply(snapshot, entry, now.wall, self.history_len, reset);
        if newest && !snapshot.backfill {
            let before = announced(agent.eval.alerts.values());
            let started = Instant::now();
            // The agent's first good snapshot since a restart that left alerts of its own to
            // resume: what is clear now resolves them.
            let resolve_restored = snapshot.outcome.is_ok()
                && !restored_places.is_empty()
                && restored_places.remove(&(host.to_owned(), agent.agent.clone()));
            let mut evaluator =
                evaluator(rules, *language, now, health, restored, resolve_restored);
            evaluator.agent(
                &mut agent.eval,
                &agent.agent,
                Some(snapshot),
                agent.consecutive_failures,
                &sidecar.facts(),
            );
            self.evaluation.observe(started.elapsed().as_secs_f64());
            if announced(agent.eval.alerts.values()) != before {
                self.alerts_changed.notify_one();
            }
        }
        Recorded::Stored
    }

    /// Periodic evaluation: hold-downs elapse, silent sidecars and clusters are judged,
    /// old resolved alerts are forgotten. Agents are taken [`TICK_SLICE`] per hold of the lock.
    pub fn tick(&self, now: Now) {
        let mut changed = self.tick_sidecars(now);
        let mut tally = ClusterTally::new();
        // The first agent of the next slice.
        let mut resume: Option<(String, String)> = None;
        loop {
            let mut guard = self.lock();
            let State {
                sidecars,
                agents,
                rules,
                language,
                health,
                cluster_alerts,
                restored,
                ..
            } = &mut *guard;
            let mut evaluator = evaluator(rules, *language, now, health, restored, false);
            let slice = match resume.take() {
                Some(next) => agents.range_mut((Bound::Included(next), Bound::Unbounded)),
                None => agents.range_mut::<(String, String), _>(..),
            };
            for (judged, (key, agent)) in slice.enumerate() {
                if judged == TICK_SLICE {
                    resume = Some(key.clone());
                    break;
                }
                let Some(sidecar) = sidecars.get(&agent.host) else {
                    continue;
                };
                let before = announced(agent.eval.alerts.values());
                let fresh = sidecar.is_fresh(now.mono);
                evaluator.advance_agent(&mut agent.eval, &agent.host, fresh);
                engine::expire(&mut agent.eval.alerts, now.mono);
                changed |= announced(agent.eval.alerts.values()) != before;
                let critical = engine::has_firing_critical(agent.eval.alerts.values())
                    || engine::has_firing_critical(sidecar.alerts.values());
                evaluator.tally(&mut tally, &sidecar.hello.labels, critical);
            }
            if resume.is_none() {
                let before = announced(cluster_alerts.values());
                evaluator.clusters(cluster_alerts, &tally);
                engine::expire(cluster_alerts, now.mono);
                changed |= announced(cluster_alerts.values()) != before;
                break;
            }
        }
        if changed {
            self.alerts_changed.notify_one();
        }
    }

    /// The tick's first part: restored alerts not matched in time are forgotten, sidecars'
    /// silences judged (before agents, whose clusters count a silent sidecar's agents as
    /// critical). Returns whether an alert started or stopped firing.
    fn tick_sidecars(&self, now: Now) -> bool {
        let mut guard = self.lock();
        let State {
            sidecars,
            rules,
            language,
            health,
            restored,
            restored_at,
            restored_places,
            ..
        } = &mut *guard;
        if restored_at.is_some_and(|at| now.mono.saturating_duration_since(at) > RESTORE_WINDOW) {
            restored.borrow_mut().clear();
            restored_places.clear();
            *restored_at = None;
        }
        let before = announced(sidecars.values().flat_map(|s| s.alerts.values()));
        let restored = &*restored;
        let mut evaluator = evaluator(rules, *language, now, health, restored, false);
        for sidecar in sidecars.values_mut() {
            let SidecarState {
                hello,
                last_snapshot_at,
                alerts,
                connected,
                ..
            } = sidecar;
            let facts = SidecarFacts {
                host: &hello.host,
                labels: &hello.labels,
                poll_interval: hello.poll_interval,
                last_snapshot_at: *last_snapshot_at,
            };
            // A silence that was firing before the restart ends once the sidecar is back.
            evaluator.resolve_restored = *connected && !restored.borrow().is_empty();
            evaluator.sidecar(alerts, &facts);
            evaluator.resolve_restored = false;
            engine::expire(alerts, now.mono);
        }
        announced(sidecars.values().flat_map(|s| s.alerts.values())) != before
    }
}
