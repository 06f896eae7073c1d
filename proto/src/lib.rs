//! The `flumewatch.v1` contract in both its forms: the generated wire types and services with the
//! descriptor set that server reflection serves (`v1`, also reachable as `pb`), and the validated
//! typed model both binaries reason about, with the one conversion between the two (`model`).

#[allow(clippy::all, missing_docs, rust_2018_idioms)]
pub mod v1 {
    tonic::include_proto!("flumewatch.v1");
}

pub use v1 as pb;

/// The Ingest service, client and server, as flumewatch itself speaks it: `flumewatch.v1` on the
/// wire, but a report's snapshot is an encoded [`pb::Snapshot`] — the sidecar sends the bytes
/// it buffered, the aggregator decodes them once and keeps them for history. Hello, stats and
/// acks are the `v1` types.
#[allow(clippy::all, missing_docs, rust_2018_idioms)]
pub mod ingest_raw {
    include!(concat!(env!("OUT_DIR"), "/raw/flumewatch.v1.rs"));
}

pub mod codec;
pub mod model;

/// Encoded `FileDescriptorSet` of every flumewatch proto, for `tonic-reflection`.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/flumewatch_descriptor.bin"));
