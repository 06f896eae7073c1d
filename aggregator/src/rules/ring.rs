//! A fixed-capacity ring of small `Copy` points: the storage of every gauge trend (counter
//! windows share one ring of times per component, see `clocks`), one allocation sized once for
//! all the points a window can hold.
//!
//! `VecDeque` would do the same job with a 32-byte header and room to grow by doubling; a
//! window knows its bound up front (points are spaced by its resolution or the poll
//! interval), so the ring takes exactly that and grows only if polls come closer than the
//! interval it was sized for.

/// Points oldest first, in `slots[head..]` then `slots[..]` wrapped around.
#[derive(Debug, Clone, Default)]
pub struct Ring<P> {
    slots: Box<[P]>,
    /// Index of the oldest point.
    head: u32,
    len: u32,
}

impl<P: Copy + Default> Ring<P> {
    /// An empty ring with room for exactly `capacity` points (one allocation, none for 0).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            slots: vec![P::default(); capacity].into_boxed_slice(),
            head: 0,
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Slot of the `i`-th oldest point (`i < len`).
    fn slot(&self, i: usize) -> usize {
        let at = self.head as usize + i;
        if at >= self.slots.len() {
            at - self.slots.len()
        } else {
            at
        }
    }

    /// The `i`-th oldest point.
    pub fn get(&self, i: usize) -> Option<P> {
        (i < self.len()).then(|| self.slots[self.slot(i)])
    }

    pub fn front(&self) -> Option<P> {
        self.get(0)
    }

    pub fn back(&self) -> Option<P> {
        self.len().checked_sub(1).and_then(|i| self.get(i))
    }

    /// The newest point, to merge into it.
    pub fn back_mut(&mut self) -> Option<&mut P> {
        let i = self.len().checked_sub(1)?;
        let slot = self.slot(i);
        Some(&mut self.slots[slot])
    }

    pub fn push_back(&mut self, point: P) {
        if self.len() == self.capacity() {
            self.grow();
        }
        let slot = self.slot(self.len());
        self.slots[slot] = point;
        self.len += 1;
    }

    pub fn pop_front(&mut self) -> Option<P> {
        let point = self.front()?;
        self.head = self.slot(1) as u32;
        self.len -= 1;
        Some(point)
    }

    /// Forgets every point and keeps the room.
    pub fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }

    /// The points, oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = P> + Clone + '_ {
        let (newer, older) = self.slots.split_at(self.head as usize);
        let older_len = older.len().min(self.len());
        let wrapped = self.len() - older_len;
        older[..older_len].iter().chain(&newer[..wrapped]).copied()
    }

    /// Rewrites every point in place (a time-origin rebase).
    pub fn for_each_mut(&mut self, mut f: impl FnMut(&mut P)) {
        for i in 0..self.len() {
            let slot = self.slot(i);
            f(&mut self.slots[slot]);
        }
    }

    /// Full, and a point is due: polls came closer than the spacing the ring was sized for (an
    /// agent whose poll interval shrank). Grows by half, as rarely as that happens, keeping
    /// every point so answers stay what they would be.
    #[cold]
    fn grow(&mut self) {
        let capacity = self.capacity() + self.capacity() / 2 + 1;
        let mut slots = Vec::with_capacity(capacity);
        slots.extend(self.iter());
        slots.resize(capacity, P::default());
        self.slots = slots.into_boxed_slice();
        self.head = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    #[test]
    fn wraps_around_in_order_without_growing() {
        let mut ring = Ring::<u32>::with_capacity(4);
        let mut model = VecDeque::new();
        for i in 0..100 {
            if ring.len() == 4 {
                assert_eq!(ring.pop_front(), model.pop_front());
            }
            ring.push_back(i);
            model.push_back(i);
            assert_eq!(ring.iter().collect::<Vec<_>>(), Vec::from(model.clone()));
            assert_eq!(
                ring.iter().rev().collect::<Vec<_>>(),
                model.iter().rev().copied().collect::<Vec<_>>()
            );
            assert_eq!(ring.front(), model.front().copied());
            assert_eq!(ring.back(), model.back().copied());
            assert_eq!(ring.capacity(), 4, "never reallocated");
        }
        *ring.back_mut().unwrap() = 7;
        assert_eq!(ring.back(), Some(7));
        ring.for_each_mut(|p| *p += 1);
        assert_eq!(ring.iter().collect::<Vec<_>>(), [97, 98, 99, 8]);
        ring.clear();
        assert_eq!(ring.len(), 0);
        assert_eq!(ring.pop_front(), None);
        assert_eq!(ring.back_mut(), None);
        assert_eq!(ring.capacity(), 4);
    }

    #[test]
    fn a_full_ring_grows_and_keeps_every_point() {
        let mut ring = Ring::<u32>::with_capacity(3);
        ring.push_back(0);
        ring.push_back(1);
        ring.pop_front();
        for i in 2..6 {
            ring.push_back(i); // wrapped when it grows
        }
        assert_eq!(ring.iter().collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
        assert_eq!(ring.capacity(), 5);
        let mut empty = Ring::<u32>::default();
        assert_eq!(empty.capacity(), 0);
        empty.push_back(9);
        assert_eq!(empty.iter().collect::<Vec<_>>(), [9]);
    }
}
