//! Helpers for the operations tests: a node with its debug server, Prometheus
//! text parsing, and bounded waits on the debug endpoints.
//!
//! Included with `#[path = "support/ops.rs"] mod ops;` next to `mod support;`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::thread;
use std::time::{Duration, Instant};

use super::support::{free_port, http_client, Driver, Registry, RegistryBuilder, WAIT_LIMIT};

/// A registry whose debug server listens on its own free port.
pub struct Node {
    pub registry: Registry,
    pub debug_port: u16,
}

impl Node {
    /// `builder` plus `http.debug` on a free port (Prometheus on when `metrics`).
    pub fn start(builder: RegistryBuilder, metrics: bool) -> Node {
        let debug_port = free_port();
        let registry = builder
            .http_line(&format!(
                "  debug:\n    addr: 127.0.0.1:{debug_port}\n    prometheus:\n      enabled: {metrics}\n      path: /metrics"
            ))
            .start();
        Node {
            registry,
            debug_port,
        }
    }

    /// The usual node for a driver, metrics on.
    pub fn with_metrics(driver: Driver) -> Node {
        Node::start(Registry::builder(driver), true)
    }

    /// `GET http://127.0.0.1:<debug port><path>`: status and body.
    pub fn debug_get(&self, path: &str) -> (u16, String) {
        let resp = http_client()
            .get(format!("http://127.0.0.1:{}{path}", self.debug_port))
            .send()
            .unwrap_or_else(|e| panic!("GET {path} on the debug port: {e}"));
        let status = resp.status().as_u16();
        (status, resp.text().unwrap_or_default())
    }

    /// A parsed scrape of `/metrics`.
    pub fn scrape(&self) -> Scrape {
        let (status, text) = self.debug_get("/metrics");
        assert_eq!(status, 200, "GET /metrics: {text}");
        Scrape::parse(&text)
    }

    /// Scrapes until `done` holds (bounded by `WAIT_LIMIT`); returns the last
    /// scrape either way, for the caller's assertions to explain.
    pub fn scrape_until(&self, done: impl Fn(&Scrape) -> bool) -> Scrape {
        wait_until(|| {
            let s = self.scrape();
            if done(&s) {
                Ok(s)
            } else {
                Err(s)
            }
        })
    }

    /// Polls a debug path until it answers `status` (bounded); returns the last answer.
    pub fn wait_debug(&self, path: &str, status: u16) -> (u16, String) {
        wait_until(|| {
            let answer = self.debug_get(path);
            if answer.0 == status {
                Ok(answer)
            } else {
                Err(answer)
            }
        })
    }
}

/// Retries `attempt` every 100 ms until it succeeds or `WAIT_LIMIT` passes;
/// returns the success or the last failure's value.
pub fn wait_until<T>(mut attempt: impl FnMut() -> Result<T, T>) -> T {
    let deadline = Instant::now() + WAIT_LIMIT;
    loop {
        match attempt() {
            Ok(v) => return v,
            Err(v) if Instant::now() > deadline => return v,
            Err(_) => thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// One sample: metric name and labels.
pub type Series = (String, BTreeMap<String, String>);

/// A Prometheus text exposition, parsed.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    pub samples: Vec<(Series, f64)>,
    /// `# TYPE` lines: family name -> type.
    pub types: BTreeMap<String, String>,
}

impl Scrape {
    /// Parses the text format (what the `prometheus` crate writes).
    pub fn parse(text: &str) -> Scrape {
        let mut scrape = Scrape::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split_whitespace();
                if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                    scrape.types.insert(name.to_string(), kind.to_string());
                }
                continue;
            }
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("sample line");
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
            };
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, parse_labels(rest.trim_end_matches('}'))),
                None => (series, BTreeMap::new()),
            };
            scrape.samples.push(((name.to_string(), labels), value));
        }
        scrape
    }

    /// Sum of every sample of `name` whose labels include `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|(_, v)| v).sum()
    }

    /// The samples of `name` whose labels include `labels`.
    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = (&'a BTreeMap<String, String>, f64)> + 'a {
        self.samples.iter().filter_map(move |((n, l), v)| {
            (n == name
                && labels
                    .iter()
                    .all(|(k, want)| l.get(*k).is_some_and(|got| got == want)))
            .then_some((l, *v))
        })
    }

    /// The label names used by the samples of `name`.
    pub fn label_names(&self, name: &str) -> Vec<Vec<String>> {
        let mut sets: Vec<Vec<String>> = self
            .matching(name, &[])
            .map(|(l, _)| l.keys().cloned().collect())
            .collect();
        sets.sort();
        sets.dedup();
        sets
    }
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(match escaped {
                            'n' => '\n',
                            other => other,
                        });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                other => value.push(other),
            }
        }
        labels.insert(key.trim_start_matches(',').trim().to_string(), value);
        rest = &after[end..];
    }
    labels
}

#[test]
fn parses_the_text_format() {
    let s = Scrape::parse(
        "# TYPE a counter\na{x=\"1\",y=\"q\\\"z\"} 3\na{x=\"2\"} 4\nb 1.5\nc_bucket{le=\"+Inf\"} 2\n",
    );
    assert_eq!(s.sum("a", &[]), 7.0);
    assert_eq!(s.sum("a", &[("y", "q\"z")]), 3.0);
    assert_eq!(s.sum("b", &[]), 1.5);
    assert_eq!(s.sum("c_bucket", &[("le", "+Inf")]), 2.0);
    assert_eq!(s.types["a"], "counter");
}
