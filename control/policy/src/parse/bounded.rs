//! Building the untyped tree of a request under a budget, so that what the text *expands to*
//! is bounded, not just its size.
//!
//! YAML aliases (`*a`) are replayed by the deserializer: a 1 KiB "billion laughs" document
//! (ten aliases of ten aliases of ...) expands to 10^9 nodes, and one anchored list of
//! 80 000 items aliased 180 000 times ("quadratic" expansion) fits in 1 MiB. serde_norway
//! only caps alias *jumps* at 100 × the events of a document, which bounds neither case on a
//! padded input. So the tree is built here, node by node, charging every node (and every
//! byte of a scalar) to a [`Budget`] as the deserializer hands it over: the build stops at the
//! first node over the budget, before the expansion costs more memory or time than a
//! legitimate request of the same limits would. JSON goes through the same builder.

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::cell::Cell;
use std::fmt;

/// What one request may expand to, counted over all of its documents.
#[derive(Debug)]
pub(crate) struct Budget {
    max_nodes: usize,
    max_scalar_bytes: usize,
    nodes: Cell<usize>,
    scalar_bytes: Cell<usize>,
}

/// What a YAML `.nan`/`.inf` becomes in the tree (two Unicode noncharacters around a name), so
/// parse.rs refuses it naming the field instead of reading it as null (an absent optional field).
pub(crate) const NON_FINITE: &str = "\u{FDD0}weft:non-finite-number\u{FDD0}";

/// The refusal, worded for the operator (the text of the serde error).
pub(crate) const EXPANSION_PREFIX: &str = "the input expands to more than";

impl Budget {
    pub(crate) fn new(max_nodes: usize, max_scalar_bytes: usize) -> Self {
        Self {
            max_nodes,
            max_scalar_bytes,
            nodes: Cell::new(0),
            scalar_bytes: Cell::new(0),
        }
    }

    fn charge<E: de::Error>(&self, scalar_bytes: usize) -> Result<(), E> {
        let nodes = self.nodes.get().saturating_add(1);
        self.nodes.set(nodes);
        if nodes > self.max_nodes {
            return Err(E::custom(format!(
                "{EXPANSION_PREFIX} {} nodes (YAML aliases expanded); refused",
                self.max_nodes
            )));
        }
        let bytes = self.scalar_bytes.get().saturating_add(scalar_bytes);
        self.scalar_bytes.set(bytes);
        if bytes > self.max_scalar_bytes {
            return Err(E::custom(format!(
                "{EXPANSION_PREFIX} {} bytes of scalars (YAML aliases expanded); refused",
                self.max_scalar_bytes
            )));
        }
        Ok(())
    }
}

/// Deserialises one [`Value`], charging `budget`.
#[derive(Clone, Copy)]
pub(crate) struct Bounded<'a>(pub(crate) &'a Budget);

impl<'de> DeserializeSeed<'de> for Bounded<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Bounded<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        self.0.charge(0)?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        self.0.charge(0)?;
        Ok(Value::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        self.0.charge(0)?;
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        self.0.charge(0)?;
        // No JSON form for NaN/inf: a marker parse.rs refuses with the field's path.
        Ok(Number::from_f64(v).map_or_else(|| Value::String(NON_FINITE.into()), Value::Number))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.0.charge(v.len())?;
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        self.0.charge(v.len())?;
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.0.charge(0)?;
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }

    fn visit_newtype_struct<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.0.charge(0)?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.0.charge(0)?;
        let mut out = Map::new();
        while let Some(key) = map.next_key_seed(Key(self.0))? {
            let value = map.next_value_seed(self)?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

/// A mapping key: a string (YAML's plain scalars `1` or `true` read as text, as before).
#[derive(Clone, Copy)]
struct Key<'a>(&'a Budget);

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = String;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        self.0.charge(v.len())?;
        Ok(v.to_string())
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        self.0.charge(v.len())?;
        Ok(v)
    }
}
