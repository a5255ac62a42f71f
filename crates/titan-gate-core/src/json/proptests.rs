//! Property tests: no input makes the parser or writer panic, and canonical text is stable.

use proptest::prelude::*;

use super::{Value, parse, parse_with_max_depth, to_canonical_string};

/// Fragments that steer random input towards the parser's interesting states.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"",
    "\\",
    "\\u",
    "\\uD83D",
    "\\uDE00",
    "\\uDBFF",
    "00e9",
    "\\n",
    "\\/",
    "\\x",
    "0",
    "1",
    "-",
    ".",
    "e",
    "E",
    "+",
    "9",
    "1e400",
    "-0",
    "true",
    "false",
    "null",
    "nul",
    " ",
    "\t",
    "\r\n",
    "\u{c}",
    "\u{feff}",
    "\u{0}",
    "\u{1f}",
    "\u{e9}",
    "\u{1f600}",
    "\u{ffff}",
    "__proto__",
    "\"a\"",
    "\"a\":1",
    "\"\\u0061\":2",
];

/// Parses `input` and, when it is accepted, checks that its canonical text is a fixed
/// point: parsing and writing it again returns the same text.
fn check_accepted_input_is_stable(input: &[u8], max_depth: usize) -> Result<(), TestCaseError> {
    let Ok(value) = parse_with_max_depth(input, max_depth) else {
        return Ok(());
    };
    let canonical = to_canonical_string(&value);

    let reparsed = parse_with_max_depth(canonical.as_bytes(), max_depth);
    prop_assert!(reparsed.is_ok(), "canonical text {canonical:?} is rejected: {reparsed:?}");
    let recanonical = reparsed.map(|value| to_canonical_string(&value)).unwrap_or_default();
    prop_assert_eq!(recanonical, canonical);
    Ok(())
}

fn token_soup() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..40).prop_map(|tokens| tokens.concat().into_bytes())
}

/// Valid JSON text, written by `serde_json`, with keys that may repeat across objects.
fn valid_json() -> impl Strategy<Value = String> {
    let number = prop_oneof![
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_filter("finite", |x| x.is_finite()).prop_map(serde_json::Value::from),
    ];
    let text = prop::collection::vec(any::<char>(), 0..6).prop_map(String::from_iter);
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        number,
        text.clone().prop_map(serde_json::Value::String),
    ];
    let tree = leaf.prop_recursive(5, 40, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(text.clone(), inner, 0..6)
                .prop_map(|members| serde_json::Value::Object(members.into_iter().collect())),
        ]
    });
    tree.prop_map(|value| value.to_string())
}

/// A random edit: remove, insert or overwrite a byte, or cut the text short.
#[derive(Debug, Clone)]
enum Mutation {
    Remove(usize),
    Insert(usize, u8),
    Overwrite(usize, u8),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Remove),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert(at, byte)),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Overwrite(at, byte)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(mutation: &Mutation, bytes: &mut Vec<u8>) {
    let len = bytes.len();
    match *mutation {
        Mutation::Remove(at) if len > 0 => {
            bytes.remove(at % len);
        }
        Mutation::Insert(at, byte) => bytes.insert(at % (len + 1), byte),
        Mutation::Overwrite(at, byte) if len > 0 => bytes[at % len] = byte,
        Mutation::Truncate(at) => bytes.truncate(at % (len + 1)),
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn random_bytes_never_panic(input in prop::collection::vec(any::<u8>(), 0..200), depth in 0usize..6) {
        check_accepted_input_is_stable(&input, depth)?;
        check_accepted_input_is_stable(&input, super::DEFAULT_MAX_DEPTH)?;
    }

    #[test]
    fn token_soup_never_panics(input in token_soup(), depth in 0usize..8) {
        check_accepted_input_is_stable(&input, depth)?;
        check_accepted_input_is_stable(&input, super::DEFAULT_MAX_DEPTH)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn serde_json_output_is_accepted(text in valid_json()) {
        let parsed = parse(text.as_bytes());
        prop_assert!(parsed.is_ok(), "{text:?} is rejected: {parsed:?}");
        check_accepted_input_is_stable(text.as_bytes(), super::DEFAULT_MAX_DEPTH)?;
    }

    #[test]
    fn mutated_json_never_panics(
        text in valid_json(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let mut bytes = text.into_bytes();
        for mutation in &mutations {
            apply(mutation, &mut bytes);
        }
        check_accepted_input_is_stable(&bytes, super::DEFAULT_MAX_DEPTH)?;
    }

    #[test]
    fn canonical_keeps_every_member(text in valid_json()) {
        let value = parse(text.as_bytes()).map_err(|error| TestCaseError::fail(error.to_string()))?;
        let canonical = to_canonical_string(&value);
        let reparsed = parse(canonical.as_bytes()).map_err(|error| TestCaseError::fail(error.to_string()))?;
        prop_assert_eq!(count_members(&reparsed), count_members(&value));
    }
}

fn count_members(value: &Value<'_>) -> usize {
    match value {
        Value::Array(items) => items.iter().map(count_members).sum(),
        Value::Object(members) => members.iter().map(|(_, value)| 1 + count_members(value)).sum(),
        _ => 0,
    }
}
