//! The `flumewatch.v1` contract: generated types and services, and the descriptor set that
//! server reflection serves. No logic and no conversions live here.

#[allow(clippy::all, missing_docs, rust_2018_idioms)]
pub mod v1 {
    tonic::include_proto!("flumewatch.v1");
}

/// Encoded `FileDescriptorSet` of every flumewatch proto, for `tonic-reflection`.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/flumewatch_descriptor.bin"));
