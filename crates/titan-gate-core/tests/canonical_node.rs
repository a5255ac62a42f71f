//! Compares our canonical form with Node's `JSON.stringify(sortKeysDeep(JSON.parse(text)))`.
//!
//! Proptest strategies generate payloads with the hard cases of key order, string escaping
//! and number formatting, each written in a randomly chosen spelling. All cases go to one
//! `node tests/canonical_node.js` process. Without `node` on `PATH` the test is skipped.

#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_precision_loss,
    clippy::cast_sign_loss,
    reason = "the payload generator turns random bits into values on purpose"
)]

use std::io::{ErrorKind, Write};
use std::process::{Command, Stdio};
use std::thread;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde::Deserialize;
use titan_gate_core::json;

const CASES: usize = 6_000;

/// Maximum number of mismatches that the failure message lists. The rest are only counted.
const MAX_REPORTED_MISMATCHES: usize = 10;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/canonical_node.js");

/// Keys around the ECMAScript array-index rule: canonical decimals up to 2^32 - 2.
const INDEX_LIKE_KEYS: &[&str] = &[
    "0",
    "1",
    "2",
    "7",
    "10",
    "01",
    "00",
    "-1",
    "-0",
    "1.0",
    "1e3",
    " 1",
    "+1",
    "4294967294",
    "4294967295",
    "4294967296",
    "9007199254740993",
    "",
    "__proto",
    "constructor",
    "toString",
    "length",
    "hasOwnProperty",
    "valueOf",
];

/// Number texts whose rounding or formatting is easy to get wrong.
const TRICKY_NUMBER_TEXTS: &[&str] = &[
    "2.4703282292062327e-324",
    "2.4703282292062328e-324",
    "1.7976931348623158e308",
    "4.9406564584124654e-324",
    "2.2250738585072011e-308",
    "2.2250738585072012e-308",
    "9007199254740993",
    "9007199254740992.5",
    "0.1e1",
    "1E-7",
    "1e+21",
    "100e-2",
    "123456789012345678901234567890",
    "0.000001",
    "0.0000001",
    "-0.0e-0",
    "1e-400",
];

const SPECIAL_DOUBLES: &[f64] = &[
    0.0,
    -0.0,
    1e21,
    1e-7,
    1e-6,
    1e20,
    999_999_999_999_999_900_000.0,
    5e-324,
    f64::MAX,
    -f64::MAX,
    f64::MIN_POSITIVE,
    f64::EPSILON,
    0.1,
    0.3,
    1.0 / 3.0,
    4.35,
    2.5e-8,
    123_456_789_012_345_680_000.0,
    9_007_199_254_740_992.0,
    9_007_199_254_740_994.0,
    1e300,
    1.5e-300,
    0.000_001_234,
];

/// A payload tree whose object keys are unique and never `__proto__`.
#[derive(Debug, Clone)]
enum Payload {
    Null,
    Bool(bool),
    Number(f64),
    /// A number spelled exactly as generated, not derived from a double.
    NumberText(String),
    String(String),
    Array(Vec<Payload>),
    Object(Vec<(String, Payload)>),
}

#[derive(Debug, Deserialize)]
struct NodeResult {
    ok: Option<String>,
    error: Option<String>,
}

/// Character classes with their weights, chosen to hit every escaping and ordering rule.
const CHARACTER_CLASSES: &[(u64, char, char)] = &[
    (6, ' ', '~'),
    (2, '\0', '\u{1f}'),
    (1, '\u{7f}', '\u{7f}'),
    (1, '/', '/'),
    (1, '"', '"'),
    (1, '\\', '\\'),
    (1, '\u{2028}', '\u{2029}'),
    (2, '\u{80}', '\u{7ff}'),
    (2, '\u{800}', '\u{d7ff}'),
    (3, '\u{e000}', '\u{ffff}'),
    (3, '\u{10000}', '\u{10ffff}'),
];

/// A `SplitMix64` generator that picks leaf values and spellings from a proptest seed.
///
/// Proptest chooses the tree shapes and the seeds. Deriving everything below from a seed
/// keeps generation fast in debug builds, where each `prop_oneof!` costs microseconds.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    fn percent(&mut self, chance: u64) -> bool {
        self.below(100) < chance
    }

    fn pick<T: Copy>(&mut self, options: &[T]) -> T {
        options[self.below(options.len() as u64) as usize]
    }

    fn digits(&mut self, count: u64) -> String {
        (0..count).map(|_| char::from(b'0' + self.below(10) as u8)).collect()
    }
}

fn random_character(random: &mut Random) -> char {
    let total: u64 = CHARACTER_CLASSES.iter().map(|(weight, _, _)| weight).sum();
    let mut pick = random.below(total);
    for &(weight, first, last) in CHARACTER_CLASSES {
        if pick < weight {
            let span = u64::from(last) - u64::from(first) + 1;
            let code_point = u64::from(first) + random.below(span);
            return char::from_u32(code_point as u32).expect("classes contain no surrogates");
        }
        pick -= weight;
    }
    unreachable!("pick is below the total weight")
}

fn random_text(random: &mut Random) -> String {
    let len = random.below(10);
    (0..len).map(|_| random_character(random)).collect()
}

fn random_key(random: &mut Random) -> String {
    match random.below(11) {
        0..=2 => random.pick(INDEX_LIKE_KEYS).to_owned(),
        3..=4 => {
            let len = 1 + random.below(11);
            random.digits(len)
        }
        5..=7 => {
            let len = 1 + random.below(8);
            (0..len).map(|_| random.pick(b"abcdefghijklmnopqrstuvwxyz_") as char).collect()
        }
        _ => random_text(random),
    }
}

fn random_double(random: &mut Random) -> f64 {
    let negative = random.percent(50);
    match random.below(13) {
        0..=3 => loop {
            let number = f64::from_bits(random.next());
            if number.is_finite() {
                return number;
            }
        },
        4 => with_sign(f64::from_bits(1 + random.below((1 << 52) - 1)), negative),
        5 => with_sign(((1i64 << 53) - 2048 + random.below(4096) as i64) as f64, negative),
        6..=7 => random.pick(SPECIAL_DOUBLES),
        8..=9 => {
            let mantissa = random.next() as i32;
            let exponent = random.below(60) as i32 - 30;
            f64::from(mantissa) * 10f64.powi(exponent)
        }
        10..=11 => random.next() as i64 as f64,
        _ => (random.next() >> 11) as f64 / (1u64 << 53) as f64 * 2e6 - 1e6,
    }
}

fn with_sign(magnitude: f64, negative: bool) -> f64 {
    if negative { -magnitude } else { magnitude }
}

/// Returns a number text matching `-?(0|[1-9][0-9]{0,25})(\.[0-9]{1,25})?([eE][+-]?[0-9]{1,2})?`
/// or one of the tricky texts. Its magnitude stays far inside the range of a double.
fn random_number_text(random: &mut Random) -> String {
    if random.percent(25) {
        return random.pick(TRICKY_NUMBER_TEXTS).to_owned();
    }
    let mut text = String::new();
    if random.percent(30) {
        text.push('-');
    }
    if random.percent(20) {
        text.push('0');
    } else {
        text.push(char::from(b'1' + random.below(9) as u8));
        let len = random.below(26);
        text.push_str(&random.digits(len));
    }
    if random.percent(50) {
        let len = 1 + random.below(25);
        text.push('.');
        text.push_str(&random.digits(len));
    }
    if random.percent(50) {
        text.push_str(random.pick(&["e", "E", "e+", "E-", "e-", "E+"]));
        let len = 1 + random.below(2);
        text.push_str(&random.digits(len));
    }
    text
}

fn random_leaf(random: &mut Random) -> Payload {
    match random.below(11) {
        0 => Payload::Null,
        1 => Payload::Bool(random.percent(50)),
        2..=5 => Payload::Number(random_double(random)),
        6..=7 => Payload::NumberText(random_number_text(random)),
        _ => Payload::String(random_text(random)),
    }
}

/// Builds an object from seeded members, keeping the first member of each key and
/// dropping `__proto__`, which the parser rejects.
fn object_from_seeds(members: Vec<(u64, Payload)>) -> Payload {
    let mut unique: Vec<(String, Payload)> = Vec::with_capacity(members.len());
    for (seed, value) in members {
        let key = random_key(&mut Random(seed));
        if key != "__proto__" && unique.iter().all(|(seen, _)| *seen != key) {
            unique.push((key, value));
        }
    }
    Payload::Object(unique)
}

fn payload_strategy() -> impl Strategy<Value = Payload> {
    let leaf = any::<u64>().prop_map(|seed| random_leaf(&mut Random(seed)));
    leaf.prop_recursive(4, 48, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Payload::Array),
            prop::collection::vec((any::<u64>(), inner), 0..8).prop_map(object_from_seeds),
        ]
    })
}

/// Mostly objects, as orders are, with some bare values and arrays.
fn document_strategy() -> impl Strategy<Value = Payload> {
    let members = prop::collection::vec((any::<u64>(), payload_strategy()), 0..12);
    prop_oneof![
        4 => members.prop_map(object_from_seeds),
        1 => payload_strategy(),
    ]
}

fn write_whitespace(random: &mut Random, out: &mut String) {
    if random.percent(20) {
        out.push_str(random.pick(&[" ", "  ", "\n", "\t", "\r\n", " \n\t "]));
    }
}

fn write_payload(payload: &Payload, random: &mut Random, out: &mut String) {
    write_whitespace(random, out);
    match payload {
        Payload::Null => out.push_str("null"),
        Payload::Bool(value) => out.push_str(if *value { "true" } else { "false" }),
        Payload::Number(number) => out.push_str(&spell_double(*number, random)),
        Payload::NumberText(text) => out.push_str(text),
        Payload::String(text) => write_string(text, random, out),
        Payload::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_payload(item, random, out);
            }
            write_whitespace(random, out);
            out.push(']');
        }
        Payload::Object(members) => {
            out.push('{');
            for (index, (key, value)) in members.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_whitespace(random, out);
                write_string(key, random, out);
                write_whitespace(random, out);
                out.push(':');
                write_payload(value, random, out);
            }
            write_whitespace(random, out);
            out.push('}');
        }
    }
    write_whitespace(random, out);
}

/// Writes a string with each character either raw or escaped in one of its spellings.
fn write_string(text: &str, random: &mut Random, out: &mut String) {
    out.push('"');
    for character in text.chars() {
        let must_escape = matches!(character, '"' | '\\' | '\0'..='\u{1f}');
        if !must_escape && !random.percent(30) {
            out.push(character);
            continue;
        }
        let short = match character {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '/' => Some("\\/"),
            '\u{8}' => Some("\\b"),
            '\u{c}' => Some("\\f"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            _ => None,
        };
        match short {
            Some(escape) if random.percent(70) => out.push_str(escape),
            _ => write_unicode_escape(character, random, out),
        }
    }
    out.push('"');
}

fn write_unicode_escape(character: char, random: &mut Random, out: &mut String) {
    let uppercase = random.percent(50);
    let mut units = [0u16; 2];
    for unit in character.encode_utf16(&mut units) {
        let escape = if uppercase { format!("\\u{unit:04X}") } else { format!("\\u{unit:04x}") };
        out.push_str(&escape);
    }
}

/// Spells a double in one of several decimal forms that all round to the same value.
fn spell_double(number: f64, random: &mut Random) -> String {
    let sign = if number.is_sign_negative() { "-" } else { "" };
    let scientific = format!("{:e}", number.abs());
    let (mantissa, exponent) = scientific.split_once('e').expect("`{:e}` writes an exponent");
    let exponent: i32 = exponent.parse().expect("`{:e}` writes an integer exponent");
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let (first, rest) = digits.split_at(1);
    let point_shift = exponent - (digits.len() as i32 - 1);

    match random.below(7) {
        0 => format!("{number:?}"),
        1 => {
            let marker = random.pick(&["e", "E"]);
            let exponent_sign = if exponent < 0 { "-" } else { random.pick(&["", "+"]) };
            let padding = random.pick(&["", "0", "00"]);
            let fraction = if rest.is_empty() { String::new() } else { format!(".{rest}") };
            let zeros = if fraction.is_empty() { "" } else { random.pick(&["", "0", "000"]) };
            format!("{sign}{first}{fraction}{zeros}{marker}{exponent_sign}{padding}{}", exponent.abs())
        }
        2 => format!("{sign}{digits}e{point_shift}"),
        3 => format!("{sign}0.{digits}e{}", exponent + 1),
        4 => format!("{sign}{:.25e}", number.abs()),
        5 if (-25..=25).contains(&exponent) => format!("{sign}{}", plain_decimal(&digits, exponent)),
        _ => format!("{sign}{scientific}"),
    }
}

/// Writes `digits` with the point after digit `exponent + 1`, padding with zeros.
fn plain_decimal(digits: &str, exponent: i32) -> String {
    let integer_len = exponent + 1;
    if integer_len <= 0 {
        let zeros = "0".repeat(integer_len.unsigned_abs() as usize);
        return format!("0.{zeros}{digits}");
    }
    let integer_len = integer_len as usize;
    if integer_len >= digits.len() {
        return format!("{digits}{}", "0".repeat(integer_len - digits.len()));
    }
    format!("{}.{}", &digits[..integer_len], &digits[integer_len..])
}

fn generate_cases(count: usize) -> Vec<String> {
    let strategy = (document_strategy(), any::<u64>());
    let mut runner = TestRunner::default();
    (0..count)
        .map(|_| {
            let tree = strategy.new_tree(&mut runner).expect("strategy generates a case");
            let (payload, seed) = tree.current();
            let mut text = String::new();
            write_payload(&payload, &mut Random(seed), &mut text);
            text
        })
        .collect()
}

/// Runs one Node process over all cases, or returns `None` when `node` is not installed.
fn run_node(cases: &[String]) -> Option<Vec<NodeResult>> {
    let spawned =
        Command::new("node").arg(SCRIPT).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) if error.kind() == ErrorKind::NotFound => return None,
        Err(error) => panic!("failed to start node: {error}"),
    };

    let mut input = String::new();
    for case in cases {
        input.push_str(&serde_json::to_string(case).expect("a string encodes as JSON"));
        input.push('\n');
    }
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let writer = thread::spawn(move || stdin.write_all(input.as_bytes()));

    let output = child.wait_with_output().expect("node runs to completion");
    writer.join().expect("stdin writer thread").expect("node reads all cases");
    assert!(output.status.success(), "node failed: {}", output.status);

    let stdout = String::from_utf8(output.stdout).expect("node writes UTF-8");
    let results: Vec<NodeResult> =
        stdout.lines().map(|line| serde_json::from_str(line).expect("node writes one JSON object per line")).collect();
    assert_eq!(results.len(), cases.len(), "node must return one line per case");
    Some(results)
}

/// Returns a description of the disagreement, or `None` when both sides agree.
fn compare_with_node(text: &str, node: &NodeResult) -> Option<String> {
    let ours = json::parse(text.as_bytes()).map(|value| json::to_canonical_string(&value));
    match (&ours, &node.ok) {
        (Ok(ours), Some(expected)) if ours == expected => None,
        _ => Some(format!(
            "input: {text:?}\n  ours: {ours:?}\n  node: {:?}\n  first difference at byte {}",
            node.ok.as_ref().ok_or(&node.error),
            first_difference(ours.as_deref().unwrap_or(""), node.ok.as_deref().unwrap_or("")),
        )),
    }
}

fn first_difference(ours: &str, node: &str) -> usize {
    ours.bytes().zip(node.bytes()).take_while(|(a, b)| a == b).count()
}

#[test]
fn canonical_form_matches_node() {
    let cases = generate_cases(CASES);
    let Some(node_results) = run_node(&cases) else {
        eprintln!("skipping canonical_form_matches_node: `node` is not on PATH");
        return;
    };

    let mismatches: Vec<String> =
        cases.iter().zip(&node_results).filter_map(|(text, node)| compare_with_node(text, node)).collect();

    assert!(
        mismatches.is_empty(),
        "{} of {} cases differ from node; first ones:\n{}",
        mismatches.len(),
        cases.len(),
        mismatches[..mismatches.len().min(MAX_REPORTED_MISMATCHES)].join("\n")
    );
}
