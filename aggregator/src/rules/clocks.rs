//! A component's counter windows: one clock (a ring of point times) per distinct window spec,
//! and per tracked expression only its increases, slot for slot with its clock's ring.
//!
//! Every track of a component with the same (retention, resolution) gets a point at every good
//! poll and merges points by the same rule, so their point times are always the same: they are
//! kept once. A track whose increases in its ring are all zero (a failure counter that never
//! moves: most of them, in a healthy fleet) keeps no column at all until one moves, and drops
//! it again once the last non-zero step has left what a window can read.
//!
//! All clocks of a component share one allocation of times, all its columns one of increases.

use std::time::Duration;

use super::series::most_points;

/// Epoch or origin-relative milliseconds, as `series` counts them.
type Millis = i64;

/// `Track::column` of a track whose increases in its ring are all zero.
const NO_COLUMN: u32 = u32::MAX;

/// Point times of one window spec: a ring over `times[base..base + cap]`.
#[derive(Debug, Clone, Copy)]
struct Clock {
    base: u32,
    cap: u32,
    /// Ring slot (from `base`) of the oldest point.
    head: u32,
    len: u32,
    /// The spec's retention and resolution in ms, saturated at `u32::MAX`. Point times stay
    /// within 2^31 ms of the origin (the series rebases it), so a saturated retention still
    /// reaches past every point and a saturated resolution still merges every point, as the
    /// exact figures would.
    retention: u32,
    resolution: u32,
    /// The newest poll added a point (rather than moving the newest one).
    fresh: bool,
    /// The newest poll let a point go: a column may have become all zero.
    popped: bool,
}

impl Clock {
    /// Ring slot (from `base`) of the `i`-th oldest point (`i < len`).
    fn slot(&self, i: u32) -> usize {
        let at = self.head + i;
        (if at >= self.cap { at - self.cap } else { at }) as usize
    }

    /// Index into `times` (or, from a column's start, into `increases`) of the `i`-th oldest.
    fn index(&self, i: u32) -> usize {
        self.base as usize + self.slot(i)
    }
}

#[derive(Debug, Clone, Copy)]
struct Track {
    /// Increase over the newest poll interval, when `has_delta`: not right after a reset or on
    /// the first poll, nor while a counter of the expression is missing.
    last_delta: i64,
    /// Where this track's increases start in `increases` (its clock's `cap` of them, slot for
    /// slot with the clock's ring), or [`NO_COLUMN`] while every one it would hold is zero.
    column: u32,
    clock: u16,
    has_delta: bool,
}

/// The counter windows of one component, tracks in the order of its kind's counter specs.
#[derive(Debug, Clone)]
pub(crate) struct Clocks {
    clocks: Box<[Clock]>,
    /// Every clock's ring, one after another.
    times: Box<[u32]>,
    tracks: Box<[Track]>,
    /// Every column, one after another.
    increases: Box<[i32]>,
}

/// `increase` as a step's, saturated: exact while one step (one resolution interval, or one
/// poll interval after a gap in polling) moves the expression by less than 2^31 events (11.9 M
/// events/s at the coarsest default resolution, 180 s). Beyond that it keeps its sign, so
/// `> 0` and `== 0` verdicts still hold.
pub(crate) fn step_increase(increase: i64) -> i32 {
    increase.clamp(i32::MIN.into(), i32::MAX.into()) as i32
}

fn saturated_ms(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

impl Clocks {
    /// Windows for tracks of these (retention, resolution) specs, each clock with room for one
    /// point per resolution step, or per poll when polls are further apart.
    pub fn new(specs: impl Iterator<Item = (Duration, Duration)> + Clone, poll: Duration) -> Self {
        let mut clocks: Vec<Clock> = Vec::new();
        let mut tracks = Vec::with_capacity(specs.clone().count());
        let mut base = 0;
        for (retention, resolution) in specs {
            let key = (saturated_ms(retention), saturated_ms(resolution));
            let clock = match clocks
                .iter()
                .position(|c| (c.retention, c.resolution) == key)
            {
                Some(clock) => clock,
                None => {
                    // Spacing never drops below the resolution or the poll interval: this is
                    // all the clock will hold, where doubling growth would leave half unused.
                    let cap = most_points(retention, resolution.max(poll)) as u32;
                    clocks.push(Clock {
                        base,
                        cap,
                        head: 0,
                        len: 0,
                        retention: key.0,
                        resolution: key.1,
                        fresh: false,
                        popped: false,
                    });
                    base += cap;
                    clocks.len() - 1
                }
            };
            tracks.push(Track {
                last_delta: 0,
                column: NO_COLUMN,
                clock: u16::try_from(clock).expect("fewer than 65 536 window specs per kind"),
                has_delta: false,
            });
        }
        Self {
            clocks: clocks.into_boxed_slice(),
            times: vec![0; base as usize].into_boxed_slice(),
            tracks: tracks.into_boxed_slice(),
            increases: Box::default(),
        }
    }

    /// Records the poll at `at` (ms since the origin) that moved track `i` by `deltas[i]`
    /// (`None`: no delta, an increase of 0), one per track in order.
    pub fn push(&mut self, at: u32, deltas: impl IntoIterator<Item = Option<i64>>) {
        for c in 0..self.clocks.len() {
            self.tick(c, at);
        }
        // Every track gets its step, a missing one as no delta: a fresh point's slot still
        // holds a step from before the ring wrapped around.
        let mut deltas = deltas.into_iter();
        for t in 0..self.tracks.len() {
            self.record(t, deltas.next().flatten());
        }
        for t in 0..self.tracks.len() {
            let track = self.tracks[t];
            if track.column != NO_COLUMN
                && self.clocks[usize::from(track.clock)].popped
                && self.all_zero(track)
            {
                self.drop_column(t);
            }
        }
    }

    /// Moves clock `c` to `at`: keeps the newest point exact, merging it into the previous one
    /// while they are closer than the resolution (so spacing never drops below it), then lets
    /// go of points before the one at or before the oldest window start (kept as its base).
    fn tick(&mut self, c: usize, at: u32) {
        let clock = self.clocks[c];
        let time = |i| Millis::from(self.times[clock.index(i)]);
        let close = clock.len >= 2
            && time(clock.len - 1) - time(clock.len - 2) < Millis::from(clock.resolution);
        if close {
            self.times[clock.index(clock.len - 1)] = at;
        } else {
            if clock.len == clock.cap {
                self.grow(c);
            }
            let clock = &mut self.clocks[c];
            clock.len += 1;
            self.times[clock.index(clock.len - 1)] = at;
        }
        let horizon = Millis::from(at) - Millis::from(clock.retention);
        let clock = &mut self.clocks[c];
        clock.fresh = !close;
        clock.popped = false;
        while clock.len > 2 && Millis::from(self.times[clock.index(1)]) <= horizon {
            clock.head = clock.slot(1) as u32;
            clock.len -= 1;
            clock.popped = true;
        }
    }

    /// Adds track `t`'s increase to its clock's newest point.
    fn record(&mut self, t: usize, delta: Option<i64>) {
        let track = &mut self.tracks[t];
        track.has_delta = delta.is_some();
        let increase = delta.unwrap_or(0);
        track.last_delta = increase;
        let clock = self.clocks[usize::from(track.clock)];
        if track.column == NO_COLUMN {
            if increase == 0 {
                return; // still all zero
            }
            self.materialise(t);
        }
        let slot = self.tracks[t].column as usize + clock.slot(clock.len - 1);
        let newest = &mut self.increases[slot];
        // A fresh point's slot still holds whatever step was there before it wrapped around.
        let before = if clock.fresh { 0 } else { i64::from(*newest) };
        *newest = step_increase(before + increase);
    }

    /// Whether every increase a window can read from this track's ring is zero: all but the
    /// oldest point's, which is only ever a window's base.
    fn all_zero(&self, track: Track) -> bool {
        let clock = self.clocks[usize::from(track.clock)];
        let column = track.column as usize;
        (1..clock.len).all(|i| self.increases[column + clock.slot(i)] == 0)
    }

    /// Gives track `t` a column of zeros. Columns come and go as rarely as a failure counter
    /// starts or stops moving, so one copy of the others is cheaper than keeping room.
    #[cold]
    fn materialise(&mut self, t: usize) {
        let cap = self.clocks[usize::from(self.tracks[t].clock)].cap as usize;
        let start = self.increases.len();
        let mut increases = Vec::with_capacity(start + cap);
        increases.extend_from_slice(&self.increases);
        increases.resize(start + cap, 0);
        self.increases = increases.into_boxed_slice();
        self.tracks[t].column = start as u32;
    }

    /// Track `t`'s ring went back to all zero: its column goes, the ones after it move down.
    #[cold]
    fn drop_column(&mut self, t: usize) {
        let cap = self.clocks[usize::from(self.tracks[t].clock)].cap;
        let start = self.tracks[t].column;
        let (end, len) = ((start + cap) as usize, self.increases.len());
        let mut increases = Vec::with_capacity(len - cap as usize);
        increases.extend_from_slice(&self.increases[..start as usize]);
        increases.extend_from_slice(&self.increases[end..]);
        self.increases = increases.into_boxed_slice();
        for track in self.tracks.iter_mut() {
            if track.column != NO_COLUMN && track.column > start {
                track.column -= cap;
            }
        }
        self.tracks[t].column = NO_COLUMN;
    }

    /// Clock `c` is full and a point is due: polls came closer than the spacing it was sized
    /// for (an agent whose poll interval shrank). Grows it by half, as rarely as that happens,
    /// laying every ring and column out anew with every point kept, oldest at slot 0.
    #[cold]
    fn grow(&mut self, c: usize) {
        let old = self.clocks.clone();
        let mut base = 0;
        for (i, clock) in self.clocks.iter_mut().enumerate() {
            if i == c {
                clock.cap += clock.cap / 2 + 1;
            }
            (clock.base, clock.head) = (base, 0);
            base += clock.cap;
        }
        let mut times = vec![0; base as usize];
        for (new, old) in self.clocks.iter().zip(&old[..]) {
            for i in 0..old.len {
                times[new.index(i)] = self.times[old.index(i)];
            }
        }
        let mut increases = Vec::new();
        for track in self.tracks.iter_mut() {
            if track.column == NO_COLUMN {
                continue;
            }
            let (old, new) = (
                old[usize::from(track.clock)],
                self.clocks[usize::from(track.clock)],
            );
            let start = increases.len();
            increases.resize(start + new.cap as usize, 0);
            for i in 0..old.len {
                increases[start + new.slot(i)] =
                    self.increases[track.column as usize + old.slot(i)];
            }
            track.column = start as u32;
        }
        self.times = times.into_boxed_slice();
        self.increases = increases.into_boxed_slice();
    }

    /// Moves the time origin `by` ms later: points before the new origin are dropped.
    pub fn rebase(&mut self, by: Millis) {
        for clock in self.clocks.iter_mut() {
            while clock.len > 0 && Millis::from(self.times[clock.index(0)]) < by {
                clock.head = clock.slot(1) as u32;
                clock.len -= 1;
            }
            // What is left is at or after `by`, so it fits in u32 and nothing goes negative.
            let by = u32::try_from(by).unwrap_or(u32::MAX);
            for i in 0..clock.len {
                self.times[clock.index(i)] -= by;
            }
        }
    }

    /// Increase of track `t` over the newest poll interval.
    pub fn delta(&self, t: usize) -> Option<i64> {
        let track = self.tracks.get(t)?;
        track.has_delta.then_some(track.last_delta)
    }

    /// Track `t`'s increase from its base point (the newest at or before `start`, within
    /// `jitter`) to its end point (the newest at or before `end`), and the time between them.
    /// With `full`, `None` unless the ring reaches back to the start.
    pub fn increase(
        &self,
        t: usize,
        start: Millis,
        end: Millis,
        jitter: Millis,
        full: bool,
    ) -> Option<(i64, Millis)> {
        let track = self.tracks.get(t)?;
        let clock = self.clocks[usize::from(track.clock)];
        let at = |i| Millis::from(self.times[clock.index(i)]);
        let step = |i| match track.column {
            NO_COLUMN => 0,
            column => i64::from(self.increases[column as usize + clock.slot(i)]),
        };
        // Newest first: the window's end point, then back to its base, adding up the steps
        // after the base (at most ~25 of them).
        let end_point = (0..clock.len).rev().find(|&i| at(i) <= end)?;
        let mut increase = 0;
        let mut point = end_point;
        let base = loop {
            if at(point) <= start + jitter {
                break point;
            }
            match point.checked_sub(1) {
                Some(older) => {
                    increase += step(point);
                    point = older;
                }
                None if full => return None,
                // A short history: the oldest point is the base.
                None => break point,
            }
        };
        Some((increase, at(end_point) - at(base)))
    }

    /// Points track `t` holds and room for them.
    #[cfg(test)]
    pub(crate) fn points(&self, t: usize) -> (usize, usize) {
        let clock = self.clocks[usize::from(self.tracks[t].clock)];
        (clock.len as usize, clock.cap as usize)
    }

    /// Whether track `t` holds a column of increases.
    #[cfg(test)]
    pub(crate) fn has_column(&self, t: usize) -> bool {
        self.tracks[t].column != NO_COLUMN
    }

    #[cfg(test)]
    pub(crate) fn clock_count(&self) -> usize {
        self.clocks.len()
    }
}
