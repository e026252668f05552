//! `--report`: turns the records `compare.sh` collected (one JSON object a line, one per
//! workload run) into the comparison table, as markdown and as JSON.
//!
//! A record: `{"server": "wharf"|"distribution", "round": 1, "case": "push-mono-1",
//! "peak_rss_kib": .., "base_rss_kib": .., "during_rss_kib": .., "server_read_bytes": ..,
//! "server_cpu_s": .., "result": <the loadgen result line> | null, "failure": ".."}`.
//! Records of server `"limit"` carry the machine's limits measured in the same run (the null
//! server under a case's load, `sha256-per-core`, `dd-fdatasync`, `sendfile-loopback` and
//! `sendfile-loopback-cpu`): `{"figure": .., "unit": ..}`.
//! A record's `load1` is the machine's one-minute load average when the run started.
//! Every figure is the median over the rounds. The goals each figure is checked against are in
//! `targets.rs`; `--s3` adds the S3 workloads `benches/s3_compare.rs --json` recorded.
//! The markdown is ready to paste under the README's "Benchmarks" heading.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::client::Result;
use crate::targets::{self, Figures, Goal, Measure, TLS_SUFFIX};

const SERVERS: [&str; 2] = ["wharf", "distribution"];

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
    /// Server CPU-s per GB served (workloads that move bytes).
    cpu_per_gb: Vec<f64>,
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

fn num(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64)
}

/// The machine's limits by case name: every round's figure and the unit.
type Limits = BTreeMap<String, (Vec<f64>, String)>;

/// What the records hold: the cases, the machine's limits, and the load averages seen.
struct Loaded {
    cases: Vec<Case>,
    limits: Limits,
    load1: Vec<f64>,
}

fn load(records: &str) -> Result<Loaded> {
    let mut cases: Vec<Case> = Vec::new();
    let mut limits = Limits::new();
    let mut load1 = Vec::new();
    for (n, line) in records
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let record: Value =
            serde_json::from_str(line).map_err(|e| format!("record {}: {e}", n + 1))?;
        if let Some(load) = num(&record, "load1") {
            load1.push(load);
        }
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
        if let (Some(cpu), Some(bytes)) = (num(&record, "server_cpu_s"), num(result, "bytes")) {
            if let Some(per_gb) = targets::cpu_per_gb(cpu, bytes) {
                runs.cpu_per_gb.push(per_gb);
            }
        }
    }
    Ok(Loaded {
        cases,
        limits,
        load1,
    })
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

/// One goal checked: the case, the goal in words, the value measured in the goal's terms and
/// whether it is met (`None`: not measured in this run).
struct Check {
    case: String,
    goal: String,
    measured: Option<String>,
    met: Option<bool>,
    value: Option<f64>,
}

impl Check {
    fn of(case: &str, goal: &Goal, unit: &str, value: Option<f64>) -> Check {
        Check {
            case: case.to_string(),
            goal: goal.describe(unit),
            measured: value.map(|v| goal.show(v)),
            met: value.map(|v| goal.met(v)),
            value,
        }
    }

    fn mark(&self) -> &'static str {
        match (self.met, &self.measured) {
            (Some(true), _) => "✓",
            (Some(false), _) => "✗",
            (None, Some(_)) => "not judged",
            (None, None) => "not measured",
        }
    }

    fn json(&self) -> Value {
        json!({"case": self.case, "target": self.goal, "value": self.value,
               "measured": self.measured, "met": self.met})
    }
}

/// Renders the tables; returns (markdown, JSON summary). `s3` is the JSON lines
/// `s3_compare --json` wrote, if the run had the S3 workloads.
pub fn render(records: &str, title: &str, s3: Option<&str>) -> Result<(String, Value)> {
    let Loaded {
        cases,
        limits,
        load1,
    } = load(records)?;
    let limit = |name: &str| limits.get(name).and_then(|(v, _)| median(v));
    let wharf_figure = |name: &str| {
        cases
            .iter()
            .find(|c| c.name == name)
            .and_then(|c| runs_of(c, "wharf"))
            .and_then(|r| median(&r.figures))
    };
    let mut md = String::new();
    let mut sections = String::new();
    let mut summary = Vec::new();
    let mut checks: Vec<Check> = Vec::new();
    let load_text = match (
        load1.iter().copied().reduce(f64::min),
        load1.iter().copied().reduce(f64::max),
    ) {
        (Some(lo), Some(hi)) => format!(", load average (1 min) {lo:.1} to {hi:.1}"),
        _ => String::new(),
    };
    writeln!(md, "**{title}{load_text}**\n")?;
    writeln!(
        md,
        "Medians of the rounds; ratio is wharf / distribution; \"null server\" is the machine's \
         ceiling for the case, measured in the same rounds; the targets column checks each goal \
         of the case (`benches/README.md`).\n"
    )?;
    writeln!(
        md,
        "| workload | unit | wharf | distribution | ratio | null server | targets | errors (w / d) | peak RSS MiB (w / d) |"
    )?;
    writeln!(md, "|---|---|---:|---:|---:|---:|---|---|---|")?;
    for case in &cases {
        let w = runs_of(case, "wharf");
        let d = runs_of(case, "distribution");
        let wm = w.and_then(|r| median(&r.figures));
        let dm = d.and_then(|r| median(&r.figures));
        let ratio = match (wm, dm) {
            (Some(w), Some(d)) if d > 0.0 => Some(w / d),
            _ => None,
        };
        let mut figures = Figures {
            wharf: wm,
            distribution: dm,
            null_server: limit(&case.name),
            plain: case.name.strip_suffix(TLS_SUFFIX).and_then(wharf_figure),
            other: None,
            cpu_per_gb: w.and_then(|r| median(&r.cpu_per_gb)),
        };
        let mut case_checks = Vec::new();
        for goal in targets::goals(&case.name, &case.workload) {
            if let Measure::VsCase(other) = goal.measure {
                figures.other = wharf_figure(other);
            }
            case_checks.push(Check::of(
                &case.name,
                &goal,
                &case.unit,
                targets::value(&goal, &figures),
            ));
        }
        let target_text = if case_checks.is_empty() {
            "—".to_string()
        } else {
            case_checks
                .iter()
                .map(|c| match &c.measured {
                    Some(m) => format!("{}: {m} {}", c.goal, c.mark()),
                    None => format!("{}: n/a", c.goal),
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
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
            figures
                .null_server
                .map_or("—".into(), |l| fmt_figure(Some(l))),
            target_text,
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
                        "server_cpu_s_per_gb": median(&r.cpu_per_gb),
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
            "targets": case_checks.iter().map(Check::json).collect::<Vec<_>>(),
            "null_server": figures.null_server,
        }));
        checks.extend(case_checks);
    }
    tls_section(&cases, &mut sections)?;
    handshake_section(&cases, &mut sections)?;
    let memory_json = memory_section(&cases, &mut sections, &mut checks)?;
    let s3_json = match s3 {
        Some(text) => s3_section(text, &mut sections, &mut checks)?,
        None => Value::Null,
    };
    writeln!(md, "\n#### Targets\n")?;
    writeln!(md, "| case | target | measured | met |")?;
    writeln!(md, "|---|---|---:|---|")?;
    for c in &checks {
        writeln!(
            md,
            "| {} | {} | {} | {} |",
            c.case,
            c.goal,
            c.measured.as_deref().unwrap_or("n/a"),
            c.mark()
        )?;
    }
    md.push_str(&sections);
    if let (Some(sha), Some(dd)) = (limit("sha256-per-core"), limit("dd-fdatasync")) {
        writeln!(
            md,
            "\nMachine limits in this run (medians of the rounds): SHA-256 {sha:.0} MB/s per core, \
             `dd bs=1M count=1024 conv=fdatasync` {dd:.0} MB/s; null server as in the table."
        )?;
    }
    if let (Some(mbps), Some(cpu)) = (limit("sendfile-loopback"), limit("sendfile-loopback-cpu")) {
        writeln!(
            md,
            "A cached 64 MiB file sent over loopback with `sendfile` and nothing else \
             (`benches/loopback_send.rs`, the kernel path of a plain-HTTP pull): {mbps:.0} MB/s, \
             {cpu:.3} CPU-s per GB."
        )?;
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
    let json = json!({
        "title": title,
        "load1": load1,
        "cases": summary,
        "memory": memory_json,
        "targets": checks.iter().map(Check::json).collect::<Vec<_>>(),
        "limits": limits_json,
        "s3": s3_json,
    });
    Ok((md, json))
}

/// Peak memory by server, slow-upload growth and range read amplification; adds the goals on
/// pull memory and range reads to `checks`.
fn memory_section(cases: &[Case], md: &mut String, checks: &mut Vec<Check>) -> Result<Value> {
    writeln!(md, "\n#### Memory and reads\n")?;
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
    // The two goals that are not a figure of one case.
    let pull_memory = |server: &str| memory.get(server).and_then(|m| num(m, "pull_peak_rss_kib"));
    let goal = Goal {
        measure: Measure::VsDistribution,
        bound: 0.25,
        floor: false,
    };
    if let (Some(w), Some(d)) = (pull_memory("wharf"), pull_memory("distribution")) {
        checks.push(Check::of("pull peak RSS", &goal, "", Some(w / d)));
    }
    if let Some(a) = memory
        .get("wharf")
        .and_then(|m| num(m, "range_read_per_served"))
    {
        // The counter also sees the small link and metadata files each request
        // reads (tens of bytes per MiB served), hence the 1% allowance.
        let goal = Goal::at_most(Measure::Absolute, 1.01);
        checks.push(Check::of(
            "range-8",
            &goal,
            "bytes read per byte served",
            Some(a),
        ));
    }
    Ok(Value::Object(memory))
}

fn handshake_section(cases: &[Case], md: &mut String) -> Result<()> {
    let rows: Vec<&Case> = cases.iter().filter(|c| c.workload == "handshake").collect();
    if rows.is_empty() {
        return Ok(());
    }
    writeln!(
        md,
        "\n#### New connections per server CPU-second (server on one core)\n"
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

/// Each `*-tls` case against the same case over plain HTTP, per server, and wharf against
/// distribution over TLS.
fn tls_section(cases: &[Case], md: &mut String) -> Result<()> {
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
    writeln!(md, "\n#### TLS against plain HTTP\n")?;
    writeln!(
        md,
        "| workload | unit | wharf plain | wharf TLS | TLS / plain | distribution plain | distribution TLS | TLS / plain | wharf / distribution over TLS |"
    )?;
    writeln!(md, "|---|---|---:|---:|---:|---:|---:|---:|---:|")?;
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    let percent = |r: Option<f64>| r.map_or("—".into(), |r| format!("{:.0} %", r * 100.0));
    for (case, plain) in pairs {
        let (wp, wt) = (figure(plain, "wharf"), figure(&case.name, "wharf"));
        let (dp, dt) = (
            figure(plain, "distribution"),
            figure(&case.name, "distribution"),
        );
        writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            case.name,
            case.unit,
            fmt_figure(wp),
            fmt_figure(wt),
            percent(ratio(wt, wp)),
            fmt_figure(dp),
            fmt_figure(dt),
            percent(ratio(dt, dp)),
            ratio(wt, dt).map_or("—".into(), |r| format!("{r:.2}×")),
        )?;
    }
    Ok(())
}

/// `{"op": n, ...}` as `op n, ...`, largest first.
fn by_operation(v: &Value) -> String {
    let mut ops: Vec<(&str, f64)> = v
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, n)| Some((k.as_str(), n.as_f64()?)))
                .collect()
        })
        .unwrap_or_default();
    ops.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    ops.iter()
        .map(|(op, n)| format!("{op} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The S3 workloads (`benches/s3_compare.rs --json`): requests per push and pull by operation,
/// RSS under a push storm, requests per catalog page. Adds the S3 goals to `checks`; returns
/// the records.
fn s3_section(text: &str, md: &mut String, checks: &mut Vec<Check>) -> Result<Value> {
    let records: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(n, l)| serde_json::from_str(l).map_err(|e| format!("S3 record {}: {e}", n + 1)))
        .collect::<std::result::Result<_, _>>()?;
    for record in &records {
        match record["kind"].as_str() {
            Some("push-pull") => {
                writeln!(
                    md,
                    "\n#### S3 (moto on loopback): one `skopeo copy` of a 3-layer image ({} MiB layers), median of {} round(s)\n",
                    record["layer_mib"], record["rounds"]
                )?;
                writeln!(
                    md,
                    "| server | push s | pull s | S3 requests, push | of them bucket listings | S3 requests, pull | push by operation |"
                )?;
                writeln!(md, "|---|---:|---:|---:|---:|---:|---|")?;
                for s in record["servers"].as_array().into_iter().flatten() {
                    let ops = s["push_by_operation"].as_object();
                    let listings = targets::listings(
                        ops.into_iter()
                            .flatten()
                            .map(|(k, v)| (k.as_str(), v.as_f64().unwrap_or(0.0))),
                    );
                    let server = s["server"].as_str().unwrap_or("?");
                    writeln!(
                        md,
                        "| {server} | {} | {} | {} | {listings} | {} | {} |",
                        fmt_figure(num(s, "push_s")),
                        fmt_figure(num(s, "pull_s")),
                        s["push_requests"],
                        s["pull_requests"],
                        by_operation(&s["push_by_operation"]),
                    )?;
                    if server == "wharf" {
                        let requests = Goal::at_most(Measure::Absolute, targets::S3_PUSH_REQUESTS);
                        checks.push(Check::of(
                            "S3 push (3 layers)",
                            &requests,
                            "requests",
                            num(s, "push_requests"),
                        ));
                        let listing = Goal::at_most(Measure::Absolute, targets::S3_PUSH_LISTINGS);
                        checks.push(Check::of(
                            "S3 push (3 layers)",
                            &listing,
                            "listings",
                            ops.map(|_| listings),
                        ));
                    }
                }
            }
            Some("storm") => {
                let uploads = record["uploads"].as_u64().unwrap_or(0);
                let (idle, peak) = (
                    num(record, "idle_rss_kib").unwrap_or(0.0),
                    num(record, "peak_rss_kib").unwrap_or(0.0),
                );
                let growth_mib = (peak - idle).max(0.0) / 1024.0;
                writeln!(
                    md,
                    "\n#### S3 push storm: {uploads} concurrent uploads of {} MiB to wharf on moto (default chunksize)\n",
                    record["mib"]
                )?;
                writeln!(
                    md,
                    "| seconds | failed | idle RSS MiB | peak RSS MiB | growth MiB | per upload MiB |"
                )?;
                writeln!(md, "|---:|---:|---:|---:|---:|---:|")?;
                writeln!(
                    md,
                    "| {} | {} | {} | {} | {growth_mib:.1} | {:.2} |",
                    fmt_figure(num(record, "elapsed_s")),
                    record["failed"],
                    fmt_mib(Some(idle)),
                    fmt_mib(Some(peak)),
                    growth_mib / uploads.max(1) as f64,
                )?;
                if let Some(first) = record["first_failure"].as_str() {
                    writeln!(md, "\nFirst failure: {first}")?;
                }
                let goal = Goal::at_most(Measure::Absolute, targets::S3_STORM_GROWTH_MIB);
                let mut check = Check::of(
                    &format!("S3 push storm ({uploads} uploads)"),
                    &goal,
                    "MiB RSS growth",
                    Some(growth_mib),
                );
                let mib = record["mib"].as_u64().unwrap_or(0);
                if !targets::storm_judged(uploads, mib) || record["failed"].as_u64() != Some(0) {
                    // Fewer or smaller uploads than the goal's, or failed ones, meet it for nothing.
                    check.met = None;
                }
                checks.push(check);
            }
            Some("catalog") => {
                writeln!(
                    md,
                    "\n#### S3 requests per catalog and tags page: {} repositories on moto\n",
                    record["repositories"]
                )?;
                writeln!(
                    md,
                    "| request | entries | S3 requests | per entry | by operation |"
                )?;
                writeln!(md, "|---|---:|---:|---:|---|")?;
                for row in record["rows"].as_array().into_iter().flatten() {
                    let entries = num(row, "entries").unwrap_or(0.0);
                    let requests = num(row, "requests").unwrap_or(0.0);
                    writeln!(
                        md,
                        "| `{}` ({}) | {entries} | {requests} | {} | {} |",
                        row["request"].as_str().unwrap_or("?"),
                        row["what"].as_str().unwrap_or(""),
                        if entries > 0.0 {
                            format!("{:.2}", requests / entries)
                        } else {
                            "—".into()
                        },
                        by_operation(&row["by_operation"]),
                    )?;
                }
            }
            other => return Err(format!("S3 record of unknown kind {other:?}").into()),
        }
    }
    Ok(Value::Array(records))
}
