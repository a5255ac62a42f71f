//! Criterion benchmarks that check a wrong signature takes as long to reject whether it
//! matches the correct one in no leading byte or in all but the last byte.
//!
//! - `verify_v2/first_byte_wrong`, `verify_v2/last_byte_wrong`: `signature::verify_v2`
//!   on one fixed order with a `Titan-Signature` that differs from the correct one in the
//!   first or the last of its 32 bytes. The timed region is the whole verification: hex
//!   decoding, the HMAC over the message and the comparison (`hmac`'s `verify_slice`,
//!   which compares with `subtle`).
//! - `compare/constant_time/*`: `subtle::ConstantTimeEq` on the two 32-byte MACs alone.
//! - `compare/early_exit/*`: a byte loop that returns at the first difference. It is the
//!   control: it shows that these benchmarks can see a comparison that stops early.
//!
//! Building the order and the wrong signatures happens once, outside the timed region.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use subtle::ConstantTimeEq;
use titan_gate_benches::{NOW_MS, SUBJECT, V2_KEY_ID, V2_SECRET, v2_order};
use titan_gate_core::{Key, signature};

/// Returns `signature` (`v2=` and 64 hex digits) with the lowest bit of byte `index` flipped.
fn with_wrong_byte(signature: &str, index: usize) -> String {
    let hex_digits = signature.strip_prefix(signature::V2_PREFIX).expect("a v2 signature");
    let mut bytes = hex::decode(hex_digits).expect("hex digits");
    bytes[index] ^= 0x01;
    format!("{}{}", signature::V2_PREFIX, hex::encode(bytes))
}

/// Compares byte by byte and returns at the first difference, as `==` on slices may.
fn early_exit_eq(left: &[u8; 32], right: &[u8; 32]) -> bool {
    for (a, b) in left.iter().zip(right) {
        if a != b {
            return false;
        }
    }
    true
}

fn verify(c: &mut Criterion) {
    let (body, nonce, correct) = v2_order(1);
    let key = Key::new(V2_KEY_ID, V2_SECRET, vec![]);
    let timestamp = NOW_MS.to_string();
    let mut group = c.benchmark_group("verify_v2");
    for (name, index) in [("first_byte_wrong", 0), ("last_byte_wrong", 31)] {
        let wrong = with_wrong_byte(&correct, index);
        group.bench_function(name, |b| {
            b.iter(|| {
                signature::verify_v2(&key, SUBJECT, &timestamp, &nonce, black_box(&body), black_box(&wrong))
                    .expect_err("the signature is wrong")
            });
        });
    }
    group.finish();
}

fn compare(c: &mut Criterion) {
    let correct: [u8; 32] = std::array::from_fn(|index| u8::try_from(index * 7 % 256).expect("below 256"));
    let mut group = c.benchmark_group("compare");
    for (name, index) in [("first_byte_wrong", 0), ("last_byte_wrong", 31)] {
        let mut wrong = correct;
        wrong[index] ^= 0x01;
        group.bench_function(format!("constant_time/{name}"), |b| {
            b.iter(|| bool::from(black_box(&correct).ct_eq(black_box(&wrong))));
        });
        group.bench_function(format!("early_exit/{name}"), |b| {
            b.iter(|| early_exit_eq(black_box(&correct), black_box(&wrong)));
        });
    }
    group.finish();
}

criterion_group!(benches, verify, compare);
criterion_main!(benches);
