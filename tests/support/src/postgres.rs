//! A throwaway PostgreSQL cluster for tests: Debian's server binaries (the test command
//! installs them), a data directory under a [`TempDir`], a free loopback port, trust
//! authentication, and no fsync. It can be stopped and started again (a database outage) and
//! is shut down and removed on drop. As root the server runs as the `postgres` user, since
//! PostgreSQL refuses to run as root.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU16, Ordering};

use crate::TempDir;

/// The database role tests connect as.
pub const USER: &str = "flumewatch";

pub struct PgCluster {
    _dir: TempDir,
    data: PathBuf,
    log: PathBuf,
    socket_dir: PathBuf,
    bin: PathBuf,
    /// Chosen free at the first start (again if another process took it meanwhile).
    port: AtomicU16,
    /// `runuser -u postgres --` when running as root.
    run_as: Option<String>,
}

/// The newest installed server's bin directory (`/usr/lib/postgresql/N/bin`), or
/// `FLUMEWATCH_PG_BIN`.
fn server_bin() -> PathBuf {
    if let Some(dir) = std::env::var_os("FLUMEWATCH_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).unwrap_or_else(|| {
        panic!("no PostgreSQL server in /usr/lib/postgresql: run tests/run.sh, which installs Debian's postgresql")
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl PgCluster {
    /// initdb + start; panics with the server's log when it cannot.
    pub fn start() -> Self {
        let dir = TempDir::new("pg");
        let base = dir.path().join("pg");
        std::fs::create_dir(&base).expect("pg dir");
        let run_as = is_root().then(|| "postgres".to_owned());
        if let Some(user) = &run_as {
            let chown = Command::new("chown")
                .args([&format!("{user}:"), base.to_str().unwrap()])
                .status()
                .expect("chown");
            assert!(chown.success(), "chown {user} {}", base.display());
        }
        let cluster = Self {
            data: base.join("data"),
            log: base.join("server.log"),
            socket_dir: base.clone(),
            bin: server_bin(),
            port: AtomicU16::new(free_port()),
            run_as,
            _dir: dir,
        };
        let init = cluster.run(
            "initdb",
            &[
                "-D",
                cluster.data.to_str().unwrap(),
                "-U",
                USER,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        assert!(
            init.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        // The port was free when chosen; a parallel test may have taken it since.
        for _ in 0..3 {
            match cluster.try_start() {
                Ok(()) => return cluster,
                Err(why) if why.contains("already in use") => {
                    cluster.port.store(free_port(), Ordering::Relaxed);
                }
                Err(why) => panic!("{why}"),
            }
        }
        cluster.start_again();
        cluster
    }

    fn run(&self, tool: &str, args: &[&str]) -> Output {
        let tool = self.bin.join(tool);
        let mut command = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&tool);
                c
            }
            None => Command::new(&tool),
        };
        command
            .args(args)
            .current_dir(self.socket_dir.as_path())
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", tool.display()))
    }

    /// Starts the server (again, after [`stop`](Self::stop)) and waits until it accepts
    /// connections.
    pub fn start_again(&self) {
        if let Err(why) = self.try_start() {
            panic!("{why}");
        }
    }

    fn try_start(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off",
            self.port(),
            self.socket_dir.display()
        );
        let started = self.run(
            "pg_ctl",
            &[
                "-D",
                self.data.to_str().unwrap(),
                "-l",
                self.log.to_str().unwrap(),
                "-o",
                &options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        if started.status.success() {
            return Ok(());
        }
        Err(format!(
            "pg_ctl start: {}\n{}",
            String::from_utf8_lossy(&started.stderr),
            std::fs::read_to_string(&self.log).unwrap_or_default()
        ))
    }

    /// Stops the server now (clients see their connections closed), as an outage would.
    pub fn stop(&self) {
        let stopped = self.run(
            "pg_ctl",
            &[
                "-D",
                self.data.to_str().unwrap(),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
        );
        assert!(
            stopped.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&stopped.stderr)
        );
    }

    /// `postgres://flumewatch@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/postgres", self.port())
    }

    pub fn port(&self) -> u16 {
        self.port.load(Ordering::Relaxed)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self.run(
            "pg_ctl",
            &[
                "-D",
                self.data.to_str().unwrap_or_default(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }
}
