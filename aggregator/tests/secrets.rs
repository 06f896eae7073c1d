//! A full run of the real binary at debug level — enrolled sidecar, alerts, DingTalk failing
//! with 500, 310000 and a throttle before accepting — never writes a secret to its logs.

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::{free_port, fresh_dir, Output, Running, TempDir};
use flumewatch_proto::v1 as pb;
use flumewatch_proto::v1::fleet_client::FleetClient;
use flumewatch_sidecar::config::FileConfig as SidecarFile;
use flumewatch_testkit::fake_dingtalk::{FakeDingTalk, Forced};
use flumewatch_testkit::fake_flume::{FakeFlume, Reply};
use tokio_util::sync::CancellationToken;

const ACCESS_TOKEN: &str = "dingtalk-access-token-7f3a9c";
const SIGNING_SECRET: &str = "SECsigning-secret-51be0d";
const SIDECAR_TOKEN: &str = "sidecar-token-e1c2d3f4a5";
const ADMIN_TOKEN: &str = "admin-token-9d8c7b6a5f";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_logs() {
    let dir = fresh_dir("fw-secrets");
    let fake = FakeDingTalk::start(ACCESS_TOKEN, Some(SIGNING_SECRET))
        .await
        .unwrap();
    // Transient failures, then a permanent one (the first message is dropped), then success.
    fake.force(&[
        Forced::Http(500),
        Forced::Errcode(-1),
        Forced::Errcode(310_000),
    ]);
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    std::fs::write(dir.join("tokens"), format!("{SIDECAR_TOKEN} h1\n")).unwrap();
    std::fs::write(dir.join("rules.toml"), "disable = [\"SidecarSilent\"]\n[[rule]]\nname = \"ChannelFilling\"\nseverity = \"warning\"\nkinds = [\"channel\"]\ncondition = { value = \"ChannelFillPercentage\", op = \">=\", threshold = 80 }\n").unwrap();
    let config = dir.join("aggregator.toml");
    std::fs::write(
        &config,
        format!(
            "grpc_listen = \"127.0.0.1:{port}\"\nhttp_listen = \"off\"\nstate_dir = {:?}\nrules = \"rules.toml\"\nevaluation_interval = \"100ms\"\n\
             ingest_tokens_file = \"tokens\"\n[notify]\ngroup_wait = \"0s\"\ngroup_interval = \"1s\"\nrepeat_interval = \"2s\"\n\
             [[receivers]]\nname = \"ops\"\nwebhook_env = \"FW_TEST_WEBHOOK\"\nsecret_env = \"FW_TEST_SECRET\"\n",
            dir.join("state")
        ),
    )
    .unwrap();
    // Relative paths in a config are read from where the aggregator runs.
    let mut child = Running(
        Command::new(env!("CARGO_BIN_EXE_flumewatch-aggregator"))
            .current_dir(&dir)
            .args([
                "--config",
                config.to_str().unwrap(),
                "--log-level",
                "debug",
                "--log-format",
                "json",
            ])
            .env("FW_TEST_WEBHOOK", fake.webhook())
            .env("FW_TEST_SECRET", SIGNING_SECRET)
            .env("FLUMEWATCH_ADMIN_TOKEN", ADMIN_TOKEN)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("aggregator starts"),
    );
    let output = Output::capture(&mut child);

    let mut body: serde_json::Value =
        serde_json::from_slice(&flumewatch_testkit::sample("steady-load-t15s.json")).unwrap();
    body["CHANNEL.mem1"]["ChannelFillPercentage"] = "91.0".into();
    let body = Arc::new(serde_json::to_vec(&body).unwrap());
    let flume = FakeFlume::start(Arc::new(move || Reply::Json(body.as_ref().clone())))
        .await
        .unwrap();
    let stop = CancellationToken::new();
    for (host, token) in [
        ("h1", Some(SIDECAR_TOKEN)),
        ("h9", Some("sidecar-token-unknown-000")),
    ] {
        let mut sidecar = SidecarFile {
            aggregators: Some(vec![url.clone()]),
            flume: Some(vec![format!("a1={}", flume.url())]),
            interval: Some("200ms".into()),
            timeout: Some("150ms".into()),
            host: Some(host.into()),
            reconnect_min: Some("50ms".into()),
            reconnect_max: Some("300ms".into()),
            ..SidecarFile::default()
        };
        sidecar.token = token.map(str::to_owned);
        tokio::spawn(flumewatch_sidecar::run(
            sidecar.validate().unwrap(),
            stop.clone(),
        ));
    }

    // Wait for a delivery after the failures, and for a refused admin call.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while fake.received().is_empty() {
        if tokio::time::Instant::now() > deadline {
            child.kill().ok();
            child.wait().ok();
            panic!(
                "no delivery; answers so far: {:?}\n{}",
                fake.answers(),
                output.so_far()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut client = FleetClient::connect(url.clone()).await.unwrap();
    let mut request = tonic::Request::new(pb::ReloadRequest {});
    request.metadata_mut().insert(
        "authorization",
        "Bearer wrong-admin-token-000".parse().unwrap(),
    );
    assert_eq!(
        client.reload(request).await.unwrap_err().code(),
        tonic::Code::Unauthenticated
    );
    let answers = fake.answers();
    assert!(answers.starts_with(&[500, -1, 310_000]), "{answers:?}");

    stop.cancel();
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(
        child.wait().unwrap().success(),
        "SIGTERM stops the aggregator cleanly"
    );
    let logs = output.finish();
    assert!(
        logs.contains("DingTalk refused the message for good"),
        "the permanent failure is logged:\n{logs}"
    );
    assert!(
        logs.contains("sidecar stream refused"),
        "the unknown token is logged as refused"
    );
    for secret in [
        ACCESS_TOKEN,
        SIGNING_SECRET,
        SIDECAR_TOKEN,
        ADMIN_TOKEN,
        "sidecar-token-unknown-000",
        "wrong-admin-token-000",
    ] {
        assert!(!logs.contains(secret), "{secret} appears in the logs");
    }
    assert!(logs.lines().count() > 20, "debug logs were captured");
}

/// Secrets given by environment never show in `--help`, and a config file whose secret line is
/// malformed is reported by line and column, not quoted.
#[test]
fn help_and_config_errors_hide_secrets() {
    let help = Command::new(env!("CARGO_BIN_EXE_flumewatch-aggregator"))
        .arg("--help")
        .env(
            "FLUMEWATCH_DINGTALK_WEBHOOK",
            format!("https://oapi.dingtalk.com/robot/send?access_token={ACCESS_TOKEN}"),
        )
        .env("FLUMEWATCH_DINGTALK_SECRET", SIGNING_SECRET)
        .env("FLUMEWATCH_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .unwrap();
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("FLUMEWATCH_DINGTALK_SECRET"),
        "the variable is named: {help}"
    );
    for secret in [ACCESS_TOKEN, SIGNING_SECRET, ADMIN_TOKEN] {
        assert!(!help.contains(secret), "{secret} in --help");
    }

    let dir = TempDir::new("secrets-cfg");
    let config = dir.join("aggregator.toml");
    std::fs::write(
        &config,
        format!("[[receivers]]\nname = \"ops\"\nwebhook = \"https://oapi.dingtalk.com/robot/send?access_token={ACCESS_TOKEN}\"\nsecret = {SIGNING_SECRET}\n"),
    )
    .unwrap();
    for args in [
        vec!["--config", config.to_str().unwrap()],
        vec!["check-config", config.to_str().unwrap()],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_flumewatch-aggregator"))
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {stderr}");
        assert!(
            stderr.contains("line 4, column 10"),
            "{args:?} names the place: {stderr}"
        );
        for secret in [ACCESS_TOKEN, SIGNING_SECRET] {
            assert!(
                !stderr.contains(secret),
                "{args:?} quotes {secret}: {stderr}"
            );
        }
    }
}
