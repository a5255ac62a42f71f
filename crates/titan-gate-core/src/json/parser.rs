//! The parser's structure: values, arrays and objects, numbers and literals.
//!
//! Arrays and objects are parsed with an explicit stack of open containers rather than
//! recursion, so hostile nesting hits the depth limit without touching the call stack.

use std::borrow::Cow;
use std::collections::HashSet;

use super::{JsonError, JsonErrorKind, Value};

/// Objects with fewer members than this are checked for duplicate keys by a linear scan,
/// which beats hashing for orders of a few dozen fields. Larger objects switch to a hash
/// set so that checking stays linear in the member count.
const LINEAR_SCAN_MAX_MEMBERS: usize = 32;

/// Integers with at most this many digits are below 2^53, so they convert to a double
/// exactly without the general decimal-to-double algorithm.
const EXACT_INTEGER_MAX_DIGITS: usize = 15;

/// A single-use parser over one input text.
pub(super) struct Parser<'a> {
    pub(super) text: &'a str,
    pub(super) bytes: &'a [u8],
    pub(super) pos: usize,
    max_depth: usize,
    /// Arrays and objects whose closing bracket has not been read yet, innermost last.
    open_containers: Vec<Frame>,
    /// Items of all open arrays, in document order. Closing an array moves its tail out,
    /// so each array costs one allocation of exactly its length.
    open_items: Vec<Value<'a>>,
    /// Members of all open objects, moved out the same way. The member whose value is
    /// being parsed has a `Value::Null` placeholder until the value is complete.
    open_members: Vec<(Cow<'a, str>, Value<'a>)>,
    /// Keys of the open objects too large for a linear duplicate scan, innermost last.
    key_sets: Vec<HashSet<Cow<'a, str>>>,
}

/// An array or object whose closing bracket has not been read yet.
#[derive(Debug, Clone, Copy)]
enum Frame {
    Array { first_item: usize },
    Object { first_member: usize, has_key_set: bool },
}

/// The result of reading the start of a value.
enum ValueStart<'a> {
    Complete(Value<'a>),
    OpenedContainer,
}

/// The result of reading past a complete value.
enum AfterValue<'a> {
    /// The value was the whole document.
    Document(Value<'a>),
    /// A comma was read, so the next array item or object member value follows.
    NextValue,
    /// The parent container was closed and is now itself a complete value.
    ClosedContainer(Value<'a>),
}

impl<'a> Parser<'a> {
    /// Creates a parser after checking that the whole input is valid UTF-8.
    pub(super) fn new(input: &'a [u8], max_depth: usize) -> Result<Self, JsonError> {
        let text = std::str::from_utf8(input)
            .map_err(|error| JsonError::new(JsonErrorKind::InvalidUtf8, error.valid_up_to()))?;

        Ok(Parser {
            text,
            bytes: input,
            pos: 0,
            max_depth,
            open_containers: Vec::new(),
            open_items: Vec::new(),
            open_members: Vec::new(),
            key_sets: Vec::new(),
        })
    }

    /// Parses the single value that makes up the whole input.
    pub(super) fn parse_document(mut self) -> Result<Value<'a>, JsonError> {
        let value = self.parse_value()?;

        self.skip_whitespace();
        if self.pos < self.bytes.len() {
            return Err(self.error(JsonErrorKind::TrailingCharacters));
        }
        Ok(value)
    }

    pub(super) fn error(&self, kind: JsonErrorKind) -> JsonError {
        JsonError::new(kind, self.pos)
    }

    /// Returns `UnexpectedEnd` at the end of input and `UnexpectedCharacter` elsewhere.
    pub(super) fn unexpected(&self) -> JsonError {
        if self.pos < self.bytes.len() {
            self.error(JsonErrorKind::UnexpectedCharacter)
        } else {
            self.error(JsonErrorKind::UnexpectedEnd)
        }
    }

    pub(super) fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn expect_byte(&mut self, expected: u8) -> Result<(), JsonError> {
        if self.peek() != Some(expected) {
            return Err(self.unexpected());
        }
        self.pos += 1;
        Ok(())
    }

    fn parse_value(&mut self) -> Result<Value<'a>, JsonError> {
        loop {
            let mut value = match self.parse_value_start()? {
                ValueStart::Complete(value) => value,
                ValueStart::OpenedContainer => continue,
            };

            loop {
                match self.parse_after_value(value)? {
                    AfterValue::Document(value) => return Ok(value),
                    AfterValue::NextValue => break,
                    AfterValue::ClosedContainer(container) => value = container,
                }
            }
        }
    }

    /// Parses a scalar, or opens an array or object and pushes it on `open_containers`.
    fn parse_value_start(&mut self) -> Result<ValueStart<'a>, JsonError> {
        self.skip_whitespace();

        let value = match self.peek() {
            Some(bracket @ (b'[' | b'{')) => {
                if self.open_containers.len() >= self.max_depth {
                    let max_depth = self.max_depth;
                    return Err(self.error(JsonErrorKind::DepthLimitExceeded { max_depth }));
                }
                self.pos += 1;
                self.skip_whitespace();
                return self.open_container(bracket);
            }
            Some(b'"') => Value::String(self.parse_string()?),
            Some(b'-' | b'0'..=b'9') => Value::Number(self.parse_number()?),
            Some(b't') => self.parse_literal(b"true", Value::Bool(true))?,
            Some(b'f') => self.parse_literal(b"false", Value::Bool(false))?,
            Some(b'n') => self.parse_literal(b"null", Value::Null)?,
            _ => return Err(self.unexpected()),
        };
        Ok(ValueStart::Complete(value))
    }

    /// Continues after an opening bracket: an empty container is complete at once.
    fn open_container(&mut self, bracket: u8) -> Result<ValueStart<'a>, JsonError> {
        if bracket == b'[' {
            if self.peek() == Some(b']') {
                self.pos += 1;
                return Ok(ValueStart::Complete(Value::Array(Vec::new())));
            }
            let first_item = self.open_items.len();
            self.open_containers.push(Frame::Array { first_item });
            return Ok(ValueStart::OpenedContainer);
        }

        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(ValueStart::Complete(Value::Object(Vec::new())));
        }
        let first_member = self.open_members.len();
        self.open_containers.push(Frame::Object { first_member, has_key_set: false });
        self.parse_member_key(first_member, false)?;
        Ok(ValueStart::OpenedContainer)
    }

    /// Stores a complete value in its parent, then reads the comma or closing bracket.
    fn parse_after_value(&mut self, value: Value<'a>) -> Result<AfterValue<'a>, JsonError> {
        let Some(&parent) = self.open_containers.last() else {
            return Ok(AfterValue::Document(value));
        };
        match parent {
            Frame::Array { .. } => self.open_items.push(value),
            Frame::Object { .. } => {
                if let Some(member) = self.open_members.last_mut() {
                    member.1 = value;
                }
            }
        }

        self.skip_whitespace();
        if self.peek() == Some(b',') {
            self.pos += 1;
            if let Frame::Object { first_member, has_key_set } = parent {
                self.skip_whitespace();
                self.parse_member_key(first_member, has_key_set)?;
            }
            return Ok(AfterValue::NextValue);
        }

        self.open_containers.pop();
        match parent {
            Frame::Array { first_item } => {
                self.expect_byte(b']')?;
                let items = self.open_items.split_off(first_item);
                Ok(AfterValue::ClosedContainer(Value::Array(items)))
            }
            Frame::Object { first_member, has_key_set } => {
                self.expect_byte(b'}')?;
                if has_key_set {
                    self.key_sets.pop();
                }
                let members = self.open_members.split_off(first_member);
                Ok(AfterValue::ClosedContainer(Value::Object(members)))
            }
        }
    }

    /// Parses `"key" :` for the innermost open object and pushes the member with a
    /// placeholder value. Rejects a `__proto__` key or one the object already has.
    fn parse_member_key(&mut self, first_member: usize, has_key_set: bool) -> Result<(), JsonError> {
        let key_offset = self.pos;
        if self.peek() != Some(b'"') {
            return Err(self.unexpected());
        }
        let key = self.parse_string()?;

        if key == "__proto__" {
            return Err(JsonError::new(JsonErrorKind::ProtoKey, key_offset));
        }
        if !self.insert_key(&key, first_member, has_key_set) {
            return Err(JsonError::duplicate_key(&key, key_offset));
        }

        self.skip_whitespace();
        self.expect_byte(b':')?;
        self.open_members.push((key, Value::Null));
        Ok(())
    }

    /// Records a key of the innermost open object and returns whether it is new.
    ///
    /// Scans the object's earlier members until there are too many, then builds a hash
    /// set of its keys, so that checking a large object stays linear in its size.
    #[allow(clippy::ptr_arg, reason = "cloning a borrowed `Cow` copies no text")]
    fn insert_key(&mut self, key: &Cow<'a, str>, first_member: usize, has_key_set: bool) -> bool {
        if has_key_set {
            return self.key_sets.last_mut().is_none_or(|keys| keys.insert(key.clone()));
        }

        let earlier_members = self.open_members.get(first_member..).unwrap_or_default();
        if earlier_members.iter().any(|(name, _)| name == key) {
            return false;
        }
        if earlier_members.len() >= LINEAR_SCAN_MAX_MEMBERS {
            let mut keys: HashSet<Cow<'a, str>> = earlier_members.iter().map(|(name, _)| name.clone()).collect();
            keys.insert(key.clone());
            self.key_sets.push(keys);
            if let Some(Frame::Object { has_key_set, .. }) = self.open_containers.last_mut() {
                *has_key_set = true;
            }
        }
        true
    }

    fn parse_literal(&mut self, word: &[u8], value: Value<'a>) -> Result<Value<'a>, JsonError> {
        for &expected in word {
            self.expect_byte(expected)?;
        }
        Ok(value)
    }

    /// Parses `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?` into the nearest double.
    fn parse_number(&mut self) -> Result<f64, JsonError> {
        let start = self.pos;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }

        let integer_start = self.pos;
        match self.peek() {
            Some(b'0') => {
                self.pos += 1;
                if let Some(b'0'..=b'9') = self.peek() {
                    return Err(self.error(JsonErrorKind::InvalidNumber));
                }
            }
            Some(b'1'..=b'9') => self.skip_digits(),
            _ => return Err(self.invalid_number()),
        }
        let integer_end = self.pos;

        let mut is_integer = true;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.expect_digits()?;
            is_integer = false;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            self.expect_digits()?;
            is_integer = false;
        }

        if is_integer && integer_end - integer_start <= EXACT_INTEGER_MAX_DIGITS {
            let magnitude = self.bytes[integer_start..integer_end]
                .iter()
                .fold(0u64, |acc, digit| acc * 10 + u64::from(digit - b'0'));
            #[allow(clippy::cast_precision_loss, reason = "the integer is below 2^53, so exact")]
            let magnitude = magnitude as f64;
            return Ok(if negative { -magnitude } else { magnitude });
        }

        // Rust's float parsing rounds correctly, as the ECMAScript number grammar requires.
        let number: f64 =
            self.text[start..self.pos].parse().map_err(|_| JsonError::new(JsonErrorKind::InvalidNumber, start))?;
        if number.is_infinite() {
            return Err(JsonError::new(JsonErrorKind::NumberOutOfRange, start));
        }
        Ok(number)
    }

    fn skip_digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
    }

    /// Skips one or more digits, as required after `.` and the exponent marker.
    fn expect_digits(&mut self) -> Result<(), JsonError> {
        if !matches!(self.peek(), Some(b'0'..=b'9')) {
            return Err(self.invalid_number());
        }
        self.skip_digits();
        Ok(())
    }

    /// Returns `UnexpectedEnd` at the end of input and `InvalidNumber` elsewhere.
    fn invalid_number(&self) -> JsonError {
        if self.pos < self.bytes.len() {
            self.error(JsonErrorKind::InvalidNumber)
        } else {
            self.error(JsonErrorKind::UnexpectedEnd)
        }
    }
}
