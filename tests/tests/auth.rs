//! Sidecar tokens (optionally bound to a host) on the ingest stream and an admin token for
//! silences, over tonic and the real grpcurl; read-only queries stay open unless
//! `protect_queries` is set.

use std::process::Command;
use std::sync::atomic::Ordering;

use flumewatch_e2e::*;
use flumewatch_proto::v1 as pb;

const TOKEN_A: &str = "sidecar-token-aaaaaaaa";
const TOKEN_B: &str = "sidecar-token-bbbbbbbb";
const ADMIN: &str = "admin-token-0123456789";

fn grpcurl_code(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(grpcurl())
        .args(args)
        .output()
        .expect("grpcurl runs");
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_enrolled_sidecars_report_and_only_operators_silence() {
    let dir = TempDir::new("auth");
    std::fs::write(
        dir.join("tokens"),
        format!("# enrolled sidecars\n{TOKEN_A}\n{TOKEN_B} h2\n"),
    )
    .unwrap();
    std::fs::write(dir.join("admin"), format!("{ADMIN}\n")).unwrap();
    let aggregator = AggregatorHandle::start_toml(&format!(
        "ingest_tokens_file = {:?}\nadmin_token_file = {:?}\nstate_dir = {:?}\n",
        dir.join("tokens"),
        dir.join("admin"),
        dir.join("state")
    ))
    .await;
    let flume = ScriptedFlume::serving_sample("idle-agent-exec-memory-http.json").await;
    let sidecar = |host: &str, token: Option<&str>| {
        let mut config = sidecar_config(&aggregator.url(), host, &[("a1", flume.url())], &[]);
        config.token = token.map(str::to_owned);
        SidecarHandle::start(config)
    };
    let anonymous = sidecar("h0", None);
    let a = sidecar("h1", Some(TOKEN_A));
    let b_wrong_host = sidecar("h3", Some(TOKEN_B));
    let b = sidecar("h2", Some(TOKEN_B));
    let fleet = aggregator.fleet.clone();
    wait_for("h1 and h2 reporting", || async {
        (fleet.agent("h1", "a1").is_ok() && fleet.agent("h2", "a1").is_ok()).then_some(())
    })
    .await;
    wait_for("the anonymous and the misbound sidecar refused", || async {
        (aggregator.counters.auth_rejected.load(Ordering::Relaxed) >= 2).then_some(())
    })
    .await;
    assert!(fleet.agent("h0", "").is_err(), "no token, no report");
    assert!(
        fleet.agent("h3", "").is_err(),
        "a token bound to h2 cannot report for h3"
    );

    let addr = aggregator.addr.to_string();
    let checks = tokio::task::spawn_blocking(move || {
        let addr = addr.as_str();
        let (open, out) = grpcurl_code(&["-plaintext", addr, "flumewatch.v1.Fleet/ListAgents"]);
        assert_eq!(open, Some(0), "read-only stays open: {out}");
        let silence = r#"{"matchers":[{"name":"host","value":"h1"}],"duration":"600s","creator":"ops","comment":"test"}"#;
        let (denied, out) = grpcurl_code(&[
            "-plaintext",
            "-d",
            silence,
            addr,
            "flumewatch.v1.Fleet/CreateSilence",
        ]);
        assert_eq!(
            denied,
            Some(64 + 16),
            "Unauthenticated without the admin token: {out}"
        );
        let header = format!("authorization: Bearer {ADMIN}");
        let (allowed, out) = grpcurl_code(&[
            "-plaintext",
            "-H",
            &header,
            "-d",
            silence,
            addr,
            "flumewatch.v1.Fleet/CreateSilence",
        ]);
        assert_eq!(allowed, Some(0), "{out}");
        let hello = r#"{"hello":{"host":"intruder","instanceId":"x"}}"#;
        let (ingest, out) = grpcurl_code(&[
            "-plaintext",
            "-max-time",
            "5",
            "-d",
            hello,
            addr,
            "flumewatch.v1.Ingest/Report",
        ]);
        assert_eq!(
            ingest,
            Some(64 + 16),
            "grpcurl without a sidecar token is refused: {out}"
        );
        assert!(!out.contains(TOKEN_A) && !out.contains(ADMIN));
    });
    checks.await.expect("grpcurl checks");
    assert!(fleet.agent("intruder", "").is_err());
    for s in [anonymous, a, b_wrong_host, b] {
        s.stop().await;
    }
    aggregator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protected_queries_need_a_token_but_health_stays_open() {
    const QUERY: &str = "query-token-0123456789";
    let dir = TempDir::new("auth-q");
    std::fs::write(dir.join("admin"), format!("{ADMIN}\n")).unwrap();
    std::fs::write(dir.join("query"), format!("{QUERY}\n")).unwrap();
    let aggregator = AggregatorHandle::start_toml(&format!(
        "protect_queries = true\nadmin_token_file = {:?}\nquery_token_file = {:?}\nstate_dir = {:?}\n",
        dir.join("admin"),
        dir.join("query"),
        dir.join("state")
    ))
    .await;

    let mut fleet = pb::fleet_client::FleetClient::connect(aggregator.url())
        .await
        .unwrap();
    let denied = fleet
        .list_agents(pb::ListAgentsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::Unauthenticated, "{denied:?}");
    for token in [QUERY, ADMIN] {
        let mut request = tonic::Request::new(pb::ListAgentsRequest::default());
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        fleet
            .list_agents(request)
            .await
            .expect("a listed token reads");
    }

    let addr = aggregator.addr.to_string();
    tokio::task::spawn_blocking(move || {
        let addr = addr.as_str();
        let query = format!("authorization: Bearer {QUERY}");
        let (code, out) = grpcurl_code(&["-plaintext", addr, "list"]);
        assert_eq!(code, Some(1), "reflection is protected too: {out}");
        assert!(out.contains("Unauthenticated") || out.contains("queries need a token"), "{out}");
        let (code, out) = grpcurl_code(&["-plaintext", "-H", &query, addr, "list"]);
        assert_eq!(code, Some(0), "{out}");
        assert!(out.contains("flumewatch.v1.Fleet"), "{out}");
        let (code, out) = grpcurl_code(&["-plaintext", "-H", &query, addr, "flumewatch.v1.Fleet/ListAgents"]);
        assert_eq!(code, Some(0), "{out}");
        let (code, out) = grpcurl_code(&["-plaintext", "-H", "authorization: Bearer query-token-wrong-000", addr, "flumewatch.v1.Fleet/ListAgents"]);
        // grpcurl fails at reflection already.
        assert_eq!(code, Some(1), "{out}");
        assert!(out.contains("wrong query token"), "a wrong token is refused: {out}");
        let silence = r#"{"matchers":[{"name":"host","value":"h1"}],"duration":"600s","creator":"ops","comment":"test"}"#;
        let (code, out) = grpcurl_code(&["-plaintext", "-H", &query, "-d", silence, addr, "flumewatch.v1.Fleet/CreateSilence"]);
        assert_eq!(code, Some(64 + 16), "the query token cannot silence: {out}");
        // Probes carry no token: health answers anyway (from a descriptor set, as reflection
        // is closed to them).
        let (code, out) = grpcurl_code(&["-plaintext", "-import-path", concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures"), "-proto", "health.proto", addr, "grpc.health.v1.Health/Check"]);
        assert_eq!(code, Some(0), "{out}");
        assert!(out.contains("SERVING"), "{out}");
        assert!(!out.contains(QUERY) && !out.contains(ADMIN));
    })
    .await
    .expect("grpcurl checks");
    aggregator.stop().await;
}
