//! One HTTP/1.1 GET on a kept-alive TCP connection: what polling Flume's Jetty over plain
//! `http://` needs and nothing more (no TLS, no redirects, no proxies, no compression).
//!
//! Reads the response head (bounded), then a `Content-Length`, chunked or close-delimited body
//! under a size cap. The caller bounds the whole exchange in time and sorts the errors into scrape
//! outcomes; this module only says what went wrong on the wire.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A response head larger than this is not Flume's (Jetty's default limit is 8 KiB).
const MAX_HEAD: usize = 16 * 1024;
/// A chunk-size or trailer line longer than this is not HTTP.
const MAX_LINE: usize = 1024;
/// Bytes asked of the kernel per read (and each connection's buffer to begin with); Flume's
/// answers are about 1–3 KiB.
const READ_SIZE: usize = 4 * 1024;
/// A connection's read buffer is kept between polls unless an odd answer grew it past this.
const KEEP_BUFFER: usize = 64 * 1024;
/// How long after sending a request its answer is first read. Servers write an answer in
/// pieces (Jetty: head, then the chunked body; Python's http.server: head, chunk, last chunk),
/// and reading at the first byte costs a wake-up and a read per piece; a poll every few
/// seconds loses nothing by reading a millisecond later, when the answer is usually whole (the
/// pollers of one round also wake together then). An answer not complete by then is read as
/// it arrives.
const SETTLE: std::time::Duration = std::time::Duration::from_millis(1);

/// A connection to one Flume endpoint, kept between polls.
#[derive(Debug)]
pub(super) struct Connection {
    stream: TcpStream,
    /// Read buffer, reused by every exchange; empty between them.
    buf: Vec<u8>,
}

/// What went wrong on the wire, before any policy is applied.
#[derive(Debug)]
pub(super) enum WireError {
    Io(io::Error),
    /// The peer closed the connection before the answer was complete.
    Closed,
    /// The response head is not HTTP/1.x as this client reads it.
    BadHead(&'static str),
    /// The body's framing is broken (chunk sizes).
    BadBody(&'static str),
    /// The body is larger than the cap.
    TooLarge,
}

impl From<io::Error> for WireError {
    fn from(e: io::Error) -> Self {
        WireError::Io(e)
    }
}

/// A failed exchange, and how far it got.
#[derive(Debug)]
pub(super) struct Failure {
    pub error: WireError,
    /// Some of the answer had arrived. A kept-alive connection the server closed while it was
    /// idle fails before that, and the request can be sent again on a new one.
    pub answered: bool,
    /// The head had been read: a failure now is the body's.
    pub head_read: bool,
}

/// The answer to one GET. For any status but 200 the body is not read (and the connection not
/// reused).
#[derive(Debug)]
pub(super) struct Response {
    pub status: u16,
    /// The server's reason phrase, printable ASCII only, at most 64 bytes.
    pub reason: String,
    pub body: Vec<u8>,
    /// The connection may carry the next request.
    pub reusable: bool,
}

/// How the body is delimited.
enum Framing {
    Length(u64),
    Chunked,
    UntilClose,
}

// === impl Connection ===

impl Connection {
    pub(super) async fn open(host: &url::Host<&str>, port: u16) -> io::Result<Self> {
        let stream = match host {
            url::Host::Domain(name) => TcpStream::connect((*name, port)).await?,
            url::Host::Ipv4(ip) => TcpStream::connect((*ip, port)).await?,
            url::Host::Ipv6(ip) => TcpStream::connect((*ip, port)).await?,
        };
        // One write per request; without this a pipelined second write would wait for an ACK.
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buf: Vec::with_capacity(READ_SIZE),
        })
    }

    /// False if the server closed this idle connection (or sent something unasked).
    pub(super) fn still_open(&self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Sends `request` (a complete GET) and reads the answer, with bodies up to `max_body` bytes.
    pub(super) async fn get(
        &mut self,
        request: &[u8],
        max_body: usize,
    ) -> Result<Response, Failure> {
        self.buf.clear();
        if self.buf.capacity() > KEEP_BUFFER {
            self.buf = Vec::with_capacity(READ_SIZE);
        }
        let mut reader = Reader {
            stream: &mut self.stream,
            buf: &mut self.buf,
            pos: 0,
            answered: false,
        };
        let mut head_read = false;
        let result = exchange(&mut reader, request, max_body, &mut head_read).await;
        let answered = reader.answered;
        result.map_err(|error| Failure {
            error,
            answered,
            head_read,
        })
    }
}

async fn exchange(
    reader: &mut Reader<'_>,
    request: &[u8],
    max_body: usize,
    head_read: &mut bool,
) -> Result<Response, WireError> {
    reader.stream.write_all(request).await?;
    tokio::time::sleep(SETTLE).await;
    let head_end = reader.head().await?;
    let head = Head::parse(&reader.buf[..head_end])?;
    reader.pos = head_end;
    *head_read = true;
    if head.status != 200 {
        return Ok(Response {
            status: head.status,
            reason: head.reason,
            body: Vec::new(),
            reusable: false,
        });
    }
    let body = match head.framing {
        Framing::Length(length) => {
            if length > max_body as u64 {
                return Err(WireError::TooLarge);
            }
            reader.take(length as usize).await?
        }
        Framing::Chunked => reader.chunked(max_body).await?,
        Framing::UntilClose => reader.until_close(max_body).await?,
    };
    // Bytes past the answer were not asked for: start the next poll on a clean connection.
    let leftover = reader.pos < reader.buf.len();
    Ok(Response {
        status: head.status,
        reason: head.reason,
        body,
        reusable: head.keep_alive && !leftover && !matches!(head.framing, Framing::UntilClose),
    })
}

/// The response head as far as this client cares.
struct Head {
    status: u16,
    reason: String,
    framing: Framing,
    keep_alive: bool,
}

impl Head {
    /// `head` is the status line and header lines, up to and including the blank line.
    fn parse(head: &[u8]) -> Result<Self, WireError> {
        let mut lines = head
            .split(|&b| b == b'\n')
            .map(|line| line.strip_suffix(b"\r").unwrap_or(line));
        let status_line = lines.next().ok_or(WireError::BadHead("no status line"))?;
        let (version, rest) =
            split_once(status_line, b' ').ok_or(WireError::BadHead("no status"))?;
        let http10 = match version {
            b"HTTP/1.1" => false,
            b"HTTP/1.0" => true,
            _ => return Err(WireError::BadHead("not an HTTP/1.x status line")),
        };
        let (code, reason) = split_once(rest, b' ').unwrap_or((rest, b""));
        let status = match code {
            [a, b, c] if code.iter().all(u8::is_ascii_digit) => {
                u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
            }
            _ => return Err(WireError::BadHead("the status is not three digits")),
        };
        let reason = reason
            .iter()
            .take(64)
            .filter(|b| b.is_ascii_graphic() || **b == b' ')
            .map(|&b| char::from(b))
            .collect::<String>()
            .trim()
            .to_owned();
        let mut length: Option<u64> = None;
        let mut chunked = false;
        let mut keep_alive = !http10;
        for line in lines.filter(|l| !l.is_empty()) {
            let (name, value) =
                split_once(line, b':').ok_or(WireError::BadHead("a header line without ':'"))?;
            let value = value.trim_ascii();
            if name.eq_ignore_ascii_case(b"content-length") {
                let parsed = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or(WireError::BadHead("Content-Length is not a number"))?;
                if length.is_some_and(|l| l != parsed) {
                    return Err(WireError::BadHead("two different Content-Lengths"));
                }
                length = Some(parsed);
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                // Chunked must be the last coding; anything else this client cannot decode.
                let last = value
                    .rsplit(|&b| b == b',')
                    .next()
                    .unwrap_or(b"")
                    .trim_ascii();
                if !last.eq_ignore_ascii_case(b"chunked") {
                    return Err(WireError::BadHead("a transfer coding other than chunked"));
                }
                chunked = true;
            } else if name.eq_ignore_ascii_case(b"connection") {
                for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                    if token.eq_ignore_ascii_case(b"close") {
                        keep_alive = false;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        keep_alive = true;
                    }
                }
            }
        }
        // Chunked wins over a Content-Length (RFC 9112 §6.3), but such a connection is not reused.
        let framing = match (chunked, length) {
            (true, Some(_)) => {
                keep_alive = false;
                Framing::Chunked
            }
            (true, None) => Framing::Chunked,
            (false, Some(length)) => Framing::Length(length),
            (false, None) => Framing::UntilClose,
        };
        Ok(Self {
            status,
            reason,
            framing,
            keep_alive,
        })
    }
}

fn split_once(bytes: &[u8], at: u8) -> Option<(&[u8], &[u8])> {
    let i = bytes.iter().position(|&b| b == at)?;
    Some((&bytes[..i], &bytes[i + 1..]))
}

/// Reads from the connection into its buffer; `pos` is where the unread part starts.
struct Reader<'a> {
    stream: &'a mut TcpStream,
    buf: &'a mut Vec<u8>,
    pos: usize,
    answered: bool,
}

impl Reader<'_> {
    /// Reads more; false at the end of the stream.
    async fn fill(&mut self) -> Result<bool, WireError> {
        self.buf.reserve(READ_SIZE);
        let n = self.stream.read_buf(self.buf).await?;
        if n > 0 {
            self.answered = true;
        }
        Ok(n > 0)
    }

    /// Like `fill`, but the end of the stream is an error.
    async fn more(&mut self) -> Result<(), WireError> {
        if self.fill().await? {
            Ok(())
        } else {
            Err(WireError::Closed)
        }
    }

    /// Reads until the blank line ending the head; returns the index just past it.
    async fn head(&mut self) -> Result<usize, WireError> {
        let mut searched = self.pos;
        loop {
            let from = searched.saturating_sub(3).max(self.pos);
            if let Some(i) = find(&self.buf[from..], b"\r\n\r\n") {
                return Ok(from + i + 4);
            }
            searched = self.buf.len();
            if searched - self.pos > MAX_HEAD {
                return Err(WireError::BadHead("the response head is too large"));
            }
            self.more().await?;
        }
    }

    /// The next `n` bytes.
    async fn take(&mut self, n: usize) -> Result<Vec<u8>, WireError> {
        while self.buf.len() - self.pos < n {
            self.more().await?;
        }
        let body = self.buf[self.pos..self.pos + n].to_vec();
        self.pos += n;
        Ok(body)
    }

    /// One CRLF-terminated line, without the CRLF.
    async fn line(&mut self) -> Result<std::ops::Range<usize>, WireError> {
        loop {
            if let Some(i) = find(&self.buf[self.pos..], b"\r\n") {
                let line = self.pos..self.pos + i;
                self.pos += i + 2;
                return Ok(line);
            }
            if self.buf.len() - self.pos > MAX_LINE {
                return Err(WireError::BadBody("a chunk line is too long"));
            }
            self.more().await?;
        }
    }

    async fn chunked(&mut self, max_body: usize) -> Result<Vec<u8>, WireError> {
        let mut body = Vec::new();
        loop {
            let line = self.line().await?;
            let size = chunk_size(&self.buf[line])?;
            if size == 0 {
                break;
            }
            if body.len() as u64 + size > max_body as u64 {
                return Err(WireError::TooLarge);
            }
            let size = size as usize;
            while self.buf.len() - self.pos < size + 2 {
                self.more().await?;
            }
            if body.is_empty() {
                body.reserve_exact(size);
            }
            body.extend_from_slice(&self.buf[self.pos..self.pos + size]);
            if &self.buf[self.pos + size..self.pos + size + 2] != b"\r\n" {
                return Err(WireError::BadBody("a chunk does not end with CRLF"));
            }
            self.pos += size + 2;
            // A body of many small chunks must not keep them all in the read buffer.
            if self.pos == self.buf.len() {
                self.buf.clear();
                self.pos = 0;
            }
        }
        // Trailer fields, then the blank line.
        while !self.line().await?.is_empty() {}
        Ok(body)
    }

    async fn until_close(&mut self, max_body: usize) -> Result<Vec<u8>, WireError> {
        while self.fill().await? {
            if self.buf.len() - self.pos > max_body {
                return Err(WireError::TooLarge);
            }
        }
        let body = self.buf[self.pos..].to_vec();
        self.pos = self.buf.len();
        Ok(body)
    }
}

/// A chunk-size line: hex digits, optionally followed by `;extensions`.
fn chunk_size(line: &[u8]) -> Result<u64, WireError> {
    let digits = line
        .split(|&b| b == b';')
        .next()
        .unwrap_or(b"")
        .trim_ascii();
    if digits.is_empty() || digits.len() > 15 {
        return Err(WireError::BadBody("a chunk size is not a hex number"));
    }
    digits.iter().try_fold(0u64, |size, &b| {
        let digit = char::from(b)
            .to_digit(16)
            .ok_or(WireError::BadBody("a chunk size is not a hex number"))?;
        Ok(size * 16 + u64::from(digit))
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Result<Head, WireError> {
        Head::parse(text.as_bytes())
    }

    #[test]
    fn heads_as_jetty_and_others_write_them() {
        let jetty = head("HTTP/1.1 200 OK\r\nContent-Type: application/json;charset=utf-8\r\nTransfer-Encoding: chunked\r\nServer: Jetty(9.4.57.v20241219)\r\n\r\n").unwrap();
        assert_eq!(
            (jetty.status, jetty.reason.as_str(), jetty.keep_alive),
            (200, "OK", true)
        );
        assert!(matches!(jetty.framing, Framing::Chunked));
        let closing =
            head("HTTP/1.1 404 Not Found\r\ncontent-length: 12\r\nConnection: close\r\n\r\n")
                .unwrap();
        assert_eq!((closing.status, closing.keep_alive), (404, false));
        assert!(matches!(closing.framing, Framing::Length(12)));
        let old = head("HTTP/1.0 200\r\n\r\n").unwrap();
        assert!(!old.keep_alive);
        assert!(matches!(old.framing, Framing::UntilClose));
        let old_kept =
            head("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n").unwrap();
        assert!(old_kept.keep_alive);
    }

    #[test]
    fn heads_that_are_not_http_are_refused() {
        for bad in [
            "SSH-2.0-OpenSSH_9.2\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
            "HTTP/2 200\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            "HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
        ] {
            assert!(matches!(head(bad), Err(WireError::BadHead(_))), "{bad:?}");
        }
    }

    #[test]
    fn chunk_sizes() {
        assert_eq!(chunk_size(b"1f4").unwrap(), 500);
        assert_eq!(chunk_size(b"A;name=value").unwrap(), 10);
        assert_eq!(chunk_size(b"0").unwrap(), 0);
        for bad in [&b""[..], b"x1", b"-1", b"ffffffffffffffff"] {
            assert!(chunk_size(bad).is_err(), "{bad:?}");
        }
    }
}
