//! Tests only: a fake process table, a directory of `<pid>/cmdline` files standing in for
//! `/proc`, removed when dropped.

use std::path::Path;

use flumewatch_testkit::TempDir;

pub(crate) struct FakeProc(TempDir);

impl FakeProc {
    pub(crate) fn new() -> Self {
        Self(TempDir::new("sidecar-proc"))
    }

    pub(crate) fn path(&self) -> &Path {
        self.0.path()
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
