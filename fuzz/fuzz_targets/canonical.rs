//! Fuzzes the JS-exact canonical form: whatever the parser accepts, the writer turns
//! into text that parses again and canonicalizes to itself.
//! The checks live in `titan-gate-fuzz-checks`, which the normal test suite runs too.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| titan_gate_fuzz_checks::canonical::check(data));
