//! The `flumewatch.v1.Ingest` service: one stream per sidecar, Hello first, then snapshots
//! stored in order and acknowledged.

use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;

use flumewatch_proto::ingest_raw::ingest_server::Ingest;
use flumewatch_proto::ingest_raw::report_request::Message as Inbound;
use flumewatch_proto::ingest_raw::ReportRequest;
use flumewatch_proto::model::decode::{decode_reusing, DecodeError};
use flumewatch_proto::model::snapshot::{Component, Snapshot};
use flumewatch_proto::v1 as pb;
use tokio_stream::Stream;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::{Request, Response, Status, Streaming};

use crate::config::AckPolicy;
use crate::fleet::{Fleet, Hello, HistoryEntry, Now, Recorded, Registration};

/// A sidecar that connects but says nothing is holding a slot for no one.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Counters of what the ingest service did since start, for status and metrics.
#[derive(Debug, Default)]
pub struct IngestCounters {
    pub streams_opened: AtomicU64,
    pub snapshots_stored: AtomicU64,
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

fn ack(seq: u64) -> Result<pb::ReportResponse, Status> {
    Ok(pb::ReportResponse {
        message: Some(pb::report_response::Message::Ack(pb::Ack {
            acked_seq: seq,
        })),
    })
}

#[tonic::async_trait]
impl Ingest for IngestService {
    type ReportStream = AckStream;

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
        Ok(Response::new(AckStream {
            greeting: Some(registration.resume_after),
            inbound,
            stopping: Box::pin(self.shutdown.clone().cancelled_owned()),
            ack_timer: None,
            unacked: None,
            end: None,
            store: StreamStore {
                host,
                registration,
                fleet: self.fleet.clone(),
                counters: self.counters.clone(),
            },
            acks: self.acks,
        }))
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

/// One sidecar's stream, as the stream of acks hyper sends: polling it for the next ack reads,
/// stores and judges what the sidecar sent. No task or queue of its own: a snapshot wakes only
/// the task that writes its ack, and a sidecar that stops reading acks stops being read, which
/// slows only its own stream. Dropping it (stream ended, reset, connection gone) disconnects
/// the sidecar.
pub struct AckStream {
    /// The Hello's answer: the last sequence number already held.
    greeting: Option<u64>,
    inbound: Streaming<ReportRequest>,
    stopping: Pin<Box<WaitForCancellationFutureOwned>>,
    /// Only streams with an `ack_delay` ever arm one.
    ack_timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Stored but not yet acknowledged: the newest such sequence number, how many, and when
    /// the ack is due at the latest.
    unacked: Option<(u64, u32, Instant)>,
    end: Option<End>,
    store: StreamStore,
    acks: AckPolicy,
}

/// Why a stream ends, and the error its sender is told, if any.
struct End {
    reason: String,
    error: Option<Status>,
}

impl AckStream {
    fn finish(&mut self, reason: impl Into<String>, error: Option<Status>) {
        self.end = Some(End {
            reason: reason.into(),
            error,
        });
    }

    /// Takes one message from the sidecar; stored snapshots join the pending ack.
    fn take(&mut self, message: ReportRequest) {
        let arrived = Instant::now();
        let acked = match message.message {
            Some(Inbound::Snapshot(bytes)) => match self.store.store(&bytes) {
                Err(status) => {
                    let reason = format!("stream error: {}", status.message());
                    // Tell the sender why (an oversized message, say) instead of a clean end.
                    self.finish(reason, Some(status));
                    return;
                }
                Ok(stored) => stored,
            },
            Some(Inbound::Stats(stats)) => {
                let store = &self.store;
                store
                    .fleet
                    .record_stats(&store.host, store.registration.stream_id, stats);
                return;
            }
            Some(Inbound::Hello(_)) | None => return,
        };
        // None: superseded by a newer stream; acking would make the sidecar forget snapshots
        // nobody stored.
        let Some(seq) = acked else { return };
        self.store
            .counters
            .verdict_latency
            .0
            .observe(arrived.elapsed().as_secs_f64());
        // Acks only move forward: a skipped snapshot with a lower (or zero) sequence number
        // must not replace a higher one still waiting to be acknowledged.
        self.unacked = Some(match self.unacked {
            Some((pending, count, due)) => (pending.max(seq), count + 1, due),
            None => {
                let due = arrived + self.acks.delay;
                if !self.acks.delay.is_zero() {
                    match &mut self.ack_timer {
                        Some(timer) => timer.as_mut().reset(due),
                        None => self.ack_timer = Some(Box::pin(tokio::time::sleep_until(due))),
                    }
                }
                (seq, 1, due)
            }
        });
    }
}

impl Stream for AckStream {
    type Item = Result<pb::ReportResponse, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(seq) = this.greeting.take() {
            return Poll::Ready(Some(ack(seq)));
        }
        loop {
            if let Some(end) = &mut this.end {
                // What was stored is acknowledged on the way out, then the error if any.
                if let Some((seq, _, _)) = this.unacked.take() {
                    return Poll::Ready(Some(ack(seq)));
                }
                return Poll::Ready(end.error.take().map(Err));
            }
            if this.stopping.as_mut().poll(cx).is_ready() {
                this.finish("aggregator stopping", None);
                continue;
            }
            let flush = matches!(this.unacked, Some((_, count, _)) if count >= this.acks.every);
            // Take what is already waiting first; acknowledge when nothing is (or enough was
            // stored, or the delay is over).
            if !flush {
                match Pin::new(&mut this.inbound).poll_next(cx) {
                    Poll::Ready(Some(Ok(message))) => {
                        this.take(message);
                        continue;
                    }
                    Poll::Ready(Some(Err(status))) => {
                        let reason = format!("stream error: {}", status.message());
                        this.finish(reason, Some(status));
                        continue;
                    }
                    Poll::Ready(None) => {
                        this.finish("sidecar closed the stream", None);
                        continue;
                    }
                    Poll::Pending => {}
                }
            }
            let Some((seq, _, _)) = this.unacked else {
                return Poll::Pending;
            };
            if !flush {
                if let Some(timer) = &mut this.ack_timer {
                    if timer.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                }
            }
            this.unacked = None;
            return Poll::Ready(Some(ack(seq)));
        }
    }
}

impl Drop for AckStream {
    fn drop(&mut self) {
        let store = &self.store;
        store
            .fleet
            .disconnect(&store.host, store.registration.stream_id, Now::current());
        let reason = self.end.as_ref().map_or(
            "stream dropped (the sidecar or its connection went away)",
            |end| end.reason.as_str(),
        );
        tracing::info!(host = %store.host, %reason, "sidecar disconnected");
    }
}

/// What one stream stores into the fleet.
struct StreamStore {
    host: String,
    registration: Registration,
    fleet: Fleet,
    counters: Arc<IngestCounters>,
}

impl StreamStore {
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
