//! The parser's structure: values, arrays and objects, and literals.
//!
//! Arrays and objects are parsed with an explicit stack of open containers rather than
//! recursion, so hostile nesting hits the depth limit without touching the call stack.

use std::borrow::Cow;
use std::collections::HashSet;

use super::stacks::Stacks;
use super::{JsonError, JsonErrorKind, Value};

/// Objects with fewer members than this are checked for duplicate keys by a linear scan,
/// which beats hashing for orders of a few dozen fields. Larger objects switch to a hash
/// set so that checking stays linear in the member count.
const LINEAR_SCAN_MAX_MEMBERS: usize = 32;

/// A single-use parser over one input text.
pub(super) struct Parser<'a> {
    pub(super) text: &'a str,
    pub(super) bytes: &'a [u8],
    pub(super) pos: usize,
    max_depth: usize,
    /// Open arrays and objects and their parsed parts.
    open: Stacks<'a>,
    /// Keys of the open objects too large for a linear duplicate scan, innermost last.
    key_sets: Vec<HashSet<Cow<'a, str>>>,
    /// The whole document once its last value is complete.
    document: Option<Value<'a>>,
}

impl Drop for Parser<'_> {
    fn drop(&mut self) {
        std::mem::take(&mut self.open).give_back();
    }
}

/// An array or object whose closing bracket has not been read yet.
#[derive(Debug, Clone, Copy)]
pub(super) enum Frame {
    Array { first_item: usize },
    Object { first_member: usize, has_key_set: bool },
}

impl<'a> Parser<'a> {
    /// Creates a parser after checking that the whole input is valid UTF-8.
    pub(super) fn new(input: &'a [u8], max_depth: usize) -> Result<Self, JsonError> {
        let text = std::str::from_utf8(input)
            .map_err(|error| JsonError::new(JsonErrorKind::InvalidUtf8, error.valid_up_to()))?;

        Ok(Parser { text, bytes: input, pos: 0, max_depth, open: Stacks::take(), key_sets: Vec::new(), document: None })
    }

    /// Parses the single value that makes up the whole input.
    pub(super) fn parse_document(mut self) -> Result<Value<'a>, JsonError> {
        self.parse_value()?;

        self.skip_whitespace();
        if self.pos < self.bytes.len() {
            return Err(self.error(JsonErrorKind::TrailingCharacters));
        }
        // `parse_value` stores the document before it returns `Ok`.
        Ok(self.document.take().unwrap_or(Value::Null))
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

    #[inline]
    pub(super) fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    #[inline]
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

    /// Parses one value, with all the arrays and objects nested in it, into `document`.
    ///
    /// Each pass of the loop reads the start of a value. A scalar or an empty container
    /// is complete at once and goes straight into its parent, and then
    /// [`Self::parse_separators`] reads the commas and closing brackets that follow.
    /// An opening bracket or a comma sends the parser back to the next value.
    fn parse_value(&mut self) -> Result<(), JsonError> {
        loop {
            self.skip_whitespace();
            match self.peek() {
                Some(b'"') => {
                    let text = self.parse_string()?;
                    self.store(Value::String(text));
                }
                Some(b'-' | b'0'..=b'9') => {
                    let number = self.parse_number()?;
                    self.store(Value::Number(number));
                }
                Some(b'{') => {
                    if self.open_object()? {
                        continue;
                    }
                }
                Some(b'[') => {
                    if self.open_array()? {
                        continue;
                    }
                }
                Some(b't') => {
                    self.parse_literal(b"true")?;
                    self.store(Value::Bool(true));
                }
                Some(b'f') => {
                    self.parse_literal(b"false")?;
                    self.store(Value::Bool(false));
                }
                Some(b'n') => {
                    self.parse_literal(b"null")?;
                    self.store(Value::Null);
                }
                _ => return Err(self.unexpected()),
            }

            if !self.parse_separators()? {
                return Ok(());
            }
        }
    }

    /// Puts a complete value where it belongs: in the innermost open container, or in
    /// `document` when there is none.
    ///
    /// Each value is built where `store` is called and stored at once. Returning it to a
    /// shared local first made the compiler copy it through the stack, and reading that
    /// copy back stalled, because store-to-load forwarding fails from the narrower stores
    /// that had just written it.
    #[allow(clippy::inline_always, reason = "the point is to build each value where it is stored")]
    #[inline(always)]
    fn store(&mut self, value: Value<'a>) {
        match self.open.containers.last() {
            Some(Frame::Array { .. }) => self.open.items.push(value),
            Some(Frame::Object { .. }) => {
                if let Some(member) = self.open.members.last_mut() {
                    member.1 = value;
                }
            }
            None => self.document = Some(value),
        }
    }

    /// Reads the commas and closing brackets after a complete value, storing each
    /// container it closes. Returns true after a comma, when another value follows, and
    /// false when the document is complete.
    fn parse_separators(&mut self) -> Result<bool, JsonError> {
        loop {
            let Some(&parent) = self.open.containers.last() else {
                return Ok(false);
            };
            self.skip_whitespace();
            if self.peek() == Some(b',') {
                self.pos += 1;
                if let Frame::Object { first_member, has_key_set } = parent {
                    self.skip_whitespace();
                    self.parse_member_key(first_member, has_key_set)?;
                }
                return Ok(true);
            }

            match parent {
                Frame::Array { first_item } => {
                    self.expect_byte(b']')?;
                    self.open.containers.pop();
                    let items = self.open.items.split_off(first_item);
                    self.store(Value::Array(items));
                }
                Frame::Object { first_member, has_key_set } => {
                    self.expect_byte(b'}')?;
                    self.open.containers.pop();
                    if has_key_set {
                        self.key_sets.pop();
                    }
                    let members = self.open.members.split_off(first_member);
                    self.store(Value::Object(members));
                }
            }
        }
    }

    /// Fails when one more open container would exceed the maximum depth.
    fn check_depth(&self) -> Result<(), JsonError> {
        if self.open.containers.len() >= self.max_depth {
            let max_depth = self.max_depth;
            return Err(self.error(JsonErrorKind::DepthLimitExceeded { max_depth }));
        }
        Ok(())
    }

    /// Continues after `[`. Stores the empty array `[]` and returns false, or returns
    /// true after pushing the new array on the open containers when an item follows.
    fn open_array(&mut self) -> Result<bool, JsonError> {
        self.check_depth()?;
        self.pos += 1;
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.pos += 1;
            self.store(Value::Array(Vec::new()));
            return Ok(false);
        }
        let first_item = self.open.items.len();
        self.open.containers.push(Frame::Array { first_item });
        Ok(true)
    }

    /// Continues after `{`. Stores the empty object `{}` and returns false, or returns
    /// true after pushing the new object on the open containers and reading its first key.
    fn open_object(&mut self) -> Result<bool, JsonError> {
        self.check_depth()?;
        self.pos += 1;
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            self.store(Value::Object(Vec::new()));
            return Ok(false);
        }
        let first_member = self.open.members.len();
        self.open.containers.push(Frame::Object { first_member, has_key_set: false });
        self.parse_member_key(first_member, false)?;
        Ok(true)
    }

    /// Parses `"key" :` for the innermost open object and pushes the member with a
    /// `Value::Null` placeholder, which [`Self::store`] replaces once the value is
    /// complete. Rejects a `__proto__` key or one the object already has.
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
        self.open.members.push((key, Value::Null));
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

        let earlier_members = self.open.members.get(first_member..).unwrap_or_default();
        if earlier_members.iter().any(|(name, _)| same_text(name, key)) {
            return false;
        }
        if earlier_members.len() >= LINEAR_SCAN_MAX_MEMBERS {
            let mut keys: HashSet<Cow<'a, str>> = earlier_members.iter().map(|(name, _)| name.clone()).collect();
            keys.insert(key.clone());
            self.key_sets.push(keys);
            if let Some(Frame::Object { has_key_set, .. }) = self.open.containers.last_mut() {
                *has_key_set = true;
            }
        }
        true
    }

    fn parse_literal(&mut self, word: &[u8]) -> Result<(), JsonError> {
        for &expected in word {
            self.expect_byte(expected)?;
        }
        Ok(())
    }
}

/// Compares two keys, testing the length and then the first and last eight bytes as
/// words before the whole text, because the keys of one object often share a length.
fn same_text(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    match (a.first_chunk::<8>(), b.first_chunk::<8>(), a.last_chunk::<8>(), b.last_chunk::<8>()) {
        (Some(a_head), Some(b_head), Some(a_tail), Some(b_tail)) => {
            u64::from_ne_bytes(*a_head) == u64::from_ne_bytes(*b_head)
                && u64::from_ne_bytes(*a_tail) == u64::from_ne_bytes(*b_tail)
                && (a.len() <= 16 || a == b)
        }
        _ => a.iter().zip(b).all(|(x, y)| x == y),
    }
}
