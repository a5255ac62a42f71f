//! Criterion benchmarks of the decision as the number of halted scopes grows: 0, 10
//! and 10,000 scopes, spread evenly over the four kinds (venue, account, symbol,
//! strategy), half HARD and half SOFT, none of them one the order falls in.
//!
//! - `decide_v2/{n}`: the whole `decide` on a v2-signed order that is admitted, as in
//!   the `decision` benchmark.
//! - `check_halt/{n}`: the halt check alone, as the forwarder re-runs it; the part of
//!   the decision whose work depends on the scopes.
//! - `decide_scope_halted/10000`: `decide` on an order whose venue is one of the
//!   10,000 scopes, in `HARD_HALT`. It is rejected before the body is read.
//!
//! The timed regions leave out building the state and the signed fixture (done once or
//! in criterion's untimed setup), the atomic load of the state, and everything after
//! the decision.

mod common;

use std::cell::RefCell;
use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use titan_gate_benches::{NOW_MS, REPLAY_CAPACITY, SUBJECT, TAIL, keyring, v2_headers, v2_order};
use titan_gate_core::decide::check_halt;
use titan_gate_core::{
    Context, Decision, HaltEntry, HaltState, Mode, Order, Policy, Reason, ReplayMemory, Scope, ScopeKind,
};

/// The scope counts each benchmark runs with.
const SCOPE_COUNTS: [usize; 3] = [0, 10, 10_000];
/// The strategy of the benchmark orders (the payload's `source`).
const STRATEGY: &str = "scavenger";

fn entry(mode: Mode) -> HaltEntry {
    HaltEntry { mode, reason: "bench".to_owned(), operator: None, since_ms: NOW_MS - 1_000, key_id: None }
}

/// Builds a RUNNING state with `count` halted scopes that no benchmark order falls in,
/// plus `extra` when given.
fn state_with_scopes(count: usize, extra: Option<Scope>) -> HaltState {
    let scopes = (0..count).map(|index| {
        let kind = ScopeKind::ALL[index % ScopeKind::ALL.len()];
        let mode = if index % 2 == 0 { Mode::HardHalt } else { Mode::SoftHalt };
        (Scope::new(kind, format!("{}-{index}", kind.as_str())), entry(mode))
    });
    let expected = count + usize::from(extra.is_some());
    let extra = extra.map(|scope| (scope, entry(Mode::HardHalt)));
    let state = HaltState::from_parts(1, entry(Mode::Running), scopes.chain(extra));
    assert_eq!(state.scope_count(), expected, "every scope is distinct");
    state
}

fn scopes(c: &mut Criterion) {
    let keyring = keyring();
    let policy = Policy::default();
    let replay = RefCell::new(ReplayMemory::new(REPLAY_CAPACITY));
    let mut scratch = String::with_capacity(1024);
    let mut sequence = 0u64;
    let timestamp = NOW_MS.to_string();
    let mut group = c.benchmark_group("scopes");

    for count in SCOPE_COUNTS {
        let state = state_with_scopes(count, None);
        let context = Context { state: &state, keyring: &keyring, policy: &policy, now_ms: NOW_MS };
        group.bench_function(BenchmarkId::new("decide_v2", count), |b| {
            common::time_admitted_v2(b, &context, &replay, &mut sequence, &mut scratch);
        });
        group.bench_function(BenchmarkId::new("check_halt", count), |b| {
            b.iter(|| {
                let checked = check_halt(black_box(&state), black_box(TAIL), black_box(STRATEGY), false);
                assert!(checked.is_ok(), "{checked:?}");
                checked
            });
        });
    }

    let count = SCOPE_COUNTS[SCOPE_COUNTS.len() - 1];
    let state = state_with_scopes(count - 1, Some(Scope::new(ScopeKind::Venue, "binance")));
    let context = Context { state: &state, keyring: &keyring, policy: &policy, now_ms: NOW_MS };
    let (body, nonce, signature) = v2_order(0);
    group.bench_function(BenchmarkId::new("decide_scope_halted", count), |b| {
        b.iter(|| {
            let headers = v2_headers(&timestamp, &nonce, &signature);
            let order = Order { subject: SUBJECT, tail: TAIL, body: black_box(&body), headers };
            let decision = titan_gate_core::decide(&order, &context, &mut replay.borrow_mut(), &mut scratch);
            assert!(
                matches!(&decision, Decision::Reject(rejection) if rejection.reason == Reason::SystemHalted),
                "{decision:?}"
            );
            black_box(decision)
        });
    });
    group.finish();
}

criterion_group!(benches, scopes);
criterion_main!(benches);
