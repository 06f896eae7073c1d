//! Typed conditions: what a rule reads (metric), how (value, delta, increase, rate), and the
//! comparison; combined with all/any. Checked when the rule file is loaded, never parsed at
//! evaluation time.

use std::fmt;
use std::time::Duration;

use flumewatch_proto::model::snapshot::{ComponentKind, Counter, Flag, Gauge};
use flumewatch_proto::model::vocabulary;

/// What a rule applies to; each metric belongs to exactly one scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Each matching Flume component (source, channel, sink …) of each agent.
    Component,
    /// Each agent.
    Agent,
    /// Each sidecar (host).
    Sidecar,
    /// Each group of agents sharing a label value (by default `cluster`).
    Cluster,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Component => "component",
            Scope::Agent => "agent",
            Scope::Sidecar => "sidecar",
            Scope::Cluster => "cluster",
        }
    }
}

/// A counter, or the difference of two counters (a gap such as attempts − successes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CounterExpr {
    pub counter: Counter,
    pub minus: Option<Counter>,
}

impl fmt::Display for CounterExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(vocabulary::counter_name(self.counter))?;
        if let Some(minus) = self.minus {
            write!(f, " - {}", vocabulary::counter_name(minus))?;
        }
        Ok(())
    }
}

/// What a leaf reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    Gauge(Gauge),
    Flag(Flag),
    Counter(CounterExpr),
    /// Consecutive failed polls ending with the newest one.
    FailedPolls,
    /// Counter resets (StartTime changes) of any component.
    Resets,
    /// Time since the sidecar's last snapshot, in poll intervals (an interval counts as at least
    /// 10 s, so 3 means "3 intervals, at least 30 s").
    StalePolls,
    /// Agents in the group with a firing critical alert.
    CriticalAgents,
    /// The same, as a percentage of the group's agents.
    CriticalAgentsPercent,
}

impl Metric {
    pub fn scope(self) -> Scope {
        match self {
            Metric::Gauge(_) | Metric::Flag(_) | Metric::Counter(_) => Scope::Component,
            Metric::FailedPolls | Metric::Resets => Scope::Agent,
            Metric::StalePolls => Scope::Sidecar,
            Metric::CriticalAgents | Metric::CriticalAgentsPercent => Scope::Cluster,
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Metric::Gauge(g) => f.write_str(vocabulary::gauge_name(*g)),
            Metric::Flag(flag) => f.write_str(vocabulary::flag_name(*flag)),
            Metric::Counter(expr) => expr.fmt(f),
            Metric::FailedPolls => f.write_str("failed_polls"),
            Metric::Resets => f.write_str("resets"),
            Metric::StalePolls => f.write_str("stale_polls"),
            Metric::CriticalAgents => f.write_str("critical_agents"),
            Metric::CriticalAgentsPercent => f.write_str("critical_agents_percent"),
        }
    }
}

/// How a leaf reads its metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Func {
    /// The current value (gauges, flags as 0/1, agent and fleet facts).
    Value,
    /// Increase since the previous poll; no value on the poll right after a reset.
    Delta,
    /// Increase over `window`, ending `offset` before the newest data; reset intervals count 0.
    Increase { window: Duration, offset: Duration },
    /// Increase per second over `window`.
    Rate { window: Duration },
    /// A gauge's change per second over `window`: the least-squares slope of its points there,
    /// never across a component restart.
    Slope { window: Duration },
    /// Seconds until a gauge reaches its full level (ChannelSize → ChannelCapacity,
    /// ChannelFillPercentage → 100) at its slope over `window`; no value while it is not growing.
    TimeToFull { window: Duration },
}

impl Func {
    /// The window a windowed function looks back over.
    pub fn window(self) -> Option<Duration> {
        match self {
            Func::Value | Func::Delta => None,
            Func::Increase { window, .. }
            | Func::Rate { window }
            | Func::Slope { window }
            | Func::TimeToFull { window } => Some(window),
        }
    }

    /// Reads a gauge's history (not a counter's).
    pub fn is_trend(self) -> bool {
        matches!(self, Func::Slope { .. } | Func::TimeToFull { .. })
    }
}

/// The level at which a gauge is full, for [`Func::TimeToFull`].
pub fn full_level(gauge: Gauge) -> Option<FullLevel> {
    match gauge {
        Gauge::ChannelSize => Some(FullLevel::Gauge(Gauge::ChannelCapacity)),
        Gauge::ChannelFillPercentage => Some(FullLevel::Fixed(100.0)),
        _ => None,
    }
}

/// Where "full" is: another gauge of the same component, or a fixed level.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FullLevel {
    Gauge(Gauge),
    Fixed(f64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

impl Op {
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Op::Gt => value > threshold,
            Op::Ge => value >= threshold,
            Op::Lt => value < threshold,
            Op::Le => value <= threshold,
            Op::Eq => value == threshold,
            Op::Ne => value != threshold,
        }
    }

    /// Holds for small values, so a window must be fully observed before it may be judged
    /// (an agent watched for 2 minutes has not been "quiet for 10 minutes").
    pub fn fires_on_low_values(self) -> bool {
        matches!(self, Op::Lt | Op::Le | Op::Eq)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }
}

/// One comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Leaf {
    pub func: Func,
    pub metric: Metric,
    /// Read from the agent's components of this kind instead of the rule's own component
    /// (e.g. a sink rule asking whether any channel of the agent holds events): the leaf holds
    /// when it holds for one of them, and that one is the alert's peer.
    pub of: Option<ComponentKind>,
    pub op: Op,
    pub threshold: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    Leaf(Leaf),
    All(Vec<Condition>),
    Any(Vec<Condition>),
}

/// Where leaves get their numbers; `None` means "no value" and makes the leaf false.
pub trait Facts {
    fn read(&self, leaf: &Leaf) -> Option<f64>;
}

impl Condition {
    /// `Some(value)` when the condition holds: the value of the leaf that decided it (the first
    /// leaf of an `all`, the first true leaf of an `any`).
    pub fn eval(&self, facts: &impl Facts) -> Option<f64> {
        match self {
            Condition::Leaf(leaf) => {
                let value = facts.read(leaf)?;
                leaf.op.holds(value, leaf.threshold).then_some(value)
            }
            Condition::All(parts) => {
                let mut first = None;
                for part in parts {
                    let value = part.eval(facts)?;
                    first.get_or_insert(value);
                }
                first
            }
            Condition::Any(parts) => parts.iter().find_map(|part| part.eval(facts)),
        }
    }

    pub fn leaves(&self) -> Vec<&Leaf> {
        match self {
            Condition::Leaf(leaf) => vec![leaf],
            Condition::All(parts) | Condition::Any(parts) => {
                parts.iter().flat_map(Condition::leaves).collect()
            }
        }
    }

    /// The first leaf's threshold, for templates.
    pub fn threshold(&self) -> f64 {
        self.leaves().first().map_or(0.0, |l| l.threshold)
    }
}

impl fmt::Display for Leaf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(kind) = self.of {
            write!(f, "{}:", vocabulary::kind_name(kind).to_ascii_lowercase())?;
        }
        match self.func {
            Func::Value => write!(f, "{}", self.metric)?,
            Func::Delta => write!(f, "delta({})", self.metric)?,
            Func::Increase { window, offset } if offset.is_zero() => write!(
                f,
                "increase({}[{}])",
                self.metric,
                humantime::format_duration(window)
            )?,
            Func::Increase { window, offset } => write!(
                f,
                "increase({}[{}] offset {})",
                self.metric,
                humantime::format_duration(window),
                humantime::format_duration(offset)
            )?,
            Func::Rate { window } => write!(
                f,
                "rate({}[{}])",
                self.metric,
                humantime::format_duration(window)
            )?,
            Func::Slope { window } => write!(
                f,
                "slope({}[{}])",
                self.metric,
                humantime::format_duration(window)
            )?,
            Func::TimeToFull { window } => {
                // Thresholds of time_to_full are seconds: show them as the file may write them.
                return write!(
                    f,
                    "time_to_full({}[{}]) {} {}",
                    self.metric,
                    humantime::format_duration(window),
                    self.op.as_str(),
                    humantime::format_duration(
                        Duration::try_from_secs_f64(self.threshold.max(0.0))
                            .unwrap_or(Duration::MAX)
                    )
                );
            }
        }
        write!(f, " {} {}", self.op.as_str(), self.threshold)
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |f: &mut fmt::Formatter<'_>, parts: &[Condition], word: &str| {
            f.write_str("(")?;
            for (i, part) in parts.iter().enumerate() {
                if i > 0 {
                    write!(f, " {word} ")?;
                }
                write!(f, "{part}")?;
            }
            f.write_str(")")
        };
        match self {
            Condition::Leaf(leaf) => leaf.fmt(f),
            Condition::All(parts) => join(f, parts, "and"),
            Condition::Any(parts) => join(f, parts, "or"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(f64);
    impl Facts for Fixed {
        fn read(&self, leaf: &Leaf) -> Option<f64> {
            (leaf.metric != Metric::Resets).then_some(self.0)
        }
    }

    fn leaf(metric: Metric, op: Op, threshold: f64) -> Condition {
        Condition::Leaf(Leaf {
            func: Func::Value,
            metric,
            of: None,
            op,
            threshold,
        })
    }

    #[test]
    fn all_any_and_missing_values() {
        let fill = leaf(Metric::Gauge(Gauge::ChannelFillPercentage), Op::Ge, 80.0);
        assert_eq!(fill.eval(&Fixed(85.0)), Some(85.0));
        assert_eq!(fill.eval(&Fixed(79.9)), None);
        let missing = leaf(Metric::Resets, Op::Ge, 0.0);
        assert_eq!(missing.eval(&Fixed(1.0)), None, "no value is never true");
        let all = Condition::All(vec![
            fill.clone(),
            leaf(Metric::Gauge(Gauge::ChannelCapacity), Op::Gt, 0.0),
        ]);
        assert_eq!(all.eval(&Fixed(90.0)), Some(90.0));
        let any = Condition::Any(vec![missing, fill]);
        assert_eq!(any.eval(&Fixed(99.0)), Some(99.0));
        assert_eq!(
            any.to_string(),
            "(resets >= 0 or ChannelFillPercentage >= 80)"
        );
    }
}
