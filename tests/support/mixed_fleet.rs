//! A registry:2 node and a Wharf node over one store with one `http.secret`, as a fleet migrating
//! node by node runs them: chunked uploads whose requests go from one binary to the other, and
//! every blob read back from both.

use super::client::{location_path, send, with_digest, Endpoint};
use super::fixtures::{sha256_digest, Prng};
use super::process;
use super::registry::Registry;

/// Which binary answers a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Registry2,
    Wharf,
}

impl Side {
    /// The binary that is not this one.
    pub fn other(self) -> Side {
        match self {
            Side::Registry2 => Side::Wharf,
            Side::Wharf => Side::Registry2,
        }
    }
}

/// The two nodes of the fleet.
pub struct Fleet {
    pub registry2: Registry,
    pub wharf: Registry,
}

impl Fleet {
    /// Where requests to `side` go.
    pub fn endpoint(&self, side: Side) -> Endpoint {
        match side {
            Side::Registry2 => self.registry2.endpoint(),
            Side::Wharf => self.wharf.endpoint(),
        }
    }

    /// `side` named for messages, with its endpoint, as [`push_across`] takes nodes.
    pub fn node(&self, side: Side) -> (String, Endpoint) {
        (format!("{side:?}"), self.endpoint(side))
    }

    /// The end of both nodes' logs, for a failed assertion's message.
    pub fn logs(&self) -> String {
        format!(
            "--- registry:2 ---\n{}\n--- wharf ---\n{}\n",
            process::tail(&self.registry2.log(), 40),
            process::tail(&self.wharf.log(), 40)
        )
    }

    /// One chunked upload whose requests alternate between the binaries: POST on `first`, each
    /// PATCH on the other side from the request before, PUT on the side after the last PATCH.
    /// Returns the answers that were not what a client expects.
    pub fn push_alternating(
        &self,
        first: Side,
        repo: &str,
        data: &[u8],
        chunks: &[usize],
    ) -> Vec<String> {
        push_across(
            &[self.node(first), self.node(first.other())],
            repo,
            data,
            chunks,
        )
    }

    /// Streams the blob from both binaries and compares.
    pub fn read_back(&self, repo: &str, data: &[u8]) -> Vec<String> {
        let digest = sha256_digest(data);
        let mut problems = Vec::new();
        for side in [Side::Registry2, Side::Wharf] {
            match self.endpoint(side).pull_digest(repo, &digest) {
                Ok((got, len, _)) if got == digest && len == data.len() as u64 => {}
                Ok((got, len, _)) => {
                    problems.push(format!("GET on {side:?}: {len} bytes hashing to {got}"))
                }
                Err(f) => problems.push(format!("GET on {side:?}: {f}")),
            }
        }
        problems
    }

    /// For each named list of chunk sizes, an upload of that many random bytes alternating
    /// between the binaries from `first` (repository `mixed/<first>-<i>`), then read back from
    /// both. Returns one line per case that went wrong.
    pub fn uploads_both_ways(
        &self,
        first: Side,
        seed: u64,
        cases: Vec<(&'static str, Vec<usize>)>,
    ) -> Vec<String> {
        let mut prng = Prng::new(seed + first as u64);
        let mut failed = Vec::new();
        for (i, (name, chunks)) in cases.into_iter().enumerate() {
            let repo = format!("mixed/{}-{i}", format!("{first:?}").to_lowercase());
            let data = prng.bytes(chunks.iter().sum());
            let mut problems = self.push_alternating(first, &repo, &data, &chunks);
            if problems.is_empty() {
                problems.extend(self.read_back(&repo, &data));
            }
            eprintln!(
                "{first:?} first, {name}: {}",
                if problems.is_empty() {
                    "ok".to_string()
                } else {
                    problems.join("; ")
                }
            );
            if !problems.is_empty() {
                failed.push(format!("{name}: {}", problems.join("; ")));
            }
        }
        failed
    }
}

/// One chunked upload whose requests go round `nodes` (POST on the first, each PATCH and the
/// PUT on the next); an empty chunk is a PATCH without a body. Returns the answers that were
/// not what a client expects.
pub fn push_across(
    nodes: &[(String, Endpoint)],
    repo: &str,
    data: &[u8],
    chunks: &[usize],
) -> Vec<String> {
    let digest = sha256_digest(data);
    let mut turn = 0;
    let mut next = || {
        let node = &nodes[turn % nodes.len()];
        turn += 1;
        node
    };
    let (name, node) = next();
    let post = send(node.post(&format!("/v2/{repo}/blobs/uploads/")));
    if post.status != 202 {
        return vec![format!("POST on {name}: {}", post.describe())];
    }
    let mut location = location_path(post.must_header("location"));
    let mut start = 0usize;
    for &len in chunks {
        let (name, node) = next();
        let end = start + len;
        let mut request = node
            .patch(&location)
            .header("content-type", "application/octet-stream")
            .body(data[start..end].to_vec());
        if len > 0 {
            request = request.header("content-range", format!("{start}-{}", end - 1));
        }
        let resp = send(request);
        // registry:2 answers `0-0` for an empty upload.
        let range = format!("0-{}", end.max(1) - 1);
        if resp.status != 202 || resp.header("range") != Some(range.as_str()) {
            return vec![format!(
                "PATCH {start}..{end} on {name}: {}",
                resp.describe()
            )];
        }
        location = location_path(resp.must_header("location"));
        start = end;
    }
    let (name, node) = next();
    let put = send(
        node.put(&with_digest(&location, &digest))
            .header("content-length", "0"),
    );
    if put.status != 201 || put.header("docker-content-digest") != Some(digest.as_str()) {
        return vec![format!("PUT on {name}: {}", put.describe())];
    }
    Vec::new()
}
