//! Randomised requests against the real server: methods, repository names, digests, tags,
//! upload tokens, headers and bodies drawn from a mix of valid, foreign and broken values
//! (tokens and manifests of this very registry, edited). Properties:
//! - no request gets a 5xx or breaks the connection, and the server keeps serving;
//! - every 4xx with a body on `/v2/` is the registry error JSON;
//! - every blob file stored hashes to its digest, every manifest served by digest hashes to it;
//! - what was pushed before reads back unchanged, unless a request the server accepted
//!   deleted or re-tagged it.
//!
//! Paths with raw UTF-8 (which HTTP clients percent-encode) are written to the socket as they are.
//!
//! The seed is printed; `WHARF_TEST_SEED=<seed>` replays a run.

mod support;

use std::collections::BTreeSet;
use std::fs;

use reqwest::Method;
use serde_json::{json, Value};
use support::*;

const REPOS: [&str; 2] = ["fuzz/app", "fuzz/other"];

/// What the run starts from, and what the server has accepted since.
struct World {
    blobs: Vec<Blob>,
    images: Vec<(String, String, Manifest)>,
    /// `_state`-bearing upload locations handed out by the server.
    locations: Vec<String>,
    /// Digests a DELETE was accepted for.
    deleted: BTreeSet<String>,
    /// `(repository, tag)` a manifest PUT or DELETE was accepted for.
    retagged: BTreeSet<(String, String)>,
}

struct Gen {
    prng: Prng,
}

impl Gen {
    fn below(&mut self, n: usize) -> usize {
        (self.prng.next_u64() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.prng.next_u64() % 100 < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn hex(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| char::from_digit(self.below(16) as u32, 16).unwrap())
            .collect()
    }

    fn repo(&mut self) -> String {
        match self.below(13) {
            0..=6 => self.pick(&REPOS).to_string(),
            7 => format!("fuzz/new{}", self.below(4)),
            8 => self
                .pick(&[
                    "Fuzz/App",
                    "fuzz/../app",
                    "fuzz/%2e%2e/app",
                    "fuzz//app",
                    "fuzz/app/",
                    "-fuzz/app",
                    "fuzz/_uploads",
                    "fuzz/app%00",
                    "fuzz/%C3%A9",
                    "fuzz/a..b",
                ])
                .to_string(),
            9 => "a/".repeat(40) + "b",
            10 => format!("fuzz/{}", "x".repeat(self.below(300))),
            11 => {
                // Raw UTF-8, sent unencoded: multi-byte characters around the length limit.
                let wide = self.pick(&["é", "名", "🐳"]);
                format!("fuzz/{}", wide.repeat(1 + self.below(150)))
            }
            _ => format!("fuzz/{}", self.hex(6)),
        }
    }

    fn digest(&mut self, world: &World) -> String {
        match self.below(14) {
            0..=3 => self.pick(&world.blobs).digest.clone(),
            4..=5 => self.pick(&world.images).2.digest.clone(),
            6 => format!("sha256:{}", self.hex(64)),
            7 => format!("sha512:{}", self.hex(128)),
            8 => {
                let len = self.below(70);
                format!("sha256:{}", self.hex(len))
            }
            9 => format!("sha256:{}", self.hex(64).to_uppercase()),
            10 => format!("md5:{}", self.hex(32)),
            11 => self
                .pick(&[
                    "",
                    "sha256",
                    "sha256:",
                    ":abc",
                    "sha256%3Aabc",
                    "sha256+b64:aGVsbG8",
                    "sha256:../../etc",
                ])
                .to_string(),
            12 => format!("sha256:{}zz", self.hex(62)),
            _ => format!("sha384:{}", self.hex(96)),
        }
    }

    fn reference(&mut self, world: &World) -> String {
        match self.below(8) {
            0..=2 => self.pick(&world.images).1.clone(),
            3 => format!("t{}", self.below(5)),
            4 => "x".repeat(129),
            5 => self
                .pick(&[".hidden", "-dash", "a b", "tag%2Fslash", "ünï"])
                .to_string(),
            _ => self.digest(world),
        }
    }

    /// A `_state` token: one the server issued, one of another session, or an edited one.
    fn state(&mut self, world: &World) -> Option<String> {
        let issued: Vec<String> = world
            .locations
            .iter()
            .filter_map(|l| l.split_once("_state=").map(|(_, s)| s.to_string()))
            .collect();
        if issued.is_empty() || self.chance(20) {
            return match self.below(3) {
                0 => None,
                1 => Some(String::new()),
                _ => Some(self.hex(40)),
            };
        }
        let mut token = self.pick(&issued).clone();
        match self.below(4) {
            0 => {}
            1 => {
                let cut = self.below(token.len().max(1));
                token.truncate(cut);
            }
            2 => {
                let at = self.below(token.len().max(1));
                let mut bytes = token.into_bytes();
                if let Some(b) = bytes.get_mut(at) {
                    *b = if *b == b'A' { b'B' } else { b'A' };
                }
                token = String::from_utf8(bytes).unwrap();
            }
            _ => token.push_str("%3D%3D"),
        }
        Some(token)
    }

    fn upload_path(&mut self, world: &World) -> String {
        let own = !world.locations.is_empty() && self.chance(70);
        let base = if own {
            let location = self.pick(&world.locations).clone();
            location_path(&location)
                .split('?')
                .next()
                .unwrap()
                .to_string()
        } else {
            let uuid = match self.below(3) {
                0 => uuid_like(self),
                1 => "not-a-uuid".to_string(),
                _ => "..%2F..%2Fetc".to_string(),
            };
            format!("/v2/{}/blobs/uploads/{uuid}", self.repo())
        };
        let mut query = Vec::new();
        if let Some(state) = self.state(world) {
            query.push(format!("_state={state}"));
        }
        if self.chance(40) {
            query.push(format!("digest={}", self.digest(world)));
        }
        with_query(base, query)
    }

    fn path(&mut self, world: &World) -> String {
        match self.below(10) {
            0 => format!("/v2/{}/blobs/{}", self.repo(), self.digest(world)),
            1 | 2 => format!("/v2/{}/manifests/{}", self.repo(), self.reference(world)),
            3 => {
                let mut query = Vec::new();
                if self.chance(50) {
                    query.push(format!(
                        "n={}",
                        self.pick(&["0", "1", "-1", "x", "99999999999999999999", "2"])
                    ));
                }
                if self.chance(40) {
                    query.push(format!("last={}", self.reference(world)));
                }
                with_query(format!("/v2/{}/tags/list", self.repo()), query)
            }
            4 => {
                let mut query = Vec::new();
                if self.chance(50) {
                    query.push(format!(
                        "n={}",
                        self.pick(&["0", "1", "-5", "abc", "1000000"])
                    ));
                }
                if self.chance(40) {
                    query.push(format!("last={}", self.repo()));
                }
                with_query("/v2/_catalog".to_string(), query)
            }
            5 => {
                let mut query = Vec::new();
                if self.chance(30) {
                    query.push(format!("digest={}", self.digest(world)));
                }
                if self.chance(30) {
                    query.push(format!("mount={}", self.digest(world)));
                    query.push(format!("from={}", self.repo()));
                }
                with_query(format!("/v2/{}/blobs/uploads/", self.repo()), query)
            }
            6 | 7 => self.upload_path(world),
            8 => {
                let query = if self.chance(40) {
                    vec![format!(
                        "artifactType={}",
                        self.pick(&["application/x", "", "%ZZ"])
                    )]
                } else {
                    Vec::new()
                };
                with_query(
                    format!("/v2/{}/referrers/{}", self.repo(), self.digest(world)),
                    query,
                )
            }
            _ => format!(
                "/v2/{}",
                self.pick(&[
                    "",
                    "_catalog/x",
                    "x/y/z",
                    "%",
                    "fuzz/app/blobs/",
                    "fuzz/app/manifests/"
                ])
            ),
        }
    }

    fn manifest_body(&mut self, world: &World) -> Vec<u8> {
        let blob = self.pick(&world.blobs).clone();
        let config = if self.chance(70) {
            descriptor(
                "application/vnd.oci.image.config.v1+json",
                &blob.digest,
                blob.size(),
            )
        } else {
            descriptor(
                "application/vnd.oci.image.config.v1+json",
                &self.digest(world),
                self.below(1 << 20) as u64,
            )
        };
        let layer = self.pick(&world.blobs).clone();
        let mut layer = descriptor(
            "application/vnd.oci.image.layer.v1.tar",
            &layer.digest,
            layer.size(),
        );
        if self.chance(20) {
            layer["size"] = json!(-1);
        }
        if self.chance(20) {
            layer["digest"] = json!(self.digest(world));
        }
        let mut value: Value = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config,
            "layers": [layer],
        });
        match self.below(8) {
            0 => value["schemaVersion"] = json!(1),
            1 => value["mediaType"] = json!("application/x-nonsense"),
            2 => value["subject"] = descriptor(OCI_MANIFEST, &self.digest(world), 10),
            3 => value["manifests"] = json!([]),
            _ => {}
        }
        let mut body = serde_json::to_vec(&value).unwrap();
        if self.chance(10) {
            let cut = self.below(body.len());
            body.truncate(cut);
        }
        body
    }

    fn body(&mut self, method: &Method, path: &str, world: &World) -> Vec<u8> {
        if matches!(*method, Method::GET | Method::HEAD | Method::DELETE) && self.chance(90) {
            return Vec::new();
        }
        if path.contains("/manifests/") && self.chance(70) {
            return self.manifest_body(world);
        }
        let (kind, short, long) = (self.below(4), self.below(64), self.below(70_000));
        match kind {
            0 => Vec::new(),
            1 => self.prng.bytes(short),
            2 => self.prng.bytes(long),
            _ => self.pick(&world.blobs).data.clone(),
        }
    }

    fn headers(&mut self, body_len: usize) -> Vec<(&'static str, String)> {
        let mut headers = Vec::new();
        if self.chance(50) {
            let value = self.pick(&[
                OCI_MANIFEST,
                OCI_INDEX,
                DOCKER_MANIFEST,
                "application/octet-stream",
                "text/plain",
                "",
                "application/vnd.oci.image.manifest.v1+json; charset=utf-8",
            ]);
            headers.push(("content-type", value.to_string()));
        }
        if self.chance(30) {
            let end = body_len.max(1) - 1;
            let value = match self.below(6) {
                0 => format!("0-{end}"),
                1 => format!("{}-{}", self.below(100), self.below(100)),
                2 => "abc".to_string(),
                3 => "0-18446744073709551615".to_string(),
                4 => format!("bytes 0-{end}/{body_len}"),
                _ => format!("{}-{}", self.below(10_000), self.below(10_000) + end),
            };
            headers.push(("content-range", value));
        }
        if self.chance(20) {
            let value = self.pick(&[
                "bytes=0-10",
                "bytes=10-0",
                "bytes=-5",
                "bytes=abc",
                "bytes=0-1,5-6",
                "bytes=99999999999-",
                "items=0-1",
            ]);
            headers.push(("range", value.to_string()));
        }
        if self.chance(20) {
            let value = self.pick(&[
                ACCEPT_ALL_MANIFESTS,
                "*/*",
                "text/html",
                "application/json;q=x",
            ]);
            headers.push(("accept", value.to_string()));
        }
        headers
    }
}

fn uuid_like(g: &mut Gen) -> String {
    format!(
        "{}-{}-{}-{}-{}",
        g.hex(8),
        g.hex(4),
        g.hex(4),
        g.hex(4),
        g.hex(12)
    )
}

/// The methods the route of `path` serves.
fn methods_for(path: &str) -> &'static [Method] {
    const READ: &[Method] = &[Method::GET];
    const BLOB: &[Method] = &[Method::GET, Method::HEAD, Method::DELETE];
    const MANIFEST: &[Method] = &[Method::GET, Method::HEAD, Method::PUT, Method::DELETE];
    const START: &[Method] = &[Method::POST];
    const SESSION: &[Method] = &[Method::GET, Method::PATCH, Method::PUT, Method::DELETE];
    let path = path.split('?').next().unwrap_or(path);
    if path.ends_with("/blobs/uploads/") {
        START
    } else if path.contains("/blobs/uploads/") {
        SESSION
    } else if path.contains("/blobs/") {
        BLOB
    } else if path.contains("/manifests/") {
        MANIFEST
    } else {
        READ
    }
}

fn with_query(path: String, query: Vec<String>) -> String {
    if query.is_empty() {
        path
    } else {
        format!("{path}?{}", query.join("&"))
    }
}

/// The tag of `path` when it names a manifest by tag in a known repository.
fn manifest_tag(path: &str) -> Option<(String, String)> {
    let rest = path.strip_prefix("/v2/")?;
    let (repo, reference) = rest.split_once("/manifests/")?;
    (!reference.contains(':')).then(|| (repo.to_string(), reference.to_string()))
}

/// The blob files in storage: `(hex, bytes)` of every `blobs/sha256/<xx>/<hex>/data`.
fn stored_blobs(reg: &Registry, driver: Driver) -> Vec<(String, Vec<u8>)> {
    let mut found = Vec::new();
    match driver {
        Driver::Filesystem => {
            let root = reg.v2_root().join("blobs").join("sha256");
            for prefix in fs::read_dir(&root).into_iter().flatten().flatten() {
                for entry in fs::read_dir(prefix.path()).into_iter().flatten().flatten() {
                    if let Ok(bytes) = fs::read(entry.path().join("data")) {
                        found.push((entry.file_name().to_string_lossy().to_string(), bytes));
                    }
                }
            }
        }
        Driver::S3 => {
            let target = reg.s3().expect("an S3 registry");
            let server = support::s3::shared();
            for key in server.keys(&target.bucket, "docker/registry/v2/blobs/sha256/") {
                let Some(hex) = key.strip_suffix("/data").and_then(|k| k.rsplit('/').next()) else {
                    continue;
                };
                if let Some(bytes) = server.object(&target.bucket, &key) {
                    found.push((hex.to_string(), bytes));
                }
            }
        }
        _ => {}
    }
    found
}

fn run(driver: Driver, requests: usize) {
    let seed = std::env::var("WHARF_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(unique_seed);
    eprintln!("random requests: seed {seed} (WHARF_TEST_SEED={seed} replays it)");
    let reg = Registry::start(driver);
    let mut world = World {
        blobs: Vec::new(),
        images: Vec::new(),
        locations: Vec::new(),
        deleted: BTreeSet::new(),
        retagged: BTreeSet::new(),
    };
    for (i, repo) in REPOS.iter().enumerate() {
        for size in [0, 1, 3000 + i, 70_000] {
            let blob = Blob::random(size);
            push(&reg, repo, &blob);
            world.blobs.push(blob);
        }
        let image = push_image(&reg, repo, "stable", Kind::OciManifest);
        world
            .images
            .push((repo.to_string(), "stable".to_string(), image));
        world.locations.push(start_upload(&reg, repo));
    }
    let mut g = Gen {
        prng: Prng::new(seed),
    };
    let methods = [
        Method::GET,
        Method::HEAD,
        Method::PUT,
        Method::POST,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
    ];
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for i in 0..requests {
        let path = g.path(&world);
        // Mostly a method the route serves, so requests get past routing.
        let method = if g.chance(85) {
            g.pick(methods_for(&path)).clone()
        } else {
            g.pick(&methods).clone()
        };
        let body = g.body(&method, &path, &world);
        let headers = g.headers(body.len());
        let what = format!(
            "request {i} (seed {seed}): {method} {path} {headers:?} body {} bytes",
            body.len()
        );
        let resp = if path.is_ascii() {
            let mut request = reg.request(method.clone(), &path);
            for (name, value) in &headers {
                request = request.header(*name, value.as_str());
            }
            if !body.is_empty() || method == Method::PUT || method == Method::PATCH {
                request = request.body(body);
            }
            try_send(request)
        } else {
            let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}", reg.host());
            for (name, value) in &headers {
                head.push_str(&format!("\r\n{name}: {value}"));
            }
            head.push_str(&format!("\r\nContent-Length: {}", body.len()));
            reg.raw(&head, &body).map_err(|e| e.to_string())
        };
        let resp = resp.unwrap_or_else(|e| panic!("{what}: transport error {e}"));
        *statuses.entry(resp.status).or_default() += 1;
        assert!(resp.status < 500, "{what}: {}", resp.describe());
        if (400..500).contains(&resp.status) && method != Method::HEAD && !resp.body.is_empty() {
            let errors = serde_json::from_slice::<Value>(&resp.body)
                .ok()
                .and_then(|v| v["errors"].as_array().map(|e| !e.is_empty()));
            assert_eq!(
                errors,
                Some(true),
                "{what}: not the error JSON: {}",
                resp.describe()
            );
        }
        if let Some(location) = resp.header("location") {
            if location.contains("_state=") && world.locations.len() < 64 {
                world.locations.push(location.to_string());
            }
        }
        if (200..300).contains(&resp.status) {
            if method == Method::DELETE {
                if let Some(d) = path.rsplit('/').next() {
                    world.deleted.insert(d.to_string());
                }
            }
            if matches!(method, Method::PUT | Method::DELETE) {
                if let Some(tag) = manifest_tag(&path) {
                    world.retagged.insert(tag);
                }
            }
        }
    }
    eprintln!("statuses: {statuses:?}");
    assert!(
        statuses.keys().any(|s| (200..300).contains(s)),
        "some requests succeeded: {statuses:?}"
    );

    send(reg.get("/v2/")).assert_status(200);
    for (repo, tag, image) in &world.images {
        if world.deleted.contains(&image.digest) {
            continue;
        }
        let resp = get_manifest(&reg, repo, &image.digest, OCI_MANIFEST);
        resp.assert_status(200);
        assert!(
            resp.body == image.body,
            "{repo}@{} unchanged (seed {seed})",
            image.digest
        );
        if !world.retagged.contains(&(repo.clone(), tag.clone())) {
            let resp = get_manifest(&reg, repo, tag, OCI_MANIFEST);
            resp.assert_status(200);
            assert!(
                resp.body == image.body,
                "{repo}:{tag} unchanged (seed {seed})"
            );
        }
    }
    for (i, blob) in world.blobs.iter().enumerate() {
        let repo = REPOS[i / 4];
        if world.deleted.contains(&blob.digest) {
            continue;
        }
        let resp = send(reg.get(&format!("/v2/{repo}/blobs/{}", blob.digest)));
        resp.assert_status(200);
        assert!(
            resp.body == blob.data,
            "{repo} blob {} unchanged (seed {seed})",
            blob.digest
        );
    }
    if driver != Driver::Inmemory {
        let stored = stored_blobs(&reg, driver);
        assert!(!stored.is_empty(), "blobs were stored (seed {seed})");
        for (hex, bytes) in stored {
            assert_eq!(
                sha256_digest(&bytes),
                format!("sha256:{hex}"),
                "a stored blob does not hash to its name (seed {seed})"
            );
        }
    }
}

#[test]
fn random_requests_on_the_filesystem() {
    run(Driver::Filesystem, 3000);
}

#[test]
fn random_requests_in_memory() {
    run(Driver::Inmemory, 3000);
}

#[test]
fn random_requests_on_s3() {
    run(Driver::S3, 800);
}
