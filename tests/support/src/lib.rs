//! What tests need and production must not ship: a simulated Flume agent serving real-shaped
//! JSON over HTTP, a DingTalk robot that checks signatures as DingTalk does, the captured
//! fixtures kept in this repository, and the one copy of each helper tests share.
//! Depends on the shared model only, so every crate (sidecar, aggregator, e2e) can use it.

pub mod fake_dingtalk;
pub mod fake_flume;
pub mod fixtures;
pub mod metrics;
pub mod output;
pub mod postgres;
pub mod rules;
pub mod snapshot;
pub mod temp;
pub mod wait;

pub use fixtures::{body_with_fill, fixture, sample, sample_path};
pub use output::Output;
pub use temp::TempDir;
pub use wait::{wait_for, DEADLINE};
