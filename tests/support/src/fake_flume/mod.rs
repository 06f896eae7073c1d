//! Simulated Flume agents for the demo and the tests: an HTTP server that answers like Flume's
//! Jetty (chunked JSON, no Content-Length, 404 elsewhere) and agents whose counters move.

mod agent;
mod server;

pub use agent::{Profile, SimAgent};
pub use server::{FakeFlume, Reply, Responder};
