use super::*;
use crate::keyring::Key;
use crate::state::{Change, ScopeKind, Transition};

const NOW: i64 = 1_764_806_400_000;
const SUBJECT: &str = "titan.gate.execution.place.v1.binance.main.BTC_USDT";
const TAIL: &str = "binance.main.BTC_USDT";
const PAYLOAD: &str = r#"{"signal_id":"sig-1","symbol":"BTC/USDT","direction":1,"type":"BUY_SETUP","size":0.38771252914452203,"status":"VALIDATED","t_signal":1764806400000,"stop_loss":49000,"child_fills":[],"source":"scavenger"}"#;

struct Fixture {
    keyring: Keyring,
    policy: Policy,
    state: HaltState,
    replay: ReplayMemory,
    scratch: String,
}

impl Fixture {
    fn new() -> Self {
        let keyring = Keyring::new([
            Key::new(DEFAULT_KEY_ID, b"titan-test-secret", vec![Role::Order]),
            Key::new("strategy-a", b"strategy-a-secret", vec![Role::Order]).with_strategy(Some("scavenger".to_owned())),
            Key::new("ops", b"ops-secret", vec![Role::Halt, Role::Resume]),
            Key::new("expired", b"old", vec![Role::Order]).with_validity(None, Some(NOW - 1)),
        ]);
        Self {
            keyring,
            policy: Policy::default(),
            state: HaltState::initial(Mode::Running, "test", 0),
            replay: ReplayMemory::new(1024),
            scratch: String::new(),
        }
    }

    fn decide(&mut self, body: &[u8], headers: OrderHeaders<'_>) -> Decision {
        let order = Order { subject: SUBJECT, tail: TAIL, body, headers };
        let context = Context { state: &self.state, keyring: &self.keyring, policy: &self.policy, now_ms: NOW };
        decide(&order, &context, &mut self.replay, &mut self.scratch)
    }

    fn reason(&mut self, body: &[u8], headers: OrderHeaders<'_>) -> Reason {
        match self.decide(body, headers) {
            Decision::Reject(rejection) => rejection.reason,
            Decision::Admit(admission) => {
                panic!("expected a rejection, got {admission:?} for {}", String::from_utf8_lossy(body))
            }
        }
    }

    fn set_state(&mut self, scope: Option<Scope>, mode: Mode) {
        let change = Change { scope, mode, reason: "test".to_owned(), operator: None, key_id: None, signed_ms: None };
        if let Transition::Applied(next) = self.state.apply(&change, NOW - 10, 100) {
            self.state = next;
        }
    }
}

/// Builds a v1-signed envelope around `payload` with the default key.
fn v1_envelope(payload: &str, ts: i64, nonce: &str) -> String {
    let key = Key::new(DEFAULT_KEY_ID, b"titan-test-secret", vec![]);
    let canonical = json::to_canonical_string(&json::parse(payload.as_bytes()).unwrap());
    let sig = signature::sign_v1(&key, ts, nonce, &canonical);
    format!(
        r#"{{"id":"intent-1","type":"titan.cmd.execution.place.v1","version":1,"producer":"titan-brain","ts":{ts},"nonce":"{nonce}","sig":"{sig}","payload":{payload}}}"#
    )
}

fn unsigned_envelope(payload: &str) -> String {
    format!(r#"{{"type":"titan.cmd.execution.place.v1","version":1,"producer":"titan-brain","payload":{payload}}}"#)
}

fn v2_headers<'a>(
    body: &str,
    key_id: &'a str,
    secret: &[u8],
    timestamp: &'a str,
    nonce: &'a str,
    signature: &'a mut String,
) -> OrderHeaders<'a> {
    *signature = signature::sign_v2(&Key::new(key_id, secret, vec![]), SUBJECT, timestamp, nonce, body.as_bytes());
    OrderHeaders {
        msg_id: None,
        key_id: Some(key_id),
        timestamp: Some(timestamp),
        nonce: Some(nonce),
        signature: Some(signature.as_str()),
    }
}

const NONCE: &str = "0123456789abcdef0123456789abcdef";

#[test]
fn v1_signed_order_is_admitted_with_envelope_id() {
    let mut fixture = Fixture::new();
    let body = v1_envelope(PAYLOAD, NOW, NONCE);
    let Decision::Admit(admission) = fixture.decide(body.as_bytes(), OrderHeaders::default()) else {
        panic!("must admit")
    };
    assert_eq!(admission.msg_id, "intent-1");
    assert_eq!(admission.signal_id, "sig-1");
    assert_eq!(admission.key_id, "default");
}

#[test]
fn nats_msg_id_header_wins() {
    let mut fixture = Fixture::new();
    let body = v1_envelope(PAYLOAD, NOW, NONCE);
    let headers = OrderHeaders { msg_id: Some("from-header"), ..OrderHeaders::default() };
    let Decision::Admit(admission) = fixture.decide(body.as_bytes(), headers) else { panic!("must admit") };
    assert_eq!(admission.msg_id, "from-header");
}

#[test]
fn v2_signed_order_is_admitted() {
    let mut fixture = Fixture::new();
    let body = unsigned_envelope(PAYLOAD);
    let mut signature = String::new();
    let headers = v2_headers(&body, "strategy-a", b"strategy-a-secret", "1764806400000", "nonce-v2-1", &mut signature);
    let Decision::Admit(admission) = fixture.decide(body.as_bytes(), headers) else { panic!("must admit") };
    assert_eq!(admission.key_id, "strategy-a");
    assert_eq!(admission.msg_id, "sig-1");
}

#[test]
fn global_hard_halt_rejects_before_anything_else() {
    let mut fixture = Fixture::new();
    fixture.set_state(None, Mode::HardHalt);
    assert_eq!(fixture.reason(b"not even json", OrderHeaders::default()), Reason::SystemHalted);
}

#[test]
fn scoped_halts_apply_to_their_orders_only() {
    let mut fixture = Fixture::new();
    fixture.set_state(Some(Scope::new(ScopeKind::Venue, "bybit")), Mode::HardHalt);
    let body = v1_envelope(PAYLOAD, NOW, NONCE);
    assert!(matches!(fixture.decide(body.as_bytes(), OrderHeaders::default()), Decision::Admit(_)));

    fixture.set_state(Some(Scope::new(ScopeKind::Strategy, "scavenger")), Mode::HardHalt);
    let body = v1_envelope(PAYLOAD, NOW, "1123456789abcdef0123456789abcdef");
    let Decision::Reject(rejection) = fixture.decide(body.as_bytes(), OrderHeaders::default()) else {
        panic!("must reject")
    };
    assert_eq!(rejection.reason, Reason::SystemHalted);
    assert_eq!(rejection.halted_scope, Some(Scope::new(ScopeKind::Strategy, "scavenger")));
}

#[test]
fn soft_halt_passes_only_reducing_intents() {
    let mut fixture = Fixture::new();
    fixture.set_state(Some(Scope::new(ScopeKind::Symbol, "BTC_USDT")), Mode::SoftHalt);
    let body = v1_envelope(PAYLOAD, NOW, NONCE);
    assert_eq!(fixture.reason(body.as_bytes(), OrderHeaders::default()), Reason::ReduceOnly);

    let close = PAYLOAD.replace("BUY_SETUP", "CLOSE_LONG");
    let body = v1_envelope(&close, NOW, NONCE);
    assert!(matches!(fixture.decide(body.as_bytes(), OrderHeaders::default()), Decision::Admit(_)));
}

#[test]
fn unsigned_order_is_rejected() {
    let mut fixture = Fixture::new();
    assert_eq!(fixture.reason(unsigned_envelope(PAYLOAD).as_bytes(), OrderHeaders::default()), Reason::Unsigned);
}

#[test]
fn tampered_payload_fails_v1() {
    let mut fixture = Fixture::new();
    let body = v1_envelope(PAYLOAD, NOW, NONCE).replace("0.38771252914452203", "3.8771252914452203");
    assert_eq!(fixture.reason(body.as_bytes(), OrderHeaders::default()), Reason::HmacSignatureMismatch);
}

#[test]
fn invalid_v2_rejects_even_with_valid_v1() {
    let mut fixture = Fixture::new();
    let body = v1_envelope(PAYLOAD, NOW, NONCE);
    let mut signature = String::new();
    let headers = v2_headers(&body, "strategy-a", b"wrong-secret", "1764806400000", "nonce-v2-2", &mut signature);
    assert_eq!(fixture.reason(body.as_bytes(), headers), Reason::HmacSignatureMismatch);
}

#[test]
fn signature_of_wrong_shape_is_a_mismatch() {
    let mut fixture = Fixture::new();
    let good = v1_envelope(PAYLOAD, NOW, NONCE);
    let sig_start = good.find(r#""sig":""#).unwrap() + 7;
    for bad in ["abc", "zz", &"g".repeat(64), &"a".repeat(65)] {
        let body = format!("{}{bad}{}", &good[..sig_start], &good[sig_start + 64..]);
        assert_eq!(fixture.reason(body.as_bytes(), OrderHeaders::default()), Reason::HmacSignatureMismatch, "{bad}");
    }
}

#[test]
fn unknown_expired_and_wrong_strategy_keys() {
    let mut fixture = Fixture::new();
    let body = unsigned_envelope(PAYLOAD);
    for key_id in ["nobody", "expired", "ops"] {
        let mut signature = String::new();
        let headers = v2_headers(&body, key_id, b"whatever", "1764806400000", "nonce-v2-3", &mut signature);
        assert_eq!(fixture.reason(body.as_bytes(), headers), Reason::UnknownKey, "{key_id}");
    }
    let other = unsigned_envelope(&PAYLOAD.replace("scavenger", "hunter"));
    let mut signature = String::new();
    let headers = v2_headers(&other, "strategy-a", b"strategy-a-secret", "1764806400000", "nonce-v2-4", &mut signature);
    assert_eq!(fixture.reason(other.as_bytes(), headers), Reason::UnknownKey);
}

#[test]
fn timestamp_outside_window_is_stale() {
    let mut fixture = Fixture::new();
    for ts in [NOW - 30_001, NOW + 30_001] {
        let body = v1_envelope(PAYLOAD, ts, NONCE);
        assert_eq!(fixture.reason(body.as_bytes(), OrderHeaders::default()), Reason::StaleTimestamp, "{ts}");
    }
    let body = v1_envelope(PAYLOAD, NOW - 30_000, NONCE);
    assert!(matches!(fixture.decide(body.as_bytes(), OrderHeaders::default()), Decision::Admit(_)));
}

#[test]
fn reused_nonce_is_replay() {
    let mut fixture = Fixture::new();
    let body = v1_envelope(PAYLOAD, NOW, NONCE);
    assert!(matches!(fixture.decide(body.as_bytes(), OrderHeaders::default()), Decision::Admit(_)));
    assert_eq!(fixture.reason(body.as_bytes(), OrderHeaders::default()), Reason::ReplayedNonce);
}

#[test]
fn full_replay_memory_rejects() {
    let mut fixture = Fixture::new();
    fixture.replay = ReplayMemory::new(1);
    let first = v1_envelope(PAYLOAD, NOW, NONCE);
    assert!(matches!(fixture.decide(first.as_bytes(), OrderHeaders::default()), Decision::Admit(_)));
    let second = v1_envelope(PAYLOAD, NOW, "2123456789abcdef0123456789abcdef");
    assert_eq!(fixture.reason(second.as_bytes(), OrderHeaders::default()), Reason::RateLimited);
}

#[test]
fn oversized_body_is_rejected_before_parsing() {
    let mut fixture = Fixture::new();
    fixture.policy.max_payload_bytes = 100;
    assert_eq!(fixture.reason(&[b'x'; 101], OrderHeaders::default()), Reason::PayloadTooLarge);
}

#[test]
fn bad_input_is_malformed() {
    let mut fixture = Fixture::new();
    fixture.policy.max_payload_bytes = 1 << 20;
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("not json", b"hello".to_vec()),
        ("array", b"[1,2,3]".to_vec()),
        ("nesting bomb", deep.into_bytes()),
        ("invalid utf-8", b"{\"a\":\"\xff\"}".to_vec()),
        ("huge number", unsigned_envelope(&PAYLOAD.replace("0.38771252914452203", "1e400")).into_bytes()),
        ("negative zero size", v1_envelope(&PAYLOAD.replace("0.38771252914452203", "-0"), NOW, NONCE).into_bytes()),
        ("lone surrogate", unsigned_envelope(&PAYLOAD.replace("sig-1", "sig-\\ud800")).into_bytes()),
        ("duplicate key", unsigned_envelope(&PAYLOAD.replace(r#""size":"#, r#""size":1,"size":"#)).into_bytes()),
        ("proto key", unsigned_envelope(&PAYLOAD.replace(r#""size":"#, r#""__proto__":{},"size":"#)).into_bytes()),
        ("missing producer", unsigned_envelope(PAYLOAD).replace(r#""producer":"titan-brain","#, "").into_bytes()),
        ("version as string", unsigned_envelope(PAYLOAD).replace(r#""version":1"#, r#""version":"1""#).into_bytes()),
        ("missing signal_id", unsigned_envelope(&PAYLOAD.replace(r#""signal_id":"sig-1","#, "")).into_bytes()),
        ("empty signal_id", unsigned_envelope(&PAYLOAD.replace("sig-1", "")).into_bytes()),
        ("bad direction", unsigned_envelope(&PAYLOAD.replace(r#""direction":1"#, r#""direction":2"#)).into_bytes()),
        ("unknown type", unsigned_envelope(&PAYLOAD.replace("BUY_SETUP", "YOLO")).into_bytes()),
        ("payload array", unsigned_envelope("[]").into_bytes()),
        ("signed without ts", v1_envelope(PAYLOAD, NOW, NONCE).replace(&format!(r#""ts":{NOW},"#), "").into_bytes()),
        ("short nonce", v1_envelope(PAYLOAD, NOW, "abc").into_bytes()),
    ];
    for (name, body) in cases {
        assert_eq!(fixture.reason(&body, OrderHeaders::default()), Reason::Malformed, "{name}");
    }
}

#[test]
fn garbage_v2_headers_are_malformed() {
    let mut fixture = Fixture::new();
    let body = unsigned_envelope(PAYLOAD);
    let cases = [
        OrderHeaders { signature: Some("v2=00"), ..OrderHeaders::default() },
        OrderHeaders {
            signature: Some("v2=00"),
            key_id: Some("strategy-a"),
            timestamp: Some("soon"),
            nonce: Some("nonce-ok-1"),
            msg_id: None,
        },
        OrderHeaders {
            signature: Some("v2=00"),
            key_id: Some("strategy-a"),
            timestamp: Some("1764806400000"),
            nonce: Some("bad nonce!"),
            msg_id: None,
        },
    ];
    for headers in cases {
        assert_eq!(fixture.reason(body.as_bytes(), headers), Reason::Malformed, "{headers:?}");
    }
}

#[test]
fn subject_without_three_tokens_is_malformed() {
    let mut fixture = Fixture::new();
    let body = v1_envelope(PAYLOAD, NOW, NONCE);
    for tail in ["binance.main", "binance..BTC", "a.b.c.d"] {
        let order = Order { subject: SUBJECT, tail, body: body.as_bytes(), headers: OrderHeaders::default() };
        let context =
            Context { state: &fixture.state, keyring: &fixture.keyring, policy: &fixture.policy, now_ms: NOW };
        let decision = decide(&order, &context, &mut fixture.replay, &mut fixture.scratch);
        assert!(matches!(decision, Decision::Reject(Rejection { reason: Reason::Malformed, .. })), "{tail}");
    }
}

#[test]
fn describe_intent_reads_ids_from_broken_bodies() {
    let ids = describe_intent(None, v1_envelope(PAYLOAD, NOW, NONCE).as_bytes(), 1 << 16);
    assert_eq!(ids.intent_id.as_deref(), Some("intent-1"));
    assert_eq!(ids.signal_id.as_deref(), Some("sig-1"));
    assert_eq!(describe_intent(Some("h"), b"garbage", 1 << 16).intent_id.as_deref(), Some("h"));
    assert_eq!(describe_intent(None, b"garbage", 1 << 16), IntentIds::default());
}
