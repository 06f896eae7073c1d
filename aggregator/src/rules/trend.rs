//! Gauge trends: a component's recent gauge readings kept per tracked (kind, gauge), and the
//! least-squares slope over a window of them — what "the channel will be full in N minutes"
//! is computed from.
//!
//! A restart (counter reset) clears the readings: a memory channel comes back empty, and a
//! line through the drop would say "draining" about a channel that was never drained.

use std::collections::VecDeque;
use std::time::Duration;

use flumewatch_proto::model::snapshot::{ComponentKind, Gauge};

use super::condition::Func;

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

/// Readings of one gauge of one component: (epoch ms, value), oldest first.
#[derive(Debug, Clone, Default)]
pub struct GaugeTrack {
    points: VecDeque<(i64, f64)>,
}

impl GaugeTrack {
    /// Room for `points` readings, reserved once (the series knows the poll interval).
    pub fn reserve(&mut self, points: usize) {
        if self.points.capacity() == 0 {
            self.points.reserve_exact(points);
        }
    }

    /// Records a reading at `now` (epoch ms); `restarted` drops what came before.
    pub fn record(&mut self, now: i64, value: Option<f64>, restarted: bool, spec: &GaugeSpec) {
        if restarted {
            self.points.clear();
        }
        let Some(value) = value.filter(|v| usable(spec.gauge, *v)) else {
            // A missing or meaningless reading (capacity 0 prints fill as Double.MAX_VALUE)
            // breaks the line: a slope over a gap would join unrelated readings.
            self.points.clear();
            return;
        };
        let resolution = spec.resolution.as_millis() as i64;
        if self.points.capacity() == 0 {
            // As for counter tracks: spacing bounds the count, so reserve exactly that.
            self.points
                .reserve_exact(super::series::most_points(spec.retention, spec.resolution));
        }
        let n = self.points.len();
        if n >= 2 && self.points[n - 1].0 - self.points[n - 2].0 < resolution {
            self.points[n - 1] = (now, value);
        } else {
            self.points.push_back((now, value));
        }
        // Keep one reading at or before the window's start.
        let horizon = now - spec.retention.as_millis() as i64;
        while self.points.len() > 2 && self.points[1].0 <= horizon {
            self.points.pop_front();
        }
    }

    /// Change per second over the `window` ending at `newest` (epoch ms), by least squares over
    /// the readings in it; `None` with fewer than three readings.
    pub fn slope(&self, newest: i64, window: Duration) -> Option<f64> {
        let start = newest - window.as_millis() as i64;
        let points = self.points.iter().filter(|(t, _)| *t >= start);
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

    #[cfg(test)]
    fn len(&self) -> usize {
        self.points.len()
    }
}

fn usable(gauge: Gauge, value: f64) -> bool {
    value.is_finite() && !(gauge == Gauge::ChannelFillPercentage && value > 100.0)
}

#[cfg(test)]
mod tests {
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
}
