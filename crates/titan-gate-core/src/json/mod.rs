//! Strict JSON parsing and the JS-exact canonical form that order signatures cover.
//!
//! Signers compute their HMAC over `JSON.stringify(sortKeysDeep(JSON.parse(text)))` in
//! JavaScript. [`parse`] accepts exactly the texts `JSON.parse` accepts, minus those where
//! two parsers could read different values (duplicate keys, `__proto__` keys, numbers
//! that overflow to infinity, lone surrogates, nesting the downstream service rejects).
//! [`write_canonical`] then reproduces the signed string byte for byte.

mod canonical;
mod error;
mod number;
mod parser;
mod stacks;
mod string;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::borrow::Cow;

pub use canonical::{to_canonical_string, write_canonical};
pub use error::{JsonError, JsonErrorKind};

/// Default maximum nesting depth of arrays and objects that [`parse`] accepts.
///
/// The downstream execution service parses orders with `serde_json` 1.x, whose default
/// recursion limit of 128 rejects a document as soon as it opens its 128th nested
/// container (checked with `serde_json` 1.0.154). So 127 levels is the deepest order both
/// sides can read.
pub const DEFAULT_MAX_DEPTH: usize = 127;

/// A parsed JSON value that borrows strings without escapes from the input.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    /// A finite double, as JavaScript reads the number text.
    Number(f64),
    String(Cow<'a, str>),
    Array(Vec<Value<'a>>),
    /// Object members in document order. [`parse`] guarantees that the keys are distinct.
    Object(Vec<(Cow<'a, str>, Value<'a>)>),
}

impl<'a> Value<'a> {
    /// Returns the value of the member named `key` when `self` is an object.
    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        self.as_object()?.iter().find(|(name, _)| name == key).map(|(_, value)| value)
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(text) => Some(text),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Number(number) => Some(*number),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&[(Cow<'a, str>, Value<'a>)]> {
        match self {
            Value::Object(members) => Some(members),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value<'a>]> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }

    /// Returns the JSON type name (`"null"`, `"boolean"`, `"number"`, `"string"`,
    /// `"array"` or `"object"`) for error messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        }
    }
}

/// Parses one JSON value, nested at most [`DEFAULT_MAX_DEPTH`] levels deep.
///
/// Each thread keeps the parser's working stacks between calls, at most about 100 KiB,
/// so parsing an order allocates only the vectors of the parsed value.
pub fn parse(input: &[u8]) -> Result<Value<'_>, JsonError> {
    parse_with_max_depth(input, DEFAULT_MAX_DEPTH)
}

/// Parses one JSON value whose arrays and objects nest at most `max_depth` levels deep.
///
/// The parser itself uses no recursion, so any depth fails fast without growing the
/// stack. NOTE: dropping a [`Value`] and [`write_canonical`] do recurse once per level,
/// so a `max_depth` in the tens of thousands can let through values that exhaust a
/// thread's stack later.
pub fn parse_with_max_depth(input: &[u8], max_depth: usize) -> Result<Value<'_>, JsonError> {
    parser::Parser::new(input, max_depth)?.parse_document()
}
