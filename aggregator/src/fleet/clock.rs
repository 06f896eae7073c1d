//! The fleet's two clocks, taken together so one judgement sees one instant.

use std::time::SystemTime;

use tokio::time::Instant;

/// Both clocks: monotonic for hold-downs and staleness, wall for what people read.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub mono: Instant,
    pub wall: SystemTime,
}

impl Now {
    pub fn current() -> Self {
        Self {
            mono: Instant::now(),
            wall: SystemTime::now(),
        }
    }
}
