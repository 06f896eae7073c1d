//! Where conditions get their numbers: a component's gauges and counter windows, an agent's
//! failed polls and restarts, a sidecar's silence, a cluster's share of critical agents.

use std::time::Duration;

use flumewatch_proto::model::snapshot::Component;

use super::condition::{Facts, Func, Leaf, Metric};
use super::series::{AgentSeries, SeriesSpec, Window};

pub(super) struct ComponentFacts<'a> {
    pub component: &'a Component,
    pub series: &'a AgentSeries,
    pub specs: &'a [SeriesSpec],
}

impl Facts for ComponentFacts<'_> {
    fn read(&self, leaf: &Leaf) -> Option<f64> {
        let c = self.component;
        match (leaf.metric, leaf.func) {
            (Metric::Gauge(g), Func::Value) => c.gauge(g),
            (Metric::Flag(f), Func::Value) => c.flag(f).map(|b| if b { 1.0 } else { 0.0 }),
            (Metric::Counter(expr), Func::Delta) => {
                self.series.delta(c.kind, &c.name, expr, self.specs)
            }
            (Metric::Counter(expr), Func::Increase { window, offset }) => {
                let window = Window {
                    length: window,
                    offset,
                    full: leaf.op.fires_on_low_values(),
                };
                self.series
                    .increase(c.kind, &c.name, expr, window, self.specs)
                    .map(|(v, _)| v)
            }
            (Metric::Counter(expr), Func::Rate { window }) => {
                let window = Window {
                    length: window,
                    offset: Duration::ZERO,
                    full: leaf.op.fires_on_low_values(),
                };
                self.series
                    .increase(c.kind, &c.name, expr, window, self.specs)
                    .filter(|(_, span)| !span.is_zero())
                    .map(|(v, span)| v / span.as_secs_f64())
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
