//! The parser's structure: values, arrays and objects, numbers and literals.
//!
//! Arrays and objects are parsed with an explicit stack of open containers rather than
//! recursion, so hostile nesting hits the depth limit without touching the call stack.

use std::borrow::Cow;
use std::collections::HashSet;
use std::mem;

use super::{JsonError, JsonErrorKind, Value};

/// Objects with fewer members than this are checked for duplicate keys by a linear scan.
/// Larger ones switch to a hash set so that checking stays linear in the member count.
const LINEAR_SCAN_MAX_MEMBERS: usize = 16;

/// Integers with at most this many digits are below 2^53, so they convert to a double
/// exactly without the general decimal-to-double algorithm.
const EXACT_INTEGER_MAX_DIGITS: usize = 15;

/// A single-use parser over one input text.
pub(super) struct Parser<'a> {
    pub(super) text: &'a str,
    pub(super) bytes: &'a [u8],
    pub(super) pos: usize,
    max_depth: usize,
}

/// An array or object whose closing bracket has not been read yet.
enum Frame<'a> {
    Array(Vec<Value<'a>>),
    Object(ObjectFrame<'a>),
}

/// An open object: its complete members and the key whose value is being parsed.
struct ObjectFrame<'a> {
    members: Vec<(Cow<'a, str>, Value<'a>)>,
    pending_key: Cow<'a, str>,
    /// Every key seen so far, built once the object outgrows a linear scan.
    seen_keys: Option<HashSet<Cow<'a, str>>>,
}

/// What the parser found where a value starts.
enum ValueStart<'a> {
    Complete(Value<'a>),
    OpenedContainer,
}

/// What follows a complete value inside its parent container.
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

        Ok(Parser { text, bytes: input, pos: 0, max_depth })
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
        let mut open_containers: Vec<Frame<'a>> = Vec::new();

        loop {
            let mut value = match self.parse_value_start(&mut open_containers)? {
                ValueStart::Complete(value) => value,
                ValueStart::OpenedContainer => continue,
            };

            loop {
                match self.parse_after_value(&mut open_containers, value)? {
                    AfterValue::Document(value) => return Ok(value),
                    AfterValue::NextValue => break,
                    AfterValue::ClosedContainer(container) => value = container,
                }
            }
        }
    }

    /// Parses a scalar, or opens an array or object and pushes it on `open_containers`.
    fn parse_value_start(
        &mut self,
        open_containers: &mut Vec<Frame<'a>>,
    ) -> Result<ValueStart<'a>, JsonError> {
        self.skip_whitespace();

        let value = match self.peek() {
            Some(bracket @ (b'[' | b'{')) => {
                if open_containers.len() >= self.max_depth {
                    let max_depth = self.max_depth;
                    return Err(self.error(JsonErrorKind::DepthLimitExceeded { max_depth }));
                }
                self.pos += 1;
                self.skip_whitespace();
                return self.open_container(bracket, open_containers);
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
    fn open_container(
        &mut self,
        bracket: u8,
        open_containers: &mut Vec<Frame<'a>>,
    ) -> Result<ValueStart<'a>, JsonError> {
        if bracket == b'[' {
            if self.peek() == Some(b']') {
                self.pos += 1;
                return Ok(ValueStart::Complete(Value::Array(Vec::new())));
            }
            open_containers.push(Frame::Array(Vec::new()));
            return Ok(ValueStart::OpenedContainer);
        }

        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(ValueStart::Complete(Value::Object(Vec::new())));
        }
        let mut object = ObjectFrame {
            members: Vec::new(),
            pending_key: Cow::Borrowed(""),
            seen_keys: None,
        };
        object.pending_key = self.parse_member_key(&object)?;
        open_containers.push(Frame::Object(object));
        Ok(ValueStart::OpenedContainer)
    }

    /// Stores a complete value in its parent, then reads the comma or closing bracket.
    fn parse_after_value(
        &mut self,
        open_containers: &mut Vec<Frame<'a>>,
        value: Value<'a>,
    ) -> Result<AfterValue<'a>, JsonError> {
        let Some(parent) = open_containers.last_mut() else {
            return Ok(AfterValue::Document(value));
        };
        self.skip_whitespace();
        let next = self.peek();

        match parent {
            Frame::Array(items) => {
                items.push(value);
                if next == Some(b',') {
                    self.pos += 1;
                    return Ok(AfterValue::NextValue);
                }
                self.expect_byte(b']')?;
                let items = mem::take(items);
                open_containers.pop();
                Ok(AfterValue::ClosedContainer(Value::Array(items)))
            }
            Frame::Object(object) => {
                let key = mem::take(&mut object.pending_key);
                object.members.push((key, value));
                if next == Some(b',') {
                    self.pos += 1;
                    self.skip_whitespace();
                    let key = self.parse_member_key(object)?;
                    object.remember_key(&key);
                    object.pending_key = key;
                    return Ok(AfterValue::NextValue);
                }
                self.expect_byte(b'}')?;
                let members = mem::take(&mut object.members);
                open_containers.pop();
                Ok(AfterValue::ClosedContainer(Value::Object(members)))
            }
        }
    }

    /// Parses `"key" :` and rejects a `__proto__` key or one the object already has.
    fn parse_member_key(&mut self, object: &ObjectFrame<'a>) -> Result<Cow<'a, str>, JsonError> {
        let key_offset = self.pos;
        if self.peek() != Some(b'"') {
            return Err(self.unexpected());
        }
        let key = self.parse_string()?;

        if key == "__proto__" {
            return Err(JsonError::new(JsonErrorKind::ProtoKey, key_offset));
        }
        if object.contains_key(&key) {
            return Err(JsonError::duplicate_key(&key, key_offset));
        }

        self.skip_whitespace();
        self.expect_byte(b':')?;
        Ok(key)
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
        let number: f64 = self.text[start..self.pos]
            .parse()
            .map_err(|_| JsonError::new(JsonErrorKind::InvalidNumber, start))?;
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

impl<'a> ObjectFrame<'a> {
    fn contains_key(&self, key: &str) -> bool {
        match &self.seen_keys {
            Some(seen_keys) => seen_keys.contains(key),
            None => self.members.iter().any(|(name, _)| name == key),
        }
    }

    /// Records a newly accepted key, building the hash set once a scan gets too long.
    #[allow(clippy::ptr_arg, reason = "cloning a borrowed `Cow` copies no text")]
    fn remember_key(&mut self, key: &Cow<'a, str>) {
        if let Some(seen_keys) = &mut self.seen_keys {
            seen_keys.insert(key.clone());
        } else if self.members.len() >= LINEAR_SCAN_MAX_MEMBERS {
            let mut seen_keys: HashSet<Cow<'a, str>> =
                self.members.iter().map(|(name, _)| name.clone()).collect();
            seen_keys.insert(key.clone());
            self.seen_keys = Some(seen_keys);
        }
    }
}
