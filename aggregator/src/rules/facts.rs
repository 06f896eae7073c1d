//! Where conditions get their numbers: a component's gauges and counter windows, an agent's
//! failed polls and restarts, a sidecar's silence, a cluster's share of critical agents.

use std::cell::Cell;
use std::time::Duration;

use flumewatch_proto::model::snapshot::Component;

use super::condition::{full_level, Facts, FullLevel, Func, Leaf, Metric, Op};
use super::series::{AgentSeries, Specs, Window};

pub(super) struct ComponentFacts<'a> {
    pub component: &'a Component,
    /// Every component of the agent's snapshot (leaves with `of` read these).
    pub siblings: &'a [Component],
    pub series: &'a AgentSeries,
    pub specs: &'a Specs,
    /// The sibling that decided the last `of` leaf that held (index into `siblings`).
    pub peer: Cell<Option<usize>>,
}

impl Facts for ComponentFacts<'_> {
    fn read(&self, leaf: &Leaf) -> Option<f64> {
        let Some(kind) = leaf.of else {
            return self.read_of(self.component, leaf);
        };
        // The sibling for which the leaf holds with the most telling value (the fullest
        // channel for `> x`); when none holds, the value closest to holding.
        let prefer_low = matches!(leaf.op, Op::Lt | Op::Le);
        let mut best: Option<(usize, f64, bool)> = None;
        for (index, sibling) in self.siblings.iter().enumerate() {
            if sibling.kind != kind || sibling.is_stopped() {
                continue;
            }
            let Some(value) = self.read_of(sibling, leaf) else {
                continue;
            };
            let holds = leaf.op.holds(value, leaf.threshold);
            let better = match best {
                None => true,
                Some((_, _, old_holds)) if holds != old_holds => holds,
                Some((_, old, _)) if prefer_low => value < old,
                Some((_, old, _)) => value > old,
            };
            if better {
                best = Some((index, value, holds));
            }
        }
        let (index, value, holds) = best?;
        if holds {
            self.peer.set(Some(index));
        }
        Some(value)
    }
}

impl ComponentFacts<'_> {
    fn read_of(&self, c: &Component, leaf: &Leaf) -> Option<f64> {
        let specs = &self.specs.counters[..];
        match (leaf.metric, leaf.func) {
            (Metric::Gauge(g), Func::Value) => c.gauge(g),
            (Metric::Flag(f), Func::Value) => c.flag(f).map(|b| if b { 1.0 } else { 0.0 }),
            (Metric::Counter(expr), Func::Delta) => self.series.delta(c.kind, &c.name, expr, specs),
            (Metric::Counter(expr), Func::Increase { window, offset }) => {
                let window = Window {
                    length: window,
                    offset,
                    full: leaf.op.fires_on_low_values(),
                };
                self.series
                    .increase(c.kind, &c.name, expr, window, specs)
                    .map(|(v, _)| v)
            }
            (Metric::Counter(expr), Func::Rate { window }) => {
                let window = Window {
                    length: window,
                    offset: Duration::ZERO,
                    full: leaf.op.fires_on_low_values(),
                };
                self.series
                    .increase(c.kind, &c.name, expr, window, specs)
                    .filter(|(_, span)| !span.is_zero())
                    .map(|(v, span)| v / span.as_secs_f64())
            }
            (Metric::Gauge(g), Func::Slope { window }) => {
                self.series.slope(c.kind, &c.name, g, window, self.specs)
            }
            (Metric::Gauge(g), Func::TimeToFull { window }) => {
                let full = match full_level(g)? {
                    FullLevel::Gauge(level) => c.gauge(level)?,
                    FullLevel::Fixed(level) => level,
                };
                let now = c.gauge(g)?;
                let slope = self.series.slope(c.kind, &c.name, g, window, self.specs)?;
                // Not growing, or nothing to fill (capacity 0): never full.
                (slope > 0.0 && full > 0.0).then(|| ((full - now) / slope).max(0.0))
            }
            _ => None,
        }
    }
}

pub(super) struct AgentFacts<'a> {
    pub failed_polls: u32,
    pub series: &'a AgentSeries,
}

impl Facts for AgentFacts<'_> {
    fn read(&self, leaf: &Leaf) -> Option<f64> {
        match (leaf.metric, leaf.func) {
            (Metric::FailedPolls, _) => Some(f64::from(self.failed_polls)),
            (Metric::Resets, Func::Increase { window, .. }) => {
                Some(self.series.resets_within(window) as f64)
            }
            _ => None,
        }
    }
}

pub(super) struct ClusterFacts {
    pub critical: usize,
    pub total: usize,
}

impl Facts for ClusterFacts {
    fn read(&self, leaf: &Leaf) -> Option<f64> {
        match leaf.metric {
            Metric::CriticalAgents => Some(self.critical as f64),
            Metric::CriticalAgentsPercent if self.total > 0 => {
                Some(100.0 * self.critical as f64 / self.total as f64)
            }
            _ => None,
        }
    }
}

pub(super) struct Fixed(pub Metric, pub f64);

impl Facts for Fixed {
    fn read(&self, leaf: &Leaf) -> Option<f64> {
        (leaf.metric == self.0).then_some(self.1)
    }
}
