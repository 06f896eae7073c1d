//! Configuration reloads and restarts: alerts keep their state across a new rule set, and
//! alerts firing at the last stop wait to be matched again.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::time::Instant;

use super::Fleet;
use crate::notify::store::FiringRow;
use crate::rules::engine::RuleHealth;
use crate::rules::{Language, RuleSet};

impl Fleet {
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
                .filter_map(|((i, t), v)| Some(((new_index(i)?, t), v.render_again())))
                .collect();
            if windows_changed {
                agent.eval.series = Default::default();
            }
        }
        for sidecar in state.sidecars.values_mut() {
            let alerts = std::mem::take(&mut sidecar.alerts);
            sidecar.alerts = alerts
                .into_iter()
                .filter_map(|((i, t), v)| Some(((new_index(i)?, t), v.render_again())))
                .collect();
        }
        let clusters = std::mem::take(&mut state.cluster_alerts);
        state.cluster_alerts = clusters
            .into_iter()
            .filter_map(|((i, g), v)| Some(((new_index(i)?, g), v.render_again())))
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
        // Alerts of removed rules are gone: the notifier regroups.
        self.alerts_changed.notify_one();
    }

    /// Alerts that were firing when the aggregator last stopped (from the state database).
    pub fn restore_firing(&self, firing: impl IntoIterator<Item = FiringRow>) {
        let mut state = self.lock();
        let mut places = HashSet::new();
        let mut restored = HashMap::new();
        for (fp, active, fired, place) in firing {
            if let Some((host, agent)) = place.split_once('\t') {
                places.insert((host.to_owned(), agent.to_owned()));
            }
            restored.insert(fp, (active, fired));
        }
        state.restored = RefCell::new(restored);
        state.restored_places = places;
        state.restored_at = Some(Instant::now());
    }
}
