//! Compiles the .proto contract with protox (no protoc needed) and keeps the descriptor set for reflection.

use std::{env, fs, path::PathBuf};

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
    tonic_prost_build::configure().compile_fds(fds)?;
    println!("cargo:rerun-if-changed=flumewatch");
    Ok(())
}
