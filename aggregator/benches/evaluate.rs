//! Rule evaluation at fleet scale: the default policy judging one agent's new snapshot
//! (ingest bookkeeping + windows + every rule) while the fleet holds 10 000 agents, and one
//! periodic tick over all of them. Figures go to BENCHMARKS.md.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use flumewatch_aggregator::fleet::{Fleet, Hello, Now};
use flumewatch_aggregator::rules::{Language, RuleSet};
use flumewatch_proto::model::snapshot::{Component, Snapshot};

mod support;
use support::{template, twenty};

const AGENTS: usize = 10_000;

struct Agent {
    host: String,
    stream: u64,
    seq: u64,
}

/// The template with every counter moved on by `step` polls of 10 events.
fn snapshot(template: &[Component], seq: u64, step: u64) -> Snapshot {
    let mut components = template.to_vec();
    for c in &mut components {
        for (_, v) in &mut c.counters {
            *v += step * 10;
        }
    }
    flumewatch_testkit::snapshot::ok(
        seq,
        UNIX_EPOCH + Duration::from_secs(1_795_000_000 + step * 10),
        components,
    )
}

fn now() -> Now {
    Now {
        mono: tokio::time::Instant::now(),
        wall: SystemTime::now(),
    }
}

fn fleet(template: &[Component]) -> (Fleet, Vec<Agent>) {
    let fleet = Fleet::new(10, Arc::new(RuleSet::defaults()), Language::Zh);
    let mut agents = Vec::with_capacity(AGENTS);
    for i in 0..AGENTS {
        let host = format!("host-{i:05}");
        let hello = Hello {
            host: host.clone(),
            instance_id: "bench".into(),
            agents: vec!["a1".into()],
            labels: [
                ("cluster".to_owned(), format!("c{}", i % 20)),
                ("env".to_owned(), "prod".to_owned()),
            ]
            .into(),
            version: "bench".into(),
            poll_interval: Duration::from_secs(10),
        };
        let stream = fleet.connect(hello, now()).stream_id;
        let mut agent = Agent {
            host,
            stream,
            seq: 0,
        };
        for _ in 0..3 {
            agent.seq += 1;
            fleet.record(
                &agent.host,
                agent.stream,
                snapshot(template, agent.seq, agent.seq),
                now(),
            );
        }
        agents.push(agent);
    }
    (fleet, agents)
}

fn bench(c: &mut Criterion) {
    let template = template();
    let (fleet, mut agents) = fleet(&template);
    let mut group = c.benchmark_group("rules_10k_agents");
    let mut next = 0;
    group.bench_function("judge_one_snapshot", |b| {
        b.iter_batched(
            || {
                let agent = &mut agents[next % AGENTS];
                next += 1;
                agent.seq += 1;
                (
                    agent.host.clone(),
                    agent.stream,
                    snapshot(&template, agent.seq, agent.seq),
                )
            },
            |(host, stream, snapshot)| fleet.record(&host, stream, snapshot, now()),
            BatchSize::SmallInput,
        )
    });
    group.sample_size(10);
    group.bench_function("tick_whole_fleet", |b| b.iter(|| fleet.tick(now())));
    group.finish();
}

/// What the Ingest stream does with one arriving 20-component snapshot, minus the network:
/// decode the wire bytes into the reused buffer, store (history difference included), update
/// windows, judge every rule, while the fleet holds 10 000 such agents.
fn ingest(c: &mut Criterion) {
    use flumewatch_aggregator::fleet::HistoryEntry;
    use flumewatch_proto::model::decode::decode_into;
    use flumewatch_proto::v1 as pb;
    use prost::Message;

    let template = twenty(&template());
    let (fleet, mut agents) = fleet(&template);
    let mut buffer = Snapshot::default();
    let mut next = 0;
    let mut group = c.benchmark_group("ingest_10k_agents");
    group.bench_function("ingest_one_snapshot_20_components", |b| {
        b.iter_batched(
            || {
                let agent = &mut agents[next % AGENTS];
                next += 1;
                agent.seq += 1;
                let wire = pb::Snapshot::from(&snapshot(&template, agent.seq, agent.seq));
                (agent.host.clone(), agent.stream, wire.encode_to_vec())
            },
            |(host, stream, bytes)| {
                decode_into(&bytes, &mut buffer).expect("valid");
                let entry = HistoryEntry::from_encoded(buffer.seq, &bytes);
                fleet.record_into(&host, stream, &mut buffer, Some(entry), now())
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench, ingest);
criterion_main!(benches);
