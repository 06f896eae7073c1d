//! One connected stream to one aggregator: Hello, its resume point, then snapshots in order and
//! acks back.

use flumewatch_proto::v1 as pb;
use pb::report_response::Message as Inbound;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use super::pacing::{Pacing, Queued};
use super::wire::{self, Message as Outbound};
use super::{Uplink, DRAIN_GRACE};

/// Outbound messages in flight inside this process; the buffer holds the rest, so a small
/// queue is enough and a stalled stream stops pulling from the buffer instead of copying it.
const OUTBOUND_QUEUE: usize = 32;

/// Why a stream ended. Every variant is retryable: the uplink reconnects after a backoff.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("cannot connect: {0}")]
    Connect(#[from] tonic::transport::Error),
    #[error("aggregator refused the stream: {0}")]
    Refused(tonic::Status),
    #[error("stream failed: {0}")]
    Stream(tonic::Status),
    #[error("aggregator closed the stream")]
    Closed,
    #[error("stopping before a connection was made")]
    Stopped,
}

/// Runs one stream until it breaks (error) or the sidecar stops and has drained (Ok).
pub(super) async fn run(
    uplink: &Uplink,
    was_connected: &mut bool,
    shutdown: &CancellationToken,
) -> Result<(), SessionError> {
    let channel = if shutdown.is_cancelled() {
        // The last attempt to hand over the buffer while stopping; the caller bounds it.
        uplink.endpoint.connect().await?
    } else {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Err(SessionError::Stopped),
            channel = uplink.endpoint.connect() => channel?,
        }
    };
    uplink
        .connects
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
    let opening = [
        Outbound::Hello(uplink.hello()),
        Outbound::Stats(uplink.stats()),
    ];
    for message in opening {
        // Cannot fail: the receiver is alive and the queue has room for both.
        let _ = tx.try_send(wire::ReportRequest {
            message: Some(message),
        });
    }
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    if let Some(token) = &uplink.token {
        let value = format!("Bearer {}", token.expose()).parse().map_err(|_| {
            SessionError::Refused(tonic::Status::invalid_argument(
                "the token is not a valid header value",
            ))
        })?;
        request.metadata_mut().insert("authorization", value);
    }
    let mut inbound = wire::report(channel, request)
        .await
        .map_err(SessionError::Refused)?
        .into_inner();

    // The aggregator answers the Hello with what it already holds of this instance.
    let mut sent = match next_ack(&mut inbound).await? {
        Some(resume) => resume,
        None => return Err(SessionError::Closed),
    };
    uplink.buffer.ack(sent);
    *was_connected = true;
    tracing::info!(
        aggregator = %uplink.address,
        resume_after = sent,
        buffered = uplink.buffer.len(),
        "connected to the aggregator"
    );

    let mut newest = uplink.buffer.subscribe();
    let mut drain_deadline: Option<Instant> = None;
    let mut pacing = Pacing::new(uplink.stats_every, Instant::now());
    // Both timers live as long as the stream and are moved, not made anew each turn.
    let release = sleep_until(far_future());
    tokio::pin!(release);
    let stats_alone = sleep_until(pacing.stats_alone_at());
    tokio::pin!(stats_alone);
    loop {
        if drain_deadline.is_some() && uplink.buffer.is_empty() {
            return Ok(());
        }
        let next = uplink.buffer.next_after(sent);
        let has_next = next.is_some();
        // Stopping: whatever is buffered goes now.
        let holding = pacing.holding_until().is_some() && drain_deadline.is_none();
        let deadline = drain_deadline.unwrap_or_else(far_future);
        let mut send_stats = false;
        tokio::select! {
            biased;
            _ = shutdown.cancelled(), if drain_deadline.is_none() => {
                drain_deadline = Some(Instant::now() + DRAIN_GRACE);
            }
            _ = sleep_until(deadline), if drain_deadline.is_some() => {
                tracing::warn!(aggregator = %uplink.address, unsent = uplink.buffer.len(), "stopping before the aggregator acknowledged every snapshot");
                return Ok(());
            }
            ack = next_ack(&mut inbound) => match ack? {
                Some(seq) => uplink.buffer.ack(seq),
                None => return Err(SessionError::Closed),
            },
            _ = &mut release, if holding => send_stats = pacing.release(Instant::now()),
            permit = tx.reserve(), if has_next && !holding => {
                let Ok(permit) = permit else { return Err(SessionError::Closed) };
                let snapshot = next.expect("guarded by has_next");
                sent = snapshot.seq;
                permit.send(wire::ReportRequest { message: Some(wire::snapshot(snapshot)) });
            }
            _ = newest.changed(), if !has_next || holding => {
                // Pushes seen while sending were sent with the rest: only the unsent count.
                let waiting = newest.borrow_and_update().saturating_sub(sent);
                match pacing.queued(waiting, uplink.roster.len(), Instant::now()) {
                    Queued::Nothing => {}
                    Queued::HoldUntil(until) => release.as_mut().reset(until),
                    Queued::SendNow { with_stats } => send_stats = with_stats,
                }
            }
            _ = &mut stats_alone => send_stats = true,
        }
        if send_stats {
            // Stats are advisory: skip a beat rather than wait behind snapshots.
            let _ = tx.try_send(wire::ReportRequest {
                message: Some(Outbound::Stats(uplink.stats())),
            });
            pacing.stats_sent(Instant::now());
            stats_alone.as_mut().reset(pacing.stats_alone_at());
        }
    }
}

/// The next acknowledged sequence number; `None` when the aggregator ended the stream.
async fn next_ack(
    inbound: &mut tonic::Streaming<pb::ReportResponse>,
) -> Result<Option<u64>, SessionError> {
    loop {
        match inbound.message().await.map_err(SessionError::Stream)? {
            None => return Ok(None),
            Some(pb::ReportResponse {
                message: Some(Inbound::Ack(ack)),
            }) => return Ok(Some(ack.acked_seq)),
            // A newer aggregator may send messages this sidecar does not know: skip them.
            Some(_) => continue,
        }
    }
}

fn far_future() -> Instant {
    Instant::now() + std::time::Duration::from_secs(365 * 24 * 3600)
}
