//! Structured logs as distribution writes them: logrus-style text
//! (`time=... level=... msg=...`) or one JSON object per line, with the
//! static `log.fields` on every line.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{LazyLock, RwLock};

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, Filter, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use crate::config::{LogConfig, LogFormatter, LogLevel};

/// `log.level`, `log.formatter` and `log.fields` as they are now: [`apply`] changes them while
/// the process runs (a configuration reload).
static LEVEL: AtomicU8 = AtomicU8::new(2);
static JSON: AtomicBool = AtomicBool::new(false);
static FIELDS: LazyLock<RwLock<Map<String, Value>>> = LazyLock::new(RwLock::default);

/// Writes events to stderr in the configured format.
pub struct LogLayer;

/// Passes events at or above the current `log.level` (library crates: warn and up); decided
/// per event, never cached per call site, so a level change applies at once.
struct LevelNow;

impl LevelNow {
    fn max(target: &str) -> LevelFilter {
        let level = level_filter_of(LEVEL.load(Ordering::Relaxed));
        let ours = target == "access" || target == "wharf" || target.starts_with("wharf::");
        if ours {
            level
        } else {
            LevelFilter::WARN.min(level)
        }
    }
}

impl<S> Filter<S> for LevelNow {
    fn enabled(&self, meta: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        // Log lines come from events only; spans are for the trace exporter.
        meta.is_event() && *meta.level() <= Self::max(meta.target())
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if meta.is_event() {
            Interest::sometimes()
        } else {
            Interest::never()
        }
    }
}

struct Fields(Map<String, Value>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(
            field.name().to_string(),
            Value::String(format!("{value:?}")),
        );
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().to_string(), Value::String(value.to_string()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// Renders one line; `fields` holds the event's fields, `message` removed.
pub fn render(
    json: bool,
    time: &str,
    level: &str,
    msg: &str,
    fields: &Map<String, Value>,
) -> String {
    if json {
        let mut obj = Map::new();
        obj.insert("time".into(), Value::from(time));
        obj.insert("level".into(), Value::from(level));
        obj.insert("msg".into(), Value::from(msg));
        for (k, v) in fields {
            obj.insert(k.clone(), v.clone());
        }
        return Value::Object(obj).to_string();
    }
    let mut line = format!("time={time:?} level={level} msg={msg:?}");
    for (k, v) in fields {
        match v {
            Value::String(s)
                if s.bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'=') =>
            {
                let _ = write!(line, " {k}={s}");
            }
            Value::String(s) => {
                let _ = write!(line, " {k}={s:?}");
            }
            other => {
                let _ = write!(line, " {k}={other}");
            }
        }
    }
    line
}

impl<S: Subscriber> Layer<S> for LogLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields(Map::new());
        event.record(&mut fields);
        let mut fields = fields.0;
        let msg = match fields.remove("message") {
            Some(Value::String(s)) => s,
            Some(other) => other.to_string(),
            None => String::new(),
        };
        for (k, v) in FIELDS.read().unwrap_or_else(|e| e.into_inner()).iter() {
            fields.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let line = render(
            JSON.load(Ordering::Relaxed),
            &time,
            level_name(event.metadata().level()),
            &msg,
            &fields,
        );
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{line}");
    }
}

fn level_index(level: LogLevel) -> u8 {
    match level {
        LogLevel::Error => 0,
        LogLevel::Warn => 1,
        LogLevel::Info => 2,
        LogLevel::Debug => 3,
        LogLevel::Trace => 4,
    }
}

fn level_filter_of(index: u8) -> LevelFilter {
    match index {
        0 => LevelFilter::ERROR,
        1 => LevelFilter::WARN,
        2 => LevelFilter::INFO,
        3 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    }
}

/// Sets the level, format and static fields of every line from now on.
pub fn apply(config: &LogConfig) {
    let fields: Map<String, Value> = config
        .fields
        .iter()
        .map(|(k, v)| (k.clone(), yaml_to_json(v)))
        .collect();
    *FIELDS.write().unwrap_or_else(|e| e.into_inner()) = fields;
    JSON.store(
        matches!(
            config.formatter,
            LogFormatter::Json | LogFormatter::Logstash
        ),
        Ordering::Relaxed,
    );
    LEVEL.store(level_index(config.level), Ordering::Relaxed);
}

/// Installs the global logger (library crates below us log at warn and up)
/// and, when the `OTEL_*` environment asks for it, the trace exporter.
pub fn init(config: &LogConfig) {
    apply(config);
    let logs = tracing_subscriber::registry().with(LogLayer.with_filter(LevelNow));
    // Without an exporter no layer wants spans, so none is created; an absent
    // (`None`) layer would still ask for every one.
    let _ = match crate::ops::telemetry::layer() {
        Some(traces) => logs.with(traces).try_init(),
        None => logs.try_init(),
    };
}

fn yaml_to_json(v: &serde_yaml::Value) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_text_and_json() {
        let mut f = Map::new();
        f.insert("service".into(), Value::from("registry"));
        f.insert("status".into(), Value::from(200));
        f.insert("ua".into(), Value::from("curl/8 x"));
        let text = render(false, "t", "info", "request", &f);
        assert_eq!(
            text,
            r#"time="t" level=info msg="request" service=registry status=200 ua="curl/8 x""#
        );
        let json: Value = serde_json::from_str(&render(true, "t", "info", "request", &f)).unwrap();
        assert_eq!(json["service"], "registry");
        assert_eq!(json["msg"], "request");
        assert_eq!(json["status"], 200);
    }
}
