//! 1 000 sidecars connecting and disconnecting in churn against the real aggregator binary:
//! after the churn its memory is back where it was after the first round (no growth per
//! connection) and its runtime holds no more tasks than before (no task leak).

mod common;

use std::time::Duration;

use tokio::time::Instant;

use common::*;
use flumewatch_proto::v1 as pb;
use flumewatch_proto::v1::ingest_client::IngestClient;
use pb::report_request::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const SIDECARS: usize = 1000;
/// The first rounds fill each agent's history (2 snapshots here) and let the allocator settle
/// (it plateaus within about five rounds): the baseline is taken after them.
const WARM_UP: usize = 5;
const ROUNDS: usize = 10;
const CONCURRENT: usize = 100;

/// One sidecar's visit: connect, Hello, one snapshot, wait for its ack, hang up.
async fn visit(url: String, host: String, seq: u64, body: std::sync::Arc<Vec<u8>>) {
    let Ok(mut client) = IngestClient::connect(url).await else {
        return;
    };
    let (tx, rx) = mpsc::channel(4);
    let hello = pb::Hello {
        host: host.clone(),
        instance_id: format!("{host}-{seq}"),
        agents: vec!["a1".into()],
        sidecar_version: "churn".into(),
        ..Default::default()
    };
    let components = flumewatch_sidecar::flume::parse_metrics(&body).unwrap();
    let snapshot = flumewatch_testkit::snapshot::ok(1, std::time::SystemTime::now(), components);
    for message in [
        Message::Hello(hello),
        Message::Snapshot(pb::Snapshot::from(&snapshot)),
    ] {
        tx.send(pb::ReportRequest {
            message: Some(message),
        })
        .await
        .unwrap();
    }
    let Ok(response) = client.report(ReceiverStream::new(rx)).await else {
        return;
    };
    let mut acks = response.into_inner();
    while let Ok(Some(ack)) = acks.message().await {
        if matches!(ack.message, Some(pb::report_response::Message::Ack(ref a)) if a.acked_seq >= 1)
        {
            break;
        }
    }
}

async fn round(url: &str, round: usize, body: &std::sync::Arc<Vec<u8>>) {
    let semaphore = std::sync::Arc::new(tokio::sync::Semaphore::new(CONCURRENT));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..SIDECARS {
        let permit = semaphore.clone().acquire_owned().await.unwrap();
        let (url, body) = (url.to_owned(), body.clone());
        tasks.spawn(async move {
            visit(url, format!("churn-{i:04}"), round as u64, body).await;
            drop(permit);
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// RSS and alive tasks once every stream has ended.
async fn settled(http: &str) -> (f64, f64) {
    wait_for("every stream closed", || async {
        (metric(http, "flumewatch_ingest_streams_connected").await? == 0.0).then_some(())
    })
    .await;
    // Stream tasks end just after the count drops; take the lowest of a few readings.
    let mut best: Option<(f64, f64)> = None;
    for _ in 0..10 {
        let rss = metric(http, "process_resident_memory_bytes").await.unwrap();
        let tasks = metric(http, "flumewatch_runtime_alive_tasks")
            .await
            .unwrap();
        best = Some(match best {
            Some((r, t)) => (r.min(rss), t.min(tasks)),
            None => (rss, tasks),
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    best.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_sidecars_churning_leave_no_memory_or_tasks_behind() {
    let dir = fresh_dir("fw-churn");
    let (port, http_port) = (free_port(), free_port());
    let url = format!("http://127.0.0.1:{port}");
    let http = format!("127.0.0.1:{http_port}");
    // Windowed rules keep per-agent buckets for up to their window: memory that grows with
    // time, not with connections. One plain rule keeps this about the connections.
    std::fs::write(
        dir.join("rules.toml"),
        "use_defaults = false\n[[rule]]\nname = \"ChannelFilling\"\nseverity = \"warning\"\nkinds = [\"channel\"]\n\
         condition = { value = \"ChannelFillPercentage\", op = \">=\", threshold = 80 }\n",
    )
    .unwrap();
    let config = dir.join("aggregator.toml");
    std::fs::write(
        &config,
        format!(
            "grpc_listen = \"127.0.0.1:{port}\"\nhttp_listen = \"{http}\"\nhistory = 2\nrules = \"rules.toml\"\nstate_dir = {:?}\n",
            dir.join("state")
        ),
    )
    .unwrap();
    let mut aggregator = spawn(&config);
    wait_for("the aggregator to answer", || {
        metric(&http, "flumewatch_runtime_alive_tasks")
    })
    .await;
    let (idle_rss, idle_tasks) = settled(&http).await;
    let body = std::sync::Arc::new(body_with_fill(10));

    let started = Instant::now();
    for r in 1..=WARM_UP {
        round(&url, r, &body).await;
    }
    let (base_rss, base_tasks) = settled(&http).await;
    for r in WARM_UP + 1..=ROUNDS {
        round(&url, r, &body).await;
    }
    let churn = started.elapsed();
    let (end_rss, end_tasks) = settled(&http).await;
    let opened = metric(&http, "flumewatch_ingest_streams_opened_total")
        .await
        .or(metric(&http, "flumewatch_ingest_streams_opened").await)
        .unwrap();
    let mib = |b: f64| b / (1 << 20) as f64;
    println!(
        "churn: {} streams opened and closed by {SIDECARS} sidecars in {:.1} s; aggregator RSS idle {:.1} MiB, \
         after round {WARM_UP} (baseline: 1000 agents known, histories full) {:.1} MiB, after round {ROUNDS} {:.1} MiB; \
         alive tasks idle {idle_tasks}, \
         baseline {base_tasks}, end {end_tasks}",
        opened,
        churn.as_secs_f64(),
        mib(idle_rss),
        mib(base_rss),
        mib(end_rss),
    );
    assert!(opened >= (SIDECARS * ROUNDS) as f64, "{opened}");
    assert!(
        end_tasks <= base_tasks,
        "tasks leaked: {base_tasks} after round {WARM_UP}, {end_tasks} after round {ROUNDS}"
    );
    // Five more rounds, 5 000 connections: back at the baseline give or take the allocator's
    // ±1 MiB; a leak of 1 KiB per connection would show as 5 MiB.
    assert!(
        end_rss <= base_rss + 3.0 * (1 << 20) as f64,
        "memory grew with churn: {:.1} MiB → {:.1} MiB",
        mib(base_rss),
        mib(end_rss)
    );
    aggregator.kill().ok();
    aggregator.wait().ok();
}
