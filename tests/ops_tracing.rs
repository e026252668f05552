//! Traces: an OTLP/HTTP collector stand-in receives a request's span, child
//! of the caller's `traceparent`, with storage spans as its children; the
//! access log names the trace. Both OTLP encodings (protobuf and JSON).

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::thread;

use prost::Message;
use serde_json::Value;

use support::*;

/// One span as the collector received it (ids in lower-case hex).
#[derive(Debug, Clone)]
struct Span {
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    name: String,
    attributes: BTreeMap<String, String>,
    service: String,
}

/// Accepts OTLP/HTTP exports on `/v1/traces` and keeps their spans.
struct Collector {
    endpoint: String,
    spans: Arc<Mutex<Vec<Span>>>,
    content_types: Arc<Mutex<Vec<String>>>,
}

impl Collector {
    fn start() -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let spans = Arc::new(Mutex::new(Vec::new()));
        let content_types = Arc::new(Mutex::new(Vec::new()));
        let (keep, types) = (spans.clone(), content_types.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (keep, types) = (keep.clone(), types.clone());
                thread::spawn(move || serve_connection(stream, &keep, &types));
            }
        });
        Collector {
            endpoint,
            spans,
            content_types,
        }
    }

    fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap().clone()
    }
}

fn serve_connection(
    stream: std::net::TcpStream,
    spans: &Mutex<Vec<Span>>,
    content_types: &Mutex<Vec<String>>,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = BTreeMap::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let length: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let content_type = headers.get("content-type").cloned().unwrap_or_default();
        let json = content_type.contains("json");
        let received = if json {
            spans_from_json(&body)
        } else {
            spans_from_protobuf(&body)
        };
        assert!(
            request_line.starts_with("POST /v1/traces "),
            "{request_line}"
        );
        content_types.lock().unwrap().push(content_type.clone());
        spans.lock().unwrap().extend(received);
        let answer: &[u8] = if json { b"{}" } else { b"" };
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n",
            answer.len()
        );
        if writer.write_all(head.as_bytes()).is_err() || writer.write_all(answer).is_err() {
            return;
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn spans_from_protobuf(body: &[u8]) -> Vec<Span> {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
    let text = |v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>| match v
        .as_ref()
        .and_then(|v| v.value.as_ref())
    {
        Some(Any::StringValue(s)) => s.clone(),
        Some(Any::IntValue(i)) => i.to_string(),
        Some(Any::BoolValue(b)) => b.to_string(),
        Some(Any::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    };
    let mut out = Vec::new();
    for rs in request.resource_spans {
        let service = rs
            .resource
            .iter()
            .flat_map(|r| r.attributes.iter())
            .find(|kv| kv.key == "service.name")
            .map(|kv| text(&kv.value))
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for s in ss.spans {
                out.push(Span {
                    trace_id: hex(&s.trace_id),
                    span_id: hex(&s.span_id),
                    parent_span_id: hex(&s.parent_span_id),
                    name: s.name,
                    attributes: s
                        .attributes
                        .iter()
                        .map(|kv| (kv.key.clone(), text(&kv.value)))
                        .collect(),
                    service: service.clone(),
                });
            }
        }
    }
    out
}

fn json_text(v: &Value) -> String {
    for key in ["stringValue", "intValue", "boolValue", "doubleValue"] {
        match v.get(key) {
            Some(Value::String(s)) => return s.clone(),
            Some(other) if !other.is_null() => return other.to_string(),
            _ => {}
        }
    }
    v.to_string()
}

fn spans_from_json(body: &[u8]) -> Vec<Span> {
    let request: Value = serde_json::from_slice(body).expect("OTLP JSON");
    let attrs = |list: &Value| -> BTreeMap<String, String> {
        list.as_array()
            .into_iter()
            .flatten()
            .map(|kv| {
                (
                    kv["key"].as_str().unwrap_or_default().to_string(),
                    json_text(&kv["value"]),
                )
            })
            .collect()
    };
    let mut out = Vec::new();
    for rs in request["resourceSpans"].as_array().into_iter().flatten() {
        let service = attrs(&rs["resource"]["attributes"])
            .get("service.name")
            .cloned()
            .unwrap_or_default();
        for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
            for s in ss["spans"].as_array().into_iter().flatten() {
                let id = |k: &str| s[k].as_str().unwrap_or_default().to_ascii_lowercase();
                out.push(Span {
                    trace_id: id("traceId"),
                    span_id: id("spanId"),
                    parent_span_id: id("parentSpanId"),
                    name: s["name"].as_str().unwrap_or_default().to_string(),
                    attributes: attrs(&s["attributes"]),
                    service: service.clone(),
                });
            }
        }
    }
    out
}

fn traced_node(collector: &Collector, protocol: &str) -> Registry {
    Registry::builder(Driver::Filesystem)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.endpoint)
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .start()
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn request_spans_arrive_with_parent_and_children(protocol: &str) {
    let collector = Collector::start();
    let reg = traced_node(&collector, protocol);
    let repo = "ops/traced";
    let blob = Blob::random(5000);
    let location = start_upload(&reg, repo);
    let resp = send(
        reg.put(&with_digest(&location, &blob.digest))
            .header("content-type", "application/octet-stream")
            .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN}-01"))
            .body(blob.data.clone()),
    );
    resp.assert_status(201);

    // Wait (bounded) for the request span and at least one storage child to be exported.
    let spans = retry_until(|| {
        let spans = collector.spans();
        let request = spans
            .iter()
            .find(|s| s.trace_id == TRACE_ID && s.parent_span_id == CALLER_SPAN);
        match request {
            Some(r) if spans.iter().any(|s| s.parent_span_id == r.span_id) => Ok(spans),
            _ => Err(spans),
        }
    });
    let request = spans
        .iter()
        .find(|s| s.trace_id == TRACE_ID && s.parent_span_id == CALLER_SPAN)
        .unwrap_or_else(|| panic!("no request span child of the caller's span: {spans:#?}"));
    assert_eq!(request.name, "PUT blob_upload_chunk");
    assert_eq!(request.service, "wharf");
    let a = &request.attributes;
    assert_eq!(
        a.get("registry.repository").map(String::as_str),
        Some(repo),
        "{a:?}"
    );
    assert_eq!(
        a.get("registry.handler").map(String::as_str),
        Some("blob_upload_chunk")
    );
    assert_eq!(
        a.get("http.route").map(String::as_str),
        Some("blob_upload_chunk")
    );
    assert_eq!(
        a.get("http.request.method").map(String::as_str),
        Some("PUT")
    );
    assert_eq!(
        a.get("http.response.status_code").map(String::as_str),
        Some("201")
    );
    let request_id = resp.must_header("x-request-id");
    assert_eq!(a.get("request_id").map(String::as_str), Some(request_id));

    let children: Vec<&Span> = spans
        .iter()
        .filter(|s| s.parent_span_id == request.span_id)
        .collect();
    assert!(
        children
            .iter()
            .all(|s| s.trace_id == TRACE_ID && s.name.starts_with("storage ")),
        "{children:#?}"
    );
    let actions: Vec<&str> = children
        .iter()
        .filter_map(|s| s.attributes.get("storage.action").map(String::as_str))
        .collect();
    // The blob's bytes go through a writer that is committed; the link is a small put.
    for action in ["Writer", "Commit", "PutContent"] {
        assert!(actions.contains(&action), "no {action} span in {actions:?}");
    }
    assert!(children
        .iter()
        .all(|s| s.attributes.get("storage.driver").map(String::as_str) == Some("filesystem")));

    // The access log line names the trace.
    let log = reg
        .wait_stderr(|t| t.contains(&format!("trace_id={TRACE_ID}")))
        .unwrap_or_else(|| panic!("no trace_id in the access log:\n{}", reg.stderr_text()));
    assert!(log
        .lines()
        .any(|l| l.contains(&format!("request_id={request_id}"))
            && l.contains(&format!("trace_id={TRACE_ID}"))));
    let want = if protocol == "http/json" {
        "application/json"
    } else {
        "application/x-protobuf"
    };
    assert!(collector
        .content_types
        .lock()
        .unwrap()
        .iter()
        .all(|t| t == want));
}

#[test]
fn protobuf_export() {
    request_spans_arrive_with_parent_and_children("http/protobuf");
}

#[test]
fn json_export() {
    request_spans_arrive_with_parent_and_children("http/json");
}

#[test]
fn a_request_without_traceparent_starts_a_trace_named_in_the_log() {
    let collector = Collector::start();
    let reg = traced_node(&collector, "http/protobuf");
    let resp = send(reg.get("/v2/"));
    resp.assert_status(200);
    let request_id = resp.must_header("x-request-id").to_string();
    let spans = retry_until(|| {
        let spans = collector.spans();
        if spans
            .iter()
            .any(|s| s.attributes.get("request_id") == Some(&request_id))
        {
            Ok(spans)
        } else {
            Err(spans)
        }
    });
    let span = spans
        .iter()
        .find(|s| s.attributes.get("request_id") == Some(&request_id))
        .unwrap_or_else(|| panic!("no span for {request_id}: {spans:#?}"));
    assert_eq!(span.parent_span_id, "", "a root span");
    assert_eq!(span.name, "GET base");
    assert_eq!(span.trace_id.len(), 32);
    let trace = span.trace_id.clone();
    assert!(reg
        .wait_stderr(|t| t
            .lines()
            .any(|l| l.contains(&request_id) && l.contains(&trace)))
        .is_some());
}

#[test]
fn without_export_the_callers_trace_is_still_logged() {
    let reg = Registry::start(Driver::Inmemory);
    let resp = send(
        reg.get("/v2/")
            .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN}-01")),
    );
    resp.assert_status(200);
    assert!(reg
        .wait_stderr(|t| t.contains(&format!("trace_id={TRACE_ID}")))
        .is_some());
}
