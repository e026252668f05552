//! The typed configuration: one struct per section of distribution's `config.yml`.
//!
//! Field names are the YAML keys. Defaults are distribution's; where distribution reads a zero
//! as "use the default" (intervals, limits), loading does too (see `validate.rs`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_yaml::Value;

use super::lenient;

/// HTTP header name to its values.
pub type Headers = BTreeMap<String, Vec<String>>;

/// Driver or middleware parameters kept as YAML, for sections Wharf does not interpret yet.
pub type RawParameters = BTreeMap<String, Value>;

const MIB: u64 = 1024 * 1024;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// The whole configuration, as distribution's `configuration.Configuration`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    /// Configuration format version; only "0.1" exists.
    #[serde(deserialize_with = "lenient::string")]
    pub version: String,
    /// Logging.
    #[serde(default, deserialize_with = "lenient::or_default")]
    pub log: LogConfig,
    /// Storage driver and storage-wide options.
    pub storage: StorageConfig,
    /// Access control; `None` when no scheme (or `none`) is configured.
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    /// The HTTP server.
    #[serde(default, deserialize_with = "lenient::or_default")]
    pub http: HttpConfig,
    /// Redis connection, shared by the blob descriptor cache.
    #[serde(default)]
    pub redis: Option<RedisConfig>,
    /// Health checks.
    #[serde(default, deserialize_with = "lenient::or_default")]
    pub health: HealthConfig,
    /// Webhook notifications.
    #[serde(default, deserialize_with = "lenient::or_default")]
    pub notifications: NotificationsConfig,
    /// Pull-through cache mode.
    #[serde(default)]
    pub proxy: Option<ProxyConfig>,
    /// Middleware chains.
    #[serde(default, deserialize_with = "lenient::or_default")]
    pub middleware: MiddlewareConfig,
    /// Manifest validation rules.
    #[serde(default, deserialize_with = "lenient::or_default")]
    pub validation: ValidationConfig,
    /// `/v2/_catalog` limits.
    #[serde(default, deserialize_with = "lenient::or_default")]
    pub catalog: CatalogConfig,
    /// Tag listing limits.
    #[serde(default, deserialize_with = "lenient::or_default")]
    pub tags: TagsConfig,
    /// Options for old formats (v2.8).
    #[serde(default, deserialize_with = "lenient::or_default")]
    pub compatibility: CompatibilityConfig,
    /// Error reporting services (v2.8); accepted and ignored.
    #[serde(default, deserialize_with = "lenient::or_default")]
    pub reporting: ReportingConfig,
    /// Registry policy.
    #[serde(default, deserialize_with = "lenient::or_default")]
    pub policy: PolicyConfig,
    /// Wharf's built-in token issuer (not in distribution).
    #[serde(default)]
    pub tokenissuer: Option<TokenIssuerConfig>,
    /// Wharf's online garbage collection (not in distribution).
    #[serde(default, deserialize_with = "lenient::or_default")]
    pub gc: GcConfig,
    /// When a running node re-reads this file (Wharf's own, `reload.rs`).
    #[serde(default, deserialize_with = "lenient::or_default")]
    pub reload: super::ReloadConfig,
    /// Wharf's web console (not in distribution).
    #[serde(default, deserialize_with = "lenient::or_default")]
    pub ui: super::UiConfig,
}

/// Reads a keyword (case-insensitively) from a fixed list; "" and null give `None`.
fn keyword<'de, D, T: Copy>(d: D, what: &str, choices: &[(&str, T)]) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
{
    let text = lenient::string(d)?;
    if text.is_empty() {
        return Ok(None);
    }
    let lower = text.to_ascii_lowercase();
    match choices.iter().find(|(name, _)| *name == lower) {
        Some((_, value)) => Ok(Some(*value)),
        None => {
            let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
            Err(de::Error::custom(format!(
                "invalid {what} {text:?}: must be one of {}",
                names.join(", ")
            )))
        }
    }
}

// ---------------------------------------------------------------- log

/// `log` section.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    /// Minimum level logged.
    pub level: LogLevel,
    /// Output format.
    pub formatter: LogFormatter,
    /// Static fields added to every log line.
    #[serde(deserialize_with = "lenient::or_default")]
    pub fields: BTreeMap<String, Value>,
    /// Access log switch.
    #[serde(deserialize_with = "lenient::or_default")]
    pub accesslog: AccessLogConfig,
    /// Whether to log the calling function.
    #[serde(deserialize_with = "lenient::bool")]
    pub reportcaller: bool,
    /// Log hooks (mail); accepted, and ignored with a warning when one is enabled.
    #[serde(deserialize_with = "lenient::or_default")]
    pub hooks: Vec<LogHook>,
}

/// One `log.hooks` entry (v2.8 and v3).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct LogHook {
    /// Skip this hook.
    #[serde(deserialize_with = "lenient::bool")]
    pub disabled: bool,
    /// Hook kind; distribution has `mail`.
    #[serde(rename = "type", deserialize_with = "lenient::string")]
    pub kind: String,
    /// Levels that trigger the hook.
    #[serde(deserialize_with = "lenient::string_list")]
    pub levels: Vec<String>,
    /// Mail settings.
    #[serde(deserialize_with = "lenient::or_default")]
    pub options: MailOptions,
}

/// `options` of a mail log hook.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct MailOptions {
    /// SMTP server.
    #[serde(deserialize_with = "lenient::or_default")]
    pub smtp: SmtpOptions,
    /// Sender address.
    #[serde(deserialize_with = "lenient::string")]
    pub from: String,
    /// Recipients.
    #[serde(deserialize_with = "lenient::string_list")]
    pub to: Vec<String>,
}

/// `options.smtp` of a mail log hook.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct SmtpOptions {
    /// `host:port`.
    #[serde(deserialize_with = "lenient::string")]
    pub addr: String,
    /// Login user.
    #[serde(deserialize_with = "lenient::string")]
    pub username: String,
    /// Login password.
    #[serde(deserialize_with = "lenient::string")]
    pub password: String,
    /// Skip certificate verification.
    #[serde(deserialize_with = "lenient::bool")]
    pub insecure: bool,
}

/// Log level; "warning" reads as warn, and "trace" is tolerated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// The default.
    #[default]
    Info,
    /// Debugging detail.
    Debug,
    /// Everything.
    Trace,
}

impl<'de> Deserialize<'de> for LogLevel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let choices = [
            ("error", LogLevel::Error),
            ("warn", LogLevel::Warn),
            ("info", LogLevel::Info),
            ("debug", LogLevel::Debug),
            ("warning", LogLevel::Warn),
            ("trace", LogLevel::Trace),
        ];
        keyword(d, "log level", &choices).map(Option::unwrap_or_default)
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormatter {
    /// logfmt-like text, the default.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
    /// Logstash JSON.
    Logstash,
}

impl<'de> Deserialize<'de> for LogFormatter {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let choices = [
            ("text", LogFormatter::Text),
            ("json", LogFormatter::Json),
            ("logstash", LogFormatter::Logstash),
        ];
        keyword(d, "log formatter", &choices).map(Option::unwrap_or_default)
    }
}

/// `log.accesslog` section.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct AccessLogConfig {
    /// Turns the access log off.
    #[serde(deserialize_with = "lenient::bool")]
    pub disabled: bool,
}

// ---------------------------------------------------------------- storage

/// `storage` section: exactly one driver plus storage-wide options.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageConfig {
    /// The configured driver and its parameters.
    pub driver: StorageDriverConfig,
    /// `storage.delete`.
    pub delete: DeleteConfig,
    /// `storage.redirect`.
    pub redirect: RedirectConfig,
    /// `storage.cache`.
    pub cache: CacheConfig,
    /// `storage.maintenance`.
    pub maintenance: MaintenanceConfig,
    /// `storage.tag`.
    pub tag: TagConfig,
}

/// The storage driver, named by its key under `storage`.
#[derive(Debug, Clone, PartialEq)]
pub enum StorageDriverConfig {
    /// Local filesystem.
    Filesystem {
        /// Root of the registry tree (`<root>/docker/registry/v2`).
        rootdirectory: PathBuf,
        /// Limit on concurrent filesystem operations (at least 25).
        maxthreads: usize,
    },
    /// Process memory, for tests.
    Inmemory,
    /// Amazon S3 and compatible services.
    S3(S3Config),
    /// Alibaba Cloud OSS (v2.8).
    Oss(OssConfig),
    /// Azure Blob Storage.
    Azure(AzureConfig),
    /// Google Cloud Storage.
    Gcs(GcsConfig),
    /// OpenStack Swift (v2.8).
    Swift(SwiftConfig),
}

/// The driver keys distribution knows, in the order error messages list them.
pub(crate) const STORAGE_DRIVERS: &[&str] = &[
    "filesystem",
    "inmemory",
    "s3",
    "oss",
    "azure",
    "gcs",
    "swift",
];

/// Keys under `storage` that are options, not drivers.
pub(crate) const STORAGE_OPTIONS: &[&str] = &["delete", "redirect", "cache", "maintenance", "tag"];

impl StorageDriverConfig {
    /// The driver's key, as written under `storage`.
    pub fn name(&self) -> &'static str {
        match self {
            StorageDriverConfig::Filesystem { .. } => "filesystem",
            StorageDriverConfig::Inmemory => "inmemory",
            StorageDriverConfig::S3(_) => "s3",
            StorageDriverConfig::Oss(_) => "oss",
            StorageDriverConfig::Azure(_) => "azure",
            StorageDriverConfig::Gcs(_) => "gcs",
            StorageDriverConfig::Swift(_) => "swift",
        }
    }
}

/// Parameters of the filesystem driver.
#[derive(Deserialize)]
#[serde(default)]
struct FilesystemParams {
    #[serde(deserialize_with = "lenient::path")]
    rootdirectory: PathBuf,
    /// Go's `GetLimitFromParameter` raises anything below the floor (negatives too) to it.
    #[serde(deserialize_with = "lenient::int")]
    maxthreads: i64,
}

impl Default for FilesystemParams {
    fn default() -> Self {
        FilesystemParams {
            rootdirectory: PathBuf::from("/var/lib/registry"),
            maxthreads: 100,
        }
    }
}

/// The inmemory driver takes no parameters; any given are reported as unknown keys.
#[derive(Deserialize)]
struct InmemoryParams {}

impl<'de> Deserialize<'de> for StorageConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(StorageVisitor)
    }
}

struct StorageVisitor;

impl<'de> Visitor<'de> for StorageVisitor {
    type Value = StorageConfig;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a storage section naming one driver")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StorageConfig, A::Error> {
        let mut drivers = Vec::new();
        let mut delete = None;
        let mut redirect = None;
        let mut cache = None;
        let mut maintenance = None;
        let mut tag = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "delete" => delete = map.next_value::<Option<DeleteConfig>>()?,
                "redirect" => redirect = map.next_value::<Option<RedirectConfig>>()?,
                "cache" => cache = map.next_value::<Option<CacheConfig>>()?,
                "maintenance" => maintenance = map.next_value::<Option<MaintenanceConfig>>()?,
                "tag" => tag = map.next_value::<Option<TagConfig>>()?,
                "filesystem" => {
                    let p = map
                        .next_value::<Option<FilesystemParams>>()?
                        .unwrap_or_default();
                    drivers.push(StorageDriverConfig::Filesystem {
                        rootdirectory: p.rootdirectory,
                        maxthreads: usize::try_from(p.maxthreads).unwrap_or(0),
                    });
                }
                "inmemory" => {
                    map.next_value::<Option<InmemoryParams>>()?;
                    drivers.push(StorageDriverConfig::Inmemory);
                }
                "s3" => drivers.push(StorageDriverConfig::S3(
                    map.next_value::<Option<S3Config>>()?.unwrap_or_default(),
                )),
                "oss" => drivers.push(StorageDriverConfig::Oss(
                    map.next_value::<Option<OssConfig>>()?.unwrap_or_default(),
                )),
                "azure" => drivers.push(StorageDriverConfig::Azure(
                    map.next_value::<Option<AzureConfig>>()?.unwrap_or_default(),
                )),
                "gcs" => drivers.push(StorageDriverConfig::Gcs(
                    map.next_value::<Option<GcsConfig>>()?.unwrap_or_default(),
                )),
                "swift" => drivers.push(StorageDriverConfig::Swift(
                    map.next_value::<Option<SwiftConfig>>()?.unwrap_or_default(),
                )),
                other => {
                    return Err(de::Error::custom(format!(
                        "unknown storage driver {other:?}: must be one of {}",
                        STORAGE_DRIVERS.join(", ")
                    )))
                }
            }
        }
        if drivers.len() > 1 {
            let names: Vec<&str> = drivers.iter().map(StorageDriverConfig::name).collect();
            return Err(de::Error::custom(format!(
                "multiple storage drivers specified in configuration or environment: [{}]",
                names.join(" ")
            )));
        }
        let driver = drivers
            .pop()
            .ok_or_else(|| de::Error::custom("no storage driver configured"))?;
        Ok(StorageConfig {
            driver,
            delete: delete.unwrap_or_default(),
            redirect: redirect.unwrap_or_default(),
            cache: cache.unwrap_or_default(),
            maintenance: maintenance.unwrap_or_default(),
            tag: tag.unwrap_or_default(),
        })
    }
}

/// `storage.s3`: every key of distribution's S3 driver (v2.8 and v3).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct S3Config {
    /// Access key id; IAM credentials are used when absent.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub accesskey: Option<String>,
    /// Secret access key.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub secretkey: Option<String>,
    /// Session token for temporary credentials.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub sessiontoken: Option<String>,
    /// AWS region (required).
    #[serde(deserialize_with = "lenient::string")]
    pub region: String,
    /// Endpoint of an S3-compatible service.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub regionendpoint: Option<String>,
    /// Path-style addressing (v3; v2.8 forced it with `regionendpoint`).
    #[serde(deserialize_with = "lenient::bool")]
    pub forcepathstyle: bool,
    /// Bucket name (required).
    #[serde(deserialize_with = "lenient::string")]
    pub bucket: String,
    /// Server-side encryption.
    #[serde(deserialize_with = "lenient::bool")]
    pub encrypt: bool,
    /// KMS key id for encryption.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub keyid: Option<String>,
    /// Use HTTPS.
    #[serde(deserialize_with = "lenient::bool")]
    pub secure: bool,
    /// Skip TLS verification.
    #[serde(deserialize_with = "lenient::bool")]
    pub skipverify: bool,
    /// Signature version 4.
    #[serde(deserialize_with = "lenient::bool")]
    pub v4auth: bool,
    /// Multipart upload part size in bytes (at least 5 MiB).
    #[serde(deserialize_with = "lenient::size")]
    pub chunksize: u64,
    /// Part size of multipart copies in bytes.
    #[serde(deserialize_with = "lenient::size")]
    pub multipartcopychunksize: u64,
    /// Parallel parts of a multipart copy.
    #[serde(deserialize_with = "lenient::size")]
    pub multipartcopymaxconcurrency: u64,
    /// Objects above this size are copied in parts.
    #[serde(deserialize_with = "lenient::size")]
    pub multipartcopythresholdsize: u64,
    /// Key prefix inside the bucket.
    #[serde(deserialize_with = "lenient::string")]
    pub rootdirectory: String,
    /// Storage class of written objects.
    #[serde(deserialize_with = "lenient::string")]
    pub storageclass: String,
    /// Canned ACL of written objects.
    #[serde(deserialize_with = "lenient::string")]
    pub objectacl: String,
    /// Extra User-Agent text.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub useragent: Option<String>,
    /// Dual-stack endpoints.
    #[serde(deserialize_with = "lenient::bool")]
    pub usedualstack: bool,
    /// Transfer acceleration.
    #[serde(deserialize_with = "lenient::bool")]
    pub accelerate: bool,
    /// FIPS endpoints.
    #[serde(deserialize_with = "lenient::bool")]
    pub usefipsendpoint: bool,
    /// SDK log level.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub loglevel: Option<String>,
    /// Endpoint used in redirect URLs instead of `regionendpoint`.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub redirectendpoint: Option<String>,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            accesskey: None,
            secretkey: None,
            sessiontoken: None,
            region: String::new(),
            regionendpoint: None,
            forcepathstyle: false,
            bucket: String::new(),
            encrypt: false,
            keyid: None,
            secure: true,
            skipverify: false,
            v4auth: true,
            chunksize: 10 * MIB,
            multipartcopychunksize: 32 * MIB,
            multipartcopymaxconcurrency: 100,
            multipartcopythresholdsize: 32 * MIB,
            rootdirectory: String::new(),
            storageclass: "STANDARD".into(),
            objectacl: "private".into(),
            useragent: None,
            usedualstack: false,
            accelerate: false,
            usefipsendpoint: false,
            loglevel: None,
            redirectendpoint: None,
        }
    }
}

/// `storage.oss`: Alibaba Cloud OSS driver keys of v2.8.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct OssConfig {
    /// Access key id (required).
    #[serde(deserialize_with = "lenient::string")]
    pub accesskeyid: String,
    /// Access key secret (required).
    #[serde(deserialize_with = "lenient::string")]
    pub accesskeysecret: String,
    /// Region (required).
    #[serde(deserialize_with = "lenient::string")]
    pub region: String,
    /// Custom endpoint.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub endpoint: Option<String>,
    /// Use the region's internal endpoint.
    #[serde(deserialize_with = "lenient::bool")]
    pub internal: bool,
    /// Bucket name (required).
    #[serde(deserialize_with = "lenient::string")]
    pub bucket: String,
    /// Server-side encryption.
    #[serde(deserialize_with = "lenient::bool")]
    pub encrypt: bool,
    /// KMS key id for encryption.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub encryptionkeyid: Option<String>,
    /// Use HTTPS.
    #[serde(deserialize_with = "lenient::bool")]
    pub secure: bool,
    /// Multipart part size in bytes (at least 5 MiB).
    #[serde(deserialize_with = "lenient::size")]
    pub chunksize: u64,
    /// Key prefix inside the bucket.
    #[serde(deserialize_with = "lenient::string")]
    pub rootdirectory: String,
}

impl Default for OssConfig {
    fn default() -> Self {
        OssConfig {
            accesskeyid: String::new(),
            accesskeysecret: String::new(),
            region: String::new(),
            endpoint: None,
            internal: false,
            bucket: String::new(),
            encrypt: false,
            encryptionkeyid: None,
            secure: true,
            chunksize: 10 * MIB,
            rootdirectory: String::new(),
        }
    }
}

/// `storage.azure`: the keys of distribution's Azure driver (v2.8 and v3).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct AzureConfig {
    /// Storage account name (required).
    #[serde(deserialize_with = "lenient::string")]
    pub accountname: String,
    /// Shared key of the account (v2.8: required; v3: with `credentials.type: shared_key`).
    #[serde(deserialize_with = "lenient::opt_string")]
    pub accountkey: Option<String>,
    /// Blob container (required).
    #[serde(deserialize_with = "lenient::string")]
    pub container: String,
    /// Domain of the blob service, `core.windows.net` by default.
    #[serde(deserialize_with = "lenient::string")]
    pub realm: String,
    /// Key prefix inside the container (v3).
    #[serde(deserialize_with = "lenient::string")]
    pub rootdirectory: String,
    /// Blob service URL; `https://<accountname>.blob.<realm>` when absent (v3).
    #[serde(deserialize_with = "lenient::opt_string")]
    pub serviceurl: Option<String>,
    /// Connection string instead of account name and key (v3).
    #[serde(deserialize_with = "lenient::opt_string")]
    pub connectionstring: Option<String>,
    /// How to authenticate (v3).
    #[serde(deserialize_with = "lenient::or_default")]
    pub credentials: AzureCredentials,
    /// Retries of a failed request (v3; 0 means the default, 5).
    #[serde(deserialize_with = "lenient::int")]
    pub max_retries: i64,
    /// Delay between retries (v3).
    #[serde(deserialize_with = "lenient::duration")]
    pub retry_delay: Duration,
    /// Skip TLS verification (v3).
    #[serde(deserialize_with = "lenient::bool")]
    pub skipverify: bool,
}

impl Default for AzureConfig {
    fn default() -> Self {
        AzureConfig {
            accountname: String::new(),
            accountkey: None,
            container: String::new(),
            realm: "core.windows.net".into(),
            rootdirectory: String::new(),
            serviceurl: None,
            connectionstring: None,
            credentials: AzureCredentials::default(),
            max_retries: 5,
            retry_delay: Duration::from_millis(100),
            skipverify: false,
        }
    }
}

/// `storage.azure.credentials` section (v3).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct AzureCredentials {
    /// `shared_key`, `client_secret` or `default_credentials`.
    #[serde(rename = "type", deserialize_with = "lenient::string")]
    pub kind: String,
    /// Application (client) id, with `client_secret`.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub clientid: Option<String>,
    /// Directory (tenant) id, with `client_secret`.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub tenantid: Option<String>,
    /// Client secret, with `client_secret`.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub secret: Option<String>,
}

/// `storage.gcs`: the keys of distribution's Google Cloud Storage driver (v2.8 and v3).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct GcsConfig {
    /// Bucket name (required).
    #[serde(deserialize_with = "lenient::string")]
    pub bucket: String,
    /// Service-account JSON key file.
    #[serde(deserialize_with = "lenient::opt_path")]
    pub keyfile: Option<PathBuf>,
    /// Service-account key given inline (the JSON key file's fields), when `keyfile` is absent.
    #[serde(deserialize_with = "lenient::or_default")]
    pub credentials: RawParameters,
    /// Key prefix inside the bucket.
    #[serde(deserialize_with = "lenient::string")]
    pub rootdirectory: String,
    /// Resumable upload chunk size in bytes (a multiple of 256 KiB).
    #[serde(deserialize_with = "lenient::size")]
    pub chunksize: u64,
    /// Parallel calls to the service (at least 25).
    #[serde(deserialize_with = "lenient::usize")]
    pub maxconcurrency: usize,
    /// Extra User-Agent text.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub useragent: Option<String>,
}

/// Smallest GCS upload chunk, and the unit chunk sizes are multiples of.
pub(crate) const GCS_CHUNK_UNIT: u64 = 256 * 1024;

impl Default for GcsConfig {
    fn default() -> Self {
        GcsConfig {
            bucket: String::new(),
            keyfile: None,
            credentials: RawParameters::new(),
            rootdirectory: String::new(),
            chunksize: 16 * MIB,
            maxconcurrency: 50,
            useragent: None,
        }
    }
}

/// `storage.swift`: the keys of distribution's OpenStack Swift driver (v2.8).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct SwiftConfig {
    /// Keystone (or tempauth) URL (required).
    #[serde(deserialize_with = "lenient::string")]
    pub authurl: String,
    /// User name (required).
    #[serde(deserialize_with = "lenient::string")]
    pub username: String,
    /// Password (required).
    #[serde(deserialize_with = "lenient::string")]
    pub password: String,
    /// Container (required).
    #[serde(deserialize_with = "lenient::string")]
    pub container: String,
    /// Region, for multi-region deployments.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub region: Option<String>,
    /// Tenant (project) name.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub tenant: Option<String>,
    /// Tenant (project) id.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub tenantid: Option<String>,
    /// User domain name (Keystone v3).
    #[serde(deserialize_with = "lenient::opt_string")]
    pub domain: Option<String>,
    /// User domain id (Keystone v3).
    #[serde(deserialize_with = "lenient::opt_string")]
    pub domainid: Option<String>,
    /// Tenant domain name (Keystone v3).
    #[serde(deserialize_with = "lenient::opt_string")]
    pub tenantdomain: Option<String>,
    /// Tenant domain id (Keystone v3).
    #[serde(deserialize_with = "lenient::opt_string")]
    pub tenantdomainid: Option<String>,
    /// Trust id (Keystone v3).
    #[serde(deserialize_with = "lenient::opt_string")]
    pub trustid: Option<String>,
    /// Keystone API version (1, 2 or 3; 0 lets the client guess from the URL).
    #[serde(deserialize_with = "lenient::int")]
    pub authversion: i64,
    /// `public`, `internal` or `admin` endpoint.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub endpointtype: Option<String>,
    /// Skip TLS verification.
    #[serde(deserialize_with = "lenient::bool")]
    pub insecureskipverify: bool,
    /// Segment size of large objects in bytes (at least 1 MiB).
    #[serde(deserialize_with = "lenient::size")]
    pub chunksize: u64,
    /// Object name prefix inside the container.
    #[serde(deserialize_with = "lenient::string")]
    pub prefix: String,
    /// Temp URL key; redirects to signed URLs when set.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub secretkey: Option<String>,
    /// Access key of the temp URL signature (Swift's S3 layer).
    #[serde(deserialize_with = "lenient::opt_string")]
    pub accesskey: Option<String>,
    /// Use the container's temp URL key rather than the account's.
    #[serde(deserialize_with = "lenient::bool")]
    pub tempurlcontainerkey: bool,
    /// Methods temp URLs are signed for.
    #[serde(deserialize_with = "lenient::string_list")]
    pub tempurlmethods: Vec<String>,
}

/// Smallest Swift segment distribution accepts.
pub(crate) const SWIFT_MIN_CHUNK: u64 = MIB;

impl Default for SwiftConfig {
    fn default() -> Self {
        SwiftConfig {
            authurl: String::new(),
            username: String::new(),
            password: String::new(),
            container: String::new(),
            region: None,
            tenant: None,
            tenantid: None,
            domain: None,
            domainid: None,
            tenantdomain: None,
            tenantdomainid: None,
            trustid: None,
            authversion: 0,
            endpointtype: None,
            insecureskipverify: false,
            chunksize: 20 * MIB,
            prefix: String::new(),
            secretkey: None,
            accesskey: None,
            tempurlcontainerkey: false,
            tempurlmethods: Vec::new(),
        }
    }
}

/// `storage.delete` section.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct DeleteConfig {
    /// Allow DELETE of blobs and manifests.
    #[serde(deserialize_with = "lenient::bool")]
    pub enabled: bool,
}

/// `storage.redirect` section.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct RedirectConfig {
    /// Serve blobs inline instead of redirecting to the driver's URL.
    #[serde(deserialize_with = "lenient::bool")]
    pub disable: bool,
}

/// `storage.cache` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct CacheConfig {
    /// Blob descriptor cache; `None` disables it.
    #[serde(deserialize_with = "blob_descriptor_cache")]
    pub blobdescriptor: Option<BlobDescriptorCache>,
    /// Entries of the in-memory cache (0 means unbounded).
    #[serde(deserialize_with = "lenient::usize")]
    pub blobdescriptorsize: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            blobdescriptor: None,
            blobdescriptorsize: 10_000,
        }
    }
}

/// Where blob descriptors are cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobDescriptorCache {
    /// In process memory.
    Inmemory,
    /// In the `redis` section's server.
    Redis,
}

fn blob_descriptor_cache<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<BlobDescriptorCache>, D::Error> {
    let choices = [
        ("inmemory", BlobDescriptorCache::Inmemory),
        ("redis", BlobDescriptorCache::Redis),
    ];
    keyword(d, "blob descriptor cache", &choices)
}

/// `storage.maintenance` section.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct MaintenanceConfig {
    /// Purging of abandoned uploads.
    #[serde(deserialize_with = "lenient::or_default")]
    pub uploadpurging: UploadPurgingConfig,
    /// Read-only mode.
    #[serde(deserialize_with = "lenient::or_default")]
    pub readonly: ReadOnlyConfig,
}

/// `storage.maintenance.uploadpurging`, read as distribution's `startUploadPurger` reads it:
/// `enabled: false` turns purging off and nothing else is read; otherwise (`enabled` true or
/// absent) `age`, `interval` and `dryrun` are all required.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawUploadPurging")]
pub struct UploadPurgingConfig {
    /// Run the purger.
    #[serde(deserialize_with = "lenient::bool")]
    pub enabled: bool,
    /// Uploads older than this are deleted.
    #[serde(deserialize_with = "lenient::duration")]
    pub age: Duration,
    /// Time between purges.
    #[serde(deserialize_with = "lenient::duration")]
    pub interval: Duration,
    /// Only log what would be deleted.
    #[serde(deserialize_with = "lenient::bool")]
    pub dryrun: bool,
}

impl Default for UploadPurgingConfig {
    fn default() -> Self {
        UploadPurgingConfig {
            enabled: true,
            age: secs(168 * 3600),
            interval: secs(24 * 3600),
            dryrun: false,
        }
    }
}

/// `uploadpurging` as written; the values are only read when purging is on.
#[derive(Deserialize)]
struct RawUploadPurging {
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    enabled: Option<bool>,
    #[serde(default)]
    age: Option<Value>,
    #[serde(default)]
    interval: Option<Value>,
    #[serde(default)]
    dryrun: Option<Value>,
}

impl TryFrom<RawUploadPurging> for UploadPurgingConfig {
    type Error = String;

    fn try_from(raw: RawUploadPurging) -> Result<Self, String> {
        if raw.enabled == Some(false) {
            return Ok(UploadPurgingConfig {
                enabled: false,
                ..UploadPurgingConfig::default()
            });
        }
        // The message forms match serde's, so the loader names the key (see `DecodeFailure`).
        let required = |field: &str, value: Option<Value>| {
            value
                .filter(|v| !v.is_null())
                .ok_or_else(|| format!("missing field `{field}`"))
        };
        let age = required("age", raw.age)?;
        let interval = required("interval", raw.interval)?;
        let dryrun = required("dryrun", raw.dryrun)?;
        let at = |field: &str, e: serde_yaml::Error| format!("invalid field `{field}`: {e}");
        Ok(UploadPurgingConfig {
            enabled: true,
            age: lenient::duration(age).map_err(|e| at("age", e))?,
            interval: lenient::duration(interval).map_err(|e| at("interval", e))?,
            dryrun: lenient::bool(dryrun).map_err(|e| at("dryrun", e))?,
        })
    }
}

/// `storage.maintenance.readonly` section.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct ReadOnlyConfig {
    /// Refuse every write (for garbage collection).
    #[serde(deserialize_with = "lenient::bool")]
    pub enabled: bool,
}

/// `storage.tag` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct TagConfig {
    /// Parallel tag lookups when deleting a manifest.
    #[serde(deserialize_with = "lenient::usize")]
    pub concurrencylimit: usize,
}

impl Default for TagConfig {
    fn default() -> Self {
        TagConfig {
            concurrencylimit: 8,
        }
    }
}

// ---------------------------------------------------------------- auth

/// `auth` section: exactly one scheme.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthConfig {
    /// Any Authorization header passes; for development.
    Silly {
        /// Realm in the challenge.
        realm: String,
        /// Service in the challenge.
        service: String,
    },
    /// HTTP Basic against an htpasswd file (bcrypt).
    Htpasswd {
        /// Realm in the challenge.
        realm: String,
        /// The htpasswd file.
        path: PathBuf,
    },
    /// Bearer tokens from an external token server.
    Token {
        /// Token server URL, sent in the challenge.
        realm: String,
        /// Expected audience.
        service: String,
        /// Expected issuer.
        issuer: String,
        /// PEM bundle of trusted signing certificates.
        rootcertbundle: Option<PathBuf>,
        /// JWKS file of trusted keys (v3).
        jwks: Option<PathBuf>,
        /// Redirect the challenge realm to this registry (v3).
        autoredirect: bool,
        /// Path used with `autoredirect`.
        autoredirectpath: String,
        /// Accepted JWS algorithms; empty means distribution's default set.
        signingalgorithms: Vec<String>,
    },
}

/// `auth.token.signingalgorithms` names distribution accepts that no key here verifies (HS* need
/// a shared secret, ES512 is not implemented): listed, they admit no token, as HS* with a
/// public-key bundle admit none in distribution. Loading warns about them.
pub const UNVERIFIABLE_SIGNING_ALGORITHMS: &[&str] = &["HS256", "HS384", "HS512", "ES512"];

/// The auth scheme keys distribution knows (besides `none`).
pub(crate) const AUTH_SCHEMES: &[&str] = &["silly", "htpasswd", "token"];

impl AuthConfig {
    /// The scheme's key, as written under `auth`.
    pub fn name(&self) -> &'static str {
        match self {
            AuthConfig::Silly { .. } => "silly",
            AuthConfig::Htpasswd { .. } => "htpasswd",
            AuthConfig::Token { .. } => "token",
        }
    }
}

#[derive(Deserialize)]
struct SillyParams {
    #[serde(deserialize_with = "lenient::string")]
    realm: String,
    #[serde(deserialize_with = "lenient::string")]
    service: String,
}

#[derive(Deserialize)]
struct HtpasswdParams {
    #[serde(deserialize_with = "lenient::string")]
    realm: String,
    #[serde(deserialize_with = "lenient::path")]
    path: PathBuf,
}

#[derive(Deserialize)]
struct TokenParams {
    #[serde(deserialize_with = "lenient::string")]
    realm: String,
    #[serde(deserialize_with = "lenient::string")]
    service: String,
    #[serde(deserialize_with = "lenient::string")]
    issuer: String,
    #[serde(default, deserialize_with = "lenient::opt_path")]
    rootcertbundle: Option<PathBuf>,
    #[serde(default, deserialize_with = "lenient::opt_path")]
    jwks: Option<PathBuf>,
    #[serde(default, deserialize_with = "lenient::bool")]
    autoredirect: bool,
    #[serde(default, deserialize_with = "lenient::string")]
    autoredirectpath: String,
    #[serde(default, deserialize_with = "lenient::string_list")]
    signingalgorithms: Vec<String>,
}

impl<'de> Deserialize<'de> for AuthConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(AuthVisitor)
    }
}

struct AuthVisitor;

impl<'de> Visitor<'de> for AuthVisitor {
    type Value = AuthConfig;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an auth section naming one scheme")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AuthConfig, A::Error> {
        let mut schemes = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let scheme = match key.as_str() {
                "silly" => {
                    let p: SillyParams = map.next_value()?;
                    AuthConfig::Silly {
                        realm: p.realm,
                        service: p.service,
                    }
                }
                "htpasswd" => {
                    let p: HtpasswdParams = map.next_value()?;
                    AuthConfig::Htpasswd {
                        realm: p.realm,
                        path: p.path,
                    }
                }
                "token" => {
                    let p: TokenParams = map.next_value()?;
                    AuthConfig::Token {
                        realm: p.realm,
                        service: p.service,
                        issuer: p.issuer,
                        rootcertbundle: p.rootcertbundle,
                        jwks: p.jwks,
                        autoredirect: p.autoredirect,
                        autoredirectpath: p.autoredirectpath,
                        signingalgorithms: p.signingalgorithms,
                    }
                }
                other => {
                    return Err(de::Error::custom(format!(
                        "unknown auth scheme {other:?}: must be one of none, {}",
                        AUTH_SCHEMES.join(", ")
                    )))
                }
            };
            schemes.push(scheme);
        }
        if schemes.len() > 1 {
            let names: Vec<&str> = schemes.iter().map(AuthConfig::name).collect();
            return Err(de::Error::custom(format!(
                "exactly one auth scheme may be configured, found [{}]",
                names.join(" ")
            )));
        }
        schemes
            .pop()
            .ok_or_else(|| de::Error::custom("no auth scheme configured"))
    }
}

// ---------------------------------------------------------------- tokenissuer

/// `tokenissuer` section (Wharf): serve the Docker token protocol on the main port.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct TokenIssuerConfig {
    /// Endpoint path on the main listener.
    #[serde(deserialize_with = "lenient::string")]
    pub path: String,
    /// `iss` of issued tokens.
    #[serde(deserialize_with = "lenient::string")]
    pub issuer: String,
    /// The service (token audience) tokens are issued for.
    #[serde(deserialize_with = "lenient::string")]
    pub service: String,
    /// PEM private key tokens are signed with (RSA, EC P-256/P-384, Ed25519).
    #[serde(deserialize_with = "lenient::opt_path")]
    pub key: Option<PathBuf>,
    /// PEM certificate (chain) of that key, sent as `x5c`.
    #[serde(deserialize_with = "lenient::opt_path")]
    pub certificate: Option<PathBuf>,
    /// Lifetime of access tokens.
    #[serde(deserialize_with = "lenient::duration")]
    pub expiration: Duration,
    /// Lifetime of refresh tokens (`offline_token=true`, `access_type=offline`).
    #[serde(deserialize_with = "lenient::duration")]
    pub refreshexpiration: Duration,
    /// docker_auth's `users`: name to bcrypt hash and labels; `""` admits anonymous requests.
    #[serde(deserialize_with = "lenient::or_default")]
    pub users: BTreeMap<String, Option<IssuerUser>>,
    /// docker_auth's `acl`: ordered rules; the first that matches decides.
    #[serde(deserialize_with = "lenient::or_default")]
    pub acl: Vec<AclRule>,
    /// A docker_auth `auth_config.yml` whose `users` and `acl` are used (and reloaded when the
    /// file changes) instead of inline ones.
    #[serde(deserialize_with = "lenient::opt_path")]
    pub dockerauthconfig: Option<PathBuf>,
    /// Header holding the client address (docker_auth's `server.real_ip_header`) for `ip` rules.
    #[serde(deserialize_with = "lenient::string")]
    pub realipheader: String,
    /// Which address of that header, from the end when negative (`server.real_ip_pos`).
    #[serde(deserialize_with = "lenient::int")]
    pub realippos: i64,
}

impl Default for TokenIssuerConfig {
    fn default() -> Self {
        TokenIssuerConfig {
            path: "/auth/token".into(),
            issuer: String::new(),
            service: String::new(),
            key: None,
            certificate: None,
            // Zero until defaults: a docker_auth file's token.expiration may fill it first.
            expiration: Duration::ZERO,
            refreshexpiration: secs(7 * 24 * 3600),
            users: BTreeMap::new(),
            acl: Vec::new(),
            dockerauthconfig: None,
            realipheader: String::new(),
            realippos: 0,
        }
    }
}

/// A user of the token issuer, as docker_auth's `users` writes it (`{password, labels}`), or a
/// bare bcrypt hash. Without a password any password is accepted, as in docker_auth.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IssuerUser {
    /// bcrypt hash (`$2y$...`).
    pub password: Option<String>,
    /// Labels for `${labels:<name>}` and `labels` matches.
    pub labels: BTreeMap<String, Vec<String>>,
}

impl<'de> Deserialize<'de> for IssuerUser {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Full {
            #[serde(default, deserialize_with = "lenient::opt_string")]
            password: Option<String>,
            #[serde(default, deserialize_with = "label_values")]
            labels: BTreeMap<String, Vec<String>>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Hash(String),
            Full(Full),
        }
        Ok(match Form::deserialize(d)? {
            Form::Hash(password) => IssuerUser {
                password: Some(password),
                labels: BTreeMap::new(),
            },
            Form::Full(f) => IssuerUser {
                password: f.password,
                labels: f.labels,
            },
        })
    }
}

/// Label name to values; one value may be written without the list.
fn label_values<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, Vec<String>>, D::Error> {
    let raw = Option::<BTreeMap<String, Value>>::deserialize(d)?.unwrap_or_default();
    raw.into_iter()
        .map(|(k, v)| {
            let values = match v {
                Value::Null => Vec::new(),
                Value::Sequence(items) => items
                    .into_iter()
                    .map(lenient::string)
                    .collect::<Result<_, _>>()
                    .map_err(de::Error::custom)?,
                other => vec![lenient::string(other).map_err(de::Error::custom)?],
            };
            Ok((k, values))
        })
        .collect()
}

/// One rule of docker_auth's `acl`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct AclRule {
    /// What the rule applies to (`{}` applies to every request); required.
    #[serde(rename = "match")]
    pub matches: Option<AclMatch>,
    /// Actions allowed: `["*"]` is every requested action, `[]` denies; required.
    #[serde(deserialize_with = "opt_string_list")]
    pub actions: Option<Vec<String>>,
    /// Free text.
    #[serde(deserialize_with = "lenient::string")]
    pub comment: String,
}

/// A list that may be absent (null means absent).
fn opt_string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(v) => lenient::string_list(v).map(Some).map_err(de::Error::custom),
    }
}

/// An optional string where `""` is a value (null means absent).
fn present_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(v) => lenient::string(v).map(Some).map_err(de::Error::custom),
    }
}

/// docker_auth's match conditions; an absent field matches anything, `""` only the empty value.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct AclMatch {
    /// Account (user name; `""` is the anonymous user).
    #[serde(deserialize_with = "present_string")]
    pub account: Option<String>,
    /// Resource type (`repository`, `registry`).
    #[serde(rename = "type", deserialize_with = "present_string")]
    pub kind: Option<String>,
    /// Resource name.
    #[serde(deserialize_with = "present_string")]
    pub name: Option<String>,
    /// The service tokens are asked for.
    #[serde(deserialize_with = "present_string")]
    pub service: Option<String>,
    /// Client address or CIDR network.
    #[serde(deserialize_with = "present_string")]
    pub ip: Option<String>,
    /// Label name to a pattern one of the user's values must match.
    #[serde(deserialize_with = "lenient::or_default")]
    pub labels: BTreeMap<String, String>,
}

// ---------------------------------------------------------------- http

/// `http` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct HttpConfig {
    /// Listen address (`host:port`, or a socket path with `net: unix`).
    #[serde(deserialize_with = "lenient::string")]
    pub addr: String,
    /// `tcp` or `unix`.
    #[serde(deserialize_with = "lenient::string")]
    pub net: String,
    /// URL path prefix the registry is served under.
    #[serde(deserialize_with = "lenient::string")]
    pub prefix: String,
    /// Externally reachable base URL, used in Location headers.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub host: Option<String>,
    /// HMAC key of upload state; generated per process when absent.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub secret: Option<String>,
    /// Send relative Location headers.
    #[serde(deserialize_with = "lenient::bool")]
    pub relativeurls: bool,
    /// Time to let connections drain on shutdown.
    #[serde(deserialize_with = "lenient::duration")]
    pub draintimeout: Duration,
    /// Let a second process of the same user bind the same addresses (SO_REUSEPORT), for
    /// upgrades without refused connections (Wharf).
    #[serde(deserialize_with = "lenient::bool")]
    pub reuseport: bool,
    /// TLS on the main listener.
    pub tls: Option<TlsConfig>,
    /// Headers added to every response.
    #[serde(deserialize_with = "lenient::headers")]
    pub headers: Headers,
    /// Debug server.
    #[serde(deserialize_with = "lenient::or_default")]
    pub debug: DebugConfig,
    /// HTTP/2 switch.
    #[serde(deserialize_with = "lenient::or_default")]
    pub http2: Http2Config,
    /// Cleartext HTTP/2 switch.
    #[serde(deserialize_with = "lenient::or_default")]
    pub h2c: H2cConfig,
    /// Limits against abuse (Wharf).
    #[serde(deserialize_with = "lenient::or_default")]
    pub limits: LimitsConfig,
    /// CORS for browser front-ends on other origins (Wharf).
    #[serde(deserialize_with = "lenient::or_default")]
    pub cors: super::CorsConfig,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            addr: ":5000".into(),
            net: "tcp".into(),
            prefix: String::new(),
            host: None,
            secret: None,
            relativeurls: false,
            draintimeout: Duration::ZERO,
            reuseport: false,
            tls: None,
            headers: Headers::new(),
            debug: DebugConfig::default(),
            http2: Http2Config::default(),
            h2c: H2cConfig::default(),
            limits: LimitsConfig::default(),
            cors: super::CorsConfig::default(),
        }
    }
}

/// `http.limits` section (Wharf): bounds on what one client can hold.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct LimitsConfig {
    /// Largest request head (request line plus headers), in bytes.
    #[serde(deserialize_with = "lenient::size")]
    pub maxheaderbytes: u64,
    /// Most request headers.
    #[serde(deserialize_with = "lenient::usize")]
    pub maxheaders: usize,
    /// Time allowed to send the request head (slow-loris guard); also bounds the TLS handshake.
    #[serde(deserialize_with = "lenient::duration")]
    pub headerreadtimeout: Duration,
    /// A request body that sends nothing for this long is aborted.
    #[serde(deserialize_with = "lenient::duration")]
    pub bodyidletimeout: Duration,
    /// Most connections served at once; more wait to be accepted.
    #[serde(deserialize_with = "lenient::usize")]
    pub maxconnections: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            maxheaderbytes: 64 * 1024,
            maxheaders: 100,
            headerreadtimeout: secs(30),
            bodyidletimeout: secs(60),
            maxconnections: 1024,
        }
    }
}

/// `http.tls` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct TlsConfig {
    /// PEM certificate chain.
    #[serde(deserialize_with = "lenient::opt_path")]
    pub certificate: Option<PathBuf>,
    /// PEM private key.
    #[serde(deserialize_with = "lenient::opt_path")]
    pub key: Option<PathBuf>,
    /// CA bundles for client certificates.
    #[serde(deserialize_with = "lenient::path_list")]
    pub clientcas: Vec<PathBuf>,
    /// Client certificate policy.
    #[serde(deserialize_with = "lenient::string")]
    pub clientauth: String,
    /// Lowest TLS version accepted (`tls1.0` … `tls1.3`).
    #[serde(deserialize_with = "lenient::string")]
    pub minimumtls: String,
    /// Allowed cipher suites (Go names).
    #[serde(deserialize_with = "lenient::string_list")]
    pub ciphersuites: Vec<String>,
    /// ACME certificates instead of `certificate`/`key`.
    pub letsencrypt: Option<LetsEncryptConfig>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            certificate: None,
            key: None,
            clientcas: Vec::new(),
            clientauth: "require-and-verify-client-cert".into(),
            minimumtls: "tls1.2".into(),
            ciphersuites: Vec::new(),
            letsencrypt: None,
        }
    }
}

/// `http.tls.letsencrypt` section.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct LetsEncryptConfig {
    /// Where certificates are cached.
    #[serde(deserialize_with = "lenient::opt_path")]
    pub cachefile: Option<PathBuf>,
    /// ACME account e-mail.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub email: Option<String>,
    /// Host names certificates may be obtained for.
    #[serde(deserialize_with = "lenient::string_list")]
    pub hosts: Vec<String>,
    /// ACME directory URL.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub directoryurl: Option<String>,
}

/// `http.debug` section.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct DebugConfig {
    /// Listen address of the debug server; off when absent.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub addr: Option<String>,
    /// Prometheus endpoint on the debug server.
    #[serde(deserialize_with = "lenient::or_default")]
    pub prometheus: PrometheusConfig,
}

/// `http.debug.prometheus` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct PrometheusConfig {
    /// Serve metrics.
    #[serde(deserialize_with = "lenient::bool")]
    pub enabled: bool,
    /// Metrics path.
    #[serde(deserialize_with = "lenient::string")]
    pub path: String,
}

impl Default for PrometheusConfig {
    fn default() -> Self {
        PrometheusConfig {
            enabled: false,
            path: "/metrics".into(),
        }
    }
}

/// `http.http2` section.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct Http2Config {
    /// Serve HTTP/1.1 only.
    #[serde(deserialize_with = "lenient::bool")]
    pub disabled: bool,
}

/// `http.h2c` section.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct H2cConfig {
    /// Accept cleartext HTTP/2.
    #[serde(deserialize_with = "lenient::bool")]
    pub enabled: bool,
}

// ---------------------------------------------------------------- redis

/// `redis` section: the v2.8 keys and the v3 (go-redis `UniversalOptions`) keys side by side.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct RedisConfig {
    /// Single address (v2.8).
    #[serde(deserialize_with = "lenient::opt_string")]
    pub addr: Option<String>,
    /// Addresses (v3): one server, sentinels or cluster seeds.
    #[serde(deserialize_with = "lenient::string_list")]
    pub addrs: Vec<String>,
    /// ACL user name (v3).
    #[serde(deserialize_with = "lenient::opt_string")]
    pub username: Option<String>,
    /// Password.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub password: Option<String>,
    /// Database number.
    #[serde(deserialize_with = "lenient::int")]
    pub db: i64,
    /// CLIENT SETNAME value (v3).
    #[serde(deserialize_with = "lenient::opt_string")]
    pub clientname: Option<String>,
    /// RESP protocol version (v3).
    #[serde(deserialize_with = "lenient::opt_int")]
    pub protocol: Option<i64>,
    /// Connect timeout.
    #[serde(deserialize_with = "lenient::opt_duration")]
    pub dialtimeout: Option<Duration>,
    /// Read timeout.
    #[serde(deserialize_with = "lenient::opt_duration")]
    pub readtimeout: Option<Duration>,
    /// Write timeout.
    #[serde(deserialize_with = "lenient::opt_duration")]
    pub writetimeout: Option<Duration>,
    /// Connection pool (v2.8).
    pub pool: Option<RedisPoolConfig>,
    /// Pool size (v3).
    #[serde(deserialize_with = "lenient::opt_usize")]
    pub poolsize: Option<usize>,
    /// Wait for a pooled connection (v3).
    #[serde(deserialize_with = "lenient::opt_duration")]
    pub pooltimeout: Option<Duration>,
    /// LIFO or FIFO pool (v3).
    #[serde(deserialize_with = "lenient::bool")]
    pub poolfifo: bool,
    /// Minimum idle connections (v3).
    #[serde(deserialize_with = "lenient::opt_usize")]
    pub minidleconns: Option<usize>,
    /// Maximum idle connections (v3).
    #[serde(deserialize_with = "lenient::opt_usize")]
    pub maxidleconns: Option<usize>,
    /// Maximum open connections (v3).
    #[serde(deserialize_with = "lenient::opt_usize")]
    pub maxactiveconns: Option<usize>,
    /// Close connections idle this long (v3).
    #[serde(deserialize_with = "lenient::opt_duration")]
    pub connmaxidletime: Option<Duration>,
    /// Close connections this old (v3).
    #[serde(deserialize_with = "lenient::opt_duration")]
    pub connmaxlifetime: Option<Duration>,
    /// Retries per command (v3; -1 disables).
    #[serde(deserialize_with = "lenient::opt_int")]
    pub maxretries: Option<i64>,
    /// Minimum retry backoff (v3).
    #[serde(deserialize_with = "lenient::opt_duration")]
    pub minretrybackoff: Option<Duration>,
    /// Maximum retry backoff (v3).
    #[serde(deserialize_with = "lenient::opt_duration")]
    pub maxretrybackoff: Option<Duration>,
    /// Apply context deadlines to commands (v3).
    #[serde(deserialize_with = "lenient::bool")]
    pub contexttimeoutenabled: bool,
    /// TLS to the server.
    pub tls: Option<RedisTlsConfig>,
    /// TLS to the server with the system's roots (Harbor's registry key `enableTLS`).
    #[serde(alias = "enableTLS", deserialize_with = "lenient::bool")]
    pub enabletls: bool,
    /// Sentinel master name (v3; Harbor's registry calls it `sentinelMasterSet`, with the
    /// sentinels in `addr` separated by commas); sentinel mode when set.
    #[serde(
        alias = "sentinelMasterSet",
        alias = "sentinelmasterset",
        deserialize_with = "lenient::opt_string"
    )]
    pub mastername: Option<String>,
    /// Sentinel user (v3).
    #[serde(deserialize_with = "lenient::opt_string")]
    pub sentinelusername: Option<String>,
    /// Sentinel password (v3).
    #[serde(deserialize_with = "lenient::opt_string")]
    pub sentinelpassword: Option<String>,
    /// Cluster redirects followed (v3).
    #[serde(deserialize_with = "lenient::opt_int")]
    pub maxredirects: Option<i64>,
    /// Cluster: read from replicas (v3).
    #[serde(deserialize_with = "lenient::bool")]
    pub readonly: bool,
    /// Cluster: route reads by latency (v3).
    #[serde(deserialize_with = "lenient::bool")]
    pub routebylatency: bool,
    /// Cluster: route reads randomly (v3).
    #[serde(deserialize_with = "lenient::bool")]
    pub routerandomly: bool,
    /// Skip CLIENT SETINFO (v3).
    #[serde(deserialize_with = "lenient::bool")]
    pub disableidentity: bool,
    /// Suffix of the client library name (v3).
    #[serde(deserialize_with = "lenient::opt_string")]
    pub identitysuffix: Option<String>,
    /// RESP3 unstable commands (v3).
    #[serde(deserialize_with = "lenient::bool")]
    pub unstableresp3: bool,
}

impl RedisConfig {
    /// The server addresses: v2.8's `addr` (comma-separated when it lists sentinels, as Harbor
    /// writes it) followed by v3's `addrs`, without duplicates.
    pub fn addresses(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let listed = self.addr.iter().flat_map(|a| a.split(',')).map(str::trim);
        for addr in listed.chain(self.addrs.iter().map(String::as_str)) {
            if !addr.is_empty() && !out.iter().any(|a| a == addr) {
                out.push(addr.to_owned());
            }
        }
        out
    }

    /// Whether TLS to Redis is asked for, in any of the forms above.
    pub fn wants_tls(&self) -> bool {
        self.enabletls || self.tls.as_ref().is_some_and(RedisTlsConfig::in_use)
    }
}

/// `redis.pool` section (v2.8).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct RedisPoolConfig {
    /// Maximum idle connections.
    #[serde(deserialize_with = "lenient::opt_usize")]
    pub maxidle: Option<usize>,
    /// Maximum open connections.
    #[serde(deserialize_with = "lenient::opt_usize")]
    pub maxactive: Option<usize>,
    /// Close connections idle this long.
    #[serde(deserialize_with = "lenient::opt_duration")]
    pub idletimeout: Option<Duration>,
}

/// `redis.tls` section.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct RedisTlsConfig {
    /// Use TLS (v2.8 form).
    #[serde(deserialize_with = "lenient::bool")]
    pub enabled: bool,
    /// Client certificate.
    #[serde(deserialize_with = "lenient::opt_path")]
    pub certificate: Option<PathBuf>,
    /// Client key.
    #[serde(deserialize_with = "lenient::opt_path")]
    pub key: Option<PathBuf>,
    /// CA bundles trusted for the server.
    #[serde(deserialize_with = "lenient::path_list")]
    pub rootcas: Vec<PathBuf>,
    /// CA bundles (v3.0.0 name of `rootcas`).
    #[serde(deserialize_with = "lenient::path_list")]
    pub clientcas: Vec<PathBuf>,
}

impl RedisTlsConfig {
    /// Whether TLS is asked for: registry:2 3.x turns it on when any file is named; `enabled`
    /// is the form its documentation shows.
    pub fn in_use(&self) -> bool {
        self.enabled
            || self.certificate.is_some()
            || self.key.is_some()
            || !self.rootcas.is_empty()
            || !self.clientcas.is_empty()
    }
}

// ---------------------------------------------------------------- health

/// `health` section.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct HealthConfig {
    /// Periodic `Stat("/")` of the storage driver.
    #[serde(deserialize_with = "lenient::or_default")]
    pub storagedriver: StorageDriverHealth,
    /// Fail while a file exists.
    #[serde(deserialize_with = "lenient::or_default")]
    pub file: Vec<FileHealthCheck>,
    /// Fail while a URI does not answer the expected status.
    #[serde(deserialize_with = "lenient::or_default")]
    pub http: Vec<HttpHealthCheck>,
    /// Fail while a TCP address refuses connections.
    #[serde(deserialize_with = "lenient::or_default")]
    pub tcp: Vec<TcpHealthCheck>,
}

/// Default interval of every health check.
const CHECK_INTERVAL: Duration = Duration::from_secs(10);
/// Wharf's timeout for HTTP and TCP checks (distribution has none).
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// `health.storagedriver` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct StorageDriverHealth {
    /// Run the check.
    #[serde(deserialize_with = "lenient::bool")]
    pub enabled: bool,
    /// Time between checks.
    #[serde(deserialize_with = "lenient::duration")]
    pub interval: Duration,
    /// Consecutive failures before unhealthy (0: the first).
    #[serde(deserialize_with = "lenient::threshold")]
    pub threshold: u32,
}

impl Default for StorageDriverHealth {
    fn default() -> Self {
        StorageDriverHealth {
            enabled: false,
            interval: CHECK_INTERVAL,
            threshold: 0,
        }
    }
}

/// One `health.file` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct FileHealthCheck {
    /// Unhealthy while this file exists.
    #[serde(deserialize_with = "lenient::path")]
    pub file: PathBuf,
    /// Time between checks.
    #[serde(deserialize_with = "lenient::duration")]
    pub interval: Duration,
    /// Consecutive failures before unhealthy (0: the first).
    #[serde(deserialize_with = "lenient::threshold")]
    pub threshold: u32,
}

impl Default for FileHealthCheck {
    fn default() -> Self {
        FileHealthCheck {
            file: PathBuf::new(),
            interval: CHECK_INTERVAL,
            threshold: 0,
        }
    }
}

/// One `health.http` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct HttpHealthCheck {
    /// URI sent a HEAD request.
    #[serde(deserialize_with = "lenient::string")]
    pub uri: String,
    /// Headers added to the request.
    #[serde(deserialize_with = "lenient::headers")]
    pub headers: Headers,
    /// Expected status.
    #[serde(deserialize_with = "lenient::int")]
    pub statuscode: i64,
    /// Request timeout.
    #[serde(deserialize_with = "lenient::duration")]
    pub timeout: Duration,
    /// Time between checks.
    #[serde(deserialize_with = "lenient::duration")]
    pub interval: Duration,
    /// Consecutive failures before unhealthy (0: the first).
    #[serde(deserialize_with = "lenient::threshold")]
    pub threshold: u32,
}

impl Default for HttpHealthCheck {
    fn default() -> Self {
        HttpHealthCheck {
            uri: String::new(),
            headers: Headers::new(),
            statuscode: 200,
            timeout: CHECK_TIMEOUT,
            interval: CHECK_INTERVAL,
            threshold: 0,
        }
    }
}

/// One `health.tcp` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct TcpHealthCheck {
    /// `host:port` dialled.
    #[serde(deserialize_with = "lenient::string")]
    pub addr: String,
    /// Dial timeout.
    #[serde(deserialize_with = "lenient::duration")]
    pub timeout: Duration,
    /// Time between checks.
    #[serde(deserialize_with = "lenient::duration")]
    pub interval: Duration,
    /// Consecutive failures before unhealthy (0: the first).
    #[serde(deserialize_with = "lenient::threshold")]
    pub threshold: u32,
}

impl Default for TcpHealthCheck {
    fn default() -> Self {
        TcpHealthCheck {
            addr: String::new(),
            timeout: CHECK_TIMEOUT,
            interval: CHECK_INTERVAL,
            threshold: 0,
        }
    }
}

// ---------------------------------------------------------------- notifications

/// `notifications` section.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct NotificationsConfig {
    /// Event format options.
    #[serde(deserialize_with = "lenient::or_default")]
    pub events: EventsConfig,
    /// Webhook endpoints.
    #[serde(deserialize_with = "lenient::or_default")]
    pub endpoints: Vec<EndpointConfig>,
}

/// `notifications.events` section.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct EventsConfig {
    /// Add `target.references` to manifest events.
    #[serde(deserialize_with = "lenient::bool")]
    pub includereferences: bool,
}

/// One `notifications.endpoints` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct EndpointConfig {
    /// Name used in logs and metrics.
    #[serde(deserialize_with = "lenient::string")]
    pub name: String,
    /// URL events are POSTed to.
    #[serde(deserialize_with = "lenient::string")]
    pub url: String,
    /// Skip this endpoint.
    #[serde(deserialize_with = "lenient::bool")]
    pub disabled: bool,
    /// Headers added to each POST.
    #[serde(deserialize_with = "lenient::headers")]
    pub headers: Headers,
    /// POST timeout.
    #[serde(deserialize_with = "lenient::duration")]
    pub timeout: Duration,
    /// Failures before backing off.
    #[serde(deserialize_with = "lenient::usize")]
    pub threshold: usize,
    /// Back-off time.
    #[serde(deserialize_with = "lenient::duration")]
    pub backoff: Duration,
    /// Target media types not sent.
    #[serde(deserialize_with = "lenient::string_list")]
    pub ignoredmediatypes: Vec<String>,
    /// Media types and actions not sent.
    #[serde(deserialize_with = "lenient::or_default")]
    pub ignore: IgnoreConfig,
    /// Wharf's bound on undelivered events (not in registry:2, whose queue is unbounded).
    #[serde(deserialize_with = "lenient::or_default")]
    pub backlog: BacklogConfig,
}

/// `backlog` of a notification endpoint: past either limit the oldest events are dropped.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct BacklogConfig {
    /// Most undelivered events kept.
    #[serde(deserialize_with = "lenient::usize")]
    pub maxevents: usize,
    /// Most bytes of undelivered events kept.
    #[serde(deserialize_with = "lenient::size")]
    pub maxbytes: u64,
}

impl Default for BacklogConfig {
    fn default() -> Self {
        BacklogConfig {
            maxevents: 100_000,
            maxbytes: 256 << 20,
        }
    }
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            name: String::new(),
            url: String::new(),
            disabled: false,
            headers: Headers::new(),
            timeout: secs(1),
            threshold: 10,
            backoff: secs(1),
            ignoredmediatypes: Vec::new(),
            ignore: IgnoreConfig::default(),
            backlog: BacklogConfig::default(),
        }
    }
}

/// `ignore` of a notification endpoint.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct IgnoreConfig {
    /// Target media types not sent.
    #[serde(deserialize_with = "lenient::string_list")]
    pub mediatypes: Vec<String>,
    /// Actions (pull, push, mount, delete) not sent.
    #[serde(deserialize_with = "lenient::string_list")]
    pub actions: Vec<String>,
}

// ---------------------------------------------------------------- proxy, middleware

/// `proxy` section: pull-through cache of one upstream.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct ProxyConfig {
    /// Upstream registry URL; proxy mode is on when set.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub remoteurl: Option<String>,
    /// Upstream user.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub username: Option<String>,
    /// Upstream password.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub password: Option<String>,
    /// Credential helper (v3).
    pub exec: Option<ProxyExecConfig>,
    /// Cache expiry; 0 means never (distribution's default is 168h).
    #[serde(deserialize_with = "lenient::opt_duration")]
    pub ttl: Option<Duration>,
    /// Time allowed to write a fetched object to storage (v3).
    #[serde(deserialize_with = "lenient::opt_duration")]
    pub cachewritetimeout: Option<Duration>,
    /// Wharf: how often a cached tag is checked upstream.
    #[serde(deserialize_with = "lenient::opt_duration")]
    pub tagrecheck: Option<Duration>,
    /// Wharf: token realms on other hosts that may receive the credentials.
    #[serde(deserialize_with = "lenient::string_list")]
    pub tokenrealms: Vec<String>,
    /// Wharf: more upstreams, selected by repository prefix or `?ns=`.
    #[serde(deserialize_with = "lenient::or_default")]
    pub upstreams: Vec<super::mirror::UpstreamConfig>,
}

/// `proxy.exec` section (v3).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct ProxyExecConfig {
    /// Command printing credentials.
    #[serde(deserialize_with = "lenient::string")]
    pub command: String,
    /// How long its output is reused.
    #[serde(deserialize_with = "lenient::opt_duration")]
    pub lifetime: Option<Duration>,
}

/// `middleware` section: chains by injection point.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct MiddlewareConfig {
    /// Registry-level middleware.
    #[serde(deserialize_with = "lenient::or_default")]
    pub registry: Vec<MiddlewareEntry>,
    /// Repository-level middleware.
    #[serde(deserialize_with = "lenient::or_default")]
    pub repository: Vec<MiddlewareEntry>,
    /// Storage middleware (cloudfront, redirect, rewrite).
    #[serde(deserialize_with = "lenient::or_default")]
    pub storage: Vec<MiddlewareEntry>,
}

impl MiddlewareConfig {
    /// The chains by key, for messages.
    pub fn chains(&self) -> [(&'static str, &[MiddlewareEntry]); 3] {
        [
            ("registry", &self.registry),
            ("repository", &self.repository),
            ("storage", &self.storage),
        ]
    }
}

/// One middleware in a chain.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct MiddlewareEntry {
    /// Registered middleware name.
    #[serde(deserialize_with = "lenient::string")]
    pub name: String,
    /// Skip it.
    #[serde(deserialize_with = "lenient::bool")]
    pub disabled: bool,
    /// Its parameters, raw.
    #[serde(deserialize_with = "lenient::or_default")]
    pub options: RawParameters,
}

// ---------------------------------------------------------------- validation, limits, legacy

/// `validation` section.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct ValidationConfig {
    /// Turn the rules below off.
    #[serde(deserialize_with = "lenient::bool")]
    pub disabled: bool,
    /// Manifest rules.
    #[serde(deserialize_with = "lenient::or_default")]
    pub manifests: ManifestValidation,
}

/// `validation.manifests` section.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct ManifestValidation {
    /// Rules for foreign-layer URLs.
    #[serde(deserialize_with = "lenient::or_default")]
    pub urls: UrlValidation,
    /// Rules for index children.
    #[serde(deserialize_with = "lenient::or_default")]
    pub indexes: IndexValidation,
}

/// `validation.manifests.urls` section: Go regular expressions.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct UrlValidation {
    /// A layer URL must match one of these.
    #[serde(deserialize_with = "lenient::string_list")]
    pub allow: Vec<String>,
    /// A layer URL must match none of these.
    #[serde(deserialize_with = "lenient::string_list")]
    pub deny: Vec<String>,
}

/// `validation.manifests.indexes` section.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct IndexValidation {
    /// Which index children must exist.
    pub platforms: IndexPlatforms,
    /// Platforms checked with `platforms: list`.
    #[serde(deserialize_with = "lenient::or_default")]
    pub platformlist: Vec<Platform>,
}

/// Which children of a pushed index must already exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IndexPlatforms {
    /// Every child (the default).
    #[default]
    All,
    /// None.
    None,
    /// Those matching `platformlist`.
    List,
}

impl<'de> Deserialize<'de> for IndexPlatforms {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let choices = [
            ("all", IndexPlatforms::All),
            ("none", IndexPlatforms::None),
            ("list", IndexPlatforms::List),
        ];
        keyword(d, "platforms value", &choices).map(Option::unwrap_or_default)
    }
}

/// One `platformlist` entry.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct Platform {
    /// CPU architecture, e.g. amd64.
    #[serde(deserialize_with = "lenient::string")]
    pub architecture: String,
    /// Operating system, e.g. linux.
    #[serde(deserialize_with = "lenient::string")]
    pub os: String,
}

/// `catalog` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct CatalogConfig {
    /// Most repositories one catalog page may return.
    #[serde(deserialize_with = "lenient::limit")]
    pub maxentries: usize,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        CatalogConfig { maxentries: 1000 }
    }
}

/// `tags` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct TagsConfig {
    /// Most tags one tag-list page may return.
    #[serde(deserialize_with = "lenient::usize")]
    pub maxtags: usize,
}

impl Default for TagsConfig {
    fn default() -> Self {
        TagsConfig { maxtags: 1000 }
    }
}

/// `compatibility` section (v2.8).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct CompatibilityConfig {
    /// Schema 1 manifests.
    #[serde(deserialize_with = "lenient::or_default")]
    pub schema1: Schema1Config,
}

/// `compatibility.schema1` section.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct Schema1Config {
    /// libtrust key used to sign schema 1 manifests.
    #[serde(deserialize_with = "lenient::opt_path")]
    pub signingkeyfile: Option<PathBuf>,
    /// Accept schema 1 manifests.
    #[serde(deserialize_with = "lenient::bool")]
    pub enabled: bool,
}

/// `reporting` section (v2.8): accepted so old files load, but nothing is reported.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct ReportingConfig {
    /// Bugsnag settings, raw.
    #[serde(deserialize_with = "lenient::or_default")]
    pub bugsnag: RawParameters,
    /// New Relic settings, raw.
    #[serde(deserialize_with = "lenient::or_default")]
    pub newrelic: RawParameters,
}

/// `policy` section.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct PolicyConfig {
    /// Repository policy.
    #[serde(deserialize_with = "lenient::or_default")]
    pub repository: RepositoryPolicy,
}

/// `policy.repository` section.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct RepositoryPolicy {
    /// Allowed repository classes (config media types); empty allows all.
    #[serde(deserialize_with = "lenient::string_list")]
    pub classes: Vec<String>,
}

// ---------------------------------------------------------------- gc

/// `gc` section (Wharf): online garbage collection, one node of the cluster at a time.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct GcConfig {
    /// Run passes in the background of `serve`.
    #[serde(deserialize_with = "lenient::bool")]
    pub enabled: bool,
    /// Time between the starts of two passes (cluster-wide, not per node).
    #[serde(deserialize_with = "lenient::duration")]
    pub interval: Duration,
    /// Nothing written more recently than this is deleted.
    #[serde(deserialize_with = "lenient::duration")]
    pub graceperiod: Duration,
    /// Also delete manifests that no tag reaches.
    #[serde(deserialize_with = "lenient::bool")]
    pub deleteuntagged: bool,
    /// Only log what would be deleted.
    #[serde(deserialize_with = "lenient::bool")]
    pub dryrun: bool,
    /// Time to live of the collector's lease: how long a crashed collector blocks others.
    #[serde(deserialize_with = "lenient::duration")]
    pub leasettl: Duration,
}

impl Default for GcConfig {
    fn default() -> Self {
        GcConfig {
            enabled: false,
            interval: secs(3600),
            graceperiod: secs(3600),
            deleteuntagged: false,
            dryrun: false,
            leasettl: secs(60),
        }
    }
}
