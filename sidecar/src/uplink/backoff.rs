//! Capped, jittered exponential backoff for reconnecting to the aggregator.
//!
//! Jitter spreads a fleet of sidecars that lost the aggregator at the same moment, so its
//! restart is not met by a thundering herd.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    /// Failures since the last successful connection.
    attempt: u32,
}

impl Backoff {
    /// `min` must be positive and not above `max` (checked by the config).
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            attempt: 0,
        }
    }

    /// The next delay: `min · 2^attempt` capped at `max`, then a uniform pick in its upper half.
    /// `unit` is a random number in [0, 1).
    pub fn next_delay(&mut self, unit: f64) -> Duration {
        let factor = 2u32.saturating_pow(self.attempt.min(31));
        let base = self.min.saturating_mul(factor).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        base.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0))
    }

    /// A connection succeeded: the next failure starts from `min` again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_with_jitter_in_the_upper_half() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(backoff.next_delay(1.0), Duration::from_millis(100));
        assert_eq!(backoff.next_delay(0.0), Duration::from_millis(100));
        assert_eq!(backoff.next_delay(1.0), Duration::from_millis(400));
        assert_eq!(backoff.next_delay(1.0), Duration::from_millis(800));
        for _ in 0..100 {
            let d = backoff.next_delay(fastrand::f64());
            assert!(
                d >= Duration::from_millis(500) && d <= Duration::from_secs(1),
                "{d:?}"
            );
        }
        backoff.reset();
        assert_eq!(backoff.next_delay(1.0), Duration::from_millis(100));
    }
}
