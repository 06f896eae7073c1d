//! The `flumewatch.v1.Ingest` service: one stream per sidecar, Hello first, then snapshots
//! stored in order and acknowledged.

use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use flumewatch_proto::ingest_raw::ingest_server::Ingest;
use flumewatch_proto::ingest_raw::report_request::Message as Inbound;
use flumewatch_proto::ingest_raw::ReportRequest;
use flumewatch_proto::model::decode::{decode_reusing, DecodeError};
use flumewatch_proto::model::snapshot::{Component, Snapshot};
use flumewatch_proto::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::config::AckPolicy;
use crate::fleet::{Fleet, Hello, HistoryEntry, Now, Recorded, Registration};

/// A sidecar that connects but says nothing is holding a slot for no one.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Acks waiting to be written to one stream. Acks are cumulative, but each is awaited so a
/// sidecar that stops reading slows only its own stream.
const ACK_QUEUE: usize = 16;

/// Counters of what the ingest service did since start, for status and metrics.
#[derive(Debug, Default)]
pub struct IngestCounters {
    pub streams_opened: AtomicU64,
    pub snapshots_stored: AtomicU64,
    /// Acks of stored snapshots sent (the Hello's resume point not counted): snapshots per ack
    /// shows how well sidecars' rounds arrive together.
    pub acks_sent: AtomicU64,
    pub duplicates: AtomicU64,
    pub rejected: AtomicU64,
    /// Streams refused for a missing, unknown or misbound token.
    pub auth_rejected: AtomicU64,
    pub verdict_latency: VerdictLatency,
}

/// Time from a snapshot's arrival on its stream to its verdict: stored, windows updated, the
/// agent's rules judged (waiting for the fleet lock included).
#[derive(Debug, Clone)]
pub struct VerdictLatency(pub Histogram);

impl Default for VerdictLatency {
    fn default() -> Self {
        // 50 µs … 1.6 s.
        Self(Histogram::new(exponential_buckets(0.000_05, 2.0, 16)))
    }
}

#[derive(Debug, Clone)]
pub struct IngestService {
    fleet: Fleet,
    shutdown: CancellationToken,
    counters: Arc<IngestCounters>,
    acks: AckPolicy,
}

impl IngestService {
    pub fn new(fleet: Fleet, shutdown: CancellationToken, counters: Arc<IngestCounters>) -> Self {
        Self {
            fleet,
            shutdown,
            counters,
            acks: AckPolicy::default(),
        }
    }

    pub fn with_acks(mut self, acks: AckPolicy) -> Self {
        self.acks = acks;
        self
    }
}

type AckSender = mpsc::Sender<Result<pb::ReportResponse, Status>>;

fn ack(seq: u64) -> Result<pb::ReportResponse, Status> {
    Ok(pb::ReportResponse {
        message: Some(pb::report_response::Message::Ack(pb::Ack {
            acked_seq: seq,
        })),
    })
}

#[tonic::async_trait]
impl Ingest for IngestService {
    type ReportStream = ReceiverStream<Result<pb::ReportResponse, Status>>;

    async fn report(
        &self,
        request: Request<Streaming<ReportRequest>>,
    ) -> Result<Response<Self::ReportStream>, Status> {
        let enrolled = request.extensions().get::<crate::auth::Enrolled>().cloned();
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no Hello within 10s"))??;
        let hello = match first.and_then(|m| m.message) {
            Some(Inbound::Hello(hello)) => {
                Hello::try_from(hello).map_err(|e| Status::invalid_argument(e.to_string()))?
            }
            _ => {
                return Err(Status::invalid_argument(
                    "the first message must be a Hello",
                ))
            }
        };
        if let Some(bound) = enrolled.and_then(|e| e.bound_host) {
            if bound != hello.host {
                self.counters.auth_rejected.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(host = %hello.host, %bound, "a sidecar token was used for another host");
                return Err(Status::permission_denied(format!(
                    "this token may only report for host {bound:?}"
                )));
            }
        }
        let host = hello.host.clone();
        let registration = self.fleet.connect(hello, Now::current());
        self.counters.streams_opened.fetch_add(1, Ordering::Relaxed);
        tracing::info!(%host, resume_after = registration.resume_after, "sidecar connected");

        let (tx, rx) = mpsc::channel(ACK_QUEUE);
        // Cannot fail: the queue is empty and the receiver is held below.
        let _ = tx.try_send(ack(registration.resume_after));
        let stream = StreamTask {
            host,
            registration,
            acks: self.acks,
            fleet: self.fleet.clone(),
            counters: self.counters.clone(),
        };
        tokio::spawn(stream.run(inbound, tx, self.shutdown.clone()));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

thread_local! {
    /// What every snapshot is decoded into, reusing its strings and arrays: agents keep their
    /// snapshots as bytes (see `Fleet::record_into`), so one buffer per runtime thread serves
    /// every stream and stays in cache. One per stream would keep 10 000 decoded snapshots.
    /// With it, the components a smaller snapshot left over (see `decode_reusing`).
    static DECODE_BUFFER: std::cell::RefCell<(Snapshot, Vec<Component>)> =
        std::cell::RefCell::new((Snapshot::default(), Vec::new()));
}

struct StreamTask {
    host: String,
    registration: Registration,
    acks: AckPolicy,
    fleet: Fleet,
    counters: Arc<IngestCounters>,
}

impl StreamTask {
    async fn run(
        self,
        mut inbound: Streaming<ReportRequest>,
        tx: AckSender,
        shutdown: CancellationToken,
    ) {
        // Stored but not yet acknowledged: the newest such sequence number, how many, and
        // when the ack is due at the latest.
        let mut unacked: Option<(u64, u32, Instant)> = None;
        let reason = loop {
            let message = match unacked {
                Some((seq, count, due)) => {
                    let flush = count >= self.acks.every;
                    let wait = !flush && !self.acks.delay.is_zero();
                    // Take what is already waiting first; acknowledge when nothing is (or
                    // enough was stored, or the delay is over).
                    let next = tokio::select! {
                        biased;
                        _ = shutdown.cancelled() => break "aggregator stopping".to_owned(),
                        message = inbound.message(), if !flush => Some(message),
                        _ = tokio::time::sleep_until(due), if wait => None,
                        _ = std::future::ready(()), if !wait => None,
                    };
                    match next {
                        Some(message) => message,
                        None => {
                            // Cleared once sent: a shutdown meanwhile still acks it on the way out.
                            let sent = tokio::select! {
                                biased;
                                _ = shutdown.cancelled() => break "aggregator stopping".to_owned(),
                                sent = tx.send(ack(seq)) => sent,
                            };
                            if sent.is_err() {
                                break "sidecar stopped reading".to_owned();
                            }
                            self.counters.acks_sent.fetch_add(1, Ordering::Relaxed);
                            unacked = None;
                            continue;
                        }
                    }
                }
                None => tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => break "aggregator stopping".to_owned(),
                    message = inbound.message() => message,
                },
            };
            let message = match message {
                Ok(Some(message)) => message,
                Ok(None) => break "sidecar closed the stream".to_owned(),
                Err(status) => {
                    let reason = format!("stream error: {}", status.message());
                    // Tell the sender why (an oversized message, say) instead of a clean end.
                    let _ = tx.try_send(Err(status));
                    break reason;
                }
            };
            let arrived = Instant::now();
            let acked = match message.message {
                Some(Inbound::Snapshot(bytes)) => match self.store(&bytes) {
                    Err(status) => {
                        let reason = format!("stream error: {}", status.message());
                        let _ = tx.try_send(Err(status));
                        break reason;
                    }
                    Ok(stored) => stored,
                },
                Some(Inbound::Stats(stats)) => {
                    self.fleet
                        .record_stats(&self.host, self.registration.stream_id, stats);
                    continue;
                }
                Some(Inbound::Hello(_)) | None => continue,
            };
            // None: superseded by a newer stream; acking would make the sidecar forget
            // snapshots nobody stored.
            if let Some(seq) = acked {
                self.counters
                    .verdict_latency
                    .0
                    .observe(arrived.elapsed().as_secs_f64());
                // Acks only move forward: a skipped snapshot with a lower (or zero) sequence
                // number must not replace a higher one still waiting to be acknowledged.
                unacked = Some(match unacked {
                    Some((pending, count, due)) => (pending.max(seq), count + 1, due),
                    None => (seq, 1, arrived + self.acks.delay),
                });
            }
        };
        if let Some((seq, _, _)) = unacked {
            // What was stored is acknowledged on the way out when the sidecar still listens.
            if tx.try_send(ack(seq)).is_ok() {
                self.counters.acks_sent.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.fleet
            .disconnect(&self.host, self.registration.stream_id, Now::current());
        tracing::info!(host = %self.host, %reason, "sidecar disconnected");
    }

    /// Stores one snapshot, as the bytes that arrived, and returns the sequence number to
    /// acknowledge, if any. Bytes that are not a snapshot end the stream, as a message tonic
    /// could not decode would.
    fn store(&self, bytes: &[u8]) -> Result<Option<u64>, Status> {
        DECODE_BUFFER.with_borrow_mut(|(buffer, spare)| self.store_with(bytes, buffer, spare))
    }

    fn store_with(
        &self,
        bytes: &[u8],
        buffer: &mut Snapshot,
        spare: &mut Vec<Component>,
    ) -> Result<Option<u64>, Status> {
        match decode_reusing(bytes, buffer, spare) {
            Ok(()) => {
                let seq = buffer.seq;
                // History keeps the message as it came: never encoded again.
                let entry = HistoryEntry::from_encoded(seq, bytes);
                let recorded = self.fleet.record_into(
                    &self.host,
                    self.registration.stream_id,
                    buffer,
                    Some(entry),
                    Now::current(),
                );
                let counter = match recorded {
                    Recorded::Stored => &self.counters.snapshots_stored,
                    Recorded::Duplicate => &self.counters.duplicates,
                    Recorded::StaleStream => {
                        self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                        return Ok(None);
                    }
                };
                counter.fetch_add(1, Ordering::Relaxed);
                Ok(Some(seq))
            }
            Err(DecodeError::Invalid { seq, error }) => {
                // Acknowledged anyway: the same bytes would fail again on every replay.
                tracing::warn!(host = %self.host, seq, %error, "unreadable snapshot skipped");
                self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                self.fleet
                    .skip(&self.host, self.registration.stream_id, seq);
                Ok(Some(seq))
            }
            Err(DecodeError::Wire(e)) => Err(Status::internal(e)),
        }
    }
}
