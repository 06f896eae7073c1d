//! The writer against sinks that stall: a full queue drops and counts without blocking the
//! caller, drops are reported once the sink drains, and the guard's flush is bounded.

use std::io::Write;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::{DropReport, NonBlocking};

/// Generous for a loaded 2-core machine; the operations timed here take microseconds.
const QUICK: Duration = Duration::from_secs(2);

/// A sink whose every write waits for a permit, like a pipe nobody reads: it says when a write
/// has started and keeps what it was allowed to write.
struct Gate {
    started: Sender<()>,
    permits: Receiver<()>,
    written: Arc<Mutex<Vec<u8>>>,
}

impl Write for Gate {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let _ = self.started.send(());
        if self.permits.recv().is_err() {
            // The test ended: behave like a closed pipe.
            return Err(std::io::ErrorKind::BrokenPipe.into());
        }
        self.written.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Gated {
    writer: NonBlocking,
    guard: super::LogGuard,
    started: Receiver<()>,
    permits: Sender<()>,
    written: Arc<Mutex<Vec<u8>>>,
    reports: Receiver<u64>,
}

fn gated(capacity: usize) -> Gated {
    let (started_tx, started) = channel();
    let (permits, permits_rx) = channel();
    let written = Arc::new(Mutex::new(Vec::new()));
    let (reports_tx, reports) = channel();
    let reports_tx = Mutex::new(reports_tx);
    let report: DropReport = Box::new(move |n| {
        let _ = reports_tx.lock().unwrap().send(n);
    });
    let sink = Gate {
        started: started_tx,
        permits: permits_rx,
        written: written.clone(),
    };
    let (writer, guard) =
        NonBlocking::new(sink, capacity, Duration::from_millis(50), report).unwrap();
    Gated {
        writer,
        guard,
        started,
        permits,
        written,
        reports,
    }
}

#[test]
fn a_full_queue_drops_and_counts_without_blocking_then_reports_once_drained() {
    let g = gated(4);
    g.writer.push(b"line 0\n".to_vec());
    // The writer holds line 0 in a write that cannot finish: the sink has stalled.
    g.started
        .recv_timeout(QUICK)
        .expect("the writer takes line 0");
    let begun = Instant::now();
    for i in 1..=10 {
        g.writer.push(format!("line {i}\n").into_bytes());
    }
    assert!(begun.elapsed() < QUICK, "pushing never waits for the sink");
    assert_eq!(
        g.writer.dropped(),
        6,
        "4 queued behind line 0, the other 6 dropped"
    );
    assert!(
        g.reports.try_recv().is_err(),
        "no report while the sink is still stalled"
    );
    // The sink reads again: line 0 and the 4 queued lines are written, in order.
    for _ in 0..5 {
        g.permits.send(()).unwrap();
    }
    assert_eq!(
        g.reports.recv_timeout(QUICK),
        Ok(6),
        "the drops are reported once the queue has drained"
    );
    assert_eq!(
        String::from_utf8(g.written.lock().unwrap().clone()).unwrap(),
        "line 0\nline 1\nline 2\nline 3\nline 4\n"
    );
    assert!(
        g.reports.recv_timeout(Duration::from_millis(200)).is_err(),
        "nothing new dropped, nothing more reported"
    );
}

#[test]
fn shutdown_flush_waits_for_a_reading_sink_and_gives_up_on_a_stalled_one() {
    let g = gated(8);
    let guard = g.guard.with_deadline(Duration::from_millis(200));
    for i in 0..3 {
        g.writer.push(format!("line {i}\n").into_bytes());
    }
    for _ in 0..3 {
        g.permits.send(()).unwrap();
    }
    assert!(guard.flush(), "a reading sink gets every queued line");
    assert_eq!(g.written.lock().unwrap().len(), "line 0\n".len() * 3);

    g.writer.push(b"stuck\n".to_vec());
    g.started
        .recv_timeout(QUICK)
        .expect("the writer is in a write");
    let begun = Instant::now();
    assert!(!guard.flush(), "a stalled sink is not waited for");
    assert!(
        begun.elapsed() < QUICK,
        "the flush is bounded by its deadline"
    );
    drop(g.permits);
}

#[test]
fn each_event_reaches_the_sink_as_one_whole_line() {
    let g = gated(16);
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(g.writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        tracing::info!(host = "bj-flume-01", "connected");
        tracing::warn!("second");
    });
    for _ in 0..2 {
        g.permits.send(()).unwrap();
    }
    assert!(g.guard.flush());
    let text = String::from_utf8(g.written.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].ends_with("connected host=\"bj-flume-01\""),
        "{text}"
    );
    assert!(lines[1].ends_with("second"), "{text}");
}
