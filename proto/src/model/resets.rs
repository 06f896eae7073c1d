//! Counter-reset detection: the one judgement of "this component restarted" that rates and
//! rule windows share.
//!
//! A component's `start()` zeroes every counter (JVM restart and every config reload), so a
//! StartTime change or any counter going down marks the interval as a reset.

use super::snapshot::{Component, Counter};

/// The component restarted between the two snapshots.
pub fn is_reset(before: &Component, now: &Component) -> bool {
    counters_reset(before.start_time_ms, &before.counters, now)
}

/// [`is_reset`] against a kept StartTime and counter list rather than a whole component.
pub fn counters_reset(
    before_start: Option<u64>,
    before: &[(Counter, u64)],
    now: &Component,
) -> bool {
    reset_against(before_start, |counter| first(before, counter), now)
}

/// [`counters_reset`] with the earlier counters behind a lookup (a counter listed twice counts
/// as its first entry), for callers that index them rather than scan a list.
pub fn reset_against(
    before_start: Option<u64>,
    before: impl Fn(Counter) -> Option<u64>,
    now: &Component,
) -> bool {
    let restarted = matches!((before_start, now.start_time_ms), (Some(a), Some(b)) if a != b);
    restarted
        || now
            .counters
            .iter()
            .any(|&(counter, value)| before(counter).is_some_and(|old| value < old))
}

fn first(counters: &[(Counter, u64)], counter: Counter) -> Option<u64> {
    counters
        .iter()
        .find(|(c, _)| *c == counter)
        .map(|&(_, v)| v)
}
