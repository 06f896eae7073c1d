//! DingTalk's idempotency key: every message gets a random UUID v4 `msgUuid` when it is
//! committed to the outbox, written into the stored body, so every retry (also after a restart)
//! sends the same key and DingTalk can tell a resend from a new message.

use std::fmt::Write as _;

use ring::rand::{SecureRandom, SystemRandom};

/// The operating system gave no random bytes (it practically never happens).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the system's random number generator failed")]
pub struct NoRandomness;

/// A fresh random UUID v4 in its usual text form (`8-4-4-4-12` lowercase hex).
pub fn generate() -> Result<String, NoRandomness> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| NoRandomness)?;
    // RFC 9562: version 4 (random) and the RFC variant.
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let mut text = String::with_capacity(36);
    for (i, byte) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            text.push('-');
        }
        let _ = write!(text, "{byte:02x}");
    }
    Ok(text)
}

/// `body` (a serialized JSON object) with `"msgUuid"` as its first field. Spliced rather than
/// parsed and written again: the body is the renderer's bytes, already checked against the size
/// limit, and a UUID needs no escaping.
pub fn stamp(body: &[u8], msg_uuid: &str) -> Vec<u8> {
    let Some(rest) = body.strip_prefix(b"{") else {
        debug_assert!(false, "a message body is a JSON object");
        return body.to_vec();
    };
    let field = format!("{{\"msgUuid\":\"{msg_uuid}\"");
    let mut out = Vec::with_capacity(body.len() + field.len() + 1);
    out.extend_from_slice(field.as_bytes());
    if !rest.starts_with(b"}") {
        out.push(b',');
    }
    out.extend_from_slice(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_version_4_and_differ() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        let groups: Vec<&str> = a.split('-').collect();
        assert_eq!(
            groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(groups[2].starts_with('4'), "version 4: {a}");
        assert!(
            matches!(groups[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'),
            "RFC variant: {a}"
        );
        assert!(a
            .chars()
            .all(|c| c == '-' || c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    }

    #[test]
    fn a_stamped_body_keeps_every_field_and_adds_msg_uuid() {
        let body = serde_json::json!({
            "msgtype": "markdown",
            "markdown": {"title": "t", "text": "【Flume 告警】 \"quoted\""},
            "at": {"atMobiles": ["138"], "isAtAll": false}
        });
        let bytes = serde_json::to_vec(&body).unwrap();
        let stamped = stamp(&bytes, "0f8fad5b-d9cb-469f-a165-70867728950e");
        let mut parsed: serde_json::Value = serde_json::from_slice(&stamped).unwrap();
        assert_eq!(
            parsed["msgUuid"],
            "0f8fad5b-d9cb-469f-a165-70867728950e",
            "{}",
            String::from_utf8_lossy(&stamped)
        );
        parsed.as_object_mut().unwrap().remove("msgUuid");
        assert_eq!(parsed, body);
        let empty: serde_json::Value = serde_json::from_slice(&stamp(b"{}", "u")).unwrap();
        assert_eq!(empty, serde_json::json!({"msgUuid": "u"}));
    }
}
