//! Load generator: N simulated sidecars, each a real gRPC Ingest stream, sending realistic
//! snapshots (10–30 components, counters moving, a share of agents in trouble) at a fixed rate
//! for a bounded time, and measuring how long each snapshot takes to be acknowledged — the
//! aggregator acknowledges only after storing and judging, so send→ack bounds ingest→verdict.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use flumewatch_proto::ingest_raw::ingest_client::IngestClient;
use flumewatch_proto::ingest_raw::report_request::Message;
use flumewatch_proto::ingest_raw::ReportRequest;
use flumewatch_proto::v1 as pb;
use flumewatch_testkit::snapshot::counts_failures;
use prost::Message as _;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub aggregator: String,
    pub streams: usize,
    /// Agents each stream reports for, as a sidecar on a host with several Flume agents: a
    /// round of one snapshot per agent is sent together, as the sidecar sends a poll round.
    pub agents_per_stream: usize,
    /// Rounds per second per stream.
    pub rate: f64,
    pub duration: Duration,
    /// Components per agent, spread evenly over this range.
    pub min_components: usize,
    pub max_components: usize,
    /// Share of agents whose channels are filling (they raise alerts).
    pub trouble: f64,
    /// HTTP/2 connections the streams share (one per stream is what a real fleet does).
    pub connections: usize,
    /// Streams opened per second while ramping up (a fleet does not connect all at once).
    pub ramp_per_second: usize,
}

impl Default for LoadConfig {
    fn default() -> Self {
        Self {
            aggregator: "http://127.0.0.1:50051".into(),
            streams: 200,
            agents_per_stream: 1,
            rate: 1.0,
            duration: Duration::from_secs(10),
            min_components: 10,
            max_components: 30,
            trouble: 0.05,
            connections: 200,
            ramp_per_second: 2000,
        }
    }
}

/// What happened, from the generator's side.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    pub streams_opened: usize,
    pub sent: u64,
    pub acked: u64,
    /// Send → ack, in microseconds, sorted.
    pub latencies_us: Vec<u32>,
    /// The same by the minute of the run the snapshot was sent in, each sorted: the first
    /// minute holds the fleet connecting and every alert starting, the others the steady state.
    pub latencies_by_minute_us: Vec<Vec<u32>>,
    /// From the first stream opened to the last ack.
    pub elapsed: Duration,
    /// CPU the generator itself used over the run (every thread).
    pub generator_cpu: Duration,
}

impl LoadReport {
    pub fn quantile_ms(&self, q: f64) -> f64 {
        quantile_ms(&self.latencies_us, q)
    }

    /// `q` of each minute's latencies, in milliseconds.
    pub fn quantile_by_minute_ms(&self, q: f64) -> Vec<f64> {
        self.latencies_by_minute_us
            .iter()
            .map(|minute| quantile_ms(minute, q))
            .collect()
    }

    pub fn accepted_per_second(&self) -> f64 {
        self.acked as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// `q` of sorted microsecond latencies, in milliseconds.
fn quantile_ms(sorted_us: &[u32], q: f64) -> f64 {
    if sorted_us.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted_us.len() - 1) as f64 * q).round() as usize;
    f64::from(sorted_us[index]) / 1000.0
}

/// One simulated agent: its components encoded once, as the tail of a `Snapshot` message,
/// with the place of every moving counter's value, so a tick patches numbers in place instead
/// of building and encoding 20 components (the generator must leave the aggregator its core).
struct Agent {
    /// Its name in the stream's Hello.
    name: String,
    /// Field 6 (components) of the Snapshot message, every component, already encoded.
    components: Vec<u8>,
    /// Where each moving counter's value sits in `components`, and its current value.
    moving: Vec<(usize, u64)>,
}

/// Counter values start here: every value is then a varint of exactly `VALUE_BYTES` bytes for
/// as long as any run lasts (+10 a tick), so patching never changes a length.
const FIRST_VALUE: u64 = 1 << 35;
const VALUE_BYTES: usize = 6;

fn template() -> Vec<pb::Component> {
    let body = crate::sample("multi-component-agent.json");
    flumewatch_sidecar::flume::parse_metrics(&body)
        .expect("sample parses")
        .iter()
        .map(pb::Component::from)
        .collect()
}

fn moves(counter: i32) -> bool {
    pb::Counter::try_from(counter).map_or(true, |c| {
        // Kafka's timers are durations, not counts: they stay as sampled.
        !counts_failures(c) && !c.as_str_name().contains("TIMER")
    })
}

fn put_varint(value: u64, out: &mut Vec<u8>) {
    prost::encoding::encode_varint(value, out);
}

impl Agent {
    fn new(name: String, template: &[pb::Component], count: usize, troubled: bool) -> Self {
        let mut components = Vec::new();
        let mut moving = Vec::new();
        for i in 0..count {
            let mut c = template[i % template.len()].clone();
            c.name = format!("{}{}", c.name, i / template.len());
            if troubled {
                for g in &mut c.gauges {
                    match pb::Gauge::try_from(g.gauge) {
                        Ok(pb::Gauge::ChannelFillPercentage) => g.value = 95.0,
                        Ok(pb::Gauge::ChannelSize) => g.value = 9500.0,
                        Ok(pb::Gauge::ChannelCapacity) => g.value = 10_000.0,
                        _ => {}
                    }
                }
            }
            // Everything but the counters through prost; the counters by hand (a repeated
            // field may come in any order), each value a fixed-width varint.
            let counters = std::mem::take(&mut c.counters);
            let mut body = c.encode_to_vec();
            let mut places = Vec::new();
            for v in &counters {
                let mut entry = Vec::new();
                prost::encoding::encode_key(1, prost::encoding::WireType::Varint, &mut entry);
                put_varint(v.counter as u64, &mut entry);
                prost::encoding::encode_key(2, prost::encoding::WireType::Varint, &mut entry);
                let value = FIRST_VALUE + v.value;
                let at = entry.len();
                put_varint(value, &mut entry);
                debug_assert_eq!(entry.len() - at, VALUE_BYTES);
                prost::encoding::encode_key(
                    6,
                    prost::encoding::WireType::LengthDelimited,
                    &mut body,
                );
                put_varint(entry.len() as u64, &mut body);
                if moves(v.counter) {
                    places.push((body.len() + at, value));
                }
                body.extend_from_slice(&entry);
            }
            prost::encoding::encode_key(
                6,
                prost::encoding::WireType::LengthDelimited,
                &mut components,
            );
            put_varint(body.len() as u64, &mut components);
            let base = components.len();
            moving.extend(places.into_iter().map(|(at, value)| (base + at, value)));
            components.extend_from_slice(&body);
        }
        Self {
            name,
            components,
            moving,
        }
    }

    /// The next snapshot, encoded: a fresh header, the components with every moving counter
    /// 10 higher.
    fn tick(&mut self, seq: u64) -> prost::bytes::Bytes {
        for (at, value) in &mut self.moving {
            *value += 10;
            let mut slot = &mut self.components[*at..*at + VALUE_BYTES];
            prost::encoding::encode_varint(*value, &mut slot);
        }
        let header = pb::Snapshot {
            seq,
            agent: self.name.clone(),
            scraped_at: Some(flumewatch_proto::model::time::timestamp(SystemTime::now())),
            scrape_duration_ms: 2,
            outcome: Some(pb::ScrapeOutcome {
                status: pb::ScrapeStatus::Ok as i32,
                ..Default::default()
            }),
            components: Vec::new(),
            backfill: false,
        };
        let mut message = Vec::with_capacity(header.encoded_len() + self.components.len());
        header.encode(&mut message).expect("a Vec grows");
        message.extend_from_slice(&self.components);
        message.into()
    }
}

/// CPU time of this process so far (every thread).
pub fn own_cpu() -> Duration {
    Duration::from_nanos(crate::procstat::cpu_ns(std::process::id()))
}

/// Runs the load and returns what the generator saw.
pub async fn run(config: &LoadConfig) -> Result<LoadReport, tonic::transport::Error> {
    let cpu_at_start = own_cpu();
    let template = template();
    let mut channels = Vec::new();
    for _ in 0..config.connections.clamp(1, config.streams.max(1)) {
        channels.push(
            tonic::transport::Endpoint::from_shared(config.aggregator.clone())?
                .tcp_nodelay(true)
                .connect()
                .await?,
        );
    }
    let sent = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let stop_at = started + config.duration;
    let period = Duration::from_secs_f64(1.0 / config.rate);
    let span = config.max_components.saturating_sub(config.min_components) + 1;
    let trouble_every = if config.trouble > 0.0 {
        (1.0 / config.trouble).round().max(1.0) as usize
    } else {
        usize::MAX
    };
    let per_stream = config.agents_per_stream.max(1);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..config.streams {
        if config.ramp_per_second > 0 && i > 0 && i % config.ramp_per_second == 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let agents = (0..per_stream)
            .map(|j| {
                let n = i * per_stream + j;
                Agent::new(
                    format!("a{}", j + 1),
                    &template,
                    config.min_components + n % span,
                    n.is_multiple_of(trouble_every),
                )
            })
            .collect();
        let channel = channels[i % channels.len()].clone();
        // Spread the streams over the period so the load is even, not a burst a second.
        let phase = period.mul_f64(i as f64 / config.streams as f64);
        tasks.spawn(stream(
            channel,
            format!("load-{i:05}"),
            agents,
            period,
            phase,
            (started, stop_at),
            sent.clone(),
        ));
    }
    let mut report = LoadReport::default();
    while let Some(result) = tasks.join_next().await {
        if let Ok(Some((acked, latencies))) = result {
            report.streams_opened += 1;
            report.acked += acked;
            for (minute, latency) in latencies {
                let minute = usize::from(minute);
                if report.latencies_by_minute_us.len() <= minute {
                    report.latencies_by_minute_us.resize(minute + 1, Vec::new());
                }
                report.latencies_by_minute_us[minute].push(latency);
                report.latencies_us.push(latency);
            }
        }
    }
    for minute in &mut report.latencies_by_minute_us {
        minute.sort_unstable();
    }
    report.elapsed = started.elapsed();
    report.generator_cpu = own_cpu().saturating_sub(cpu_at_start);
    report.sent = sent.load(Ordering::Relaxed);
    report.latencies_us.sort_unstable();
    Ok(report)
}

/// One simulated sidecar; returns (acknowledged snapshots, for each the minute of the run it
/// was sent in and its latency in µs).
async fn stream(
    channel: Channel,
    host: String,
    mut agents: Vec<Agent>,
    period: Duration,
    phase: Duration,
    (started, stop_at): (Instant, Instant),
    sent: Arc<AtomicU64>,
) -> Option<(u64, Vec<(u16, u32)>)> {
    // Room for a whole round, so that it is queued before the encoder runs and leaves in one write.
    let (tx, rx) = mpsc::channel::<ReportRequest>(2 * agents.len() + 2);
    tx.send(ReportRequest {
        message: Some(Message::Hello(pb::Hello {
            host: host.clone(),
            instance_id: format!("{host}-load"),
            agents: agents.iter().map(|a| a.name.clone()).collect(),
            labels: [("cluster".to_owned(), "load".to_owned())].into(),
            sidecar_version: "load".into(),
            poll_interval: Some(flumewatch_proto::model::time::duration(period)),
        })),
    })
    .await
    .ok()?;
    let mut acks = IngestClient::new(channel)
        .max_decoding_message_size(4 << 20)
        .report(ReceiverStream::new(rx))
        .await
        .ok()?
        .into_inner();
    // The first answer is the resume point.
    acks.message().await.ok()??;
    let in_flight: Arc<std::sync::Mutex<std::collections::VecDeque<(u64, Instant)>>> =
        Arc::default();
    let reader = {
        let in_flight = in_flight.clone();
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut acked = 0;
            while let Ok(Some(response)) = acks.message().await {
                let Some(pb::report_response::Message::Ack(ack)) = response.message else {
                    continue;
                };
                let now = Instant::now();
                let mut queue = in_flight.lock().expect("in-flight lock");
                while queue.front().is_some_and(|(seq, _)| *seq <= ack.acked_seq) {
                    let (_, at) = queue.pop_front().expect("checked");
                    let minute = (at.duration_since(started).as_secs() / 60).min(u16::MAX.into());
                    let latency = now.duration_since(at).as_micros().min(u32::MAX as u128);
                    latencies.push((minute as u16, latency as u32));
                    acked += 1;
                }
            }
            (acked, latencies)
        })
    };
    let mut next = Instant::now() + phase;
    let mut seq = 0;
    'rounds: while next < stop_at {
        tokio::time::sleep_until(next).await;
        for agent in &mut agents {
            seq += 1;
            let snapshot = agent.tick(seq);
            in_flight
                .lock()
                .expect("in-flight lock")
                .push_back((seq, Instant::now()));
            if tx
                .send(ReportRequest {
                    message: Some(Message::Snapshot(snapshot)),
                })
                .await
                .is_err()
            {
                break 'rounds;
            }
            sent.fetch_add(1, Ordering::Relaxed);
        }
        next += period;
    }
    // Wait for the last acks, then hang up.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !in_flight.lock().expect("in-flight lock").is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(tx);
    reader.await.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patched_snapshots_decode_with_moving_counters() {
        let template = template();
        let mut agent = Agent::new("a1".into(), &template, 20, true);
        let first = pb::Snapshot::decode(agent.tick(1)).expect("decodes");
        let second = pb::Snapshot::decode(agent.tick(2)).expect("decodes");
        assert_eq!((first.seq, second.seq), (1, 2));
        assert_eq!(second.components.len(), 20);
        assert_eq!(second.components[7].name, format!("{}1", template[0].name));
        let mut moved = 0;
        for (a, b) in first.components.iter().zip(&second.components) {
            assert_eq!(a.counters.len(), b.counters.len());
            for (x, y) in a.counters.iter().zip(&b.counters) {
                assert_eq!(x.counter, y.counter);
                let step = if moves(x.counter) { 10 } else { 0 };
                assert_eq!(y.value, x.value + step, "{:?}", x.counter);
                moved += usize::from(step > 0);
            }
        }
        assert!(moved > 20, "{moved} counters moved");
        let full = |c: &pb::Component| c.gauges.iter().any(|g| g.value == 95.0);
        assert!(
            second.components.iter().any(full),
            "a troubled agent's channels are full"
        );
        let typed = flumewatch_proto::model::Snapshot::try_from(second).expect("valid");
        assert!(typed.outcome.is_ok());
    }
}
