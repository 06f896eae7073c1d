//! Bearer tokens: which sidecars may report (optionally bound to one host each) and who may
//! change state (silences, reload). Tokens are compared in constant time and never logged.

use tonic::metadata::MetadataMap;
use tonic::Status;

use crate::secret::Secret;

/// Accepted sidecar tokens; empty = ingest is open (for loopback and tests).
#[derive(Debug, Clone, Default)]
pub struct IngestTokens {
    entries: Vec<(Secret, Option<String>)>,
}

/// What a valid ingest token allows: any host, or only this one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolled {
    pub bound_host: Option<String>,
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token of an `authorization: Bearer TOKEN` header.
pub fn bearer(metadata: &MetadataMap) -> Option<&str> {
    metadata
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

impl IngestTokens {
    /// Parses a token file: one token per line, optionally followed by the host it is bound
    /// to; blank lines and `#` comments are ignored.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut words = line.split_whitespace();
            let token = words.next().unwrap_or("");
            if token.len() < 16 {
                return Err(format!(
                    "line {}: a token must be at least 16 characters",
                    i + 1
                ));
            }
            let host = words.next().map(str::to_owned);
            if words.next().is_some() {
                return Err(format!("line {}: expected TOKEN [HOST]", i + 1));
            }
            entries.push((Secret::new(token), host));
        }
        Ok(Self { entries })
    }

    pub fn is_open(&self) -> bool {
        self.entries.is_empty()
    }

    /// Checks every entry (no early exit, so timing says nothing about which matched).
    pub fn check(&self, metadata: &MetadataMap) -> Result<Enrolled, Status> {
        if self.is_open() {
            return Ok(Enrolled { bound_host: None });
        }
        let presented = bearer(metadata)
            .ok_or_else(|| Status::unauthenticated("a sidecar token is required"))?;
        let mut found = None;
        for (token, host) in &self.entries {
            if constant_time_eq(token.expose().as_bytes(), presented.as_bytes()) && found.is_none()
            {
                found = Some(Enrolled {
                    bound_host: host.clone(),
                });
            }
        }
        found.ok_or_else(|| Status::unauthenticated("unknown sidecar token"))
    }
}

/// Checks the admin token for state-changing calls; `None` = no admin token configured (open).
pub fn check_admin(admin: Option<&Secret>, metadata: &MetadataMap) -> Result<(), Status> {
    let Some(admin) = admin else { return Ok(()) };
    match bearer(metadata) {
        Some(presented) if constant_time_eq(admin.expose().as_bytes(), presented.as_bytes()) => {
            Ok(())
        }
        Some(_) => Err(Status::unauthenticated("wrong admin token")),
        None => Err(Status::unauthenticated(
            "this call needs the admin token (authorization: Bearer …)",
        )),
    }
}

/// Checks a read-only call when queries are protected; `None` = open.
pub fn check_reader(readers: Option<&[Secret]>, metadata: &MetadataMap) -> Result<(), Status> {
    let Some(readers) = readers else {
        return Ok(());
    };
    let presented = bearer(metadata).ok_or_else(|| {
        Status::unauthenticated("queries need a token here (authorization: Bearer …)")
    })?;
    let matched = readers.iter().fold(false, |any, token| {
        any | constant_time_eq(token.expose().as_bytes(), presented.as_bytes())
    });
    if matched {
        Ok(())
    } else {
        Err(Status::unauthenticated("wrong query token"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(token: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("authorization", format!("Bearer {token}").parse().unwrap());
        m
    }

    #[test]
    fn tokens_bind_hosts_and_unknown_ones_fail() {
        let tokens =
            IngestTokens::parse("# fleet\nsidecar-token-aaaaaaaa\nsidecar-token-bbbbbbbb bj-02\n")
                .unwrap();
        assert_eq!(
            tokens
                .check(&meta("sidecar-token-aaaaaaaa"))
                .unwrap()
                .bound_host,
            None
        );
        assert_eq!(
            tokens
                .check(&meta("sidecar-token-bbbbbbbb"))
                .unwrap()
                .bound_host
                .as_deref(),
            Some("bj-02")
        );
        assert_eq!(
            tokens
                .check(&meta("sidecar-token-cccccccc"))
                .unwrap_err()
                .code(),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            tokens.check(&MetadataMap::new()).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        assert!(IngestTokens::parse("short").is_err());
        let err = tokens
            .check(&meta("sidecar-token-cccccccc"))
            .unwrap_err()
            .to_string();
        assert!(!err.contains("cccc"), "the token is not echoed: {err}");
    }

    #[test]
    fn admin_token() {
        let admin = Secret::new("admin-token-0123456789");
        assert!(check_admin(Some(&admin), &meta("admin-token-0123456789")).is_ok());
        assert!(check_admin(Some(&admin), &meta("nope")).is_err());
        assert!(check_admin(Some(&admin), &MetadataMap::new()).is_err());
        assert!(check_admin(None, &MetadataMap::new()).is_ok());
    }

    #[test]
    fn protected_queries_take_any_listed_token() {
        let readers = [
            Secret::new("query-token-0123456789"),
            Secret::new("admin-token-0123456789"),
        ];
        assert!(check_reader(Some(&readers), &meta("query-token-0123456789")).is_ok());
        assert!(check_reader(Some(&readers), &meta("admin-token-0123456789")).is_ok());
        assert!(check_reader(Some(&readers), &meta("query-token-012345678")).is_err());
        assert!(check_reader(Some(&readers), &MetadataMap::new()).is_err());
        assert!(check_reader(None, &MetadataMap::new()).is_ok());
    }
}
