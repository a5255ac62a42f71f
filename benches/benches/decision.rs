//! Criterion benchmarks of the in-process decision on one order of about 400 bytes:
//! v1-signed (parse, JS canonicalization, HMAC, replay memory), v2-signed (parse, HMAC
//! over the body, replay memory), and rejected by a global `HARD_HALT`.
//!
//! The timed region is `decide` alone. It leaves out receiving the message, building
//! the signed fixture (done in the untimed setup), the atomic load of the state, and
//! everything after the decision: forwarding, acknowledgement and reporting.

use std::cell::RefCell;
use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use titan_gate_benches::{NOW_MS, SUBJECT, TAIL, V2_KEY_ID, keyring, v1_order, v2_order};
use titan_gate_core::{Context, Decision, HaltState, Mode, Order, OrderHeaders, Policy, ReplayMemory};

/// Replay memory is replaced in the untimed setup once it holds this many nonces, so
/// it stays at a realistic size without growing for the whole run.
const REPLAY_REFILL_AT: usize = 500_000;

fn decision(c: &mut Criterion) {
    let keyring = keyring();
    let policy = Policy::default();
    let running = HaltState::initial(Mode::Running, "bench", 0);
    let halted = HaltState::initial(Mode::HardHalt, "bench", 0);
    let context = Context { state: &running, keyring: &keyring, policy: &policy, now_ms: NOW_MS };
    let replay = RefCell::new(ReplayMemory::new(1 << 20));
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

    let timestamp = NOW_MS.to_string();
    group.bench_function("v2_signed", |b| {
        b.iter_batched(
            || {
                refill(&replay);
                sequence += 1;
                v2_order(sequence)
            },
            |(body, nonce, signature)| {
                let headers = OrderHeaders {
                    msg_id: None,
                    key_id: Some(V2_KEY_ID),
                    timestamp: Some(&timestamp),
                    nonce: Some(&nonce),
                    signature: Some(&signature),
                };
                let order = Order { subject: SUBJECT, tail: TAIL, body: &body, headers };
                let decision = titan_gate_core::decide(&order, &context, &mut replay.borrow_mut(), &mut scratch);
                assert!(matches!(decision, Decision::Admit(_)), "{decision:?}");
                black_box(decision)
            },
            BatchSize::SmallInput,
        );
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

fn refill(replay: &RefCell<ReplayMemory>) {
    if replay.borrow().len() >= REPLAY_REFILL_AT {
        *replay.borrow_mut() = ReplayMemory::new(1 << 20);
    }
}

criterion_group!(benches, decision);
criterion_main!(benches);
