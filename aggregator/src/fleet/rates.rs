//! Per-component counter rates between two successful snapshots, with Flume's resets handled.
//!
//! A component's `start()` zeroes every counter (JVM restart and every config reload), so a
//! StartTime change or any counter going down marks the interval as a reset: no rate is given
//! for it rather than a negative or wrapped one, the way Prometheus' `rate()` treats resets.

use std::time::Duration;

use flumewatch_proto::model::resets::is_reset;
use flumewatch_proto::model::{Component, ComponentKind, Counter, Snapshot};

#[derive(Debug, Clone, PartialEq)]
pub struct ComponentRates {
    pub kind: ComponentKind,
    pub name: String,
    /// The component restarted within the interval; `rates` is empty then.
    pub reset: bool,
    pub interval: Duration,
    pub rates: Vec<CounterRate>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CounterRate {
    pub counter: Counter,
    pub increase: u64,
    pub per_second: f64,
}

impl ComponentRates {
    pub fn rate(&self, counter: Counter) -> Option<f64> {
        self.rates
            .iter()
            .find(|r| r.counter == counter)
            .map(|r| r.per_second)
    }
}

/// Rates from `prev` to `cur`, both successful snapshots of one agent, `cur` the later.
/// Components new in `cur` get no entry (nothing to compare with).
pub fn compute(prev: &Snapshot, cur: &Snapshot) -> Vec<ComponentRates> {
    let Ok(interval) = cur.scraped_at.duration_since(prev.scraped_at) else {
        return Vec::new();
    };
    if interval.is_zero() {
        return Vec::new();
    }
    cur.components
        .iter()
        .filter_map(|now| {
            let before = prev.component(now.kind, &now.name)?;
            Some(component_rates(before, now, interval))
        })
        .collect()
}

fn component_rates(before: &Component, now: &Component, interval: Duration) -> ComponentRates {
    let mut result = ComponentRates {
        kind: now.kind,
        name: now.name.clone(),
        reset: is_reset(before, now),
        interval,
        rates: Vec::new(),
    };
    if result.reset {
        return result;
    }
    let seconds = interval.as_secs_f64();
    for &(counter, value) in &now.counters {
        if let Some(old) = before.counter(counter) {
            let increase = value - old; // no underflow: is_reset() saw no counter go down
            result.rates.push(CounterRate {
                counter,
                increase,
                per_second: increase as f64 / seconds,
            });
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::UNIX_EPOCH;

    use flumewatch_sidecar::flume::parse_metrics;

    use super::*;

    fn snapshot(at_ms: u64, body: &[u8]) -> Snapshot {
        flumewatch_testkit::snapshot::ok(
            1,
            UNIX_EPOCH + Duration::from_millis(at_ms),
            parse_metrics(body).expect("parses"),
        )
    }

    fn shared(path: &str) -> PathBuf {
        flumewatch_testkit::fixture("flume").join(path)
    }

    #[test]
    fn filling_channel_rates_between_two_samples() {
        let t12 = snapshot(
            12_000,
            &std::fs::read(shared("samples/slow-sink-filling-t12s.json")).unwrap(),
        );
        let t22 = snapshot(
            22_000,
            &std::fs::read(shared("samples/slow-sink-filling-t22s.json")).unwrap(),
        );
        let rates = compute(&t12, &t22);
        let slow = rates.iter().find(|r| r.name == "slowmem").expect("slowmem");
        assert!(!slow.reset);
        assert_eq!(slow.interval, Duration::from_secs(10));
        // EventPutSuccessCount 720 → 1320 in 10 s.
        assert_eq!(slow.rate(Counter::EventPutSuccessCount), Some(60.0));
        let blocked = rates
            .iter()
            .find(|r| r.name == "blockedmem")
            .expect("blockedmem");
        assert_eq!(blocked.rate(Counter::EventPutSuccessCount), Some(0.0));
        assert_eq!(blocked.rate(Counter::EventPutAttemptCount), Some(40.0));
    }

    #[test]
    fn restart_is_a_reset_not_a_negative_rate() {
        let before = snapshot(
            0,
            &std::fs::read(shared("samples/multi-component-agent.json")).unwrap(),
        );
        let after = snapshot(
            60_000,
            &std::fs::read(shared("samples/after-restart-immediately.json")).unwrap(),
        );
        let rates = compute(&before, &after);
        assert!(!rates.is_empty());
        for r in &rates {
            assert!(r.reset, "{} should be a reset", r.name);
            assert!(r.rates.is_empty());
        }
    }

    #[test]
    fn counter_going_down_without_start_time_change_is_a_reset() {
        let a = br#"{"CHANNEL.c":{"StartTime":"1","StopTime":"0","EventPutSuccessCount":"100"}}"#;
        let b = br#"{"CHANNEL.c":{"StartTime":"1","StopTime":"0","EventPutSuccessCount":"5"}}"#;
        let rates = compute(&snapshot(0, a), &snapshot(1000, b));
        assert!(rates[0].reset);
    }

    /// Replays the real restart trace: every interval's rate is finite, non-negative and
    /// plausible (≤ 1000 events/s at 100 events/s load), and the restart at t=72 is a reset.
    #[test]
    fn restart_trace_never_gives_negative_or_huge_rates() {
        let text =
            std::fs::read_to_string(shared("traces/agent-restart-under-load.jsonl")).unwrap();
        let mut prev_ok: Option<Snapshot> = None;
        let mut resets_at = Vec::new();
        let mut intervals = 0;
        for line in text.lines() {
            let sample: serde_json::Value = serde_json::from_str(line).unwrap();
            let t_ms = (sample["t"].as_f64().unwrap() * 1000.0) as u64;
            let Some(body) = sample["body"].as_str() else {
                continue;
            };
            let cur = snapshot(t_ms, body.as_bytes());
            if let Some(prev) = &prev_ok {
                for r in compute(prev, &cur) {
                    intervals += 1;
                    if r.reset {
                        resets_at.push(t_ms / 1000);
                    }
                    for rate in &r.rates {
                        assert!(rate.per_second.is_finite() && rate.per_second >= 0.0);
                        assert!(rate.per_second <= 1000.0, "t={t_ms} {rate:?}");
                    }
                }
            }
            prev_ok = Some(cur);
        }
        assert!(intervals > 400);
        resets_at.dedup();
        assert_eq!(resets_at, [72], "one restart, detected at t=72");
    }
}
