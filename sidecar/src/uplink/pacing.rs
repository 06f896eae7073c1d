//! When a stream sends: a round's snapshots together, and the sidecar's stats with them.
//!
//! The pollers of one round finish within a few milliseconds of each other. Sent as each one
//! finished, every snapshot cost its own HTTP/2 write, its own ack and a wake-up for each, and
//! the stats had a timer of their own: one more wake-up every interval. Held until the round is
//! whole, or for a moment at most, a round leaves in one write, is acknowledged once and
//! carries the stats. A whole round (one agent's, or every agent answering in the same turn)
//! leaves at once: holding it would only cost a timer's wake-up. Pure: it takes `now`.

use std::time::Duration;

use tokio::time::Instant;

/// How long the first snapshot of a round waits for the rest at most.
pub(super) const LINGER: Duration = Duration::from_millis(5);

#[derive(Debug)]
pub(super) struct Pacing {
    /// The poll interval: a round comes once per interval.
    every: Duration,
    /// A round is being held back until then.
    holding_until: Option<Instant>,
    stats_sent_at: Instant,
}

/// What to do about the snapshots waiting to be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Queued {
    /// Nothing waits (those pushed were sent already).
    Nothing,
    /// Hold them, for the rest of the round, until then.
    HoldUntil(Instant),
    /// Send them now; with the stats if they are due.
    SendNow { with_stats: bool },
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

    /// Snapshots were queued: `waiting` are unsent, of a round of one per agent polled.
    /// A backlog (a replay after a reconnect) is never held: it is sent as it is, already a
    /// batch, without passing here.
    pub(super) fn queued(&mut self, waiting: u64, agents: usize, now: Instant) -> Queued {
        if waiting == 0 {
            return Queued::Nothing;
        }
        if waiting >= agents.max(1) as u64 {
            return Queued::SendNow {
                with_stats: self.release(now),
            };
        }
        let until = *self.holding_until.get_or_insert(now + LINGER);
        Queued::HoldUntil(until)
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
    fn a_round_is_held_from_its_first_snapshot_until_it_is_whole_or_the_linger_ends() {
        let opened = Instant::now();
        let mut pacing = Pacing::new(EVERY, opened);
        assert_eq!(pacing.holding_until(), None, "nothing held before a round");
        let first = opened + EVERY;
        let until = first + LINGER;
        assert_eq!(pacing.queued(1, 10, first), Queued::HoldUntil(until));
        let later = first + Duration::from_millis(2);
        assert_eq!(
            pacing.queued(4, 10, later),
            Queued::HoldUntil(until),
            "the hold runs from the round's first snapshot"
        );
        assert_eq!(pacing.holding_until(), Some(until));
        assert_eq!(
            pacing.queued(10, 10, later),
            Queued::SendNow { with_stats: true },
            "a whole round goes at once, with the stats"
        );
        assert_eq!(pacing.holding_until(), None);
        pacing.stats_sent(later);
        // The next round stops short of whole: it goes when the linger ends, with the stats.
        let next = first + EVERY;
        assert_eq!(pacing.queued(9, 10, next), Queued::HoldUntil(next + LINGER));
        assert!(pacing.release(next + LINGER));
        assert_eq!(pacing.holding_until(), None);
    }

    #[test]
    fn one_agent_is_never_held_and_nothing_waiting_is_nothing() {
        let opened = Instant::now();
        let mut pacing = Pacing::new(EVERY, opened);
        assert_eq!(pacing.queued(0, 1, opened + EVERY), Queued::Nothing);
        assert_eq!(
            pacing.queued(1, 1, opened + EVERY),
            Queued::SendNow { with_stats: true }
        );
        assert_eq!(pacing.holding_until(), None);
        // No agent polled yet (discovery finds them later): a snapshot is not held either.
        assert!(matches!(
            pacing.queued(1, 0, opened + EVERY),
            Queued::SendNow { .. }
        ));
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
            assert_eq!(pacing.queued(1, 2, now), Queued::HoldUntil(now + LINGER));
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
