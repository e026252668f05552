//! Deserialisers that accept what Go's YAML decoding and distribution's drivers accept.
//!
//! Values reach the typed config from a YAML tree that environment variables also write to, so
//! `REGISTRY_HTTP_SECRET=1234` arrives as a number and `REGISTRY_STORAGE_S3_CHUNKSIZE=5242880`
//! may arrive as a string. These helpers make the field's type, not the YAML scalar's, decide.
//! A YAML null reads as the field's zero value, as it does in Go.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};

use super::duration::parse_go_duration;

/// A scalar read as text: strings as they are, numbers and booleans as YAML would print them.
struct Text(String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl Visitor<'_> for TextVisitor {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Text, E> {
                Ok(Text(v))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Text, E> {
                Ok(Text(String::new()))
            }
            fn visit_none<E: de::Error>(self) -> Result<Text, E> {
                Ok(Text(String::new()))
            }
        }
        d.deserialize_any(TextVisitor)
    }
}

/// A string field; numbers and booleans are taken as their text, null as "".
pub(crate) fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Text::deserialize(d).map(|t| t.0)
}

/// An optional string field; null and "" both mean absent.
pub(crate) fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Some(string(d)?).filter(|s| !s.is_empty()))
}

/// A path field, read like [`string`].
pub(crate) fn path<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    string(d).map(PathBuf::from)
}

/// An optional path field; null and "" both mean absent.
pub(crate) fn opt_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    opt_string(d).map(|s| s.map(PathBuf::from))
}

/// A list of strings; a single scalar is a one-element list, null an empty one.
struct TextList(Vec<String>);

impl<'de> Deserialize<'de> for TextList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ListVisitor;
        impl<'de> Visitor<'de> for ListVisitor {
            type Value = TextList;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of strings or a single string")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TextList, A::Error> {
                let mut items = Vec::new();
                while let Some(Text(item)) = seq.next_element()? {
                    items.push(item);
                }
                Ok(TextList(items))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TextList, E> {
                Ok(TextList(vec![v.to_owned()]))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<TextList, E> {
                Ok(TextList(vec![v.to_string()]))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<TextList, E> {
                Ok(TextList(vec![v.to_string()]))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<TextList, E> {
                Ok(TextList(vec![v.to_string()]))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<TextList, E> {
                Ok(TextList(vec![v.to_string()]))
            }
            fn visit_unit<E: de::Error>(self) -> Result<TextList, E> {
                Ok(TextList(Vec::new()))
            }
        }
        d.deserialize_any(ListVisitor)
    }
}

/// A list of strings; a single string is accepted as a one-element list.
pub(crate) fn string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    TextList::deserialize(d).map(|l| l.0)
}

/// A list of paths; a single path is accepted as a one-element list.
pub(crate) fn path_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<PathBuf>, D::Error> {
    string_list(d).map(|l| l.into_iter().map(PathBuf::from).collect())
}

/// HTTP headers: name to values, where a single string value is a one-element list.
pub(crate) fn headers<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, Vec<String>>, D::Error> {
    let raw: Option<BTreeMap<String, TextList>> = Option::deserialize(d)?;
    Ok(raw
        .unwrap_or_default()
        .into_iter()
        .map(|(name, values)| (name, values.0))
        .collect())
}

/// The booleans Go reads from text: YAML 1.1's words (`yes`, `on`, `n`, …, which gopkg.in/yaml.v2
/// resolves to booleans but a YAML 1.2 parser leaves as strings) and `strconv.ParseBool`'s forms
/// (`1`, `t`, `FALSE`, …), which drivers apply to string parameters.
pub(crate) fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "true" | "TRUE" | "True" | "y" | "Y" | "yes" | "Yes" | "YES" | "on"
        | "On" | "ON" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" | "n" | "N" | "no" | "No" | "NO" | "off"
        | "Off" | "OFF" => Some(false),
        _ => None,
    }
}

/// An integer written as text, as gopkg.in/yaml.v2 resolves it: `_` separators and the `0x`,
/// `0o` and `0b` prefixes are allowed.
pub(crate) fn parse_int(text: &str) -> Option<i64> {
    let plain: String = text.trim().chars().filter(|&c| c != '_').collect();
    let (negative, digits) = match plain.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, plain.strip_prefix('+').unwrap_or(&plain)),
    };
    let (radix, digits) = match digits.get(..2) {
        Some("0x" | "0X") => (16, &digits[2..]),
        Some("0o" | "0O") => (8, &digits[2..]),
        Some("0b" | "0B") => (2, &digits[2..]),
        _ => (10, digits),
    };
    if digits.is_empty() || digits.starts_with(['+', '-']) {
        return None;
    }
    let magnitude = i128::from_str_radix(digits, radix).ok()?;
    i64::try_from(if negative { -magnitude } else { magnitude }).ok()
}

/// A float read into an integer field: Go's yaml.v2 truncates it toward zero.
fn truncate<E: de::Error>(v: f64) -> Result<i64, E> {
    if v.is_finite() && v >= i64::MIN as f64 && v < i64::MAX as f64 {
        Ok(v.trunc() as i64)
    } else {
        Err(E::custom(format!("number {v} is out of range")))
    }
}

/// A boolean; also Go's textual forms (see [`parse_bool`]) written as strings, null as false.
pub(crate) fn bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    struct BoolVisitor;
    impl Visitor<'_> for BoolVisitor {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a boolean")
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
            Ok(v)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
            parse_bool(v).ok_or_else(|| E::custom(format!("invalid boolean {v:?}")))
        }
        fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
            Ok(false)
        }
    }
    d.deserialize_any(BoolVisitor)
}

/// An optional boolean; null means absent.
pub(crate) fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    Option::<Bool>::deserialize(d).map(|v| v.map(|v| v.0))
}

/// [`bool`] as a type.
struct Bool(bool);

impl<'de> Deserialize<'de> for Bool {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        bool(d).map(Bool)
    }
}

/// A signed integer, also written as a numeric string; null reads as 0.
pub(crate) fn int<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    struct IntVisitor;
    impl Visitor<'_> for IntVisitor {
        type Value = i64;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an integer")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
            Ok(v)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
            i64::try_from(v).map_err(|_| E::custom(format!("integer {v} is out of range")))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<i64, E> {
            truncate(v)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<i64, E> {
            parse_int(v).ok_or_else(|| E::custom(format!("invalid integer {v:?}")))
        }
        fn visit_unit<E: de::Error>(self) -> Result<i64, E> {
            Ok(0)
        }
    }
    d.deserialize_any(IntVisitor)
}

/// An optional signed integer; null means absent.
pub(crate) fn opt_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Option::<Int>::deserialize(d).map(|v| v.map(|v| v.0))
}

/// A byte count or other non-negative number, also written as a numeric string; null reads as 0.
pub(crate) fn size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v = int(d)?;
    u64::try_from(v).map_err(|_| de::Error::custom(format!("{v} is negative")))
}

/// A count or size that fits the machine word (limits, capacities).
pub(crate) fn usize<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let v = size(d)?;
    usize::try_from(v).map_err(|_| de::Error::custom(format!("{v} is out of range")))
}

/// A limit where distribution reads zero or a negative value as "use the default": both read as 0.
pub(crate) fn limit<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    Ok(usize::try_from(int(d)?).unwrap_or(0))
}

/// An optional count; null means absent.
pub(crate) fn opt_usize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    match opt_int(d)? {
        None => Ok(None),
        Some(v) => usize::try_from(v)
            .map(Some)
            .map_err(|_| de::Error::custom(format!("{v} is negative"))),
    }
}

/// A failure threshold: distribution treats any value <= 0 as "one failure trips", so negatives read as 0.
pub(crate) fn threshold<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = int(d)?;
    Ok(u32::try_from(v.max(0)).unwrap_or(u32::MAX))
}

/// A duration: a Go duration string ("10s", "1h30m") or an integer number of nanoseconds.
pub(crate) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    struct DurationVisitor;
    impl Visitor<'_> for DurationVisitor {
        type Value = Duration;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a duration such as \"10s\" or an integer number of nanoseconds")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            parse_go_duration(v).map_err(E::custom)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
            Ok(Duration::from_nanos(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
            u64::try_from(v).map(Duration::from_nanos).map_err(|_| {
                E::custom(format!(
                    "invalid duration {v}: negative durations are not allowed"
                ))
            })
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
            self.visit_i64(truncate(v)?)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Duration, E> {
            Ok(Duration::ZERO)
        }
    }
    d.deserialize_any(DurationVisitor)
}

/// An optional duration; null means absent.
pub(crate) fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    Option::<Dur>::deserialize(d).map(|v| v.map(|v| v.0))
}

/// A section (struct, list or map) where null means "all defaults", as an empty section does in Go.
pub(crate) fn or_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Option::<T>::deserialize(d).map(Option::unwrap_or_default)
}

/// [`int`] as a type.
struct Int(i64);

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        int(d).map(Int)
    }
}

/// [`duration`] as a type.
struct Dur(Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        duration(d).map(Dur)
    }
}
