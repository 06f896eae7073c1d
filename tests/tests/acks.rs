//! Ack coalescing on a real Ingest stream (real aggregator, real tonic client over loopback):
//! a burst of snapshots already waiting is stored and acknowledged together, never more than
//! `ack_every` per ack, and every snapshot is acknowledged in the end.

use flumewatch_e2e::*;
use flumewatch_proto::v1 as pb;
use flumewatch_proto::v1::ingest_client::IngestClient;
use pb::report_request::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

fn snapshot(seq: u64) -> pb::ReportRequest {
    pb::ReportRequest {
        message: Some(Message::Snapshot(pb::Snapshot {
            seq,
            agent: "a1".into(),
            scraped_at: Some(prost_types::Timestamp {
                seconds: 1_795_600_000 + seq as i64,
                nanos: 0,
            }),
            outcome: Some(pb::ScrapeOutcome {
                status: pb::ScrapeStatus::Ok as i32,
                ..Default::default()
            }),
            components: vec![pb::Component {
                kind: pb::ComponentKind::Channel as i32,
                kind_name: "CHANNEL".into(),
                name: "c1".into(),
                counters: vec![pb::CounterValue {
                    counter: pb::Counter::EventPutSuccessCount as i32,
                    value: seq * 10,
                }],
                ..Default::default()
            }],
            ..Default::default()
        })),
    }
}

/// Sends `count` snapshots in one burst; returns every ack's sequence number, in order, until
/// the last one is acknowledged.
async fn burst(aggregator: &AggregatorHandle, host: &str, count: u64) -> Vec<u64> {
    let (tx, rx) = mpsc::channel(count as usize + 1);
    tx.send(pb::ReportRequest {
        message: Some(Message::Hello(pb::Hello {
            host: host.into(),
            instance_id: format!("{host}-i"),
            agents: vec!["a1".into()],
            sidecar_version: "acks-test".into(),
            ..Default::default()
        })),
    })
    .await
    .unwrap();
    let mut client = IngestClient::connect(aggregator.url()).await.unwrap();
    let mut acks = client
        .report(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    // The resume point comes first.
    acks.message().await.unwrap().expect("resume point");
    for seq in 1..=count {
        tx.send(snapshot(seq)).await.unwrap();
    }
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while seen.last() != Some(&count) {
        let message = tokio::time::timeout_at(deadline, acks.message())
            .await
            .expect("every snapshot acknowledged within 20 s")
            .unwrap()
            .expect("stream open");
        if let Some(pb::report_response::Message::Ack(ack)) = message.message {
            seen.push(ack.acked_seq);
        }
    }
    seen
}

#[tokio::test]
async fn a_burst_is_acknowledged_in_batches_of_at_most_ack_every() {
    // A long delay makes the batching visible and exact: acks go out at 32, 64 and 96 stored,
    // and the last four once the delay is over.
    let aggregator =
        AggregatorHandle::start_toml("ack_every = 32\nack_delay = \"1s\"\nhistory = 200\n").await;
    let acks = burst(&aggregator, "acks-1", 100).await;
    println!("acks with ack_every 32, ack_delay 1s: {acks:?}");
    assert_eq!(acks, vec![32, 64, 96, 100]);
    let detail = aggregator.fleet.agent("acks-1", "a1").expect("agent");
    assert_eq!(detail.state.received, 100, "every snapshot stored");
    aggregator.stop().await;
}

#[tokio::test]
async fn by_default_acks_follow_the_stream_and_never_cover_more_than_32() {
    let aggregator = AggregatorHandle::start().await;
    let acks = burst(&aggregator, "acks-2", 300).await;
    println!("{} acks for 300 snapshots: {acks:?}", acks.len());
    let mut previous = 0;
    for seq in &acks {
        assert!(*seq > previous, "acks only move forward: {acks:?}");
        assert!(
            seq - previous <= 32,
            "one ack covered more than 32: {acks:?}"
        );
        previous = *seq;
    }
    assert_eq!(previous, 300);
    aggregator.stop().await;
}
