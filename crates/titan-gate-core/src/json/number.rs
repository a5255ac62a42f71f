//! Number parsing: the JSON number grammar and the conversion to the nearest double.

use super::parser::Parser;
use super::{JsonError, JsonErrorKind};

/// 2^53. Every integer up to it is exactly representable as a double.
const MAX_EXACT_MANTISSA: u64 = 1 << 53;

/// Numbers with more digits than this may overflow a `u64` mantissa, so they take the
/// general conversion.
const MAX_FAST_PATH_DIGITS: usize = 19;

/// The powers of ten that are exactly representable as doubles: 10^0 to 10^22.
const EXACT_POWERS_OF_TEN: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
    1e21, 1e22,
];

impl Parser<'_> {
    /// Parses `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?` into the nearest double.
    pub(super) fn parse_number(&mut self) -> Result<f64, JsonError> {
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

        let mut fraction_start = integer_end;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            fraction_start = self.pos;
            self.expect_digits()?;
        }
        let fraction_end = self.pos;

        let mut has_exponent = false;
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            self.expect_digits()?;
            has_exponent = true;
        }

        if !has_exponent {
            let integer = &self.bytes[integer_start..integer_end];
            let fraction = &self.bytes[fraction_start..fraction_end];
            if let Some(magnitude) = exact_decimal(integer, fraction) {
                return Ok(if negative { -magnitude } else { magnitude });
            }
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

/// Converts the decimal `integer.fraction` (digits only) to the nearest double, or
/// returns `None` when this shortcut does not apply.
///
/// This is Clinger's fast path: when the digits, read as one integer, are at most 2^53
/// and there are at most 22 fraction digits, both the integer and the power of ten are
/// exact doubles. One IEEE division then rounds the exact quotient to the nearest
/// double, as the ECMAScript number grammar requires.
fn exact_decimal(integer: &[u8], fraction: &[u8]) -> Option<f64> {
    if integer.len() + fraction.len() > MAX_FAST_PATH_DIGITS {
        return None;
    }
    let power_of_ten = *EXACT_POWERS_OF_TEN.get(fraction.len())?;
    let mantissa = integer.iter().chain(fraction).fold(0u64, |acc, digit| acc * 10 + u64::from(digit - b'0'));
    if mantissa > MAX_EXACT_MANTISSA {
        return None;
    }
    #[allow(clippy::cast_precision_loss, reason = "the mantissa is at most 2^53, so exact")]
    let mantissa = mantissa as f64;
    Some(mantissa / power_of_ten)
}
