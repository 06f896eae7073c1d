//! mTLS plus sidecar tokens on the gRPC port: a sidecar with the right CA, a client certificate
//! and an enrolled token reports; one without a client certificate, trusting the wrong CA,
//! holding a stranger's certificate, or with a good certificate but an unknown token does not.
//! grpcurl the same way.

use std::path::PathBuf;
use std::process::Command;

use flumewatch_e2e::*;

const TOKEN: &str = "sidecar-token-tls-000001";

fn pki(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/tls")
        .join(file)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_sidecars_with_a_client_certificate_from_our_ca_get_in() {
    let state = TempDir::new("tls");
    std::fs::write(state.join("tokens"), format!("{TOKEN}\n")).unwrap();
    let aggregator = AggregatorHandle::start_toml(&format!(
        "tls_cert = {:?}\ntls_key = {:?}\ntls_client_ca = {:?}\ningest_tokens_file = {:?}\nstate_dir = {:?}\n",
        pki("server.pem"),
        pki("server.key"),
        pki("ca.pem"),
        state.join("tokens"),
        state.path()
    ))
    .await;
    let url = format!("https://127.0.0.1:{}", aggregator.addr.port());
    let flume = ScriptedFlume::serving_sample("idle-agent-exec-memory-http.json").await;
    let sidecar = |host: &str, ca: &str, identity: Option<(&str, &str)>, token: &str| {
        let mut config = sidecar_config(&url, host, &[("a1", flume.url())], &[]);
        config.token = Some(token.to_owned());
        config.tls_ca = Some(pki(ca));
        if let Some((cert, key)) = identity {
            config.tls_cert = Some(pki(cert));
            config.tls_key = Some(pki(key));
        }
        SidecarHandle::start(config)
    };
    let ours = Some(("client.pem", "client.key"));
    let good = sidecar("good", "ca.pem", ours, TOKEN);
    let no_cert = sidecar("no-cert", "ca.pem", None, TOKEN);
    let wrong_ca = sidecar("wrong-ca", "other-ca.pem", ours, TOKEN);
    let stranger = sidecar(
        "stranger",
        "ca.pem",
        Some(("stranger.pem", "stranger.key")),
        TOKEN,
    );
    let unknown_token = sidecar(
        "unknown-token",
        "ca.pem",
        ours,
        "sidecar-token-unknown-0000",
    );
    let fleet = aggregator.fleet.clone();
    wait_for("the enrolled sidecar reporting over mTLS", || async {
        fleet
            .agent("good", "a1")
            .ok()
            .filter(|v| v.state.received >= 3)
    })
    .await;
    // By now the others have retried several times (20–200 ms backoff): none got in.
    for host in ["no-cert", "wrong-ca", "stranger", "unknown-token"] {
        assert!(fleet.agent(host, "").is_err(), "{host} must not report");
    }
    wait_for("the unknown token refused", || async {
        (aggregator
            .counters
            .auth_rejected
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1)
            .then_some(())
    })
    .await;

    let addr = aggregator.addr.to_string();
    tokio::task::spawn_blocking(move || {
        let run = |extra: &[String]| {
            let mut args: Vec<String> = extra.to_vec();
            args.extend([addr.clone(), "list".into()]);
            Command::new(grpcurl())
                .args(&args)
                .output()
                .expect("grpcurl runs")
        };
        let p = |f: &str| pki(f).display().to_string();
        let ok = run(&[
            "-cacert".into(),
            p("ca.pem"),
            "-cert".into(),
            p("client.pem"),
            "-key".into(),
            p("client.key"),
        ]);
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
        assert!(String::from_utf8_lossy(&ok.stdout).contains("flumewatch.v1.Fleet"));
        let no_cert = run(&["-cacert".into(), p("ca.pem")]);
        assert!(
            !no_cert.status.success(),
            "no client certificate, no service"
        );
        let plaintext = run(&["-plaintext".into()]);
        assert!(
            !plaintext.status.success(),
            "plaintext is refused on a TLS port"
        );
        let wrong_ca = run(&[
            "-cacert".into(),
            p("other-ca.pem"),
            "-cert".into(),
            p("client.pem"),
            "-key".into(),
            p("client.key"),
        ]);
        assert!(!wrong_ca.status.success(), "the server is not trusted");
        // A good certificate but no enrolled token: the ingest stream is refused.
        let report = |token: &str| {
            Command::new(grpcurl())
                .args([
                    "-cacert",
                    &p("ca.pem"),
                    "-cert",
                    &p("client.pem"),
                    "-key",
                    &p("client.key"),
                    "-H",
                    &format!("authorization: Bearer {token}"),
                    "-max-time",
                    "3",
                    "-d",
                    r#"{"hello":{"host":"grpcurl","instanceId":"g1","agents":["a1"]}}"#,
                    &addr,
                    "flumewatch.v1.Ingest/Report",
                ])
                .output()
                .expect("grpcurl runs")
        };
        let refused = report("sidecar-token-unknown-0000");
        assert_eq!(
            refused.status.code(),
            Some(64 + 16),
            "{}",
            String::from_utf8_lossy(&refused.stderr)
        );
        let accepted = report(TOKEN);
        let text = String::from_utf8_lossy(&accepted.stdout);
        assert!(
            text.contains("ack"),
            "{text}{}",
            String::from_utf8_lossy(&accepted.stderr)
        );
    })
    .await
    .unwrap();
    assert!(
        fleet.agent("grpcurl", "").is_ok(),
        "grpcurl with cert and token got in"
    );
    println!("mTLS: accepted 1 tonic sidecar + grpcurl with cert and token; refused tonic sidecars without cert, \
              with the wrong CA, a stranger's cert, an unknown token, and grpcurl without cert, with the wrong CA, plaintext, an unknown token");
    for s in [good, no_cert, wrong_ca, stranger, unknown_token] {
        s.stop().await;
    }
    aggregator.stop().await;
}
