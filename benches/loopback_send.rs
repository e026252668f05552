//! What sending a cached file over loopback TCP costs the sender, by the way it is sent.
//!
//! `cargo bench --bench loopback_send -- --run [--size 64MiB --seconds 3 --rounds 3 --methods a,b --json]`
//! (without `--run` it only prints this usage, so the test suite does not run it).
//!
//! A blob download on plain HTTP ends in one of these kernel paths; this measures each with no
//! HTTP and no registry around it, so it is the ceiling a pull can reach on this machine by that
//! path. A receiver thread reads into a 1 MiB buffer; the sender's thread CPU time includes the
//! receive path the loopback device runs in the sender's context, as a server's does. Methods run
//! interleaved, round after round, and the table shows medians (`--json`: one line per method
//! instead, `{"method", "mb_per_s", "cpu_s_per_gb"}`, as `benches/compare.sh` records it).
//!
//! - `write`: bytes already in memory (what `loadgen --null-server` does),
//! - `sendfile`: page cache to socket in the kernel (Wharf's plain-HTTP blob GET),
//! - `splice`: page cache to a 1 MiB pipe to the socket,
//! - `mmap+write`: the file mapped in 4 MiB windows and written from the mapping,
//! - `pread+write`: read into a 512 KiB buffer, then written (the TLS path's copies, no cipher).

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

const METHODS: [&str; 5] = ["write", "sendfile", "splice", "mmap+write", "pread+write"];

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid pointer given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn check(n: isize, what: &str) -> usize {
    if n < 0 {
        panic!("{what}: {}", std::io::Error::last_os_error());
    }
    n as usize
}

/// Sends the whole file once by `method`.
fn send_file(method: &str, sock: &mut TcpStream, file: &File, size: usize, memory: &[u8]) {
    let (s, f) = (sock.as_raw_fd(), file.as_raw_fd());
    match method {
        "write" => sock.write_all(memory).unwrap(),
        "sendfile" => {
            let mut off: libc::off_t = 0;
            while (off as usize) < size {
                // SAFETY: valid descriptors; the kernel advances `off`.
                let n = unsafe { libc::sendfile(s, f, &mut off, size - off as usize) };
                assert!(check(n, "sendfile") > 0, "sendfile: the file ended early");
            }
        }
        "splice" => {
            let mut p = [0; 2];
            // SAFETY: pipe2 fills two descriptors, closed below.
            check(
                unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) } as isize,
                "pipe",
            );
            // SAFETY: F_SETPIPE_SZ on our own pipe.
            unsafe { libc::fcntl(p[1], libc::F_SETPIPE_SZ, 1 << 20) };
            let mut off: libc::loff_t = 0;
            while (off as usize) < size {
                let want = (size - off as usize).min(1 << 20);
                // SAFETY: valid descriptors; the kernel advances `off`.
                let got = unsafe {
                    libc::splice(
                        f,
                        &mut off,
                        p[1],
                        std::ptr::null_mut(),
                        want,
                        libc::SPLICE_F_MOVE,
                    )
                };
                let mut left = check(got, "splice in");
                assert!(left > 0, "splice: the file ended early");
                while left > 0 {
                    // SAFETY: valid descriptors.
                    let n = unsafe {
                        libc::splice(
                            p[0],
                            std::ptr::null_mut(),
                            s,
                            std::ptr::null_mut(),
                            left,
                            libc::SPLICE_F_MOVE,
                        )
                    };
                    let n = check(n, "splice out");
                    assert!(n > 0, "splice: the socket took nothing");
                    left -= n;
                }
            }
            for end in p {
                // SAFETY: the pipe's own descriptors, closed once.
                unsafe { libc::close(end) };
            }
        }
        "mmap+write" => {
            const WINDOW: usize = 4 << 20;
            for at in (0..size).step_by(WINDOW) {
                let len = WINDOW.min(size - at);
                // SAFETY: a read-only shared mapping of a file nobody truncates while it runs.
                let ptr = unsafe {
                    libc::mmap(
                        std::ptr::null_mut(),
                        len,
                        libc::PROT_READ,
                        libc::MAP_SHARED | libc::MAP_POPULATE,
                        f,
                        at as libc::off_t,
                    )
                };
                assert_ne!(ptr, libc::MAP_FAILED, "mmap");
                // SAFETY: the mapping is `len` readable bytes until munmap below.
                let bytes = unsafe { std::slice::from_raw_parts(ptr as *const u8, len) };
                sock.write_all(bytes).unwrap();
                // SAFETY: unmaps what was mapped above; `bytes` is not used after.
                unsafe { libc::munmap(ptr, len) };
            }
        }
        "pread+write" => {
            let mut buf = vec![0u8; 512 << 10];
            for at in (0..size).step_by(buf.len()) {
                let len = buf.len().min(size - at);
                std::os::unix::fs::FileExt::read_exact_at(file, &mut buf[..len], at as u64)
                    .unwrap();
                sock.write_all(&buf[..len]).unwrap();
            }
        }
        _ => unreachable!("unknown method"),
    }
}

/// (MB/s, sender CPU-s per GB) for `method` over `seconds`.
fn measure(method: &str, file: &File, size: usize, memory: &[u8], seconds: f64) -> (f64, f64) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let receiver = std::thread::spawn(move || {
        let mut conn = TcpStream::connect(addr).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n as u64,
            }
        }
    });
    let (mut sock, _) = listener.accept().unwrap();
    let (started, cpu0) = (Instant::now(), thread_cpu());
    let mut sent = 0u64;
    while started.elapsed().as_secs_f64() < seconds {
        send_file(method, &mut sock, file, size, memory);
        sent += size as u64;
    }
    let (elapsed, cpu) = (
        started.elapsed().as_secs_f64(),
        (thread_cpu() - cpu0).as_secs_f64(),
    );
    drop(sock);
    assert_eq!(
        receiver.join().unwrap(),
        sent,
        "{method}: receiver saw every byte"
    );
    (sent as f64 / elapsed / 1e6, cpu / (sent as f64 / 1e9))
}

fn parse_size(s: &str) -> usize {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: usize = num
        .parse()
        .expect("--size: a number with an optional KiB/MiB/GiB");
    n * match unit {
        "" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => panic!("--size: unit must be KiB, MiB or GiB"),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let (mut size, mut seconds, mut rounds) = (64usize << 20, 3.0f64, 3usize);
    let (mut methods, mut json) = (METHODS.to_vec(), false);
    if !std::env::args().any(|a| a == "--run") {
        println!(
            "usage: cargo bench --bench loopback_send -- --run [--size 64MiB] [--seconds 3] \
             [--rounds 3] [--methods {}] [--json]",
            METHODS.join(",")
        );
        return;
    }
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--size" => size = parse_size(&args.next().expect("--size VALUE")),
            "--seconds" => {
                seconds = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--seconds N")
            }
            "--rounds" => {
                rounds = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--rounds N")
            }
            "--methods" => {
                let list = args.next().expect("--methods a,b");
                methods = list
                    .split(',')
                    .map(|m| {
                        *METHODS
                            .iter()
                            .find(|k| **k == m)
                            .unwrap_or_else(|| panic!("--methods: one of {METHODS:?}"))
                    })
                    .collect();
            }
            "--json" => json = true,
            "--run" | "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    assert!(rounds > 0, "--rounds: at least 1");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blob");
    let memory: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
    std::fs::write(&path, &memory).unwrap();
    let file = File::open(&path).unwrap();
    // Warm the page cache: every method then reads cached pages, as a hot pull does.
    std::io::copy(&mut &file, &mut std::io::sink()).unwrap();
    let mut results: Vec<(Vec<f64>, Vec<f64>)> = vec![(vec![], vec![]); methods.len()];
    for round in 1..=rounds {
        for (i, method) in methods.iter().enumerate() {
            let (mbps, cpu) = measure(method, &file, size, &memory, seconds);
            eprintln!("round {round} {method}: {mbps:.0} MB/s, {cpu:.3} CPU-s per GB");
            results[i].0.push(mbps);
            results[i].1.push(cpu);
        }
    }
    if !json {
        println!("| method | MB/s | sender CPU-s per GB |\n|---|---:|---:|");
    }
    for (method, (mbps, cpu)) in methods.iter().zip(results) {
        let (mbps, cpu) = (median(mbps), median(cpu));
        if json {
            println!(r#"{{"method":"{method}","mb_per_s":{mbps:.0},"cpu_s_per_gb":{cpu:.3}}}"#);
        } else {
            println!("| {method} | {mbps:.0} | {cpu:.3} |");
        }
    }
}
