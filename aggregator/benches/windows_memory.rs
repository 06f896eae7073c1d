//! Heap bytes per agent of the rule windows (`AgentSeries`) once every window is full: 20-
//! component agents (as `evaluate.rs`'s ingest bench) polled every second under the default
//! policy, counted by a wrapping global allocator. Prints figures; asserts nothing.
//!
//! `cargo bench -p flumewatch-aggregator --bench windows_memory` (AGENTS and POLLS in the
//! environment override the defaults; HEALTHY=1 keeps every failure counter still, as in a
//! healthy fleet, where by default every counter moves).

use std::alloc::System;
use std::time::{Duration, UNIX_EPOCH};

use flumewatch_aggregator::rules::series::AgentSeries;
use flumewatch_aggregator::rules::RuleSet;
use flumewatch_proto::model::snapshot::{Component, Gauge, Snapshot};
use flumewatch_testkit::snapshot::counts_failures;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

mod support;
use support::{template, twenty};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// The longest default window is SourceQuiet's 1 h + 10 min offset: 4200 one-second polls.
/// A few hundred more so every track has also dropped points (steady state, not growth).
const POLLS: u64 = 4500;
const AGENTS: usize = 200;

/// Poll `step`: every counter moved on by 10 events per poll (with `healthy`, every counter but
/// the failure counters), channel sizes wobbling so the gauge trends hold distinct readings.
fn snapshot(template: &[Component], step: u64, healthy: bool) -> Snapshot {
    let mut components = template.to_vec();
    for c in &mut components {
        for (counter, v) in &mut c.counters {
            if !(healthy && counts_failures(*counter)) {
                *v += step * 10;
            }
        }
        for (g, v) in &mut c.gauges {
            if *g == Gauge::ChannelSize {
                *v += (step % 7) as f64;
            }
        }
    }
    flumewatch_testkit::snapshot::ok(
        step,
        UNIX_EPOCH + Duration::from_secs(1_795_000_000 + step),
        components,
    )
}

/// Net live heap bytes since `region` began (a reallocation's growth or shrink is already in
/// the allocated or deallocated bytes).
fn live(region: &Region<'_, System>) -> isize {
    let change = region.change();
    change.bytes_allocated as isize - change.bytes_deallocated as isize
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// Timing a loop of plain CPU work: no tokio clock to pause here.
#[allow(clippy::disallowed_types)]
fn main() {
    let agents = env_or("AGENTS", AGENTS as u64) as usize;
    let polls = env_or("POLLS", POLLS);
    let healthy = env_or("HEALTHY", 0) != 0;
    let specs = RuleSet::defaults().specs;
    let template = twenty(&template());
    // The agents' vector is allocated before counting starts: only what the windows hold is
    // counted, not where the fleet keeps them.
    let mut fleet: Vec<AgentSeries> = Vec::with_capacity(agents);
    let region = Region::new(GLOBAL);
    for _ in 0..agents {
        let mut series = AgentSeries::default();
        series.set_poll_interval(Duration::from_secs(1));
        fleet.push(series);
    }
    let mut observing = Duration::ZERO;
    for step in 0..polls {
        let snapshot = snapshot(&template, step, healthy);
        let started = std::time::Instant::now();
        for series in &mut fleet {
            series.observe(&snapshot, &specs);
        }
        observing += started.elapsed();
    }
    let bytes = live(&region);
    let observed = agents as u64 * polls;
    println!(
        "windows_memory: {agents} agents x {polls} polls at 1 s, 20 components, default policy \
         ({} counter tracks, {} gauge trends per kind set), {}",
        specs.counters.len(),
        specs.gauges.len(),
        if healthy {
            "failure counters still"
        } else {
            "every counter moving"
        }
    );
    println!(
        "heap bytes per agent: {} ({:.1} KiB); inline size of AgentSeries: {} bytes",
        bytes / agents as isize,
        bytes as f64 / agents as f64 / 1024.0,
        std::mem::size_of::<AgentSeries>()
    );
    println!(
        "observe: {:.2} µs per 20-component snapshot (mean over {observed})",
        observing.as_secs_f64() * 1e6 / observed as f64
    );
    drop(fleet);
}
