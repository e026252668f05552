//! The workloads: what each one seeds, what one operation is, and how the streams drive them.
//!
//! Every workload is `streams` tasks, each with its own connection, taking operation numbers
//! from one shared counter until the count bound (`--count`) or the time bound (`--duration`)
//! is reached; every operation also has its own timeout. Elapsed time runs from the start
//! until the last stream has finished its last operation, so throughput is never overstated.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use serde_json::{json, Value};

use crate::client::{self, Conn, OutBody, Result, Target};
use crate::content::{BlobSource, TinyImage, MANIFEST_ACCEPT, MANIFEST_TYPE};
use crate::stats::{self, Tally};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// POST + PUT ?digest= with the whole blob
    PushMono,
    /// POST, PATCHes of --chunk with Content-Range, PUT ?digest=
    PushChunked,
    /// GET of whole seeded blobs, body drained and counted
    Pull,
    /// GET with Range: bytes=a-b (--range-size) at random offsets of seeded blobs
    Range,
    /// GET of a tiny image's manifest by tag
    ManifestGet,
    /// HEAD of a small blob
    BlobHead,
    /// --count monolithic pushes of --size blobs (default 2000 x 4 KiB)
    SmallPush,
    /// GET /v2/_catalog?n=1000 over --repos seeded repositories
    Catalog,
    /// GET /v2/<repo>/tags/list of a repository with --tags tags
    Tags,
    /// --streams uploads, each trickling one PATCH body (--trickle every --interval)
    SlowUploads,
    /// GET /v2/ on a new connection each time (with https://, a new TLS handshake)
    Handshake,
}

impl Workload {
    pub fn name(self) -> String {
        clap::ValueEnum::to_possible_value(&self)
            .map(|v| v.get_name().to_string())
            .unwrap_or_default()
    }

    pub fn default_streams(self) -> usize {
        match self {
            Workload::PushMono | Workload::Pull => 1,
            Workload::PushChunked | Workload::Catalog | Workload::Tags => 4,
            Workload::Handshake => 16,
            Workload::Range => 8,
            Workload::SmallPush => 32,
            Workload::ManifestGet | Workload::BlobHead => 64,
            Workload::SlowUploads => 200,
        }
    }

    pub fn default_size(self) -> u64 {
        match self {
            Workload::SmallPush => 4 << 10,
            _ => 64 << 20,
        }
    }

    pub fn default_duration(self) -> Duration {
        match self {
            Workload::SmallPush => Duration::from_secs(120),
            _ => Duration::from_secs(10),
        }
    }

    /// The unit of the headline figure.
    fn unit(self) -> &'static str {
        match self {
            Workload::PushMono | Workload::PushChunked | Workload::Pull | Workload::Range => "MB/s",
            Workload::SmallPush => "blobs/s",
            Workload::SlowUploads => "uploads",
            Workload::Handshake => "conn/s",
            _ => "req/s",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Seed what the workload reads, then measure.
    All,
    /// Seed only: lets a driver take readings between seeding and measuring.
    SeedOnly,
    /// Measure what an earlier `SeedOnly` run left (seeds are deterministic).
    RunOnly,
}

pub struct Settings {
    pub workload: Workload,
    pub streams: usize,
    pub size: u64,
    pub chunk: u64,
    pub duration: Duration,
    pub count: u64,
    pub blobs: u64,
    pub range_size: u64,
    pub repos: u64,
    pub tags: u64,
    pub trickle: u64,
    pub interval: Duration,
    pub timeout: Duration,
    pub phase: Phase,
}

const BIG_REPO: &str = "bench/big";
const TINY_REPO: &str = "bench/tiny";
const TAGS_REPO: &str = "bench/tags";
/// Seeded blobs are the same bytes in every run, so a measuring run can name them.
const SEED: u64 = 0x5eed;
const SEEDING_STREAMS: usize = 8;
const SEEDING_TIME_LIMIT: Duration = Duration::from_secs(600);
const PAUSE_AFTER_ERROR: Duration = Duration::from_millis(20);

fn catalog_repo(index: u64) -> String {
    format!("bench/catalog-{index:05}")
}

/// One operation of a workload, run with the operation's number.
enum Op {
    PushMono {
        repo: &'static str,
        source: BlobSource,
    },
    PushChunked {
        repo: &'static str,
        source: BlobSource,
        chunk: u64,
    },
    Pull {
        digests: Vec<String>,
        size: u64,
    },
    Range {
        digests: Vec<String>,
        size: u64,
        len: u64,
    },
    Get {
        path: String,
        accept: Option<&'static str>,
    },
    Head {
        path: String,
    },
    NewConnection,
    SlowUpload {
        piece: Bytes,
        pieces: u64,
        every: Duration,
    },
    SeedRepo {
        image: TinyImage,
    },
    SeedTag {
        image: TinyImage,
    },
}

impl Op {
    /// Runs operation `index`; returns the payload bytes it moved.
    async fn run(&self, conn: &mut Conn, index: u64) -> Result<u64> {
        match self {
            Op::PushMono { repo, source } => {
                let blob = source.blob(index);
                client::push_blob(conn, repo, &blob.digest, blob.body()).await?;
                Ok(blob.len())
            }
            Op::PushChunked {
                repo,
                source,
                chunk,
            } => {
                let blob = source.blob(index);
                let mut upload = client::start_upload(conn, repo).await?;
                let mut at = 0;
                while at < blob.len() {
                    let end = (at + chunk).min(blob.len());
                    upload = client::patch_chunk(conn, &upload, at, blob.part(at, end)).await?;
                    at = end;
                }
                client::finish_upload(conn, &upload, &blob.digest, OutBody::empty()).await?;
                Ok(blob.len())
            }
            Op::Pull { digests, size } => {
                let digest = &digests[(index % digests.len() as u64) as usize];
                let path = format!("/v2/{BIG_REPO}/blobs/{digest}");
                let got = client::get(conn, &path, &[], StatusCode::OK).await?;
                if got != *size {
                    return Err(format!("GET blob: {got} bytes, expected {size}").into());
                }
                Ok(got)
            }
            Op::Range { digests, size, len } => {
                let digest = &digests[(index % digests.len() as u64) as usize];
                let start = mix(index) % (size - len + 1);
                let range = format!("bytes={}-{}", start, start + len - 1);
                let path = format!("/v2/{BIG_REPO}/blobs/{digest}");
                let got = client::get(
                    conn,
                    &path,
                    &[("range", &range)],
                    StatusCode::PARTIAL_CONTENT,
                )
                .await?;
                if got != *len {
                    return Err(format!("ranged GET {range}: {got} bytes, expected {len}").into());
                }
                Ok(got)
            }
            Op::Get { path, accept } => {
                let headers: &[(&str, &str)] = match accept {
                    Some(accept) => &[("accept", accept)],
                    None => &[],
                };
                client::get(conn, path, headers, StatusCode::OK).await
            }
            Op::Head { path } => client::head(conn, path).await.map(|_| 0),
            Op::NewConnection => {
                // Dropping the last connection closes it (TLS: close_notify, then FIN).
                conn.reset();
                client::get(conn, "/v2/", &[], StatusCode::OK).await
            }
            Op::SlowUpload {
                piece,
                pieces,
                every,
            } => {
                let upload = client::start_upload(conn, "bench/slow").await?;
                let body = OutBody::trickle(piece.clone(), *pieces, *every);
                client::patch_chunk(conn, &upload, 0, body).await?;
                Ok(piece.len() as u64 * pieces)
            }
            Op::SeedRepo { image } => {
                let repo = catalog_repo(index);
                client::mount_blob(conn, &repo, TINY_REPO, &image.config_digest, &image.config)
                    .await?;
                client::mount_blob(conn, &repo, TINY_REPO, &image.layer_digest, &image.layer)
                    .await?;
                client::put_manifest(conn, &repo, "latest", MANIFEST_TYPE, &image.manifest).await?;
                Ok(0)
            }
            Op::SeedTag { image } => {
                let tag = format!("t{index:05}");
                client::put_manifest(conn, TAGS_REPO, &tag, MANIFEST_TYPE, &image.manifest).await?;
                Ok(0)
            }
        }
    }
}

/// splitmix64: spreads operation numbers into offsets.
fn mix(index: u64) -> u64 {
    let mut z = index.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

struct Plan {
    streams: usize,
    max_ops: u64,
    duration: Duration,
    op_timeout: Duration,
}

/// Runs `op` on `plan.streams` connections until a bound is reached.
async fn drive(target: &Arc<Target>, op: Arc<Op>, plan: Plan) -> (Tally, Duration) {
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + plan.duration;
    let streams: Vec<_> = (0..plan.streams)
        .map(|_| {
            let (target, op, next) = (target.clone(), op.clone(), next.clone());
            let (max_ops, op_timeout) = (plan.max_ops, plan.op_timeout);
            tokio::spawn(async move {
                let mut conn = Conn::new(target);
                let mut tally = Tally::default();
                // Connect first so the first operation is not charged for it; a failure here
                // shows up again on that operation.
                let _ = conn.connect().await;
                while Instant::now() < deadline {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= max_ops {
                        break;
                    }
                    let began = Instant::now();
                    match tokio::time::timeout(op_timeout, op.run(&mut conn, index)).await {
                        Ok(Ok(bytes)) => tally.success(began.elapsed(), bytes),
                        Ok(Err(error)) => {
                            tally.failure(error.to_string());
                            conn.reset();
                            tokio::time::sleep(PAUSE_AFTER_ERROR).await;
                        }
                        Err(_) => {
                            tally.failure(format!("operation timed out after {op_timeout:?}"));
                            conn.reset();
                        }
                    }
                }
                tally
            })
        })
        .collect();
    let mut tally = Tally::default();
    for stream in streams {
        match stream.await {
            Ok(done) => tally.merge(done),
            Err(error) => tally.failure(format!("stream task failed: {error}")),
        }
    }
    (tally, start.elapsed())
}

/// Seeding must be complete: a measurement over half a seed would mean nothing.
async fn seed(target: &Arc<Target>, op: Op, count: u64, timeout: Duration) -> Result<()> {
    let plan = Plan {
        streams: SEEDING_STREAMS.min(count.max(1) as usize),
        max_ops: count,
        duration: SEEDING_TIME_LIMIT,
        op_timeout: timeout,
    };
    let (tally, _) = drive(target, Arc::new(op), plan).await;
    match tally.first_error() {
        Some(error) => Err(format!(
            "seeding: {} of {count} failed, first: {error}",
            tally.errors()
        )
        .into()),
        None if tally.ops() < count => {
            Err(format!("seeding: only {} of {count} done in time", tally.ops()).into())
        }
        None => Ok(()),
    }
}

async fn push_tiny_image(conn: &mut Conn, repo: &str, image: &TinyImage) -> Result<()> {
    for (digest, data) in [
        (&image.config_digest, &image.config),
        (&image.layer_digest, &image.layer),
    ] {
        client::push_blob(conn, repo, digest, OutBody::from_slices(vec![data.clone()])).await?;
    }
    client::put_manifest(conn, repo, "latest", MANIFEST_TYPE, &image.manifest).await
}

fn big_blobs(s: &Settings) -> (BlobSource, Vec<String>) {
    let source = BlobSource::new(s.size, SEED, SEED);
    let digests = (0..s.blobs).map(|id| source.blob(id).digest).collect();
    (source, digests)
}

/// Puts in place what the workload reads. Returns how many things were seeded.
async fn seed_workload(target: &Arc<Target>, s: &Settings) -> Result<u64> {
    let mut conn = Conn::new(target.clone());
    let image = TinyImage::new();
    match s.workload {
        Workload::Pull | Workload::Range => {
            let (source, _) = big_blobs(s);
            let op = Op::PushMono {
                repo: BIG_REPO,
                source,
            };
            seed(target, op, s.blobs, s.timeout).await?;
            Ok(s.blobs)
        }
        Workload::ManifestGet | Workload::BlobHead => {
            push_tiny_image(&mut conn, TINY_REPO, &image).await?;
            Ok(1)
        }
        Workload::Catalog => {
            push_tiny_image(&mut conn, TINY_REPO, &image).await?;
            seed(target, Op::SeedRepo { image }, s.repos, s.timeout).await?;
            Ok(s.repos)
        }
        Workload::Tags => {
            push_tiny_image(&mut conn, TAGS_REPO, &image).await?;
            seed(target, Op::SeedTag { image }, s.tags, s.timeout).await?;
            Ok(s.tags)
        }
        Workload::PushMono
        | Workload::PushChunked
        | Workload::SmallPush
        | Workload::SlowUploads
        | Workload::Handshake => Ok(0),
    }
}

/// Checks that the seed is there before measuring; returns what the check saw.
async fn check_seed(target: &Arc<Target>, s: &Settings) -> Result<Option<String>> {
    let mut conn = Conn::new(target.clone());
    let image = TinyImage::new();
    let listed = |body: &[u8], key: &str| -> Result<usize> {
        let doc: Value = serde_json::from_slice(body)?;
        Ok(doc[key].as_array().map_or(0, |a| a.len()))
    };
    match s.workload {
        Workload::Pull | Workload::Range => {
            let (_, digests) = big_blobs(s);
            for digest in &digests {
                let length =
                    client::head(&mut conn, &format!("/v2/{BIG_REPO}/blobs/{digest}")).await?;
                if length != s.size {
                    return Err(format!(
                        "seeded blob {digest} has Content-Length {length}, expected {}",
                        s.size
                    )
                    .into());
                }
            }
            Ok(Some(format!("{} blobs of {} bytes", digests.len(), s.size)))
        }
        Workload::ManifestGet | Workload::BlobHead => {
            let path = format!("/v2/{TINY_REPO}/blobs/{}", image.layer_digest);
            client::head(&mut conn, &path).await?;
            Ok(None)
        }
        Workload::Catalog => {
            let response = conn
                .send(
                    http::Method::GET,
                    "/v2/_catalog?n=1000",
                    &[],
                    OutBody::empty(),
                )
                .await?;
            let response = client::expect(response, StatusCode::OK, "GET catalog").await?;
            let n = listed(
                &client::read_small(response, 16 << 20).await?,
                "repositories",
            )?;
            if (n as u64) < s.repos.min(1000) {
                return Err(format!(
                    "catalog lists {n} repositories, expected at least {}",
                    s.repos.min(1000)
                )
                .into());
            }
            Ok(Some(format!("catalog page lists {n} repositories")))
        }
        Workload::Tags => {
            let path = format!("/v2/{TAGS_REPO}/tags/list");
            let response = conn
                .send(http::Method::GET, &path, &[], OutBody::empty())
                .await?;
            let response = client::expect(response, StatusCode::OK, "GET tags").await?;
            let n = listed(&client::read_small(response, 16 << 20).await?, "tags")?;
            // The seeding also tags `latest`.
            if (n as u64) < s.tags {
                return Err(format!("tag list has {n} tags, expected at least {}", s.tags).into());
            }
            Ok(Some(format!("tag list has {n} tags")))
        }
        _ => Ok(None),
    }
}

/// What one measured operation is, for this workload.
fn measured_op(s: &Settings) -> Op {
    let image = TinyImage::new();
    // Pushed blobs differ from run to run, so no registry can skip storing them.
    let nonce = rand::random::<u64>();
    match s.workload {
        Workload::PushMono => Op::PushMono {
            repo: "bench/push-mono",
            source: BlobSource::new(s.size, rand::random(), nonce),
        },
        Workload::SmallPush => Op::PushMono {
            repo: "bench/small",
            source: BlobSource::new(s.size, rand::random(), nonce),
        },
        Workload::PushChunked => Op::PushChunked {
            repo: "bench/push-chunked",
            source: BlobSource::new(s.size, rand::random(), nonce),
            chunk: s.chunk,
        },
        Workload::Pull => Op::Pull {
            digests: big_blobs(s).1,
            size: s.size,
        },
        Workload::Range => Op::Range {
            digests: big_blobs(s).1,
            size: s.size,
            len: s.range_size.min(s.size),
        },
        Workload::ManifestGet => Op::Get {
            path: format!("/v2/{TINY_REPO}/manifests/latest"),
            accept: Some(MANIFEST_ACCEPT),
        },
        Workload::BlobHead => Op::Head {
            path: format!("/v2/{TINY_REPO}/blobs/{}", image.layer_digest),
        },
        Workload::Catalog => Op::Get {
            path: "/v2/_catalog?n=1000".into(),
            accept: None,
        },
        Workload::Tags => Op::Get {
            path: format!("/v2/{TAGS_REPO}/tags/list"),
            accept: None,
        },
        Workload::Handshake => Op::NewConnection,
        Workload::SlowUploads => Op::SlowUpload {
            piece: Bytes::from(vec![b'x'; s.trickle as usize]),
            pieces: (s.duration.as_millis() / s.interval.as_millis().max(1)).max(1) as u64,
            every: s.interval,
        },
    }
}

/// Seeds and/or measures, as `s.phase` says; returns the result line.
pub async fn run(target: Arc<Target>, s: &Settings) -> Result<Value> {
    let name = s.workload.name();
    if s.phase != Phase::RunOnly {
        let began = Instant::now();
        let seeded = seed_workload(&target, s).await?;
        if s.phase == Phase::SeedOnly {
            return Ok(json!({
                "workload": name,
                "phase": "seed",
                "seeded": seeded,
                "seed_s": began.elapsed().as_secs_f64(),
            }));
        }
    }
    let seed_check = check_seed(&target, s).await?;
    let op = measured_op(s);
    let plan = match s.workload {
        Workload::SlowUploads => Plan {
            streams: s.streams,
            max_ops: s.streams as u64,
            duration: s.duration + s.timeout,
            op_timeout: s.duration + s.timeout,
        },
        _ => Plan {
            streams: s.streams,
            max_ops: s.count,
            duration: s.duration,
            op_timeout: s.timeout,
        },
    };
    let cpu_before = stats::own_cpu_seconds();
    let (tally, elapsed) = drive(&target, Arc::new(op), plan).await;
    let client_cpu_s = match (cpu_before, stats::own_cpu_seconds()) {
        (Some(before), Some(after)) => Some(stats::round(after - before)),
        _ => None,
    };
    let mut line = json!({
        "workload": name,
        "streams": s.streams,
    });
    match s.workload {
        Workload::PushMono | Workload::SmallPush => line["size"] = s.size.into(),
        Workload::PushChunked => {
            line["size"] = s.size.into();
            line["chunk"] = s.chunk.into();
        }
        Workload::Pull => {
            line["size"] = s.size.into();
            line["blobs"] = s.blobs.into();
        }
        Workload::Range => {
            line["size"] = s.size.into();
            line["blobs"] = s.blobs.into();
            line["range_size"] = s.range_size.into();
        }
        Workload::Catalog => line["repos"] = s.repos.into(),
        Workload::Tags => line["tags"] = s.tags.into(),
        Workload::SlowUploads => {
            line["trickle"] = s.trickle.into();
            line["interval_ms"] = (s.interval.as_millis() as u64).into();
        }
        _ => {}
    }
    line["client_cpu_s"] = client_cpu_s.into();
    if let Some(check) = seed_check {
        line["seed_check"] = check.into();
    }
    if let (Value::Object(line), Value::Object(measured)) =
        (&mut line, tally.summary(elapsed, s.workload.unit()))
    {
        line.extend(measured);
    }
    Ok(line)
}
