//! A local DingTalk robot for the demo and the tests: checks the access token, the signature
//! and its one-hour timestamp window exactly as DingTalk does, enforces 20 messages per minute
//! (errcode 130101) and 20 000 bytes (460101), records every accepted message with its msgUuid,
//! and can be told to fail or hang on the next requests, or to hold every answer back.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A message the robot accepted.
#[derive(Debug, Clone)]
pub struct Received {
    pub title: String,
    pub text: String,
    pub at_mobiles: Vec<String>,
    pub is_at_all: bool,
    pub body_bytes: usize,
    /// The body's `msgUuid`, DingTalk's idempotency key, when it had one.
    pub msg_uuid: Option<String>,
    pub at: tokio::time::Instant,
}

/// A failure to answer with instead of judging the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forced {
    Http(u16),
    Errcode(i64),
    /// Read the request, then never answer (until the sender gives up and closes).
    Hang,
}

#[derive(Default)]
struct State {
    received: Vec<Received>,
    /// Every answer given, in order: 0 for delivered, else the errcode or HTTP status.
    answers: Vec<i64>,
    /// When each answer was given (parallel to `answers`).
    answered_at: Vec<tokio::time::Instant>,
    forced: VecDeque<Forced>,
    /// Requests whose URL, headers or body leaked the secret.
    leaks: usize,
    /// While set, connections are closed unanswered, as when the robot is unreachable.
    down: bool,
    /// Connections closed unanswered while down.
    refused: usize,
    /// msgUuids of the requests left unanswered by [`Forced::Hang`].
    hung: Vec<Option<String>>,
    /// Requests waiting for [`FakeDingTalk::release`].
    held: usize,
}

/// A running fake robot; dropping it stops it.
pub struct FakeDingTalk {
    addr: SocketAddr,
    token: String,
    secret: Option<String>,
    state: Arc<Mutex<State>>,
    /// While true, requests are read and then wait before being judged and answered.
    hold: Arc<watch::Sender<bool>>,
    stop: CancellationToken,
}

const PER_MINUTE: usize = 20;
const MAX_BODY: usize = 20_000;

impl FakeDingTalk {
    pub async fn start(token: &str, secret: Option<&str>) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let fake = Self {
            addr,
            token: token.to_owned(),
            secret: secret.map(str::to_owned),
            state: Arc::default(),
            hold: Arc::new(watch::Sender::new(false)),
            stop: CancellationToken::new(),
        };
        let (state, stop, token, secret, hold) = (
            fake.state.clone(),
            fake.stop.clone(),
            fake.token.clone(),
            fake.secret.clone(),
            fake.hold.clone(),
        );
        tokio::spawn(async move {
            loop {
                let conn = tokio::select! {
                    _ = stop.cancelled() => return,
                    conn = listener.accept() => conn,
                };
                if let Ok((stream, _)) = conn {
                    {
                        let mut state = state.lock().expect("fake dingtalk lock");
                        if state.down {
                            state.refused += 1;
                            continue;
                        }
                    }
                    let robot = Robot {
                        state: state.clone(),
                        token: token.clone(),
                        secret: secret.clone(),
                        hold: hold.subscribe(),
                        stop: stop.clone(),
                    };
                    tokio::spawn(async move {
                        let _ = serve(stream, robot).await;
                    });
                }
            }
        });
        Ok(fake)
    }

    /// The webhook URL an operator would copy from the robot's settings.
    pub fn webhook(&self) -> String {
        format!(
            "http://{}/robot/send?access_token={}",
            self.addr, self.token
        )
    }

    pub fn received(&self) -> Vec<Received> {
        self.state
            .lock()
            .expect("fake dingtalk lock")
            .received
            .clone()
    }

    pub fn answers(&self) -> Vec<i64> {
        self.state
            .lock()
            .expect("fake dingtalk lock")
            .answers
            .clone()
    }

    /// When each answer was given, in order.
    pub fn answered_at(&self) -> Vec<tokio::time::Instant> {
        self.state
            .lock()
            .expect("fake dingtalk lock")
            .answered_at
            .clone()
    }

    pub fn leaks(&self) -> usize {
        self.state.lock().expect("fake dingtalk lock").leaks
    }

    /// The next requests get these answers, whatever they are.
    pub fn force(&self, answers: &[Forced]) {
        self.state
            .lock()
            .expect("fake dingtalk lock")
            .forced
            .extend(answers.iter().copied());
    }

    /// Stops forcing answers.
    pub fn clear_forced(&self) {
        self.state
            .lock()
            .expect("fake dingtalk lock")
            .forced
            .clear();
    }

    /// Closes every connection unanswered until [`Self::come_back`].
    pub fn go_down(&self) {
        self.state.lock().expect("fake dingtalk lock").down = true;
    }

    pub fn come_back(&self) {
        self.state.lock().expect("fake dingtalk lock").down = false;
    }

    /// Connections closed unanswered while down.
    pub fn refused(&self) -> usize {
        self.state.lock().expect("fake dingtalk lock").refused
    }

    /// The msgUuids of the requests a [`Forced::Hang`] left unanswered, in order.
    pub fn hung(&self) -> Vec<Option<String>> {
        self.state.lock().expect("fake dingtalk lock").hung.clone()
    }

    /// Holds every request, once read, unjudged and unanswered until [`Self::release`].
    pub fn hold(&self) {
        self.hold.send_replace(true);
    }

    /// Judges and answers the held requests, and every request after.
    pub fn release(&self) {
        self.hold.send_replace(false);
    }

    /// Requests read and waiting for [`Self::release`].
    pub fn held(&self) -> usize {
        self.state.lock().expect("fake dingtalk lock").held
    }

    /// Most messages accepted within any 60-second window.
    pub fn max_per_minute(&self) -> usize {
        let received = self.received();
        received
            .iter()
            .map(|first| {
                received
                    .iter()
                    .filter(|r| r.at >= first.at && r.at - first.at < Duration::from_secs(60))
                    .count()
            })
            .max()
            .unwrap_or(0)
    }
}

impl Drop for FakeDingTalk {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// What one connection's task needs of the robot.
struct Robot {
    state: Arc<Mutex<State>>,
    token: String,
    secret: Option<String>,
    hold: watch::Receiver<bool>,
    stop: CancellationToken,
}

fn msg_uuid(body: &[u8]) -> Option<String> {
    let json = serde_json::from_slice::<serde_json::Value>(body).ok()?;
    json["msgUuid"].as_str().map(str::to_owned)
}

async fn serve(mut stream: TcpStream, mut robot: Robot) -> std::io::Result<()> {
    let (state, token, secret) = (&*robot.state, &robot.token, robot.secret.as_deref());
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 {
            return Ok(());
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = &buf[head_end..(head_end + length).min(buf.len())];
    let hang = {
        let mut state = state.lock().expect("fake dingtalk lock");
        let hang = state.forced.front() == Some(&Forced::Hang);
        if hang {
            state.forced.pop_front();
            state.hung.push(msg_uuid(body));
        }
        hang
    };
    if hang {
        // Keep the connection open and silent until the sender gives up on it.
        tokio::select! {
            _ = robot.stop.cancelled() => {}
            _ = async { while !matches!(stream.read(&mut chunk).await, Ok(0) | Err(_)) {} } => {}
        }
        return Ok(());
    }
    if *robot.hold.borrow() {
        state.lock().expect("fake dingtalk lock").held += 1;
        let released = tokio::select! {
            _ = robot.stop.cancelled() => false,
            r = robot.hold.wait_for(|held| !held) => r.is_ok(),
        };
        state.lock().expect("fake dingtalk lock").held -= 1;
        if !released {
            return Ok(());
        }
    }
    let (status, answer) = judge(&head, body, state, token, secret);
    let payload = format!(
        "{{\"errcode\":{answer},\"errmsg\":\"{}\"}}",
        if answer == 0 { "ok" } else { "refused" }
    );
    let response = format!("HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}", payload.len());
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

fn judge(
    head: &str,
    body: &[u8],
    state: &Mutex<State>,
    token: &str,
    secret: Option<&str>,
) -> (u16, i64) {
    let mut state = state.lock().expect("fake dingtalk lock");
    if secret.is_some_and(|s| head.contains(s) || String::from_utf8_lossy(body).contains(s)) {
        state.leaks += 1;
    }
    let (status, answer) = match state.forced.pop_front() {
        Some(Forced::Http(status)) => (status, status as i64),
        Some(Forced::Errcode(code)) => (200, code),
        // Taken off the queue before judging (see `serve`).
        Some(Forced::Hang) | None => check(head, body, &state, token, secret),
    };
    state.answers.push(answer);
    state.answered_at.push(tokio::time::Instant::now());
    if answer == 0 {
        if let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) {
            state.received.push(Received {
                title: json["markdown"]["title"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                text: json["markdown"]["text"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                at_mobiles: json["at"]["atMobiles"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|m| m.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default(),
                is_at_all: json["at"]["isAtAll"].as_bool().unwrap_or(false),
                body_bytes: body.len(),
                msg_uuid: json["msgUuid"].as_str().map(str::to_owned),
                at: tokio::time::Instant::now(),
            });
        }
    }
    (status, answer)
}

fn check(head: &str, body: &[u8], state: &State, token: &str, secret: Option<&str>) -> (u16, i64) {
    let request_line = head.lines().next().unwrap_or("");
    let mut parts = request_line.split_whitespace();
    if parts.next() != Some("POST") {
        return (200, 43002);
    }
    let target = parts.next().unwrap_or("");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if path != "/robot/send" {
        return (404, 404);
    }
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
    };
    match param("access_token") {
        None => return (200, 40035),
        Some(t) if t != token => return (200, 300005),
        Some(_) => {}
    }
    if let Some(secret) = secret {
        let (Some(timestamp), Some(sign)) = (param("timestamp"), param("sign")) else {
            return (200, 310000);
        };
        let Ok(ts) = timestamp.parse::<u64>() else {
            return (200, 310000);
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        if now.abs_diff(ts) > 3_600_000 {
            return (200, 310000);
        }
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
        let expected = base64::engine::general_purpose::STANDARD
            .encode(ring::hmac::sign(&key, format!("{timestamp}\n{secret}").as_bytes()).as_ref());
        if percent_decode(sign) != expected {
            return (200, 310000);
        }
    }
    let json_type = head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("content-type:")
            && l.to_ascii_lowercase().contains("application/json")
    });
    if !json_type {
        return (200, 43004);
    }
    if body.len() > MAX_BODY {
        return (200, 460101);
    }
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) else {
        return (200, 40035);
    };
    if json["msgtype"] != "markdown" {
        return (200, 400105);
    }
    let now = tokio::time::Instant::now();
    let recent = state
        .received
        .iter()
        .filter(|r| now.duration_since(r.at) < Duration::from_secs(60))
        .count();
    if recent >= PER_MINUTE {
        return (200, 130101);
    }
    (200, 0)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(v) = u8::from_str_radix(&text[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
