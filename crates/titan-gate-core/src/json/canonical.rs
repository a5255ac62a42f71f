//! The canonical text that JavaScript signers compute with
//! `JSON.stringify(sortKeysDeep(value))`.
//!
//! `sortKeysDeep` inserts each object's keys in `Array.prototype.sort()` order, which
//! compares UTF-16 code units. A JavaScript object then lists its array-index keys first
//! in ascending numeric order and the other keys in insertion order
//! (ECMAScript `OrdinaryOwnPropertyKeys`), and `JSON.stringify` follows that order.

use std::borrow::Cow;
use std::cmp::Ordering;

use super::Value;
use super::string::plain_prefix_length;

/// The largest array index in ECMAScript: 2^32 - 2.
const MAX_ARRAY_INDEX: u64 = 4_294_967_294;

/// Sort key of the keys that are not array indices, which follow all array indices.
const NOT_AN_ARRAY_INDEX: u64 = u64::MAX;

/// 2^53 as a double. Every integer of smaller magnitude is exactly representable.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_992.0;

/// Objects with at most this many members sort their keys without a heap allocation.
const INLINE_SORT_CAPACITY: usize = 32;

/// The escape `JSON.stringify` writes for each control character below U+0020.
const CONTROL_ESCAPES: [&str; 32] = [
    "\\u0000", "\\u0001", "\\u0002", "\\u0003", "\\u0004", "\\u0005", "\\u0006", "\\u0007", "\\b", "\\t", "\\n",
    "\\u000b", "\\f", "\\r", "\\u000e", "\\u000f", "\\u0010", "\\u0011", "\\u0012", "\\u0013", "\\u0014", "\\u0015",
    "\\u0016", "\\u0017", "\\u0018", "\\u0019", "\\u001a", "\\u001b", "\\u001c", "\\u001d", "\\u001e", "\\u001f",
];

/// One object member's position in the canonical order.
#[derive(Debug, Clone, Copy, Default)]
struct MemberOrder {
    array_index: u64,
    /// The key's first bytes, which decide most comparisons without reading the key.
    prefix: u64,
    position: usize,
}

/// Appends `JSON.stringify(sortKeysDeep(value))` to `out`.
///
/// A non-finite number, which [`super::parse`] never returns, is written as `null`, as
/// `JSON.stringify` does.
pub fn write_canonical(value: &Value<'_>, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(number) => write_number(*number, out),
        Value::String(text) => write_string(text, out),
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(members) => write_object(members, out),
    }
}

/// Returns `JSON.stringify(sortKeysDeep(value))`.
pub fn to_canonical_string(value: &Value<'_>) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

/// Writes a number as ECMAScript `Number::toString` does, which `ryu-js` implements.
///
/// Integers below 2^53 skip Ryū, because their shortest round-trip form is their exact
/// decimal digits, which `Number::toString` prints in full below 1e21.
fn write_number(number: f64, out: &mut String) {
    #[allow(clippy::cast_possible_truncation, reason = "checked to be an integer below 2^53")]
    let integer = number as i64;
    #[allow(
        clippy::cast_precision_loss,
        clippy::float_cmp,
        reason = "integers below 2^53 convert exactly, so equality is the right test"
    )]
    let is_safe_integer = number.abs() < MAX_SAFE_INTEGER && integer as f64 == number;
    if is_safe_integer {
        write_integer(integer, out);
    } else if number.is_finite() {
        out.push_str(ryu_js::Buffer::new().format_finite(number));
    } else {
        out.push_str("null");
    }
}

/// Writes an integer in decimal. `-0.0` arrives here as `0`, which is also what JavaScript prints.
fn write_integer(integer: i64, out: &mut String) {
    if integer < 0 {
        out.push('-');
    }
    let mut magnitude = integer.unsigned_abs();
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        #[allow(clippy::cast_possible_truncation, reason = "a remainder mod 10 fits in u8")]
        let digit = (magnitude % 10) as u8;
        digits[start] = b'0' + digit;
        magnitude /= 10;
        if magnitude == 0 {
            break;
        }
    }
    if let Ok(decimal) = std::str::from_utf8(&digits[start..]) {
        out.push_str(decimal);
    }
}

/// Writes a string as ECMAScript `QuoteJSONString` does. Only `"`, `\` and control
/// characters are escaped, and everything else is copied as UTF-8.
fn write_string(text: &str, out: &mut String) {
    out.push('"');
    let bytes = text.as_bytes();
    let mut run_start = 0;

    loop {
        let index = run_start + plain_prefix_length(&bytes[run_start..]);
        // The escaped bytes are ASCII, so both slice ends are character boundaries.
        out.push_str(&text[run_start..index]);
        let escape = match bytes.get(index) {
            None => break,
            Some(b'"') => "\\\"",
            Some(b'\\') => "\\\\",
            Some(&control) => CONTROL_ESCAPES[usize::from(control)],
        };
        out.push_str(escape);
        run_start = index + 1;
    }

    out.push('"');
}

fn write_object(members: &[(Cow<'_, str>, Value<'_>)], out: &mut String) {
    let mut inline = [MemberOrder::default(); INLINE_SORT_CAPACITY];
    let mut heap = Vec::new();
    let order = if members.len() <= INLINE_SORT_CAPACITY {
        &mut inline[..members.len()]
    } else {
        heap.resize(members.len(), MemberOrder::default());
        &mut heap[..]
    };

    for (position, (slot, (key, _))) in order.iter_mut().zip(members).enumerate() {
        let array_index = parse_array_index(key).unwrap_or(NOT_AN_ARRAY_INDEX);
        let prefix = utf16_order_prefix(key);
        *slot = MemberOrder { array_index, prefix, position };
    }
    order.sort_unstable_by(|a, b| compare_members(a, b, members));

    out.push('{');
    for (index, member) in order.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        let (key, value) = &members[member.position];
        write_string(key, out);
        out.push(':');
        write_canonical(value, out);
    }
    out.push('}');
}

/// Orders array indices numerically before all other keys, which compare as UTF-16.
///
/// Equal keys, which only a hand-built [`Value`] can contain, keep document order.
fn compare_members(a: &MemberOrder, b: &MemberOrder, members: &[(Cow<'_, str>, Value<'_>)]) -> Ordering {
    let by_key = match (a.array_index, a.prefix).cmp(&(b.array_index, b.prefix)) {
        Ordering::Equal if a.array_index == NOT_AN_ARRAY_INDEX => {
            compare_utf16(&members[a.position].0, &members[b.position].0)
        }
        ordering => ordering,
    };
    by_key.then(a.position.cmp(&b.position))
}

/// Returns the numeric value of a key that ECMAScript treats as an array index: the
/// canonical decimal form (no sign, no leading zero) of an integer in `0..=2^32 - 2`.
fn parse_array_index(key: &str) -> Option<u64> {
    let digits = key.as_bytes();
    let has_leading_zero = digits.len() > 1 && digits[0] == b'0';
    if digits.is_empty() || digits.len() > 10 || has_leading_zero {
        return None;
    }

    let mut value = 0u64;
    for &digit in digits {
        if !digit.is_ascii_digit() {
            return None;
        }
        value = value * 10 + u64::from(digit - b'0');
    }
    (value <= MAX_ARRAY_INDEX).then_some(value)
}

/// Compares two strings by their UTF-16 code units, as JavaScript's default sort does.
///
/// UTF-8 byte order equals code point order, which differs from UTF-16 order only
/// between U+E000..=U+FFFF and supplementary characters, encoded as surrogates
/// U+D800..=U+DFFF. Both of those start with a byte of 0xEE or more in UTF-8, so the
/// byte order decides unless one of the first differing bytes is that high.
pub(super) fn compare_utf16(a: &str, b: &str) -> Ordering {
    let common_len = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    match (a.as_bytes().get(common_len), b.as_bytes().get(common_len)) {
        (Some(&x), Some(&y)) if x < 0xEE && y < 0xEE => return x.cmp(&y),
        (Some(_), Some(_)) => {}
        (x, y) => return x.is_some().cmp(&y.is_some()),
    }

    // The shared prefix ends at the same character boundary in both strings.
    let mut start = common_len;
    while !a.is_char_boundary(start) {
        start -= 1;
    }
    let next_a = a.get(start..).and_then(|rest| rest.chars().next());
    let next_b = b.get(start..).and_then(|rest| rest.chars().next());
    match (next_a, next_b) {
        (Some(x), Some(y)) => utf16_sort_key(x).cmp(&utf16_sort_key(y)),
        (x, y) => x.is_some().cmp(&y.is_some()),
    }
}

/// Packs a key's first eight bytes so that comparing two prefixes agrees with
/// [`compare_utf16`] whenever the prefixes differ.
///
/// Bytes after the end of the key are 0x00. A byte of 0xEE or more starts a character
/// that sorts after every character with a smaller first byte in UTF-16 order, so it
/// and everything after it become 0xFF. Equal prefixes need the full comparison.
fn utf16_order_prefix(key: &str) -> u64 {
    let bytes = key.as_bytes();
    let mut prefix = 0u64;
    let mut stopped = false;
    for index in 0..8 {
        let byte = match bytes.get(index) {
            _ if stopped => 0xFF,
            Some(&byte) if byte >= 0xEE => {
                stopped = true;
                0xFF
            }
            Some(&byte) => byte,
            None => 0x00,
        };
        prefix = (prefix << 8) | u64::from(byte);
    }
    prefix
}

/// Returns a character's first UTF-16 code unit, then its code point to order two
/// supplementary characters that share a high surrogate.
fn utf16_sort_key(character: char) -> (u32, u32) {
    let code_point = u32::from(character);
    let first_unit = if code_point >= 0x10000 { 0xD800 + ((code_point - 0x10000) >> 10) } else { code_point };
    (first_unit, code_point)
}
