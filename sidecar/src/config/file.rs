//! Every file the settings touch: the `--config` TOML read into [`FileConfig`], and, behind
//! [`Machine`], the hostname, token file and PEM files that validation reads.

use std::io;
use std::path::Path;

use super::{ConfigError, FileConfig};

/// Reads and parses the `--config` file; an unknown key is an error naming it.
pub(super) fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::File {
        path: path.to_owned(),
        reason: flumewatch_process::describe_toml_error(&text, &e),
    })
}

/// What validation reads besides the settings themselves, so that the rules in
/// [`validate`](super::validate) do no I/O of their own. [`ThisMachine`] outside tests.
pub(super) trait Machine {
    /// This machine's hostname, the default `host`; `None` when it cannot be read.
    fn hostname(&self) -> Option<String>;
    /// A text file, such as the `token_file`.
    fn read_to_string(&self, path: &Path) -> io::Result<String>;
    /// A binary file, such as a PEM certificate or key.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
}

/// The real filesystem and hostname.
pub(super) struct ThisMachine;

impl Machine for ThisMachine {
    fn hostname(&self) -> Option<String> {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
    }

    fn read_to_string(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }
}
