use super::*;

fn halt(scope: Option<Scope>, mode: Mode) -> Change {
    Change { scope, mode, reason: "test".to_owned(), operator: Some("alice".to_owned()), key_id: None, signed_ms: None }
}

#[test]
fn applied_change_increments_epoch() {
    let state = HaltState::initial(Mode::Running, "INITIAL_STATE", 0);
    let Transition::Applied(next) = state.apply(&halt(None, Mode::HardHalt), 10, 8) else {
        panic!("halt of a running gate must apply");
    };
    assert_eq!(next.epoch, 1);
    assert_eq!(next.global.mode, Mode::HardHalt);
    assert_eq!(next.global.since_ms, 10);
    assert_eq!(next.global.operator.as_deref(), Some("alice"));
}

#[test]
fn same_mode_again_is_unchanged() {
    let state = HaltState::initial(Mode::HardHalt, "INITIAL_STATE", 0);
    assert_eq!(state.apply(&halt(None, Mode::HardHalt), 10, 8), Transition::Unchanged);
}

#[test]
fn scoped_halt_and_resume() {
    let state = HaltState::initial(Mode::Running, "INITIAL_STATE", 0);
    let venue = Scope::new(ScopeKind::Venue, "binance");
    let Transition::Applied(halted) = state.apply(&halt(Some(venue.clone()), Mode::SoftHalt), 1, 8) else {
        panic!("scoped halt must apply");
    };
    assert_eq!(halted.scoped_mode(ScopeKind::Venue, "binance"), Mode::SoftHalt);
    assert_eq!(halted.scoped_mode(ScopeKind::Venue, "bybit"), Mode::Running);
    assert_eq!(halted.strictest_mode(), Mode::SoftHalt);
    assert_eq!(halted.scopes().len(), 1);

    let Transition::Applied(resumed) = halted.apply(&halt(Some(venue), Mode::Running), 2, 8) else {
        panic!("scoped resume must apply");
    };
    assert_eq!(resumed.epoch, 2);
    assert_eq!(resumed.scope_count(), 0);
    assert!(!resumed.has_scopes(ScopeKind::Venue));
}

#[test]
fn scope_limit_turns_into_global_hard_halt() {
    let state = HaltState::initial(Mode::Running, "INITIAL_STATE", 0);
    let Transition::Applied(one) = state.apply(&halt(Some(Scope::new(ScopeKind::Symbol, "A")), Mode::HardHalt), 1, 1)
    else {
        panic!("first scope fits");
    };
    let Transition::Applied(two) = one.apply(&halt(Some(Scope::new(ScopeKind::Symbol, "B")), Mode::SoftHalt), 2, 1)
    else {
        panic!("a halt is never refused");
    };
    assert_eq!(two.global.mode, Mode::HardHalt);
    assert!(two.global.reason.starts_with("SCOPE_LIMIT"));
    assert_eq!(two.scope_count(), 1);
    assert_eq!(two.apply(&halt(Some(Scope::new(ScopeKind::Symbol, "C")), Mode::HardHalt), 3, 1), Transition::Unchanged);
}

#[test]
fn mode_parse_round_trips() {
    for mode in [Mode::Running, Mode::SoftHalt, Mode::HardHalt] {
        assert_eq!(Mode::parse(mode.as_str()), Some(mode));
    }
    assert_eq!(Mode::parse("hard_halt"), None);
    assert_eq!(Mode::parse("OPEN"), None);
}

#[test]
fn from_parts_rebuilds_applied_state() {
    let state = HaltState::initial(Mode::Running, "INITIAL_STATE", 0);
    let Transition::Applied(halted) =
        state.apply(&halt(Some(Scope::new(ScopeKind::Symbol, "BTC_USDT")), Mode::SoftHalt), 5, 8)
    else {
        panic!("scoped halt must apply");
    };
    let parts = halted.scopes().into_iter().map(|(scope, entry)| (scope, entry.clone()));
    let rebuilt = HaltState::from_parts(halted.epoch, halted.global.clone(), parts);
    assert_eq!(rebuilt, halted);
}

#[test]
fn from_parts_keeps_last_duplicate() {
    let entry = |reason: &str| HaltEntry {
        mode: Mode::HardHalt,
        reason: reason.to_owned(),
        operator: None,
        since_ms: 1,
        key_id: None,
    };
    let venue = Scope::new(ScopeKind::Venue, "binance");
    let state = HaltState::from_parts(3, entry("global"), [(venue.clone(), entry("first")), (venue, entry("second"))]);
    assert_eq!(state.scope_count(), 1);
    assert_eq!(state.scoped(ScopeKind::Venue, "binance").map(|entry| entry.reason.as_str()), Some("second"));
}

#[test]
fn loosening_needs_signature_after_halt_began() {
    let state = HaltState::initial(Mode::HardHalt, "halt", 1_000);
    let resume = Change { signed_ms: Some(1_001), ..halt(None, Mode::Running) };
    assert!(state.permits(&resume));
    assert!(!state.permits(&Change { signed_ms: Some(1_000), ..halt(None, Mode::Running) }));
    assert!(!state.permits(&halt(None, Mode::SoftHalt)), "unsigned loosening");
    assert!(state.permits(&halt(None, Mode::HardHalt)), "the same mode is not loosening");
    assert!(
        state.permits(&halt(Some(Scope::new(ScopeKind::Venue, "x")), Mode::Running)),
        "an unhalted scope has nothing to loosen"
    );
}
