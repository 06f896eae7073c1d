//! The one snapshot builder tests share: a successful poll of agent `a1`, to adjust with
//! struct-update syntax (`Snapshot { backfill: true, ..ok(…) }`).

use std::time::{Duration, SystemTime};

use flumewatch_proto::model::snapshot::Counter;
use flumewatch_proto::model::{Component, ScrapeOutcome, Snapshot};

/// Whether `counter` counts failures (failed reads and writes, errors, rollbacks): it stays
/// still in a healthy fleet, where the simulated agents' other counters move.
pub fn counts_failures(counter: Counter) -> bool {
    let name = counter.as_str_name();
    ["FAIL", "ERROR", "ROLLBACK"]
        .iter()
        .any(|f| name.contains(f))
}

/// A successful poll of agent `a1` taken at `scraped_at` holding `components`.
pub fn ok(seq: u64, scraped_at: SystemTime, components: Vec<Component>) -> Snapshot {
    Snapshot {
        seq,
        agent: "a1".into(),
        scraped_at,
        scrape_duration: Duration::from_millis(1),
        outcome: ScrapeOutcome::Ok,
        components,
        backfill: false,
    }
}

/// A failed poll of agent `a1`.
pub fn failed(seq: u64, scraped_at: SystemTime, outcome: ScrapeOutcome) -> Snapshot {
    Snapshot {
        outcome,
        ..ok(seq, scraped_at, Vec::new())
    }
}
