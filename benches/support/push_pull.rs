//! What the push/pull comparisons (`s3_compare`, `object_store_compare`) share: their options,
//! the 3-layer image they copy, timing, medians, storage calls counted by operation, and the
//! report file. Included by path next to the tests' `support` module, which it uses.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::*;

/// Calls (or requests) by operation.
pub type Calls = BTreeMap<String, usize>;

/// `--name N` among `args`, or `default`.
pub fn value(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `--rounds` (default 3) and `--layer-mib` (default 4), each at least 1.
pub fn rounds_and_layer_mib(args: &[String]) -> (usize, usize) {
    (
        value(args, "--rounds", 3).max(1),
        value(args, "--layer-mib", 4).max(1),
    )
}

/// An OCI layout in `dir` with `image`: 3 random, uncompressed tar layers of `layer_mib` MiB,
/// a config and an OCI manifest.
pub fn three_layer_image(dir: &Path, layer_mib: usize) -> OciLayout {
    let mut layout = OciLayout::create(dir);
    let mut prng = Prng::new(0x5eed);
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for i in 0..3 {
        let content = prng.bytes(layer_mib << 20);
        let tar = layout::tar_with_file(&format!("layer{i}.bin"), &content);
        let digest = layout.add_blob(&tar);
        diff_ids.push(digest.clone());
        layers.push(descriptor(
            "application/vnd.oci.image.layer.v1.tar",
            &digest,
            tar.len() as u64,
        ));
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let config_digest = layout.add_blob(&config);
    let manifest = Manifest::from_value(
        OCI_MANIFEST,
        &serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, &config_digest, config.len() as u64),
            "layers": layers,
        }),
    );
    layout.add_blob(&manifest.body);
    layout.tag("image", &manifest);
    layout
}

/// How long `copy` took.
pub fn timed(copy: impl FnOnce()) -> Duration {
    let started = Instant::now();
    copy();
    started.elapsed()
}

/// The median, in seconds.
pub fn median(values: &[Duration]) -> f64 {
    let mut v: Vec<f64> = values.iter().map(|d| d.as_secs_f64()).collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// `after - before` by operation, operations that did not change left out.
pub fn delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> Calls {
    after
        .iter()
        .map(|(op, n)| {
            (
                op.clone(),
                (n - before.get(op).unwrap_or(&0.0)).round() as usize,
            )
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// Appends `title` and one `- operation: count` line per operation.
pub fn write_by_operation(report: &mut String, title: &str, calls: &Calls) {
    let _ = writeln!(report, "{title}");
    for (op, n) in calls {
        let _ = writeln!(report, "- {op}: {n}");
    }
}

/// Prints the report and writes it to `target/bench-results/<name>-<unix time>.md`.
pub fn save_report(name: &str, report: &str) {
    println!("{report}");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-results");
    let _ = std::fs::create_dir_all(&dir);
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let file = dir.join(format!("{name}-{stamp}.md"));
    if std::fs::write(&file, report).is_ok() {
        println!("written to {}", file.display());
    }
}
