//! `--report`: turns the records `compare.sh` collected (one JSON object a line, one per
//! workload run) into the comparison table, as markdown and as JSON.
//!
//! A record: `{"server": "wharf"|"distribution", "round": 1, "case": "push-mono-1",
//! "peak_rss_kib": .., "base_rss_kib": .., "during_rss_kib": .., "server_read_bytes": ..,
//! "server_cpu_s": .., "result": <the loadgen result line> | null, "failure": ".."}`.
//! Records of server `"limit"` carry the machine's limits measured in the same run (the null
//! server under a case's load, `sha256-per-core`, `dd-fdatasync`): `{"figure": .., "unit": ..}`.
//! Every figure is the median over the rounds.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::client::Result;

const SERVERS: [&str; 2] = ["wharf", "distribution"];
/// Suffix of the cases served over `http.tls`; each is compared with the case without it.
const TLS_SUFFIX: &str = "-tls";
/// TLS throughput against the same workload over plain HTTP, wharf only.
const TLS_TARGET: f64 = 0.85;

/// Runs of one case on one server.
#[derive(Default)]
struct Runs {
    figures: Vec<f64>,
    errors: u64,
    failures: Vec<String>,
    peak_rss_kib: Vec<f64>,
    /// Server RSS growth per open upload (slow-uploads only), KiB.
    growth_kib: Vec<f64>,
    base_rss_kib: Vec<f64>,
    during_rss_kib: Vec<f64>,
    /// Bytes the server read (rchar) per byte it served (range only).
    read_per_served: Vec<f64>,
    cpu_s: Vec<f64>,
    /// Operations per CPU-second of the server (handshake only: the server's cost of a new
    /// connection, whatever share of its core other work on the machine left it).
    ops_per_cpu_s: Vec<f64>,
}

struct Case {
    name: String,
    workload: String,
    unit: String,
    servers: BTreeMap<&'static str, Runs>,
}

fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// The goal for a case: the wharf/distribution ratio to reach, and whether it is a floor
/// (throughput) or a ceiling (memory). Over TLS, pushes and pulls aim at 3x.
fn target(case: &str, workload: &str) -> Option<(f64, bool)> {
    if case.ends_with(TLS_SUFFIX) && matches!(workload, "push-mono" | "pull") {
        return Some((3.0, true));
    }
    match workload {
        "push-mono" | "push-chunked" => Some((3.0, true)),
        "pull" => Some((1.5, true)),
        "manifest-get" | "blob-head" | "small-push" | "catalog" | "tags" => Some((5.0, true)),
        "slow-uploads" => Some((0.2, false)),
        _ => None,
    }
}

fn num(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64)
}

/// The machine's limits by case name: every round's figure and the unit.
type Limits = BTreeMap<String, (Vec<f64>, String)>;

fn load(records: &str) -> Result<(Vec<Case>, Limits)> {
    let mut cases: Vec<Case> = Vec::new();
    let mut limits = Limits::new();
    for (n, line) in records
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let record: Value =
            serde_json::from_str(line).map_err(|e| format!("record {}: {e}", n + 1))?;
        if record["server"] == "limit" {
            let name = record["case"].as_str().unwrap_or("?").to_string();
            let entry = limits.entry(name).or_default();
            if let Some(figure) = num(&record["result"], "figure") {
                entry.0.push(figure);
            }
            entry.1 = record["result"]["unit"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            continue;
        }
        let Some(server) = SERVERS.iter().find(|s| record["server"] == **s) else {
            return Err(format!("record {}: unknown server {}", n + 1, record["server"]).into());
        };
        let name = record["case"].as_str().unwrap_or("?").to_string();
        let result = &record["result"];
        let index = match cases.iter().position(|c| c.name == name) {
            Some(i) => i,
            None => {
                cases.push(Case {
                    name: name.clone(),
                    workload: String::new(),
                    unit: String::new(),
                    servers: BTreeMap::new(),
                });
                cases.len() - 1
            }
        };
        let case = &mut cases[index];
        if case.workload.is_empty() {
            case.workload = result["workload"].as_str().unwrap_or_default().to_string();
        }
        let runs = case.servers.entry(server).or_default();
        if let Some(kib) = num(&record, "peak_rss_kib") {
            runs.peak_rss_kib.push(kib);
        }
        if let Some(cpu) = num(&record, "server_cpu_s") {
            runs.cpu_s.push(cpu);
        }
        if result.is_null() {
            let why = record["failure"].as_str().unwrap_or("no result");
            runs.failures.push(why.to_string());
            continue;
        }
        runs.errors += result["errors"].as_u64().unwrap_or(0);
        if case.workload == "slow-uploads" {
            // The headline for slow uploads is memory, measured from outside.
            let (Some(base), Some(during)) =
                (num(&record, "base_rss_kib"), num(&record, "during_rss_kib"))
            else {
                continue;
            };
            let uploads = num(result, "streams").unwrap_or(1.0).max(1.0);
            runs.base_rss_kib.push(base);
            runs.during_rss_kib.push(during);
            runs.growth_kib.push((during - base).max(0.0) / uploads);
            runs.figures.push((during - base).max(0.0) / uploads);
            case.unit = "KiB per open upload".into();
            continue;
        }
        if let Some(figure) = num(result, "figure") {
            runs.figures.push(figure);
        }
        if let (Some(ops), Some(cpu)) = (num(result, "ops"), num(&record, "server_cpu_s")) {
            if case.workload == "handshake" && cpu > 0.0 {
                runs.ops_per_cpu_s.push(ops / cpu);
            }
        }
        if case.unit.is_empty() {
            case.unit = result["unit"].as_str().unwrap_or_default().to_string();
        }
        if let (Some(read), Some(served)) =
            (num(&record, "server_read_bytes"), num(result, "bytes"))
        {
            if case.workload == "range" && served > 0.0 {
                runs.read_per_served.push(read / served);
            }
        }
    }
    Ok((cases, limits))
}

fn fmt_figure(x: Option<f64>) -> String {
    match x {
        None => "n/a".into(),
        Some(x) if x >= 100.0 => format!("{x:.0}"),
        Some(x) if x >= 10.0 => format!("{x:.1}"),
        Some(x) => format!("{x:.2}"),
    }
}

fn fmt_mib(kib: Option<f64>) -> String {
    kib.map_or("n/a".into(), |k| format!("{:.1}", k / 1024.0))
}

fn runs_of<'a>(case: &'a Case, server: &str) -> Option<&'a Runs> {
    case.servers.get(server)
}

/// Renders the table; returns (markdown, JSON summary).
pub fn render(records: &str, title: &str) -> Result<(String, Value)> {
    let (cases, limits) = load(records)?;
    let limit = |name: &str| limits.get(name).and_then(|(v, _)| median(v));
    let mut md = String::new();
    let mut summary = Vec::new();
    let mut checks = Vec::new();
    writeln!(md, "## {title}\n")?;
    writeln!(
        md,
        "| workload | unit | wharf | distribution | ratio | target | null server | errors (w / d) | peak RSS MiB (w / d) |"
    )?;
    writeln!(md, "|---|---|---:|---:|---:|---|---:|---|---|")?;
    for case in &cases {
        let w = runs_of(case, "wharf");
        let d = runs_of(case, "distribution");
        let wm = w.and_then(|r| median(&r.figures));
        let dm = d.and_then(|r| median(&r.figures));
        let ratio = match (wm, dm) {
            (Some(w), Some(d)) if d > 0.0 => Some(w / d),
            _ => None,
        };
        let goal = target(&case.name, &case.workload);
        let met = match (ratio, goal) {
            (Some(r), Some((t, true))) => Some(r >= t),
            (Some(r), Some((t, false))) => Some(r <= t),
            _ => None,
        };
        let target_text = match (goal, met) {
            (None, _) => "—".to_string(),
            (Some((t, floor)), met) => format!(
                "{}{t}×{}",
                if floor { "≥" } else { "≤" },
                match met {
                    Some(true) => " ✓",
                    Some(false) => " ✗",
                    None => "",
                }
            ),
        };
        if let (Some((t, floor)), Some(met)) = (goal, met) {
            checks.push(
                json!({"case": case.name, "ratio": ratio, "target": t, "floor": floor, "met": met}),
            );
        }
        let errors = |r: Option<&Runs>| {
            r.map_or("—".into(), |r| {
                if r.failures.is_empty() {
                    r.errors.to_string()
                } else {
                    format!("{} +{} failed runs", r.errors, r.failures.len())
                }
            })
        };
        let rss = |r: Option<&Runs>| fmt_mib(r.and_then(|r| median(&r.peak_rss_kib)));
        writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} / {} | {} / {} |",
            case.name,
            case.unit,
            fmt_figure(wm),
            fmt_figure(dm),
            ratio.map_or("—".into(), |r| format!("{r:.2}×")),
            target_text,
            limit(&case.name).map_or("—".into(), |l| fmt_figure(Some(l))),
            errors(w),
            errors(d),
            rss(w),
            rss(d),
        )?;
        let per_server: serde_json::Map<String, Value> = case
            .servers
            .iter()
            .map(|(server, r)| {
                (
                    server.to_string(),
                    json!({
                        "median": median(&r.figures),
                        "runs": r.figures,
                        "errors": r.errors,
                        "failed_runs": r.failures,
                        "peak_rss_kib": median(&r.peak_rss_kib),
                        "server_cpu_s": median(&r.cpu_s),
                        "ops_per_server_cpu_s": median(&r.ops_per_cpu_s),
                        "read_per_served": median(&r.read_per_served),
                        "base_rss_kib": median(&r.base_rss_kib),
                        "during_rss_kib": median(&r.during_rss_kib),
                    }),
                )
            })
            .collect();
        summary.push(json!({
            "case": case.name,
            "workload": case.workload,
            "unit": case.unit,
            "servers": per_server,
            "ratio": ratio,
            "target": goal.map(|(t, floor)| json!({"ratio": t, "floor": floor})),
            "met": met,
            "null_server": limit(&case.name),
        }));
    }
    tls_section(&cases, &mut md, &mut checks)?;
    handshake_section(&cases, &mut md)?;
    if let (Some(sha), Some(dd)) = (limit("sha256-per-core"), limit("dd-fdatasync")) {
        writeln!(
            md,
            "\nMachine limits in this run (medians of the rounds): SHA-256 {sha:.0} MB/s per core, \
             `dd bs=1M count=1024 conv=fdatasync` {dd:.0} MB/s; null server as in the table."
        )?;
    }

    writeln!(md, "\n### Memory and reads\n")?;
    writeln!(
        md,
        "| server | peak RSS, all runs (MiB) | peak RSS, pull (MiB) | RSS before slow uploads (MiB) | RSS with them open (MiB) | growth per open upload (KiB) | range: bytes read per byte served |"
    )?;
    writeln!(md, "|---|---:|---:|---:|---:|---:|---:|")?;
    let mut memory = serde_json::Map::new();
    for server in SERVERS {
        let all: Vec<&Runs> = cases.iter().filter_map(|c| runs_of(c, server)).collect();
        if all.is_empty() {
            continue;
        }
        let of_workload = |workload: &str| -> Vec<&Runs> {
            cases
                .iter()
                .filter(|c| c.workload == workload)
                .filter_map(|c| runs_of(c, server))
                .collect()
        };
        let max = |values: Vec<f64>| values.into_iter().reduce(f64::max);
        let peak_all = max(all.iter().flat_map(|r| r.peak_rss_kib.clone()).collect());
        let peak_pull = max(of_workload("pull")
            .iter()
            .flat_map(|r| r.peak_rss_kib.clone())
            .collect());
        let slow = of_workload("slow-uploads");
        let base = median(
            &slow
                .iter()
                .flat_map(|r| r.base_rss_kib.clone())
                .collect::<Vec<_>>(),
        );
        let during = median(
            &slow
                .iter()
                .flat_map(|r| r.during_rss_kib.clone())
                .collect::<Vec<_>>(),
        );
        let growth = median(
            &slow
                .iter()
                .flat_map(|r| r.growth_kib.clone())
                .collect::<Vec<_>>(),
        );
        let amplification = median(
            &of_workload("range")
                .iter()
                .flat_map(|r| r.read_per_served.clone())
                .collect::<Vec<_>>(),
        );
        writeln!(
            md,
            "| {server} | {} | {} | {} | {} | {} | {} |",
            fmt_mib(peak_all),
            fmt_mib(peak_pull),
            fmt_mib(base),
            fmt_mib(during),
            fmt_figure(growth),
            amplification.map_or("n/a".into(), |a| format!("{a:.3}")),
        )?;
        memory.insert(
            server.into(),
            json!({
                "peak_rss_kib": peak_all,
                "pull_peak_rss_kib": peak_pull,
                "slow_uploads_base_rss_kib": base,
                "slow_uploads_during_rss_kib": during,
                "growth_per_upload_kib": growth,
                "range_read_per_served": amplification,
            }),
        );
    }
    // The two targets that are not a ratio of headline figures.
    let pull_memory = |server: &str| memory.get(server).and_then(|m| num(m, "pull_peak_rss_kib"));
    if let (Some(w), Some(d)) = (pull_memory("wharf"), pull_memory("distribution")) {
        let ratio = w / d;
        writeln!(
            md,
            "\nPull peak RSS, wharf / distribution: {ratio:.2}× (target ≤0.25×) {}",
            if ratio <= 0.25 { "✓" } else { "✗" }
        )?;
        checks.push(json!({"case": "pull memory", "ratio": ratio, "target": 0.25, "floor": false, "met": ratio <= 0.25}));
    }
    if let Some(a) = memory
        .get("wharf")
        .and_then(|m| num(m, "range_read_per_served"))
    {
        // The counter also sees the small link and metadata files each request
        // reads (tens of bytes per MiB served), hence the 1% allowance.
        let met = a <= 1.01;
        writeln!(
            md,
            "\nRanged GETs, wharf bytes read per byte served: {a:.4} (target ≤1, metadata reads allowed) {}",
            if met { "✓" } else { "✗" }
        )?;
        checks.push(
            json!({"case": "range reads", "ratio": a, "target": 1.0, "floor": false, "met": met}),
        );
    }
    let limits_json: serde_json::Map<String, Value> = limits
        .iter()
        .map(|(name, (runs, unit))| {
            (
                name.clone(),
                json!({"median": median(runs), "runs": runs, "unit": unit}),
            )
        })
        .collect();
    let json = json!({"title": title, "cases": summary, "memory": memory, "targets": checks, "limits": limits_json});
    Ok((md, json))
}

/// New connections per CPU-second of the server: on a shared machine the server's core is not
/// its own, so this is the figure that says what a connection costs.
fn handshake_section(cases: &[Case], md: &mut String) -> Result<()> {
    let rows: Vec<&Case> = cases.iter().filter(|c| c.workload == "handshake").collect();
    if rows.is_empty() {
        return Ok(());
    }
    writeln!(
        md,
        "\n### New connections per server CPU-second (server on one core)\n"
    )?;
    writeln!(md, "| workload | wharf | distribution | ratio |")?;
    writeln!(md, "|---|---:|---:|---:|")?;
    for case in rows {
        let per_cpu = |server: &str| runs_of(case, server).and_then(|r| median(&r.ops_per_cpu_s));
        let (w, d) = (per_cpu("wharf"), per_cpu("distribution"));
        let ratio = match (w, d) {
            (Some(w), Some(d)) if d > 0.0 => format!("{:.2}×", w / d),
            _ => "—".into(),
        };
        writeln!(
            md,
            "| {} | {} | {} | {ratio} |",
            case.name,
            fmt_figure(w),
            fmt_figure(d)
        )?;
    }
    Ok(())
}

/// Each `*-tls` case against the same case over plain HTTP, per server.
fn tls_section(cases: &[Case], md: &mut String, checks: &mut Vec<Value>) -> Result<()> {
    let figure = |name: &str, server: &str| {
        cases
            .iter()
            .find(|c| c.name == name)
            .and_then(|c| runs_of(c, server))
            .and_then(|r| median(&r.figures))
    };
    let pairs: Vec<(&Case, &str)> = cases
        .iter()
        .filter_map(|c| Some((c, c.name.strip_suffix(TLS_SUFFIX)?)))
        .filter(|(_, plain)| cases.iter().any(|c| c.name == *plain))
        .collect();
    if pairs.is_empty() {
        return Ok(());
    }
    writeln!(md, "\n### TLS against plain HTTP\n")?;
    writeln!(
        md,
        "| workload | unit | wharf plain | wharf TLS | TLS / plain | target | distribution plain | distribution TLS | TLS / plain |"
    )?;
    writeln!(md, "|---|---|---:|---:|---:|---|---:|---:|---:|")?;
    let ratio = |tls: Option<f64>, plain: Option<f64>| match (tls, plain) {
        (Some(t), Some(p)) if p > 0.0 => Some(t / p),
        _ => None,
    };
    for (case, plain) in pairs {
        let (wp, wt) = (figure(plain, "wharf"), figure(&case.name, "wharf"));
        let (dp, dt) = (
            figure(plain, "distribution"),
            figure(&case.name, "distribution"),
        );
        let w = ratio(wt, wp);
        // Connection set-up has no plain-HTTP equivalent of a handshake to reach.
        let aimed = case.workload != "handshake";
        let met = w.filter(|_| aimed).map(|r| r >= TLS_TARGET);
        if let Some(met) = met {
            checks.push(json!({"case": format!("{} vs plain", case.name), "ratio": w, "target": TLS_TARGET, "floor": true, "met": met}));
        }
        writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            case.name,
            case.unit,
            fmt_figure(wp),
            fmt_figure(wt),
            w.map_or("—".into(), |r| format!("{:.0} %", r * 100.0)),
            match met {
                Some(true) => format!("≥{:.0} % ✓", TLS_TARGET * 100.0),
                Some(false) => format!("≥{:.0} % ✗", TLS_TARGET * 100.0),
                None => "—".into(),
            },
            fmt_figure(dp),
            fmt_figure(dt),
            ratio(dt, dp).map_or("—".into(), |r| format!("{:.0} %", r * 100.0)),
        )?;
    }
    Ok(())
}
