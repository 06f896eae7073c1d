//! A poll's counters indexed by counter, and the compact copy of them a component keeps until
//! its next poll, which deltas and the reset check are judged against.

use flumewatch_proto::model::snapshot::Counter;

/// Every counter the model knows fits (the enum's values are 0..=32).
pub(crate) const COUNTER_SLOTS: usize = 33;

// `Previous` keeps a bit per counter slot in a u64.
const _: () = assert!(COUNTER_SLOTS <= 64);

/// One poll's counters of one component, indexed by counter: the tracks of a component read
/// a handful of counters each, and a lookup here is one load where the list is a scan.
pub(crate) struct Dense([Option<u64>; COUNTER_SLOTS]);

impl Dense {
    pub fn of(counters: &[(Counter, u64)]) -> Self {
        let mut dense = [None; COUNTER_SLOTS];
        // A counter listed twice (a hostile sender) counts as its first entry, as
        // `Component::counter` and the reset check read it.
        for &(counter, value) in counters {
            if let Some(slot @ None) = dense.get_mut(counter as usize) {
                *slot = Some(value);
            }
        }
        Self(dense)
    }

    pub fn get(&self, counter: Counter) -> Option<u64> {
        *self.0.get(counter as usize)?
    }

    /// Which counters are listed, a bit per slot.
    fn listed(&self) -> u64 {
        let bits = self.0.iter().enumerate().filter(|(_, v)| v.is_some());
        bits.fold(0, |listed, (slot, _)| listed | 1 << slot)
    }

    fn values(&self) -> impl Iterator<Item = u64> + '_ {
        self.0.iter().flatten().copied()
    }
}

/// The previous poll's counters as the reset check and deltas read them (each counter's first
/// entry): which counters were listed, a bit each, and their values in counter order. 8 bytes
/// a counter, where the snapshot's `(Counter, u64)` list takes 16 and a header of 24.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Previous {
    listed: u64,
    values: Box<[u64]>,
}

impl Previous {
    /// Keeps `now` for the next poll, in place when it lists the same counters (every poll of a
    /// running component does).
    pub fn set(&mut self, now: &Dense) {
        let listed = now.listed();
        if listed == self.listed {
            for (kept, value) in self.values.iter_mut().zip(now.values()) {
                *kept = value;
            }
        } else {
            self.listed = listed;
            self.values = now.values().collect();
        }
    }

    pub fn dense(&self) -> Dense {
        let mut dense = [None; COUNTER_SLOTS];
        let mut values = self.values.iter();
        for (slot, value) in dense.iter_mut().enumerate() {
            if self.listed & 1 << slot != 0 {
                *value = values.next().copied();
            }
        }
        Dense(dense)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counter_listed_twice_reads_as_its_first_entry() {
        // As `Component::counter` and `counters_reset` read it: deltas and the reset check
        // (now through this array) mean the same counter value.
        let twice = [
            (Counter::EventDrainSuccessCount, 100),
            (Counter::EventDrainSuccessCount, 5),
        ];
        assert_eq!(
            Dense::of(&twice).get(Counter::EventDrainSuccessCount),
            Some(100)
        );
    }

    #[test]
    fn every_counter_has_a_dense_slot() {
        // Counter values are consecutive from 0 (proto3 enum); the last one names the size.
        for value in 0..100 {
            if let Ok(counter) = Counter::try_from(value) {
                assert!((counter as usize) < COUNTER_SLOTS, "{counter:?}");
            }
        }
    }

    #[test]
    fn the_previous_poll_reads_back_as_it_was_listed() {
        let mut rng = fastrand::Rng::with_seed(5);
        let mut previous = Previous::default();
        let all: Vec<Counter> = (0..COUNTER_SLOTS as i32)
            .filter_map(|v| Counter::try_from(v).ok())
            .collect();
        for _ in 0..500 {
            // Mostly the same counters as last time, now and then another set (a reload).
            let listed = if rng.u32(0..10) == 0 {
                rng.u64(..)
            } else {
                previous.listed | 1
            };
            let counters: Vec<(Counter, u64)> = all
                .iter()
                .filter(|c| listed & 1 << (**c as usize) != 0)
                .flat_map(|&c| [(c, rng.u64(..)), (c, rng.u64(..))])
                .collect();
            let now = Dense::of(&counters);
            previous.set(&now);
            let back = previous.dense();
            for &c in &all {
                assert_eq!(back.get(c), now.get(c), "{c:?}");
            }
            assert_eq!(previous.values.len(), previous.listed.count_ones() as usize);
        }
    }
}
