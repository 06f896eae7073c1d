//! flumewatch aggregator: receives typed snapshots from every sidecar, keeps the fleet's state
//! and answers questions about it over gRPC (grpcurl-friendly: reflection and health).
//!
//! ```text
//!  sidecars ──gRPC Ingest/Report──▶ ingest ──▶ fleet (per agent: latest, history, rates)
//!                                                 ▲
//!  grpcurl / tools ──gRPC Fleet/ListAgents, GetAgent── query ─┘
//! ```
//!
//! Snapshots are the sidecar crate's typed [`flumewatch_proto::model::snapshot::Snapshot`];
//! `convert` maps the aggregator's own views to protobuf.

pub mod alert;
pub mod auth;
pub mod check;
pub mod config;
mod convert;
pub mod fleet;
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
