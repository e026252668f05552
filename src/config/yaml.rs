//! Reading configuration text into a YAML tree the way distribution's YAML library does.
//!
//! gopkg.in/yaml.v2 lets a key appear twice in one mapping and keeps the last value; serde_yaml
//! refuses such a document. Files edited by hand or assembled from templates (Helm values, the
//! documentation's full example) do repeat keys, so the tree is built here with last-wins maps,
//! and each repeated key becomes a warning naming it.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_yaml::{Mapping, Number, Value};

/// Parses `text` into a tree; repeated keys keep their last value and are reported in `warnings`.
pub(crate) fn parse(text: &str, warnings: &mut Vec<String>) -> Result<Value, serde_yaml::Error> {
    let repeated = RefCell::new(Vec::new());
    let seed = Node {
        path: String::new(),
        repeated: &repeated,
    };
    let value = seed.deserialize(serde_yaml::Deserializer::from_str(text))?;
    for key in repeated.into_inner() {
        warnings.push(format!(
            "configuration key {key} is given more than once; the last one is used"
        ));
    }
    Ok(value)
}

/// One node of the tree, at a dotted `path` (for messages).
struct Node<'a> {
    path: String,
    repeated: &'a RefCell<Vec<String>>,
}

impl Node<'_> {
    fn child(&self, key: &str) -> Self {
        Node {
            path: if self.path.is_empty() {
                key.to_owned()
            } else {
                format!("{}.{key}", self.path)
            },
            repeated: self.repeated,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(Number::from(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(Number::from(v)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Number(Number::from(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self.child(&items.len().to_string()))? {
            items.push(item);
        }
        Ok(Value::Sequence(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Mapping::new();
        while let Some(key) = map.next_key_seed(self.child("?"))? {
            let name = match &key {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                other => format!("{other:?}"),
            };
            let value = map.next_value_seed(self.child(&name))?;
            if out.insert(key, value).is_some() {
                let path = self.child(&name).path;
                let mut repeated = self.repeated.borrow_mut();
                if !repeated.contains(&path) {
                    repeated.push(path);
                }
            }
        }
        Ok(Value::Mapping(out))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Value, A::Error> {
        // A tagged node (`!!str 5`, `!custom x`): kept as serde_yaml represents it.
        Value::deserialize(de::value::EnumAccessDeserializer::new(data))
    }
}
