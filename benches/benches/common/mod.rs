//! Timing loops that more than one benchmark runs.

use std::cell::RefCell;
use std::hint::black_box;

use criterion::{BatchSize, Bencher};
use titan_gate_benches::{NOW_MS, SUBJECT, TAIL, refill, v2_headers, v2_order};
use titan_gate_core::{Context, Decision, Order, ReplayMemory};

/// Times `decide` on v2-signed orders under `context`, each of which must be admitted.
/// Each order gets the next `sequence` number as its nonce and is built and signed in
/// criterion's untimed setup, which also replaces `replay` once it is full.
pub fn time_admitted_v2(
    b: &mut Bencher<'_>,
    context: &Context<'_>,
    replay: &RefCell<ReplayMemory>,
    sequence: &mut u64,
    scratch: &mut String,
) {
    let timestamp = NOW_MS.to_string();
    b.iter_batched(
        || {
            refill(replay);
            *sequence += 1;
            v2_order(*sequence)
        },
        |(body, nonce, signature)| {
            let headers = v2_headers(&timestamp, &nonce, &signature);
            let order = Order { subject: SUBJECT, tail: TAIL, body: &body, headers };
            let decision = titan_gate_core::decide(&order, context, &mut replay.borrow_mut(), scratch);
            assert!(matches!(decision, Decision::Admit(_)), "{decision:?}");
            black_box(decision)
        },
        BatchSize::SmallInput,
    );
}
