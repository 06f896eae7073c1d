use super::super::clocks::step_increase;
use super::*;
use flumewatch_proto::model::snapshot::Component;
use flumewatch_proto::model::snapshot::Counter;

fn only(counters: SeriesSpec) -> Specs {
    Specs {
        counters: vec![counters],
        gauges: Vec::new(),
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
    let inc = |full| series.increase(ComponentKind::Sink, "k1", FAILS, window(600, full), &specs);
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
    let points = series.components[0].windows.points(0).0;
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
            let delta = series.components[0].windows.delta(i);
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
        let at =
            UNIX_EPOCH + Duration::from_millis(1_795_000_000_000 + step * 1000 + rng.u64(0..200));
        let snapshot = flumewatch_testkit::snapshot::ok(step, at, components);
        series.observe(&snapshot, &all);
    }
    let mut tracks = 0;
    for component in &series.components {
        let specs = all.counters.iter().filter(|s| s.kind == component.kind);
        for (track, spec) in specs.enumerate() {
            let room = most_points(spec.retention, spec.resolution.max(poll));
            let (len, capacity) = component.windows.points(track);
            assert_eq!(capacity, room, "{spec:?}");
            assert!(len <= room);
            tracks += 1;
        }
    }
    assert!(tracks >= 10, "{tracks} tracks");
}

const DRAINED: CounterExpr = CounterExpr {
    counter: Counter::EventDrainSuccessCount,
    minus: None,
};

/// Fails not yet drained: moves either way, and cancels to zero while both move alike.
const FAILS_LESS_DRAINED: CounterExpr = CounterExpr {
    counter: Counter::EventWriteFail,
    minus: Some(Counter::EventDrainSuccessCount),
};

fn snap_counters(ms: u64, start: u64, fails: u64, drained: u64) -> Snapshot {
    let mut snapshot = snap_ms(ms, start, fails);
    snapshot.components[0].counters[1].1 = drained;
    snapshot
}

#[test]
fn tracks_sharing_a_clock_match_the_reference_as_their_columns_come_and_go() {
    // Three expressions per window, so each clock serves three tracks: one that moves in
    // bursts with long quiet stretches between (its column comes and goes), one that moves
    // only in a few bursts, one that often cancels to zero. Deltas for the reference are
    // computed here, not read back from the series.
    let windows = [(10, 0), (60, 0), (600, 0), (3600, 600)];
    let exprs = [FAILS, DRAINED, FAILS_LESS_DRAINED];
    let mut specs = Vec::new();
    for &(window, offset) in &windows {
        for expr in exprs {
            specs.push(SeriesSpec {
                expr,
                ..spec_with_offset(window, offset)
            });
        }
    }
    let all = Specs {
        counters: specs.clone(),
        gauges: Vec::new(),
    };
    let mut series = AgentSeries::default();
    series.set_poll_interval(Duration::from_secs(1));
    let mut references: Vec<Reference> = specs.iter().map(|_| Reference::default()).collect();
    let mut rng = fastrand::Rng::with_seed(19);
    let mut ms: u64 = 1_700_000_000_000;
    let (mut fails, mut drained, mut start) = (0u64, 0u64, 1u64);
    let mut previous: Option<(u64, u64, u64)> = None;
    let (mut with_columns, mut without_columns) = (0, 0);
    for poll in 0..40_000u64 {
        ms += match rng.u32(0..200) {
            0 => rng.u64(60_000..600_000),
            1..=5 => rng.u64(1..900),
            _ => rng.u64(990..1010),
        };
        // Bursts of a few minutes in every ~2 hours; the drain counter in a few of them.
        let phase = poll % 7_200;
        if phase < 240 {
            if rng.bool() {
                fails += rng.u64(0..50);
            }
            if poll % 21_600 < 240 && rng.u32(0..3) != 0 {
                drained += if rng.bool() {
                    fails.saturating_sub(drained)
                } else {
                    1
                };
            }
        }
        if rng.u32(0..5_000) == 0 {
            start += 1;
            (fails, drained) = (0, 0);
        }
        series.observe(&snap_counters(ms, start, fails, drained), &all);
        let reset = previous.is_some_and(|(s, f, d)| s != start || fails < f || drained < d);
        let deltas = [
            fails as i64 - previous.map_or(0, |p| p.1 as i64),
            drained as i64 - previous.map_or(0, |p| p.2 as i64),
            0,
        ];
        let deltas = [deltas[0], deltas[1], deltas[0] - deltas[1]];
        for (i, (reference, spec)) in references.iter_mut().zip(&specs).enumerate() {
            let delta = (previous.is_some() && !reset).then_some(deltas[i % 3]);
            reference.push(ms as Millis, delta, spec);
            let got = series.delta(ComponentKind::Sink, "k1", spec.expr, &specs);
            assert_eq!(got, delta.map(|d| d as f64), "delta at {ms} ms, {spec:?}");
            for full in [false, true] {
                let offset = spec_offset(spec);
                let window = Window {
                    length: spec.retention - offset,
                    offset,
                    full,
                };
                // The first track of the expression whose window fits is this one: the
                // shorter windows' tracks reach back too little.
                let got = series.increase(ComponentKind::Sink, "k1", spec.expr, window, &specs);
                let want = reference.increase(series.newest, window);
                assert_eq!(got, want, "at {ms} ms, {window:?}, {spec:?}");
            }
        }
        previous = Some((start, fails, drained));
        let windows_of = &series.components[0].windows;
        assert_eq!(
            windows_of.clock_count(),
            windows.len(),
            "one clock per window"
        );
        for i in 0..specs.len() {
            if windows_of.has_column(i) {
                with_columns += 1;
            } else {
                without_columns += 1;
            }
        }
        if phase == 7_199 {
            // A quiet stretch longer than every retention: nothing moved within any ring.
            let none = (0..specs.len()).all(|i| !windows_of.has_column(i));
            assert!(none, "columns dropped after {poll} polls");
        }
    }
    assert!(with_columns > 0 && without_columns > with_columns);
}

#[test]
fn a_track_that_never_moves_keeps_no_column_and_answers_zero() {
    let specs = [spec(FAILS, 60), spec(DRAINED, 60)];
    let all = Specs {
        counters: specs.to_vec(),
        gauges: Vec::new(),
    };
    let mut series = AgentSeries::default();
    series.set_poll_interval(Duration::from_secs(10));
    for t in (0..600).step_by(10) {
        series.observe(&snap(t, 1, 0), &all);
    }
    let windows = &series.components[0].windows;
    assert!(!windows.has_column(0), "EventWriteFail never moved");
    assert!(
        windows.has_column(1),
        "EventDrainSuccessCount moves every poll"
    );
    assert_eq!(windows.clock_count(), 1);
    assert_eq!(
        series.increase(ComponentKind::Sink, "k1", FAILS, window(60, true), &specs),
        Some((0.0, Duration::from_secs(60)))
    );
    assert_eq!(
        series.increase(ComponentKind::Sink, "k1", DRAINED, window(60, true), &specs),
        Some((60.0, Duration::from_secs(60)))
    );
    assert_eq!(
        series.delta(ComponentKind::Sink, "k1", FAILS, &specs),
        Some(0.0)
    );
}
