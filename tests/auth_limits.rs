//! `http.limits`: abusive clients are cut off with 4xx or a closed connection, and the
//! registry keeps serving everyone else.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::*;

fn limited(lines: &[&str]) -> Registry {
    let mut b = Registry::builder(Driver::Filesystem).http_line("  limits:");
    for l in lines {
        b = b.http_line(&format!("    {l}"));
    }
    b.start()
}

/// Reads until the server closes or `limit` passes; (bytes, closed).
fn read_for(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + limit;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return (out, true),
        }
    }
    (out, false)
}

#[test]
fn stalled_upload_body_is_aborted_and_its_bytes_dropped() {
    let reg = limited(&["bodyidletimeout: 2s"]);
    let location = start_upload(&reg, "limits/stall");
    let path = location_path(&location);
    let mut stream = TcpStream::connect(reg.addr()).unwrap();
    write!(
        stream,
        "PATCH {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\n0123456789",
        reg.host()
    )
    .unwrap();
    let started = Instant::now();
    let (answer, _) = read_for(&mut stream, Duration::from_secs(15));
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.starts_with("HTTP/1.1 4"),
        "stalled PATCH answered: {text:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    // The session still stands at offset 0: the partial chunk was dropped.
    let resp = send(reg.get(&location_path(&location)));
    resp.assert_status(204);
    assert_eq!(resp.header("range"), Some("0-0"));
    send(reg.get("/v2/")).assert_status(200);
}

#[test]
fn oversized_and_overcrowded_heads_get_431() {
    let reg = limited(&["maxheaderbytes: 2048", "maxheaders: 20"]);
    let resp = send(reg.get("/v2/").header("x-filler", "a".repeat(3000)));
    assert_error(&resp, 431, "SIZE_INVALID");
    let mut req = reg.get("/v2/");
    for i in 0..40 {
        req = req.header(format!("x-h{i}"), "v");
    }
    match req.send() {
        Ok(resp) => assert_eq!(resp.status().as_u16(), 431),
        // hyper may refuse the head before it is parsed into a request.
        Err(e) => assert!(
            e.is_request() || e.is_connect() || e.to_string().contains("closed"),
            "{e}"
        ),
    }
    send(reg.get("/v2/").header("x-small", "ok")).assert_status(200);
}

#[test]
fn heads_many_reads_long_up_to_the_limit_are_served() {
    // The server's reads start at 8 KiB and grow only while the socket stays full: a head
    // many reads long must still arrive whole, under the default limit and a raised one.
    let reg = Registry::builder(Driver::Filesystem).start();
    send(reg.get("/v2/").header("x-filler", "a".repeat(60_000))).assert_status(200);
    let reg = limited(&["maxheaderbytes: 600000"]);
    send(reg.get("/v2/").header("x-filler", "a".repeat(590_000))).assert_status(200);
    send(reg.get("/v2/").header("x-filler", "a".repeat(602_000))).assert_status(431);
}

#[test]
fn slow_request_heads_are_cut_off() {
    let reg = limited(&["headerreadtimeout: 1s"]);
    let mut stream = TcpStream::connect(reg.addr()).unwrap();
    stream
        .write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let (answer, closed) = read_for(&mut stream, Duration::from_secs(10));
    assert!(closed, "connection with an unfinished head still open");
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text:?}"
    );
}

#[test]
fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let reg = limited(&["maxconnections: 2"]);
    let idle: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(reg.addr()).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut third = TcpStream::connect(reg.addr()).unwrap();
    write!(
        third,
        "GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let (answer, _) = read_for(&mut third, Duration::from_secs(1));
    assert!(
        answer.is_empty(),
        "served beyond the cap: {:?}",
        String::from_utf8_lossy(&answer)
    );
    drop(idle);
    let (answer, _) = read_for(&mut third, Duration::from_secs(10));
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
}
