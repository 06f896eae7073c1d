//! `/metrics` from a running aggregator fed by simulated agents, checked by the real
//! `promtool check metrics`; values match the agents' snapshots; a dead Flume flips
//! `flumewatch_agent_up` to 0.

use std::io::Write;
use std::process::{Command, Stdio};

use flumewatch_e2e::*;
use flumewatch_testkit::metrics::get;

/// The status and body of `GET path`; the aggregator is up, so it answers.
async fn get_ok(http: std::net::SocketAddr, path: &str) -> (u16, String) {
    get(&http.to_string(), path)
        .await
        .expect("the aggregator answers")
}

fn promtool() -> String {
    std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".into())
}

fn line<'a>(metrics: &'a str, name: &str, needles: &[&str]) -> Option<&'a str> {
    metrics
        .lines()
        .find(|l| l.starts_with(name) && needles.iter().all(|n| l.contains(n)))
}

/// The sample value at the end of a line.
fn value(line: &str) -> f64 {
    line.rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_metrics_that_match_the_snapshots() {
    let aggregator = AggregatorHandle::start().await;
    let http = aggregator.http_addr.expect("an HTTP port");
    let flume1 = ScriptedFlume::serving_sample("slow-sink-filling-t22s.json").await;
    let flume2 = ScriptedFlume::serving_sample("multi-component-agent.json").await;
    let s1 = SidecarHandle::start(sidecar_config(
        &aggregator.url(),
        "h1",
        &[("a1", flume1.url())],
        &[("cluster", "bj-log")],
    ));
    let s2 = SidecarHandle::start(sidecar_config(
        &aggregator.url(),
        "h2",
        &[("a1", flume2.url())],
        &[("cluster", "bj-log")],
    ));
    let metrics = wait_for("both agents up in /metrics", || async {
        let (_, m) = get_ok(http, "/metrics").await;
        let up = |host: &str| {
            line(&m, "flumewatch_agent_up{", &[&format!("host=\"{host}\"")])
                .is_some_and(|l| value(l) == 1.0)
        };
        (up("h1") && up("h2")).then_some(m)
    })
    .await;

    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs (the test command installs Debian's prometheus package)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}\n{metrics}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Values are the agents' own, typed: a Java double, a counter, a flag.
    let fill = line(
        &metrics,
        "flumewatch_flume_channel_fill_percentage{",
        &["host=\"h1\"", "component=\"slowmem\""],
    )
    .expect("fill series");
    assert_eq!(value(fill), 47.699999999999996, "{fill}");
    assert!(
        fill.contains("cluster=\"bj-log\"") && fill.contains("kind=\"channel\""),
        "{fill}"
    );
    let puts = line(
        &metrics,
        "flumewatch_flume_event_put_success_count_total{",
        &["host=\"h1\"", "component=\"blockedmem\""],
    )
    .expect("counter series");
    assert_eq!(value(puts), 1000.0, "{puts}");
    let open = line(
        &metrics,
        "flumewatch_flume_open{",
        &["host=\"h2\"", "component=\"file1\""],
    )
    .expect("flag series");
    assert_eq!(value(open), 1.0, "{open}");
    assert!(
        line(
            &metrics,
            "flumewatch_flume_channel_fill_percentage{",
            &["component=\"pseudo1\""]
        )
        .is_none(),
        "capacity 0: unknown, not exported"
    );
    assert!(
        line(&metrics, "flumewatch_sidecar_connected{", &["host=\"h1\""])
            .is_some_and(|l| value(l) == 1.0)
    );
    assert!(metrics.contains("flumewatch_rule_evaluation_seconds_bucket"));
    assert!(line(&metrics, "flumewatch_snapshots_stored_total", &[]).is_some());
    assert!(
        line(&metrics, "flumewatch_ingest_acks_sent_total", &[]).is_some_and(|l| value(l) >= 1.0)
    );

    // Flume on h2 dies: its agent is down and its values disappear rather than go stale.
    flume2.server.go_down();
    let after = wait_for("h2 down in /metrics", || async {
        let (_, m) = get_ok(http, "/metrics").await;
        line(&m, "flumewatch_agent_up{", &["host=\"h2\""])
            .is_some_and(|l| value(l) == 0.0)
            .then_some(m)
    })
    .await;
    assert!(
        line(&after, "flumewatch_flume_open{", &["host=\"h2\""]).is_none(),
        "no stale values for a down agent"
    );
    assert!(line(&after, "flumewatch_agent_up{", &["host=\"h1\""]).is_some_and(|l| value(l) == 1.0));

    // Every series the Grafana dashboard in deploy/ queries is one the aggregator exports.
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/grafana/flumewatch-dashboard.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| {
            p["targets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["expr"].as_str().unwrap().to_owned())
        })
        .collect();
    assert!(exprs.len() >= 10);
    let mut checked = 0;
    for expr in &exprs {
        for (i, _) in expr.match_indices("flumewatch_") {
            let name: String = expr[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let in_metrics = metrics.lines().any(|l| {
                l.starts_with(&format!("# TYPE {name} "))
                    || l.starts_with(&format!("{name}{{"))
                    || l.starts_with(&format!("{name} "))
            });
            // Per-receiver series exist once a receiver is configured (this aggregator has none);
            // alert counts once an alert exists.
            let conditional = name.contains("notifications")
                || name.contains("dingtalk")
                || name == "flumewatch_alerts";
            assert!(
                in_metrics || conditional,
                "the dashboard queries {name}, which /metrics does not export"
            );
            checked += 1;
        }
    }
    assert!(checked >= 15, "{checked}");

    assert_eq!(get_ok(http, "/-/healthy").await.0, 200);
    assert_eq!(get_ok(http, "/-/ready").await.0, 200);
    s1.stop().await;
    s2.stop().await;
    aggregator.stop().await;
}
