//! The performance targets the comparison table checks: which goals apply to a case, what
//! figure each compares, and whether a figure meets it. Pure functions over numbers, so the
//! rules can be tested without running a server (`tests/bench_targets.rs`).
//!
//! The goals: small-blob pushes at least 10× distribution; manifest GETs and blob HEADs at
//! least 40 % of the null server; at most 64 KiB of server memory per open slow upload; pulls
//! at least 85 % of the null server and at most 0.1 server CPU-s per GB served; over TLS at
//! least 85 % of the same workload over plain HTTP and, for pushes and pulls, at least 3×
//! distribution over TLS; blob HEADs with the Redis blob-descriptor cache no slower than with
//! no cache; on S3 at most 20 requests for a 3-layer push, no listing on the push path and at
//! most 64 MiB of RSS growth under a storm of 32 uploads. Cases with none of these keep the
//! older ratios to distribution (pushes 3×, catalog and tags 5×).

/// Suffix of the cases served over `http.tls`; each is compared with the case without it.
pub const TLS_SUFFIX: &str = "-tls";

/// What a goal compares.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Measure {
    /// Wharf's figure over distribution's, same case.
    VsDistribution,
    /// Wharf's figure over the null server's under the same load (the machine's ceiling).
    VsNullServer,
    /// Wharf's figure itself, in the case's unit.
    Absolute,
    /// Wharf's server CPU time (user + system) per GB served.
    CpuPerGb,
    /// Wharf's figure over Wharf's figure of the same workload over plain HTTP.
    VsPlain,
    /// Wharf's figure over Wharf's figure of another case of the same run.
    VsCase(&'static str),
}

/// One goal: a measure and the bound it must reach (`floor`) or stay under.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Goal {
    pub measure: Measure,
    pub bound: f64,
    /// True: the value must be at least `bound`; false: at most.
    pub floor: bool,
}

impl Goal {
    const fn at_least(measure: Measure, bound: f64) -> Goal {
        Goal {
            measure,
            bound,
            floor: true,
        }
    }

    /// A bound the value must stay under.
    pub const fn at_most(measure: Measure, bound: f64) -> Goal {
        Goal {
            measure,
            bound,
            floor: false,
        }
    }

    /// Whether `value` meets the goal.
    pub fn met(&self, value: f64) -> bool {
        if self.floor {
            value >= self.bound
        } else {
            value <= self.bound
        }
    }

    /// The goal in words, e.g. `≥ 40 % of null server`.
    pub fn describe(&self, unit: &str) -> String {
        let sign = if self.floor { "≥" } else { "≤" };
        let b = self.bound;
        match self.measure {
            Measure::VsDistribution => format!("{sign} {b}× distribution"),
            Measure::VsNullServer => format!("{sign} {:.0} % of null server", b * 100.0),
            Measure::Absolute if b == 0.0 && !self.floor => format!("no {unit}"),
            Measure::Absolute => format!("{sign} {b} {unit}"),
            Measure::CpuPerGb => format!("{sign} {b} CPU-s per GB"),
            Measure::VsPlain => format!("{sign} {:.0} % of plain HTTP", b * 100.0),
            Measure::VsCase(other) if b == 1.0 => format!("{sign} {other}"),
            Measure::VsCase(other) => format!("{sign} {b}× {other}"),
        }
    }

    /// A measured value in the goal's terms, e.g. `38 %` or `2.10×`.
    pub fn show(&self, value: f64) -> String {
        match self.measure {
            Measure::VsNullServer | Measure::VsPlain => format!("{:.0} %", value * 100.0),
            Measure::VsDistribution | Measure::VsCase(_) => format!("{value:.2}×"),
            Measure::CpuPerGb => format!("{value:.3}"),
            Measure::Absolute if value.fract() == 0.0 || value >= 100.0 => format!("{value:.0}"),
            Measure::Absolute if value >= 10.0 => format!("{value:.1}"),
            Measure::Absolute => format!("{value:.3}"),
        }
    }
}

/// The goals of a compare.sh case, by its name and workload.
pub fn goals(case: &str, workload: &str) -> Vec<Goal> {
    use Measure::*;
    if let Some(plain) = case.strip_suffix(TLS_SUFFIX) {
        // Connection set-up has no plain-HTTP equivalent of a handshake to reach.
        if workload == "handshake" || plain.starts_with("handshake") {
            return Vec::new();
        }
        let mut goals = vec![Goal::at_least(VsPlain, 0.85)];
        if matches!(workload, "push-mono" | "push-chunked" | "pull") {
            goals.push(Goal::at_least(VsDistribution, 3.0));
        }
        return goals;
    }
    match (case, workload) {
        ("small-push-32", _) => vec![Goal::at_least(VsDistribution, 10.0)],
        ("manifest-get-64" | "blob-head-64", _) => vec![Goal::at_least(VsNullServer, 0.40)],
        ("blob-head-64-redis", _) => vec![Goal::at_least(VsCase("blob-head-64-nocache"), 1.0)],
        ("pull-1" | "pull-16", _) => vec![
            Goal::at_least(VsNullServer, 0.85),
            Goal::at_most(CpuPerGb, 0.1),
        ],
        (_, "slow-uploads") => vec![Goal::at_most(Absolute, 64.0)],
        // No newer goal for these: the older ratios to distribution.
        (_, "push-mono" | "push-chunked") => vec![Goal::at_least(VsDistribution, 3.0)],
        (_, "pull") => vec![Goal::at_least(VsDistribution, 1.5)],
        (_, "manifest-get" | "blob-head" | "small-push" | "catalog" | "tags") => {
            vec![Goal::at_least(VsDistribution, 5.0)]
        }
        _ => Vec::new(),
    }
}

/// The figures of one case that goals compare (medians over the rounds); `None` where the run
/// did not measure it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Figures {
    pub wharf: Option<f64>,
    pub distribution: Option<f64>,
    pub null_server: Option<f64>,
    /// Wharf's figure of the plain-HTTP twin of a `*-tls` case.
    pub plain: Option<f64>,
    /// Wharf's figure of the case a `VsCase` goal names.
    pub other: Option<f64>,
    /// Wharf's server CPU-s per GB served.
    pub cpu_per_gb: Option<f64>,
}

/// The value a goal judges, from a case's figures.
pub fn value(goal: &Goal, f: &Figures) -> Option<f64> {
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    match goal.measure {
        Measure::VsDistribution => ratio(f.wharf, f.distribution),
        Measure::VsNullServer => ratio(f.wharf, f.null_server),
        Measure::Absolute => f.wharf,
        Measure::CpuPerGb => f.cpu_per_gb,
        Measure::VsPlain => ratio(f.wharf, f.plain),
        Measure::VsCase(_) => ratio(f.wharf, f.other),
    }
}

/// Server CPU-s per GB (10^9 bytes) served; `None` without bytes.
pub fn cpu_per_gb(cpu_s: f64, bytes: f64) -> Option<f64> {
    (bytes > 0.0).then(|| cpu_s / (bytes / 1e9))
}

/// S3 goals, Wharf only: requests of one 3-layer push at most this many.
pub const S3_PUSH_REQUESTS: f64 = 20.0;
/// S3 goals: listings of the bucket (`ListObjectsV2`, `ListMultipartUploads`) on the push
/// path; `ListParts` reads one upload's parts and is not one.
pub const S3_PUSH_LISTINGS: f64 = 0.0;
/// S3 goals: RSS growth in all under the push storm, MiB.
pub const S3_STORM_GROWTH_MIB: f64 = 64.0;
/// The push storm the RSS goal is stated for: this many uploads ...
pub const S3_STORM_UPLOADS: u64 = 32;
/// ... of this many MiB each.
pub const S3_STORM_MIB: u64 = 100;

/// Listings of the bucket among S3 requests counted by operation.
pub fn listings<'a>(by_operation: impl IntoIterator<Item = (&'a str, f64)>) -> f64 {
    by_operation
        .into_iter()
        .filter(|(op, _)| matches!(*op, "ListObjectsV2" | "ListMultipartUploads"))
        // From +0.0: an empty f64 sum is -0.0, which shows as "-0".
        .fold(0.0, |sum, (_, n)| sum + n)
}

/// Whether a push-storm figure can be judged against the goal: the goal is stated for 32
/// uploads of 100 MiB, and a smaller storm would meet it for nothing.
pub fn storm_judged(uploads: u64, mib: u64) -> bool {
    uploads >= S3_STORM_UPLOADS && mib >= S3_STORM_MIB
}
