//! DingTalk's 加签: `base64(HMAC-SHA256(secret, timestamp + "\n" + secret))`, URL-encoded
//! once, computed for every request (a signature older than an hour is refused).

use base64::Engine as _;

/// The `timestamp` and `sign` query values for `timestamp_ms`, `sign` already URL-encoded.
pub fn sign(secret: &str, timestamp_ms: u64) -> (String, String) {
    let timestamp = timestamp_ms.to_string();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = ring::hmac::sign(&key, format!("{timestamp}\n{secret}").as_bytes());
    let base64 = base64::engine::general_purpose::STANDARD.encode(tag.as_ref());
    (timestamp, encode_base64_for_query(&base64))
}

/// Base64 holds only `A-Za-z0-9+/=`; the three symbols are the ones a query must escape.
fn encode_base64_for_query(base64: &str) -> String {
    let mut out = String::with_capacity(base64.len() + 8);
    for c in base64.chars() {
        match c {
            '+' => out.push_str("%2B"),
            '/' => out.push_str("%2F"),
            '=' => out.push_str("%3D"),
            c => out.push(c),
        }
    }
    out
}

/// The webhook URL with `timestamp` and `sign` appended (the webhook's own query kept).
pub fn signed_url(webhook: &str, secret: Option<&str>, timestamp_ms: u64) -> String {
    match secret {
        None => webhook.to_owned(),
        Some(secret) => {
            let (timestamp, sign) = sign(secret, timestamp_ms);
            let joiner = if webhook.contains('?') { '&' } else { '?' };
            format!("{webhook}{joiner}timestamp={timestamp}&sign={sign}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_every_vector_computed_with_dingtalkchatbot() {
        let path = flumewatch_testkit::fixture("dingtalk/sign_vectors.json");
        let file: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let vectors = file["vectors"].as_array().unwrap();
        assert!(vectors.len() >= 3);
        for v in vectors {
            let secret = v["secret"].as_str().unwrap();
            let ts = v["timestamp_ms"].as_u64().unwrap();
            let (timestamp, sign) = sign(secret, ts);
            assert_eq!(timestamp, ts.to_string());
            assert_eq!(
                sign,
                v["sign_urlencoded"].as_str().unwrap(),
                "{secret} {ts}"
            );
            let url = signed_url(file["webhook_base"].as_str().unwrap(), Some(secret), ts);
            assert_eq!(url, v["webhook_url"].as_str().unwrap());
        }
    }

    #[test]
    fn no_secret_no_signature() {
        assert_eq!(
            signed_url("https://x/robot/send?access_token=T", None, 1),
            "https://x/robot/send?access_token=T"
        );
    }
}
