//! The halts a gate applies on its own and keeps in memory only: `STATE_UNKNOWN` when
//! the stored state turns unusable, and `CONTROL_PLANE_LOST` when the control connection
//! stays down too long. Each one, and each clearing, is audited like a command.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use titan_gate_core::{HaltEntry, HaltState, Mode};
use tracing::warn;

use super::Gate;
use crate::audit::{AuditRecord, log_transition};
use crate::keys::now_ms;
use crate::metrics;

/// The reason of the `HARD_HALT` a gate is in while it cannot read its stored state.
pub const STATE_UNKNOWN: &str = "STATE_UNKNOWN";
/// The reason of the local `HARD_HALT` a gate applies when its control connection stays
/// down longer than `control_plane_lost_after`.
pub const CONTROL_PLANE_LOST: &str = "CONTROL_PLANE_LOST";
/// The audit `command` of a local halt.
pub const LOCAL_HALT_COMMAND: &str = "local_halt";
/// The audit `command` of the clearing of a local halt.
pub const LOCAL_CLEAR_COMMAND: &str = "local_clear";

/// A global halt this gate applied on its own.
#[derive(Debug)]
pub(super) struct LocalHalt {
    /// The global entry in force while the local halt lasts; its reason is
    /// [`STATE_UNKNOWN`] or [`CONTROL_PLANE_LOST`].
    pub(super) entry: HaltEntry,
    /// The global entry of the stored state. A write stores it in place of a
    /// `CONTROL_PLANE_LOST` entry.
    pub(super) replaced: HaltEntry,
}

impl LocalHalt {
    pub(super) fn is_control_plane_lost(&self) -> bool {
        self.entry.reason == CONTROL_PLANE_LOST
    }
}

impl Gate {
    /// Applies `HARD_HALT` with reason `STATE_UNKNOWN` in memory only, without queuing it
    /// for the store, for when the stored state cannot be read or turned invalid. Does
    /// nothing while the gate is already in `STATE_UNKNOWN` (as it starts) or in its own
    /// `CONTROL_PLANE_LOST` halt, which is already a `HARD_HALT` that only a re-read of
    /// the state clears. Returns the state in force.
    pub fn halt_state_unknown(&self) -> Arc<HaltState> {
        let _unpersisted = self.lock_unpersisted();
        let previous = self.state.load_full();
        let mut local_halt = self.lock_local_halt();
        let starting = previous.global.mode == Mode::HardHalt && previous.global.reason == STATE_UNKNOWN;
        if local_halt.is_some() || starting {
            return previous;
        }
        let (next, halt) = self.apply_local_halt(&previous, STATE_UNKNOWN);
        *local_halt = Some(halt);
        next
    }

    /// Applies `HARD_HALT` with reason `CONTROL_PLANE_LOST` in memory only, without queuing
    /// it for the store, if the control connection is still down since `lost_at`. The
    /// global entry it replaces is kept for writes. Returns the new state, or `None` when the
    /// connection came back or a local halt is already in force.
    pub fn halt_control_plane_lost(&self, lost_at: tokio::time::Instant) -> Option<Arc<HaltState>> {
        // Checked under the lock that `replace_state` takes, so a re-read after a reconnect
        // always comes after this halt and can clear it.
        let _unpersisted = self.lock_unpersisted();
        if !self.health.control_lost.load(Ordering::Acquire) || self.health.control_lost_at() != Some(lost_at) {
            return None;
        }
        let mut local_halt = self.lock_local_halt();
        if local_halt.as_ref().is_some_and(LocalHalt::is_control_plane_lost) {
            return None;
        }
        // A STATE_UNKNOWN halt in force gives way: the stricter condition is the lost connection.
        let previous = self.state.load_full();
        let replaced = local_halt.take().map_or_else(|| previous.global.clone(), |halt| halt.replaced);
        let (next, mut halt) = self.apply_local_halt(&previous, CONTROL_PLANE_LOST);
        halt.replaced = replaced;
        *local_halt = Some(halt);
        Some(next)
    }

    /// Puts `reason`'s `HARD_HALT` in force one epoch above `previous` and audits it.
    /// Called with `unpersisted` and `local_halt` locked.
    fn apply_local_halt(&self, previous: &Arc<HaltState>, reason: &str) -> (Arc<HaltState>, LocalHalt) {
        let entry = HaltEntry {
            mode: Mode::HardHalt,
            reason: reason.to_owned(),
            operator: None,
            since_ms: now_ms(),
            key_id: None,
        };
        let mut next = (**previous).clone();
        next.epoch = previous.epoch + 1;
        next.global = entry.clone();
        let next = Arc::new(next);
        self.state.store(Arc::clone(&next));
        metrics::record_state(&next, Some(previous));
        self.audit_local(previous, &next, LOCAL_HALT_COMMAND, reason.to_owned());
        (next, LocalHalt { entry, replaced: previous.global.clone() })
    }

    /// Returns true while the local `CONTROL_PLANE_LOST` halt is in force.
    pub fn control_plane_lost(&self) -> bool {
        let _unpersisted = self.lock_unpersisted();
        self.lock_local_halt().as_ref().is_some_and(|local_halt| {
            local_halt.is_control_plane_lost() && self.state.load().global == local_halt.entry
        })
    }

    /// Puts the local halt back on top of `next`, a state built from the store, or clears
    /// it: `STATE_UNKNOWN` always, since `next` comes from a valid stored state, and
    /// `CONTROL_PLANE_LOST` once the control connection is back and the latch is off.
    /// Returns the cleared halt. Called with `unpersisted` locked.
    pub(super) fn keep_or_clear_local_halt(&self, next: &mut HaltState) -> Option<LocalHalt> {
        let mut local_halt = self.lock_local_halt();
        let halt = local_halt.as_mut()?;
        let keep = halt.is_control_plane_lost()
            && (self.settings.control_plane_lost_latch || self.health.control_lost.load(Ordering::Acquire));
        if keep {
            halt.replaced = std::mem::replace(&mut next.global, halt.entry.clone());
            return None;
        }
        local_halt.take()
    }

    /// Audits the clearing of `cleared`, which `next` replaced.
    pub(super) fn audit_local_clear(&self, previous: &HaltState, next: &HaltState, cleared: &LocalHalt) {
        let cause = if cleared.is_control_plane_lost() {
            "control connection restored and halt state read again"
        } else {
            "a valid halt state was read from the store"
        };
        warn!(halt.epoch = next.epoch, mode = %next.global.mode, reason = %next.global.reason, "{} cleared: {cause}", cleared.entry.reason);
        self.audit_local(previous, next, LOCAL_CLEAR_COMMAND, format!("{} cleared: {cause}", cleared.entry.reason));
    }

    /// Logs and queues the audit record of a global transition this gate made on its own.
    fn audit_local(&self, previous: &HaltState, next: &HaltState, command: &str, reason: String) {
        let record = AuditRecord {
            from: previous.global.mode.as_str().to_owned(),
            to: next.global.mode.as_str().to_owned(),
            scope: metrics::GLOBAL_SCOPE.to_owned(),
            reason,
            operator: None,
            key_id: None,
            epoch: next.epoch,
            time_ms: now_ms(),
            gate_id: self.settings.gate_id.clone(),
            command: command.to_owned(),
            rejected_under_previous: self.rejected_under_state.swap(0, Ordering::AcqRel),
            local_only: true,
            action: None,
        };
        log_transition(&record);
        self.audit.append(record);
    }
}
