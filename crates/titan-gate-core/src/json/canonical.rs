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

/// The largest array index in ECMAScript: 2^32 - 2.
const MAX_ARRAY_INDEX: u64 = 4_294_967_294;

/// Sort key of the keys that are not array indices, which follow all array indices.
const NOT_AN_ARRAY_INDEX: u64 = u64::MAX;

/// Objects with at most this many members sort their keys without a heap allocation.
const INLINE_SORT_CAPACITY: usize = 32;

/// The escape `JSON.stringify` writes for each control character below U+0020.
const CONTROL_ESCAPES: [&str; 32] = [
    "\\u0000", "\\u0001", "\\u0002", "\\u0003", "\\u0004", "\\u0005", "\\u0006", "\\u0007",
    "\\b", "\\t", "\\n", "\\u000b", "\\f", "\\r", "\\u000e", "\\u000f", "\\u0010", "\\u0011",
    "\\u0012", "\\u0013", "\\u0014", "\\u0015", "\\u0016", "\\u0017", "\\u0018", "\\u0019",
    "\\u001a", "\\u001b", "\\u001c", "\\u001d", "\\u001e", "\\u001f",
];

/// One object member's position in the canonical order.
#[derive(Debug, Clone, Copy, Default)]
struct MemberOrder {
    array_index: u64,
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
fn write_number(number: f64, out: &mut String) {
    if number.is_finite() {
        out.push_str(ryu_js::Buffer::new().format_finite(number));
    } else {
        out.push_str("null");
    }
}

/// Writes a string as ECMAScript `QuoteJSONString` does: only `"`, `\` and control
/// characters are escaped, and everything else is copied as UTF-8.
fn write_string(text: &str, out: &mut String) {
    out.push('"');
    let mut run_start = 0;

    for (index, &byte) in text.as_bytes().iter().enumerate() {
        let escape = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0x00..=0x1f => CONTROL_ESCAPES[usize::from(byte)],
            _ => continue,
        };
        // The escaped bytes are ASCII, so both slice ends are character boundaries.
        out.push_str(&text[run_start..index]);
        out.push_str(escape);
        run_start = index + 1;
    }

    out.push_str(&text[run_start..]);
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
        *slot = MemberOrder { array_index, position };
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
fn compare_members(
    a: &MemberOrder,
    b: &MemberOrder,
    members: &[(Cow<'_, str>, Value<'_>)],
) -> Ordering {
    let by_key = match a.array_index.cmp(&b.array_index) {
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
/// U+D800..=U+DFFF. So only the first differing character needs a UTF-16 comparison.
pub(super) fn compare_utf16(a: &str, b: &str) -> Ordering {
    let common_len = a
        .bytes()
        .zip(b.bytes())
        .take_while(|(x, y)| x == y)
        .count();
    let mut start = common_len;
    while !a.is_char_boundary(start) {
        start -= 1;
    }

    // The shared prefix ends at the same character boundary in both strings.
    let next_a = a.get(start..).and_then(|rest| rest.chars().next());
    let next_b = b.get(start..).and_then(|rest| rest.chars().next());
    match (next_a, next_b) {
        (Some(x), Some(y)) => utf16_sort_key(x).cmp(&utf16_sort_key(y)),
        (x, y) => x.is_some().cmp(&y.is_some()),
    }
}

/// Returns a character's first UTF-16 code unit, then its code point to order two
/// supplementary characters that share a high surrogate.
fn utf16_sort_key(character: char) -> (u32, u32) {
    let code_point = u32::from(character);
    let first_unit = if code_point >= 0x10000 {
        0xD800 + ((code_point - 0x10000) >> 10)
    } else {
        code_point
    };
    (first_unit, code_point)
}
