//! Rules on the typed configuration: zero-means-default, value checks, and what this release
//! cannot do yet.

use std::time::Duration;

use super::error::ConfigError;
use super::model::{
    AuthConfig, BlobDescriptorCache, CacheConfig, Config, IndexPlatforms, StorageDriverConfig,
    GCS_CHUNK_UNIT, SWIFT_MIN_CHUNK, UNVERIFIABLE_SIGNING_ALGORITHMS,
};

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;
/// Smallest multipart part S3 and OSS accept.
const MIN_CHUNK: u64 = 5 * MIB;
/// Largest part of an S3 multipart copy.
const MAX_COPY_CHUNK: u64 = 5 * GIB;
/// Distribution's floor for `storage.filesystem.maxthreads`.
const MIN_FILESYSTEM_THREADS: usize = 25;
/// Distribution's floor for `storage.gcs.maxconcurrency`.
const MIN_GCS_CONCURRENCY: usize = 25;
const AZURE_CREDENTIALS: &[&str] = &["shared_key", "client_secret", "default_credentials"];
/// Keystone catalog interfaces `storage.swift.endpointtype` may name.
const SWIFT_ENDPOINT_TYPES: &[&str] = &["public", "internal", "admin"];

const S3_OBJECT_ACLS: &[&str] = &[
    "private",
    "public-read",
    "public-read-write",
    "authenticated-read",
    "aws-exec-read",
    "bucket-owner-read",
    "bucket-owner-full-control",
    "log-delivery-write",
];
const TLS_VERSIONS: &[&str] = &["tls1.0", "tls1.1", "tls1.2", "tls1.3"];
const TLS_CLIENT_AUTH: &[&str] = &[
    "request-client-cert",
    "require-any-client-cert",
    "verify-client-cert-if-given",
    "require-and-verify-client-cert",
];

fn set_if_zero<T: PartialEq + Default>(value: &mut T, default: T) {
    if *value == T::default() {
        *value = default;
    }
}

impl Config {
    /// Replaces the zeros and empty strings that distribution reads as "use the default".
    pub(crate) fn apply_defaults(&mut self) {
        let interval = Duration::from_secs(10);
        set_if_zero(&mut self.http.addr, ":5000".into());
        set_if_zero(&mut self.http.net, "tcp".into());
        self.ui.apply_defaults();
        set_if_zero(&mut self.http.debug.prometheus.path, "/metrics".into());
        if let Some(tls) = &mut self.http.tls {
            set_if_zero(&mut tls.clientauth, "require-and-verify-client-cert".into());
            set_if_zero(&mut tls.minimumtls, "tls1.2".into());
        }
        if let StorageDriverConfig::Filesystem { maxthreads, .. } = &mut self.storage.driver {
            *maxthreads = (*maxthreads).max(MIN_FILESYSTEM_THREADS);
        }
        match &mut self.storage.driver {
            StorageDriverConfig::S3(s3) => {
                set_if_zero(&mut s3.storageclass, "STANDARD".into());
                set_if_zero(&mut s3.objectacl, "private".into());
            }
            StorageDriverConfig::Azure(azure) => {
                set_if_zero(&mut azure.realm, "core.windows.net".into());
                set_if_zero(&mut azure.max_retries, 5);
                set_if_zero(&mut azure.retry_delay, Duration::from_millis(100));
            }
            StorageDriverConfig::Gcs(gcs) => {
                set_if_zero(&mut gcs.chunksize, 16 * MIB);
                gcs.maxconcurrency = gcs.maxconcurrency.max(MIN_GCS_CONCURRENCY);
            }
            StorageDriverConfig::Swift(swift) => set_if_zero(&mut swift.chunksize, 20 * MIB),
            _ => {}
        }
        if let Some(AuthConfig::Token {
            autoredirectpath, ..
        }) = &mut self.auth
        {
            set_if_zero(autoredirectpath, "/auth/token".into());
        }
        if let Some(t) = &mut self.tokenissuer {
            set_if_zero(&mut t.path, "/auth/token".into());
            set_if_zero(&mut t.expiration, Duration::from_secs(300));
            set_if_zero(&mut t.refreshexpiration, Duration::from_secs(7 * 24 * 3600));
            if let Some(AuthConfig::Token {
                service, issuer, ..
            }) = &self.auth
            {
                set_if_zero(&mut t.service, service.clone());
                set_if_zero(&mut t.issuer, issuer.clone());
            }
        }
        let limits = &mut self.http.limits;
        set_if_zero(&mut limits.maxheaderbytes, 64 * 1024);
        set_if_zero(&mut limits.maxheaders, 100);
        set_if_zero(&mut limits.headerreadtimeout, Duration::from_secs(30));
        set_if_zero(&mut limits.bodyidletimeout, Duration::from_secs(60));
        set_if_zero(&mut limits.maxconnections, 1024);
        set_if_zero(&mut self.storage.tag.concurrencylimit, 8);
        set_if_zero(&mut self.catalog.maxentries, 1000);
        set_if_zero(&mut self.tags.maxtags, 1000);
        set_if_zero(&mut self.health.storagedriver.interval, interval);
        for check in &mut self.health.file {
            set_if_zero(&mut check.interval, interval);
        }
        for check in &mut self.health.http {
            set_if_zero(&mut check.interval, interval);
            set_if_zero(&mut check.statuscode, 200);
        }
        for check in &mut self.health.tcp {
            set_if_zero(&mut check.interval, interval);
        }
        for endpoint in &mut self.notifications.endpoints {
            set_if_zero(&mut endpoint.timeout, Duration::from_secs(1));
            set_if_zero(&mut endpoint.threshold, 10);
            set_if_zero(&mut endpoint.backoff, Duration::from_secs(1));
            let default = super::model::BacklogConfig::default();
            set_if_zero(&mut endpoint.backlog.maxevents, default.maxevents);
            set_if_zero(&mut endpoint.backlog.maxbytes, default.maxbytes);
        }
    }

    /// Checks values serde cannot: required strings, ranges, keywords, cross-section needs.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let require = |key: &str, value: &str| {
            if value.is_empty() {
                Err(ConfigError::invalid(key, "required, but empty"))
            } else {
                Ok(())
            }
        };
        let one_of = |key: &str, value: &str, choices: &[&str]| {
            if choices.contains(&value) {
                Ok(())
            } else {
                Err(ConfigError::invalid(
                    key,
                    format!(
                        "invalid value {value:?}: must be one of {}",
                        choices.join(", ")
                    ),
                ))
            }
        };
        let at_least = |key: &str, value: u64, min: u64| {
            if value < min {
                Err(ConfigError::invalid(
                    key,
                    format!("{value} is too small: must be at least {min}"),
                ))
            } else {
                Ok(())
            }
        };

        one_of("http.net", &self.http.net, &["tcp", "unix"])?;
        self.http.cors.validate()?;
        self.ui.validate()?;
        if let Some(tls) = &self.http.tls {
            one_of("http.tls.minimumtls", &tls.minimumtls, TLS_VERSIONS)?;
            one_of("http.tls.clientauth", &tls.clientauth, TLS_CLIENT_AUTH)?;
            if tls.certificate.is_some() && tls.letsencrypt.is_some() {
                return Err(ConfigError::invalid(
                    "http.tls.letsencrypt",
                    "cannot specify both http.tls.certificate and Let's Encrypt (registry:2 refuses this too)",
                ));
            }
        }

        match &self.storage.driver {
            StorageDriverConfig::S3(s3) => {
                require("storage.s3.region", &s3.region)?;
                require("storage.s3.bucket", &s3.bucket)?;
                at_least("storage.s3.chunksize", s3.chunksize, MIN_CHUNK)?;
                at_least(
                    "storage.s3.multipartcopychunksize",
                    s3.multipartcopychunksize,
                    MIN_CHUNK,
                )?;
                at_least(
                    "storage.s3.multipartcopythresholdsize",
                    s3.multipartcopythresholdsize,
                    MIN_CHUNK,
                )?;
                at_least(
                    "storage.s3.multipartcopymaxconcurrency",
                    s3.multipartcopymaxconcurrency,
                    1,
                )?;
                for (key, value) in [
                    (
                        "storage.s3.multipartcopychunksize",
                        s3.multipartcopychunksize,
                    ),
                    (
                        "storage.s3.multipartcopythresholdsize",
                        s3.multipartcopythresholdsize,
                    ),
                ] {
                    if value > MAX_COPY_CHUNK {
                        return Err(ConfigError::invalid(
                            key,
                            format!("{value} is too large: must be at most {MAX_COPY_CHUNK}"),
                        ));
                    }
                }
                one_of("storage.s3.objectacl", &s3.objectacl, S3_OBJECT_ACLS)?;
            }
            StorageDriverConfig::Oss(oss) => {
                require("storage.oss.accesskeyid", &oss.accesskeyid)?;
                require("storage.oss.accesskeysecret", &oss.accesskeysecret)?;
                require("storage.oss.region", &oss.region)?;
                require("storage.oss.bucket", &oss.bucket)?;
                at_least("storage.oss.chunksize", oss.chunksize, MIN_CHUNK)?;
            }
            StorageDriverConfig::Filesystem { rootdirectory, .. } => {
                require(
                    "storage.filesystem.rootdirectory",
                    &rootdirectory.to_string_lossy(),
                )?;
            }
            StorageDriverConfig::Azure(azure) => {
                require("storage.azure.accountname", &azure.accountname)?;
                require("storage.azure.container", &azure.container)?;
                if matches!(azure.credentials.kind.as_str(), "" | "shared_key") {
                    require(
                        "storage.azure.accountkey",
                        azure.accountkey.as_deref().unwrap_or(""),
                    )?;
                }
                if !azure.credentials.kind.is_empty() {
                    one_of(
                        "storage.azure.credentials.type",
                        &azure.credentials.kind,
                        AZURE_CREDENTIALS,
                    )?;
                }
                if azure.credentials.kind == "client_secret" {
                    let c = &azure.credentials;
                    for (key, value) in [
                        ("storage.azure.credentials.tenantid", &c.tenantid),
                        ("storage.azure.credentials.clientid", &c.clientid),
                        ("storage.azure.credentials.secret", &c.secret),
                    ] {
                        require(key, value.as_deref().unwrap_or(""))?;
                    }
                }
            }
            StorageDriverConfig::Gcs(gcs) => {
                require("storage.gcs.bucket", &gcs.bucket)?;
                at_least("storage.gcs.chunksize", gcs.chunksize, GCS_CHUNK_UNIT)?;
                if gcs.chunksize % GCS_CHUNK_UNIT != 0 {
                    return Err(ConfigError::invalid(
                        "storage.gcs.chunksize",
                        format!("{} is not a multiple of {GCS_CHUNK_UNIT}", gcs.chunksize),
                    ));
                }
            }
            StorageDriverConfig::Swift(swift) => {
                require("storage.swift.authurl", &swift.authurl)?;
                require("storage.swift.username", &swift.username)?;
                require("storage.swift.password", &swift.password)?;
                require("storage.swift.container", &swift.container)?;
                at_least("storage.swift.chunksize", swift.chunksize, SWIFT_MIN_CHUNK)?;
                let version = crate::storage::drivers::swift::SwiftSettings::auth_version(swift);
                if !(1..=3).contains(&version) {
                    return Err(ConfigError::invalid(
                        "storage.swift.authversion",
                        format!("{version} is not an auth version: must be 1, 2 or 3"),
                    ));
                }
                // Keystone picks the catalog endpoint by interface; tempauth ignores the key.
                match swift.endpointtype.as_deref() {
                    Some(t) if version > 1 && !t.is_empty() => {
                        one_of("storage.swift.endpointtype", t, SWIFT_ENDPOINT_TYPES)?
                    }
                    _ => {}
                }
            }
            StorageDriverConfig::Inmemory => {}
        }

        if self.storage.cache.blobdescriptor == Some(BlobDescriptorCache::Redis)
            && self.redis.as_ref().is_none_or(|r| r.addresses().is_empty())
        {
            return Err(ConfigError::invalid(
                "storage.cache.blobdescriptor",
                "redis needs a redis section with redis.addr or redis.addrs",
            ));
        }

        match &self.auth {
            Some(AuthConfig::Silly { realm, service }) => {
                require("auth.silly.realm", realm)?;
                require("auth.silly.service", service)?;
            }
            Some(AuthConfig::Htpasswd { realm, path }) => {
                require("auth.htpasswd.realm", realm)?;
                require("auth.htpasswd.path", &path.to_string_lossy())?;
            }
            Some(AuthConfig::Token {
                realm,
                service,
                issuer,
                rootcertbundle,
                jwks,
                ..
            }) => {
                require("auth.token.realm", realm)?;
                require("auth.token.service", service)?;
                require("auth.token.issuer", issuer)?;
                if rootcertbundle.is_none() && jwks.is_none() && self.tokenissuer.is_none() {
                    return Err(ConfigError::invalid(
                        "auth.token.rootcertbundle",
                        "required unless auth.token.jwks or tokenissuer is set",
                    ));
                }
            }
            None => {}
        }

        if let Some(t) = &self.tokenissuer {
            require("tokenissuer.issuer", &t.issuer)?;
            require("tokenissuer.service", &t.service)?;
            if t.key.is_none() {
                return Err(ConfigError::invalid(
                    "tokenissuer.key",
                    "required, but empty",
                ));
            }
            if t.certificate.is_none() {
                return Err(ConfigError::invalid(
                    "tokenissuer.certificate",
                    "required, but empty",
                ));
            }
            if !t.path.starts_with('/') {
                return Err(ConfigError::invalid(
                    "tokenissuer.path",
                    format!("{:?} must start with /", t.path),
                ));
            }
            if !t.realipheader.is_empty() && http::HeaderName::try_from(&t.realipheader).is_err() {
                return Err(ConfigError::invalid(
                    "tokenissuer.realipheader",
                    format!("{:?} is not a header name", t.realipheader),
                ));
            }
        }
        let limits = &self.http.limits;
        at_least("http.limits.maxheaderbytes", limits.maxheaderbytes, 1024)?;
        at_least("http.limits.maxheaders", limits.maxheaders as u64, 8)?;
        at_least(
            "http.limits.maxconnections",
            limits.maxconnections as u64,
            1,
        )?;

        let indexes = &self.validation.manifests.indexes;
        if indexes.platforms == IndexPlatforms::List && indexes.platformlist.is_empty() {
            return Err(ConfigError::invalid(
                "validation.manifests.indexes.platformlist",
                "required when platforms is \"list\"",
            ));
        }
        for (i, p) in indexes.platformlist.iter().enumerate() {
            let key = format!("validation.manifests.indexes.platformlist.{i}");
            require(&format!("{key}.architecture"), &p.architecture)?;
            require(&format!("{key}.os"), &p.os)?;
        }

        for (i, check) in self.health.file.iter().enumerate() {
            require(
                &format!("health.file.{i}.file"),
                &check.file.to_string_lossy(),
            )?;
        }
        for (i, check) in self.health.http.iter().enumerate() {
            require(&format!("health.http.{i}.uri"), &check.uri)?;
        }
        for (i, check) in self.health.tcp.iter().enumerate() {
            require(&format!("health.tcp.{i}.addr"), &check.addr)?;
        }
        for (i, endpoint) in self.notifications.endpoints.iter().enumerate() {
            if !endpoint.disabled {
                require(&format!("notifications.endpoints.{i}.url"), &endpoint.url)?;
            }
        }
        if let Some(exec) = self.proxy.as_ref().and_then(|p| p.exec.as_ref()) {
            require("proxy.exec.command", &exec.command)?;
        }
        if let Some(proxy) = &self.proxy {
            super::mirror::validate(proxy)?;
        }
        Ok(())
    }

    /// Warnings about sections that load but have no effect.
    pub(crate) fn notices(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.reporting.bugsnag.is_empty() || !self.reporting.newrelic.is_empty() {
            out.push("reporting is ignored: Wharf sends no reports to bugsnag or newrelic".into());
        }
        if self.log.reportcaller {
            out.push("log.reportcaller is ignored: log lines carry no caller".into());
        }
        if self.log.hooks.iter().any(|h| !h.disabled) {
            out.push("log.hooks is ignored: Wharf sends no log mail".into());
        }
        let cache = &self.storage.cache;
        if cache.blobdescriptor == Some(BlobDescriptorCache::Redis)
            && cache.blobdescriptorsize != CacheConfig::default().blobdescriptorsize
        {
            out.push(
                "storage.cache.blobdescriptorsize is ignored with the redis cache, as in registry:2"
                    .into(),
            );
        }
        if let Some(AuthConfig::Token {
            signingalgorithms, ..
        }) = &self.auth
        {
            let ignored: Vec<&str> = signingalgorithms
                .iter()
                .map(String::as_str)
                .filter(|name| UNVERIFIABLE_SIGNING_ALGORITHMS.contains(name))
                .collect();
            if !ignored.is_empty() {
                out.push(format!(
                    "auth.token.signingalgorithms: {} admit no token: tokens are verified with public keys of the other listed algorithms",
                    ignored.join(", ")
                ));
            }
        }
        if self.compatibility.schema1.enabled {
            out.push(
                "compatibility.schema1.enabled is ignored: schema 1 manifests are refused".into(),
            );
        }
        out
    }

    /// One message per configured feature this release cannot provide yet, naming its key.
    pub fn unsupported(&self) -> Vec<String> {
        let mut out = Vec::new();
        match &self.storage.driver {
            StorageDriverConfig::Filesystem { .. }
            | StorageDriverConfig::Inmemory
            | StorageDriverConfig::S3(_)
            | StorageDriverConfig::Oss(_)
            | StorageDriverConfig::Azure(_)
            | StorageDriverConfig::Gcs(_)
            | StorageDriverConfig::Swift(_) => {}
        }
        if self
            .proxy
            .as_ref()
            .is_some_and(|p| p.exec.is_some() && p.remoteurl.is_some())
        {
            out.push("proxy.exec: credential helpers are not supported yet; give proxy.username and proxy.password".into());
        }
        for (chain, entries) in self.middleware.chains() {
            let names: Vec<&str> = entries
                .iter()
                .filter(|m| !m.disabled)
                .map(|m| m.name.as_str())
                .collect();
            if !names.is_empty() {
                out.push(format!(
                    "middleware.{chain}: middleware is not supported yet ({})",
                    names.join(", ")
                ));
            }
        }
        if self
            .http
            .tls
            .as_ref()
            .is_some_and(|t| t.certificate.is_none() && t.letsencrypt.is_some())
        {
            out.push(
                "http.tls.letsencrypt: ACME certificates are not supported yet; give http.tls.certificate and http.tls.key"
                    .into(),
            );
        }
        for (i, check) in self.health.http.iter().enumerate() {
            if !check.uri.starts_with("http://") {
                out.push(format!(
                    "health.http.{i}.uri: only http:// URIs are supported (got {:?})",
                    check.uri
                ));
            }
        }
        out
    }
}
