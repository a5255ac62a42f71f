//! String parsing: escapes, surrogate pairs and the control characters JSON forbids.

use std::borrow::Cow;

use super::parser::Parser;
use super::{JsonError, JsonErrorKind};

/// The bytes of a `u64`, which [`plain_prefix_length`] tests at once.
const WORD_BYTES: usize = 8;

// Each byte of these words is 0x01, 0x20, `"`, `\` or 0x80, for `special_bytes`.
const ONES: u64 = u64::from_le_bytes([0x01; WORD_BYTES]);
const SPACES: u64 = u64::from_le_bytes([0x20; WORD_BYTES]);
const QUOTES: u64 = u64::from_le_bytes([b'"'; WORD_BYTES]);
const BACKSLASHES: u64 = u64::from_le_bytes([b'\\'; WORD_BYTES]);
const HIGH_BITS: u64 = u64::from_le_bytes([0x80; WORD_BYTES]);

impl<'a> Parser<'a> {
    /// Parses the string whose opening quote is at the current position.
    ///
    /// Returns a slice of the input when the string has no escapes. That case is inlined
    /// into the callers, and everything else is left to [`Self::finish_string`].
    #[allow(
        clippy::inline_always,
        reason = "with plain `inline` the call stayed, which cost 8% more instructions per parse"
    )]
    #[inline(always)]
    pub(super) fn parse_string(&mut self) -> Result<Cow<'a, str>, JsonError> {
        self.pos += 1;
        let start = self.pos;
        self.skip_plain_characters();

        if self.peek() == Some(b'"') {
            // Both ends sit next to ASCII bytes, so they are character boundaries.
            let content = &self.text[start..self.pos];
            self.pos += 1;
            return Ok(Cow::Borrowed(content));
        }
        self.finish_string(start)
    }

    /// Continues a string at the first byte that is not a plain character.
    #[inline(never)]
    fn finish_string(&mut self, start: usize) -> Result<Cow<'a, str>, JsonError> {
        match self.peek() {
            Some(b'\\') => self.parse_escaped_string(start).map(Cow::Owned),
            Some(_) => Err(self.error(JsonErrorKind::ControlCharacterInString)),
            None => Err(self.error(JsonErrorKind::UnexpectedEnd)),
        }
    }

    /// Advances to the next quote, backslash or control character, or to the end.
    #[inline]
    fn skip_plain_characters(&mut self) {
        self.pos += plain_prefix_length(self.bytes.get(self.pos..).unwrap_or_default());
    }

    /// Continues a string at its first backslash, decoding into an owned copy.
    fn parse_escaped_string(&mut self, start: usize) -> Result<String, JsonError> {
        let mut decoded = String::with_capacity(self.pos - start + 16);
        let mut run_start = start;

        loop {
            self.skip_plain_characters();
            match self.peek() {
                Some(b'"') => {
                    decoded.push_str(&self.text[run_start..self.pos]);
                    self.pos += 1;
                    return Ok(decoded);
                }
                Some(b'\\') => {
                    decoded.push_str(&self.text[run_start..self.pos]);
                    decoded.push(self.parse_escape()?);
                    run_start = self.pos;
                }
                Some(_) => return Err(self.error(JsonErrorKind::ControlCharacterInString)),
                None => return Err(self.error(JsonErrorKind::UnexpectedEnd)),
            }
        }
    }

    /// Decodes the escape sequence whose backslash is at the current position.
    fn parse_escape(&mut self) -> Result<char, JsonError> {
        let backslash = self.pos;
        self.pos += 1;

        let decoded = match self.peek() {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                self.pos += 1;
                return self.parse_unicode_escape(backslash);
            }
            Some(_) => return Err(self.error(JsonErrorKind::InvalidEscape)),
            None => return Err(self.error(JsonErrorKind::UnexpectedEnd)),
        };
        self.pos += 1;
        Ok(decoded)
    }

    /// Decodes the four hex digits after `\u`, plus the low half of a surrogate pair.
    ///
    /// JavaScript strings may contain unpaired surrogates, but Rust strings and `serde_json`
    /// cannot, so an unpaired one is rejected with the offset of its backslash.
    fn parse_unicode_escape(&mut self, backslash: usize) -> Result<char, JsonError> {
        let lone_surrogate = JsonError::new(JsonErrorKind::LoneSurrogate, backslash);
        let unit = self.parse_hex4()?;

        let code_point = match unit {
            0xD800..=0xDBFF => {
                let rest = self.bytes.get(self.pos..).unwrap_or_default();
                if !rest.starts_with(b"\\u") {
                    if b"\\u".starts_with(rest) {
                        self.pos = self.bytes.len();
                        return Err(self.error(JsonErrorKind::UnexpectedEnd));
                    }
                    return Err(lone_surrogate);
                }
                self.pos += 2;
                let low = self.parse_hex4()?;
                if !(0xDC00..=0xDFFF).contains(&low) {
                    return Err(lone_surrogate);
                }
                0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(lone_surrogate),
            _ => unit,
        };
        char::from_u32(code_point).ok_or(lone_surrogate)
    }

    fn parse_hex4(&mut self) -> Result<u32, JsonError> {
        let mut value = 0;
        for _ in 0..4 {
            let digit = match self.peek() {
                Some(byte) => char::from(byte).to_digit(16).ok_or_else(|| self.error(JsonErrorKind::InvalidEscape))?,
                None => return Err(self.error(JsonErrorKind::UnexpectedEnd)),
            };
            value = value * 16 + digit;
            self.pos += 1;
        }
        Ok(value)
    }
}

/// Returns the length of the longest prefix of `bytes` without a quote, backslash or
/// control character. These are the bytes that end a string or start an escape in JSON
/// text, and exactly the bytes that `JSON.stringify` escapes.
///
/// Tests eight bytes at a time as one `u64` and finishes the last few one by one.
#[inline]
pub(super) fn plain_prefix_length(bytes: &[u8]) -> usize {
    let mut chunks = bytes.chunks_exact(WORD_BYTES);
    let mut length = 0;
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
        let special = special_bytes(word);
        if special != 0 {
            return length + (special.trailing_zeros() / 8) as usize;
        }
        length += WORD_BYTES;
    }
    let tail = chunks.remainder();
    length + tail.iter().position(|&byte| is_special(byte)).unwrap_or(tail.len())
}

/// Returns true for the bytes that end a run of plain string characters.
fn is_special(byte: u8) -> bool {
    byte == b'"' || byte == b'\\' || byte < 0x20
}

/// Returns a word whose lowest set bit is the high bit of the first byte of `word`
/// (in little-endian order) that [`is_special`] accepts, or 0 when there is none.
///
/// `(x - 0x01..) & !x & 0x80..` marks the bytes of `x` that are zero, and with 0x20 in
/// place of 0x01 the bytes below 0x20. A borrow can also mark a byte above a marked one,
/// but never below, so the lowest mark is exact. Bytes of 0x80 and above are never marked.
fn special_bytes(word: u64) -> u64 {
    let control = word.wrapping_sub(SPACES) & !word;
    let quote = (word ^ QUOTES).wrapping_sub(ONES) & !(word ^ QUOTES);
    let backslash = (word ^ BACKSLASHES).wrapping_sub(ONES) & !(word ^ BACKSLASHES);
    (control | quote | backslash) & HIGH_BITS
}
