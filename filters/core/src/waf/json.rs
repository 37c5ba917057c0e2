//! A JSON body as the WAF reads it: the document `serde_json::Value` would make — objects by
//! key in byte order, numbers as `serde_json::Number`, the same parser, nesting limit and
//! errors — but with each string borrowed from the text when it holds no escape, objects as
//! sorted vectors instead of B-trees, and **every copy of a repeated key kept** (D107).
//! `Value` keeps the last copy only; an application whose parser keeps the first would act
//! on a value the WAF never saw (`{"q": "<attack>", "q": "hello"}`), so the WAF inspects
//! them all, in the order given. Its leaves and keys are the WAF's JSON targets ([`args`]).

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

/// One JSON value.
#[derive(Debug, PartialEq)]
pub enum Json<'a> {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    Str(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    /// Sorted by key; a repeated key's copies in the order given.
    Object(Vec<(Cow<'a, str>, Json<'a>)>),
}

/// Parse `text` (`None`: not a JSON document, as `serde_json::from_str::<Value>` refuses it).
pub fn parse(text: &str) -> Option<Json<'_>> {
    serde_json::from_str(text).ok()
}

/// A string, borrowed when the parser can lend it.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Json<'de>, E> {
        Ok(Json::Bool(b))
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Json<'de>, E> {
        Ok(Json::Number(n.into()))
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Json<'de>, E> {
        Ok(Json::Number(n.into()))
    }
    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Json<'de>, E> {
        // As `Value`: a float JSON cannot hold is null.
        Ok(serde_json::Number::from_f64(n).map_or(Json::Null, Json::Number))
    }
    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Borrowed(s)))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Owned(s.to_owned())))
    }
    fn visit_string<E: de::Error>(self, s: String) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Owned(s)))
    }
    fn visit_none<E: de::Error>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Json<'de>, D::Error> {
        Json::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        let mut entries: Vec<(Cow<'de, str>, Json<'de>)> = Vec::new();
        while let Some((Text(key), value)) = map.next_entry::<Text<'de>, Json<'de>>()? {
            entries.push((key, value));
        }
        // `Value`'s order: keys in byte order. The sort is stable, so a repeated key's
        // copies stay in the order given.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Json::Object(entries))
    }
}

/// A document's leaves as (path, value), and its keys.
pub type Targets<'a> = (Vec<(String, Cow<'a, str>)>, Vec<Cow<'a, str>>);

/// The leaves of a document as (path, value): `user.tags[1]`, strings, numbers and booleans
/// as text, in the order a depth-first walk meets them, and its keys (argument names), each
/// object's listed when it is reached, last first. At most `max` leaves (the caller refuses more); the parser bounds the nesting.
pub fn args(doc: Json<'_>, max: usize) -> Targets<'_> {
    use std::fmt::Write as _;
    let mut leaves = Vec::new();
    let mut keys = Vec::new();
    let mut stack: Vec<(String, Json<'_>)> = vec![(String::new(), doc)];
    while let Some((path, v)) = stack.pop() {
        if leaves.len() > max || keys.len() > max {
            break;
        }
        match v {
            Json::Object(entries) => {
                for (k, child) in entries.into_iter().rev() {
                    let mut p = String::with_capacity(path.len() + 1 + k.len());
                    p.push_str(&path);
                    if !path.is_empty() {
                        p.push('.');
                    }
                    p.push_str(&k);
                    keys.push(k);
                    stack.push((p, child));
                }
            }
            Json::Array(items) => {
                for (i, child) in items.into_iter().enumerate().rev() {
                    let mut p = String::with_capacity(path.len() + 6);
                    p.push_str(&path);
                    let _ = write!(p, "[{i}]");
                    stack.push((p, child));
                }
            }
            Json::Str(s) => leaves.push((path, s)),
            Json::Number(n) => leaves.push((path, Cow::Owned(n.to_string()))),
            Json::Bool(b) => leaves.push((path, Cow::Borrowed(if b { "true" } else { "false" }))),
            Json::Null => {}
        }
    }
    (leaves, keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Owned = (Vec<(String, String)>, Vec<String>);

    /// `Value`'s reading of `text`, for comparison.
    fn by_value(text: &str) -> Option<Owned> {
        let value: serde_json::Value = serde_json::from_str(text).ok()?;
        let mut leaves = Vec::new();
        let mut keys = Vec::new();
        let mut stack = vec![(String::new(), &value)];
        while let Some((path, v)) = stack.pop() {
            match v {
                serde_json::Value::Object(map) => {
                    for (k, child) in map.iter().rev() {
                        keys.push(k.clone());
                        let p = if path.is_empty() {
                            k.clone()
                        } else {
                            format!("{path}.{k}")
                        };
                        stack.push((p, child));
                    }
                }
                serde_json::Value::Array(items) => {
                    for (i, child) in items.iter().enumerate().rev() {
                        stack.push((format!("{path}[{i}]"), child));
                    }
                }
                serde_json::Value::String(s) => leaves.push((path, s.clone())),
                serde_json::Value::Number(n) => leaves.push((path, n.to_string())),
                serde_json::Value::Bool(b) => leaves.push((path, b.to_string())),
                serde_json::Value::Null => {}
            }
        }
        Some((leaves, keys))
    }

    fn by_json(text: &str) -> Option<Owned> {
        let (leaves, keys) = args(parse(text)?, usize::MAX);
        Some((
            leaves
                .into_iter()
                .map(|(p, v)| (p, v.into_owned()))
                .collect(),
            keys.into_iter().map(Cow::into_owned).collect(),
        ))
    }

    #[test]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn reads_every_document_without_repeated_keys_as_value_does() {
        let deep_ok = format!("{}1{}", "[".repeat(100), "]".repeat(100));
        let too_deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        for text in [
            r#"{"b": 1, "a": [true, null, "x"], "c": {"z": -2, "y": 1.5e3}}"#,
            r#"{"é": 1, "Z": 2, "a": 3, "": 4, "a\u0000": 5}"#,
            r#"{"esc\"aped": "line\nbreak \ud83d\ude00", "plain": "p"}"#,
            r#"[1, -1, 18446744073709551615, -9223372036854775808, 0.1, 1e308, 1E-7, 5e-324]"#,
            r#""just a string""#,
            "42",
            "null",
            "  {\"a\":1}  ",
            &deep_ok,
            // Refused by both.
            &too_deep,
            r#"{"a": 1,}"#,
            r#"{"a" 1}"#,
            r#"[1, 2"#,
            r#"{"a": 1} x"#,
            r#""\ud800""#,
            "1e400",
            "",
            "NaN",
            r#"{"a": 01}"#,
        ] {
            assert_eq!(by_json(text), by_value(text), "{text}");
        }
    }

    #[test]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn every_copy_of_a_repeated_key_is_a_target_in_the_order_given() {
        let text = r#"{"k": "<first>", "j": 1, "k": {"n": "deep"}, "k": "last", "a": 0}"#;
        let (leaves, keys) = by_json(text).unwrap();
        let leaves: Vec<(&str, &str)> = leaves
            .iter()
            .map(|(p, v)| (p.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            leaves,
            [
                ("a", "0"),
                ("j", "1"),
                ("k", "<first>"),
                ("k.n", "deep"),
                ("k", "last")
            ]
        );
        // Keys as `Value`'s walk lists them: an object's keys when it is reached, last first.
        assert_eq!(
            keys,
            ["k", "k", "k", "j", "a", "n"].map(String::from).to_vec()
        );
        // Value keeps only the last copy: its leaves are a subset.
        let (by_value, _) = by_value(text).unwrap();
        assert_eq!(by_value.len(), 3);
    }

    #[test]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn strings_without_escapes_are_borrowed() {
        let Some(Json::Object(entries)) = parse(r#"{"plain": "text", "esc\n": "a\tb"}"#) else {
            panic!("not an object");
        };
        assert!(matches!(&entries[0].0, Cow::Owned(k) if k == "esc\n"));
        assert!(matches!(&entries[0].1, Json::Str(Cow::Owned(v)) if v == "a\tb"));
        assert!(matches!(&entries[1].0, Cow::Borrowed("plain")));
        assert!(matches!(&entries[1].1, Json::Str(Cow::Borrowed("text"))));
    }
}
