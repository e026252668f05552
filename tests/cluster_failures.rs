//! Nodes leaving the cluster: a SIGTERM drains (readiness off at once, accepting for a third of
//! `http.draintimeout`, in-flight requests finished, exit 0); a rolling restart of every node
//! under push and pull load through haproxy loses no request; a SIGKILL in the middle of a
//! stream of pushes loses nothing that was acknowledged, and clients' retries succeed on the
//! nodes that remain.

mod support;

use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use support::*;

/// A node of its own (no Redis, no balancer) with this drain timeout.
fn lone_node(name: &str, draintimeout: Duration) -> Registry {
    Registry::builder(Driver::Filesystem)
        .node(name)
        .draintimeout(draintimeout)
        .start()
}

/// Starts an upload on `node` and sends `data` as one PATCH trickling over `over`, in a thread.
fn slow_patch(
    node: &Registry,
    repo: &str,
    data: Vec<u8>,
    over: Duration,
) -> thread::JoinHandle<Result<Resp, String>> {
    let api = node.endpoint();
    let location = start_upload(&api, repo);
    thread::spawn(move || {
        let len = data.len();
        try_send(
            Trickle::new(data, 40, over).payload().attach(
                api.patch(&location)
                    .header("content-range", format!("0-{}", len - 1)),
            ),
        )
    })
}

fn accepts(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[test]
fn sigterm_turns_readiness_off_keeps_accepting_for_a_while_then_drains_and_exits_zero() {
    let _one = exclusive();
    // Grace: 2 s (a third), then 4 s for in-flight requests.
    let mut node = lone_node("drainer", Duration::from_secs(6));
    let api = node.endpoint();
    assert_eq!(node.readyz(), Some(200));
    let data = Prng::new(1).bytes(2 * 1024 * 1024);
    let digest = sha256_digest(&data);
    let in_flight = slow_patch(
        &node,
        "drain/slow",
        data.clone(),
        Duration::from_millis(3500),
    );
    thread::sleep(Duration::from_millis(300));

    let signalled = Instant::now();
    node.terminate();
    // Readiness turns false at once.
    assert!(
        wait_until(Duration::from_millis(500), || node.readyz() == Some(503)),
        "readiness still {:?}",
        node.readyz()
    );
    let (status, body) = node.debug_get("/readyz");
    assert_eq!(status, 503);
    assert!(body.contains("draining"), "{body}");
    // Still accepting during the grace period, asking clients to reconnect elsewhere.
    thread::sleep(Duration::from_millis(500));
    let resp = reqwest::blocking::get(format!("{}/v2/", node.url())).unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()
            .get("connection")
            .and_then(|v| v.to_str().ok()),
        Some("close")
    );
    assert!(signalled.elapsed() < Duration::from_secs(2));
    // After the grace period: no new connections.
    assert!(
        wait_until(Duration::from_secs(4), || !accepts(node.port())),
        "still accepting {:?} after SIGTERM",
        signalled.elapsed()
    );
    let stopped_accepting = signalled.elapsed();
    assert!(
        stopped_accepting >= Duration::from_millis(1900),
        "stopped accepting after {stopped_accepting:?}, before the grace period ended"
    );
    // The request in flight since before the signal finishes, and the session is good.
    let answer = in_flight.join().unwrap().unwrap_or_else(|e| {
        panic!(
            "in-flight PATCH after {:?}: {e}\n{}",
            signalled.elapsed(),
            node.log()
        )
    });
    assert_eq!(answer.status, 202, "{}", answer.text());
    assert_eq!(
        answer.header("range"),
        Some(format!("0-{}", data.len() - 1).as_str())
    );
    let status = node.wait_exit(Duration::from_secs(10)).expect("exited");
    let exited = signalled.elapsed();
    assert!(status.success(), "exit status {status}\n{}", node.log());
    assert!(
        exited < Duration::from_secs(6) + Duration::from_secs(1),
        "{exited:?}"
    );
    let log = node.log();
    assert!(log.contains("draining"), "{log}");
    // Another node finishes the upload the drained node accepted.
    node.restart();
    node.endpoint()
        .finish(answer.must_header("location"), &digest)
        .unwrap();
    let (got, _, _) = api.pull_digest("drain/slow", &digest).unwrap();
    assert_eq!(got, digest);
    eprintln!(
        "SIGTERM: stopped accepting after {stopped_accepting:?}, exited after {exited:?} with {status}"
    );
}

#[test]
fn a_request_longer_than_the_drain_timeout_is_cut_and_the_node_still_exits_zero() {
    let _one = exclusive();
    let mut node = lone_node("impatient", Duration::from_secs(3));
    let data = Prng::new(2).bytes(1024 * 1024);
    let in_flight = slow_patch(&node, "drain/slower", data, Duration::from_secs(20));
    thread::sleep(Duration::from_millis(300));
    let signalled = Instant::now();
    node.terminate();
    let status = node.wait_exit(Duration::from_secs(10)).expect("exited");
    let exited = signalled.elapsed();
    assert!(status.success(), "{status}\n{}", node.log());
    assert!(
        exited >= Duration::from_millis(2900) && exited < Duration::from_secs(5),
        "exited after {exited:?} with http.draintimeout 3s"
    );
    assert!(
        node.log().contains("drain timeout reached"),
        "{}",
        node.log()
    );
    if let Ok(a) = in_flight.join().unwrap() {
        assert_ne!(a.status, 202, "a cut request cannot have succeeded");
    }
}

#[test]
fn rolling_restart_under_load_loses_no_request() {
    let _one = exclusive();
    let mut cluster = Cluster::start(ClusterOptions {
        draintimeout: Duration::from_secs(12),
        ..ClusterOptions::default()
    });
    let load = Load::start(
        cluster.endpoint(),
        LoadOptions {
            pushers: 2,
            pullers: 3,
            slow_uploaders: 2,
            layer_size: 256 * 1024,
            retry: false,
            limit: Duration::from_secs(150),
            max_ops: 100_000,
        },
    );
    assert!(
        load.wait_ops(20, Duration::from_secs(30)),
        "load does not progress"
    );
    let started = Instant::now();
    for name in ["node1", "node2", "node3"] {
        let signalled = Instant::now();
        cluster.node(name).terminate();
        // haproxy takes the node out while it still accepts.
        let out = wait_until(Duration::from_secs(4), || !cluster.haproxy.is_up(name));
        let out_after = signalled.elapsed();
        assert!(out, "haproxy still sends to {name}\n{}", cluster.logs());
        assert!(
            cluster.node(name).running(),
            "{name} exited before haproxy took it out"
        );
        let status = cluster
            .node(name)
            .wait_exit(Duration::from_secs(15))
            .unwrap_or_else(|| panic!("{name} did not exit"));
        assert!(status.success(), "{name}: {status}");
        let exited_after = signalled.elapsed();
        // The replacement, on the same ports.
        cluster.node(name).restart();
        let back = wait_until(Duration::from_secs(15), || cluster.haproxy.is_up(name));
        assert!(back, "haproxy did not take {name} back\n{}", cluster.logs());
        eprintln!(
            "{name}: out of rotation after {out_after:?}, exited after {exited_after:?}, back after {:?}; {} failures so far",
            signalled.elapsed(),
            load.failures()
        );
        assert!(load.wait_ops(10, Duration::from_secs(30)));
    }
    let restart_time = started.elapsed();
    let report = load.stop();
    assert!(
        report.failures.is_empty(),
        "{} failed requests during the rolling restart:\n{}\n{}",
        report.failures.len(),
        report.failures.join("\n"),
        cluster.logs()
    );
    // haproxy saw no error either: every logged request got a status below 500.
    let errors: Vec<String> = cluster
        .haproxy
        .request_lines()
        .into_iter()
        .filter(|l| {
            l.split_whitespace()
                .nth(5)
                .and_then(|s| s.parse::<u16>().ok())
                .is_none_or(|s| s >= 500)
        })
        .collect();
    assert!(
        errors.is_empty(),
        "haproxy logged errors:\n{}",
        errors.join("\n")
    );
    // Everything pushed is there, from every node.
    let api = cluster.endpoint();
    for image in &report.pushed {
        pull_and_verify(&api, image)
            .unwrap_or_else(|(f, _)| panic!("{}:{}: {f}", image.repo, image.tag));
    }
    assert_eq!(storage_problems(&cluster.v2_root()), Vec::<String>::new());
    eprintln!(
        "rolling restart of 3 nodes in {restart_time:?}: {} requests ({} pushes, {} pulls), 0 failed",
        report.requests, report.pushes, report.pulls
    );
}

#[test]
fn sigkill_in_a_stream_of_pushes_loses_nothing_acknowledged() {
    let _one = exclusive();
    let mut cluster = Cluster::start(ClusterOptions::default());
    let api = cluster.endpoint();
    let load = Load::start(
        api.clone(),
        LoadOptions {
            pushers: 4,
            pullers: 1,
            slow_uploaders: 0,
            layer_size: 1024 * 1024,
            retry: true,
            limit: Duration::from_secs(120),
            max_ops: 100_000,
        },
    );
    assert!(
        load.wait_ops(12, Duration::from_secs(30)),
        "load does not progress"
    );
    // A client in the middle of a chunk on node2 when it dies.
    let data = Prng::new(3).bytes(3 * 1024 * 1024);
    let digest = sha256_digest(&data);
    let n2 = cluster.node("node2").endpoint();
    let post = n2.start_upload("kill/direct").unwrap();
    let first = n2
        .patch_chunk(
            post.must_header("location"),
            0,
            Payload::Bytes(data[..1024 * 1024].to_vec()),
        )
        .unwrap();
    let token = first.must_header("location").to_string();
    let interrupted = {
        let (n2, token, rest) = (n2.clone(), token.clone(), data[1024 * 1024..].to_vec());
        thread::spawn(move || {
            n2.patch_chunk(
                &token,
                1024 * 1024,
                Trickle::new(rest, 50, Duration::from_secs(10)).payload(),
            )
        })
    };
    thread::sleep(Duration::from_millis(1500));

    let killed_at = Instant::now();
    cluster.node("node2").kill();
    // The interrupted client tries again with the token it has, through haproxy. The dying
    // node may have stored part of the chunk: then the retry is told where the upload really
    // stands (416, Range, Location) and goes on from there, as the OCI spec has clients do.
    let cut = interrupted.join().unwrap();
    assert!(
        cut.is_err(),
        "the PATCH to the killed node cannot have succeeded: {cut:?}"
    );
    // A 416 may reach the client as a cut connection (it is answered before the body is
    // read); then the client asks where the upload stands, as the OCI spec has it do.
    let mut at = 1024 * 1024;
    let mut location = token.clone();
    let mut attempts = 0;
    let retry = loop {
        attempts += 1;
        assert!(
            attempts <= 4,
            "the retry did not settle\n{}",
            cluster.logs()
        );
        match api.patch_chunk(
            &api.here(&location),
            at as u64,
            Payload::Bytes(data[at..].to_vec()),
        ) {
            Ok(retry) => break retry,
            Err(f) if f.answer.as_ref().is_some_and(|a| a.status == 416) => {
                let answer = f.answer.unwrap();
                let range = answer.must_header("range");
                let end: usize = range.split_once('-').unwrap().1.parse().unwrap();
                assert!(end + 1 > at && end < data.len(), "stored range {range}");
                at = end + 1;
                location = answer.must_header("location").to_string();
            }
            Err(f) if f.answer.is_none() => {
                let status = api.get(&api.here(&location));
                let status = try_send(status).unwrap_or_else(|e| panic!("upload status: {e}"));
                assert_eq!(status.status, 204, "upload status: {}", status.describe());
                let range = status.must_header("range");
                at = range.split_once('-').unwrap().1.parse::<usize>().unwrap() + 1;
                location = status.must_header("location").to_string();
            }
            Err(f) => panic!("retry of the interrupted PATCH: {f}\n{}", cluster.logs()),
        }
    };
    assert_ne!(retry.node(), "node2");
    let done = api.finish(retry.must_header("location"), &digest).unwrap();
    assert_ne!(done.node(), "node2");
    let (got, _, _) = api.pull_digest("kill/direct", &digest).unwrap();
    assert_eq!(got, digest);

    let down = wait_until(Duration::from_secs(5), || !cluster.haproxy.is_up("node2"));
    assert!(down, "haproxy did not mark the killed node down");
    assert!(
        load.wait_ops(12, Duration::from_secs(30)),
        "load stalled after the kill"
    );
    let report = load.stop();

    // Every failed attempt belongs to a push that a retry then completed.
    let acked: std::collections::BTreeSet<(String, String)> = report
        .pushed
        .iter()
        .map(|p| (p.repo.clone(), p.tag.clone()))
        .collect();
    for failure in &report.failures {
        assert!(failure.starts_with("push "), "{failure}");
        let name = failure.split_whitespace().nth(1).unwrap();
        let (repo, tag) = name.rsplit_once(':').unwrap();
        assert!(
            acked.contains(&(repo.to_string(), tag.to_string())),
            "push {name} failed and was never completed: {failure}"
        );
    }
    for r in &report.retried {
        assert!(r.nodes.iter().all(|n| n != "node2"), "{r:?}");
    }
    // Only the killed node cut answers short; each pull was made again, whole, through haproxy.
    for cut in &report.recovered_pulls {
        let body_cut = cut.contains("reading the body from");
        assert!(
            !body_cut || cut.contains("reading the body from node2:"),
            "{cut}"
        );
    }
    // Everything acknowledged, before or after the kill, reads back with its digests.
    let before = report
        .pushed
        .iter()
        .filter(|p| p.acked_at < killed_at)
        .count();
    for image in &report.pushed {
        pull_and_verify(&api, image)
            .unwrap_or_else(|(f, _)| panic!("{}:{}: {f}", image.repo, image.tag));
    }
    // The node comes back and serves the same data.
    cluster.node("node2").restart();
    assert!(wait_until(Duration::from_secs(15), || cluster
        .haproxy
        .is_up("node2")));
    let n2 = cluster.node("node2").endpoint();
    for image in report.pushed.iter().take(20) {
        pull_and_verify(&n2, image)
            .unwrap_or_else(|(f, _)| panic!("{}:{}: {f}", image.repo, image.tag));
    }
    assert_eq!(storage_problems(&cluster.v2_root()), Vec::<String>::new());
    eprintln!(
        "SIGKILL: {} pushes acknowledged ({before} before the kill), {} attempts interrupted, {} retried pushes succeeded on {:?}",
        report.pushed.len(),
        report.failures.len() + 1,
        report.retried.len() + 1,
        report
            .retried
            .iter()
            .flat_map(|r| r.nodes.clone())
            .chain([retry.node().to_string()])
            .collect::<std::collections::BTreeSet<_>>()
    );
}
