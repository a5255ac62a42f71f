use super::*;
use crate::keyring::Key;
use crate::state::Transition;

const NOW: i64 = 1_764_806_400_000;

fn ops_keyring() -> Keyring {
    Keyring::new([
        Key::new("ops", b"ops-secret", vec![Role::Halt, Role::Resume]),
        Key::new("halter", b"halter-secret", vec![Role::Halt]),
    ])
}

fn signed(keyring: &Keyring, key_id: &str, subject: &str, body: &str, timestamp: i64, nonce: &str) -> (String, String) {
    let timestamp = timestamp.to_string();
    let signature = signature::sign_v2(keyring.get(key_id).unwrap(), subject, &timestamp, nonce, body.as_bytes());
    (timestamp, signature)
}

fn halted_state(since_ms: i64) -> HaltState {
    HaltState::initial(Mode::HardHalt, "operator halt", since_ms)
}

#[test]
fn every_payload_shape_is_read() {
    let cases: [(&str, CommandKind, CommandShape); 8] = [
        (r#"{"reason":"kill switch","operator":"alice"}"#, CommandKind::Halt(Mode::HardHalt), CommandShape::Runbook),
        (r#"{"state":"HARD_HALT","reason":"r"}"#, CommandKind::Halt(Mode::HardHalt), CommandShape::State),
        (r#"{"state":"SOFT_HALT","reason":"r"}"#, CommandKind::Halt(Mode::SoftHalt), CommandShape::State),
        (r#"{"state":"OPEN","reason":"r"}"#, CommandKind::Resume, CommandShape::State),
        (r#"{"active":true,"reason":"r"}"#, CommandKind::Halt(Mode::HardHalt), CommandShape::Active),
        (r#"{"active":false,"reason":"r"}"#, CommandKind::Resume, CommandShape::Active),
        (
            r#"{"type":"titan.cmd.sys.halt.v1","producer":"titan-brain","payload":{"action":"HALT","reason":"drawdown"}}"#,
            CommandKind::Halt(Mode::HardHalt),
            CommandShape::Envelope,
        ),
        (r#"{"state":"PAUSED"}"#, CommandKind::Halt(Mode::HardHalt), CommandShape::Unrecognized),
    ];
    for (body, kind, shape) in cases {
        let command = Command::parse(HALT_SUBJECT, body.as_bytes());
        assert_eq!(command.kind, kind, "{body}");
        assert_eq!(command.shape, shape, "{body}");
    }
}

#[test]
fn envelope_reason_and_producer_are_kept() {
    let body = r#"{"producer":"titan-brain","payload":{"action":"HALT","reason":"drawdown"}}"#;
    let command = Command::parse(HALT_SUBJECT, body.as_bytes());
    assert_eq!(command.reason, "drawdown");
    assert_eq!(command.operator.as_deref(), Some("titan-brain"));
}

#[test]
fn garbage_is_a_global_hard_halt_quoting_the_bytes() {
    for body in
        [&b""[..], b"   ", b"not json", b"[1,2]", b"{}", b"{\"a\":1,\"a\":2}", b"\xff\xfe", b"{\"active\":\"yes\"}"]
    {
        let command = Command::parse(HALT_SUBJECT, body);
        assert_eq!(command.kind, CommandKind::Halt(Mode::HardHalt), "{body:?}");
        assert_eq!(command.shape, CommandShape::Unrecognized, "{body:?}");
        assert_eq!(command.scope, None, "{body:?}");
        assert!(command.reason.starts_with("UNRECOGNIZED_COMMAND"), "{}", command.reason);
    }
}

#[test]
fn scoped_subjects_are_read() {
    let command = Command::parse("titan.cmd.sys.halt.v1.venue.binance", br#"{"reason":"venue outage"}"#);
    assert_eq!(command.scope, Some(Scope::new(ScopeKind::Venue, "binance")));
    let command = Command::parse("titan.cmd.sys.halt.v1.strategy.team.scavenger", br#"{"reason":"r"}"#);
    assert_eq!(command.scope, Some(Scope::new(ScopeKind::Strategy, "team.scavenger")));
}

#[test]
fn dotted_subject_scope_halts_globally() {
    for subject in ["titan.cmd.sys.halt.v1.symbol.BTC.USDT", "titan.cmd.sys.halt.v1.venue.binance.main"] {
        let command = Command::parse(subject, br#"{"state":"OPEN"}"#);
        assert_eq!(command.kind, CommandKind::Halt(Mode::HardHalt), "{subject}");
        assert_eq!(command.scope, None, "{subject}");
        assert_eq!(command.shape, CommandShape::Unrecognized, "{subject}");
    }
}

#[test]
fn wildcard_scope_halts_globally() {
    for subject in
        ["titan.cmd.sys.halt.v1.venue.*", "titan.cmd.sys.halt.v1.symbol.>", "titan.cmd.sys.halt.v1.strategy.a.*"]
    {
        let command = Command::parse(subject, br#"{"state":"OPEN"}"#);
        assert_eq!(command.kind, CommandKind::Halt(Mode::HardHalt), "{subject}");
        assert_eq!(command.scope, None, "{subject}");
        assert_eq!(command.shape, CommandShape::Unrecognized, "{subject}");
    }
}

#[test]
fn unknown_scope_kind_halts_globally() {
    let command = Command::parse("titan.cmd.sys.halt.v1.planet.mars", br#"{"state":"OPEN"}"#);
    assert_eq!(command.kind, CommandKind::Halt(Mode::HardHalt));
    assert_eq!(command.scope, None);
}

#[test]
fn unsigned_halt_applies() {
    let command = Command::parse(HALT_SUBJECT, br#"{"reason":"r"}"#);
    let state = HaltState::initial(Mode::Running, "INITIAL_STATE", 0);
    let decision = evaluate(&command, &Err(AuthError::Unsigned), &state);
    let CommandDecision::Apply(change) = decision else { panic!("unsigned halt must apply: {decision:?}") };
    assert_eq!(change.mode, Mode::HardHalt);
    assert_eq!(change.key_id, None);
}

#[test]
fn unsigned_resume_is_refused() {
    let command = Command::parse(HALT_SUBJECT, br#"{"state":"OPEN","reason":"r"}"#);
    let decision = evaluate(&command, &Err(AuthError::Unsigned), &halted_state(0));
    assert_eq!(decision, CommandDecision::Refuse(Refusal::NotAuthorized(AuthError::Unsigned)));
}

#[test]
fn signed_resume_applies_and_nonce_is_single_use() {
    let keyring = ops_keyring();
    let body = r#"{"state":"OPEN","reason":"done"}"#;
    let (timestamp, signature) = signed(&keyring, "ops", HALT_SUBJECT, body, NOW, "nonce-0001");
    let headers = OrderHeaders {
        msg_id: None,
        key_id: Some("ops"),
        timestamp: Some(&timestamp),
        nonce: Some("nonce-0001"),
        signature: Some(&signature),
    };
    let mut replay = ReplayMemory::new(16);
    let state = halted_state(NOW - 1000);
    let command = Command::parse(HALT_SUBJECT, body.as_bytes());

    let first = authenticate(
        &SignedMessage { subject: HALT_SUBJECT, body: body.as_bytes(), headers },
        command.required_role(&state),
        &keyring,
        &mut replay,
        NOW,
        30_000,
    );
    assert_eq!(first.as_ref().map(|signer| signer.key_id.as_str()), Ok("ops"));
    let CommandDecision::Apply(change) = evaluate(&command, &first, &state) else { panic!("signed resume must apply") };
    assert!(matches!(state.apply(&change, NOW, 8), Transition::Applied(next) if next.global.mode == Mode::Running));

    let second = authenticate(
        &SignedMessage { subject: HALT_SUBJECT, body: body.as_bytes(), headers },
        Role::Resume,
        &keyring,
        &mut replay,
        NOW,
        30_000,
    );
    assert_eq!(second, Err(AuthError::Replay(ReplayError::Replayed)));
}

#[test]
fn resume_signed_before_halt_is_refused() {
    let keyring = ops_keyring();
    let body = r#"{"state":"OPEN","reason":"done"}"#;
    let (timestamp, signature) = signed(&keyring, "ops", HALT_SUBJECT, body, NOW - 5000, "nonce-0002");
    let headers = OrderHeaders {
        msg_id: None,
        key_id: Some("ops"),
        timestamp: Some(&timestamp),
        nonce: Some("nonce-0002"),
        signature: Some(&signature),
    };
    let mut replay = ReplayMemory::new(16);
    let state = halted_state(NOW - 1000);
    let command = Command::parse(HALT_SUBJECT, body.as_bytes());
    let authentication = authenticate(
        &SignedMessage { subject: HALT_SUBJECT, body: body.as_bytes(), headers },
        Role::Resume,
        &keyring,
        &mut replay,
        NOW,
        30_000,
    );
    let decision = evaluate(&command, &authentication, &state);
    assert!(matches!(decision, CommandDecision::Refuse(Refusal::SignedBeforeHalt { .. })), "{decision:?}");
}

#[test]
fn resume_needs_resume_role_and_valid_signature() {
    let keyring = ops_keyring();
    let body = r#"{"state":"OPEN","reason":"done"}"#;
    let mut replay = ReplayMemory::new(16);

    let (timestamp, signature) = signed(&keyring, "halter", HALT_SUBJECT, body, NOW, "nonce-0003");
    let headers = OrderHeaders {
        msg_id: None,
        key_id: Some("halter"),
        timestamp: Some(&timestamp),
        nonce: Some("nonce-0003"),
        signature: Some(&signature),
    };
    let result = authenticate(
        &SignedMessage { subject: HALT_SUBJECT, body: body.as_bytes(), headers },
        Role::Resume,
        &keyring,
        &mut replay,
        NOW,
        30_000,
    );
    assert!(matches!(result, Err(AuthError::Key(KeyError::MissingRole { .. }))), "{result:?}");

    let (timestamp, signature) = signed(&keyring, "ops", HALT_SUBJECT, r#"{"state":"OPEN"}"#, NOW, "nonce-0004");
    let headers = OrderHeaders {
        msg_id: None,
        key_id: Some("ops"),
        timestamp: Some(&timestamp),
        nonce: Some("nonce-0004"),
        signature: Some(&signature),
    };
    let result = authenticate(
        &SignedMessage { subject: HALT_SUBJECT, body: body.as_bytes(), headers },
        Role::Resume,
        &keyring,
        &mut replay,
        NOW,
        30_000,
    );
    assert_eq!(result, Err(AuthError::Signature(SignatureError::Mismatch)));
    assert!(result.unwrap_err().is_bad_signature());
}

#[test]
fn soft_halt_over_hard_halt_needs_resume_role() {
    let command = Command::parse(HALT_SUBJECT, br#"{"state":"SOFT_HALT","reason":"let closes out"}"#);
    let state = halted_state(0);
    assert_eq!(command.required_role(&state), Role::Resume);
    assert!(matches!(evaluate(&command, &Err(AuthError::Unsigned), &state), CommandDecision::Refuse(_)));
}
