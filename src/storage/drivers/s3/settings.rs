//! From `storage.s3` / `storage.oss` to a ready S3 client: the settings translation (with
//! distribution's defaults and quirks), credentials, timeouts, retries, the presigner and the
//! attributes every written object gets. The only S3 file that reads the configuration.

use std::time::Duration;

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    AppName, BehaviorVersion, Credentials, Region, RequestChecksumCalculation,
    ResponseChecksumValidation, SharedCredentialsProvider,
};
use aws_sdk_s3::types::{ObjectCannedAcl, ServerSideEncryption, StorageClass};
use aws_sdk_s3::Client;

use super::client::{Inner, WriteOptions, MIN_PART};
use super::http;
use crate::config::{OssConfig, S3Config};

/// Attempts per call, the first included (standard retry mode: throttling, 5xx, I/O errors).
const MAX_ATTEMPTS: u32 = 4;
/// First retry delay; doubles with jitter up to [`MAX_BACKOFF`].
const INITIAL_BACKOFF: Duration = Duration::from_millis(200);
/// Longest delay between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// TCP and TLS connection set-up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// From sending a request to the response head (covers uploading one part).
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(120);
/// One attempt, response head included.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(180);
/// A whole call, retries and backoff included.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, Clone)]
pub struct S3Settings {
    /// `s3` or `oss`, for logs and errors.
    pub driver_name: &'static str,
    /// Bucket name.
    pub bucket: String,
    /// Signing region.
    pub region: String,
    /// Endpoint URL (with scheme) of a non-AWS service.
    pub endpoint: Option<String>,
    /// Endpoint URL used in presigned redirect URLs instead of `endpoint`.
    pub redirect_endpoint: Option<String>,
    /// Bucket in the path instead of the host name.
    pub force_path_style: bool,
    /// Static credentials (access key, secret key, session token); the AWS chain when absent.
    pub credentials: Option<(String, String, Option<String>)>,
    /// Key prefix: `rootdirectory` without leading and trailing `/`.
    pub root: String,
    /// Multipart part size.
    pub chunk_size: u64,
    /// Part size of multipart copies.
    pub copy_chunk_size: u64,
    /// Parts copied at once in a multipart copy.
    pub copy_max_concurrency: usize,
    /// Objects larger than this are copied in parts.
    pub copy_threshold: u64,
    /// Server-side encryption.
    pub encrypt: bool,
    /// KMS key for server-side encryption.
    pub key_id: Option<String>,
    /// Storage class of written objects (`NONE`: the bucket's default).
    pub storage_class: String,
    /// Canned ACL of written objects.
    pub object_acl: Option<String>,
    /// Accept any TLS certificate.
    pub skip_verify: bool,
    /// Text added to the User-Agent.
    pub user_agent: Option<String>,
    /// Dual-stack endpoints.
    pub dual_stack: bool,
    /// Transfer acceleration endpoints.
    pub accelerate: bool,
    /// FIPS endpoints.
    pub fips: bool,
    /// Log every call at info level (`loglevel` other than `off`).
    pub log_calls: bool,
}

/// `endpoint` with `http://` or `https://` in front, unless it names a scheme.
fn with_scheme(endpoint: &str, secure: bool) -> String {
    if endpoint.contains("://") {
        endpoint.to_string()
    } else if secure {
        format!("https://{endpoint}")
    } else {
        format!("http://{endpoint}")
    }
}

impl S3Settings {
    /// Settings for `storage.s3`. As distribution 2.8, a `regionendpoint` implies path-style
    /// addressing; `secure: false` means plain HTTP; `v4auth: false` is ignored (SigV4 only).
    pub fn from_s3(c: &S3Config) -> Self {
        let endpoint = match &c.regionendpoint {
            Some(e) if !e.is_empty() => Some(with_scheme(e, c.secure)),
            _ if !c.secure => Some(format!("http://s3.{}.amazonaws.com", c.region)),
            _ => None,
        };
        let credentials = match (&c.accesskey, &c.secretkey) {
            (Some(a), Some(s)) if !a.is_empty() => {
                Some((a.clone(), s.clone(), c.sessiontoken.clone()))
            }
            _ => None,
        };
        S3Settings {
            driver_name: "s3",
            bucket: c.bucket.clone(),
            region: c.region.clone(),
            force_path_style: c.forcepathstyle || c.regionendpoint.is_some(),
            endpoint,
            redirect_endpoint: c
                .redirectendpoint
                .as_deref()
                .filter(|e| !e.is_empty())
                .map(|e| with_scheme(e, c.secure)),
            credentials,
            root: c.rootdirectory.trim_matches('/').to_string(),
            chunk_size: c.chunksize,
            copy_chunk_size: c.multipartcopychunksize,
            copy_max_concurrency: c.multipartcopymaxconcurrency.max(1) as usize,
            copy_threshold: c.multipartcopythresholdsize,
            encrypt: c.encrypt,
            key_id: c.keyid.clone().filter(|k| !k.is_empty()),
            storage_class: c.storageclass.clone(),
            object_acl: Some(c.objectacl.clone()),
            skip_verify: c.skipverify,
            user_agent: c.useragent.clone().filter(|u| !u.is_empty()),
            dual_stack: c.usedualstack,
            accelerate: c.accelerate,
            fips: c.usefipsendpoint,
            log_calls: c
                .loglevel
                .as_deref()
                .is_some_and(|l| !l.is_empty() && !l.eq_ignore_ascii_case("off")),
        }
    }

    /// Settings for `storage.oss` (distribution 2.8's keys) on OSS's S3-compatible API:
    /// `region: oss-cn-beijing` signs as `cn-beijing` against `oss-cn-beijing.aliyuncs.com`
    /// (`oss-cn-beijing-internal.aliyuncs.com` with `internal`), or `endpoint` when given;
    /// virtual-hosted addressing.
    pub fn from_oss(c: &OssConfig) -> Self {
        let region = c
            .region
            .strip_prefix("oss-")
            .unwrap_or(&c.region)
            .to_string();
        let host = match &c.endpoint {
            Some(e) if !e.is_empty() => e.clone(),
            _ if c.internal => format!("oss-{region}-internal.aliyuncs.com"),
            _ => format!("oss-{region}.aliyuncs.com"),
        };
        S3Settings {
            driver_name: "oss",
            bucket: c.bucket.clone(),
            endpoint: Some(with_scheme(&host, c.secure)),
            region,
            redirect_endpoint: None,
            force_path_style: false,
            credentials: Some((c.accesskeyid.clone(), c.accesskeysecret.clone(), None)),
            root: c.rootdirectory.trim_matches('/').to_string(),
            chunk_size: c.chunksize,
            copy_chunk_size: 32 << 20,
            copy_max_concurrency: 100,
            copy_threshold: 32 << 20,
            encrypt: c.encrypt,
            key_id: c.encryptionkeyid.clone().filter(|k| !k.is_empty()),
            storage_class: "NONE".into(),
            object_acl: None,
            skip_verify: false,
            user_agent: None,
            dual_stack: false,
            accelerate: false,
            fips: false,
            log_calls: false,
        }
    }
}

/// Why the driver could not be built.
#[derive(Debug, thiserror::Error)]
#[error("storage.{driver}: {reason}")]
pub struct S3SetupError {
    driver: &'static str,
    reason: String,
}

/// The standard AWS credential chain (environment, profile, web identity, ECS, IMDS), built on
/// first use so that the driver can be constructed outside an async context.
#[derive(Debug)]
struct DefaultChain {
    chain:
        tokio::sync::OnceCell<aws_config::default_provider::credentials::DefaultCredentialsChain>,
    region: Region,
    http: aws_sdk_s3::config::SharedHttpClient,
}

impl aws_sdk_s3::config::ProvideCredentials for DefaultChain {
    fn provide_credentials<'a>(
        &'a self,
    ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        aws_credential_types::provider::future::ProvideCredentials::new(async move {
            let chain = self
                .chain
                .get_or_init(|| async {
                    let conf = aws_config::provider_config::ProviderConfig::without_region()
                        .with_region(Some(self.region.clone()))
                        .with_http_client(self.http.clone());
                    aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
                        .configure(conf)
                        .region(self.region.clone())
                        .build()
                        .await
                })
                .await;
            chain.provide_credentials().await
        })
    }
}

/// Builds the client for `settings`; nothing is sent until the first call.
pub(super) fn build(settings: &S3Settings) -> Result<Inner, S3SetupError> {
    let fail = |reason: String| S3SetupError {
        driver: settings.driver_name,
        reason,
    };
    let http = http::client(CONNECT_TIMEOUT, settings.skip_verify)
        .map_err(|e| fail(format!("TLS set-up: {e}")))?;
    let region = Region::new(settings.region.clone());
    let credentials = match &settings.credentials {
        Some((access, secret, token)) => SharedCredentialsProvider::new(Credentials::new(
            access,
            secret,
            token.clone(),
            None,
            "wharf-config",
        )),
        None => SharedCredentialsProvider::new(DefaultChain {
            chain: tokio::sync::OnceCell::new(),
            region: region.clone(),
            http: http.clone(),
        }),
    };
    let mut builder = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(region)
        .credentials_provider(credentials)
        .http_client(http)
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(MAX_ATTEMPTS)
                .with_initial_backoff(INITIAL_BACKOFF)
                .with_max_backoff(MAX_BACKOFF),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .read_timeout(FIRST_BYTE_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .operation_timeout(OPERATION_TIMEOUT)
                .build(),
        )
        .force_path_style(settings.force_path_style)
        .use_dual_stack(settings.dual_stack)
        .accelerate(settings.accelerate)
        .use_fips(settings.fips)
        // Plain Content-Length bodies: many S3-compatible stores refuse aws-chunked uploads.
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    if let Some(endpoint) = &settings.endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    if let Some(agent) = &settings.user_agent {
        // The SDK only allows token characters in its app name.
        let token: String = agent
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c) {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let name = AppName::new(token).map_err(|e| fail(format!("useragent: {e}")))?;
        builder = builder.app_name(name);
    }
    let config = builder.build();
    let client = Client::from_conf(config.clone());
    let presigner = match &settings.redirect_endpoint {
        Some(e) => Client::from_conf(config.to_builder().endpoint_url(e).build()),
        None => client.clone(),
    };
    let sse = settings.encrypt.then(|| {
        if settings.key_id.is_some() {
            ServerSideEncryption::AwsKms
        } else {
            ServerSideEncryption::Aes256
        }
    });
    let storage_class = (!settings.storage_class.is_empty()
        && !settings.storage_class.eq_ignore_ascii_case("NONE"))
    .then(|| StorageClass::from(settings.storage_class.as_str()));
    Ok(Inner {
        client,
        presigner,
        // Distribution registers its S3 driver as `s3aws`: metric labels and logs match.
        name: match settings.driver_name {
            "s3" => "s3aws",
            other => other,
        },
        bucket: settings.bucket.clone(),
        root: if settings.root.is_empty() {
            String::new()
        } else {
            format!("{}/", settings.root)
        },
        part_size: settings.chunk_size.max(MIN_PART),
        copy_chunk: settings.copy_chunk_size.max(MIN_PART),
        copy_concurrency: settings.copy_max_concurrency.max(1),
        copy_threshold: settings.copy_threshold,
        write: WriteOptions {
            acl: settings.object_acl.as_deref().map(ObjectCannedAcl::from),
            storage_class,
            sse,
            kms_key: settings.key_id.clone().filter(|_| settings.encrypt),
        },
        log_calls: settings.log_calls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_follow_distribution() {
        let s3 = S3Config {
            region: "us-east-1".into(),
            bucket: "b".into(),
            regionendpoint: Some("127.0.0.1:9000".into()),
            secure: false,
            rootdirectory: "/registry/".into(),
            ..S3Config::default()
        };
        let s = S3Settings::from_s3(&s3);
        assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(s.force_path_style);
        assert_eq!(s.root, "registry");
        assert!(s.credentials.is_none());
        let oss = OssConfig {
            accesskeyid: "a".into(),
            accesskeysecret: "s".into(),
            region: "oss-cn-beijing".into(),
            bucket: "b".into(),
            internal: true,
            ..OssConfig::default()
        };
        let o = S3Settings::from_oss(&oss);
        assert_eq!(o.region, "cn-beijing");
        assert_eq!(
            o.endpoint.as_deref(),
            Some("https://oss-cn-beijing-internal.aliyuncs.com")
        );
        assert!(!o.force_path_style);
    }
}
