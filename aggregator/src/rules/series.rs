//! Per-agent windows over the counters the rules use: reset-aware increases kept as a
//! downsampled running sum, so "increase over 5m" costs a lookup, not a scan of snapshots.
//!
//! Only counters some rule reads are tracked, each at the resolution and for the retention its
//! windows need: a 70-minute window at 10 s polls keeps ~60 points, not 420 snapshots.
//!
//! A point is 8 bytes: its time in milliseconds since the agent's time origin (u32) and the
//! increase since the point before it (i32), in a ring sized once per track.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flumewatch_proto::model::snapshot::{ComponentKind, Counter, Gauge, Snapshot};

use super::condition::{CounterExpr, Func};
use super::ring::Ring;
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

#[derive(Debug, Clone, Default)]
struct Track {
    /// Increase over the newest poll interval; `None` right after a reset or on the first poll.
    last_delta: Option<i64>,
    /// Oldest first, spaced by the spec's resolution (the newest always present).
    points: Ring<Step>,
}

/// One point of a counter window. An increase over a window is the sum of the steps after its
/// base point up to its end point (at most ~25 of them), where a running sum would make it
/// one subtraction but take twice the room.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Step {
    /// Milliseconds since the agent's time origin.
    at: u32,
    /// The expression's increase (over non-reset intervals) since the previous point; the
    /// oldest point's is never read. Exact while one step — one resolution interval, or one
    /// poll interval after a gap in polling — moves the expression by less than 2^31 events
    /// (11.9 M events/s at the coarsest default resolution, 180 s). Beyond that it saturates
    /// at ±(2^31 − 1), keeping its sign, so `> 0` and `== 0` verdicts still hold.
    increase: i32,
}

/// `increase` as a step's, saturated.
fn step_increase(increase: i64) -> i32 {
    increase.clamp(i32::MIN.into(), i32::MAX.into()) as i32
}

#[derive(Debug, Clone)]
struct ComponentSeries {
    kind: ComponentKind,
    name: String,
    /// The previous poll's StartTime and counters: deltas and resets are judged against them.
    previous_start: Option<u64>,
    previous_counters: Vec<(Counter, u64)>,
    last_seen: Millis,
    /// Parallel to the counter specs of this kind (`AgentSeries::observe` keeps the order).
    /// Boxed slices, allocated at their exact length: collecting a filtered iterator into a
    /// `Vec` would round a sink's 10 tracks up to room for 16.
    tracks: Box<[Track]>,
    /// Parallel to the gauge specs of this kind.
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
                    let count = specs.iter().filter(|s| s.kind == component.kind).count();
                    let tracks = vec![Track::default(); count].into_boxed_slice();
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
                        previous_counters: component.counters.clone(),
                        last_seen: now,
                        tracks,
                        trends: trends.into_boxed_slice(),
                    });
                    let series = self.components.last_mut().expect("just pushed");
                    let kind_specs = specs.iter().filter(|s| s.kind == component.kind);
                    for (track, spec) in series.tracks.iter_mut().zip(kind_specs) {
                        push_point(&mut track.points, at, 0, spec, poll);
                    }
                    continue;
                }
            };
            let series = &mut self.components[index];
            let before = Dense::of(&series.previous_counters);
            let after = Dense::of(&component.counters);
            let reset = reset_against(series.previous_start, |c| before.get(c), component);
            any_reset |= reset;
            restarted |= reset && series.previous_start != component.start_time_ms;
            let kind_specs = specs.iter().filter(|s| s.kind == component.kind);
            for (track, spec) in series.tracks.iter_mut().zip(kind_specs) {
                track.last_delta = if reset {
                    None
                } else {
                    delta(&before, &after, spec.expr)
                };
                push_point(
                    &mut track.points,
                    at,
                    track.last_delta.unwrap_or(0),
                    spec,
                    poll,
                );
            }
            let gauge_specs = all.gauges.iter().filter(|s| s.kind == component.kind);
            for (trend, spec) in series.trends.iter_mut().zip(gauge_specs) {
                trend.record(at.into(), component.gauge(spec.gauge), reset, spec);
            }
            series.previous_start = component.start_time_ms;
            series.previous_counters.clone_from(&component.counters);
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
            for track in &mut series.tracks {
                while track
                    .points
                    .front()
                    .is_some_and(|p| Millis::from(p.at) < by)
                {
                    track.points.pop_front();
                }
                // What is left is at or after `by`, so it fits in u32 and nothing goes negative.
                let by = u32::try_from(by).unwrap_or(u32::MAX);
                track.points.for_each_mut(|p| p.at -= by);
            }
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

    fn track(
        &self,
        kind: ComponentKind,
        name: &str,
        expr: CounterExpr,
        func: Func,
        specs: &[SeriesSpec],
    ) -> Option<&Track> {
        let series = self.component(kind, name)?;
        specs
            .iter()
            .filter(|s| s.kind == kind)
            .zip(&series.tracks)
            .find(|(spec, _)| spec.expr == expr && spec.fits(func))
            .map(|(_, track)| track)
    }

    /// Increase of `expr` over the newest poll interval.
    pub fn delta(
        &self,
        kind: ComponentKind,
        name: &str,
        expr: CounterExpr,
        specs: &[SeriesSpec],
    ) -> Option<f64> {
        self.track(kind, name, expr, Func::Delta, specs)?
            .last_delta
            .map(|d| d as f64)
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
        let track = self.track(kind, name, expr, func, specs)?;
        let end = self.since_origin(self.newest) - window.offset.as_millis() as Millis;
        let start = end - window.length.as_millis() as Millis;
        // Polls are a few milliseconds late or early: a poll that many ms inside the window
        // still starts it, or a 10 s window at 10 s polls would often span two intervals.
        let jitter = (window.length.as_millis() as Millis / 20).min(JITTER_MS);
        let at = |p: Step| Millis::from(p.at);
        // Newest first: the window's end point, then back to its base (the newest point at or
        // before its start), adding up the steps after the base.
        let mut points = track.points.iter().rev();
        let end_point = points.find(|p| at(*p) <= end)?;
        let mut increase: i64 = 0;
        let mut point = end_point;
        let base = loop {
            if at(point) <= start + jitter {
                break point;
            }
            match points.next() {
                Some(older) => {
                    increase += i64::from(point.increase);
                    point = older;
                }
                None if window.full => return None,
                // A short history: the oldest point is the base.
                None => break point,
            }
        };
        Some((
            increase as f64,
            Duration::from_millis((at(end_point) - at(base)).max(0) as u64),
        ))
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

/// One poll's counters of one component, indexed by counter: the tracks of a component read
/// a handful of counters each, and a lookup here is one load where the list is a scan.
struct Dense([Option<u64>; COUNTER_SLOTS]);

/// Every counter the model knows fits (the enum's values are 0..=32).
const COUNTER_SLOTS: usize = 33;

impl Dense {
    fn of(counters: &[(Counter, u64)]) -> Self {
        let mut dense = [None; COUNTER_SLOTS];
        // A counter listed twice (a hostile sender) counts as its first entry, as
        // `Component::counter` and the reset check read it.
        for &(counter, value) in counters {
            if let Some(slot @ None) = dense.get_mut(counter as usize) {
                *slot = Some(value);
            }
        }
        Self(dense)
    }

    fn get(&self, counter: Counter) -> Option<u64> {
        *self.0.get(counter as usize)?
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

/// Records the poll at `at` (ms since the origin) that moved the expression by `increase`.
fn push_point(points: &mut Ring<Step>, at: u32, increase: i64, spec: &SeriesSpec, poll: Duration) {
    let resolution = spec.resolution.as_millis() as Millis;
    if points.capacity() == 0 {
        // Spacing never drops below the resolution or the poll interval: this is all the
        // track will hold, where doubling growth would leave up to half of it unused.
        *points = Ring::with_capacity(most_points(spec.retention, spec.resolution.max(poll)));
    }
    // Keep the newest exact; merge it into the previous point while they are closer than the
    // resolution, so point spacing never drops below it.
    let close = match (
        points.len().checked_sub(2).and_then(|i| points.get(i)),
        points.back(),
    ) {
        (Some(before), Some(newest)) => {
            Millis::from(newest.at) - Millis::from(before.at) < resolution
        }
        _ => false,
    };
    match points.back_mut() {
        Some(newest) if close => {
            newest.at = at;
            newest.increase = step_increase(i64::from(newest.increase) + increase);
        }
        _ => points.push_back(Step {
            at,
            increase: step_increase(increase),
        }),
    }
    // Keep one point at or before the oldest window start as the base.
    let horizon = Millis::from(at) - spec.retention.as_millis() as Millis;
    while points.len() > 2 && points.get(1).is_some_and(|p| Millis::from(p.at) <= horizon) {
        points.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flumewatch_proto::model::snapshot::Component;

    fn only(counters: SeriesSpec) -> Specs {
        Specs {
            counters: vec![counters],
            gauges: Vec::new(),
        }
    }

    #[test]
    fn a_counter_listed_twice_reads_as_its_first_entry() {
        // As `Component::counter` and `counters_reset` read it: deltas and the reset check
        // (now through this array) mean the same counter value.
        let twice = [
            (Counter::EventDrainSuccessCount, 100),
            (Counter::EventDrainSuccessCount, 5),
        ];
        assert_eq!(
            Dense::of(&twice).get(Counter::EventDrainSuccessCount),
            Some(100)
        );
    }

    #[test]
    fn every_counter_has_a_dense_slot() {
        // Counter values are consecutive from 0 (proto3 enum); the last one names the size.
        for value in 0..100 {
            if let Ok(counter) = Counter::try_from(value) {
                assert!((counter as usize) < COUNTER_SLOTS, "{counter:?}");
            }
        }
    }

    fn spec(expr: CounterExpr, window_secs: u64) -> SeriesSpec {
        let mut spec = SeriesSpec {
            kind: ComponentKind::Sink,
            expr,
            retention: Duration::ZERO,
            resolution: Duration::ZERO,
        };
        spec.serve(Func::Increase {
            window: Duration::from_secs(window_secs),
            offset: Duration::ZERO,
        });
        spec
    }

    fn snap(t: u64, start: u64, fails: u64) -> Snapshot {
        let sink = Component {
            kind: ComponentKind::Sink,
            kind_name: "SINK".into(),
            name: "k1".into(),
            start_time_ms: Some(start),
            counters: vec![
                (Counter::EventWriteFail, fails),
                (Counter::EventDrainSuccessCount, t),
            ],
            ..Component::default()
        };
        flumewatch_testkit::snapshot::ok(t, UNIX_EPOCH + Duration::from_secs(t), vec![sink])
    }

    fn window(secs: u64, full: bool) -> Window {
        Window {
            length: Duration::from_secs(secs),
            offset: Duration::ZERO,
            full,
        }
    }

    const FAILS: CounterExpr = CounterExpr {
        counter: Counter::EventWriteFail,
        minus: None,
    };

    #[test]
    fn increase_over_a_window_skips_the_reset_interval() {
        let specs = [spec(FAILS, 60)];
        let all = only(specs[0].clone());
        let mut series = AgentSeries::default();
        // 1 failure every 10 s for 100 s, then a restart (counter back to 0), then 2 more.
        for t in (0..=100).step_by(10) {
            series.observe(&snap(1000 + t, 1, t / 10), &all);
        }
        let inc = |s: &AgentSeries, full| {
            s.increase(ComponentKind::Sink, "k1", FAILS, window(60, full), &specs)
        };
        assert_eq!(inc(&series, true).map(|(v, _)| v), Some(6.0));
        series.observe(&snap(1110, 2, 0), &all);
        assert_eq!(
            series.delta(ComponentKind::Sink, "k1", FAILS, &specs),
            None,
            "no delta right after a reset"
        );
        series.observe(&snap(1120, 2, 2), &all);
        assert_eq!(
            series.delta(ComponentKind::Sink, "k1", FAILS, &specs),
            Some(2.0)
        );
        // Window 1060..1120: +1 (1070), +1, +1, +1 (1100), reset (0), +2 → 6.
        assert_eq!(inc(&series, true).map(|(v, _)| v), Some(6.0));
        assert_eq!(series.resets_within(Duration::from_secs(60)), 1);
    }

    #[test]
    fn a_short_history_is_not_a_full_window() {
        let specs = [spec(FAILS, 600)];
        let all = only(specs[0].clone());
        let mut series = AgentSeries::default();
        series.observe(&snap(0, 1, 0), &all);
        series.observe(&snap(10, 1, 0), &all);
        let inc =
            |full| series.increase(ComponentKind::Sink, "k1", FAILS, window(600, full), &specs);
        assert_eq!(inc(true), None);
        assert_eq!(inc(false).map(|(v, d)| (v, d.as_secs())), Some((0.0, 10)));
    }

    #[test]
    fn points_stay_bounded_by_retention_and_resolution() {
        let specs = [spec(FAILS, 60)];
        let all = only(specs[0].clone());
        let mut series = AgentSeries::default();
        for t in 0..3600 {
            series.observe(&snap(t, 1, t), &all);
        }
        let points = series.components[0].tracks[0].points.len();
        assert!(points <= POINTS_PER_WINDOW as usize + 3, "{points} points");
        let (v, span) = series
            .increase(ComponentKind::Sink, "k1", FAILS, window(60, true), &specs)
            .expect("covered");
        assert!(
            (60.0..=63.0).contains(&v) && span.as_secs() >= 60,
            "{v} over {span:?}"
        );
    }

    /// The windows as they were kept before 8-byte points: (epoch ms, running sum) in a
    /// `VecDeque`, read by subtracting sums. The compact track must answer exactly as this.
    #[derive(Default)]
    struct Reference {
        sum: i64,
        points: VecDeque<(Millis, i64)>,
    }

    impl Reference {
        fn push(&mut self, now: Millis, delta: Option<i64>, spec: &SeriesSpec) {
            self.sum += delta.unwrap_or(0);
            let resolution = spec.resolution.as_millis() as Millis;
            let points = &mut self.points;
            match points.len() {
                n if n >= 2 && points[n - 1].0 - points[n - 2].0 < resolution => {
                    points[n - 1] = (now, self.sum)
                }
                _ => points.push_back((now, self.sum)),
            }
            let horizon = now - spec.retention.as_millis() as Millis;
            while points.len() > 2 && points[1].0 <= horizon {
                points.pop_front();
            }
        }

        fn increase(&self, newest: Millis, window: Window) -> Option<(f64, Duration)> {
            let end = newest - window.offset.as_millis() as Millis;
            let start = end - window.length.as_millis() as Millis;
            let jitter = (window.length.as_millis() as Millis / 20).min(JITTER_MS);
            let &(end_t, end_sum) = self.points.iter().rev().find(|(t, _)| *t <= end)?;
            let base = self.points.iter().rev().find(|(t, _)| *t <= start + jitter);
            let (start_t, start_sum) = match base {
                Some(&point) => point,
                None if window.full => return None,
                None => *self.points.front()?,
            };
            Some((
                (end_sum - start_sum) as f64,
                Duration::from_millis((end_t - start_t).max(0) as u64),
            ))
        }
    }

    fn snap_ms(ms: u64, start: u64, fails: u64) -> Snapshot {
        let mut snapshot = snap(0, start, fails);
        snapshot.scraped_at = UNIX_EPOCH + Duration::from_millis(ms);
        snapshot
    }

    fn spec_with_offset(window_secs: u64, offset_secs: u64) -> SeriesSpec {
        let mut spec = spec(FAILS, 1);
        spec.retention = Duration::ZERO;
        spec.resolution = Duration::ZERO;
        spec.serve(Func::Increase {
            window: Duration::from_secs(window_secs),
            offset: Duration::from_secs(offset_secs),
        });
        spec
    }

    /// Feeds `polls` (epoch ms, counter value, start time) to a series and to the reference,
    /// comparing every window after every poll.
    fn same_as_reference(polls: impl IntoIterator<Item = (u64, u64, u64)>, poll: Duration) {
        let specs = [
            spec_with_offset(10, 0),
            spec_with_offset(60, 0),
            spec_with_offset(600, 0),
            spec_with_offset(3600, 600),
        ];
        let all = Specs {
            counters: specs.to_vec(),
            gauges: Vec::new(),
        };
        let mut series = AgentSeries::default();
        series.set_poll_interval(poll);
        let mut references: Vec<Reference> = specs.iter().map(|_| Reference::default()).collect();
        let mut compared = 0;
        for (ms, fails, start) in polls {
            let first = series.components.is_empty();
            series.observe(&snap_ms(ms, start, fails), &all);
            for (i, (reference, spec)) in references.iter_mut().zip(&specs).enumerate() {
                // The first poll of a component is a point with no increase.
                let delta = series.components[0].tracks[i].last_delta;
                reference.push(ms as Millis, if first { None } else { delta }, spec);
                for full in [false, true] {
                    let window = Window {
                        length: spec.retention - spec_offset(spec),
                        offset: spec_offset(spec),
                        full,
                    };
                    let got = series.increase(ComponentKind::Sink, "k1", FAILS, window, &specs);
                    let want = reference.increase(series.newest, window);
                    assert_eq!(got, want, "at {ms} ms, {window:?}");
                    compared += 1;
                }
            }
        }
        assert!(compared > 0);
    }

    /// The offset `spec_with_offset` was given (only the hour window has one).
    fn spec_offset(spec: &SeriesSpec) -> Duration {
        if spec.retention == Duration::from_secs(4200) {
            Duration::from_secs(600)
        } else {
            Duration::ZERO
        }
    }

    #[test]
    fn increases_match_the_running_sum_windows_on_a_long_random_series() {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut ms = 1_700_000_000_000;
        let (mut fails, mut start) = (0, 1);
        let polls = (0..6000).map(move |_| {
            // Mostly 1 s polls a few ms off, sometimes bunched or late, now and then a gap.
            ms += match rng.u32(0..100) {
                0 => rng.u64(60_000..2_000_000),
                1..=5 => rng.u64(1..900),
                _ => rng.u64(990..1010),
            };
            match rng.u32(0..200) {
                0 => {
                    start += 1; // a restart: the counter starts over
                    fails = rng.u64(0..3);
                }
                1..=100 => fails += rng.u64(0..1000),
                _ => {}
            }
            (ms, fails, start)
        });
        same_as_reference(polls, Duration::from_secs(1));
    }

    #[test]
    fn the_time_origin_moves_up_without_changing_an_answer() {
        // Polls every 5 minutes for 60 days: the origin is rebased twice (at 24.8 days, then
        // 12.4 days later) and the hour window is compared all along.
        let day = 86_400_000;
        let polls = (0..60 * 288u64).map(|i| (1_700_000_000_000 + i * 300_000, i * 3, 1));
        same_as_reference(polls, Duration::from_secs(300));

        let specs = [spec_with_offset(3600, 600)];
        let all = only(specs[0].clone());
        let mut series = AgentSeries::default();
        let first = 1_700_000_000_000;
        for i in 0..60 * 288u64 {
            series.observe(&snap_ms(first + i * 300_000, 1, i), &all);
        }
        let origin = series.origin.expect("set") as u64;
        assert!(origin > first + 30 * day, "rebased: origin {origin}");
        let newest = series.newest as u64;
        assert!(newest - origin <= (1 << 31), "offsets stay in range");

        // Silent for 100 days (past the whole u32 range): every old point goes, nothing
        // underflows, and the series goes on from the new poll.
        let back = newest + 100 * day;
        series.observe(&snap_ms(back, 1, 60 * 288 + 10), &all);
        series.observe(&snap_ms(back + 300_000, 1, 60 * 288 + 14), &all);
        let window = Window {
            length: Duration::from_secs(3600),
            offset: Duration::ZERO,
            full: false,
        };
        assert_eq!(
            series.increase(ComponentKind::Sink, "k1", FAILS, window, &specs),
            Some((4.0, Duration::from_secs(300)))
        );
        assert_eq!(series.origin, Some(back as Millis - REBASE_KEEPS));
    }

    #[test]
    fn a_step_past_the_i32_range_saturates_keeping_its_sign() {
        let specs = [spec(FAILS, 60)];
        let all = only(specs[0].clone());
        let mut series = AgentSeries::default();
        let huge = 3_000_000_000; // more than 2^31 events in one poll
        for (t, fails) in [(0, 0), (10, huge), (20, huge + 5)] {
            series.observe(&snap(t, 1, fails), &all);
        }
        assert_eq!(
            series.delta(ComponentKind::Sink, "k1", FAILS, &specs),
            Some(5.0),
            "the newest poll's delta is exact"
        );
        let (increase, _) = series
            .increase(ComponentKind::Sink, "k1", FAILS, window(60, false), &specs)
            .expect("tracked");
        assert_eq!(increase, f64::from(i32::MAX) + 5.0);
        assert_eq!(step_increase(-3_000_000_000), i32::MIN);
        assert_eq!(step_increase(-5), -5);
    }

    #[test]
    fn default_windows_never_outgrow_the_room_reserved_for_them() {
        use flumewatch_sidecar::flume::parse_metrics;
        let template =
            parse_metrics(&flumewatch_testkit::sample("multi-component-agent.json")).unwrap();
        let all = super::super::RuleSet::defaults().specs;
        let poll = Duration::from_secs(1);
        let mut series = AgentSeries::default();
        series.set_poll_interval(poll);
        let mut rng = fastrand::Rng::with_seed(3);
        // Two hours of 1 s polls up to 100 ms off their schedule.
        for step in 0..7200u64 {
            let mut components = template.clone();
            for c in &mut components {
                for (_, v) in &mut c.counters {
                    *v += step * rng.u64(0..20);
                }
            }
            let at = UNIX_EPOCH
                + Duration::from_millis(1_795_000_000_000 + step * 1000 + rng.u64(0..200));
            let snapshot = flumewatch_testkit::snapshot::ok(step, at, components);
            series.observe(&snapshot, &all);
        }
        let mut tracks = 0;
        for component in &series.components {
            let specs = all.counters.iter().filter(|s| s.kind == component.kind);
            for (track, spec) in component.tracks.iter().zip(specs) {
                let room = most_points(spec.retention, spec.resolution.max(poll));
                assert_eq!(track.points.capacity(), room, "{spec:?}");
                assert!(track.points.len() <= room);
                tracks += 1;
            }
        }
        assert!(tracks >= 10, "{tracks} tracks");
    }
}
