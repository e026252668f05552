//! Structured logs as distribution writes them: logrus-style text
//! (`time=... level=... msg=...`) or one JSON object per line, with the
//! static `log.fields` on every line.

use std::fmt::Write as _;
use std::io::Write as _;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{FilterExt, LevelFilter, Targets};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use crate::config::{LogConfig, LogFormatter, LogLevel};

/// Writes events to stderr in the configured format.
pub struct LogLayer {
    json: bool,
    fields: Map<String, Value>,
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
        for (k, v) in &self.fields {
            fields.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let line = render(
            self.json,
            &time,
            level_name(event.metadata().level()),
            &msg,
            &fields,
        );
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{line}");
    }
}

fn level_filter(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Trace => LevelFilter::TRACE,
    }
}

/// Installs the global logger (library crates below us log at warn and up)
/// and, when the `OTEL_*` environment asks for it, the trace exporter.
pub fn init(config: &LogConfig) {
    let fields: Map<String, Value> = config
        .fields
        .iter()
        .map(|(k, v)| (k.clone(), yaml_to_json(v)))
        .collect();
    let layer = LogLayer {
        json: matches!(
            config.formatter,
            LogFormatter::Json | LogFormatter::Logstash
        ),
        fields,
    };
    let level = level_filter(config.level);
    let filter = Targets::new()
        .with_default(LevelFilter::WARN.min(level))
        .with_target("wharf", level)
        .with_target("access", level);
    // Log lines come from events only; spans are for the trace exporter.
    let events = tracing_subscriber::filter::filter_fn(|meta| meta.is_event());
    let _ = tracing_subscriber::registry()
        .with(layer.with_filter(filter.and(events)))
        .with(crate::ops::telemetry::layer())
        .try_init();
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
