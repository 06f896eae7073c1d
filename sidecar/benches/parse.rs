//! Parse + normalize of real Flume responses: bytes → typed components → protobuf snapshot,
//! the sidecar's per-poll CPU work apart from HTTP. Figures go to BENCHMARKS.md.

use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flumewatch_proto::v1 as pb;
use flumewatch_sidecar::flume::parse_metrics;

const SAMPLES: &[&str] = &[
    "idle-agent-exec-memory-http.json",
    "steady-load-t15s.json",
    "slow-sink-filling-t22s.json",
    "multi-component-agent.json",
];

fn normalize(body: &[u8]) -> pb::Snapshot {
    let components = parse_metrics(body).expect("sample parses");
    let snapshot = flumewatch_testkit::snapshot::ok(
        1,
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000),
        components,
    );
    pb::Snapshot::from(&snapshot)
}

fn bench(c: &mut Criterion) {
    let dir = flumewatch_testkit::fixture("flume/samples");
    let mut group = c.benchmark_group("parse_normalize");
    for name in SAMPLES {
        let body = std::fs::read(dir.join(name)).expect("sample readable");
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(*name, |b| b.iter(|| normalize(std::hint::black_box(&body))));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
