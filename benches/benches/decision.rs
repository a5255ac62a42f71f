//! Criterion benchmarks of the in-process decision on one order of about 400 bytes:
//! v1-signed (parse, JS canonicalization, HMAC, replay memory), v2-signed (parse, HMAC
//! over the body, replay memory), and rejected by a global `HARD_HALT`.
//!
//! The timed region is `decide` alone. It leaves out receiving the message, building
//! the signed fixture (done in the untimed setup), the atomic load of the state, and
//! everything after the decision: forwarding, acknowledgement and reporting.

mod common;

use std::cell::RefCell;
use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use titan_gate_benches::{NOW_MS, REPLAY_CAPACITY, SUBJECT, TAIL, keyring, refill, v1_order};
use titan_gate_core::{Context, Decision, HaltState, Mode, Order, OrderHeaders, Policy, ReplayMemory};

fn decision(c: &mut Criterion) {
    let keyring = keyring();
    let policy = Policy::default();
    let running = HaltState::initial(Mode::Running, "bench", 0);
    let halted = HaltState::initial(Mode::HardHalt, "bench", 0);
    let context = Context { state: &running, keyring: &keyring, policy: &policy, now_ms: NOW_MS };
    let replay = RefCell::new(ReplayMemory::new(REPLAY_CAPACITY));
    let mut sequence = 0u64;
    let mut scratch = String::with_capacity(1024);

    let mut group = c.benchmark_group("decide");
    group.bench_function("v1_signed", |b| {
        b.iter_batched(
            || {
                refill(&replay);
                sequence += 1;
                v1_order(sequence)
            },
            |body| {
                let order = Order { subject: SUBJECT, tail: TAIL, body: &body, headers: OrderHeaders::default() };
                let decision = titan_gate_core::decide(&order, &context, &mut replay.borrow_mut(), &mut scratch);
                assert!(matches!(decision, Decision::Admit(_)), "{decision:?}");
                black_box(decision)
            },
            BatchSize::SmallInput,
        );
    });

    group.bench_function("v2_signed", |b| {
        common::time_admitted_v2(b, &context, &replay, &mut sequence, &mut scratch);
    });

    let halted_context = Context { state: &halted, ..context };
    let body = v1_order(0);
    group.bench_function("halted", |b| {
        b.iter(|| {
            let order =
                Order { subject: SUBJECT, tail: TAIL, body: black_box(&body), headers: OrderHeaders::default() };
            let decision = titan_gate_core::decide(&order, &halted_context, &mut replay.borrow_mut(), &mut scratch);
            black_box(decision)
        });
    });
    group.finish();
}

criterion_group!(benches, decision);
criterion_main!(benches);
