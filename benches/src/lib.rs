//! Shared fixtures of the titan-gate benchmarks: a realistic Titan intent and its
//! signed forms.

use std::cell::RefCell;

use titan_gate_core::keyring::DEFAULT_KEY_ID;
use titan_gate_core::{Key, Keyring, OrderHeaders, ReplayMemory, Role, json, signature};

/// The gate's clock in every benchmark, epoch milliseconds.
pub const NOW_MS: i64 = 1_764_806_400_000;
/// The v1 shared secret.
pub const V1_SECRET: &[u8] = b"titan-bench-secret";
/// The v2 order key.
pub const V2_KEY_ID: &str = "strategy-bench";
/// The v2 order key's secret.
pub const V2_SECRET: &[u8] = b"strategy-bench-secret";
/// The intake subject of every benchmark order.
pub const SUBJECT: &str = "titan.gate.execution.place.v1.binance.main.BTC_USDT";
/// The subject's tail after the intake prefix.
pub const TAIL: &str = "binance.main.BTC_USDT";
/// Replay memory is replaced in the untimed setup once it contains this many nonces, so
/// it stays at a realistic size without growing for the whole run.
pub const REPLAY_REFILL_AT: usize = 500_000;
/// Capacity of each replay memory the benchmarks create.
pub const REPLAY_CAPACITY: usize = 1 << 20;

/// A Titan intent payload of about 330 bytes with a full-precision double, as the
/// brain produces them; the envelope around it makes about 400 bytes.
pub fn payload(signal_id: &str) -> String {
    format!(
        r#"{{"signal_id":"{signal_id}","symbol":"BTC/USDT","direction":1,"type":"BUY_SETUP","size":0.38771252914452203,"status":"VALIDATED","t_signal":1764806400000,"stop_loss":49012.5,"child_fills":[],"source":"scavenger","exchange":"binance","entry_zone":[50000.25,50100.75],"take_profits":[52000,53500.5]}}"#
    )
}

/// The keys the benchmarks sign with.
pub fn keyring() -> Keyring {
    Keyring::new([
        Key::new(DEFAULT_KEY_ID, V1_SECRET, vec![Role::Order]),
        Key::new(V2_KEY_ID, V2_SECRET, vec![Role::Order]),
    ])
}

/// A v1-signed envelope with nonce number `sequence`.
pub fn v1_order(sequence: u64) -> Vec<u8> {
    let nonce = format!("{sequence:032x}");
    let payload = payload(&format!("sig-{sequence}"));
    let canonical = json::to_canonical_string(&json::parse(payload.as_bytes()).expect("the fixture parses"));
    let key = Key::new(DEFAULT_KEY_ID, V1_SECRET, vec![]);
    let sig = signature::sign_v1(&key, NOW_MS, &nonce, &canonical);
    format!(r#"{{"id":"intent-{sequence}","type":"titan.cmd.execution.place.v1","version":1,"producer":"titan-brain","ts":{NOW_MS},"nonce":"{nonce}","sig":"{sig}","payload":{payload}}}"#).into_bytes()
}

/// An unsigned envelope with nonce number `sequence`, with the v2 headers that sign it:
/// (body, nonce, signature).
pub fn v2_order(sequence: u64) -> (Vec<u8>, String, String) {
    let nonce = format!("{sequence:032x}");
    let payload = payload(&format!("sig-{sequence}"));
    let body = format!(r#"{{"id":"intent-{sequence}","type":"titan.cmd.execution.place.v1","version":1,"producer":"titan-brain","payload":{payload}}}"#).into_bytes();
    let key = Key::new(V2_KEY_ID, V2_SECRET, vec![]);
    let signature = signature::sign_v2(&key, SUBJECT, &NOW_MS.to_string(), &nonce, &body);
    (body, nonce, signature)
}

/// Replaces the replay memory with an empty one once it contains [`REPLAY_REFILL_AT`]
/// nonces. Call it in the untimed setup.
pub fn refill(replay: &RefCell<ReplayMemory>) {
    if replay.borrow().len() >= REPLAY_REFILL_AT {
        *replay.borrow_mut() = ReplayMemory::new(REPLAY_CAPACITY);
    }
}

/// Builds the v2 headers of an order signed by [`V2_KEY_ID`], from the parts
/// [`v2_order`] returns.
pub fn v2_headers<'a>(timestamp: &'a str, nonce: &'a str, signature: &'a str) -> OrderHeaders<'a> {
    OrderHeaders {
        msg_id: None,
        key_id: Some(V2_KEY_ID),
        timestamp: Some(timestamp),
        nonce: Some(nonce),
        signature: Some(signature),
    }
}
