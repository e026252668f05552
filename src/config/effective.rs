//! The effective configuration tree as an operator may see it: secrets replaced.

use serde_yaml::{Mapping, Value};

/// What a secret's value is shown as.
const MASK: &str = "*****";

/// Whether a key holds a credential (compared in lower case): passwords, keys, tokens,
/// `Authorization` headers.
fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.contains("secret")
        || key.contains("password")
        || key.contains("private_key")
        || key.contains("privatekey")
        || matches!(
            key.as_str(),
            "accesskey" | "accesskeyid" | "accountkey" | "sessiontoken" | "authorization" | "token"
        )
}

/// `tree` with the value of every secret key (at any depth, lists included) replaced.
pub fn masked(tree: &Value) -> Value {
    match tree {
        Value::Mapping(map) => {
            let mut out = Mapping::new();
            for (k, v) in map {
                let secret = k.as_str().is_some_and(is_secret) && !v.is_null();
                let v = if secret && !v.is_mapping() {
                    Value::String(MASK.into())
                } else {
                    masked(v)
                };
                out.insert(k.clone(), v);
            }
            Value::Mapping(out)
        }
        Value::Sequence(items) => Value::Sequence(items.iter().map(masked).collect()),
        Value::Tagged(t) => masked(&t.value),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_at_any_depth() {
        let tree: Value = serde_yaml::from_str(
            "http: {secret: s3cr3t, addr: ':5000'}\n\
             storage: {s3: {accesskey: AK, secretkey: SK, bucket: b}}\n\
             redis: {password: pw}\n\
             notifications: {endpoints: [{name: a, headers: {Authorization: [Bearer x]}}]}\n",
        )
        .unwrap();
        let text = serde_yaml::to_string(&masked(&tree)).unwrap();
        for secret in ["s3cr3t", "AK", "SK", "pw", "Bearer x"] {
            assert!(!text.contains(secret), "{secret} shown in:\n{text}");
        }
        for kept in [":5000", "bucket: b", "name: a"] {
            assert!(text.contains(kept), "{kept} missing from:\n{text}");
        }
    }
}
