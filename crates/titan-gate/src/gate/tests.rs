use super::*;
use crate::config::{Environment, FlagSettings};
use titan_gate_core::{Scope, ScopeKind};

fn gate() -> Gate {
    let settings = Settings::load(None, &Environment::new(), &FlagSettings::default()).unwrap();
    Gate::new(settings, Keyring::default())
}

fn change(scope: Option<Scope>, mode: Mode, reason: &str) -> Change {
    Change { scope, mode, reason: reason.to_owned(), operator: None, key_id: None, signed_ms: None }
}

fn stored(epoch: u64, mode: Mode) -> HaltState {
    let mut state = HaltState::initial(mode, "stored", 1);
    state.epoch = epoch;
    state
}

#[test]
fn new_gate_is_state_unknown() {
    let gate = gate();
    assert_eq!(gate.state().global.mode, Mode::HardHalt);
    assert_eq!(gate.state().global.reason, STATE_UNKNOWN);
    assert!(!gate.health.state_loaded.load(Ordering::Acquire));
}

#[test]
fn apply_queues_change_until_persisted() {
    let gate = gate();
    gate.replace_state(stored(3, Mode::Running));
    gate.apply(&change(None, Mode::HardHalt, "halt"));

    let (snapshot, count) = gate.unpersisted_snapshot();
    assert_eq!(snapshot.epoch, 4);
    assert_eq!(count, 1);
    gate.mark_persisted(count);
    assert!(!gate.has_unpersisted());
}

#[test]
fn replace_state_reapplies_pending_change() {
    let gate = gate();
    gate.replace_state(stored(3, Mode::Running));
    gate.apply(&change(Some(Scope::new(ScopeKind::Venue, "okx")), Mode::HardHalt, "okx outage"));

    let state = gate.replace_state(stored(7, Mode::Running));
    assert_eq!(state.scoped_mode(ScopeKind::Venue, "okx"), Mode::HardHalt);
    assert_eq!(state.epoch, 8);
    assert!(gate.has_unpersisted());
}

#[test]
fn replace_state_drops_change_in_force() {
    let gate = gate();
    gate.replace_state(stored(3, Mode::Running));
    gate.apply(&change(None, Mode::HardHalt, "halt"));

    let state = gate.replace_state(stored(4, Mode::HardHalt));
    assert_eq!(state.epoch, 4);
    assert_eq!(state.global.reason, "stored");
    assert!(!gate.has_unpersisted());
}

#[test]
fn replace_state_keeps_epoch_monotonic() {
    let gate = gate();
    gate.replace_state(stored(10, Mode::Running));
    gate.apply(&change(None, Mode::HardHalt, "halt"));

    let state = gate.replace_state(stored(5, Mode::Running));
    assert_eq!(state.global.mode, Mode::HardHalt);
    assert_eq!(state.epoch, 12);
}

#[test]
fn control_plane_problem_until_state_loaded() {
    let gate = gate();
    gate.health.control_connected.store(true, Ordering::Release);
    gate.health.commands_subscribed.store(true, Ordering::Release);
    assert!(gate.health.control_plane_problem().is_some_and(|problem| problem.contains("not loaded")));

    gate.health.state_loaded.store(true, Ordering::Release);
    assert_eq!(gate.health.control_plane_problem(), None);
    gate.health.record_control_reconnect();
    assert!(gate.health.control_plane_problem().is_some_and(|problem| problem.contains("not loaded")));
}

/// Returns a gate in `stored` state whose control connection dropped, with the local halt applied.
fn gate_with_control_plane_lost(latch: bool) -> Gate {
    let mut gate = gate();
    gate.settings.control_plane_lost_latch = latch;
    gate.replace_state(stored(3, Mode::Running));
    gate.health.record_control_disconnect();
    let lost_at = gate.health.control_lost_at().unwrap();
    let state = gate.halt_control_plane_lost(lost_at).unwrap();
    assert_eq!(state.global.mode, Mode::HardHalt);
    assert_eq!(state.global.reason, CONTROL_PLANE_LOST);
    assert_eq!(state.epoch, 4);
    gate
}

/// Records the reconnect as the connection event handler does.
fn reconnect(gate: &Gate) {
    assert!(gate.health.control_lost.swap(false, Ordering::AcqRel));
    gate.health.record_control_reconnect();
}

#[test]
fn control_plane_lost_is_applied_once() {
    let gate = gate_with_control_plane_lost(false);
    let lost_at = gate.health.control_lost_at().unwrap();
    assert!(gate.halt_control_plane_lost(lost_at).is_none());
    assert!(gate.control_plane_lost());
    assert!(!gate.has_unpersisted());
}

#[test]
fn control_plane_lost_needs_same_outage() {
    let gate = gate();
    gate.health.record_control_disconnect();
    let lost_at = gate.health.control_lost_at().unwrap();
    reconnect(&gate);
    assert!(gate.halt_control_plane_lost(lost_at).is_none());
    assert_eq!(gate.state().global.reason, STATE_UNKNOWN);
}

#[test]
fn control_plane_lost_is_never_written() {
    let gate = gate_with_control_plane_lost(false);
    gate.apply(&change(Some(Scope::new(ScopeKind::Venue, "okx".to_owned())), Mode::HardHalt, "okx"));

    let (snapshot, count) = gate.unpersisted_snapshot();
    assert_eq!(count, 1);
    assert_eq!(snapshot.global.mode, Mode::Running);
    assert_eq!(snapshot.global.reason, "stored");
    assert_eq!(snapshot.scope_count(), 1);
    assert_eq!(gate.state().global.reason, CONTROL_PLANE_LOST);
}

#[test]
fn control_plane_lost_stays_while_disconnected() {
    let gate = gate_with_control_plane_lost(false);
    gate.replace_state(stored(3, Mode::Running));
    assert_eq!(gate.state().global.reason, CONTROL_PLANE_LOST);
}

#[test]
fn control_plane_lost_clears_after_reread() {
    let gate = gate_with_control_plane_lost(false);
    reconnect(&gate);
    let state = gate.replace_state(stored(3, Mode::Running));
    assert_eq!(state.global.mode, Mode::Running);
    assert!(!gate.control_plane_lost());
}

#[test]
fn latched_control_plane_lost_stays_until_resume() {
    let gate = gate_with_control_plane_lost(true);
    reconnect(&gate);
    let state = gate.replace_state(stored(3, Mode::SoftHalt));
    assert_eq!(state.global.reason, CONTROL_PLANE_LOST);
    let (snapshot, _) = gate.unpersisted_snapshot();
    assert_eq!(snapshot.global.mode, Mode::SoftHalt);

    gate.apply(&change(None, Mode::Running, "resume"));
    assert!(!gate.control_plane_lost());
    let (snapshot, count) = gate.unpersisted_snapshot();
    assert_eq!(count, 1);
    assert_eq!(snapshot.global.mode, Mode::Running);
    assert_eq!(snapshot.global.reason, "resume");
}

#[test]
fn replace_state_drops_resume_signed_before_newer_halt() {
    let gate = gate();
    let mut halted = stored(3, Mode::HardHalt);
    halted.global.since_ms = 1_000;
    gate.replace_state(halted);
    let resume = Change { signed_ms: Some(2_000), ..change(None, Mode::Running, "resume") };
    gate.apply(&resume);
    assert_eq!(gate.state().global.mode, Mode::Running);

    let mut newer_halt = stored(4, Mode::HardHalt);
    newer_halt.global.since_ms = 5_000;
    let state = gate.replace_state(newer_halt);
    assert_eq!(state.global.mode, Mode::HardHalt, "the resume predates the newer halt");
    assert!(!gate.has_unpersisted());

    let mut older_halt = stored(5, Mode::HardHalt);
    older_halt.global.since_ms = 1_500;
    gate.replace_state(stored(5, Mode::Running));
    gate.replace_state(older_halt.clone());
    let resume = Change { signed_ms: Some(2_000), ..change(None, Mode::Running, "resume") };
    gate.apply(&resume);
    let state = gate.replace_state(older_halt);
    assert_eq!(state.global.mode, Mode::Running, "a resume signed after the halt began still applies");
}
