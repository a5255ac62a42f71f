//! Short proptest versions of the fuzz targets, for the normal test suite: random bytes
//! and random JSON-like token sequences through the same checks cargo-fuzz runs.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use titan_gate_fuzz_checks::{canonical, envelope, halt_command, v2_headers};

/// JSON tokens, envelope field names and number edge cases, so random sequences of them
/// reach deeper into the parser and the field checks than random bytes do.
const TOKENS: [&str; 36] = [
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"",
    "\\",
    "\\u",
    "\\ud800",
    "\\udc00",
    "\\u0000",
    "\u{e9}",
    "\u{1f600}",
    "true",
    "false",
    "null",
    "0",
    "-0",
    "1e400",
    "1e-400",
    "0.1",
    "123456789012345678901234567890",
    "\"type\"",
    "\"titan.cmd.execution.place.v1\"",
    "\"version\"",
    "1",
    "\"producer\"",
    "\"payload\"",
    "\"signal_id\"",
    "\"size\"",
    "\"ts\"",
    "\"nonce\"",
    "\"sig\"",
    "\"__proto__\"",
    " ",
];

/// Joins 0 to 200 tokens into one text.
fn token_text() -> impl Strategy<Value = Vec<u8>> {
    vec(select(&TOKENS[..]), 0..200).prop_map(|tokens| tokens.concat().into_bytes())
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..2_048)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn envelope_random_bytes(data in bytes()) {
        envelope::check(&data);
    }

    #[test]
    fn envelope_token_text(data in token_text()) {
        envelope::check(&data);
    }

    #[test]
    fn canonical_random_bytes(data in bytes()) {
        canonical::check(&data);
    }

    #[test]
    fn canonical_token_text(data in token_text()) {
        canonical::check(&data);
    }

    #[test]
    fn v2_headers_random_input(data in bytes()) {
        v2_headers::check(&data);
    }

    #[test]
    fn halt_command_random_input(data in bytes()) {
        halt_command::check(&data);
    }
}
