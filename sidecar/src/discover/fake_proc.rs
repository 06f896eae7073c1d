//! Tests only: a fake process table, a directory of `<pid>/cmdline` files standing in for
//! `/proc`, removed when dropped.

use std::path::{Path, PathBuf};

pub(crate) struct FakeProc(PathBuf);

impl FakeProc {
    pub(crate) fn new() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "fw-sidecar-proc-{}-{:x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    /// A process running `args`, NUL-separated as the kernel shows them.
    pub(crate) fn process(&self, pid: &str, args: &[&str]) {
        let dir = self.0.join(pid);
        std::fs::create_dir_all(&dir).expect("pid dir");
        let line: Vec<u8> = args
            .iter()
            .flat_map(|a| [a.as_bytes(), b"\0"])
            .flatten()
            .copied()
            .collect();
        std::fs::write(dir.join("cmdline"), line).expect("cmdline");
    }

    /// The java process flume-ng execs for agent `name` serving metrics on `port`.
    pub(crate) fn flume(&self, pid: &str, name: &str, port: u16) {
        let port = format!("-Dflume.monitoring.port={port}");
        self.process(
            pid,
            &[
                "java",
                "-Dflume.monitoring.type=http",
                &port,
                "org.apache.flume.node.Application",
                "-n",
                name,
            ],
        );
    }

    pub(crate) fn exit(&self, pid: &str) {
        std::fs::remove_dir_all(self.0.join(pid)).expect("pid dir");
    }
}

impl Drop for FakeProc {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
