//! The one path every halt state change takes, from a command or from a risk control:
//! applied in memory and queued for the store by [`Gate::apply_if`], then logged and
//! audited.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use metrics::counter;
use titan_gate_core::{Change, HaltState, Mode, Transition};
use tracing::error;

use super::Control;
use crate::audit::{AuditLog, AuditRecord, log_transition};
use crate::gate::Gate;
use crate::keys::now_ms;
use crate::metrics::{GLOBAL_SCOPE, RISK_TRIPS_TOTAL};

/// Trips waiting for their write to land, after which the replica that wrote them
/// publishes their notice. Trips are rare, so reaching this means the store has been
/// unwritable for a long time.
const MAX_PENDING_TRIPS: usize = 256;

/// A change that took effect.
#[derive(Debug)]
pub struct Applied {
    pub previous: Arc<HaltState>,
    pub next: Arc<HaltState>,
    pub record: AuditRecord,
}

/// Applies, logs and audits halt state changes.
#[derive(Clone, Debug)]
pub struct Transitions {
    gate: Arc<Gate>,
    audit: AuditLog,
    pending_trips: Arc<Mutex<VecDeque<Change>>>,
}

impl Transitions {
    /// Creates the path on `gate`, auditing through `audit`.
    pub fn new(gate: Arc<Gate>, audit: AuditLog) -> Self {
        Self { gate, audit, pending_trips: Arc::default() }
    }

    /// Returns the gate whose state changes.
    pub fn gate(&self) -> &Arc<Gate> {
        &self.gate
    }

    /// Returns the audit queue.
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// Applies `change` when `allowed` returns true for the state in force, then logs it
    /// and queues its audit record. Returns `None` when nothing changed.
    pub fn apply_if(&self, change: &Change, allowed: impl FnOnce(&HaltState) -> bool) -> Option<Applied> {
        let (transition, previous, rejected_under_previous) = self.gate.apply_if(change, allowed);
        let Transition::Applied(next) = transition else {
            return None;
        };
        let next = Arc::new(next);
        let record = AuditRecord { rejected_under_previous, ..transition_record(&previous, &next, change, &self.gate) };
        log_transition(&record);
        self.audit.append(record.clone());
        Some(Applied { previous, next, record })
    }

    /// Applies a control's halt only where it makes the scope stricter, so a trip never
    /// loosens a halt that an operator or another control set. The trip's notice is
    /// published once its write lands.
    pub fn trip(&self, control: Control, change: &Change) -> Option<Applied> {
        // Locked before the change applies: the state task can land its write and look for
        // the trip before this function returns, and must then wait to find it here.
        let mut pending = self.pending_trips.lock().unwrap_or_else(PoisonError::into_inner);
        let applied = self.apply_if(change, |state| state.mode(change.scope.as_ref()) < change.mode)?;
        counter!(RISK_TRIPS_TOTAL, "control" => control.label(), "action" => "trip").increment(1);
        if pending.len() >= MAX_PENDING_TRIPS {
            let dropped = pending.pop_front();
            error!(limit = MAX_PENDING_TRIPS, dropped = ?dropped, "Too many trips wait for the state store; the oldest loses its halt notice");
        }
        pending.push_back(change.clone());
        Some(applied)
    }

    /// Applies a control's release of its own halt: `change` takes effect only while the
    /// entry in force for its scope satisfies `still_ours`, so a halt that an operator or
    /// another control set in the meantime stays.
    pub fn clear(
        &self,
        control: Control,
        change: &Change,
        still_ours: impl FnOnce(&titan_gate_core::HaltEntry) -> bool,
    ) -> Option<Applied> {
        let applied = self.apply_if(change, |state| state.entry(change.scope.as_ref()).is_some_and(still_ours))?;
        counter!(RISK_TRIPS_TOTAL, "control" => control.label(), "action" => "clear").increment(1);
        Some(applied)
    }

    /// Removes `change` from the trips waiting for their write, returning true when this
    /// replica tripped it.
    pub fn take_pending_trip(&self, change: &Change) -> bool {
        let mut pending = self.pending_trips.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(index) = pending.iter().position(|trip| trip == change) else {
            return false;
        };
        pending.remove(index);
        true
    }
}

/// Returns the `command` of an audit record: `halt`, `soft_halt` or `resume`.
fn command_label(mode: Mode) -> &'static str {
    match mode {
        Mode::Running => "resume",
        Mode::SoftHalt => "soft_halt",
        Mode::HardHalt => "halt",
    }
}

/// Builds the audit record of a transition, with no rejections counted.
fn transition_record(previous: &HaltState, next: &HaltState, change: &Change, gate: &Gate) -> AuditRecord {
    let mode_of = |state: &HaltState| state.entry(change.scope.as_ref()).map_or("RUNNING", |entry| entry.mode.as_str());
    AuditRecord {
        from: mode_of(previous).to_owned(),
        to: mode_of(next).to_owned(),
        scope: change.scope.as_ref().map_or_else(|| GLOBAL_SCOPE.to_owned(), ToString::to_string),
        reason: change.reason.clone(),
        operator: change.operator.clone(),
        key_id: change.key_id.clone(),
        epoch: next.epoch,
        time_ms: now_ms(),
        gate_id: gate.settings.gate_id.clone(),
        command: command_label(change.mode).to_owned(),
        rejected_under_previous: 0,
        local_only: false,
        action: None,
    }
}
