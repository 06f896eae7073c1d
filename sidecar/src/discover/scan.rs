//! Reads the process table: `<proc root>/<pid>/cmdline` of every process, nothing else, and
//! keeps the Flume agents [`cmdline::parse`](super::cmdline::parse) finds. Blocking file I/O:
//! callers run it off the async runtime.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::{cmdline, Discovered};

/// Bytes read of one command line. flume-ng's java line carries the whole classpath (with
/// Hadoop's, tens of KiB) before `-n NAME`, so this is generous; a longer line is parsed as far
/// as it was read. One buffer is reused for every process.
const MAX_CMDLINE_BYTES: u64 = 1 << 20;
/// Processes looked at in one scan: a host with more is not a Flume host worth a full walk, and
/// the scan stays bounded in time whatever the process table holds.
const MAX_PROCESSES: usize = 1 << 17;

/// The process table could not be listed at all (not mounted, not permitted). Individual
/// processes that vanish or cannot be read are skipped, never an error: processes come and go.
#[derive(Debug, thiserror::Error)]
#[error("cannot list processes in {path}: {source}")]
pub struct ScanError {
    path: PathBuf,
    source: io::Error,
}

/// Every Flume agent serving HTTP metrics under `proc_root` (normally `/proc`), one per port,
/// ordered by port. Two processes claiming one port (a wrapper that did not `exec`) are one agent.
pub fn scan(proc_root: &Path) -> Result<Vec<Discovered>, ScanError> {
    let entries = std::fs::read_dir(proc_root).map_err(|source| ScanError {
        path: proc_root.to_owned(),
        source,
    })?;
    let mut found = Vec::new();
    let mut buf = Vec::new();
    // An entry that cannot be read is a process that just went away.
    for entry in entries.flatten().take(MAX_PROCESSES) {
        let name = entry.file_name();
        let is_pid = name
            .to_str()
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if !is_pid {
            continue;
        }
        buf.clear();
        if read_cmdline(&entry.path().join("cmdline"), &mut buf).is_err() {
            continue;
        }
        if let Some(agent) = cmdline::parse(&buf) {
            found.push(agent);
        }
    }
    // Stable order (by port, then name) so that which process names a shared port does not
    // depend on the order the kernel lists them in.
    found.sort_by(|a, b| (a.port, &a.name).cmp(&(b.port, &b.name)));
    found.dedup_by_key(|agent| agent.port);
    Ok(found)
}

fn read_cmdline(path: &Path, buf: &mut Vec<u8>) -> io::Result<()> {
    File::open(path)?
        .take(MAX_CMDLINE_BYTES)
        .read_to_end(buf)
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::super::fake_proc::FakeProc;
    use super::*;

    fn agent(name: &str, port: u16) -> Discovered {
        Discovered {
            name: name.to_owned(),
            port,
        }
    }

    #[test]
    fn finds_flume_agents_and_skips_everything_else() {
        let proc = FakeProc::new();
        proc.flume("4242", "a2", 34546);
        proc.flume("17", "a1", 34545);
        proc.process("1", &["/sbin/init"]);
        proc.process("2", &[]);
        // Same port as pid 17 (a wrapper that did not exec): one agent.
        proc.flume("18", "a1", 34545);
        // Not processes, or not readable as one.
        proc.process("self", &["java", "-Dflume.monitoring.type=http"]);
        std::fs::create_dir_all(proc.path().join("99")).expect("no cmdline file");
        std::fs::write(proc.path().join("uptime"), "1.0 1.0").expect("file");

        let found = scan(proc.path()).expect("scans");
        assert_eq!(found, vec![agent("a1", 34545), agent("a2", 34546)]);
    }

    #[test]
    fn an_unlistable_table_is_an_error_that_names_it() {
        let proc = FakeProc::new();
        let missing = proc.path().join("not-here");
        let err = scan(&missing).expect_err("no such directory");
        assert!(err.to_string().contains("not-here"), "{err}");
    }

    #[test]
    fn the_real_proc_lists_without_error() {
        // Whatever runs on this machine, reading it must not fail or panic.
        if Path::new("/proc/self/cmdline").exists() {
            scan(Path::new("/proc")).expect("/proc scans");
        }
    }
}
