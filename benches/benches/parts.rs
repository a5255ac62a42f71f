//! Criterion benchmarks of the steps inside one decision, each timed alone on the same
//! orders of about 400 bytes that the `decision` benchmark uses:
//!
//! - `parse/v2_body`, `parse/v1_body`: `json::parse` of the whole envelope, including
//!   the drop of the parsed value.
//! - `envelope_read`: `Envelope::read` on an envelope parsed in the untimed setup.
//! - `canonicalize/v1_payload`: `json::write_canonical` of the payload into a reused
//!   buffer.
//! - `hmac/v1_verify`, `hmac/v2_verify`: signature verification, with the canonical
//!   payload (v1) or the body (v2) prepared in the untimed setup.
//! - `replay/insert`: one `ReplayMemory::check_and_insert` of a new nonce. The memory
//!   starts empty and is replaced in the untimed setup once it contains 500,000 nonces, as
//!   in the `decision` benchmark.
//!
//! The timed regions leave out everything else `decide` does: the halt checks, the key
//! lookup, the clock check and building the admission.
//!
//! Except for `replay/insert`, every iteration sees the same input, hot in the cache,
//! and the branch predictor learns its data. So these numbers understate costs that
//! depend on the data, such as branching on each digit of a random signature, and they
//! do not add up to a `decision` time.

use std::cell::RefCell;
use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use titan_gate_benches::{
    NOW_MS, REPLAY_CAPACITY, SUBJECT, V1_SECRET, V2_KEY_ID, V2_SECRET, refill, v1_order, v2_order,
};
use titan_gate_core::envelope::Envelope;
use titan_gate_core::keyring::DEFAULT_KEY_ID;
use titan_gate_core::{Key, ReplayMemory, json, signature};

/// The clock window of the default policy, so nonces expire as they do in `decide`.
const CLOCK_WINDOW_MS: i64 = 30_000;

fn parse(c: &mut Criterion) {
    let (v2_body, _, _) = v2_order(1);
    let v1_body = v1_order(1);

    let mut group = c.benchmark_group("parse");
    group.bench_function("v2_body", |b| b.iter(|| json::parse(black_box(&v2_body)).expect("the fixture parses")));
    group.bench_function("v1_body", |b| b.iter(|| json::parse(black_box(&v1_body)).expect("the fixture parses")));
    group.finish();
}

fn envelope_read(c: &mut Criterion) {
    let (body, _, _) = v2_order(1);
    let value = json::parse(&body).expect("the fixture parses");

    c.bench_function("envelope_read", |b| {
        b.iter(|| {
            let envelope = Envelope::read(black_box(&value)).expect("the fixture is a valid envelope");
            black_box(envelope.intent.signal_id)
        });
    });
}

fn canonicalize(c: &mut Criterion) {
    let body = v1_order(1);
    let value = json::parse(&body).expect("the fixture parses");
    let payload = value.get("payload").expect("the fixture has a payload");
    let mut out = String::with_capacity(1024);

    c.bench_function("canonicalize/v1_payload", |b| {
        b.iter(|| {
            out.clear();
            json::write_canonical(black_box(payload), &mut out);
            out.len()
        });
    });
}

fn hmac(c: &mut Criterion) {
    let v1_key = Key::new(DEFAULT_KEY_ID, V1_SECRET, vec![]);
    let v1_body = v1_order(1);
    let v1_value = json::parse(&v1_body).expect("the fixture parses");
    let canonical = json::to_canonical_string(v1_value.get("payload").expect("the fixture has a payload"));
    let nonce = v1_value.get("nonce").and_then(json::Value::as_str).expect("the fixture has a nonce");
    let sig = v1_value.get("sig").and_then(json::Value::as_str).expect("the fixture has a signature");

    let v2_key = Key::new(V2_KEY_ID, V2_SECRET, vec![]);
    let (v2_body, v2_nonce, v2_signature) = v2_order(1);
    let timestamp = NOW_MS.to_string();

    let mut group = c.benchmark_group("hmac");
    group.bench_function("v1_verify", |b| {
        b.iter(|| signature::verify_v1(&v1_key, NOW_MS, nonce, black_box(&canonical), sig));
    });
    group.bench_function("v2_verify", |b| {
        b.iter(|| signature::verify_v2(&v2_key, SUBJECT, &timestamp, &v2_nonce, black_box(&v2_body), &v2_signature));
    });
    group.finish();
}

fn replay(c: &mut Criterion) {
    let memory = RefCell::new(ReplayMemory::new(REPLAY_CAPACITY));
    let mut sequence = 0u64;

    c.bench_function("replay/insert", |b| {
        b.iter_batched_ref(
            || {
                refill(&memory);
                sequence += 1;
                format!("{sequence:032x}")
            },
            |nonce| memory.borrow_mut().check_and_insert(nonce.as_bytes(), NOW_MS + CLOCK_WINDOW_MS, NOW_MS),
            BatchSize::SmallInput,
        );
    });
}

criterion_group!(benches, parse, envelope_read, canonicalize, hmac, replay);
criterion_main!(benches);
