//! The typed model both binaries reason about: what one poll of a Flume agent said, Flume's
//! vocabulary, the limits every end enforces, and the one mapping to and from the wire types.
//! Parsing Flume's JSON is not here: that is the sidecar's edge.

pub mod convert;
pub mod decode;
pub mod resets;
pub mod snapshot;
pub mod time;
pub mod vocabulary;

pub use convert::ConvertError;
pub use snapshot::{Component, ComponentKind, Counter, Flag, Gauge, ScrapeOutcome, Snapshot};
