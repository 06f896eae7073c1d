//! Hostile senders on the ingest port (real tonic streams over loopback): oversized messages,
//! floods of agents, labels and components, overlong text. Each is refused (the stream) or
//! skipped and counted (the snapshot), nothing of it is stored, and the aggregator keeps
//! serving everyone else.

use std::sync::atomic::Ordering;

use flumewatch_e2e::*;
use flumewatch_proto::v1 as pb;
use flumewatch_proto::v1::ingest_client::IngestClient;
use pb::report_request::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

fn hello(host: &str) -> pb::Hello {
    pb::Hello {
        host: host.into(),
        instance_id: format!("{host}-i"),
        agents: vec!["a1".into()],
        sidecar_version: "hostile".into(),
        ..Default::default()
    }
}

fn snapshot(seq: u64, components: Vec<pb::Component>) -> pb::ReportRequest {
    pb::ReportRequest {
        message: Some(Message::Snapshot(pb::Snapshot {
            seq,
            agent: "a1".into(),
            scraped_at: Some(prost_types::Timestamp {
                seconds: 1_795_600_000,
                nanos: 0,
            }),
            outcome: Some(pb::ScrapeOutcome {
                status: pb::ScrapeStatus::Ok as i32,
                ..Default::default()
            }),
            components,
            ..Default::default()
        })),
    }
}

fn channel(name: &str) -> pb::Component {
    pb::Component {
        kind: pb::ComponentKind::Channel as i32,
        kind_name: "CHANNEL".into(),
        name: name.into(),
        ..Default::default()
    }
}

/// Opens a stream with `hello`; returns the sender and the first error the stream ends with.
async fn open(
    url: &str,
    hello: pb::Hello,
) -> (
    mpsc::Sender<pb::ReportRequest>,
    tokio::task::JoinHandle<Option<tonic::Status>>,
) {
    let (tx, rx) = mpsc::channel(4);
    tx.send(pb::ReportRequest {
        message: Some(Message::Hello(hello)),
    })
    .await
    .unwrap();
    let mut client = IngestClient::connect(url.to_owned())
        .await
        .unwrap()
        .max_encoding_message_size(64 << 20);
    let ended = tokio::spawn(async move {
        let mut acks = match client.report(ReceiverStream::new(rx)).await {
            Ok(response) => response.into_inner(),
            Err(status) => return Some(status),
        };
        loop {
            match acks.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return None,
                Err(status) => return Some(status),
            }
        }
    });
    (tx, ended)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_streams_are_refused_and_hostile_snapshots_skipped() {
    let aggregator = AggregatorHandle::start().await;
    let url = aggregator.url();

    // Hellos over the limits: refused with InvalidArgument, nothing registered.
    let mut labels = hello("flood-labels");
    labels.labels = (0..33).map(|i| (format!("k{i}"), "v".into())).collect();
    let mut agents = hello("flood-agents");
    agents.agents = (0..65).map(|i| format!("a{i}")).collect();
    let mut long_value = hello("long-label");
    long_value.labels.insert("cluster".into(), "x".repeat(300));
    let long_host = hello(&"h".repeat(300));
    for bad in [labels, agents, long_value, long_host] {
        let (_tx, ended) = open(&url, bad).await;
        let status = ended.await.unwrap().expect("refused");
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "{}",
            status.message()
        );
    }

    // One message over 4 MiB: the stream fails, the aggregator does not.
    let (tx, ended) = open(&url, hello("huge")).await;
    let mut big = channel("c1");
    big.unknown.insert("Blob".into(), "b".repeat(5 << 20));
    tx.send(snapshot(1, vec![big])).await.unwrap();
    let status = ended.await.unwrap().expect("the stream fails");
    assert!(
        matches!(
            status.code(),
            tonic::Code::OutOfRange | tonic::Code::ResourceExhausted | tonic::Code::Internal
        ),
        "{status:?}"
    );

    // Under 4 MiB but over the snapshot limits: skipped and counted; the stream stays usable.
    let rejected_before = aggregator.counters.rejected.load(Ordering::Relaxed);
    let (tx, _ended) = open(&url, hello("floody")).await;
    let flood: Vec<pb::Component> = (0..5000).map(|i| channel(&format!("c{i}"))).collect();
    tx.send(snapshot(1, flood)).await.unwrap();
    let mut many_unknown = channel("c1");
    many_unknown.unknown = (0..1000).map(|i| (format!("u{i}"), "1".into())).collect();
    tx.send(snapshot(2, vec![many_unknown])).await.unwrap();
    let mut long_text = channel("c1");
    long_text.unknown.insert("Note".into(), "n".repeat(100_000));
    tx.send(snapshot(3, vec![long_text])).await.unwrap();
    tx.send(snapshot(4, vec![channel(&"n".repeat(1000))]))
        .await
        .unwrap();
    tx.send(snapshot(5, vec![channel("fine")])).await.unwrap();
    let fleet = aggregator.fleet.clone();
    let view = wait_for("the fine snapshot after the hostile ones", || async {
        let view = fleet.agent("floody", "a1").ok()?;
        (view.state.latest.as_ref()?.seq == 5).then_some(view)
    })
    .await;
    assert_eq!(
        aggregator.counters.rejected.load(Ordering::Relaxed) - rejected_before,
        4,
        "four snapshots skipped and counted"
    );
    assert_eq!(view.state.history.len(), 1, "only the fine one is kept");
    assert_eq!(
        view.state.latest.as_ref().unwrap().snapshot().components[0].name,
        "fine"
    );

    // Everyone else is still served.
    let mut client = aggregator.client().await;
    let agents = client
        .list_agents(pb::ListAgentsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .agents;
    let hosts: Vec<&str> = agents.iter().map(|a| a.host.as_str()).collect();
    assert_eq!(
        hosts,
        ["floody", "huge"],
        "no refused Hello left an agent behind"
    );
    let huge = agents.iter().find(|a| a.host == "huge").unwrap();
    assert!(
        huge.last_outcome.is_none(),
        "the oversized snapshot was not stored"
    );
    println!(
        "hostile gRPC: 4 hellos refused (InvalidArgument), a 5 MiB message ended its stream ({:?}), \
         4 over-limit snapshots skipped and counted, the aggregator kept serving",
        status.code()
    );
    aggregator.stop().await;
}
