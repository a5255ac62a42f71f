//! Key rotation rules of the order decision: validity windows at their exact boundaries,
//! old and new keys side by side, and keys bound to one strategy.

use titan_gate_core::keyring::{DEFAULT_KEY_ID, Key};
use titan_gate_core::{
    Context, Decision, HaltState, Keyring, Mode, Order, OrderHeaders, Policy, Reason, ReplayMemory, Role, decide, json,
    signature,
};

const NOW: i64 = 1_764_806_400_000;
const SUBJECT: &str = "titan.gate.execution.place.v1.binance.main.BTC_USDT";
const TAIL: &str = "binance.main.BTC_USDT";

fn payload(source: &str) -> String {
    format!(
        r#"{{"signal_id":"sig-1","symbol":"BTC/USDT","direction":1,"type":"BUY_SETUP","size":0.5,"status":"VALIDATED","t_signal":1,"stop_loss":2,"child_fills":[],"source":"{source}"}}"#
    )
}

fn envelope(payload: &str) -> String {
    format!(r#"{{"type":"titan.cmd.execution.place.v1","version":1,"producer":"titan-brain","payload":{payload}}}"#)
}

/// Decides `body` signed with v2 by `key_id` and `secret`, at the gate clock `now`.
fn decide_v2(keyring: &Keyring, body: &str, key_id: &str, secret: &[u8], now: i64, nonce: &str) -> Decision {
    let timestamp = now.to_string();
    let signature = signature::sign_v2(&Key::new(key_id, secret, vec![]), SUBJECT, &timestamp, nonce, body.as_bytes());
    let headers = OrderHeaders {
        msg_id: None,
        key_id: Some(key_id),
        timestamp: Some(&timestamp),
        nonce: Some(nonce),
        signature: Some(&signature),
    };
    let order = Order { subject: SUBJECT, tail: TAIL, body: body.as_bytes(), headers };
    let state = HaltState::initial(Mode::Running, "test", 0);
    let policy = Policy::default();
    let context = Context { state: &state, keyring, policy: &policy, now_ms: now };
    decide(&order, &context, &mut ReplayMemory::new(16), &mut String::new())
}

/// Decides `payload` in a v1 envelope naming `key_id`, signed with `secret`.
fn decide_v1(keyring: &Keyring, payload: &str, key_id: &str, secret: &[u8]) -> Decision {
    let nonce = "0123456789abcdef0123456789abcdef";
    let canonical = json::to_canonical_string(&json::parse(payload.as_bytes()).expect("payload parses"));
    let sig = signature::sign_v1(&Key::new(key_id, secret, vec![]), NOW, nonce, &canonical);
    let body = format!(
        r#"{{"type":"titan.cmd.execution.place.v1","version":1,"producer":"titan-brain","ts":{NOW},"nonce":"{nonce}","sig":"{sig}","key_id":"{key_id}","payload":{payload}}}"#
    );
    let order = Order { subject: SUBJECT, tail: TAIL, body: body.as_bytes(), headers: OrderHeaders::default() };
    let state = HaltState::initial(Mode::Running, "test", 0);
    let policy = Policy::default();
    let context = Context { state: &state, keyring, policy: &policy, now_ms: NOW };
    decide(&order, &context, &mut ReplayMemory::new(16), &mut String::new())
}

fn reason(decision: &Decision) -> Option<Reason> {
    match decision {
        Decision::Admit(_) => None,
        Decision::Reject(rejection) => Some(rejection.reason),
    }
}

#[test]
fn validity_boundaries_are_inclusive() {
    let start = NOW;
    let end = NOW + 60_000;
    let keyring = Keyring::new([
        Key::new("windowed", b"windowed-secret", vec![Role::Order]).with_validity(Some(start), Some(end))
    ]);
    let body = envelope(&payload("scavenger"));
    let cases = [
        ("one ms before not_before", start - 1, Some(Reason::UnknownKey)),
        ("at not_before", start, None),
        ("at not_after", end, None),
        ("one ms after not_after", end + 1, Some(Reason::UnknownKey)),
    ];
    for (name, now, expected) in cases {
        let decision = decide_v2(&keyring, &body, "windowed", b"windowed-secret", now, "nonce-boundary");
        assert_eq!(reason(&decision), expected, "{name}: {decision:?}");
    }
}

#[test]
fn old_and_new_keys_verify_during_overlap() {
    let old = Key::new("orders-2026-01", b"old-secret", vec![Role::Order]).with_validity(None, Some(NOW + 1_000));
    let new = Key::new("orders-2026-02", b"new-secret", vec![Role::Order]).with_validity(Some(NOW - 1_000), None);
    let keyring = Keyring::new([old, new]);
    let body = envelope(&payload("scavenger"));

    let with_old = decide_v2(&keyring, &body, "orders-2026-01", b"old-secret", NOW, "nonce-old-1");
    assert_eq!(reason(&with_old), None, "{with_old:?}");
    let with_new = decide_v2(&keyring, &body, "orders-2026-02", b"new-secret", NOW, "nonce-new-1");
    assert_eq!(reason(&with_new), None, "{with_new:?}");

    let old_after_overlap = decide_v2(&keyring, &body, "orders-2026-01", b"old-secret", NOW + 1_001, "nonce-old-2");
    assert_eq!(reason(&old_after_overlap), Some(Reason::UnknownKey), "{old_after_overlap:?}");
    let new_after_overlap = decide_v2(&keyring, &body, "orders-2026-02", b"new-secret", NOW + 1_001, "nonce-new-2");
    assert_eq!(reason(&new_after_overlap), None, "{new_after_overlap:?}");
}

#[test]
fn new_secret_under_old_id_is_a_mismatch() {
    let keyring = Keyring::new([Key::new("orders", b"new-secret", vec![Role::Order])]);
    let body = envelope(&payload("scavenger"));
    let decision = decide_v2(&keyring, &body, "orders", b"old-secret", NOW, "nonce-reused-id");
    assert_eq!(reason(&decision), Some(Reason::HmacSignatureMismatch), "{decision:?}");
}

#[test]
fn bound_key_signs_only_its_strategy() {
    let keyring = Keyring::new([
        Key::new("key-a", b"secret-a", vec![Role::Order]).with_strategy(Some("scavenger".to_owned())),
        Key::new("key-b", b"secret-b", vec![Role::Order]).with_strategy(Some("hunter".to_owned())),
    ]);
    let order_a = envelope(&payload("scavenger"));

    let own_key = decide_v2(&keyring, &order_a, "key-a", b"secret-a", NOW, "nonce-own-key");
    assert_eq!(reason(&own_key), None, "{own_key:?}");

    let other_key = decide_v2(&keyring, &order_a, "key-b", b"secret-b", NOW, "nonce-other-key");
    assert_eq!(reason(&other_key), Some(Reason::UnknownKey), "{other_key:?}");
    let Decision::Reject(rejection) = other_key else { unreachable!() };
    assert!(rejection.detail.contains("\"hunter\""), "the detail names the key's strategy: {}", rejection.detail);

    let v1_other_key = decide_v1(&keyring, &payload("scavenger"), "key-b", b"secret-b");
    assert_eq!(reason(&v1_other_key), Some(Reason::UnknownKey), "v1 applies the binding too: {v1_other_key:?}");
    let v1_own_key = decide_v1(&keyring, &payload("hunter"), "key-b", b"secret-b");
    assert_eq!(reason(&v1_own_key), None, "{v1_own_key:?}");
}

#[test]
fn producer_names_strategy_without_source() {
    let keyring =
        Keyring::new(
            [Key::new(DEFAULT_KEY_ID, b"v1", vec![Role::Order]).with_strategy(Some("titan-brain".to_owned()))],
        );
    let without_source = payload("x").replace(r#","source":"x""#, "");
    let decision = decide_v1(&keyring, &without_source, DEFAULT_KEY_ID, b"v1");
    assert_eq!(reason(&decision), None, "the producer titan-brain is the strategy: {decision:?}");
}
