//! Raw HTTP/1.1 over a `TcpStream`, for what an HTTP library refuses or normalizes: malformed
//! heads, lying lengths, truncated bodies, half-closed connections.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use super::client::Resp;

/// How a raw request ends on our side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawEnd {
    /// Write the request, shut down our sending side, read the answer. Servers need not answer a
    /// half-closed connection (hyper drops it by default): only for requests whose body is
    /// deliberately short.
    ShutdownWrite,
    /// Write the request and keep the connection open while reading the answer.
    KeepOpen,
}

/// Send `head` (request line and headers, without the blank line; `Connection: close` is added)
/// and `body` on a fresh connection; read the answer until the server closes (bounded: 60 s of
/// silence). The body is written from a second thread so an early answer is still read.
pub fn raw_request(addr: SocketAddr, head: &str, body: &[u8], end: RawEnd) -> io::Result<Resp> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    stream.set_write_timeout(Some(Duration::from_secs(60)))?;
    let mut request = head.trim_end_matches("\r\n").to_string();
    request.push_str("\r\nConnection: close\r\n\r\n");
    let mut payload = request.into_bytes();
    payload.extend_from_slice(body);
    let mut writer = stream.try_clone()?;
    let writer_thread = thread::spawn(move || {
        let result = writer.write_all(&payload).and_then(|_| writer.flush());
        if end == RawEnd::ShutdownWrite {
            let _ = writer.shutdown(Shutdown::Write);
        }
        result
    });
    // Read until the server closes, bounded in time (120 s) and in number of reads.
    let mut answer = Vec::new();
    let mut read_result = Ok(());
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut buf = vec![0u8; 64 * 1024];
    for _ in 0..100_000 {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) => {
                read_result = Err(e);
                break;
            }
        }
        if Instant::now() > deadline {
            read_result = Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "answer not finished within 120 s",
            ));
            break;
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
    let _ = writer_thread.join();
    if answer.is_empty()
        || read_result
            .as_ref()
            .is_err_and(|e| e.kind() == io::ErrorKind::TimedOut)
    {
        read_result?;
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed without an answer",
        ));
    }
    parse_raw_response(&answer)
}

/// Write `head` and the first bytes of a body, then close the connection: a truncated upload.
pub fn raw_truncated(addr: SocketAddr, head: &str, partial_body: &[u8]) -> io::Result<()> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    stream.set_write_timeout(Some(Duration::from_secs(30)))?;
    let mut payload = head.trim_end_matches("\r\n").as_bytes().to_vec();
    payload.extend_from_slice(b"\r\n\r\n");
    payload.extend_from_slice(partial_body);
    stream.write_all(&payload)?;
    stream.flush()?;
    // Give the server a moment to read what was sent before the connection goes away.
    thread::sleep(Duration::from_millis(200));
    drop(stream);
    Ok(())
}

/// Parses an HTTP/1.1 answer (chunked or with a `Content-Length`).
pub fn parse_raw_response(raw: &[u8]) -> io::Result<Resp> {
    let invalid = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| invalid("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut rest = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(|| invalid("no status line"))?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid("bad status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| {
            let (k, v) = line.split_once(':')?;
            Some((k.trim().to_ascii_lowercase(), v.trim().to_string()))
        })
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        rest = decode_chunked(&rest).ok_or_else(|| invalid("bad chunked body"))?;
    } else if let Some(len) = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        rest.truncate(len);
    }
    Ok(Resp {
        status,
        headers,
        body: rest,
        elapsed: Duration::ZERO,
    })
}

fn decode_chunked(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        if data.len() < size {
            out.extend_from_slice(data);
            return Some(out);
        }
        out.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or(&[]);
    }
}
