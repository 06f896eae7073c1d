//! Compiles the .proto contract with protox (no protoc needed) and keeps the descriptor set for
//! reflection. A second pass generates the Ingest service once more with a report's snapshot as
//! bytes (the same wire format): the sidecar sends the bytes it buffered without decoding them
//! again, and the aggregator decodes each snapshot once and keeps those bytes for history.

use std::{env, fs, path::PathBuf};

use prost_types::field_descriptor_proto::Type;

const PROTOS: &[&str] = &[
    "flumewatch/v1/snapshot.proto",
    "flumewatch/v1/ingest.proto",
    "flumewatch/v1/fleet.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let fds = protox::compile(PROTOS, ["."])?;
    fs::write(
        out_dir.join("flumewatch_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;

    let mut raw = fds.clone();
    raw.file
        .retain(|f| f.name() == "flumewatch/v1/ingest.proto");
    for message in raw.file.iter_mut().flat_map(|f| f.message_type.iter_mut()) {
        if message.name() == "ReportRequest" {
            for field in message.field.iter_mut().filter(|f| f.name() == "snapshot") {
                field.set_type(Type::Bytes);
                field.type_name = None;
            }
        }
    }
    let raw_dir = out_dir.join("raw");
    fs::create_dir_all(&raw_dir)?;
    let mut raw_build = tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .bytes(".flumewatch.v1.ReportRequest.snapshot")
        .codec_path("crate::codec::SmallBuffers")
        .out_dir(&raw_dir);
    for shared in ["Hello", "SidecarStats", "ReportResponse", "Ack"] {
        raw_build = raw_build.extern_path(
            format!(".flumewatch.v1.{shared}"),
            format!("crate::v1::{shared}"),
        );
    }
    raw_build.compile_fds(raw)?;

    tonic_prost_build::configure().compile_fds(fds)?;
    println!("cargo:rerun-if-changed=flumewatch");
    Ok(())
}
