//! A real S3 server on loopback for the `s3` driver variant: `moto_server` (PyPI `moto[server]`).
//!
//! One shared server per test process ([`shared`]), started on first use; each registry gets a
//! bucket of its own unless it is told to share one. The process is an [`Emulator`]: it never
//! outlives the tests. Tests that stop the server start their own ([`S3Server::start`]).

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::thread;
use std::time::Duration;

use super::emulator::{on_free_port, Emulator, Launch};
use super::process::log_lines;

/// Region and credentials every test config uses (moto accepts any).
pub const REGION: &str = "us-east-1";
pub const ACCESS_KEY: &str = "wharf-test";
pub const SECRET_KEY: &str = "wharf-test-secret";

/// An `Authorization` header moto takes as authenticated (it does not check signatures).
pub const FAKE_AUTHORIZATION: &str = "AWS4-HMAC-SHA256 Credential=wharf-test/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00";

/// A running moto server; dropping it stops the server.
pub struct S3Server {
    server: Emulator,
}

/// Where an `s3` registry keeps its data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Target {
    /// `http://127.0.0.1:<port>` of the S3 server (or of a proxy in front of it).
    pub endpoint: String,
    pub bucket: String,
}

impl S3Target {
    /// A fresh bucket on the shared server.
    pub fn fresh() -> S3Target {
        let server = shared();
        S3Target {
            endpoint: server.endpoint(),
            bucket: server.create_bucket(),
        }
    }
}

static SHARED: OnceLock<S3Server> = OnceLock::new();
static BUCKETS: AtomicU64 = AtomicU64::new(1);

/// The server shared by the tests of this process.
pub fn shared() -> &'static S3Server {
    SHARED.get_or_init(S3Server::start)
}

fn moto_program() -> String {
    std::env::var("WHARF_TEST_MOTO").unwrap_or_else(|_| "moto_server".to_string())
}

impl S3Server {
    /// A private server on a free port.
    pub fn start() -> S3Server {
        on_free_port(S3Server::try_start_on)
    }

    /// A server on `port` (used to bring a stopped server back on the same address).
    pub fn start_on(port: u16) -> S3Server {
        S3Server::try_start_on(port).unwrap_or_else(|why| panic!("{why}"))
    }

    /// [`Self::start_on`], or why it did not start.
    fn try_start_on(port: u16) -> Result<S3Server, String> {
        let command = |_: &std::path::Path| format!("{} -H 127.0.0.1 -p {port}", moto_program());
        Ok(S3Server {
            server: Emulator::try_start(&Launch {
                name: "moto",
                port,
                command: &command,
                scrub_env: &["AWS_", "MOTO_"],
                probe: "/",
                install_hint: "pip install 'moto[server]'",
            })?,
        })
    }

    /// The server's loopback port.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        self.server.origin()
    }

    /// The server's request log (one line per request).
    pub fn log_text(&self) -> String {
        self.server.log_text()
    }

    /// Request lines logged so far (`"METHOD /path?query HTTP/1.1" status`).
    pub fn request_lines(&self) -> Vec<String> {
        log_lines(&self.log_text(), |l| l.contains(" HTTP/1.1\" "))
    }

    /// Stops the server (and waits for it to exit).
    pub fn stop(&self) {
        self.server.stop();
    }

    /// A new empty bucket.
    pub fn create_bucket(&self) -> String {
        let name = format!(
            "wharf-{}-{}",
            std::process::id(),
            BUCKETS.fetch_add(1, Ordering::Relaxed)
        );
        let resp = reqwest::blocking::Client::new()
            .put(format!("{}/{name}", self.endpoint()))
            .timeout(Duration::from_secs(30))
            .send()
            .expect("create bucket");
        assert!(resp.status().is_success(), "create bucket {name}: {resp:?}");
        name
    }

    /// Every key in `bucket` under `prefix`.
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..1000 {
            let mut url = format!("{}/{bucket}?list-type=2&prefix={prefix}", self.endpoint());
            if let Some(t) = &token {
                url.push_str("&continuation-token=");
                url.push_str(&percent(t));
            }
            let text = reqwest::blocking::get(&url)
                .and_then(|r| r.text())
                .expect("list objects");
            keys.extend(xml_values(&text, "Key"));
            token = xml_values(&text, "NextContinuationToken")
                .into_iter()
                .next();
            if token.is_none() {
                break;
            }
        }
        keys
    }

    /// Keys of the open multipart uploads in `bucket`.
    pub fn open_uploads(&self, bucket: &str) -> Vec<String> {
        let text = reqwest::blocking::get(format!("{}/{bucket}?uploads", self.endpoint()))
            .and_then(|r| r.text())
            .expect("list multipart uploads");
        xml_values(&text, "Key")
    }

    /// The ids of the multipart uploads open on `key`, oldest first.
    pub fn upload_ids(&self, bucket: &str, key: &str) -> Vec<String> {
        let text = reqwest::blocking::get(format!(
            "{}/{bucket}?uploads&prefix={}",
            self.endpoint(),
            percent(key)
        ))
        .and_then(|r| r.text())
        .expect("list multipart uploads");
        xml_values(&text, "UploadId")
    }

    /// Completes the multipart upload `id` on `key` with every part it has, as a writer
    /// appending after a short part does first.
    pub fn complete_upload(&self, bucket: &str, key: &str, id: &str) {
        let client = reqwest::blocking::Client::new();
        let url = format!(
            "{}/{bucket}/{key}?uploadId={}",
            self.endpoint(),
            percent(id)
        );
        let listed = client
            .get(&url)
            .header("authorization", FAKE_AUTHORIZATION)
            .send()
            .and_then(|r| r.text())
            .expect("list parts");
        let parts: String = xml_values(&listed, "PartNumber")
            .iter()
            .zip(xml_values(&listed, "ETag"))
            .map(|(n, etag)| {
                format!("<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag></Part>")
            })
            .collect();
        let resp = client
            .post(&url)
            .header("authorization", FAKE_AUTHORIZATION)
            .body(format!(
                "<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>"
            ))
            .send()
            .expect("complete multipart upload");
        assert!(resp.status().is_success(), "complete {key}: {resp:?}");
    }

    /// Opens a multipart upload on `key` and returns its id.
    pub fn create_upload(&self, bucket: &str, key: &str) -> String {
        let resp = reqwest::blocking::Client::new()
            .post(format!("{}/{bucket}/{key}?uploads", self.endpoint()))
            .header("authorization", FAKE_AUTHORIZATION)
            .send()
            .and_then(|r| r.text())
            .expect("create multipart upload");
        xml_values(&resp, "UploadId").pop().expect("an upload id")
    }

    /// Uploads part `number` of the multipart upload `id` on `key`; returns its entity tag.
    pub fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        id: &str,
        number: u32,
        data: &[u8],
    ) -> String {
        let resp = reqwest::blocking::Client::new()
            .put(format!(
                "{}/{bucket}/{key}?partNumber={number}&uploadId={}",
                self.endpoint(),
                percent(id)
            ))
            .header("authorization", FAKE_AUTHORIZATION)
            .body(data.to_vec())
            .send()
            .expect("upload part");
        assert!(
            resp.status().is_success(),
            "part {number} of {key}: {resp:?}"
        );
        resp.headers()["etag"].to_str().unwrap().to_string()
    }

    /// Bytes of one object.
    pub fn object(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        // Objects are private: moto checks ACLs of anonymous requests, not signatures.
        let resp = reqwest::blocking::Client::new()
            .get(format!("{}/{bucket}/{key}", self.endpoint()))
            .header("authorization", FAKE_AUTHORIZATION)
            .send()
            .expect("get object");
        resp.status()
            .is_success()
            .then(|| resp.bytes().expect("object body").to_vec())
    }

    /// Writes an object (for tests that prepare storage by hand).
    pub fn put_object(&self, bucket: &str, key: &str, data: &[u8]) {
        let resp = reqwest::blocking::Client::new()
            .put(format!("{}/{bucket}/{key}", self.endpoint()))
            .header("content-type", "application/octet-stream")
            .body(data.to_vec())
            .send()
            .expect("put object");
        assert!(resp.status().is_success(), "put {key}: {resp:?}");
    }
}

fn percent(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The text of every `<tag>...</tag>` in an XML answer (enough for S3 listings).
pub fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else {
            break;
        };
        out.push(
            after[..end]
                .replace("&amp;", "&")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&#39;", "'"),
        );
        rest = &after[end + close.len()..];
    }
    out
}

/// The `storage.s3` section for a bucket on a server (6-space indented keys under `  s3:`).
pub fn storage_section(endpoint: &str, bucket: &str, extra: &[String]) -> String {
    let mut text = format!(
        "  s3:\n    region: {REGION}\n    bucket: {bucket}\n    regionendpoint: {endpoint}\n    forcepathstyle: true\n    secure: false\n    accesskey: {ACCESS_KEY}\n    secretkey: {SECRET_KEY}\n    chunksize: 5242880\n"
    );
    for line in extra {
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// Writes `data` to `w` in pieces, pausing between them (a slow client).
pub fn write_slowly(w: &mut impl Write, data: &[u8], piece: usize, pause: Duration) {
    for part in data.chunks(piece.max(1)) {
        if w.write_all(part).is_err() {
            return;
        }
        thread::sleep(pause);
    }
}
