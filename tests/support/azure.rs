//! A real Azure Blob service on loopback for the `azure` driver variant: Azurite's blob server
//! (npm `azurite`), installed by `.ci/test` under `~/.cache/wharf/azurite`.
//!
//! One shared server per test process ([`shared`]), started on first use; each registry gets a
//! container of its own unless it is told to share one. The process is an [`Emulator`]: it
//! never outlives the tests. Telemetry is off: nothing leaves the machine. Tests that stop the
//! server start their own.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use super::emulator::{on_free_port, Emulator, Launch};

/// Azurite's well-known development account and key.
pub const ACCOUNT: &str = "devstoreaccount1";
pub const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// A running Azurite blob server; dropping it stops the server.
pub struct Azurite {
    server: Emulator,
    https: bool,
}

/// Where an `azure` registry keeps its data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AzureTarget {
    /// `http://127.0.0.1:<port>/devstoreaccount1` (or a proxy in front of it).
    pub service_url: String,
    pub container: String,
}

impl AzureTarget {
    /// A fresh container name on the shared server (the driver creates it on first use).
    pub fn fresh() -> AzureTarget {
        let server = shared();
        AzureTarget {
            service_url: server.service_url(),
            container: fresh_container(),
        }
    }
}

static SHARED: OnceLock<Azurite> = OnceLock::new();
static CONTAINERS: AtomicU64 = AtomicU64::new(1);

/// The server shared by the tests of this process.
pub fn shared() -> &'static Azurite {
    SHARED.get_or_init(Azurite::start)
}

/// A container name no other test of any process uses.
pub fn fresh_container() -> String {
    format!(
        "wharf-{}-{}",
        std::process::id(),
        CONTAINERS.fetch_add(1, Ordering::Relaxed)
    )
}

/// `azurite-blob`: `$WHARF_TEST_AZURITE`, else the copy `.ci/test` installs, else `PATH`.
fn azurite_program() -> String {
    if let Ok(program) = std::env::var("WHARF_TEST_AZURITE") {
        return program;
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let cached = PathBuf::from(home).join(".cache/wharf/azurite/node_modules/.bin/azurite-blob");
    if cached.exists() {
        return cached.display().to_string();
    }
    "azurite-blob".to_string()
}

impl Azurite {
    /// A private server on a free port.
    pub fn start() -> Azurite {
        on_free_port(|port| Azurite::launch(port, None, false))
    }

    /// A server on `port` keeping its data in `data` (its own folder when `None`; used to
    /// bring a stopped server back on the same address with the same data).
    pub fn start_on(port: u16, data: Option<&Path>) -> Azurite {
        Azurite::launch(port, data, false).unwrap_or_else(|why| panic!("{why}"))
    }

    /// A private server over HTTPS (a self-signed certificate for 127.0.0.1) that accepts
    /// Entra ID bearer tokens (`--oauth basic`: issuer, audience and lifetime are checked) as
    /// well as Shared Key.
    pub fn start_oauth() -> Azurite {
        on_free_port(|port| Azurite::launch(port, None, true))
    }

    /// A server on `port`, or why it did not start.
    fn launch(port: u16, data: Option<&Path>, oauth: bool) -> Result<Azurite, String> {
        let data = data.map(Path::to_path_buf);
        let command = move |dir: &Path| {
            let location = data.clone().unwrap_or_else(|| dir.join("data"));
            fs::create_dir_all(&location).expect("azurite data dir");
            let tls = if oauth {
                let certified =
                    rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
                let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
                fs::write(&cert, certified.cert.pem()).unwrap();
                fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
                format!(
                    " --oauth basic --cert '{}' --key '{}'",
                    cert.display(),
                    key.display()
                )
            } else {
                String::new()
            };
            format!(
                "'{}' --blobHost 127.0.0.1 --blobPort {port} --location '{}' \
                 --skipApiVersionCheck --loose --disableTelemetry --disableProductStyleUrl{tls}",
                azurite_program(),
                location.display()
            )
        };
        Ok(Azurite {
            server: Emulator::try_start(&Launch {
                name: "azurite",
                port,
                command: &command,
                scrub_env: &["AZURITE_"],
                // Any HTTP answer (an anonymous request is refused) means it serves; over
                // HTTPS, accepting connections.
                probe: &if oauth {
                    String::new()
                } else {
                    format!("/{ACCOUNT}?comp=list")
                },
                install_hint: "npm install --prefix ~/.cache/wharf/azurite azurite",
            })?,
            https: oauth,
        })
    }

    /// The server's loopback port.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// `http://127.0.0.1:<port>/devstoreaccount1` (`https://` for [`Azurite::start_oauth`]).
    pub fn service_url(&self) -> String {
        let origin = self.server.origin();
        if self.https {
            format!("{}/{ACCOUNT}", origin.replacen("http://", "https://", 1))
        } else {
            format!("{origin}/{ACCOUNT}")
        }
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
}

/// The `storage.azure` section for a container (keys indented by four spaces), in
/// distribution 3's form (`credentials`, `serviceurl`), followed by `extra` lines.
pub fn storage_section(target: &AzureTarget, extra: &[String]) -> String {
    let mut text = format!(
        "  azure:\n    accountname: {ACCOUNT}\n    accountkey: {ACCOUNT_KEY}\n    container: {}\n    serviceurl: {}\n    credentials:\n      type: shared_key\n",
        target.container, target.service_url
    );
    for line in extra {
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// A driver on a container through the library, to inspect or prepare what a registry stores;
/// `root` is `rootdirectory` (distribution 3 names), or `None` for distribution 2.8's names.
pub fn driver(
    target: &AzureTarget,
    root: Option<&str>,
) -> wharf::storage::drivers::azure::AzureDriver {
    use wharf::storage::drivers::azure::{AzureAuth, AzureDriver, AzureSettings};
    let settings = AzureSettings {
        account: ACCOUNT.to_string(),
        auth: AzureAuth::SharedKey(ACCOUNT_KEY.to_string()),
        container: target.container.clone(),
        service_url: target.service_url.clone(),
        name_prefix: match root {
            None => "/".to_string(),
            Some("") => String::new(),
            Some(r) => format!("{}/", r.trim_matches('/')),
        },
        max_attempts: 3,
        retry_delay: Duration::from_millis(100),
        skip_verify: false,
    };
    AzureDriver::new(&settings).expect("azure driver")
}

/// An HTTPS Azurite checking bearer tokens and the Entra ID stand-in issuing them, shared by
/// the tests of this process. Library drivers find the stand-in through `AZURE_AUTHORITY_HOST`,
/// set here once for the whole process.
pub fn oauth_shared() -> &'static (Azurite, super::entra::EntraStandIn) {
    static SHARED: OnceLock<(Azurite, super::entra::EntraStandIn)> = OnceLock::new();
    SHARED.get_or_init(|| {
        let entra = super::entra::EntraStandIn::start(Duration::from_secs(3600));
        std::env::set_var("AZURE_AUTHORITY_HOST", entra.authority());
        (Azurite::start_oauth(), entra)
    })
}

/// A fresh container on the shared HTTPS Azurite.
pub fn oauth_target() -> AzureTarget {
    AzureTarget {
        service_url: oauth_shared().0.service_url(),
        container: fresh_container(),
    }
}

/// A driver authorized with the stand-in's client secret (`credentials.type: client_secret`),
/// names under `root` (distribution 3's).
pub fn oauth_driver(
    target: &AzureTarget,
    root: &str,
) -> wharf::storage::drivers::azure::AzureDriver {
    use super::entra::{CLIENT_ID, CLIENT_SECRET, TENANT};
    use wharf::storage::drivers::azure::{AzureAuth, AzureDriver, AzureSettings};
    oauth_shared();
    let settings = AzureSettings {
        account: ACCOUNT.to_string(),
        auth: AzureAuth::ClientSecret {
            tenant: TENANT.to_string(),
            client_id: CLIENT_ID.to_string(),
            secret: CLIENT_SECRET.to_string(),
        },
        container: target.container.clone(),
        service_url: target.service_url.clone(),
        name_prefix: match root.trim_matches('/') {
            "" => String::new(),
            r => format!("{r}/"),
        },
        max_attempts: 3,
        retry_delay: Duration::from_millis(100),
        // Azurite's certificate is self-signed.
        skip_verify: true,
    };
    AzureDriver::new(&settings).expect("azure driver")
}

/// The `storage.azure` section of a registry on `target` authorized by `credentials` (lines
/// indented by six spaces, under `credentials:`), trusting the HTTPS Azurite's certificate.
pub fn oauth_storage_section(target: &AzureTarget, credentials: &str) -> String {
    format!(
        "  azure:\n    accountname: {ACCOUNT}\n    container: {}\n    serviceurl: {}\n    skipverify: true\n    credentials:\n{credentials}",
        target.container, target.service_url
    )
}
