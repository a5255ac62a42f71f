//! Fuzzes halt-command reading and its authorization: anything unreadable halts
//! everything, and nothing without a valid `resume` signature loosens the state.
//! The checks live in `titan-gate-fuzz-checks`, which the normal test suite runs too.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| titan_gate_fuzz_checks::halt_command::check(data));
