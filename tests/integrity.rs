//! The invariant a content-addressed store lives by: every readable blob hashes to its digest.
//!
//! Randomised upload sessions try to break it the way real traffic does: PATCHes retried on
//! stale `Location`s (load balancers replay requests, clients retry on timeouts), exact
//! replays, requests reordered, bursts of concurrent requests on one `Location`, clients that
//! send other bytes than they claim, and PUTs on old tokens; on one node and on two nodes
//! sharing the storage and the secret. After every session each digest ever claimed reads
//! back as bytes hashing to it, or not at all, the storage holds no blob that does not hash to
//! its path, and no request got a 5xx. Every seed is printed with its failure.

mod support;

use std::collections::BTreeSet;

use support::*;

const REPO: &str = "integrity/app";

/// What a client holds about a session: a `Location` and the offset its response claimed.
#[derive(Clone, Debug)]
struct Place {
    location: String,
    offset: usize,
}

/// How often each kind of disorder was exercised.
#[derive(Default, Debug)]
struct Counts {
    requests: usize,
    stale: usize,
    replays: usize,
    concurrent: usize,
    lies: usize,
    puts: usize,
    completed: usize,
    refused_416: usize,
}

/// One client session against one or two nodes.
struct Session<'a> {
    nodes: &'a [Registry],
    blob: Blob,
    places: Vec<Place>,
    /// (place, first byte, body) of PATCHes sent, for exact replays.
    sent: Vec<(Place, usize, Vec<u8>)>,
    claimed: BTreeSet<String>,
    rng: Prng,
    done: bool,
    counts: &'a mut Counts,
    seed: u64,
}

impl Session<'_> {
    fn node(&mut self) -> &Registry {
        let i = (self.rng.next_u64() % self.nodes.len() as u64) as usize;
        &self.nodes[i]
    }

    fn below(&mut self, n: usize) -> usize {
        (self.rng.next_u64() % n.max(1) as u64) as usize
    }

    /// Checks the status is one an upload request may get, and records a new place.
    fn observe(&mut self, resp: &Resp, what: &str) {
        self.counts.requests += 1;
        if resp.status >= 500 {
            // The server's own account of the failure (its error chain) goes with the seed.
            let logged: Vec<String> = self
                .nodes
                .iter()
                .flat_map(|n| {
                    log_lines(&n.log(), |l| {
                        l.contains("level=error") || l.contains("level=warn")
                    })
                })
                .collect();
            panic!(
                "seed {}: {what} answered {}\n--- server errors ---\n{}",
                self.seed,
                resp.describe(),
                logged.join("\n")
            );
        }
        if resp.status == 416 {
            self.counts.refused_416 += 1;
        }
        if matches!(resp.status, 202 | 204 | 416) {
            if let (Some(location), Some(range)) = (resp.header("location"), resp.header("range")) {
                let end: usize = range
                    .trim_start_matches("bytes=")
                    .split_once('-')
                    .and_then(|(_, e)| e.parse().ok())
                    .unwrap_or(0);
                // "0-0" stands for an empty session as well as for one byte (as registry:2
                // says it); taking it as empty only makes the next request a stale one.
                let offset = if range == "0-0" { 0 } else { end + 1 };
                self.places.push(Place {
                    location: location_path(location),
                    offset,
                });
            }
        }
        if matches!(resp.status, 404) {
            // The session is gone (finished elsewhere, or cancelled by a failed PUT).
            self.done = true;
        }
    }

    fn pick_place(&mut self) -> Place {
        let latest = self.places.len() - 1;
        if self.below(2) == 0 {
            self.counts.stale += 1;
            let i = self.below(self.places.len());
            self.places[i].clone()
        } else {
            self.places[latest].clone()
        }
    }

    /// A place for a PUT: sometimes the furthest one the client was ever told of (a client
    /// sure it has sent everything), even when a later request moved the upload back.
    fn pick_put_place(&mut self) -> Place {
        if self.below(3) == 0 {
            self.counts.stale += 1;
            let furthest = self.places.iter().max_by_key(|p| p.offset);
            furthest.expect("a session has a place").clone()
        } else {
            self.pick_place()
        }
    }

    fn patch(&mut self, place: &Place, start: usize, body: Vec<u8>, with_range: bool) -> Resp {
        let mut request = self
            .node()
            .patch(&place.location)
            .header("content-type", "application/octet-stream")
            .body(body.clone());
        if with_range && !body.is_empty() {
            request = request.header(
                "content-range",
                format!("{start}-{}", start + body.len() - 1),
            );
        }
        self.sent.push((place.clone(), start, body));
        send(request)
    }

    fn step(&mut self) {
        let roll = self.below(100);
        match roll {
            // A chunk of the blob from where the chosen place says the upload is.
            0..=44 => {
                let place = self.pick_place();
                let start = place.offset.min(self.blob.data.len());
                let len = 1 + self.below((self.blob.data.len() - start).clamp(1, 24 << 10));
                let end = (start + len).min(self.blob.data.len());
                let body = self.blob.data[start..end].to_vec();
                let with_range = self.below(2) == 0;
                let resp = self.patch(&place, start, body, with_range);
                self.observe(&resp, "PATCH");
            }
            // An exact replay of an earlier PATCH.
            45..=59 if !self.sent.is_empty() => {
                self.counts.replays += 1;
                let i = self.below(self.sent.len());
                let (place, start, body) = self.sent[i].clone();
                let resp = self.patch(&place, start, body, true);
                self.observe(&resp, "replayed PATCH");
            }
            // A client that sends other bytes than the blob's.
            60..=64 => {
                self.counts.lies += 1;
                let place = self.pick_place();
                let len = 1 + self.below(4096);
                let body = self.rng.bytes(len);
                let resp = self.patch(&place, place.offset, body, false);
                self.observe(&resp, "lying PATCH");
            }
            // Where does the upload stand?
            65..=74 => {
                let place = self.pick_place();
                let resp = send(self.node().get(&place.location));
                self.observe(&resp, "status GET");
            }
            // The same chunk sent three times at once on one place.
            75..=81 => {
                self.counts.concurrent += 3;
                let place = self.pick_place();
                let start = place.offset.min(self.blob.data.len());
                let end = (start + 1 + self.below(32 << 10)).min(self.blob.data.len());
                let body = self.blob.data[start..end].to_vec();
                let nodes = self.nodes;
                let responses: Vec<Resp> = std::thread::scope(|s| {
                    let handles: Vec<_> = (0..3)
                        .map(|i| {
                            let node = &nodes[i % nodes.len()];
                            let (place, body) = (place.clone(), body.clone());
                            s.spawn(move || {
                                send(
                                    node.patch(&place.location)
                                        .header("content-type", "application/octet-stream")
                                        .header(
                                            "content-range",
                                            format!("{start}-{}", start + body.len() - 1),
                                        )
                                        .body(body),
                                )
                            })
                        })
                        .collect();
                    handles.into_iter().map(|h| h.join().unwrap()).collect()
                });
                let accepted = responses.iter().filter(|r| r.status == 202).count();
                assert!(
                    accepted <= 1 || body.is_empty(),
                    "seed {}: {accepted} of 3 identical concurrent PATCHes were accepted",
                    self.seed
                );
                for resp in &responses {
                    self.observe(resp, "concurrent PATCH");
                }
            }
            // Finish: the whole blob's digest, with the rest of it or with nothing.
            82..=95 => {
                self.counts.puts += 1;
                let place = self.pick_put_place();
                let body = if self.below(2) == 0 {
                    self.blob.data[place.offset.min(self.blob.data.len())..].to_vec()
                } else {
                    Vec::new()
                };
                let digest = self.blob.digest.clone();
                let resp = self.put(&place, &digest, body);
                if resp.status == 201 {
                    self.done = true;
                }
            }
            // Finish with a digest of something else (a prefix, or garbage).
            _ => {
                self.counts.puts += 1;
                let place = self.pick_place();
                let cut = self.below(self.blob.data.len() + 1);
                let digest = sha256_digest(&self.blob.data[..cut]);
                let resp = self.put(&place, &digest, Vec::new());
                if resp.status == 201 {
                    self.done = true;
                }
            }
        }
    }

    fn put(&mut self, place: &Place, digest: &str, body: Vec<u8>) -> Resp {
        self.claimed.insert(digest.to_string());
        let resp = send(
            self.node()
                .put(&with_digest(&place.location, digest))
                .header("content-type", "application/octet-stream")
                .body(body),
        );
        self.observe(&resp, "PUT");
        if resp.status == 201 {
            self.counts.completed += 1;
            assert_eq!(
                resp.header("docker-content-digest"),
                Some(digest),
                "seed {}",
                self.seed
            );
        }
        resp
    }
}

/// Every claimed digest reads back as bytes that hash to it, or is unknown.
fn check_readable(node: &Registry, claimed: &BTreeSet<String>, seed: u64) {
    for digest in claimed {
        let resp = send(node.get(&format!("/v2/{REPO}/blobs/{digest}")));
        match resp.status {
            200 => assert_eq!(
                &sha256_digest(&resp.body),
                digest,
                "seed {seed}: a readable blob does not hash to its digest"
            ),
            404 => {}
            _ => panic!("seed {seed}: GET {digest}: {}", resp.describe()),
        }
    }
}

fn run_sessions(nodes: &[Registry], sessions: usize, seed: u64, max_size: usize) -> Counts {
    let mut counts = Counts::default();
    let mut sizes = Prng::new(seed);
    for i in 0..sessions {
        let session_seed = seed.wrapping_mul(1000).wrapping_add(i as u64);
        let size = match sizes.next_u64() % 8 {
            0 => 0,
            1 => 1 + (sizes.next_u64() % 64) as usize,
            _ => 1 + (sizes.next_u64() % max_size as u64) as usize,
        };
        let blob = Blob::new(Prng::new(session_seed).bytes(size));
        let first = start_upload(&nodes[0], REPO);
        let mut session = Session {
            nodes,
            blob,
            places: vec![Place {
                location: location_path(&first),
                offset: 0,
            }],
            sent: Vec::new(),
            claimed: BTreeSet::new(),
            rng: Prng::new(session_seed),
            done: false,
            counts: &mut counts,
            seed: session_seed,
        };
        for _ in 0..30 {
            if session.done {
                break;
            }
            session.step();
        }
        let claimed = std::mem::take(&mut session.claimed);
        for node in nodes {
            check_readable(node, &claimed, session_seed);
        }
    }
    counts
}

fn report(what: &str, counts: &Counts) {
    eprintln!("integrity {what}: {counts:?}");
    assert!(counts.completed > 0, "{what}: no session ever completed");
    assert!(
        counts.refused_416 > 0,
        "{what}: no stale request was refused"
    );
}

fn one_node(driver: Driver) {
    let node = Registry::start(driver);
    let sessions = if matches!(driver, Driver::S3 | Driver::Azure) {
        40
    } else {
        150
    };
    let counts = run_sessions(std::slice::from_ref(&node), sessions, 11, 64 << 10);
    report(&format!("{driver:?}"), &counts);
    match driver {
        Driver::Filesystem => assert_eq!(storage_problems(&node.v2_root()), Vec::<String>::new()),
        Driver::S3 => assert_eq!(
            bucket_blob_problems(node.s3().unwrap()),
            Vec::<String>::new()
        ),
        Driver::Azure => assert_eq!(
            container_blob_problems(node.azure().unwrap()),
            Vec::<String>::new()
        ),
        Driver::Gcs => assert_eq!(gcs_blob_problems(node.gcs().unwrap()), Vec::<String>::new()),
        Driver::Inmemory => {}
        Driver::Swift => {}
    }
}

for_each_driver!(one_node);

#[test]
fn two_nodes_on_a_shared_folder() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = [
        Registry::builder(Driver::Filesystem)
            .storage_dir(dir.path())
            .start(),
        Registry::builder(Driver::Filesystem)
            .storage_dir(dir.path())
            .start(),
    ];
    let counts = run_sessions(&nodes, 150, 23, 64 << 10);
    report("two filesystem nodes", &counts);
    let v2_root = dir.path().join("docker/registry/v2");
    assert_eq!(storage_problems(&v2_root), Vec::<String>::new());
}

#[test]
fn two_nodes_on_a_shared_bucket() {
    let target = S3Target::fresh();
    let nodes = [
        Registry::builder(Driver::S3).s3_target(&target).start(),
        Registry::builder(Driver::S3).s3_target(&target).start(),
    ];
    // Some blobs cross the 5 MiB part size, so appends resume inside multipart uploads.
    let counts = run_sessions(&nodes, 20, 37, 7 << 20);
    report("two S3 nodes", &counts);
    assert_eq!(bucket_blob_problems(&target), Vec::<String>::new());
}

/// Writers racing at one offset of one S3 upload, each with bytes of its own, where every
/// chunk is shorter than a part (so each append completes the upload and opens another, the
/// step racing writers and readers trip over): at most one is accepted, every other gets a
/// 4xx, and the finished blob is exactly the accepted chunks.
#[test]
fn racing_patches_on_s3() {
    let node = Registry::start(Driver::S3);
    let mut rng = Prng::new(41);
    let (mut accepted_rounds, mut refused, mut restarts) = (0, 0, 0);
    let mut location = location_path(&start_upload(&node, REPO));
    let mut data: Vec<u8> = Vec::new();
    for round in 0..24 {
        let bodies: Vec<Vec<u8>> = (0..4)
            .map(|_| {
                let len = 1 + (rng.next_u64() % 4096) as usize;
                rng.bytes(len)
            })
            .collect();
        let start = data.len();
        let responses: Vec<Resp> = std::thread::scope(|s| {
            let handles: Vec<_> = bodies
                .iter()
                .map(|body| {
                    let (node, location) = (&node, &location);
                    s.spawn(move || {
                        send(
                            node.patch(location)
                                .header("content-type", "application/octet-stream")
                                .header(
                                    "content-range",
                                    format!("{start}-{}", start + body.len() - 1),
                                )
                                .body(body.clone()),
                        )
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for resp in &responses {
            if resp.status >= 500 {
                let errors = log_lines(&node.log(), |l| l.contains("level=error"));
                panic!(
                    "round {round}: a racing PATCH answered {}\n{}",
                    resp.describe(),
                    errors.join("\n")
                );
            }
        }
        let winners: Vec<usize> = (0..4).filter(|&i| responses[i].status == 202).collect();
        assert!(
            winners.len() <= 1,
            "round {round}: {winners:?} all accepted"
        );
        refused += 4 - winners.len();
        match winners.first() {
            Some(&i) => {
                accepted_rounds += 1;
                data.extend_from_slice(&bodies[i]);
                location = location_path(responses[i].header("location").unwrap());
            }
            None => {
                // Every writer lost; a loser's bytes may stay as the upload's next ones (as
                // registry:2 counts them), so the client asks where the upload stands.
                let status = send(node.get(&location));
                assert!(status.status < 500, "round {round}: {}", status.describe());
                let held = status.header("range").map(str::to_string);
                let expected = format!("0-{}", start.saturating_sub(1));
                // "0-0" does not tell an empty upload from one byte: start again then too.
                if start <= 1 || status.status != 204 || held != Some(expected) {
                    restarts += 1;
                    location = location_path(&start_upload(&node, REPO));
                    data.clear();
                }
            }
        }
    }
    let digest = sha256_digest(&data);
    let resp = send(
        node.put(&with_digest(&location, &digest))
            .header("content-type", "application/octet-stream"),
    );
    assert_eq!(resp.status, 201, "{}", resp.describe());
    let blob = send(node.get(&format!("/v2/{REPO}/blobs/{digest}")));
    assert_eq!(blob.status, 200);
    assert_eq!(sha256_digest(&blob.body), digest);
    eprintln!(
        "racing PATCHes: {accepted_rounds} rounds accepted, {refused} refused, {restarts} restarts"
    );
    assert!(accepted_rounds > 0 && refused > 0);
    assert_eq!(
        bucket_blob_problems(node.s3().unwrap()),
        Vec::<String>::new()
    );
}
