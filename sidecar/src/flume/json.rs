//! Flume's metrics JSON read without building a tree: components and attributes come out as
//! lists of names and texts borrowed from the body (copied only where the JSON had escapes).
//!
//! What [`parse`](super::parse) sees is exactly what reading into a `serde_json::Value` would
//! have given it, in the same order: the entries of an object sorted by name with the last of
//! duplicate names kept (serde_json's `Map`), numbers and booleans printed as serde_json prints
//! them, and anything nested kept as a `Value`. The same reader checks the syntax and nesting
//! depth, so the same bodies are refused with the same errors. A poll every second of a few
//! agents made a thousand small allocations per body through the tree; this makes a handful.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// One attribute's value.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Scalar<'a> {
    /// A JSON string (what Flume prints for every value).
    Str(Cow<'a, str>),
    /// A number or a boolean, printed as serde_json prints it.
    Printed(String),
    /// Null, an array or an object.
    Other(Value),
}

/// A value that should be a JSON object: its entries sorted by name, or, when it is something
/// else, what it is ("an array", …).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Object<'a, V>(pub Result<Vec<(Cow<'a, str>, V)>, &'static str>);

/// The body: an object of components, each an object of attributes.
pub(super) type Body<'a> = Object<'a, Object<'a, Scalar<'a>>>;

/// An object key, borrowed when it has no escapes.
struct Key<'a>(Cow<'a, str>);

/// Sorts by name and keeps the last of equal names, as inserting into a `BTreeMap` does.
fn sorted<V>(mut entries: Vec<(Cow<'_, str>, V)>) -> Vec<(Cow<'_, str>, V)> {
    // Stable: equal names stay in document order, so the last one is the last written.
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut kept: Vec<(Cow<'_, str>, V)> = Vec::with_capacity(entries.len());
    for entry in entries {
        match kept.last_mut() {
            Some(last) if last.0 == entry.0 => *last = entry,
            _ => kept.push(entry),
        }
    }
    kept
}

// === impl Key ===

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

// === impl Scalar ===

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl<'de> Visitor<'de> for ScalarVisitor {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Str(Cow::Owned(v)))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Printed(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Printed(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Printed(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar<'de>, E> {
                // As `Value` reads it: a non-finite double would be null.
                Ok(match Value::from(v) {
                    Value::Number(n) => Scalar::Printed(n.to_string()),
                    other => Scalar::Other(other),
                })
            }
            fn visit_unit<E>(self) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Other(Value::Null))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Scalar<'de>, A::Error> {
                Value::deserialize(SeqAccessDeserializer::new(seq)).map(Scalar::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Scalar<'de>, A::Error> {
                Value::deserialize(MapAccessDeserializer::new(map)).map(Scalar::Other)
            }
        }
        deserializer.deserialize_any(ScalarVisitor)
    }
}

// === impl Object ===

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Object<'de, V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for ObjectVisitor<V> {
            type Value = Object<'de, V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
                while let Some((Key(key), value)) = map.next_entry::<Key<'de>, V>()? {
                    entries.push((key, value));
                }
                Ok(Object(Ok(sorted(entries))))
            }
            // Not an object: read the value the way `Value` would (same depth limit), say what
            // it was.
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                Value::deserialize(SeqAccessDeserializer::new(seq))?;
                Ok(Object(Err("an array")))
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Object(Err("a string")))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Object(Err("a boolean")))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Object(Err("a number")))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Object(Err("a number")))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Object(Err(if v.is_finite() { "a number" } else { "null" })))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Object(Err("null")))
            }
        }
        deserializer.deserialize_any(ObjectVisitor(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_like_a_value_tree() {
        let body = br#"{"b": {"y": "1", "x": 2, "x": 3.5, "z": [1], "w": null, "v": true, "u": "\u00e9"}, "a": [], "b": {"k": "last"}}"#;
        let Object(Ok(components)) = serde_json::from_slice::<Body<'_>>(body).unwrap() else {
            panic!("an object");
        };
        assert_eq!(components.len(), 2);
        assert_eq!(components[0], ("a".into(), Object(Err("an array"))));
        // The later "b" wins, as in serde_json's map.
        assert_eq!(
            components[1],
            (
                "b".into(),
                Object(Ok(vec![("k".into(), Scalar::Str("last".into()))]))
            )
        );
        let attributes =
            r#"{"y": "1", "x": 2, "x": 3.5, "z": [1], "w": null, "v": true, "u": "\u00e9"}"#;
        let Object(Ok(attributes)) =
            serde_json::from_str::<Object<'_, Scalar<'_>>>(attributes).unwrap()
        else {
            panic!("an object");
        };
        let expected: Vec<(Cow<'_, str>, Scalar<'_>)> = vec![
            ("u".into(), Scalar::Str("é".into())),
            ("v".into(), Scalar::Printed("true".into())),
            ("w".into(), Scalar::Other(Value::Null)),
            ("x".into(), Scalar::Printed("3.5".into())),
            ("y".into(), Scalar::Str("1".into())),
            ("z".into(), Scalar::Other(serde_json::json!([1]))),
        ];
        assert_eq!(attributes, expected);
        assert!(matches!(attributes[4].1, Scalar::Str(Cow::Borrowed(_))));
    }
}
