//! The event model and its envelope, field for field as registry:2 writes them
//! (`notifications/event.go`): same names, same nesting, same omissions.

use serde::{Deserialize, Serialize};

/// Media type of the POST body.
pub const EVENTS_MEDIA_TYPE: &str = "application/vnd.docker.distribution.events.v1+json";

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Content written.
    Push,
    /// Content read.
    Pull,
    /// A blob linked from another repository.
    Mount,
    /// A manifest, tag or blob link removed.
    Delete,
}

impl Action {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Push => "push",
            Action::Pull => "pull",
            Action::Mount => "mount",
            Action::Delete => "delete",
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A content descriptor as distribution serialises one (`distribution.Descriptor`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Descriptor {
    /// Media type.
    #[serde(
        rename = "mediaType",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub media_type: String,
    /// Size in bytes.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub size: u64,
    /// Content digest.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub digest: String,
    /// Foreign layer URLs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    /// Annotations, verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
    /// Platform of an index entry, verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<serde_json::Value>,
}

/// What the event is about.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Target {
    /// The content's descriptor (flattened, as Go embeds it).
    #[serde(flatten)]
    pub descriptor: Descriptor,
    /// Same as `size`, kept by registry:2 for older receivers.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub length: u64,
    /// Repository name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub repository: String,
    /// Source repository of a mount.
    #[serde(
        rename = "fromRepository",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub from_repository: String,
    /// Where the content can be fetched.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
    /// Tag, when the request named one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tag: String,
    /// A manifest's references, with `notifications.events.includereferences`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<Descriptor>,
}

/// The request that caused the event (`id`, `method` and `useragent` always present).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Request id.
    pub id: String,
    /// Client address.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub addr: String,
    /// `Host` the client asked for.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
    /// HTTP method.
    pub method: String,
    /// `User-Agent`.
    pub useragent: String,
}

/// Who made the request: the authenticated user's name only, never a credential.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ActorRecord {
    /// User name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// Which node generated the event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceRecord {
    /// `hostname:port`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub addr: String,
    /// Changes at every start.
    #[serde(
        rename = "instanceID",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub instance_id: String,
}

/// One registry event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unique id, so receivers can drop duplicates.
    pub id: String,
    /// When it happened, RFC 3339 with Go's nanosecond trimming.
    pub timestamp: String,
    /// What happened.
    pub action: Action,
    /// What it happened to.
    pub target: Target,
    /// The request behind it.
    pub request: RequestRecord,
    /// Who asked.
    pub actor: ActorRecord,
    /// Which node.
    pub source: SourceRecord,
}

impl Event {
    /// A new event, stamped now with a fresh id.
    pub fn new(
        action: Action,
        target: Target,
        request: &RequestRecord,
        actor: &ActorRecord,
        source: &SourceRecord,
    ) -> Self {
        Event {
            id: uuid::Uuid::new_v4().to_string(),
            timestamp: go_rfc3339_nano(chrono::Utc::now()),
            action,
            target,
            request: request.clone(),
            actor: actor.clone(),
            source: source.clone(),
        }
    }
}

/// The POST body: `{"events": [...]}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope {
    /// The events.
    pub events: Vec<Event>,
}

/// Serialises as Go's `json.MarshalIndent(envelope, "", "   ")`.
pub fn envelope_body(events: &[Event]) -> Vec<u8> {
    #[derive(Serialize)]
    struct Borrowed<'a> {
        events: &'a [Event],
    }
    let mut out = Vec::with_capacity(1024 * events.len().max(1));
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"   ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    // Serialising owned strings and maps cannot fail.
    let _ = Borrowed { events }.serialize(&mut ser);
    out
}

/// Go's `time.RFC3339Nano`: fractional seconds with trailing zeros removed.
pub fn go_rfc3339_nano(t: chrono::DateTime<chrono::Utc>) -> String {
    let base = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let nanos = t.timestamp_subsec_nanos();
    if nanos == 0 {
        return format!("{base}Z");
    }
    let frac = format!("{nanos:09}");
    format!("{base}.{}Z", frac.trim_end_matches('0'))
}

/// A manifest's references as registry:2 lists them: the config, then the layers, or an
/// index's manifests (with their platforms).
pub fn manifest_references(body: &[u8]) -> Vec<Descriptor> {
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut take = |v: &serde_json::Value| {
        if let Ok(d) = serde_json::from_value::<Descriptor>(v.clone()) {
            out.push(d);
        }
    };
    if let Some(config) = doc.get("config") {
        take(config);
    }
    for key in ["layers", "manifests"] {
        if let Some(list) = doc.get(key).and_then(|v| v.as_array()) {
            list.iter().for_each(&mut take);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_trim_like_go() {
        use chrono::TimeZone;
        let t = chrono::Utc
            .timestamp_opt(1_700_000_000, 120_000_000)
            .unwrap();
        assert_eq!(go_rfc3339_nano(t), "2023-11-14T22:13:20.12Z");
        let t = chrono::Utc.timestamp_opt(1_700_000_000, 0).unwrap();
        assert_eq!(go_rfc3339_nano(t), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn envelope_matches_registry_2_layout() {
        let target = Target {
            descriptor: Descriptor {
                digest: "sha256:ab".into(),
                ..Default::default()
            },
            repository: "a/b".into(),
            ..Default::default()
        };
        let mut e = Event::new(
            Action::Delete,
            target,
            &RequestRecord {
                id: "r".into(),
                method: "DELETE".into(),
                ..Default::default()
            },
            &ActorRecord::default(),
            &SourceRecord::default(),
        );
        e.id = "i".into();
        e.timestamp = "t".into();
        let text = String::from_utf8(envelope_body(&[e])).unwrap();
        let expected = "{\n   \"events\": [\n      {\n         \"id\": \"i\",\n         \"timestamp\": \"t\",\n         \"action\": \"delete\",\n         \"target\": {\n            \"digest\": \"sha256:ab\",\n            \"repository\": \"a/b\"\n         },\n         \"request\": {\n            \"id\": \"r\",\n            \"method\": \"DELETE\",\n            \"useragent\": \"\"\n         },\n         \"actor\": {},\n         \"source\": {}\n      }\n   ]\n}";
        assert_eq!(text, expected);
    }

    #[test]
    fn references_list_config_then_layers() {
        let body = br#"{"config":{"mediaType":"c","digest":"sha256:1","size":2},"layers":[{"mediaType":"l","digest":"sha256:2","size":5}]}"#;
        let refs = manifest_references(body);
        assert_eq!(
            refs.iter()
                .map(|d| d.media_type.as_str())
                .collect::<Vec<_>>(),
            ["c", "l"]
        );
    }
}
