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
    gate.mark_persisted(count, &snapshot);
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

/// Returns every audit record queued so far.
fn queued_records(queue: &mut crate::audit::AuditQueue) -> Vec<crate::audit::AuditRecord> {
    std::iter::from_fn(|| queue.try_next()).collect()
}

#[test]
fn control_plane_lost_clears_above_its_epoch() {
    let gate = gate_with_control_plane_lost(false);
    reconnect(&gate);
    let state = gate.replace_state(stored(3, Mode::Running));
    assert_eq!(state.global.mode, Mode::Running);
    assert_eq!(state.epoch, 5, "the local halt had epoch 4");

    assert!(gate.has_unpersisted(), "the raised epoch must be stored so replicas agree");
    let (snapshot, count) = gate.unpersisted_snapshot();
    assert_eq!(count, 0);
    assert_eq!(snapshot.epoch, 5);
    assert_eq!(snapshot.global.reason, "stored");
    gate.mark_persisted(count, &snapshot);
    assert!(!gate.has_unpersisted());
}

#[test]
fn raised_epoch_needs_no_write_once_stored() {
    let gate = gate_with_control_plane_lost(false);
    reconnect(&gate);
    gate.replace_state(stored(3, Mode::Running));
    assert!(gate.has_unpersisted());

    // Another replica stored the same epoch first.
    let state = gate.replace_state(stored(5, Mode::Running));
    assert_eq!(state.epoch, 5);
    assert!(!gate.has_unpersisted());
}

#[test]
fn epoch_never_goes_down_on_lower_stored_epoch() {
    let gate = gate();
    gate.replace_state(stored(9, Mode::Running));
    let state = gate.replace_state(stored(2, Mode::Running));
    assert_eq!(state.epoch, 9);
    let (snapshot, _) = gate.unpersisted_snapshot();
    assert_eq!(snapshot.epoch, 9, "the store is brought back up to the reported epoch");
    assert!(gate.has_unpersisted());
}

#[test]
fn control_plane_lost_and_clearing_are_audited() {
    let gate = gate();
    let mut queue = gate.take_audit_queue().expect("the queue is still there");
    gate.replace_state(stored(3, Mode::Running));
    gate.count_halt_rejection();
    gate.health.record_control_disconnect();
    let lost_at = gate.health.control_lost_at().unwrap();
    gate.halt_control_plane_lost(lost_at).unwrap();
    gate.count_halt_rejection();
    gate.count_halt_rejection();
    reconnect(&gate);
    gate.replace_state(stored(3, Mode::Running));

    let records = queued_records(&mut queue);
    assert_eq!(records.len(), 2, "{records:?}");
    let (halt, clear) = (&records[0], &records[1]);
    assert_eq!((halt.from.as_str(), halt.to.as_str()), ("RUNNING", "HARD_HALT"));
    assert_eq!(halt.reason, CONTROL_PLANE_LOST);
    assert_eq!(halt.command, "local_halt");
    assert_eq!(halt.scope, "global");
    assert_eq!(halt.epoch, 4);
    assert_eq!(halt.rejected_under_previous, 1);
    assert!(halt.local_only);
    assert_eq!((clear.from.as_str(), clear.to.as_str()), ("HARD_HALT", "RUNNING"));
    assert!(clear.reason.starts_with("CONTROL_PLANE_LOST cleared"), "{}", clear.reason);
    assert_eq!(clear.command, "local_clear");
    assert_eq!(clear.epoch, 5);
    assert_eq!(clear.rejected_under_previous, 2);
    assert!(clear.local_only);
    assert_eq!(clear.gate_id, gate.settings.gate_id);
}

#[test]
fn state_unknown_is_audited_and_cleared() {
    let gate = gate();
    let mut queue = gate.take_audit_queue().unwrap();
    gate.replace_state(stored(3, Mode::Running));
    let state = gate.halt_state_unknown();
    assert_eq!(state.global.reason, STATE_UNKNOWN);
    assert_eq!(state.epoch, 4);
    assert!(!gate.has_unpersisted(), "STATE_UNKNOWN is never queued for the store");
    assert_eq!(gate.halt_state_unknown().epoch, 4, "a second unusable value changes nothing");

    // A valid state stored at the local halt's epoch, as `recover-state` writes it.
    let state = gate.replace_state(stored(4, Mode::HardHalt));
    assert_eq!(state.global.reason, "stored");
    assert_eq!(state.epoch, 5);
    assert!(gate.has_unpersisted());

    let records = queued_records(&mut queue);
    let summary: Vec<(&str, &str, &str, u64)> = records
        .iter()
        .map(|record| (record.command.as_str(), record.from.as_str(), record.to.as_str(), record.epoch))
        .collect();
    assert_eq!(summary, [("local_halt", "RUNNING", "HARD_HALT", 4), ("local_clear", "HARD_HALT", "HARD_HALT", 5)]);
}

#[test]
fn starting_state_unknown_is_not_a_transition() {
    let gate = gate();
    let mut queue = gate.take_audit_queue().unwrap();
    let state = gate.halt_state_unknown();
    assert_eq!(state.epoch, 0);
    let state = gate.replace_state(stored(0, Mode::Running));
    assert_eq!(state.epoch, 0);
    assert!(!gate.has_unpersisted());
    assert!(queued_records(&mut queue).is_empty());
}

#[test]
fn control_plane_lost_replaces_state_unknown() {
    let gate = gate();
    gate.replace_state(stored(3, Mode::Running));
    gate.halt_state_unknown();
    gate.health.record_control_disconnect();
    let lost_at = gate.health.control_lost_at().unwrap();
    let state = gate.halt_control_plane_lost(lost_at).unwrap();
    assert_eq!(state.global.reason, CONTROL_PLANE_LOST);
    assert_eq!(state.epoch, 5);
    assert_eq!(gate.halt_state_unknown().global.reason, CONTROL_PLANE_LOST);
    let (snapshot, _) = gate.unpersisted_snapshot();
    assert_eq!(snapshot.global.mode, Mode::Running, "the write keeps the stored global entry");
}

#[test]
fn scoped_halt_past_max_payload_halts_globally() {
    let gate = gate();
    gate.replace_state(stored(1, Mode::Running));
    // Room for the headroom and a few small scopes only.
    gate.set_server_max_payload(store::ENCODING_HEADROOM_BYTES + 1024);

    let mut index = 0;
    while gate.state().global.mode == Mode::Running {
        assert!(index < 100, "1 KiB of room never filled: {:?}", gate.state());
        let scope = Scope::new(ScopeKind::Symbol, format!("SYMBOL_{index}"));
        gate.apply(&change(Some(scope), Mode::HardHalt, "symbol outage"));
        index += 1;
    }

    let state = gate.state();
    assert!(state.global.reason.starts_with("SCOPE_LIMIT"), "{}", state.global.reason);
    assert_eq!(state.scope_count(), index - 1, "the last scope is not stored");
    // The global entry's longer SCOPE_LIMIT reason comes out of the headroom.
    let max_payload = store::ENCODING_HEADROOM_BYTES + 1024;
    assert!(store::encoded_len(&state) < max_payload - 1024, "stored state {} bytes", store::encoded_len(&state));
}

#[test]
fn server_max_payload_zero_keeps_default() {
    let gate = gate();
    gate.set_server_max_payload(0);
    let expected = DEFAULT_SERVER_MAX_PAYLOAD - store::ENCODING_HEADROOM_BYTES;
    assert_eq!(gate.max_state_bytes.load(Ordering::Acquire), expected);
}

#[test]
fn unstored_change_is_reported_after_grace() {
    let gate = gate();
    gate.replace_state(stored(1, Mode::Running));
    gate.apply(&change(None, Mode::HardHalt, "halt"));
    let unstored = |gate: &Gate| gate.health.unready_reasons().iter().any(|reason| reason.contains("not stored yet"));
    assert!(!unstored(&gate), "a fresh change is inside the grace period");

    // Back-date the oldest change past the grace period, as a store that keeps failing would.
    gate.health.clear_unstored();
    gate.health.note_unstored(now_ms() - 60_000);
    assert!(unstored(&gate), "{:?}", gate.health.unready_reasons());

    let (snapshot, count) = gate.unpersisted_snapshot();
    gate.mark_persisted(count, &snapshot);
    assert!(!unstored(&gate), "{:?}", gate.health.unready_reasons());
}
