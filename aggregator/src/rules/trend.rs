//! Gauge trends: a component's recent gauge readings kept per tracked (kind, gauge), and the
//! least-squares slope over a window of them — what "the channel will be full in N minutes"
//! is computed from.
//!
//! A restart (counter reset) clears the readings: a memory channel comes back empty, and a
//! line through the drop would say "draining" about a channel that was never drained.

use std::time::Duration;

use flumewatch_proto::model::snapshot::{ComponentKind, Gauge};

use super::condition::Func;
use super::ring::Ring;

/// Points one trend keeps per window (readings closer than window/this are merged).
const POINTS_PER_WINDOW: u32 = 30;
/// A slope needs at least this many readings: two are a difference, not a trend.
const MIN_POINTS: usize = 3;

/// One tracked gauge of one component kind.
#[derive(Debug, Clone, PartialEq)]
pub struct GaugeSpec {
    pub kind: ComponentKind,
    pub gauge: Gauge,
    /// The longest window a rule reads it over.
    pub retention: Duration,
    pub resolution: Duration,
}

impl GaugeSpec {
    pub fn new(kind: ComponentKind, gauge: Gauge) -> Self {
        Self {
            kind,
            gauge,
            retention: Duration::ZERO,
            resolution: Duration::ZERO,
        }
    }

    /// Widens this spec to serve one more leaf.
    pub fn serve(&mut self, func: Func) {
        let Some(window) = func.window() else {
            return;
        };
        self.retention = self.retention.max(window);
        let wanted = window / POINTS_PER_WINDOW;
        self.resolution = if self.resolution.is_zero() {
            wanted
        } else {
            self.resolution.min(wanted)
        };
    }
}

/// Readings of one gauge of one component, oldest first, timed in milliseconds since the
/// agent's time origin (`AgentSeries` keeps the origin and rebases it).
#[derive(Debug, Clone)]
pub struct GaugeTrack {
    readings: Readings,
}

impl Default for GaugeTrack {
    fn default() -> Self {
        Self {
            readings: Readings::Narrow(Ring::default()),
        }
    }
}

/// Values are stored as f32 while f32 holds every one of them exactly, so slopes are bit for
/// bit what f64 readings give: a channel size is a count, exact in f32 below 2^24 (16.7 M
/// events), and is the only trend the default policy keeps. The first value f32 would round
/// (a fill percentage such as 33.3…, a channel past 16.7 M events) widens the track for good:
/// rounding there moves a slow fill's slope by up to a few tenths of a percent, enough to move
/// a time-to-full across its threshold.
#[derive(Debug, Clone)]
enum Readings {
    Narrow(Ring<Narrow>),
    Wide(Ring<Wide>),
}

/// A reading in 8 bytes.
#[derive(Debug, Clone, Copy, Default)]
struct Narrow {
    at: u32,
    value: f32,
}

/// A reading in 12 bytes: packed to 4-byte alignment, as (u32, f64) would pad to 16. Fields
/// are only ever read and written by value, which packing allows without `unsafe`.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, packed(4))]
struct Wide {
    at: u32,
    value: f64,
}

/// What the track's code needs of either kind of reading.
trait Reading: Copy + Default {
    fn new(at: u32, value: f64) -> Self;
    fn at(self) -> u32;
    fn value(self) -> f64;
    fn set_at(&mut self, at: u32);
}

impl Reading for Narrow {
    fn new(at: u32, value: f64) -> Self {
        Self {
            at,
            value: value as f32,
        }
    }
    fn at(self) -> u32 {
        self.at
    }
    fn value(self) -> f64 {
        f64::from(self.value)
    }
    fn set_at(&mut self, at: u32) {
        self.at = at;
    }
}

impl Reading for Wide {
    fn new(at: u32, value: f64) -> Self {
        Self { at, value }
    }
    fn at(self) -> u32 {
        self.at
    }
    fn value(self) -> f64 {
        self.value
    }
    fn set_at(&mut self, at: u32) {
        self.at = at;
    }
}

/// Whether f32 holds `value` exactly (same bits back, sign of zero included).
fn exact_in_f32(value: f64) -> bool {
    f64::from(value as f32).to_bits() == value.to_bits()
}

impl GaugeTrack {
    /// Room for `points` readings, reserved once (the series knows the poll interval).
    pub fn reserve(&mut self, points: usize) {
        match &mut self.readings {
            Readings::Narrow(ring) if ring.capacity() == 0 => *ring = Ring::with_capacity(points),
            Readings::Wide(ring) if ring.capacity() == 0 => *ring = Ring::with_capacity(points),
            _ => {}
        }
    }

    fn clear(&mut self) {
        match &mut self.readings {
            Readings::Narrow(ring) => ring.clear(),
            Readings::Wide(ring) => ring.clear(),
        }
    }

    /// Records a reading at `now` (ms since the agent's time origin, below 2^32); `restarted`
    /// drops what came before.
    pub fn record(&mut self, now: i64, value: Option<f64>, restarted: bool, spec: &GaugeSpec) {
        if restarted {
            self.clear();
        }
        let Some(value) = value.filter(|v| usable(spec.gauge, *v)) else {
            // A missing or meaningless reading (capacity 0 prints fill as Double.MAX_VALUE)
            // breaks the line: a slope over a gap would join unrelated readings.
            self.clear();
            return;
        };
        if let Readings::Narrow(narrow) = &self.readings {
            if !exact_in_f32(value) {
                let mut wide = Ring::with_capacity(narrow.capacity());
                for reading in narrow.iter() {
                    wide.push_back(Wide::new(reading.at, reading.value()));
                }
                self.readings = Readings::Wide(wide);
            }
        }
        let at = u32::try_from(now).unwrap_or(if now < 0 { 0 } else { u32::MAX });
        match &mut self.readings {
            Readings::Narrow(ring) => record_in(ring, at, value, spec),
            Readings::Wide(ring) => record_in(ring, at, value, spec),
        }
    }

    /// Change per second over the `window` ending at `newest` (ms since the agent's time
    /// origin), by least squares over the readings in it; `None` with fewer than three readings.
    pub fn slope(&self, newest: i64, window: Duration) -> Option<f64> {
        match &self.readings {
            Readings::Narrow(ring) => slope_of(ring, newest, window),
            Readings::Wide(ring) => slope_of(ring, newest, window),
        }
    }

    /// Moves the time origin `by` ms later: readings before the new origin are dropped.
    pub(crate) fn rebase(&mut self, by: i64) {
        match &mut self.readings {
            Readings::Narrow(ring) => rebase_in(ring, by),
            Readings::Wide(ring) => rebase_in(ring, by),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        match &self.readings {
            Readings::Narrow(ring) => ring.len(),
            Readings::Wide(ring) => ring.len(),
        }
    }
}

fn record_in<R: Reading>(ring: &mut Ring<R>, at: u32, value: f64, spec: &GaugeSpec) {
    let resolution = spec.resolution.as_millis() as i64;
    if ring.capacity() == 0 {
        // As for counter tracks: spacing bounds the count, so reserve exactly that.
        *ring = Ring::with_capacity(super::series::most_points(spec.retention, spec.resolution));
    }
    let n = ring.len();
    let close = match (n.checked_sub(2).and_then(|i| ring.get(i)), ring.back()) {
        (Some(before), Some(newest)) => {
            i64::from(newest.at()) - i64::from(before.at()) < resolution
        }
        _ => false,
    };
    match ring.back_mut() {
        Some(newest) if close => *newest = R::new(at, value),
        _ => ring.push_back(R::new(at, value)),
    }
    // Keep one reading at or before the window's start.
    let horizon = i64::from(at) - spec.retention.as_millis() as i64;
    while ring.len() > 2 && ring.get(1).is_some_and(|r| i64::from(r.at()) <= horizon) {
        ring.pop_front();
    }
}

fn slope_of<R: Reading>(ring: &Ring<R>, newest: i64, window: Duration) -> Option<f64> {
    let start = newest - window.as_millis() as i64;
    let points = ring
        .iter()
        .map(|r| (i64::from(r.at()), r.value()))
        .filter(|(t, _)| *t >= start);
    let n = points.clone().count();
    if n < MIN_POINTS {
        return None;
    }
    // Seconds relative to the window's start keep the sums small and exact enough.
    let xs = points.clone().map(|(t, _)| (t - start) as f64 / 1000.0);
    let mean_x = xs.clone().sum::<f64>() / n as f64;
    let mean_y = points.clone().map(|(_, v)| v).sum::<f64>() / n as f64;
    let (mut cov, mut var) = (0.0, 0.0);
    for (x, (_, y)) in xs.zip(points) {
        cov += (x - mean_x) * (y - mean_y);
        var += (x - mean_x) * (x - mean_x);
    }
    (var > 0.0).then(|| cov / var)
}

fn rebase_in<R: Reading>(ring: &mut Ring<R>, by: i64) {
    while ring.front().is_some_and(|r| i64::from(r.at()) < by) {
        ring.pop_front();
    }
    // Every reading left is at or after `by`, so `by` fits and no offset goes below zero.
    let by = u32::try_from(by).unwrap_or(u32::MAX);
    ring.for_each_mut(|r| r.set_at(r.at() - by));
}

fn usable(gauge: Gauge, value: f64) -> bool {
    value.is_finite() && !(gauge == Gauge::ChannelFillPercentage && value > 100.0)
}

#[cfg(test)]
mod tests {
    use super::super::series::most_points;
    use super::*;

    fn spec(window_secs: u64) -> GaugeSpec {
        let mut spec = GaugeSpec::new(ComponentKind::Channel, Gauge::ChannelSize);
        spec.serve(Func::Slope {
            window: Duration::from_secs(window_secs),
        });
        spec
    }

    #[test]
    fn a_steady_climb_has_its_slope_and_flat_history_dilutes_it() {
        let spec = spec(60);
        let mut track = GaugeTrack::default();
        for t in 0..=60 {
            track.record(t * 1000, Some(90.0 * t as f64), false, &spec);
        }
        let slope = track.slope(60_000, Duration::from_secs(60)).unwrap();
        assert!((slope - 90.0).abs() < 1e-6, "{slope}");

        // At 10 s polls: five flat readings, then 900 and 2700 (growth began between polls).
        let mut track = GaugeTrack::default();
        for (i, v) in [0.0, 0.0, 0.0, 0.0, 900.0, 2700.0].iter().enumerate() {
            track.record(i as i64 * 10_000, Some(*v), false, &spec);
        }
        let slope = track.slope(50_000, Duration::from_secs(60)).unwrap();
        assert!((slope - 46.29).abs() < 0.01, "{slope}");
    }

    #[test]
    fn a_restart_or_a_meaningless_reading_starts_the_line_over() {
        let spec = spec(60);
        let mut track = GaugeTrack::default();
        for t in 0..10 {
            track.record(t * 1000, Some(100.0 * t as f64), false, &spec);
        }
        track.record(10_000, Some(0.0), true, &spec);
        track.record(12_000, Some(10.0), false, &spec);
        assert_eq!(
            track.slope(12_000, Duration::from_secs(60)),
            None,
            "2 points"
        );
        track.record(14_000, Some(20.0), false, &spec);
        assert_eq!(track.slope(14_000, Duration::from_secs(60)), Some(5.0));

        let mut fill = GaugeSpec::new(ComponentKind::Channel, Gauge::ChannelFillPercentage);
        fill.serve(Func::Slope {
            window: Duration::from_secs(60),
        });
        let mut track = GaugeTrack::default();
        track.record(0, Some(1.0), false, &fill);
        track.record(1000, Some(2.0), false, &fill);
        track.record(2000, Some(f64::MAX), false, &fill);
        assert_eq!(track.len(), 0, "capacity 0: fill unknown");
    }

    #[test]
    fn readings_stay_bounded() {
        let spec = spec(60);
        let mut track = GaugeTrack::default();
        for t in 0..3600 {
            track.record(t * 1000, Some(t as f64), false, &spec);
        }
        assert!(
            track.len() <= POINTS_PER_WINDOW as usize + 3,
            "{}",
            track.len()
        );
        let slope = track.slope(3_599_000, Duration::from_secs(60)).unwrap();
        assert!((slope - 1.0).abs() < 1e-9, "{slope}");
    }

    /// Trends as they were kept before compact readings: (epoch ms, f64) in a `VecDeque`.
    #[derive(Default)]
    struct Reference {
        points: std::collections::VecDeque<(i64, f64)>,
    }

    impl Reference {
        fn record(&mut self, now: i64, value: Option<f64>, restarted: bool, spec: &GaugeSpec) {
            if restarted {
                self.points.clear();
            }
            let Some(value) = value.filter(|v| usable(spec.gauge, *v)) else {
                self.points.clear();
                return;
            };
            let resolution = spec.resolution.as_millis() as i64;
            let n = self.points.len();
            if n >= 2 && self.points[n - 1].0 - self.points[n - 2].0 < resolution {
                self.points[n - 1] = (now, value);
            } else {
                self.points.push_back((now, value));
            }
            let horizon = now - spec.retention.as_millis() as i64;
            while self.points.len() > 2 && self.points[1].0 <= horizon {
                self.points.pop_front();
            }
        }

        fn slope(&self, newest: i64, window: Duration) -> Option<f64> {
            let start = newest - window.as_millis() as i64;
            let points = self.points.iter().filter(|(t, _)| *t >= start);
            let n = points.clone().count();
            if n < MIN_POINTS {
                return None;
            }
            let xs = points.clone().map(|(t, _)| (t - start) as f64 / 1000.0);
            let mean_x = xs.clone().sum::<f64>() / n as f64;
            let mean_y = points.clone().map(|(_, v)| v).sum::<f64>() / n as f64;
            let (mut cov, mut var) = (0.0, 0.0);
            for (x, (_, y)) in xs.zip(points) {
                cov += (x - mean_x) * (y - mean_y);
                var += (x - mean_x) * (x - mean_x);
            }
            (var > 0.0).then(|| cov / var)
        }
    }

    fn is_narrow(track: &GaugeTrack) -> bool {
        matches!(track.readings, Readings::Narrow(_))
    }

    #[test]
    fn slopes_are_bit_for_bit_those_of_f64_readings() {
        let mut rng = fastrand::Rng::with_seed(11);
        for (gauge, integral) in [
            (Gauge::ChannelSize, true),
            (Gauge::ChannelSize, false),
            (Gauge::ChannelFillPercentage, false),
        ] {
            let mut spec = GaugeSpec::new(ComponentKind::Channel, gauge);
            spec.serve(Func::TimeToFull {
                window: Duration::from_secs(60),
            });
            let mut track = GaugeTrack::default();
            track.reserve(most_points(spec.retention, spec.resolution));
            let mut reference = Reference::default();
            let (mut now, mut level) = (0i64, 0.0f64);
            for i in 0..5000 {
                now += rng.i64(900..1100);
                level = match (gauge, integral) {
                    (Gauge::ChannelSize, true) => {
                        (level + rng.f64() * 200.0 - 90.0).max(0.0).round()
                    }
                    // Past f32's exact integers (2^24) after a while: the track widens.
                    (Gauge::ChannelSize, _) => {
                        16_000_000.0 + (i as f64) * 1_000.0 + rng.u32(0..3) as f64
                    }
                    _ => (level + rng.f64() * 0.01).min(100.0),
                };
                let value = (rng.u32(0..500) != 0).then_some(level);
                let restarted = rng.u32(0..700) == 0;
                track.record(now, value, restarted, &spec);
                reference.record(now, value, restarted, &spec);
                for window in [10, 30, 60] {
                    let window = Duration::from_secs(window);
                    let (got, want) = (track.slope(now, window), reference.slope(now, window));
                    assert_eq!(
                        got.map(f64::to_bits),
                        want.map(f64::to_bits),
                        "{gauge:?} at {now}"
                    );
                }
            }
            assert_eq!(is_narrow(&track), integral, "{gauge:?}");
        }
    }

    #[test]
    fn readings_take_8_bytes_or_12_once_wide() {
        assert_eq!(std::mem::size_of::<Narrow>(), 8);
        assert_eq!(std::mem::size_of::<Wide>(), 12);
        assert!(exact_in_f32(16_777_216.0) && !exact_in_f32(16_777_217.0));
        assert!(exact_in_f32(-0.0) && !exact_in_f32(33.3));
    }

    #[test]
    fn a_rebase_shifts_readings_and_drops_those_before_the_new_origin() {
        let spec = spec(60);
        let mut track = GaugeTrack::default();
        for t in 0..=60 {
            track.record(t * 1000, Some(90.0 * t as f64), false, &spec);
        }
        let before = track.slope(60_000, Duration::from_secs(60));
        track.rebase(30_000);
        assert_eq!(track.slope(30_000, Duration::from_secs(60)), before);
        track.rebase(i64::from(u32::MAX) + 10);
        assert_eq!(track.len(), 0, "everything was older");
    }
}
