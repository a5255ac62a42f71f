//! String parsing: escapes, surrogate pairs and the control characters JSON forbids.

use std::borrow::Cow;

use super::parser::Parser;
use super::{JsonError, JsonErrorKind};

impl<'a> Parser<'a> {
    /// Parses the string whose opening quote is at the current position.
    ///
    /// Returns a slice of the input when the string has no escapes.
    pub(super) fn parse_string(&mut self) -> Result<Cow<'a, str>, JsonError> {
        self.pos += 1;
        let start = self.pos;
        self.skip_plain_characters();

        match self.peek() {
            Some(b'"') => {
                // Both ends sit next to ASCII bytes, so they are character boundaries.
                let content = &self.text[start..self.pos];
                self.pos += 1;
                Ok(Cow::Borrowed(content))
            }
            Some(b'\\') => self.parse_escaped_string(start).map(Cow::Owned),
            Some(_) => Err(self.error(JsonErrorKind::ControlCharacterInString)),
            None => Err(self.error(JsonErrorKind::UnexpectedEnd)),
        }
    }

    /// Advances to the next quote, backslash or control character, or to the end.
    fn skip_plain_characters(&mut self) {
        let rest = self.bytes.get(self.pos..).unwrap_or_default();
        self.pos += rest.iter().position(|&byte| byte == b'"' || byte == b'\\' || byte < 0x20).unwrap_or(rest.len());
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
