//! A kept-alive TCP socket that the runtime watches only while a poll has to wait on it.
//!
//! A socket registered with the runtime wakes the process for every piece of data that arrives,
//! whether or not anything is reading yet. A poll sends its request and reads the answer a
//! moment later ([`super::http`]'s settle time), and servers write an answer in pieces (Python's
//! http.server in three, Jetty in two): ten agents polled together woke the sidecar 10–25 times
//! a round only to note that data had arrived. Unwatched, the answer waits in the kernel's
//! buffer and is read in one go; the socket joins the runtime's poller only when a read or a
//! write would block, and leaves it when the exchange is over.

use std::io::{self, Read, Write};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bytes asked of the kernel per read (and each connection's buffer to begin with); Flume's
/// answers are about 1–3 KiB.
pub(super) const READ_SIZE: usize = 4 * 1024;

#[derive(Debug)]
pub(super) enum Socket {
    /// Non-blocking, outside the runtime's poller: reads and writes that would block say so.
    Unwatched(std::net::TcpStream),
    /// Registered with the runtime for the rest of an exchange.
    Watched(TcpStream),
    /// Registering failed; the socket was closed and every use is an error.
    Lost,
}

// === impl Socket ===

impl Socket {
    /// Connected to `addr`, with Nagle's algorithm off (one write per request; a second write
    /// would otherwise wait for an ACK).
    pub(super) async fn connect(host: &url::Host<&str>, port: u16) -> io::Result<Self> {
        let stream = match host {
            url::Host::Domain(name) => TcpStream::connect((*name, port)).await?,
            url::Host::Ipv4(ip) => TcpStream::connect((*ip, port)).await?,
            url::Host::Ipv6(ip) => TcpStream::connect((*ip, port)).await?,
        };
        stream.set_nodelay(true)?;
        // Stays non-blocking.
        Ok(Self::Unwatched(stream.into_std()?))
    }

    /// False if the server closed this idle socket (or sent something unasked).
    pub(super) fn still_open(&self) -> bool {
        let mut probe = [0u8; 1];
        let result = match self {
            Socket::Unwatched(stream) => (&*stream).read(&mut probe),
            Socket::Watched(stream) => stream.try_read(&mut probe),
            Socket::Lost => return false,
        };
        matches!(result, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    pub(super) async fn write_all(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        if let Socket::Unwatched(stream) = self {
            while !bytes.is_empty() {
                match stream.write(bytes) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => bytes = &bytes[n..],
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            if bytes.is_empty() {
                return Ok(());
            }
        }
        self.watched()?.write_all(bytes).await
    }

    /// Appends what arrives next to `buf`; 0 at the end of the stream.
    pub(super) async fn read_buf(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        if let Socket::Unwatched(stream) = self {
            if let Some(n) = read_ready(stream, buf)? {
                return Ok(n);
            }
        }
        buf.reserve(READ_SIZE);
        self.watched()?.read_buf(buf).await
    }

    /// Leaves the runtime's poller (after an exchange that had to wait).
    pub(super) fn unwatch(&mut self) -> io::Result<()> {
        *self = match std::mem::replace(self, Socket::Lost) {
            Socket::Watched(stream) => Socket::Unwatched(stream.into_std()?),
            other => other,
        };
        Ok(())
    }

    fn watched(&mut self) -> io::Result<&mut TcpStream> {
        *self = match std::mem::replace(self, Socket::Lost) {
            Socket::Unwatched(stream) => Socket::Watched(TcpStream::from_std(stream)?),
            other => other,
        };
        match self {
            Socket::Watched(stream) => Ok(stream),
            _ => Err(io::Error::other("the socket was lost registering it")),
        }
    }
}

/// What the kernel holds for `stream` now, appended to `buf`; `None` if nothing has arrived.
/// A plain function so that its buffer is on the stack, not in a poller's future.
fn read_ready(stream: &mut std::net::TcpStream, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
    // Read through the stack: reading into `buf`'s spare room would mean zeroing it first, and
    // the whole of every connection's buffer would then be resident, not only what was read.
    let mut chunk = [0u8; READ_SIZE];
    loop {
        match stream.read(&mut chunk) {
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return Ok(Some(n));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}
