//! What a running process costs, read from /proc: CPU (schedstat, exact where clock ticks
//! are 10 ms coarse), context switches and memory. For the bench and load tools.

/// Nanoseconds on CPU of every thread of `pid` (schedstat: exact, unlike clock ticks).
pub fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

pub fn rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Memory of `pid` from /proc/PID/smaps_rollup: resident (of it, anonymous) and proportional
/// (shared pages such as libc's divided among the processes mapping them), in KiB.
#[derive(Clone, Copy, Default)]
pub struct Memory {
    pub rss: u64,
    pub anon: u64,
    pub pss: u64,
}

pub fn memory(pid: u32) -> Memory {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    };
    Memory {
        rss: field("Rss:"),
        anon: field("Anonymous:"),
        pss: field("Pss:"),
    }
}

/// CPU time and context switches of every thread of a process, at one moment.
#[derive(Clone, Copy)]
pub struct Usage {
    pub cpu_ns: u64,
    pub switches: u64,
}

pub fn usage(pid: u32) -> Usage {
    Usage {
        cpu_ns: cpu_ns(pid),
        switches: context_switches(pid),
    }
}

/// Voluntary and involuntary context switches of every thread of `pid`.
pub fn context_switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("status")).ok())
        .flat_map(|status| {
            status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

/// CPU of the whole process from /proc/PID/stat (clock ticks, 10 ms): unlike [`cpu_ns`] it
/// keeps what threads that have exited used, so it suits long runs of a process whose thread
/// pool comes and goes.
pub fn cpu_total(pid: u32) -> Option<std::time::Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(std::time::Duration::from_millis(ticks * 10))
}
