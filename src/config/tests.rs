//! Unit tests of configuration loading: fixtures, the environment overlay, unknown keys,
//! error messages, defaults and `unsupported()`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

const DEBIAN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/config/debian.yml"
);
const REGISTRY2: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/config/registry2.yml"
);

const MINIMAL: &str = "version: 0.1\nstorage:\n  inmemory:\n";

fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    vars.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn load_with(text: &str, vars: &[(&str, &str)]) -> Result<Loaded, ConfigError> {
    load_text(text, "test.yml", &env(vars))
}

fn load_ok(text: &str, vars: &[(&str, &str)]) -> Loaded {
    match load_with(text, vars) {
        Ok(loaded) => loaded,
        Err(e) => panic!("expected the configuration to load, got: {e}"),
    }
}

fn load_err(text: &str, vars: &[(&str, &str)]) -> String {
    match load_with(text, vars) {
        Ok(loaded) => panic!("expected an error, loaded {:?}", loaded.config),
        Err(e) => e.to_string(),
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn headers(pairs: &[(&str, &[&str])]) -> Headers {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
        .collect()
}

fn filesystem_root(config: &Config) -> &Path {
    match &config.storage.driver {
        StorageDriverConfig::Filesystem { rootdirectory, .. } => rootdirectory,
        other => panic!("expected filesystem, got {other:?}"),
    }
}

// ------------------------------------------------------------------ fixtures and defaults

#[test]
fn debian_package_config_loads_without_warnings() {
    let loaded = load(Some(Path::new(DEBIAN)), &[]).unwrap();
    assert_eq!(loaded.warnings, Vec::<String>::new());
    let c = &loaded.config;
    assert_eq!(c.version, "0.1");
    assert_eq!(
        c.log.fields.get("service"),
        Some(&serde_yaml::Value::from("registry"))
    );
    assert_eq!(filesystem_root(c), Path::new("/var/lib/docker-registry"));
    assert_eq!(
        c.storage.cache.blobdescriptor,
        Some(BlobDescriptorCache::Inmemory)
    );
    assert!(c.storage.delete.enabled);
    assert_eq!(c.http.addr, ":5000");
    assert_eq!(
        c.http.headers,
        headers(&[("X-Content-Type-Options", &["nosniff"])])
    );
    assert_eq!(
        c.auth,
        Some(AuthConfig::Htpasswd {
            realm: "basic-realm".into(),
            path: "/etc/docker/registry".into(),
        })
    );
    assert!(c.health.storagedriver.enabled);
    assert_eq!(c.health.storagedriver.interval, secs(10));
    assert_eq!(c.health.storagedriver.threshold, 3);
    assert_eq!(c.unsupported(), Vec::<String>::new());
}

#[test]
fn debian_fixture_is_the_installed_file_unchanged() {
    let installed = Path::new("/etc/docker/registry/config.yml");
    if let Ok(text) = std::fs::read_to_string(installed) {
        assert_eq!(std::fs::read_to_string(DEBIAN).unwrap(), text);
    }
}

#[test]
fn registry2_image_config_loads_without_warnings() {
    let loaded = load(Some(Path::new(REGISTRY2)), &[]).unwrap();
    assert_eq!(loaded.warnings, Vec::<String>::new());
    let c = &loaded.config;
    assert_eq!(filesystem_root(c), Path::new("/var/lib/registry"));
    assert_eq!(c.http.addr, ":5000");
    assert_eq!(c.auth, None);
    assert!(!c.storage.delete.enabled);
    assert_eq!(c.health.storagedriver.threshold, 3);
    assert_eq!(c.unsupported(), Vec::<String>::new());
}

#[test]
fn embedded_default_is_used_without_path() {
    let loaded = load(None, &[]).unwrap();
    assert_eq!(loaded.warnings, Vec::<String>::new());
    let c = &loaded.config;
    assert_eq!(filesystem_root(c), Path::new("registry-data"));
    assert_eq!(c.http.addr, "127.0.0.1:5000");
    assert_eq!(
        c.http.headers,
        headers(&[("X-Content-Type-Options", &["nosniff"])])
    );
    assert_eq!(
        c.storage.cache.blobdescriptor,
        Some(BlobDescriptorCache::Inmemory)
    );
    assert!(c.health.storagedriver.enabled);
    assert_eq!(c.auth, None);
    // Same shape as the image's default, only the folder and address differ.
    let image = load(Some(Path::new(REGISTRY2)), &[]).unwrap().config;
    let mut expected = image.clone();
    expected.http.addr = "127.0.0.1:5000".into();
    expected.storage.driver = StorageDriverConfig::Filesystem {
        rootdirectory: "registry-data".into(),
        maxthreads: 100,
    };
    assert_eq!(*c, expected);
}

#[test]
fn configuration_path_variable_picks_the_file() {
    let vars = env(&[("REGISTRY_CONFIGURATION_PATH", DEBIAN)]);
    let loaded = load(None, &vars).unwrap();
    assert_eq!(
        filesystem_root(&loaded.config),
        Path::new("/var/lib/docker-registry")
    );
    assert_eq!(loaded.warnings, Vec::<String>::new(), "not an override");
    // An explicit path wins over the variable.
    let loaded = load(Some(Path::new(REGISTRY2)), &vars).unwrap();
    assert_eq!(
        filesystem_root(&loaded.config),
        Path::new("/var/lib/registry")
    );
}

#[test]
fn missing_file_error_names_the_path() {
    let err = load(Some(Path::new("/nonexistent/wharf/config.yml")), &[]).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
    let msg = err.to_string();
    assert!(msg.contains("/nonexistent/wharf/config.yml"), "{msg}");
    let vars = env(&[("REGISTRY_CONFIGURATION_PATH", "/nonexistent/from-env.yml")]);
    let msg = load(None, &vars).unwrap_err().to_string();
    assert!(msg.contains("/nonexistent/from-env.yml"), "{msg}");
}

#[test]
fn yaml_syntax_error_has_line_and_column() {
    let msg = load_err("version: 0.1\nstorage:\n  inmemory: {\n", &[]);
    assert!(msg.starts_with("parsing test.yml: "), "{msg}");
    assert!(msg.contains("line 3") || msg.contains("line 4"), "{msg}");
    assert!(msg.contains("column"), "{msg}");
    let msg = load_err("- a\n- b\n", &[]);
    assert!(msg.contains("must be a YAML mapping"), "{msg}");
}

#[test]
fn version_is_checked() {
    let msg = load_err("version: 0.2\nstorage: {inmemory: {}}\n", &[]);
    assert_eq!(msg, r#"version: unsupported version "0.2""#);
    let msg = load_err("storage: {inmemory: {}}\n", &[]);
    assert!(msg.starts_with("version: missing"), "{msg}");
    load_ok("version: '0.1'\nstorage: {inmemory: {}}\n", &[]);
    assert_eq!(load_err("", &[]).split(':').next(), Some("version"));
}

#[test]
fn defaults_match_distribution() {
    let loaded = load_ok(MINIMAL, &[]);
    assert_eq!(loaded.warnings, Vec::<String>::new());
    let c = loaded.config;
    assert_eq!(c.storage.driver, StorageDriverConfig::Inmemory);
    assert_eq!(c.log.level, LogLevel::Info);
    assert_eq!(c.log.formatter, LogFormatter::Text);
    assert!(!c.log.accesslog.disabled);
    assert_eq!(c.http.addr, ":5000");
    assert_eq!(c.http.net, "tcp");
    assert_eq!(c.http.prefix, "");
    assert_eq!(c.http.host, None);
    assert_eq!(c.http.secret, None);
    assert_eq!(c.http.draintimeout, Duration::ZERO);
    assert_eq!(c.http.tls, None);
    assert_eq!(c.http.debug.addr, None);
    assert!(!c.http.debug.prometheus.enabled);
    assert_eq!(c.http.debug.prometheus.path, "/metrics");
    assert!(!c.http.http2.disabled);
    assert!(!c.http.h2c.enabled);
    assert!(!c.storage.delete.enabled);
    assert!(!c.storage.redirect.disable);
    assert_eq!(c.storage.cache.blobdescriptor, None);
    assert_eq!(c.storage.cache.blobdescriptorsize, 10_000);
    let purge = &c.storage.maintenance.uploadpurging;
    assert!(purge.enabled);
    assert_eq!(purge.age, secs(168 * 3600));
    assert_eq!(purge.interval, secs(24 * 3600));
    assert!(!purge.dryrun);
    assert!(!c.storage.maintenance.readonly.enabled);
    assert_eq!(c.storage.tag.concurrencylimit, 8);
    assert_eq!(c.auth, None);
    assert_eq!(c.redis, None);
    assert_eq!(c.proxy, None);
    assert!(!c.health.storagedriver.enabled);
    assert_eq!(c.health.storagedriver.interval, secs(10));
    assert_eq!(c.catalog.maxentries, 1000);
    assert_eq!(c.tags.maxtags, 1000);
    assert!(!c.validation.disabled);
    assert_eq!(
        c.validation.manifests.indexes.platforms,
        IndexPlatforms::All
    );
    assert_eq!(c.unsupported(), Vec::<String>::new());

    let fs = load_ok("version: 0.1\nstorage:\n  filesystem:\n", &[]).config;
    assert_eq!(
        fs.storage.driver,
        StorageDriverConfig::Filesystem {
            rootdirectory: "/var/lib/registry".into(),
            maxthreads: 100
        }
    );
    let scalar = load_ok("version: 0.1\nstorage: inmemory\n", &[]).config;
    assert_eq!(scalar.storage.driver, StorageDriverConfig::Inmemory);
}

#[test]
fn zero_means_default_where_distribution_says_so() {
    let text = "version: 0.1
storage:
  filesystem: {maxthreads: 10}
catalog: {maxentries: 0}
health:
  storagedriver: {enabled: true, interval: 0}
  tcp: [{addr: 'db:5432'}]
notifications:
  endpoints: [{name: a, url: 'http://h/', timeout: 0s, disabled: true}]
";
    let c = load_ok(text, &[]).config;
    assert_eq!(
        c.storage.driver,
        StorageDriverConfig::Filesystem {
            rootdirectory: "/var/lib/registry".into(),
            maxthreads: 25
        }
    );
    assert_eq!(c.catalog.maxentries, 1000);
    assert_eq!(c.health.storagedriver.interval, secs(10));
    assert_eq!(c.health.tcp[0].interval, secs(10));
    assert_eq!(c.health.tcp[0].timeout, secs(5));
    let endpoint = &c.notifications.endpoints[0];
    assert_eq!(endpoint.timeout, secs(1));
    assert_eq!(endpoint.threshold, 10);
    assert_eq!(endpoint.backoff, secs(1));
}

#[test]
fn log_levels_and_formatters() {
    let level = |l: &str| {
        load_ok(&format!("{MINIMAL}log: {{level: {l}}}\n"), &[])
            .config
            .log
            .level
    };
    assert_eq!(level("error"), LogLevel::Error);
    assert_eq!(level("warn"), LogLevel::Warn);
    assert_eq!(level("warning"), LogLevel::Warn);
    assert_eq!(level("DEBUG"), LogLevel::Debug);
    assert_eq!(level("trace"), LogLevel::Trace);
    let msg = load_err(&format!("{MINIMAL}log: {{level: loud}}\n"), &[]);
    assert!(
        msg.starts_with(r#"log.level: invalid log level "loud""#),
        "{msg}"
    );
    let c = load_ok(&format!("{MINIMAL}log: {{formatter: logstash}}\n"), &[]).config;
    assert_eq!(c.log.formatter, LogFormatter::Logstash);
    let msg = load_err(&format!("{MINIMAL}log: {{formatter: xml}}\n"), &[]);
    assert!(msg.starts_with("log.formatter: "), "{msg}");
    // The deprecated top-level key still works, with a warning.
    let loaded = load_ok(&format!("{MINIMAL}loglevel: debug\n"), &[]);
    assert_eq!(loaded.config.log.level, LogLevel::Debug);
    assert!(loaded
        .warnings
        .iter()
        .any(|w| w.contains("loglevel is deprecated")));
}

// ------------------------------------------------------------------ durations and sizes

#[test]
fn durations_accept_go_strings_and_nanoseconds() {
    let text = "version: 0.1
storage: {inmemory: {}}
http: {draintimeout: 1000000000}
health:
  storagedriver: {interval: 1h30m}
  http: [{uri: 'http://x/', timeout: 300ms, interval: 1.5h}]
redis: {addr: 'r:6379', dialtimeout: 10s, pool: {idletimeout: 168h}}
";
    let c = load_ok(text, &[]).config;
    assert_eq!(c.http.draintimeout, secs(1));
    assert_eq!(c.health.storagedriver.interval, secs(5400));
    assert_eq!(c.health.http[0].timeout, Duration::from_millis(300));
    assert_eq!(c.health.http[0].interval, secs(5400));
    let redis = c.redis.unwrap();
    assert_eq!(redis.dialtimeout, Some(secs(10)));
    assert_eq!(redis.pool.unwrap().idletimeout, Some(secs(168 * 3600)));
}

#[test]
fn invalid_duration_names_the_key() {
    let text = "version: 0.1
storage:
  inmemory:
  maintenance:
    uploadpurging: {enabled: true, age: 5x, interval: 24h, dryrun: false}
";
    assert_eq!(
        load_err(text, &[]),
        r#"storage.maintenance.uploadpurging.age: invalid duration "5x": unknown unit "x""#
    );
    // A plain integer is nanoseconds, as Go's time.Duration.
    let c = load_ok(&format!("{MINIMAL}http: {{draintimeout: 5}}\n"), &[]).config;
    assert_eq!(c.http.draintimeout, Duration::from_nanos(5));
    let msg = load_err(&format!("{MINIMAL}http: {{draintimeout: [1]}}\n"), &[]);
    assert!(
        msg.starts_with("http.draintimeout: invalid type: sequence, expected a duration"),
        "{msg}"
    );
    let msg = load_err(&format!("{MINIMAL}http: {{draintimeout: -1}}\n"), &[]);
    assert!(
        msg.starts_with("http.draintimeout: invalid duration -1"),
        "{msg}"
    );
}

#[test]
fn sizes_accept_numbers_and_numeric_strings() {
    let text = "version: 0.1
storage:
  s3:
    region: us-east-1
    bucket: b
    chunksize: '6291456'
    multipartcopychunksize: 33554432
";
    let c = load_ok(text, &[]).config;
    let StorageDriverConfig::S3(s3) = c.storage.driver else {
        panic!("expected s3")
    };
    assert_eq!(s3.chunksize, 6 * 1024 * 1024);
    assert_eq!(s3.multipartcopychunksize, 32 * 1024 * 1024);

    let c = load_ok(
        "version: 0.1\nstorage: {s3: {region: r, bucket: b}}\n",
        &[("REGISTRY_STORAGE_S3_CHUNKSIZE", "5242880")],
    )
    .config;
    let StorageDriverConfig::S3(s3) = c.storage.driver else {
        panic!("expected s3")
    };
    assert_eq!(s3.chunksize, 5 * 1024 * 1024);

    let msg = load_err(
        "version: 0.1\nstorage: {s3: {region: r, bucket: b, chunksize: '1024'}}\n",
        &[],
    );
    assert!(
        msg.starts_with("storage.s3.chunksize: 1024 is too small"),
        "{msg}"
    );
    let msg = load_err(
        "version: 0.1\nstorage: {s3: {region: r, bucket: b, chunksize: lots}}\n",
        &[],
    );
    assert_eq!(msg, r#"storage.s3.chunksize: invalid integer "lots""#);
}

// ------------------------------------------------------------------ environment overlay

#[test]
fn env_applies_in_lexical_order_and_storage_replacement_drops_the_rest() {
    // Listed out of order on purpose: REGISTRY_STORAGE must land before REGISTRY_STORAGE_S3_*.
    let loaded = load(
        Some(Path::new(DEBIAN)),
        &env(&[
            ("REGISTRY_STORAGE_S3_REGION", "eu-west-1"),
            ("REGISTRY_STORAGE_S3_BUCKET", "images"),
            ("REGISTRY_STORAGE", "s3"),
        ]),
    )
    .unwrap();
    assert_eq!(loaded.warnings, Vec::<String>::new());
    let c = loaded.config;
    let StorageDriverConfig::S3(s3) = &c.storage.driver else {
        panic!("expected s3, got {:?}", c.storage.driver)
    };
    assert_eq!(s3.region, "eu-west-1");
    assert_eq!(s3.bucket, "images");
    // As distribution: the file's cache and delete are gone with the replaced map.
    assert_eq!(c.storage.cache.blobdescriptor, None);
    assert!(!c.storage.delete.enabled);
}

#[test]
fn env_later_names_override_earlier_ones() {
    // REGISTRY_HTTP (a whole map) sorts before REGISTRY_HTTP_ADDR, which then wins.
    let c = load_ok(
        MINIMAL,
        &[
            ("REGISTRY_HTTP_ADDR", ":7000"),
            ("REGISTRY_HTTP", "{addr: ':6000', secret: s}"),
        ],
    )
    .config;
    assert_eq!(c.http.addr, ":7000");
    assert_eq!(c.http.secret.as_deref(), Some("s"));
}

#[test]
fn env_matches_keys_case_insensitively_and_stores_new_keys_lower_case() {
    let text = "version: 0.1
storage: {inmemory: {}}
http:
  headers:
    X-Content-Type-Options: [nosniff]
log:
  fields: {Team: core}
";
    let c = load_ok(
        text,
        &[
            ("REGISTRY_HTTP_HEADERS_X-CONTENT-TYPE-OPTIONS", "[other]"),
            ("REGISTRY_LOG_FIELDS_TEAM", "infra"),
            ("REGISTRY_LOG_FIELDS_ENVIRONMENT", "prod"),
        ],
    )
    .config;
    assert_eq!(
        c.http.headers,
        headers(&[("X-Content-Type-Options", &["other"])])
    );
    assert_eq!(c.log.fields.get("Team"), Some(&"infra".into()));
    assert_eq!(c.log.fields.get("environment"), Some(&"prod".into()));
    assert_eq!(c.log.fields.len(), 2);
}

#[test]
fn env_values_are_parsed_as_yaml() {
    let c = load_ok(
        MINIMAL,
        &[
            ("REGISTRY_STORAGE_DELETE_ENABLED", "true"),
            ("REGISTRY_REDIS_ADDRS", "[r1:6379, r2:6379]"),
            ("REGISTRY_HEALTH_STORAGEDRIVER_INTERVAL", "30s"),
            ("REGISTRY_CATALOG_MAXENTRIES", "50"),
            ("REGISTRY_HTTP_SECRET", "12345"),
            ("REGISTRY_LOG_FIELDS_PORT", "5"),
            ("REGISTRY_HTTP_HEADERS_X-FRAME-OPTIONS", "DENY"),
        ],
    )
    .config;
    assert!(c.storage.delete.enabled);
    assert_eq!(
        c.redis.as_ref().unwrap().addrs,
        vec!["r1:6379".to_string(), "r2:6379".to_string()]
    );
    assert_eq!(c.health.storagedriver.interval, secs(30));
    assert_eq!(c.catalog.maxentries, 50);
    assert_eq!(c.http.secret.as_deref(), Some("12345"));
    assert_eq!(c.log.fields.get("port"), Some(&serde_yaml::Value::from(5)));
    assert_eq!(c.http.headers, headers(&[("x-frame-options", &["DENY"])]));
}

#[test]
fn env_addresses_list_items_by_index() {
    let text = "version: 0.1
storage: {inmemory: {}}
notifications:
  endpoints:
    - name: first
      url: http://a/
";
    let c = load_ok(
        text,
        &[
            ("REGISTRY_NOTIFICATIONS_ENDPOINTS_0_URL", "http://changed/"),
            ("REGISTRY_NOTIFICATIONS_ENDPOINTS_1_NAME", "second"),
            ("REGISTRY_NOTIFICATIONS_ENDPOINTS_1_URL", "http://b/"),
            ("REGISTRY_NOTIFICATIONS_ENDPOINTS_1_DISABLED", "true"),
        ],
    )
    .config;
    let endpoints = &c.notifications.endpoints;
    assert_eq!(endpoints.len(), 2);
    assert_eq!(endpoints[0].name, "first");
    assert_eq!(endpoints[0].url, "http://changed/");
    assert_eq!(endpoints[1].name, "second");
    assert_eq!(endpoints[1].url, "http://b/");
    assert!(endpoints[1].disabled);

    // A list that does not exist yet is created from index 0.
    let c = load_ok(
        MINIMAL,
        &[
            ("REGISTRY_HEALTH_TCP_0_ADDR", "db:5432"),
            ("REGISTRY_HEALTH_TCP_0_TIMEOUT", "2s"),
        ],
    )
    .config;
    assert_eq!(c.health.tcp.len(), 1);
    assert_eq!(c.health.tcp[0].addr, "db:5432");
    assert_eq!(c.health.tcp[0].timeout, secs(2));

    let msg = load_err(
        text,
        &[("REGISTRY_NOTIFICATIONS_ENDPOINTS_5_URL", "http://x/")],
    );
    assert!(
        msg.starts_with("parsing environment variable REGISTRY_NOTIFICATIONS_ENDPOINTS_5_URL: undefined index 5"),
        "{msg}"
    );
    let msg = load_err(
        text,
        &[("REGISTRY_NOTIFICATIONS_ENDPOINTS_X_URL", "http://x/")],
    );
    assert!(msg.contains("non-numeric index \"X\""), "{msg}");
}

#[test]
fn env_auth_replacement() {
    let text = "version: 0.1
storage: {inmemory: {}}
auth:
  silly: {realm: r, service: s}
";
    let c = load_ok(
        text,
        &[
            ("REGISTRY_AUTH", "htpasswd"),
            ("REGISTRY_AUTH_HTPASSWD_REALM", "Registry"),
            ("REGISTRY_AUTH_HTPASSWD_PATH", "/auth/htpasswd"),
        ],
    )
    .config;
    assert_eq!(
        c.auth,
        Some(AuthConfig::Htpasswd {
            realm: "Registry".into(),
            path: "/auth/htpasswd".into()
        })
    );
    assert_eq!(
        load_ok(text, &[("REGISTRY_AUTH", "none")]).config.auth,
        None
    );
    // Adding a second scheme from the environment is refused.
    let msg = load_err(text, &[("REGISTRY_AUTH_HTPASSWD_REALM", "x")]);
    assert_eq!(
        msg,
        "auth: exactly one auth scheme may be configured, found [silly htpasswd]"
    );
}

#[test]
fn env_driver_next_to_the_files_driver_is_refused() {
    let loaded = load(
        Some(Path::new(DEBIAN)),
        &env(&[("REGISTRY_STORAGE_S3_BUCKET", "images")]),
    );
    assert_eq!(
        loaded.unwrap_err().to_string(),
        "multiple storage drivers specified in configuration or environment: [filesystem s3]"
    );
}

#[test]
fn env_creates_missing_intermediate_maps() {
    let c = load_ok(
        MINIMAL,
        &[
            ("REGISTRY_HTTP_DEBUG_PROMETHEUS_ENABLED", "true"),
            ("REGISTRY_STORAGE_MAINTENANCE_READONLY_ENABLED", "true"),
            ("REGISTRY_VALIDATION_MANIFESTS_URLS_ALLOW", "['^https://']"),
        ],
    )
    .config;
    assert!(c.http.debug.prometheus.enabled);
    assert_eq!(c.http.debug.prometheus.path, "/metrics");
    assert!(c.storage.maintenance.readonly.enabled);
    assert_eq!(
        c.validation.manifests.urls.allow,
        vec!["^https://".to_string()]
    );
}

#[test]
fn env_unknown_names_warn_by_variable() {
    let loaded = load_ok(
        MINIMAL,
        &[
            ("REGISTRY_HTTP_ADR", ":6000"),
            ("REGISTRY_FOO_BAR", "1"),
            ("REGISTRY_STORAGE_INMEMORY_SIZE", "1"),
            ("REGISTRY__HTTP", "1"),
            ("OTHER_THING", "1"),
            ("registry_http_addr", ":1"),
        ],
    );
    assert_eq!(loaded.config.http.addr, ":5000");
    let w = loaded.warnings.join("\n");
    for name in [
        "REGISTRY_HTTP_ADR",
        "REGISTRY_FOO_BAR",
        "REGISTRY_STORAGE_INMEMORY_SIZE",
        "REGISTRY__HTTP",
    ] {
        assert!(
            loaded.warnings.iter().any(|w| w.contains(name)),
            "no warning for {name}: {w}"
        );
    }
    assert!(
        !w.contains("OTHER_THING") && !w.contains("registry_http_addr"),
        "{w}"
    );
    assert!(!w.contains("unknown configuration key"), "{w}");
    // Driver sections take their overrides.
    let loaded = load_ok(
        "version: 0.1\nstorage: {azure: {accountname: a, accountkey: k}}\n",
        &[("REGISTRY_STORAGE_AZURE_CONTAINER", "c")],
    );
    assert_eq!(loaded.warnings, Vec::<String>::new());
    let StorageDriverConfig::Azure(azure) = &loaded.config.storage.driver else {
        panic!("expected azure")
    };
    assert_eq!(azure.container, "c");
}

#[test]
fn env_errors_name_the_key_and_the_variable() {
    let msg = load_err(MINIMAL, &[("REGISTRY_CATALOG_MAXENTRIES", "many")]);
    assert_eq!(
        msg,
        r#"catalog.maxentries: invalid integer "many" (set by environment variable REGISTRY_CATALOG_MAXENTRIES)"#
    );
}

#[test]
fn env_below_a_single_value_is_ignored_with_a_warning() {
    // Distribution ignores these silently; Wharf warns and carries on.
    let with_secret = format!("{MINIMAL}http: {{secret: s3cr3t}}\n");
    for (text, secret) in [(MINIMAL, None), (with_secret.as_str(), Some("s3cr3t"))] {
        let loaded = load_ok(
            text,
            &[
                ("REGISTRY_HTTP_SECRET_FILE", "/run/secrets/http"),
                ("REGISTRY_HTTP_ADDR_PORT", "1"),
            ],
        );
        assert_eq!(loaded.config.http.secret.as_deref(), secret);
        assert_eq!(loaded.config.http.addr, ":5000");
        for name in ["REGISTRY_HTTP_SECRET_FILE", "REGISTRY_HTTP_ADDR_PORT"] {
            assert!(
                loaded.warnings.iter().any(|w| w.contains(name)),
                "no warning for {name}: {:?}",
                loaded.warnings
            );
        }
    }
    // A wrong value in the file is still an error, whatever the environment adds below it.
    let msg = load_err(
        &format!("{MINIMAL}http: {{addr: {{a: 1}}}}\n"),
        &[("REGISTRY_HTTP_ADDR_B", "2")],
    );
    assert!(msg.starts_with("http.addr: invalid type: map"), "{msg}");
}

// ------------------------------------------------------------------ unknown and deprecated keys

#[test]
fn unknown_keys_warn_by_dotted_name() {
    let text = "version: 0.1
storage:
  filesystem: {rootdir: /data}
  delete: {enabled: true, really: yes}
http:
  adr: ':6000'
auth:
  htpasswd: {realm: r, path: /p, file: /x}
notifications:
  endpoints:
    - {name: a, url: 'http://a/', urll: x, disabled: true}
redis: {addr: 'r:1', pool: {maxidel: 3}}
strage: {}
";
    let loaded = load_ok(text, &[]);
    let mut warnings = loaded.warnings.clone();
    warnings.sort();
    assert_eq!(
        warnings,
        [
            "unknown configuration key auth.htpasswd.file",
            "unknown configuration key http.adr",
            "unknown configuration key notifications.endpoints.0.urll",
            "unknown configuration key redis.pool.maxidel",
            "unknown configuration key storage.delete.really",
            "unknown configuration key storage.filesystem.rootdir",
            "unknown configuration key strage",
        ]
    );
    // Known keys next to unknown ones still apply.
    assert!(loaded.config.storage.delete.enabled);
    assert_eq!(
        filesystem_root(&loaded.config),
        Path::new("/var/lib/registry")
    );
}

#[test]
fn deprecated_layerinfo_warns_and_still_applies() {
    let text = "version: 0.1\nstorage:\n  inmemory:\n  cache:\n    layerinfo: inmemory\n";
    let loaded = load_ok(text, &[]);
    assert_eq!(
        loaded.config.storage.cache.blobdescriptor,
        Some(BlobDescriptorCache::Inmemory)
    );
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    assert!(loaded.warnings[0].contains("storage.cache.layerinfo is deprecated"));

    let loaded = load_ok(&format!("{MINIMAL}validation: {{enabled: true}}\n"), &[]);
    assert!(loaded.warnings[0].contains("validation.enabled is deprecated"));
}

#[test]
fn reporting_is_accepted_with_a_warning() {
    let text = format!("{MINIMAL}reporting:\n  bugsnag:\n    apikey: k\n");
    let loaded = load_ok(&text, &[]);
    assert_eq!(loaded.warnings.len(), 1);
    assert!(loaded.warnings[0].contains("reporting is ignored"));
    assert_eq!(loaded.config.unsupported(), Vec::<String>::new());
}

// ------------------------------------------------------------------ errors naming keys

#[test]
fn storage_errors_name_the_key() {
    assert_eq!(
        load_err("version: 0.1\n", &[]),
        "storage: no storage driver configured"
    );
    assert_eq!(
        load_err("version: 0.1\nstorage: {delete: {enabled: true}}\n", &[]),
        "storage: no storage driver configured"
    );
    assert_eq!(
        load_err("version: 0.1\nstorage: {filesystem: {}, s3: {}}\n", &[]),
        "multiple storage drivers specified in configuration or environment: [filesystem s3]"
    );
    let msg = load_err("version: 0.1\nstorage: {rados: {}}\n", &[]);
    assert!(
        msg.starts_with(r#"storage.rados: unknown storage driver "rados""#),
        "{msg}"
    );
    assert_eq!(
        load_err("version: 0.1\nstorage: {s3: {bucket: b}}\n", &[]),
        "storage.s3.region: required, but empty"
    );
    assert_eq!(
        load_err("version: 0.1\nstorage: {s3: {region: r}}\n", &[]),
        "storage.s3.bucket: required, but empty"
    );
    let msg = load_err(
        "version: 0.1\nstorage: {s3: {region: r, bucket: b, objectacl: open}}\n",
        &[],
    );
    assert!(
        msg.starts_with(r#"storage.s3.objectacl: invalid value "open""#),
        "{msg}"
    );
    let msg = load_err(
        "version: 0.1\nstorage: {oss: {region: r, bucket: b}}\n",
        &[],
    );
    assert_eq!(msg, "storage.oss.accesskeyid: required, but empty");
    let msg = load_err(
        "version: 0.1\nstorage: {inmemory: {}, cache: {blobdescriptor: redis}}\n",
        &[],
    );
    assert!(
        msg.starts_with("storage.cache.blobdescriptor: redis needs"),
        "{msg}"
    );
    let msg = load_err(
        "version: 0.1\nstorage: {inmemory: {}, redirect: {disable: maybe}}\n",
        &[],
    );
    assert_eq!(msg, r#"storage.redirect.disable: invalid boolean "maybe""#);
}

#[test]
fn auth_errors_name_the_key() {
    assert_eq!(
        load_err(
            "version: 0.1\nstorage: {inmemory: {}}\nauth: {htpasswd: {realm: r, path: p}, token: {}}\n",
            &[]
        ),
        "auth: exactly one auth scheme may be configured, found [htpasswd token]"
    );
    assert_eq!(
        load_err(
            "version: 0.1\nstorage: {inmemory: {}}\nauth: {htpasswd: {realm: r}}\n",
            &[]
        ),
        "auth.htpasswd.path: missing, but required"
    );
    assert_eq!(
        load_err(
            "version: 0.1\nstorage: {inmemory: {}}\nauth: {htpasswd: }\n",
            &[]
        ),
        "auth.htpasswd.realm: missing, but required"
    );
    assert_eq!(
        load_err(
            "version: 0.1\nstorage: {inmemory: {}}\nauth: {token: {realm: r, service: s, issuer: i}}\n",
            &[]
        ),
        "auth.token.rootcertbundle: required unless auth.token.jwks or tokenissuer is set"
    );
    let msg = load_err(
        "version: 0.1\nstorage: {inmemory: {}}\nauth: {ldap: {}}\n",
        &[],
    );
    assert!(
        msg.starts_with(r#"auth.ldap: unknown auth scheme "ldap""#),
        "{msg}"
    );
    assert_eq!(
        load_ok("version: 0.1\nstorage: {inmemory: {}}\nauth: {}\n", &[])
            .config
            .auth,
        None
    );
    assert_eq!(
        load_ok(
            "version: 0.1\nstorage: {inmemory: {}}\nauth: {none: {}}\n",
            &[]
        )
        .config
        .auth,
        None
    );
    let token = load_ok(
        "version: 0.1\nstorage: {inmemory: {}}\nauth: {token: {realm: r, service: s, issuer: i, jwks: /j}}\n",
        &[],
    )
    .config;
    let Some(AuthConfig::Token {
        autoredirectpath,
        jwks,
        ..
    }) = token.auth
    else {
        panic!("expected token auth")
    };
    assert_eq!(autoredirectpath, "/auth/token");
    assert_eq!(jwks, Some("/j".into()));
}

#[test]
fn other_errors_name_the_key() {
    let cases = [
        ("http: {net: udp}", r#"http.net: invalid value "udp""#),
        (
            "http: {tls: {certificate: c, minimumtls: ssl3}}",
            r#"http.tls.minimumtls: invalid value "ssl3""#,
        ),
        (
            "http: {headers: {X-A: {b: c}}}",
            "http.headers.X-A: invalid type: map",
        ),
        (
            "health: {http: [{uri: 'http://x', timeout: soon}]}",
            r#"health.http.0.timeout: invalid duration "soon""#,
        ),
        (
            "health: {tcp: [{timeout: 1s}]}",
            "health.tcp.0.addr: required, but empty",
        ),
        (
            "notifications: {endpoints: [{name: a}]}",
            "notifications.endpoints.0.url: required, but empty",
        ),
        (
            "validation: {manifests: {indexes: {platforms: some}}}",
            r#"validation.manifests.indexes.platforms: invalid platforms value "some""#,
        ),
        (
            "validation: {manifests: {indexes: {platforms: list}}}",
            "validation.manifests.indexes.platformlist: required",
        ),
        ("tags: {maxtags: -1}", "tags.maxtags: -1 is negative"),
        ("http: [a]", "http: invalid type: sequence"),
    ];
    for (extra, expected) in cases {
        let msg = load_err(&format!("{MINIMAL}{extra}\n"), &[]);
        assert!(msg.starts_with(expected), "for {extra}: {msg}");
    }
}

// ------------------------------------------------------------------ sections

#[test]
fn uploadpurging_is_read_as_registry2_reads_it() {
    let base = "version: 0.1\nstorage:\n  inmemory:\n  maintenance:\n    uploadpurging:\n";
    let purge = |text: &str| load_ok(text, &[]).config.storage.maintenance.uploadpurging;
    let all = format!(
        "{base}      enabled: true\n      age: 1h\n      interval: 2h\n      dryrun: true\n"
    );
    assert_eq!(
        purge(&all),
        UploadPurgingConfig {
            enabled: true,
            age: secs(3600),
            interval: secs(7200),
            dryrun: true
        }
    );
    // `enabled: false` alone (distribution's config-dev.yml): nothing else is read, even garbage.
    for off in [
        "      enabled: false\n",
        "      enabled: false\n      age: soon\n      dryrun: maybe\n",
    ] {
        let loaded = load_ok(&format!("{base}{off}"), &[]);
        assert!(!loaded.config.storage.maintenance.uploadpurging.enabled);
        assert_eq!(loaded.warnings, Vec::<String>::new());
    }
    // Without `enabled` the purger runs, so the other three are required.
    let implicit = format!("{base}      age: 1h\n      interval: 2h\n      dryrun: false\n");
    assert!(purge(&implicit).enabled);
    for missing in ["age", "interval", "dryrun"] {
        for text in [&all, &implicit] {
            let text: String = text
                .lines()
                .filter(|l| !l.trim_start().starts_with(&format!("{missing}:")))
                .map(|l| format!("{l}\n"))
                .collect();
            let msg = load_err(&text, &[]);
            assert!(
                msg.starts_with(&format!(
                    "storage.maintenance.uploadpurging.{missing}: missing"
                )),
                "{msg}"
            );
        }
    }
    let msg = load_err(&all.replace("age: 1h", "age: soon"), &[]);
    assert!(
        msg.starts_with("storage.maintenance.uploadpurging.age: invalid duration"),
        "{msg}"
    );
    // Through the environment, the same rules.
    let off = load_ok(
        MINIMAL,
        &[(
            "REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_ENABLED",
            "false",
        )],
    );
    assert!(!off.config.storage.maintenance.uploadpurging.enabled);
    let msg = load_err(
        MINIMAL,
        &[("REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_AGE", "1h")],
    );
    assert!(
        msg.starts_with("storage.maintenance.uploadpurging.interval: missing")
            && msg.contains("REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_AGE"),
        "{msg}"
    );
    // A bare boolean (which registry:2 refuses) is read as `enabled`, with a warning.
    let loaded = load_ok(
        &base.replace("uploadpurging:\n", "uploadpurging: false\n"),
        &[],
    );
    assert!(!loaded.config.storage.maintenance.uploadpurging.enabled);
    assert_eq!(
        loaded.warnings,
        ["storage.maintenance.uploadpurging: false is read as storage.maintenance.uploadpurging.enabled: false"]
    );
}

#[test]
fn redis_accepts_v28_and_v3_keys() {
    let v28 = "version: 0.1
storage: {inmemory: {}, cache: {blobdescriptor: redis}}
redis:
  addr: localhost:6379
  password: secret
  db: 2
  dialtimeout: 10ms
  readtimeout: 10ms
  writetimeout: 10ms
  pool:
    maxidle: 16
    maxactive: 64
    idletimeout: 300s
  tls:
    enabled: false
";
    let loaded = load_ok(v28, &[]);
    assert_eq!(loaded.warnings, Vec::<String>::new());
    let redis = loaded.config.redis.clone().unwrap();
    assert_eq!(redis.addresses(), vec!["localhost:6379".to_string()]);
    assert_eq!(redis.password.as_deref(), Some("secret"));
    assert_eq!(redis.db, 2);
    assert_eq!(redis.readtimeout, Some(Duration::from_millis(10)));
    let pool = redis.pool.unwrap();
    assert_eq!((pool.maxidle, pool.maxactive), (Some(16), Some(64)));
    assert_eq!(pool.idletimeout, Some(secs(300)));

    let v3 = "version: 0.1
storage: {inmemory: {}, cache: {blobdescriptor: redis}}
redis:
  addrs: [r1:6379, r2:6379]
  username: u
  password: p
  db: 0
  clientname: wharf
  protocol: 3
  dialtimeout: 1s
  readtimeout: 2s
  writetimeout: 3s
  poolsize: 10
  pooltimeout: 4s
  minidleconns: 1
  maxidleconns: 5
  maxactiveconns: 20
  connmaxidletime: 5m
  connmaxlifetime: 1h
  maxretries: -1
  minretrybackoff: 8ms
  maxretrybackoff: 512ms
  mastername: mymaster
  sentinelusername: su
  sentinelpassword: sp
  tls:
    certificate: /c.pem
    key: /k.pem
    rootcas: [/ca.pem]
    clientcas: [/old-ca.pem]
";
    let loaded = load_ok(v3, &[]);
    assert_eq!(loaded.warnings, Vec::<String>::new());
    let redis = loaded.config.redis.clone().unwrap();
    assert_eq!(
        redis.addresses(),
        vec!["r1:6379".to_string(), "r2:6379".to_string()]
    );
    assert_eq!(redis.username.as_deref(), Some("u"));
    assert_eq!(redis.protocol, Some(3));
    assert_eq!(redis.poolsize, Some(10));
    assert_eq!(redis.maxretries, Some(-1));
    assert_eq!(redis.connmaxlifetime, Some(secs(3600)));
    assert_eq!(redis.mastername.as_deref(), Some("mymaster"));
    let tls = redis.tls.unwrap();
    assert_eq!(tls.rootcas, vec![std::path::PathBuf::from("/ca.pem")]);
    assert_eq!(tls.key, Some("/k.pem".into()));

    let both = load_ok(
        "version: 0.1\nstorage: {inmemory: {}}\nredis: {addr: 'a:1', addrs: ['a:1', 'b:2']}\n",
        &[],
    );
    assert_eq!(
        both.config.redis.unwrap().addresses(),
        vec!["a:1".to_string(), "b:2".to_string()]
    );
}

#[test]
fn headers_accept_a_string_or_a_list() {
    let text = "version: 0.1
storage: {inmemory: {}}
http:
  headers:
    X-Frame-Options: DENY
    X-Content-Type-Options: [nosniff]
    Cache-Control: [no-cache, no-store]
";
    let c = load_ok(text, &[]).config;
    assert_eq!(
        c.http.headers,
        headers(&[
            ("Cache-Control", &["no-cache", "no-store"]),
            ("X-Content-Type-Options", &["nosniff"]),
            ("X-Frame-Options", &["DENY"]),
        ])
    );
}

#[test]
fn s3_takes_every_documented_key() {
    let text = "version: 0.1
storage:
  s3:
    accesskey: AK
    secretkey: SK
    sessiontoken: ST
    region: us-east-1
    regionendpoint: http://127.0.0.1:9000
    forcepathstyle: true
    bucket: images
    encrypt: 'true'
    keyid: kms
    secure: false
    skipverify: true
    v4auth: true
    chunksize: 10485760
    multipartcopychunksize: 33554432
    multipartcopymaxconcurrency: 100
    multipartcopythresholdsize: 33554432
    rootdirectory: /registry
    storageclass: REDUCED_REDUNDANCY
    objectacl: bucket-owner-full-control
    useragent: wharf
    usedualstack: false
    accelerate: false
    usefipsendpoint: false
    loglevel: debug
    redirectendpoint: https://cdn.example/
";
    let loaded = load_ok(text, &[]);
    assert_eq!(loaded.warnings, Vec::<String>::new());
    let StorageDriverConfig::S3(s3) = &loaded.config.storage.driver else {
        panic!("expected s3")
    };
    assert!(s3.encrypt && s3.forcepathstyle && s3.skipverify && !s3.secure);
    assert_eq!(s3.accesskey.as_deref(), Some("AK"));
    assert_eq!(s3.regionendpoint.as_deref(), Some("http://127.0.0.1:9000"));
    assert_eq!(s3.storageclass, "REDUCED_REDUNDANCY");
    assert_eq!(s3.rootdirectory, "/registry");

    let defaults = load_ok("version: 0.1\nstorage: {s3: {region: r, bucket: b}}\n", &[]).config;
    let StorageDriverConfig::S3(s3) = defaults.storage.driver else {
        panic!("expected s3")
    };
    assert!(s3.secure && s3.v4auth && !s3.encrypt);
    assert_eq!(s3.chunksize, 10 << 20);
    assert_eq!(s3.multipartcopychunksize, 32 << 20);
    assert_eq!(s3.multipartcopymaxconcurrency, 100);
    assert_eq!(s3.multipartcopythresholdsize, 32 << 20);
    assert_eq!(
        (s3.storageclass.as_str(), s3.objectacl.as_str()),
        ("STANDARD", "private")
    );
}

#[test]
fn oss_takes_v28_keys() {
    let text = "version: 0.1
storage:
  oss:
    accesskeyid: id
    accesskeysecret: secret
    region: oss-cn-beijing
    endpoint: e
    internal: true
    bucket: b
    encrypt: false
    secure: true
    chunksize: 10485760
    rootdirectory: /r
";
    let loaded = load_ok(text, &[]);
    assert_eq!(loaded.warnings, Vec::<String>::new());
    let StorageDriverConfig::Oss(oss) = &loaded.config.storage.driver else {
        panic!("expected oss")
    };
    assert!(oss.internal && oss.secure);
    assert_eq!(oss.region, "oss-cn-beijing");
}

#[test]
fn every_section_parses_without_warnings() {
    let text = "version: 0.1
log:
  level: debug
  formatter: json
  fields: {service: registry, environment: staging}
  accesslog: {disabled: true}
  reportcaller: true
  hooks:
    - type: mail
      levels: [panic]
      options: {smtp: {addr: 'mail:25'}, from: a@b, to: [c@d]}
storage:
  filesystem: {rootdirectory: /data, maxthreads: 200}
  delete: {enabled: true}
  redirect: {disable: true}
  cache: {blobdescriptor: inmemory, blobdescriptorsize: 5000}
  maintenance:
    uploadpurging: {enabled: true, age: 168h, interval: 24h, dryrun: false}
    readonly: {enabled: false}
  tag: {concurrencylimit: 4}
auth:
  silly: {realm: silly-realm, service: silly-service}
http:
  addr: /run/registry.sock
  net: unix
  prefix: /registry/
  host: https://registry.example
  secret: asecretforlocaldevelopment
  relativeurls: true
  draintimeout: 60s
  headers: {X-Content-Type-Options: [nosniff]}
  http2: {disabled: true}
  h2c: {enabled: true}
  debug: {prometheus: {enabled: true, path: /m}}
health:
  storagedriver: {enabled: true, interval: 10s, threshold: 3}
  file: [{file: /tmp/down, interval: 10s}]
  tcp: [{addr: 'redis:6379', timeout: 3s, interval: 10s, threshold: 3}]
notifications:
  events: {includereferences: true}
  endpoints:
    - name: alistener
      disabled: true
      url: https://my.listener.com/event
      headers: {Authorization: [Bearer token]}
      timeout: 1s
      threshold: 10
      backoff: 1s
      ignoredmediatypes: [application/octet-stream]
      ignore:
        mediatypes: [application/octet-stream]
        actions: [pull]
proxy: {username: u}
middleware: {}
validation:
  disabled: false
  manifests:
    urls: {allow: ['^https?://([^/]+\\.)*example\\.com/'], deny: ['^https?://www\\.example\\.com/']}
    indexes:
      platforms: list
      platformlist: [{architecture: amd64, os: linux}]
catalog: {maxentries: 500}
tags: {maxtags: 200}
compatibility: {schema1: {signingkeyfile: /etc/registry/key.json, enabled: true}}
policy: {repository: {classes: [image]}}
";
    let loaded = load_ok(text, &[]);
    // Only the notices for keys that load but change nothing.
    assert_eq!(
        loaded.warnings,
        [
            "log.reportcaller is ignored: log lines carry no caller",
            "log.hooks is ignored: Wharf sends no log mail",
            "compatibility.schema1.enabled is ignored: schema 1 manifests are refused",
        ]
    );
    let c = &loaded.config;
    assert_eq!(c.log.level, LogLevel::Debug);
    assert_eq!(c.log.formatter, LogFormatter::Json);
    assert_eq!(c.log.hooks.len(), 1);
    assert_eq!(
        c.storage.driver,
        StorageDriverConfig::Filesystem {
            rootdirectory: "/data".into(),
            maxthreads: 200
        }
    );
    assert!(c.storage.redirect.disable);
    assert_eq!(c.storage.cache.blobdescriptorsize, 5000);
    assert_eq!(c.storage.tag.concurrencylimit, 4);
    assert_eq!(c.http.net, "unix");
    assert_eq!(c.http.draintimeout, secs(60));
    assert_eq!(c.http.debug.prometheus.path, "/m");
    assert_eq!(c.health.file[0].file, Path::new("/tmp/down"));
    assert!(c.notifications.events.includereferences);
    assert_eq!(
        c.notifications.endpoints[0].ignore.actions,
        vec!["pull".to_string()]
    );
    assert_eq!(
        c.validation.manifests.indexes.platformlist,
        vec![Platform {
            architecture: "amd64".into(),
            os: "linux".into()
        }]
    );
    assert_eq!((c.catalog.maxentries, c.tags.maxtags), (500, 200));
    assert!(c.compatibility.schema1.enabled);
    assert_eq!(c.policy.repository.classes, vec!["image".to_string()]);
    assert_eq!(c.unsupported(), Vec::<String>::new());
}

// ------------------------------------------------------------------ unsupported()

#[test]
fn redis_sentinel_cluster_and_tls_are_supported() {
    for redis in [
        "{addrs: ['s1:26379', 's2:26379'], mastername: m, sentinelusername: su, sentinelpassword: sp}",
        "{addr: 's1:26379,s2:26379', sentinelMasterSet: m, enableTLS: true}",
        "{addrs: ['c1:7000', 'c2:7001', 'c3:7002'], username: u, password: p}",
        "{addr: 'r:6379', db: 3, tls: {enabled: true}}",
        "{addrs: ['r:6379'], tls: {certificate: /c.pem, key: /k.pem, rootcas: [/ca.pem]}}",
        "{addrs: ['r:6379'], tls: {certificate: /c.pem, key: /k.pem, clientcas: [/ca.pem]}}",
    ] {
        let text = format!(
            "version: 0.1\nstorage: {{inmemory: {{}}, cache: {{blobdescriptor: redis}}}}\nredis: {redis}\n"
        );
        let loaded = load_ok(&text, &[]);
        assert_eq!(loaded.warnings, Vec::<String>::new(), "{redis}");
        assert_eq!(loaded.config.unsupported(), Vec::<String>::new(), "{redis}");
    }
    let env = load_ok(
        "version: 0.1\nstorage: {inmemory: {}, cache: {blobdescriptor: redis}}\n",
        &[
            ("REGISTRY_REDIS_ADDRS", "[s1:26379, s2:26379]"),
            ("REGISTRY_REDIS_MASTERNAME", "mymaster"),
            ("REGISTRY_REDIS_SENTINELUSERNAME", "su"),
            ("REGISTRY_REDIS_SENTINELPASSWORD", "sp"),
            ("REGISTRY_REDIS_USERNAME", "u"),
            ("REGISTRY_REDIS_PASSWORD", "p"),
            ("REGISTRY_REDIS_DB", "4"),
            ("REGISTRY_REDIS_TLS_CERTIFICATE", "/c.pem"),
            ("REGISTRY_REDIS_TLS_KEY", "/k.pem"),
            ("REGISTRY_REDIS_TLS_ROOTCAS", "[/ca.pem]"),
        ],
    );
    let redis = env.config.redis.unwrap();
    assert_eq!(redis.addresses(), ["s1:26379", "s2:26379"]);
    assert_eq!(redis.mastername.as_deref(), Some("mymaster"));
    assert_eq!(redis.sentinelusername.as_deref(), Some("su"));
    assert_eq!(redis.sentinelpassword.as_deref(), Some("sp"));
    assert_eq!(redis.username.as_deref(), Some("u"));
    assert_eq!(redis.db, 4);
    let tls = redis.tls.unwrap();
    assert_eq!(tls.certificate, Some("/c.pem".into()));
    assert_eq!(tls.rootcas, vec![std::path::PathBuf::from("/ca.pem")]);
}

#[test]
fn unsupported_names_each_configured_feature() {
    let text = "version: 0.1
storage:
  gcs: {bucket: b}
  cache: {blobdescriptor: redis}
auth:
  token: {realm: 'https://auth/token', service: registry, issuer: auth, rootcertbundle: /certs/bundle.pem}
redis: {addr: 'redis:6379', mastername: m}
notifications:
  endpoints:
    - {name: on, url: 'http://a/'}
    - {name: off, url: 'http://b/', disabled: true}
proxy: {remoteurl: 'https://registry-1.docker.io'}
middleware:
  storage:
    - name: cloudfront
      options: {baseurl: 'https://d.cloudfront.net/'}
  registry:
    - {name: x, disabled: true}
http:
  tls: {certificate: /c.pem, key: /k.pem}
  debug: {addr: ':5001'}
health:
  http: [{uri: 'https://up/'}]
";
    let loaded = load_ok(text, &[]);
    assert_eq!(loaded.warnings, Vec::<String>::new());
    let messages = loaded.config.unsupported();
    let keys: Vec<&str> = messages
        .iter()
        .map(|m| m.split(':').next().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["middleware.storage", "health.http.0.uri",],
        "{messages:#?}"
    );
    assert!(loaded
        .config
        .notifications
        .endpoints
        .iter()
        .any(|e| e.name == "on" && !e.disabled));

    // GCS is served.
    let c = load_ok("version: 0.1\nstorage: {gcs: {bucket: b}}\n", &[]).config;
    assert_eq!(c.unsupported(), Vec::<String>::new());
    // Swift: tempauth (v1) and Keystone (v2, v3) are served.
    let swift = |auth: &str| {
        let text = format!(
            "version: 0.1\nstorage: {{swift: {{authurl: '{auth}', username: u, password: p, container: c}}}}\n"
        );
        load_ok(&text, &[]).config.unsupported()
    };
    assert_eq!(swift("http://k/auth/v1.0"), Vec::<String>::new());
    assert_eq!(swift("http://k/v3"), Vec::<String>::new());
    assert_eq!(swift("http://k/v2.0"), Vec::<String>::new());
    // Azure: Shared Key (distribution 2.8's only way, 3's `shared_key`) is served.
    for azure in ["", ", credentials: {type: shared_key}"] {
        let text = format!(
            "version: 0.1\nstorage: {{azure: {{accountname: a, accountkey: k, container: c{azure}}}}}\n"
        );
        assert_eq!(
            load_ok(&text, &[]).config.unsupported(),
            Vec::<String>::new()
        );
    }
    for credentials in [
        "{type: client_secret, tenantid: t, clientid: c, secret: s}",
        "{type: default_credentials}",
    ] {
        let text = format!(
            "version: 0.1\nstorage: {{azure: {{accountname: a, container: c, credentials: {credentials}}}}}\n"
        );
        assert_eq!(
            load_ok(&text, &[]).config.unsupported(),
            Vec::<String>::new()
        );
    }
    // A client secret needs all three of its keys, as azidentity does.
    let text = "version: 0.1\nstorage: {azure: {accountname: a, container: c, credentials: {type: client_secret, tenantid: t}}}\n";
    assert_eq!(
        load_err(text, &[]),
        "storage.azure.credentials.clientid: required, but empty"
    );
    let oss = "oss: {accesskeyid: a, accesskeysecret: s, region: r, bucket: b}";
    let c = load_ok(&format!("version: 0.1\nstorage: {{{oss}}}\n"), &[]).config;
    assert_eq!(c.unsupported(), Vec::<String>::new());
}

#[test]
fn supported_features_are_not_listed() {
    let text = "version: 0.1
storage:
  filesystem: {rootdirectory: /data}
  cache: {blobdescriptor: inmemory}
  delete: {enabled: true}
  redirect: {disable: true}
  maintenance: {readonly: {enabled: true}}
auth: {htpasswd: {realm: r, path: /htpasswd}}
http:
  tls: {clientcas: [/ca.pem]}
  debug: {addr: ':5001', prometheus: {enabled: true}}
health:
  file: [{file: /down}]
  http: [{uri: 'http://up/'}]
  tcp: [{addr: 'db:1'}]
proxy: {username: u}
";
    let loaded = load_ok(text, &[]);
    assert_eq!(loaded.config.unsupported(), Vec::<String>::new());
    let silly = load_ok(
        "version: 0.1\nstorage: {inmemory: }\nauth: {silly: {realm: r, service: s}}\n",
        &[],
    );
    assert_eq!(silly.config.unsupported(), Vec::<String>::new());
}

#[test]
fn yaml_anchors_and_merge_keys_work_as_in_go() {
    let text = "version: 0.1
storage: {inmemory: {}}
x-check: &check {interval: 30s, threshold: 2}
health:
  tcp:
    - <<: *check
      addr: 'a:1'
";
    let loaded = load_ok(text, &[]);
    let tcp = &loaded.config.health.tcp[0];
    assert_eq!(
        (tcp.addr.as_str(), tcp.interval, tcp.threshold),
        ("a:1", secs(30), 2)
    );
    assert_eq!(loaded.warnings, ["unknown configuration key x-check"]);
}

#[test]
fn empty_env_values_read_as_null() {
    let text = "version: 0.1\nhttp: {secret: s}\nstorage: {delete: {enabled: true}, inmemory: }\n";
    let loaded = load_ok(
        text,
        &[
            ("REGISTRY_HTTP_SECRET", ""),
            ("REGISTRY_STORAGE_DELETE_ENABLED", ""),
        ],
    );
    assert_eq!(loaded.warnings, Vec::<String>::new());
    assert_eq!(loaded.config.http.secret, None);
    assert!(!loaded.config.storage.delete.enabled);
}

// ------------------------------------------------------------------ registry:2's leniency

#[test]
fn repeated_keys_keep_the_last_value_with_a_warning() {
    // gopkg.in/yaml.v2 keeps the last of repeated keys; distribution's own files repeat some.
    let text = "version: 0.1
storage:
  s3: {region: r, bucket: b, secure: false, secure: true}
http:
  addr: ':1'
http:
  addr: ':2'
";
    let loaded = load_ok(text, &[]);
    assert_eq!(loaded.config.http.addr, ":2");
    let StorageDriverConfig::S3(s3) = &loaded.config.storage.driver else {
        panic!("expected s3")
    };
    assert!(s3.secure);
    assert_eq!(
        loaded.warnings,
        [
            "configuration key storage.s3.secure is given more than once; the last one is used",
            "configuration key http is given more than once; the last one is used",
        ]
    );
}

#[test]
fn yaml_1_1_booleans_read_as_booleans() {
    // yaml.v2 resolves yes/no/on/off (and y/n) to booleans; a YAML 1.2 parser leaves strings.
    for (word, expected) in [
        ("yes", true),
        ("Yes", true),
        ("ON", true),
        ("y", true),
        ("no", false),
        ("Off", false),
        ("N", false),
        ("'true'", true),
        ("'0'", false),
    ] {
        let text = format!(
            "version: 0.1\nstorage: {{inmemory: , delete: {{enabled: {word}}}}}\nhttp: {{relativeurls: {word}}}\n"
        );
        let loaded = load_ok(&text, &[]);
        assert_eq!(loaded.config.storage.delete.enabled, expected, "{word}");
        assert_eq!(loaded.config.http.relativeurls, expected, "{word}");
        assert_eq!(loaded.warnings, Vec::<String>::new(), "{word}");
    }
}

#[test]
fn numbers_are_read_as_yaml_v2_reads_them() {
    let text = "version: 0.1
storage: {inmemory: , tag: {concurrencylimit: 4.9}}
catalog: {maxentries: '1_000'}
tags: {maxtags: '0x40'}
health:
  storagedriver: {enabled: true, interval: 1.5e9, threshold: '0b11'}
";
    let c = load_ok(text, &[]).config;
    assert_eq!(c.storage.tag.concurrencylimit, 4);
    assert_eq!(c.catalog.maxentries, 1000);
    assert_eq!(c.tags.maxtags, 64);
    assert_eq!(c.health.storagedriver.interval, Duration::from_millis(1500));
    assert_eq!(c.health.storagedriver.threshold, 3);
    // Zero or negative limits mean distribution's defaults.
    let text = "version: 0.1\nstorage: {filesystem: {maxthreads: -3}}\ncatalog: {maxentries: -1}\n";
    let c = load_ok(text, &[]).config;
    assert_eq!(c.catalog.maxentries, 1000);
    assert_eq!(
        c.storage.driver,
        StorageDriverConfig::Filesystem {
            rootdirectory: "/var/lib/registry".into(),
            maxthreads: 25
        }
    );
}

#[test]
fn unknown_cache_type_disables_caching_with_a_warning() {
    // registry:2 compares the names exactly and runs uncached on anything else.
    for (value, shown) in [("disk", "disk"), ("Redis", "Redis"), ("true", "true")] {
        let text =
            format!("version: 0.1\nstorage: {{inmemory: , cache: {{blobdescriptor: {value}}}}}\n");
        let loaded = load_ok(&text, &[]);
        assert_eq!(loaded.config.storage.cache.blobdescriptor, None);
        assert_eq!(
            loaded.warnings,
            [format!(
                "storage.cache.blobdescriptor: unknown cache type {shown:?}, caching disabled"
            )]
        );
    }
    // The deprecated name goes the same way.
    let loaded = load_ok(
        "version: 0.1\nstorage: {inmemory: , cache: {layerinfo: memcached}}\n",
        &[],
    );
    assert_eq!(loaded.config.storage.cache.blobdescriptor, None);
    assert_eq!(loaded.warnings.len(), 2, "{:?}", loaded.warnings);
    // With redis the size is not used, as registry:2 says.
    let loaded = load_ok(
        "version: 0.1\nstorage: {inmemory: , cache: {blobdescriptor: redis, blobdescriptorsize: 5}}\nredis: {addr: 'r:1'}\n",
        &[],
    );
    assert_eq!(
        loaded.warnings,
        ["storage.cache.blobdescriptorsize is ignored with the redis cache, as in registry:2"]
    );
}

#[test]
fn non_boolean_delete_flag_leaves_deletes_off() {
    let loaded = load_ok(
        "version: 0.1\nstorage: {inmemory: , delete: {enabled: maybe}}\n",
        &[],
    );
    assert!(!loaded.config.storage.delete.enabled);
    assert_eq!(
        loaded.warnings,
        [
            r#"storage.delete.enabled: "maybe" is not a boolean; deletes stay disabled, as in registry:2"#
        ]
    );
}

#[test]
fn deprecated_validation_enabled_overrides_disabled() {
    // registry:2: `if !Enabled { Enabled = !Disabled }`.
    let on = load_ok(
        &format!("{MINIMAL}validation: {{enabled: true, disabled: true}}\n"),
        &[],
    );
    assert!(!on.config.validation.disabled);
    assert!(on.warnings[0].contains("enabled: true overrides validation.disabled: true"));
    let off = load_ok(
        &format!("{MINIMAL}validation: {{enabled: false, disabled: true}}\n"),
        &[],
    );
    assert!(off.config.validation.disabled);
    assert_eq!(
        off.warnings,
        ["validation.enabled is deprecated; use validation.disabled"]
    );
}

#[test]
fn readonly_accepts_its_section_and_a_bare_boolean() {
    let base = "version: 0.1\nstorage:\n  inmemory:\n  maintenance:\n";
    let loaded = load_ok(&format!("{base}    readonly: {{enabled: true}}\n"), &[]);
    assert!(loaded.config.storage.maintenance.readonly.enabled);
    assert_eq!(loaded.warnings, Vec::<String>::new());
    let loaded = load_ok(&format!("{base}    readonly: true\n"), &[]);
    assert!(loaded.config.storage.maintenance.readonly.enabled);
    assert_eq!(
        loaded.warnings,
        ["storage.maintenance.readonly: true is read as storage.maintenance.readonly.enabled: true"]
    );
    let loaded = load_ok(
        MINIMAL,
        &[("REGISTRY_STORAGE_MAINTENANCE_READONLY_ENABLED", "true")],
    );
    assert!(loaded.config.storage.maintenance.readonly.enabled);
}

#[test]
fn letsencrypt_is_read_only_with_a_cache_file() {
    let tls = |extra: &str| {
        format!("{MINIMAL}http:\n  tls:\n    certificate: /c.pem\n    key: /k.pem\n{extra}")
    };
    // Without a cache file registry:2 never turns to ACME: the section is inert.
    let loaded = load_ok(
        &tls("    letsencrypt: {email: a@b, hosts: [r.example]}\n"),
        &[],
    );
    assert_eq!(loaded.config.http.tls.as_ref().unwrap().letsencrypt, None);
    assert_eq!(
        loaded.warnings,
        ["http.tls.letsencrypt is ignored: it has no cachefile, so registry:2 does not use it either"]
    );
    assert_eq!(loaded.config.unsupported(), Vec::<String>::new());
    // A cache file next to a certificate: registry:2 refuses, and so does Wharf.
    let msg = load_err(&tls("    letsencrypt: {cachefile: /le}\n"), &[]);
    assert!(
        msg.starts_with("http.tls.letsencrypt: cannot specify both"),
        "{msg}"
    );
    // ACME itself is named as not supported yet.
    let acme = format!("{MINIMAL}http:\n  tls:\n    letsencrypt: {{cachefile: /le, email: a@b}}\n");
    let c = load_ok(&acme, &[]).config;
    assert_eq!(c.unsupported().len(), 1);
    assert!(c.unsupported()[0].starts_with("http.tls.letsencrypt:"));
}

#[test]
fn redis_tls_and_sentinel_in_every_shape() {
    let redis = |redis: &str| -> RedisConfig {
        let c = load_ok(&format!("{MINIMAL}redis: {redis}\n"), &[]).config;
        assert_eq!(c.unsupported(), Vec::<String>::new(), "{redis}");
        c.redis.unwrap()
    };
    // An empty or switched-off tls section asks for nothing (the docs' full list ends with one).
    assert!(!redis("{addrs: ['r:1'], tls: {}}").wants_tls());
    assert!(!redis("{addrs: ['r:1'], tls: {enabled: false}}").wants_tls());
    assert!(redis("{addrs: ['r:1'], tls: {rootcas: [/ca]}}").wants_tls());
    assert!(redis("{addrs: ['r:1'], tls: {clientcas: [/ca]}}").wants_tls());
    assert!(redis("{addr: 'r:1', enableTLS: true}").wants_tls());
    assert!(!redis("{addr: 'r:1', enableTLS: false}").wants_tls());
    // v3: sentinels in addrs plus mastername; Harbor: comma-separated addr plus sentinelMasterSet.
    let v3 = redis("{addrs: ['s1:26379', 's2:26379'], mastername: m, sentinelpassword: p}");
    assert_eq!(v3.mastername.as_deref(), Some("m"));
    assert_eq!(v3.sentinelpassword.as_deref(), Some("p"));
    let harbor = redis("{addr: 's1:26379,s2:26379', sentinelMasterSet: mymaster, db: 1}");
    assert_eq!(harbor.mastername.as_deref(), Some("mymaster"));
    assert_eq!(harbor.addresses(), ["s1:26379", "s2:26379"]);
    assert_eq!(redis("{addrs: ['a:1', 'b:1']}").addresses(), ["a:1", "b:1"]);
    // Overrides reach every key.
    let c = load_ok(
        &format!("{MINIMAL}redis: {{addrs: ['r:1']}}\n"),
        &[
            ("REGISTRY_REDIS_MASTERNAME", "primary"),
            ("REGISTRY_REDIS_SENTINELUSERNAME", "su"),
            ("REGISTRY_REDIS_TLS_ROOTCAS", "[/ca.pem]"),
            ("REGISTRY_REDIS_POOL_MAXACTIVE", "9"),
        ],
    )
    .config;
    let redis = c.redis.unwrap();
    assert_eq!(redis.mastername.as_deref(), Some("primary"));
    assert_eq!(redis.sentinelusername.as_deref(), Some("su"));
    assert_eq!(redis.tls.unwrap().rootcas, [PathBuf::from("/ca.pem")]);
    assert_eq!(redis.pool.unwrap().maxactive, Some(9));
}

#[test]
fn notifications_endpoints_start_with_their_settings() {
    let endpoint = "{name: hook, url: 'https://hooks.example/e', timeout: 500ms, threshold: 5, backoff: 2s, ignoredmediatypes: [a/b], ignore: {mediatypes: [c/d], actions: [pull]}, headers: {Authorization: [Bearer t]}}";
    // No endpoints, or only disabled ones: nothing to deliver, so nothing refused.
    for section in [
        "notifications: {events: {includereferences: true}}",
        "notifications: {endpoints: []}",
        "notifications: {endpoints: [{name: a, url: 'http://a/', disabled: true}, {name: b, disabled: true}]}",
    ] {
        let loaded = load_ok(&format!("{MINIMAL}{section}\n"), &[]);
        assert_eq!(loaded.warnings, Vec::<String>::new(), "{section}");
        assert_eq!(loaded.config.unsupported(), Vec::<String>::new(), "{section}");
    }
    let text = format!("{MINIMAL}notifications: {{endpoints: [{endpoint}]}}\n");
    let loaded = load_ok(&text, &[]);
    assert_eq!(loaded.warnings, Vec::<String>::new());
    let e = &loaded.config.notifications.endpoints[0];
    assert_eq!(
        (
            e.name.as_str(),
            e.url.as_str(),
            e.timeout,
            e.threshold,
            e.backoff
        ),
        (
            "hook",
            "https://hooks.example/e",
            Duration::from_millis(500),
            5,
            secs(2)
        )
    );
    assert_eq!(e.ignoredmediatypes, ["a/b"]);
    assert_eq!(
        (e.ignore.mediatypes.as_slice(), e.ignore.actions.as_slice()),
        (&["c/d".to_string()][..], &["pull".to_string()][..])
    );
    assert_eq!(e.headers, headers(&[("Authorization", &["Bearer t"])]));
    // An enabled endpoint starts too; the backlog bound has Wharf's defaults.
    assert_eq!(loaded.config.unsupported(), Vec::<String>::new());
    assert_eq!(
        (e.backlog.maxevents, e.backlog.maxbytes),
        (100_000, 256 << 20)
    );
    let c = load_ok(
        &text,
        &[
            ("REGISTRY_NOTIFICATIONS_ENDPOINTS_0_DISABLED", "true"),
            ("REGISTRY_NOTIFICATIONS_ENDPOINTS_0_BACKLOG_MAXEVENTS", "7"),
        ],
    )
    .config;
    assert!(c.notifications.endpoints[0].disabled);
    assert_eq!(c.notifications.endpoints[0].backlog.maxevents, 7);
    assert_eq!(c.unsupported(), Vec::<String>::new());
}

#[test]
fn proxy_is_parsed_and_served() {
    let text = format!(
        "{MINIMAL}proxy: {{remoteurl: 'https://registry-1.docker.io', username: u, password: p, ttl: 72h}}\n"
    );
    let loaded = load_ok(
        &text,
        &[
            ("REGISTRY_PROXY_PASSWORD", "from-env"),
            ("REGISTRY_PROXY_CACHEWRITETIMEOUT", "2m"),
        ],
    );
    assert_eq!(loaded.warnings, Vec::<String>::new());
    let proxy = loaded.config.proxy.clone().unwrap();
    assert_eq!(
        proxy.remoteurl.as_deref(),
        Some("https://registry-1.docker.io")
    );
    assert_eq!(proxy.username.as_deref(), Some("u"));
    assert_eq!(proxy.password.as_deref(), Some("from-env"));
    assert_eq!(proxy.ttl, Some(secs(72 * 3600)));
    assert_eq!(proxy.cachewritetimeout, Some(secs(120)));
    assert_eq!(loaded.config.unsupported(), Vec::<String>::new());
    // Credentials without an upstream are not proxy mode.
    let c = load_ok(&format!("{MINIMAL}proxy: {{username: u}}\n"), &[]).config;
    assert_eq!(c.unsupported(), Vec::<String>::new());
}

#[test]
fn azure_gcs_and_swift_take_their_keys() {
    let azure = "version: 0.1
storage:
  azure:
    accountname: acct
    accountkey: a2V5
    container: images
    realm: core.chinacloudapi.cn
    rootdirectory: /reg
    serviceurl: https://acct.blob.example
    credentials: {type: client_secret, clientid: c, tenantid: t, secret: s}
    max_retries: 7
    retry_delay: 250ms
";
    let loaded = load_ok(azure, &[("REGISTRY_STORAGE_AZURE_SKIPVERIFY", "true")]);
    assert_eq!(loaded.warnings, Vec::<String>::new());
    let StorageDriverConfig::Azure(a) = &loaded.config.storage.driver else {
        panic!("expected azure")
    };
    assert_eq!(
        (
            a.accountname.as_str(),
            a.accountkey.as_deref(),
            a.container.as_str()
        ),
        ("acct", Some("a2V5"), "images")
    );
    assert_eq!(
        (a.realm.as_str(), a.rootdirectory.as_str()),
        ("core.chinacloudapi.cn", "/reg")
    );
    assert_eq!(a.serviceurl.as_deref(), Some("https://acct.blob.example"));
    assert_eq!(a.credentials.kind, "client_secret");
    assert_eq!(a.credentials.secret.as_deref(), Some("s"));
    assert_eq!(
        (a.max_retries, a.retry_delay),
        (7, Duration::from_millis(250))
    );
    assert!(a.skipverify);
    // Defaults and required keys.
    let c = load_ok(
        "version: 0.1\nstorage: {azure: {accountname: a, accountkey: k, container: c}}\n",
        &[],
    )
    .config;
    let StorageDriverConfig::Azure(a) = &c.storage.driver else {
        panic!()
    };
    assert_eq!(
        (a.realm.as_str(), a.max_retries, a.retry_delay),
        ("core.windows.net", 5, Duration::from_millis(100))
    );
    assert_eq!(
        load_err("version: 0.1\nstorage: {azure: {accountname: a}}\n", &[]),
        "storage.azure.container: required, but empty"
    );
    // Shared Key needs the key (distribution 2.8 refuses a config without it too).
    assert_eq!(
        load_err(
            "version: 0.1\nstorage: {azure: {accountname: a, container: c}}\n",
            &[]
        ),
        "storage.azure.accountkey: required, but empty"
    );
    let msg = load_err("version: 0.1\nstorage: {azure: {accountname: a, container: c, credentials: {type: magic}}}\n", &[]);
    assert!(
        msg.starts_with("storage.azure.credentials.type: invalid value \"magic\""),
        "{msg}"
    );

    let gcs = "version: 0.1
storage:
  gcs:
    bucket: b
    credentials: {type: service_account, project_id: p, private_key: k, client_email: e@x}
    rootdirectory: /r
    chunksize: 5242880
";
    let loaded = load_ok(
        gcs,
        &[
            ("REGISTRY_STORAGE_GCS_KEYFILE", "/k.json"),
            ("REGISTRY_STORAGE_GCS_MAXCONCURRENCY", "10"),
        ],
    );
    assert_eq!(loaded.warnings, Vec::<String>::new());
    let StorageDriverConfig::Gcs(g) = &loaded.config.storage.driver else {
        panic!()
    };
    assert_eq!(
        (g.bucket.as_str(), g.rootdirectory.as_str(), g.chunksize),
        ("b", "/r", 5 * 1024 * 1024)
    );
    assert_eq!(g.keyfile.as_deref(), Some(Path::new("/k.json")));
    assert_eq!(g.credentials.get("client_email"), Some(&"e@x".into()));
    assert_eq!(g.maxconcurrency, 25, "raised to distribution's floor");
    let msg = load_err(
        "version: 0.1\nstorage: {gcs: {bucket: b, chunksize: 300000}}\n",
        &[],
    );
    assert!(
        msg.starts_with("storage.gcs.chunksize: 300000 is not a multiple"),
        "{msg}"
    );

    let swift = "version: 0.1
storage:
  swift:
    authurl: https://keystone.example/v3
    username: u
    password: p
    container: c
    region: fr
    tenant: 123
    domain: Default
    authversion: 3
    endpointtype: internal
    insecureskipverify: true
    chunksize: 5242880
    prefix: /reg
    secretkey: tempkey
    tempurlcontainerkey: true
    tempurlmethods: [GET]
";
    let loaded = load_ok(swift, &[("REGISTRY_STORAGE_SWIFT_TENANTID", "42")]);
    assert_eq!(loaded.warnings, Vec::<String>::new());
    let StorageDriverConfig::Swift(sw) = &loaded.config.storage.driver else {
        panic!()
    };
    assert_eq!(
        (
            sw.authurl.as_str(),
            sw.username.as_str(),
            sw.password.as_str(),
            sw.container.as_str()
        ),
        ("https://keystone.example/v3", "u", "p", "c")
    );
    // Numbers given as a tenant are its text, as distribution's driver reads them.
    assert_eq!(
        (sw.tenant.as_deref(), sw.tenantid.as_deref()),
        (Some("123"), Some("42"))
    );
    assert_eq!(
        (
            sw.authversion,
            sw.endpointtype.as_deref(),
            sw.insecureskipverify
        ),
        (3, Some("internal"), true)
    );
    assert_eq!(
        (sw.chunksize, sw.prefix.as_str(), sw.secretkey.as_deref()),
        (5 * 1024 * 1024, "/reg", Some("tempkey"))
    );
    assert!(sw.tempurlcontainerkey);
    assert_eq!(sw.tempurlmethods, ["GET"]);
    assert_eq!(
        load_err(
            "version: 0.1\nstorage: {swift: {authurl: 'http://k', username: u, password: p}}\n",
            &[]
        ),
        "storage.swift.container: required, but empty"
    );
    assert_eq!(
        load_ok(azure, &[]).config.unsupported(),
        Vec::<String>::new()
    );
    assert_eq!(load_ok(gcs, &[]).config.unsupported(), Vec::<String>::new());
    // Keystone (`authversion: 3`) is served.
    assert_eq!(
        load_ok(swift, &[]).config.unsupported(),
        Vec::<String>::new()
    );
    // An auth version ncw/swift does not know, and an endpoint interface Keystone's catalog
    // has not, are refused naming the key (registry:2 fails to authenticate with them).
    assert_eq!(
        load_err(&swift.replace("authversion: 3", "authversion: 4"), &[]),
        "storage.swift.authversion: 4 is not an auth version: must be 1, 2 or 3"
    );
    assert_eq!(
        load_err(&swift.replace("endpointtype: internal", "endpointtype: private"), &[]),
        "storage.swift.endpointtype: invalid value \"private\": must be one of public, internal, admin"
    );
    // Tempauth ignores the interface, as ncw/swift's v1 does.
    let v1 = swift
        .replace("authversion: 3", "authversion: 1")
        .replace("endpointtype: internal", "endpointtype: private");
    assert_eq!(load_ok(&v1, &[]).config.unsupported(), Vec::<String>::new());
}

#[test]
fn log_hooks_warn_only_when_one_is_enabled() {
    let hook = |disabled: bool| {
        format!("{MINIMAL}log:\n  hooks:\n    - type: mail\n      disabled: {disabled}\n      levels: [panic]\n      options:\n        smtp: {{addr: 'mail:25', username: u, password: p, insecure: true}}\n        from: a@b\n        to: [c@d]\n")
    };
    let loaded = load_ok(&hook(true), &[]);
    assert_eq!(loaded.warnings, Vec::<String>::new());
    let h = &loaded.config.log.hooks[0];
    assert_eq!(
        (
            h.kind.as_str(),
            h.options.smtp.addr.as_str(),
            h.options.to.as_slice()
        ),
        ("mail", "mail:25", &["c@d".to_string()][..])
    );
    assert_eq!(
        load_ok(&hook(false), &[]).warnings,
        ["log.hooks is ignored: Wharf sends no log mail"]
    );
}

#[test]
fn unverifiable_signing_algorithms_are_accepted_with_a_warning() {
    // The documentation's example lists HS256 and ES512 next to EdDSA.
    let text = format!(
        "{MINIMAL}auth:\n  token: {{realm: r, service: s, issuer: i, rootcertbundle: /b.pem, signingalgorithms: [EdDSA, HS256, ES512]}}\n"
    );
    let loaded = load_ok(&text, &[]);
    assert_eq!(
        loaded.warnings,
        ["auth.token.signingalgorithms: HS256, ES512 admit no token: tokens are verified with public keys of the other listed algorithms"]
    );
}

#[test]
fn proxy_upstreams_take_their_keys_and_are_checked() {
    let text = format!(
        "{MINIMAL}proxy:\n  tagrecheck: 30s\n  upstreams:\n    - {{prefix: 'docker.io/*', remoteurl: 'https://registry-1.docker.io', username: u, password: p, ttl: 24h, tokenrealms: ['https://auth.docker.io/token']}}\n    - {{prefix: ghcr.io, remoteurl: 'https://ghcr.io', ttl: 0}}\n"
    );
    let loaded = load_ok(&text, &[]);
    assert_eq!(loaded.warnings, Vec::<String>::new());
    let proxy = loaded.config.proxy.clone().unwrap();
    assert_eq!(proxy.tagrecheck, Some(secs(30)));
    assert_eq!(proxy.upstreams.len(), 2);
    assert_eq!(proxy.upstreams[0].bare_prefix(), "docker.io");
    assert_eq!(proxy.upstreams[0].ttl, Some(secs(24 * 3600)));
    assert_eq!(
        proxy.upstreams[0].tokenrealms,
        ["https://auth.docker.io/token"]
    );
    assert_eq!(proxy.upstreams[1].ttl, Some(secs(0)));
    for bad in [
        "proxy: {remoteurl: 'registry-1.docker.io'}",
        "proxy: {upstreams: [{prefix: a, remoteurl: 'ftp://x'}]}",
        "proxy: {upstreams: [{prefix: '', remoteurl: 'https://x'}]}",
        "proxy: {upstreams: [{prefix: a, remoteurl: 'https://x'}, {prefix: 'a/*', remoteurl: 'https://y'}]}",
    ] {
        assert!(load_with(&format!("{MINIMAL}{bad}\n"), &[]).is_err(), "{bad}");
    }
}
