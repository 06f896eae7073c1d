//! 1 000 concurrent sidecar streams on loopback, each its own connection, as a fleet would be.

use std::time::SystemTime;

use flumewatch_e2e::*;
use flumewatch_proto::v1 as pb;
use flumewatch_proto::v1::ingest_client::IngestClient;
use flumewatch_sidecar::flume::parse_metrics;
use pb::report_request::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const STREAMS: usize = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_streams_are_accepted_and_stored() {
    let aggregator = AggregatorHandle::start().await;
    let components = parse_metrics(&sample("multi-component-agent.json")).expect("sample");
    // Open them concurrently, as a fleet reconnecting after an aggregator restart would.
    let mut opening = tokio::task::JoinSet::new();
    for i in 0..STREAMS {
        let url = aggregator.url();
        let components = components.clone();
        opening.spawn(async move { (i, open_stream(url, i, components).await) });
    }
    let mut streams = Vec::with_capacity(STREAMS);
    while let Some(opened) = opening.join_next().await {
        streams.push(opened.expect("opening task").1);
    }
    // Every stream gets its resume ack (0) and the ack of snapshot 1.
    for (_, inbound) in &mut streams {
        for expected in [0, 1] {
            let message = inbound.message().await.expect("ack").expect("stream open");
            let Some(pb::report_response::Message::Ack(ack)) = message.message else {
                panic!("not an ack")
            };
            assert_eq!(ack.acked_seq, expected);
        }
    }
    assert_eq!(aggregator.fleet.connected_sidecars(), STREAMS);
    let mut client = aggregator.client().await;
    let all = client
        .list_agents(pb::ListAgentsRequest::default())
        .await
        .expect("list")
        .into_inner()
        .agents;
    assert_eq!(all.len(), STREAMS);
    assert!(all
        .iter()
        .all(|a| status_of(a) == pb::ScrapeStatus::Ok && a.component_count == 7));
    let c3 = client
        .list_agents(pb::ListAgentsRequest {
            labels: [("cluster".to_owned(), "c3".to_owned())].into(),
            host: String::new(),
        })
        .await
        .expect("list")
        .into_inner()
        .agents;
    assert_eq!(c3.len(), STREAMS / 10);

    drop(streams);
    wait_for("every stream seen closed", || async {
        (aggregator.fleet.connected_sidecars() == 0).then_some(())
    })
    .await;
    aggregator.stop().await;
}

type Stream = (
    mpsc::Sender<pb::ReportRequest>,
    tonic::Streaming<pb::ReportResponse>,
);

/// One simulated sidecar on its own connection: Hello, then snapshot 1.
async fn open_stream(
    url: String,
    i: usize,
    components: Vec<flumewatch_proto::model::snapshot::Component>,
) -> Stream {
    let channel = tonic::transport::Endpoint::from_shared(url)
        .expect("url")
        .connect()
        .await
        .expect("connects");
    let (tx, rx) = mpsc::channel(4);
    let hello = pb::Hello {
        host: format!("load-{i:04}"),
        instance_id: format!("instance-{i}"),
        agents: vec!["a1".into()],
        labels: [("cluster".to_owned(), format!("c{}", i % 10))].into(),
        sidecar_version: "test".into(),
        poll_interval: Some(prost_types::Duration {
            seconds: 10,
            nanos: 0,
        }),
    };
    tx.send(pb::ReportRequest {
        message: Some(Message::Hello(hello)),
    })
    .await
    .expect("queued");
    let snapshot = flumewatch_testkit::snapshot::ok(1, SystemTime::now(), components);
    tx.send(pb::ReportRequest {
        message: Some(Message::Snapshot(pb::Snapshot::from(&snapshot))),
    })
    .await
    .expect("queued");
    let inbound = IngestClient::new(channel)
        .report(ReceiverStream::new(rx))
        .await
        .expect("stream opens")
        .into_inner();
    (tx, inbound)
}
