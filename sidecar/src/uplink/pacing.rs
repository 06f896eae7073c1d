//! When a stream sends: a round's snapshots together, and the sidecar's stats with them.
//!
//! The pollers of one round finish within a few milliseconds of each other. Sent as each one
//! finished, every snapshot cost its own HTTP/2 write, its own ack and a wake-up for each, and
//! the stats had a timer of their own: one more wake-up every interval. Held for a moment, a
//! round leaves in one write, is acknowledged once and carries the stats. Pure: it takes `now`.

use std::time::Duration;

use tokio::time::Instant;

/// How long the first snapshot of a round waits for the rest.
pub(super) const LINGER: Duration = Duration::from_millis(5);

#[derive(Debug)]
pub(super) struct Pacing {
    /// The poll interval: a round comes once per interval.
    every: Duration,
    /// A round is being held back until then.
    holding_until: Option<Instant>,
    stats_sent_at: Instant,
}

impl Pacing {
    /// A stream that has just sent its stats (it opens with them).
    pub(super) fn new(every: Duration, now: Instant) -> Self {
        Self {
            every,
            holding_until: None,
            stats_sent_at: now,
        }
    }

    /// A snapshot was queued while nothing was waiting: hold it for the rest of its round. A
    /// backlog (a replay after a reconnect) is never held: it is already a batch. Returns when
    /// the hold ends.
    pub(super) fn round_started(&mut self, now: Instant) -> Instant {
        let until = now + LINGER;
        self.holding_until = Some(until);
        until
    }

    /// Until when snapshots are held back, if they are.
    pub(super) fn holding_until(&self) -> Option<Instant> {
        self.holding_until
    }

    /// The round's hold is over; true if the stats are due to go with it (half an interval
    /// after the last, so that rounds a little early still take them every interval).
    pub(super) fn release(&mut self, now: Instant) -> bool {
        self.holding_until = None;
        now >= self.stats_sent_at + self.every / 2
    }

    pub(super) fn stats_sent(&mut self, now: Instant) {
        self.stats_sent_at = now;
    }

    /// When the stats go on their own: no round has taken them for two intervals (a sidecar
    /// whose agents are all gone still reports).
    pub(super) fn stats_alone_at(&self) -> Instant {
        self.stats_sent_at + 2 * self.every
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVERY: Duration = Duration::from_secs(10);

    #[test]
    fn a_round_is_held_from_its_first_snapshot_for_the_linger() {
        let opened = Instant::now();
        let mut pacing = Pacing::new(EVERY, opened);
        assert_eq!(pacing.holding_until(), None, "nothing held before a round");
        let first = opened + EVERY;
        assert_eq!(pacing.round_started(first), first + LINGER);
        assert_eq!(pacing.holding_until(), Some(first + LINGER));
        assert!(
            pacing.release(first + LINGER),
            "the stats go with the round"
        );
        assert_eq!(pacing.holding_until(), None);
    }

    #[test]
    fn stats_ride_with_one_round_per_interval() {
        let mut now = Instant::now();
        let mut pacing = Pacing::new(EVERY, now);
        let mut with_stats = Vec::new();
        // Rounds a little early and a little late, then two in quick succession.
        let gaps = [
            EVERY - Duration::from_millis(300),
            EVERY + Duration::from_secs(1),
            EVERY,
            Duration::from_secs(1),
        ];
        for gap in gaps {
            now += gap;
            pacing.round_started(now);
            now += LINGER;
            let due = pacing.release(now);
            if due {
                pacing.stats_sent(now);
            }
            with_stats.push(due);
        }
        assert_eq!(with_stats, [true, true, true, false]);
    }

    #[test]
    fn without_rounds_the_stats_go_alone_after_two_intervals() {
        let opened = Instant::now();
        let mut pacing = Pacing::new(EVERY, opened);
        assert_eq!(pacing.stats_alone_at(), opened + 2 * EVERY);
        pacing.stats_sent(opened + 2 * EVERY);
        assert_eq!(pacing.stats_alone_at(), opened + 4 * EVERY);
    }
}
