//! Secrets kept in files — sidecar tokens, the admin and query tokens, TLS PEMs: reading them
//! ([`SecretFiles::read`]) and then checking what was read ([`SecretFiles::check`], no I/O).

use std::path::{Path, PathBuf};

use super::{invalid, ConfigError, FileConfig, TlsFiles};
use crate::auth::IngestTokens;
use crate::secret::Secret;

/// A file's contents, or the error (naming the key that named the file) from reading it.
type Read<T> = Result<T, ConfigError>;

/// What validation needs from secret files, read before any check. A file that could not be
/// read keeps its error until [`SecretFiles::check`] reaches that key, so the error reported
/// for a config with several faults is the first in check order, not in read order.
pub(super) struct SecretFiles {
    /// `ingest_tokens_file` and its text.
    ingest_tokens: Option<(PathBuf, Read<String>)>,
    /// From the flag or environment, else from `admin_token_file` (trimmed).
    admin_token: Option<Read<String>>,
    /// From the flag or environment, else from `query_token_file` (trimmed).
    query_token: Option<Read<String>>,
    tls: TlsPems,
}

/// The TLS files named; they are read only as a pair of certificate and key.
enum TlsPems {
    Pair(Box<TlsPair>),
    /// Only one of `tls_cert` and `tls_key`.
    Half,
    /// Neither; `tls_client_ca` alone is refused.
    Off {
        client_ca: bool,
    },
}

struct TlsPair {
    cert: Read<Vec<u8>>,
    key: Read<Vec<u8>>,
    client_ca: Option<Read<Vec<u8>>>,
}

/// The secrets as [`super::Config`] holds them.
pub(super) struct Secrets {
    pub ingest_tokens: IngestTokens,
    pub admin_token: Option<Secret>,
    pub query_tokens: Option<Vec<Secret>>,
    pub tls: Option<TlsFiles>,
}

fn read_error(key: &'static str, path: &Path, e: impl std::fmt::Display) -> ConfigError {
    invalid(key, format!("{}: {e}", path.display()))
}

fn read_text(key: &'static str, path: &Path) -> Read<String> {
    std::fs::read_to_string(path).map_err(|e| read_error(key, path, e))
}

fn read_bytes(key: &'static str, path: &Path) -> Read<Vec<u8>> {
    std::fs::read(path).map_err(|e| read_error(key, path, e))
}

/// A token given directly (flag or environment) wins; its file is then not read.
fn token_text(
    direct: Option<String>,
    file_key: &'static str,
    file: Option<&Path>,
) -> Option<Read<String>> {
    match (direct, file) {
        (Some(token), _) => Some(Ok(token)),
        (None, Some(path)) => Some(read_text(file_key, path).map(|text| text.trim().to_owned())),
        (None, None) => None,
    }
}

/// At least 16 characters.
fn token(key: &'static str, text: Option<Read<String>>) -> Result<Option<Secret>, ConfigError> {
    let Some(token) = text.transpose()? else {
        return Ok(None);
    };
    if token.len() < 16 {
        return Err(invalid(key, "must be at least 16 characters"));
    }
    Ok(Some(Secret::new(token)))
}

impl SecretFiles {
    /// Reads the files `raw` names; takes the tokens given directly out of it.
    pub(super) fn read(raw: &mut FileConfig) -> Self {
        let tls = match (&raw.tls_cert, &raw.tls_key) {
            (Some(cert), Some(key)) => TlsPems::Pair(Box::new(TlsPair {
                cert: read_bytes("tls_cert", cert),
                key: read_bytes("tls_key", key),
                client_ca: raw
                    .tls_client_ca
                    .as_deref()
                    .map(|path| read_bytes("tls_client_ca", path)),
            })),
            (None, None) => TlsPems::Off {
                client_ca: raw.tls_client_ca.is_some(),
            },
            _ => TlsPems::Half,
        };
        Self {
            ingest_tokens: raw
                .ingest_tokens_file
                .as_ref()
                .map(|path| (path.clone(), read_text("ingest_tokens_file", path))),
            admin_token: token_text(
                raw.admin_token.take(),
                "admin_token_file",
                raw.admin_token_file.as_deref(),
            ),
            query_token: token_text(
                raw.query_token.take(),
                "query_token_file",
                raw.query_token_file.as_deref(),
            ),
            tls,
        }
    }

    /// Checks, in this order: ingest tokens, admin token, query token, `protect_queries`, TLS.
    pub(super) fn check(self, protect_queries: bool) -> Result<Secrets, ConfigError> {
        let ingest_tokens = match self.ingest_tokens {
            None => IngestTokens::default(),
            Some((path, text)) => IngestTokens::parse(&text?)
                .map_err(|e| read_error("ingest_tokens_file", &path, e))?,
        };
        let admin_token = token("admin_token", self.admin_token)?;
        let query_token = token("query_token", self.query_token)?;
        let query_tokens = if protect_queries {
            let tokens: Vec<_> = admin_token.iter().chain(&query_token).cloned().collect();
            if tokens.is_empty() {
                return Err(invalid(
                    "protect_queries",
                    "needs a query token or an admin token to protect the queries with",
                ));
            }
            Some(tokens)
        } else {
            if query_token.is_some() {
                tracing::warn!(
                    "a query token is set but protect_queries is off: queries stay open"
                );
            }
            None
        };
        let tls = match self.tls {
            TlsPems::Pair(pair) => Some(TlsFiles {
                cert: pair.cert?,
                key: pair.key?,
                client_ca: pair.client_ca.transpose()?,
            }),
            TlsPems::Off { client_ca: true } => {
                return Err(invalid("tls_client_ca", "needs tls_cert and tls_key"))
            }
            TlsPems::Off { client_ca: false } => None,
            TlsPems::Half => return Err(invalid("tls_cert", "give both tls_cert and tls_key")),
        };
        Ok(Secrets {
            ingest_tokens,
            admin_token,
            query_tokens,
            tls,
        })
    }
}
