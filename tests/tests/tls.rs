//! mTLS on the gRPC port: a sidecar with the right CA and a client certificate reports; one
//! without a client certificate, trusting the wrong CA, or holding a stranger's certificate does
//! not. grpcurl the same way.

use std::path::PathBuf;
use std::process::Command;

use flumewatch_e2e::*;

fn pki(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/tls")
        .join(file)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_sidecars_with_a_client_certificate_from_our_ca_get_in() {
    let state = std::env::temp_dir().join(format!("fw-tls-{}", std::process::id()));
    let aggregator = AggregatorHandle::start_toml(&format!(
        "tls_cert = {:?}\ntls_key = {:?}\ntls_client_ca = {:?}\nstate_dir = {:?}\n",
        pki("server.pem"),
        pki("server.key"),
        pki("ca.pem"),
        state
    ))
    .await;
    let url = format!("https://127.0.0.1:{}", aggregator.addr.port());
    let flume = ScriptedFlume::serving_sample("idle-agent-exec-memory-http.json").await;
    let sidecar = |host: &str, ca: &str, identity: Option<(&str, &str)>| {
        let mut config = sidecar_config(&url, host, &[("a1", flume.url())], &[]);
        config.tls_ca = Some(pki(ca));
        if let Some((cert, key)) = identity {
            config.tls_cert = Some(pki(cert));
            config.tls_key = Some(pki(key));
        }
        SidecarHandle::start(config)
    };
    let good = sidecar("good", "ca.pem", Some(("client.pem", "client.key")));
    let no_cert = sidecar("no-cert", "ca.pem", None);
    let wrong_ca = sidecar(
        "wrong-ca",
        "other-ca.pem",
        Some(("client.pem", "client.key")),
    );
    let stranger = sidecar("stranger", "ca.pem", Some(("stranger.pem", "stranger.key")));
    let fleet = aggregator.fleet.clone();
    wait_for("the enrolled sidecar reporting over mTLS", || async {
        fleet
            .agent("good", "a1")
            .ok()
            .filter(|v| v.state.received >= 3)
    })
    .await;
    // By now the others have retried several times (20–200 ms backoff): none got in.
    for host in ["no-cert", "wrong-ca", "stranger"] {
        assert!(fleet.agent(host, "").is_err(), "{host} must not report");
    }

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
    })
    .await
    .unwrap();
    for s in [good, no_cert, wrong_ca, stranger] {
        s.stop().await;
    }
    aggregator.stop().await;
    std::fs::remove_dir_all(state).ok();
}
