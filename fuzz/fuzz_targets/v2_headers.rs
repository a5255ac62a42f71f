//! Fuzzes the order decision with hostile v2 headers: a made-up signature is never
//! admitted, and an admitted nonce is never admitted again.
//! The checks live in `titan-gate-fuzz-checks`, which the normal test suite runs too.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| titan_gate_fuzz_checks::v2_headers::check(data));
