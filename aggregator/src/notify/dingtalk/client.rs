//! One POST to a DingTalk robot and what its answer means. Success is HTTP 200 with errcode 0
//! and nothing else; the access token and secret never appear in errors.

use std::time::Duration;

use super::sign::signed_url;
use crate::secret::Secret;

/// A DingTalk robot: webhook (holds the access token) and optional signing secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Robot {
    pub webhook: Secret,
    pub secret: Option<Secret>,
}

/// Why a message was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("transport error: {0}")]
    Transport(String),
    /// The robot did not answer within the receiver's `send_timeout`. DingTalk may still
    /// deliver it: the retry carries the same msgUuid.
    #[error("no answer within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    #[error("HTTP {0}")]
    Http(u16),
    #[error("answer is not DingTalk's JSON (HTTP {0})")]
    NotJson(u16),
    #[error("errcode {code}: {message}")]
    Refused { code: i64, message: String },
}

/// DingTalk's codes for "too many messages": pause the robot before trying again.
const THROTTLED: [i64; 2] = [130_101, 410_100];

impl SendError {
    /// Worth sending again later (after a backoff).
    pub fn retryable(&self) -> bool {
        match self {
            SendError::Transport(_) | SendError::Timeout(_) | SendError::NotJson(_) => true,
            SendError::Http(status) => *status >= 500 || (300..400).contains(status),
            SendError::Refused { code, .. } => *code == -1 || THROTTLED.contains(code),
        }
    }

    /// The robot is throttled: pause it for at least a minute.
    pub fn throttled(&self) -> bool {
        match self {
            SendError::Refused { code, .. } => THROTTLED.contains(code),
            SendError::Http(status) => (300..400).contains(status),
            _ => false,
        }
    }

    /// DingTalk's errcode, when it gave one.
    pub fn errcode(&self) -> Option<i64> {
        match self {
            SendError::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// DingTalk's errmsg when it refused, else what went wrong before it could answer.
    pub fn errmsg(&self) -> String {
        match self {
            SendError::Refused { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }
}

#[derive(serde::Deserialize)]
struct Answer {
    errcode: i64,
    #[serde(default)]
    errmsg: String,
}

/// A client for robots (no redirects: a 3xx is DingTalk's throttle gateway, not a new address).
/// No client-wide timeout: [`send`] gives every request its receiver's `send_timeout`.
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("flumewatch/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// POSTs one serialized body, signed with the current time; gives up after `timeout` (from
/// connecting until the answer's last byte).
pub async fn send(
    http: &reqwest::Client,
    robot: &Robot,
    body: Vec<u8>,
    now_ms: u64,
    timeout: Duration,
) -> Result<(), SendError> {
    let failed = |e: reqwest::Error| {
        if e.is_timeout() {
            SendError::Timeout(timeout)
        } else {
            SendError::Transport(e.without_url().to_string())
        }
    };
    let url = signed_url(
        robot.webhook.expose(),
        robot.secret.as_ref().map(Secret::expose),
        now_ms,
    );
    let response = http
        .post(url)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/json; charset=utf-8",
        )
        .body(body)
        .timeout(timeout)
        .send()
        .await
        .map_err(failed)?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(SendError::Http(status));
    }
    let bytes = response.bytes().await.map_err(failed)?;
    let answer: Answer = serde_json::from_slice(&bytes).map_err(|_| SendError::NotJson(status))?;
    if answer.errcode == 0 {
        Ok(())
    } else {
        Err(SendError::Refused {
            code: answer.errcode,
            message: answer.errmsg.chars().take(300).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_follows_the_protocol_notes() {
        let refused = |code| SendError::Refused {
            code,
            message: String::new(),
        };
        for code in [-1, 130_101, 410_100] {
            assert!(refused(code).retryable(), "{code}");
        }
        for code in [310_000, 300_001, 300_005, 400_102, 430_101, 460_101] {
            assert!(!refused(code).retryable(), "{code}");
        }
        assert!(refused(130_101).throttled() && !refused(-1).throttled());
        assert!(SendError::Http(502).retryable() && SendError::Http(302).throttled());
        assert!(!SendError::Http(404).retryable());
        assert!(SendError::NotJson(200).retryable());
        let timeout = SendError::Timeout(Duration::from_secs(1));
        assert!(timeout.retryable() && !timeout.throttled());
        assert_eq!(timeout.errmsg(), "no answer within 1s");
        assert_eq!(refused(310_000).errmsg(), "");
    }
}
