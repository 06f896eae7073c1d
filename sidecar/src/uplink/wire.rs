//! The ingest stream as this sidecar sends it: `flumewatch.v1.ReportRequest` with each snapshot
//! carried as the bytes the [`Fanout`](super::Fanout) encoded it to once at push, so a
//! send neither decodes nor re-encodes it.
//!
//! On the wire a length-delimited field is the same whether the schema calls it a message or
//! bytes: `flumewatch_proto::ingest_raw` is generated from the same contract with the snapshot
//! as bytes, and anything else decodes these as the generated [`pb::ReportRequest`].

use flumewatch_proto::ingest_raw::ingest_client::IngestClient;
use flumewatch_proto::v1 as pb;
use prost::Message as _;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use super::buffer::Outgoing;

pub(super) use flumewatch_proto::ingest_raw::report_request::Message;
pub(super) use flumewatch_proto::ingest_raw::ReportRequest;

/// `flumewatch.v1.Snapshot`'s `backfill` field alone. Appended to an encoded snapshot (which the
/// buffer encodes with it unset) it sets the flag: the last occurrence of a scalar field wins.
#[derive(Clone, PartialEq, prost::Message)]
struct BackfillFlag {
    #[prost(bool, tag = "7")]
    backfill: bool,
}

/// A buffered snapshot as it is sent; shares its bytes unless it has to be marked backfill.
pub(super) fn snapshot(snapshot: Outgoing) -> Message {
    if !snapshot.backfill {
        return Message::Snapshot(snapshot.encoded);
    }
    let flag = BackfillFlag { backfill: true }.encode_to_vec();
    Message::Snapshot([snapshot.encoded.as_ref(), &flag].concat().into())
}

/// Opens `Ingest/Report` with the generated client of the bytes-carrying twin.
pub(super) async fn report(
    channel: Channel,
    request: tonic::Request<ReceiverStream<ReportRequest>>,
) -> Result<tonic::Response<tonic::Streaming<pb::ReportResponse>>, tonic::Status> {
    IngestClient::new(channel).report(request).await
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use flumewatch_proto::model::snapshot::{ScrapeOutcome, Snapshot};
    use pb::report_request::Message as Generated;

    use super::*;
    use crate::uplink::{Fanout, ReplayBuffer};

    /// What the aggregator reads from the bytes this sidecar writes.
    fn as_received(message: Message) -> Option<Generated> {
        let bytes = ReportRequest {
            message: Some(message),
        }
        .encode_to_vec();
        pb::ReportRequest::decode(bytes.as_slice())
            .expect("decodes as the generated ReportRequest")
            .message
    }

    #[test]
    fn buffered_snapshots_arrive_as_the_generated_type() {
        let body = flumewatch_testkit::fixtures::sample("multi-component-agent.json");
        let components = crate::flume::parse_metrics(&body).expect("fixture parses");
        let buffer = ReplayBuffer::new(10);
        let fanout = Fanout::new(vec![buffer.clone()]);
        let snapshot = |agent: &str| Snapshot {
            seq: 0,
            agent: agent.into(),
            scraped_at: SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            scrape_duration: Duration::from_millis(12),
            outcome: ScrapeOutcome::Ok,
            components: components.clone(),
            backfill: false,
        };
        fanout.push(snapshot("a1"));
        fanout.push(snapshot("a1"));
        for (after, backfill) in [(0, true), (1, false)] {
            let outgoing = buffer.next_after(after).expect("queued");
            let mut expected = snapshot("a1");
            expected.seq = after + 1;
            expected.backfill = backfill;
            assert_eq!(
                as_received(super::snapshot(outgoing)),
                Some(Generated::Snapshot(pb::Snapshot::from(&expected))),
                "after {after}"
            );
        }
    }

    #[test]
    fn hello_and_stats_arrive_as_the_generated_type() {
        let hello = pb::Hello {
            host: "h1".into(),
            instance_id: "0123456789abcdef".into(),
            agents: vec!["a1".into()],
            ..pb::Hello::default()
        };
        assert_eq!(
            as_received(Message::Hello(hello.clone())),
            Some(Generated::Hello(hello))
        );
        let stats = pb::SidecarStats {
            polls: 3,
            dropped: 1,
            ..pb::SidecarStats::default()
        };
        assert_eq!(
            as_received(Message::Stats(stats)),
            Some(Generated::Stats(stats))
        );
    }
}
