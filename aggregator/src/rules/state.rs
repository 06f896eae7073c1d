//! The per-(rule, target) lifecycle: inactive → pending → firing → resolved, as Prometheus'
//! alerting rules do it, plus a hold-down counted in polls. Pure: time comes in as `now`.

use std::time::Duration;

use tokio::time::Instant;

/// A rule's hold-downs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Hold {
    /// The condition must hold this long before the alert fires.
    pub for_: Duration,
    /// …and on at least this many consecutive polls (1 = the current one).
    pub for_polls: u32,
    /// A firing alert stays firing this long after the condition stops holding.
    pub keep_firing_for: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Inactive,
    Pending { since: Instant },
    Firing { since: Instant, fired_at: Instant },
    Resolved { at: Instant },
}

/// What one step changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Unchanged,
    Pending,
    Fired,
    /// A pending alert's condition stopped holding before it fired.
    Cleared,
    Resolved,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tracker {
    pub phase: Phase,
    /// Consecutive polls on which the condition held.
    true_polls: u32,
    /// Last time the condition held (for keep_firing_for).
    last_true: Option<Instant>,
}

impl Default for Tracker {
    fn default() -> Self {
        Self {
            phase: Phase::Inactive,
            true_polls: 0,
            last_true: None,
        }
    }
}

impl Tracker {
    /// One evaluation. `on_poll` is true when a new snapshot triggered it (it counts toward
    /// `for_polls`), false on a periodic tick (only time moves).
    pub fn step(&mut self, active: bool, on_poll: bool, now: Instant, hold: &Hold) -> Transition {
        if active {
            self.last_true = Some(now);
            if on_poll {
                self.true_polls = self.true_polls.saturating_add(1);
            }
        } else if on_poll {
            self.true_polls = 0;
        }
        match (self.phase, active) {
            (Phase::Inactive | Phase::Resolved { .. }, true) => {
                self.phase = Phase::Pending { since: now };
                match self.try_fire(now, now, hold) {
                    Transition::Fired => Transition::Fired,
                    _ => Transition::Pending,
                }
            }
            (Phase::Pending { since }, true) => self.try_fire(since, now, hold),
            (Phase::Pending { .. }, false) => {
                self.phase = Phase::Inactive;
                Transition::Cleared
            }
            (Phase::Firing { .. }, true) => Transition::Unchanged,
            (Phase::Firing { .. }, false) => {
                let held = self
                    .last_true
                    .is_some_and(|t| now.saturating_duration_since(t) < hold.keep_firing_for);
                if held {
                    Transition::Unchanged
                } else {
                    self.phase = Phase::Resolved { at: now };
                    Transition::Resolved
                }
            }
            (Phase::Inactive | Phase::Resolved { .. }, false) => Transition::Unchanged,
        }
    }

    fn try_fire(&mut self, since: Instant, now: Instant, hold: &Hold) -> Transition {
        let long_enough = now.saturating_duration_since(since) >= hold.for_;
        // for_polls = 1 asks nothing beyond "true now", so tick-judged rules (silence,
        // clusters) can fire without polls.
        let enough_polls = hold.for_polls <= 1 || self.true_polls >= hold.for_polls;
        if long_enough && enough_polls {
            self.phase = Phase::Firing {
                since,
                fired_at: now,
            };
            Transition::Fired
        } else {
            Transition::Unchanged
        }
    }

    /// A tracker that was firing before the aggregator restarted and still holds: it fires on,
    /// without serving its `for` again.
    pub fn restored_firing(now: Instant) -> Self {
        Self {
            phase: Phase::Firing {
                since: now,
                fired_at: now,
            },
            true_polls: 1,
            last_true: Some(now),
        }
    }

    /// Pending or firing.
    pub fn is_active(&self) -> bool {
        matches!(self.phase, Phase::Pending { .. } | Phase::Firing { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn hold(for_secs: u64, polls: u32, keep_secs: u64) -> Hold {
        Hold {
            for_: S * for_secs as u32,
            for_polls: polls,
            keep_firing_for: S * keep_secs as u32,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn pending_then_firing_after_for_then_resolved() {
        let h = hold(30, 1, 0);
        let mut t = Tracker::default();
        assert_eq!(t.step(true, true, Instant::now(), &h), Transition::Pending);
        tokio::time::advance(S * 20).await;
        assert_eq!(
            t.step(true, true, Instant::now(), &h),
            Transition::Unchanged
        );
        tokio::time::advance(S * 10).await;
        assert_eq!(
            t.step(true, false, Instant::now(), &h),
            Transition::Fired,
            "a tick can fire it"
        );
        assert_eq!(
            t.step(true, true, Instant::now(), &h),
            Transition::Unchanged
        );
        assert_eq!(
            t.step(false, true, Instant::now(), &h),
            Transition::Resolved
        );
        assert!(matches!(t.phase, Phase::Resolved { .. }));
    }

    #[tokio::test(start_paused = true)]
    async fn immediate_rules_fire_on_the_first_poll() {
        let mut t = Tracker::default();
        assert_eq!(
            t.step(true, true, Instant::now(), &Hold::default()),
            Transition::Fired
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_blip_clears_pending() {
        let h = hold(60, 1, 0);
        let mut t = Tracker::default();
        t.step(true, true, Instant::now(), &h);
        tokio::time::advance(S * 59).await;
        assert_eq!(t.step(false, true, Instant::now(), &h), Transition::Cleared);
        tokio::time::advance(S * 2).await;
        assert_eq!(
            t.step(true, true, Instant::now(), &h),
            Transition::Pending,
            "starts over"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn consecutive_polls_are_required_and_ticks_do_not_count() {
        let h = hold(0, 2, 0);
        let mut t = Tracker::default();
        assert_eq!(t.step(true, true, Instant::now(), &h), Transition::Pending);
        assert_eq!(
            t.step(true, false, Instant::now(), &h),
            Transition::Unchanged
        );
        assert_eq!(t.step(true, true, Instant::now(), &h), Transition::Fired);
        let mut u = Tracker::default();
        u.step(true, true, Instant::now(), &h);
        assert_eq!(u.step(false, true, Instant::now(), &h), Transition::Cleared);
        assert_eq!(
            u.step(true, true, Instant::now(), &h),
            Transition::Pending,
            "not consecutive"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn keep_firing_for_holds_a_flapping_alert() {
        let h = hold(0, 1, 900);
        let mut t = Tracker::default();
        assert_eq!(t.step(true, true, Instant::now(), &h), Transition::Fired);
        tokio::time::advance(S * 600).await;
        assert_eq!(
            t.step(false, true, Instant::now(), &h),
            Transition::Unchanged
        );
        tokio::time::advance(S * 299).await;
        assert_eq!(
            t.step(false, false, Instant::now(), &h),
            Transition::Unchanged
        );
        tokio::time::advance(S).await;
        assert_eq!(
            t.step(false, false, Instant::now(), &h),
            Transition::Resolved
        );
    }
}
