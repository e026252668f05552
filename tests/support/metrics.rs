//! The Prometheus text format as a registry's debug server writes it, parsed for assertions on
//! counters and histograms.

use std::collections::BTreeMap;

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
