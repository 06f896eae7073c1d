//! The one temporary directory for tests: every file a test writes (rule files, configs, state
//! databases) goes under a `TempDir`, which removes itself when dropped, so a test run leaves
//! nothing behind in /tmp — also when the test panics, since unwinding runs `Drop`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A fresh, empty directory under the system temp dir, removed with all it holds on drop.
/// Keep it alive as long as anything (an aggregator, a child process) uses the files in it.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// `fw-{prefix}-{pid}-{n}`: the prefix says which test made it when one is left after a
    /// killed run; pid and a per-process counter keep parallel tests and processes apart.
    pub fn new(prefix: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!("fw-{prefix}-{}-{n}", std::process::id()));
            // create_dir, not create_dir_all: a directory left by an earlier process with the
            // same pid is not ours to reuse (nor to delete), so take the next number.
            match std::fs::create_dir(&path) {
                Ok(()) => return Self { path },
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => panic!("cannot create {}: {e}", path.display()),
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `text` to `name` inside this directory and returns its path.
    pub fn write(&self, name: impl AsRef<Path>, text: impl AsRef<[u8]>) -> PathBuf {
        let path = self.join(name);
        std::fs::write(&path, text)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }
}

/// A `TempDir` is used where its path is (`dir.join("rules.toml")`, `&dir` for `&Path`).
impl std::ops::Deref for TempDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Best effort: a failure here must not turn a passing test into a double panic.
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::TempDir;

    #[test]
    fn is_created_empty_and_removed_with_its_files_on_drop() {
        let dir = TempDir::new("temp-selftest");
        let other = TempDir::new("temp-selftest");
        assert_ne!(dir.path(), other.path(), "each TempDir is its own");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let file = dir.write("nested.toml", "x = 1");
        std::fs::create_dir(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/state.db"), b"db").unwrap();
        let path = dir.path().to_owned();
        drop(dir);
        assert!(
            !file.exists() && !path.exists(),
            "{} removed",
            path.display()
        );
    }
}
