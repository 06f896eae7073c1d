//! flumewatch aggregator: receives typed snapshots from every sidecar, keeps the fleet's state,
//! judges the alert policy across it, groups the alerts and sends one DingTalk message per
//! incident; answers questions over gRPC (reflection and health) and serves `/metrics`.
//!
//! ```text
//!  sidecars ──gRPC Ingest/Report──▶ ingest ──▶ fleet (per agent: latest, history, rates)
//!                                                 │ judged on every snapshot and tick
//!                                                 ▼
//!                                     rules (pending → firing → resolved)
//!                                                 │ alert changes wake the notifier
//!                                                 ▼
//!      notify: dispatch (groups) → mute (silences, inhibition) → dedup (notification log)
//!              → one message per receiver → outbox (SQLite) → dingtalk (sign, POST, retry)
//!
//!  grpcurl / tools ──gRPC Fleet/*── query ◀── read-only views of fleet, rules, notify
//!  Prometheus ──GET /metrics── http
//! ```
//!
//! Snapshots are the shared model's [`flumewatch_proto::model::Snapshot`]; `convert` maps the
//! aggregator's own views to protobuf.

pub mod alert;
pub mod auth;
pub mod check;
pub mod config;
mod convert;
pub mod fleet;
pub mod ha;
mod health;
mod http;
mod ingest;
pub mod matcher;
mod metrics;
pub mod notify;
mod query;
pub mod reload;
pub mod rules;
pub mod secret;
pub mod server;

pub use config::{Config, Mode};
pub use ingest::IngestCounters;
pub use server::{run, Aggregator, RunError};
