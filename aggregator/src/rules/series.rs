//! Per-agent windows over the counters the rules use: reset-aware increases kept as a
//! downsampled running sum, so "increase over 5m" costs a lookup, not a scan of snapshots.
//!
//! Only counters some rule reads are tracked, each at the resolution and for the retention its
//! windows need: a 70-minute window at 10 s polls keeps ~60 points, not 420 snapshots.
//!
//! A point is its time in milliseconds since the agent's time origin (u32), kept once per
//! component and window spec ([`super::clocks`]), and per track the increase since the point
//! before it (i32), or nothing while the track's increases are all zero.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flumewatch_proto::model::snapshot::{ComponentKind, Gauge, Snapshot};

use super::clocks::Clocks;
use super::condition::{CounterExpr, Func};
use super::counters::{Dense, Previous};
use super::trend::{GaugeSpec, GaugeTrack};
use flumewatch_proto::model::resets::reset_against;

/// Most points one track keeps between its window start and now.
const POINTS_PER_WINDOW: u32 = 20;
/// Most a poll may land inside a window and still count as its start.
const JITTER_MS: Millis = 250;
/// Reset times kept per agent (AgentRestartFlapping counts a handful within an hour).
const MAX_RESETS: usize = 32;
/// Point times are u32 milliseconds since the agent's origin (49.7 days of range): once the
/// newest data is this far past the origin (24.8 days), the origin moves up.
const REBASE_AFTER: Millis = 1 << 31;
/// Where a rebase puts the origin: this far (12.4 days) before the newest data, so the next
/// rebase is 12.4 days away. Points older than that are dropped: windows reach back at most
/// their retention (70 minutes for the default policy), and a track keeps one point before
/// its oldest window only as that window's base.
const REBASE_KEEPS: Millis = 1 << 30;

/// One tracked counter expression for one component kind.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSpec {
    pub kind: ComponentKind,
    pub expr: CounterExpr,
    /// How far back windows reach (window + offset, largest over the rules).
    pub retention: Duration,
    /// Points closer than this are merged.
    pub resolution: Duration,
}

/// The (retention, resolution) a windowed function needs; `None` for the others.
fn needs(func: Func) -> Option<(Duration, Duration)> {
    let (reach, window) = match func {
        Func::Increase { window, offset } => (window + offset, window),
        Func::Rate { window } => (window, window),
        Func::Value | Func::Delta | Func::Slope { .. } | Func::TimeToFull { .. } => return None,
    };
    Some((reach, window / POINTS_PER_WINDOW))
}

impl SeriesSpec {
    /// Whether this spec's track can answer `func`. Each window gets a track of its own: one
    /// track serving a 10 s and a 1 h window would keep 1 h of points at the 10 s window's
    /// resolution (thousands of points per component where two tracks keep about 50).
    pub fn fits(&self, func: Func) -> bool {
        match needs(func) {
            Some((reach, resolution)) => self.retention >= reach && self.resolution <= resolution,
            None => true,
        }
    }

    /// Widens this spec to serve one more leaf.
    pub fn serve(&mut self, func: Func) {
        let Some((reach, wanted)) = needs(func) else {
            return;
        };
        self.retention = self.retention.max(reach);
        self.resolution = if self.resolution.is_zero() {
            wanted
        } else {
            self.resolution.min(wanted)
        };
    }
}

/// Everything the rules need tracked per agent: counter windows and gauge trends.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Specs {
    pub counters: Vec<SeriesSpec>,
    pub gauges: Vec<GaugeSpec>,
}

impl Specs {
    fn retention(&self) -> Duration {
        let counters = self.counters.iter().map(|s| s.retention);
        let gauges = self.gauges.iter().map(|s| s.retention);
        counters.chain(gauges).max().unwrap_or_default()
    }
}

/// A window to read an increase over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub length: Duration,
    /// How far before the newest data the window ends.
    pub offset: Duration,
    /// Only judge a window the series fully covers.
    pub full: bool,
}

/// Most points a track keeps: one per resolution step over the retention, the base point
/// before it and the newest (exact) one.
pub(crate) fn most_points(retention: Duration, resolution: Duration) -> usize {
    let steps = retention.as_millis() / resolution.as_millis().max(1);
    (steps as usize).saturating_add(3).min(1024)
}

/// Epoch milliseconds: compact and ordered.
type Millis = i64;

fn millis(t: SystemTime) -> Millis {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis)
}

#[derive(Debug, Clone)]
struct ComponentSeries {
    kind: ComponentKind,
    name: String,
    /// The previous poll's StartTime and counters: deltas and resets are judged against them.
    previous_start: Option<u64>,
    previous_counters: Previous,
    last_seen: Millis,
    /// Tracks parallel to the counter specs of this kind (`AgentSeries::observe` keeps the
    /// order).
    windows: Clocks,
    /// Parallel to the gauge specs of this kind. A boxed slice, allocated at its exact length:
    /// collecting a filtered iterator into a `Vec` would round it up.
    trends: Box<[GaugeTrack]>,
}

/// Everything windowed about one agent.
#[derive(Debug, Clone, Default)]
pub struct AgentSeries {
    components: Vec<ComponentSeries>,
    resets: VecDeque<Millis>,
    /// Scrape time of the newest successful snapshot: windows end here.
    newest: Millis,
    /// Epoch ms that point times count from: the first successful snapshot's scrape time,
    /// moved up every 12.4 days (see [`REBASE_AFTER`]).
    origin: Option<Millis>,
    /// Where the last lookup found its component: rules read components in snapshot order,
    /// so the next lookup is usually there or one further (no scan, no name compares).
    hint: std::cell::Cell<usize>,
    /// The agent's poll interval: points are never closer than this, so a track reserves
    /// room for one per poll over its retention when that is fewer than its resolution allows
    /// (a 10 s window at 10 s polls keeps 4 points, not 23).
    poll: Duration,
}

impl AgentSeries {
    pub fn set_poll_interval(&mut self, poll: Duration) {
        self.poll = poll;
    }

    /// Takes one successful snapshot, in sequence order (backfill included). Returns whether
    /// any of its components restarted since the previous poll (counters went back).
    pub fn observe(&mut self, snapshot: &Snapshot, all: &Specs) -> bool {
        let specs = &all.counters[..];
        if !snapshot.outcome.is_ok() {
            return false;
        }
        let poll = self.poll;
        let now = millis(snapshot.scraped_at);
        if now < self.newest {
            return false; // older than what is tracked: history has it, windows do not need it
        }
        self.newest = now;
        let at = self.offset(now);
        if self.components.is_empty() {
            // The first snapshot lists all of them: room for exactly that many, where pushing
            // one by one would leave room for 32 after 20.
            self.components.reserve_exact(snapshot.components.len());
        }
        let mut restarted = false;
        let mut any_reset = false;
        for (position, component) in snapshot
            .components
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.is_stopped())
        {
            let same = |s: &ComponentSeries| s.kind == component.kind && s.name == component.name;
            // Snapshots of one agent list components in the same order: try that place first.
            let found = match self.components.get(position) {
                Some(s) if same(s) => Some(position),
                _ => self.components.iter().position(same),
            };
            let index = match found {
                Some(index) => index,
                None => {
                    let kind_specs = specs.iter().filter(|s| s.kind == component.kind);
                    let mut windows =
                        Clocks::new(kind_specs.map(|s| (s.retention, s.resolution)), poll);
                    // The first poll of a component is a point with no increase.
                    windows.push(at, std::iter::empty());
                    let mut previous_counters = Previous::default();
                    previous_counters.set(&Dense::of(&component.counters));
                    let gauge_specs = all.gauges.iter().filter(|s| s.kind == component.kind);
                    let mut trends = Vec::with_capacity(gauge_specs.clone().count());
                    for spec in gauge_specs {
                        let mut trend = GaugeTrack::default();
                        trend.reserve(most_points(spec.retention, spec.resolution.max(poll)));
                        trend.record(at.into(), component.gauge(spec.gauge), false, spec);
                        trends.push(trend);
                    }
                    self.components.push(ComponentSeries {
                        kind: component.kind,
                        name: component.name.clone(),
                        previous_start: component.start_time_ms,
                        previous_counters,
                        last_seen: now,
                        windows,
                        trends: trends.into_boxed_slice(),
                    });
                    continue;
                }
            };
            let series = &mut self.components[index];
            let before = series.previous_counters.dense();
            let after = Dense::of(&component.counters);
            let reset = reset_against(series.previous_start, |c| before.get(c), component);
            any_reset |= reset;
            restarted |= reset && series.previous_start != component.start_time_ms;
            let kind_specs = specs.iter().filter(|s| s.kind == component.kind);
            let deltas = kind_specs.map(|spec| match reset {
                true => None,
                false => delta(&before, &after, spec.expr),
            });
            series.windows.push(at, deltas);
            let gauge_specs = all.gauges.iter().filter(|s| s.kind == component.kind);
            for (trend, spec) in series.trends.iter_mut().zip(gauge_specs) {
                trend.record(at.into(), component.gauge(spec.gauge), reset, spec);
            }
            series.previous_start = component.start_time_ms;
            series.previous_counters.set(&after);
            series.last_seen = now;
        }
        if restarted {
            if self.resets.len() == MAX_RESETS {
                self.resets.pop_front();
            }
            self.resets.push_back(now);
        }
        // A component gone for longer than any window (removed by a reload) is forgotten.
        let longest = all.retention().as_millis() as Millis;
        self.components
            .retain(|s| now - s.last_seen <= longest.max(60_000));
        any_reset
    }

    /// `now` (epoch ms, not before the origin) as a point time, setting the origin on the first
    /// call and moving it up when `now` is about to leave the u32 range.
    fn offset(&mut self, now: Millis) -> u32 {
        let origin = *self.origin.get_or_insert(now);
        if now - origin > REBASE_AFTER {
            self.rebase(now - REBASE_KEEPS);
        }
        let origin = self.origin.unwrap_or(now);
        u32::try_from(now - origin).expect("within REBASE_AFTER of the origin")
    }

    /// Moves the time origin to `origin`, shifting every point and dropping those before it.
    fn rebase(&mut self, origin: Millis) {
        let by = origin - self.origin.unwrap_or(origin);
        for series in &mut self.components {
            series.windows.rebase(by);
            for trend in &mut series.trends {
                trend.rebase(by);
            }
        }
        self.origin = Some(origin);
    }

    /// An epoch-ms time as milliseconds since the origin (negative before it).
    fn since_origin(&self, time: Millis) -> i64 {
        time - self.origin.unwrap_or(time)
    }

    fn component(&self, kind: ComponentKind, name: &str) -> Option<&ComponentSeries> {
        let same = |s: &ComponentSeries| s.kind == kind && s.name == name;
        let hint = self.hint.get();
        let index = [hint, hint + 1]
            .into_iter()
            .find(|i| self.components.get(*i).is_some_and(same))
            .or_else(|| self.components.iter().position(same))?;
        self.hint.set(index);
        Some(&self.components[index])
    }

    /// The component's windows and the index of the first of its tracks that can answer
    /// `func` of `expr`.
    fn track(
        &self,
        kind: ComponentKind,
        name: &str,
        expr: CounterExpr,
        func: Func,
        specs: &[SeriesSpec],
    ) -> Option<(&Clocks, usize)> {
        let series = self.component(kind, name)?;
        let track = specs
            .iter()
            .filter(|s| s.kind == kind)
            .position(|spec| spec.expr == expr && spec.fits(func))?;
        Some((&series.windows, track))
    }

    /// Increase of `expr` over the newest poll interval.
    pub fn delta(
        &self,
        kind: ComponentKind,
        name: &str,
        expr: CounterExpr,
        specs: &[SeriesSpec],
    ) -> Option<f64> {
        let (windows, track) = self.track(kind, name, expr, Func::Delta, specs)?;
        windows.delta(track).map(|d| d as f64)
    }

    /// Increase over `[newest − offset − window, newest − offset]`. With `full`, `None` unless
    /// the series reaches back to the window's start.
    pub fn increase(
        &self,
        kind: ComponentKind,
        name: &str,
        expr: CounterExpr,
        window: Window,
        specs: &[SeriesSpec],
    ) -> Option<(f64, Duration)> {
        let func = Func::Increase {
            window: window.length,
            offset: window.offset,
        };
        let (windows, track) = self.track(kind, name, expr, func, specs)?;
        let end = self.since_origin(self.newest) - window.offset.as_millis() as Millis;
        let start = end - window.length.as_millis() as Millis;
        // Polls are a few milliseconds late or early: a poll that many ms inside the window
        // still starts it, or a 10 s window at 10 s polls would often span two intervals.
        let jitter = (window.length.as_millis() as Millis / 20).min(JITTER_MS);
        let (increase, span) = windows.increase(track, start, end, jitter, window.full)?;
        Some((increase as f64, Duration::from_millis(span.max(0) as u64)))
    }

    /// Change per second of a component's gauge over `window` ending at the newest data.
    pub fn slope(
        &self,
        kind: ComponentKind,
        name: &str,
        gauge: Gauge,
        window: Duration,
        specs: &Specs,
    ) -> Option<f64> {
        let series = self.component(kind, name)?;
        specs
            .gauges
            .iter()
            .filter(|s| s.kind == kind)
            .zip(&series.trends)
            .find(|(spec, _)| spec.gauge == gauge)?
            .1
            .slope(self.since_origin(self.newest), window)
    }

    /// Component restarts (StartTime changes) within `window` of the newest data.
    pub fn resets_within(&self, window: Duration) -> usize {
        let since = self.newest - window.as_millis() as Millis;
        self.resets.iter().filter(|t| **t > since).count()
    }
}

fn delta(before: &Dense, now: &Dense, expr: CounterExpr) -> Option<i64> {
    let diff = |c| Some(now.get(c)? as i64 - before.get(c)? as i64);
    let mut d = diff(expr.counter)?;
    if let Some(minus) = expr.minus {
        d -= diff(minus)?;
    }
    Some(d)
}

#[cfg(test)]
#[path = "series_tests.rs"]
mod tests;
