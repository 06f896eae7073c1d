//! The captured fixtures kept in `tests/fixtures/`: real Flume responses and traces, and
//! DingTalk's signature vectors. Nothing here reads outside the repository.

use std::path::PathBuf;

/// A file under `tests/fixtures/`, e.g. `fixture("flume/traces/healthy-busy.jsonl")`.
pub fn fixture(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(relative)
}

/// The path of a captured Flume response in `tests/fixtures/flume/samples/`.
pub fn sample_path(name: &str) -> PathBuf {
    fixture("flume/samples").join(name)
}

/// A captured Flume response, as bytes.
pub fn sample(name: &str) -> Vec<u8> {
    let path = sample_path(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// `steady-load-t15s.json` with channel mem1 at `fill` percent of its 10 000 capacity.
pub fn body_with_fill(fill: u64) -> Vec<u8> {
    let mut body: serde_json::Value =
        serde_json::from_slice(&sample("steady-load-t15s.json")).expect("sample");
    body["CHANNEL.mem1"]["ChannelSize"] = serde_json::Value::String((fill * 100).to_string());
    body["CHANNEL.mem1"]["ChannelFillPercentage"] = serde_json::Value::String(format!("{fill}.0"));
    serde_json::to_vec(&body).expect("json")
}
