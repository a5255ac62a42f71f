//! Fuzzes envelope reading: arbitrary bytes through the strict JSON parser, the envelope
//! field checks and the best-effort id reader that reject events use.
//! The checks live in `titan-gate-fuzz-checks`, which the normal test suite runs too.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| titan_gate_fuzz_checks::envelope::check(data));
