//! Hostile Flume agents: 10 000 generated payloads (huge, drip-fed, deeply nested, non-UTF-8,
//! absurd numbers, floods of components and attributes, wrong shapes, garbage) served over real
//! HTTP to the real sidecar binary, which streams to a real aggregator. Every one must arrive as
//! a snapshot that says it is bad, the sidecar must not panic, and its memory must stay bounded.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flumewatch_e2e::*;
use flumewatch_proto::model::snapshot::Snapshot;
use flumewatch_testkit::fake_flume::{FakeFlume, Reply};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::{json, Value};

const PAYLOADS: usize = 10_000;
/// A Hello names at most 64 agents; each gets its own fake Flume and a share of the payloads.
const AGENTS: usize = 64;
const MAX_BODY: usize = 32 * 1024;
const INTERVAL: &str = "200ms";
const TIMEOUT: &str = "150ms";

#[derive(Debug, Clone)]
enum Hostile {
    Body(Vec<u8>),
    /// Fine JSON, too slowly: 16 bytes every 20 ms outlasts the 150 ms timeout.
    Drip(Vec<u8>),
}

fn base() -> Value {
    serde_json::from_slice(&sample("steady-load-t15s.json")).expect("sample is JSON")
}

fn absurd_number() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("-1".to_owned()),
        Just("1e400".to_owned()),
        Just("NaN".to_owned()),
        Just("-Infinity".to_owned()),
        Just("18446744073709551616".to_owned()),
        Just("0x1F".to_owned()),
        Just("1,000".to_owned()),
        Just(String::new()),
        Just("１２".to_owned()),
        (1u64..u64::MAX).prop_map(|n| format!("{n}.5")),
        (i64::MIN..-1).prop_map(|n| n.to_string()),
        "[0-9]{30,300}".prop_map(|digits| format!("1{digits}")),
        "[a-z !@#]{1,20}",
    ]
}

fn hostile() -> impl Strategy<Value = Hostile> {
    let counters = [
        "EventPutSuccessCount",
        "EventTakeSuccessCount",
        "ChannelSize",
        "EventDrainSuccessCount",
    ];
    prop_oneof![
        // Bigger than the body limit.
        (1usize..4096).prop_map(|extra| {
            let mut v = base();
            v["CHANNEL.c1"]["Padding"] = Value::String("x".repeat(MAX_BODY + extra));
            Hostile::Body(serde_json::to_vec(&v).unwrap())
        }),
        Just(Hostile::Drip(serde_json::to_vec(&base()).unwrap())),
        // Nested past serde_json's recursion limit, as the whole body or inside a component.
        (129usize..4000, any::<bool>()).prop_map(|(depth, arrays)| {
            let (open, close) = if arrays { ("[", "]") } else { ("{\"a\":", "}") };
            Hostile::Body(format!("{}1{}", open.repeat(depth), close.repeat(depth)).into_bytes())
        }),
        (1usize..120).prop_map(|depth| {
            Hostile::Body(
                format!(
                    "{{\"CHANNEL.c1\":{{\"ChannelSize\":{}0{}}}}}",
                    "[".repeat(depth),
                    "]".repeat(depth)
                )
                .into_bytes(),
            )
        }),
        // Invalid UTF-8 somewhere in an otherwise fine response.
        (
            any::<prop::sample::Index>(),
            prop::sample::select(vec![
                vec![0xFF],
                vec![0xC0, 0x80],
                vec![0x80],
                vec![0xE2, 0x82],
                vec![0xED, 0xA0, 0x80]
            ])
        )
            .prop_map(|(at, bad)| {
                let mut body = serde_json::to_vec(&base()).unwrap();
                let at = at.index(body.len());
                body.splice(at..at, bad);
                Hostile::Body(body)
            }),
        // Absurd numbers where Flume prints counters and gauges.
        (prop::sample::select(counters.to_vec()), absurd_number()).prop_map(|(name, text)| {
            let mut v = base();
            v["CHANNEL.c1"][name] = Value::String(text);
            Hostile::Body(serde_json::to_vec(&v).unwrap())
        }),
        absurd_number().prop_map(|text| {
            let mut v = base();
            v["CHANNEL.c1"]["ChannelFillPercentage"] =
                Value::String(if text.parse::<f64>().is_ok_and(f64::is_finite) {
                    format!("{text}e999")
                } else {
                    text
                });
            Hostile::Body(serde_json::to_vec(&v).unwrap())
        }),
        // Floods: more components than a snapshot may hold, or thousands of attributes.
        (1001usize..1300).prop_map(|n| {
            let flood: serde_json::Map<String, Value> =
                (0..n).map(|i| (format!("SINK.k{i}"), json!({}))).collect();
            Hostile::Body(serde_json::to_vec(&flood).unwrap())
        }),
        (65usize..1500).prop_map(|n| {
            let attributes: serde_json::Map<String, Value> =
                (0..n).map(|i| (format!("Vendor{i}"), json!("1"))).collect();
            Hostile::Body(serde_json::to_vec(&json!({ "CHANNEL.c1": attributes })).unwrap())
        }),
        (257usize..20_000).prop_map(|len| {
            let mut v = base();
            v["CHANNEL.c1"]["VendorNote"] = Value::String("n".repeat(len));
            Hostile::Body(serde_json::to_vec(&v).unwrap())
        }),
        // Wrong shapes and garbage.
        prop::sample::select(vec![
            "[]",
            "null",
            "42",
            "\"metrics\"",
            "{\"CHANNEL.c1\": 5}",
            "{\"CHANNEL.c1\": [1,2]}",
            "",
            "   \n",
            "<html><body>Flume</body></html>",
            "{\"CHANNEL.c1\":{\"ChannelSize\":\"1\"}",
        ])
        .prop_map(|text| Hostile::Body(text.as_bytes().to_vec())),
        prop::collection::vec(any::<u8>(), 0..2048).prop_map(|mut bytes| {
            bytes.insert(0, 0xFF);
            Hostile::Body(bytes)
        }),
    ]
}

/// A snapshot that says something is wrong: a failed poll, or values that could not be read.
fn says_bad(snapshot: &Snapshot) -> bool {
    !snapshot.outcome.is_ok() || snapshot.components.iter().any(|c| !c.problems.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_hostile_payloads_are_all_reported_as_bad_scrapes() {
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    let strategy = hostile();
    let payloads: Vec<Hostile> = (0..PAYLOADS)
        .map(|_| strategy.new_tree(&mut runner).expect("generates").current())
        .collect();
    let drips = payloads
        .iter()
        .filter(|p| matches!(p, Hostile::Drip(_)))
        .count();

    let aggregator = AggregatorHandle::start().await;
    // Agent k serves payloads k, k+64, …, then the fine sample for ever.
    let good = sample("steady-load-t15s.json");
    let mut servers = Vec::new();
    let mut shares = Vec::new();
    for k in 0..AGENTS {
        let mine: Arc<Vec<Hostile>> =
            Arc::new(payloads.iter().skip(k).step_by(AGENTS).cloned().collect());
        shares.push(mine.len());
        let served = Arc::new(AtomicUsize::new(0));
        let good = good.clone();
        let server = FakeFlume::start(Arc::new(move || {
            match mine.get(served.fetch_add(1, Ordering::SeqCst)) {
                Some(Hostile::Body(body)) => Reply::Json(body.clone()),
                Some(Hostile::Drip(body)) => Reply::Drip {
                    body: body.clone(),
                    every: Duration::from_millis(20),
                },
                None => Reply::Json(good.clone()),
            }
        }))
        .await
        .expect("fake flume binds");
        servers.push(server);
    }

    let mut args = vec![
        "--aggregator".to_owned(),
        aggregator.url(),
        "--host".into(),
        "hostile-1".into(),
        "--interval".into(),
        INTERVAL.into(),
        "--timeout".into(),
        TIMEOUT.into(),
        "--max-body-bytes".into(),
        MAX_BODY.to_string(),
        "--log-level".into(),
        "error".into(),
    ];
    for (k, server) in servers.iter().enumerate() {
        args.push("--flume".into());
        args.push(format!("a{k}={}", server.url()));
    }
    let mut child: Child = Command::new(sidecar_binary())
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sidecar starts");
    let output = Output::capture(&mut child);
    let pid = child.id();

    let started = tokio::time::Instant::now();
    let mut rss = Vec::new();
    let fleet = aggregator.fleet.clone();
    let done = |fleet: &flumewatch_aggregator::fleet::Fleet| {
        let agents = fleet.agents(&Default::default(), None);
        agents.len() == AGENTS
            && agents.iter().all(|view| {
                let k: usize = view.state.agent[1..].parse().unwrap();
                view.state.received as usize > shares[k]
            })
    };
    while !done(&fleet) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the sidecar died:\n{}",
            output.so_far()
        );
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "not every payload was reported in 240 s"
        );
        if let Some(kib) = procstat::rss_kib(pid) {
            rss.push(kib);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let elapsed = started.elapsed();
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let status = child.wait().expect("sidecar exits");
    let output = output.finish();
    assert!(status.success(), "sidecar exit {status:?}:\n{output}");
    assert!(!output.contains("panicked"), "{output}");

    let mut bad = 0;
    let mut recovered = 0;
    for listed in fleet.agents(&Default::default(), None) {
        // The list leaves histories out; one agent's view has it.
        let view = fleet
            .agent(&listed.state.host, &listed.state.agent)
            .expect("listed");
        let k: usize = view.state.agent[1..].parse().unwrap();
        let history: Vec<Snapshot> = view
            .state
            .history
            .protos(usize::MAX)
            .into_iter()
            .map(|s| Snapshot::try_from(s).expect("history decodes"))
            .collect();
        assert!(history.len() > shares[k], "a{k}: history holds them all");
        for (i, snapshot) in history[..shares[k]].iter().enumerate() {
            assert!(
                says_bad(snapshot),
                "a{k}: payload #{} was taken for a good scrape: {snapshot:?}\npayload: {}",
                k + i * AGENTS,
                match &payloads[k + i * AGENTS] {
                    Hostile::Body(b) | Hostile::Drip(b) =>
                        String::from_utf8_lossy(&b[..b.len().min(600)]).into_owned(),
                }
            );
            bad += 1;
        }
        // The fine sample afterwards reads as fine again: nothing stuck from the abuse.
        if history[shares[k]..].iter().any(|s| !says_bad(s)) {
            recovered += 1;
        }
    }
    assert_eq!(bad, PAYLOADS);
    assert_eq!(recovered, AGENTS, "every agent reads fine again afterwards");
    let first = rss.iter().take(4).copied().max().unwrap_or(0);
    let peak = rss.iter().copied().max().unwrap_or(0);
    let last = rss.last().copied().unwrap_or(0);
    println!(
        "hostile payloads: {PAYLOADS} ({drips} drip-fed) in {:.1} s; bad scrapes {bad}; panics 0; \
         sidecar RSS first {:.1} MiB, peak {:.1} MiB, last {:.1} MiB ({} samples)",
        elapsed.as_secs_f64(),
        first as f64 / 1024.0,
        peak as f64 / 1024.0,
        last as f64 / 1024.0,
        rss.len()
    );
    // A 32 KiB body limit, 64 agents and a bounded buffer: memory stays small whatever comes.
    assert!(peak < 32 * 1024, "sidecar RSS peaked at {peak} KiB");
    aggregator.stop().await;
}
