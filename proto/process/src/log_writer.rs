//! The log writer that cannot stall the service: callers format their line and hand it to a
//! bounded queue without waiting; one thread writes the queue to the real sink (stdout). When
//! the sink stops reading (a full pipe, a stuck journald) the queue fills and further lines are
//! dropped and counted, never waited for. Knows nothing of formats or filters (`logging.rs`).

use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// Lines that may wait for a slow sink: a whole fleet reconnecting at once (one line per
/// sidecar) fits, and at a few hundred bytes a line the queue stays within a few MiB.
pub const LOG_QUEUE_LINES: usize = 8192;

/// At most one "lines dropped" warning this often, so a consumer that keeps stalling and
/// recovering yields one line per period rather than one per recovery.
pub const DROP_REPORT_EVERY: Duration = Duration::from_secs(10);

/// How long shutdown waits for queued lines to reach the sink: long enough for a reading
/// consumer to take a full queue, short enough that a blocked stdout never holds up exit.
pub const FLUSH_DEADLINE: Duration = Duration::from_secs(2);

/// Told the number of lines dropped since the last report, once the queue has drained.
pub type DropReport = Box<dyn Fn(u64) + Send>;

/// The hand-off point between callers and the writer thread, a `MakeWriter` for
/// `tracing_subscriber`: every event becomes one [`Line`], queued when dropped.
#[derive(Clone)]
pub struct NonBlocking {
    /// Bounded: the queue is the most memory a stalled sink may cost ([`LOG_QUEUE_LINES`]).
    tx: SyncSender<Vec<u8>>,
    shared: Arc<Shared>,
}

/// Waits (bounded) for queued lines to be written when dropped: keep it until exit.
#[must_use = "dropping the guard flushes the log queue; keep it until the process exits"]
pub struct LogGuard {
    shared: Arc<Shared>,
    deadline: Duration,
}

/// One formatted event, collected until it is complete and then queued whole.
pub struct Line<'a> {
    buf: Vec<u8>,
    to: &'a NonBlocking,
}

/// What callers, the writer thread and the guard share.
struct Shared {
    /// Lines refused because the queue was full: the `/metrics` counter.
    dropped: AtomicU64,
    /// Lines queued and not yet written, so the guard knows when the queue has drained.
    queued: AtomicUsize,
    /// Held only to notify `drained` without losing a wake-up (see `written`).
    idle: Mutex<()>,
    /// Signalled when `queued` reaches zero.
    drained: Condvar,
}

// === impl NonBlocking ===

impl NonBlocking {
    /// Starts the writer thread on `sink` with room for `capacity` lines; `report` is called on
    /// that thread with the number of lines lost since the previous report, once the queue has
    /// drained after losing some (at most once per `report_every`).
    pub fn new<W: Write + Send + 'static>(
        sink: W,
        capacity: usize,
        report_every: Duration,
        report: DropReport,
    ) -> std::io::Result<(Self, LogGuard)> {
        let (tx, rx) = std::sync::mpsc::sync_channel(capacity);
        let shared = Arc::new(Shared {
            dropped: AtomicU64::new(0),
            queued: AtomicUsize::new(0),
            idle: Mutex::new(()),
            drained: Condvar::new(),
        });
        let writer = WriterThread {
            rx,
            sink,
            shared: shared.clone(),
            report,
            report_every,
        };
        std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || writer.run())?;
        let guard = LogGuard {
            shared: shared.clone(),
            deadline: FLUSH_DEADLINE,
        };
        Ok((Self { tx, shared }, guard))
    }

    /// Lines dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Queues `line`, or drops and counts it when the queue is full: never waits.
    pub fn push(&self, line: Vec<u8>) {
        // Counted before sending so the writer never sees a line it cannot subtract.
        self.shared.queued.fetch_add(1, Ordering::AcqRel);
        match self.tx.try_send(line) {
            Ok(()) => {}
            // Disconnected only if the writer thread died: losing the line is all that is left.
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.shared.written();
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for NonBlocking {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        Line {
            buf: Vec::new(),
            to: self,
        }
    }
}

// === impl Line ===

impl Write for Line<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line<'_> {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            self.to.push(std::mem::take(&mut self.buf));
        }
    }
}

// === impl Shared ===

impl Shared {
    /// One queued line is gone (written or dropped); wakes the guard when none are left.
    fn written(&self) {
        if self.queued.fetch_sub(1, Ordering::AcqRel) == 1 {
            // Taking the lock orders this notify after a waiter's check of `queued`.
            drop(self.idle.lock());
            self.drained.notify_all();
        }
    }
}

// === impl LogGuard ===

impl LogGuard {
    /// The same guard with another flush deadline (tests).
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// Waits until every queued line is written or the deadline passes; true when drained.
    pub fn flush(&self) -> bool {
        let Ok(idle) = self.shared.idle.lock() else {
            return false;
        };
        match self
            .shared
            .drained
            .wait_timeout_while(idle, self.deadline, |_| {
                self.shared.queued.load(Ordering::Acquire) > 0
            }) {
            Ok((_, timeout)) => !timeout.timed_out(),
            Err(_) => false,
        }
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        // A sink that does not read loses what is queued: exiting on time matters more.
        self.flush();
    }
}

// === impl WriterThread ===

/// The only code that touches the sink, and so the only code a stalled sink can block.
struct WriterThread<W> {
    rx: Receiver<Vec<u8>>,
    sink: W,
    shared: Arc<Shared>,
    report: DropReport,
    report_every: Duration,
}

impl<W: Write> WriterThread<W> {
    fn run(mut self) {
        let mut reported = 0u64;
        let mut last_report: Option<Instant> = None;
        loop {
            match self.rx.recv_timeout(self.report_every) {
                Ok(line) => {
                    // Nowhere to report a failing sink but the sink itself: the line is lost.
                    let _ = self.sink.write_all(&line);
                    let _ = self.sink.flush();
                    self.shared.written();
                }
                // Woken to report drops held back by the rate limit.
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            let dropped = self.shared.dropped.load(Ordering::Relaxed);
            let drained = self.shared.queued.load(Ordering::Acquire) == 0;
            let due = last_report.is_none_or(|at| at.elapsed() >= self.report_every);
            if dropped > reported && drained && due {
                (self.report)(dropped - reported);
                reported = dropped;
                last_report = Some(Instant::now());
            }
        }
    }
}

#[cfg(test)]
#[path = "log_writer_tests.rs"]
mod tests;
