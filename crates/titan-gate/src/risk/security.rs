//! The security breaker: a burst of signature failures, on orders or on commands, trips
//! a latched global `HARD_HALT` with reason `SECURITY`.

use std::sync::{Mutex, PoisonError};

use titan_gate_core::Mode;
use titan_gate_core::risk::{FailureWindow, SECURITY};
use tracing::error;

use super::{Control, Transitions, monotonic_ms};

/// Counts signature failures and trips when there are too many inside the window.
///
/// Counted: orders rejected `hmac_signature_mismatch`, and commands whose signature or
/// signature headers are invalid. Not counted: `unknown_key`, because key rotation and
/// clock skew at a key's `not_before` produce it in normal operation and it proves no
/// attempt at a secret. Stale and replayed messages are not counted either, since they
/// are copies of valid ones.
#[derive(Debug)]
pub struct SecurityBreaker {
    transitions: Transitions,
    /// `None` while the breaker is off.
    window: Option<Mutex<FailureWindow>>,
}

impl SecurityBreaker {
    /// Creates the breaker with the gate's settings; it is off without `trip_failures`.
    pub fn new(transitions: Transitions) -> Self {
        let window = transitions
            .gate()
            .settings
            .risk
            .security
            .map(|settings| Mutex::new(FailureWindow::new(settings.trip_failures, settings.trip_window_ms)));
        Self { transitions, window }
    }

    /// Records one signature failure and trips the breaker when it is one too many.
    /// The halt stays until a signed resume lifts it, because the breaker never clears.
    pub fn record_failure(&self, origin: &'static str) {
        let Some(window) = &self.window else { return };
        let tripped = window.lock().unwrap_or_else(PoisonError::into_inner).record(monotonic_ms());
        if !tripped {
            return;
        }
        let change = Control::SecurityBreaker.change(None, Mode::HardHalt, SECURITY);
        let settings = self.transitions.gate().settings.risk.security;
        let applied = self.transitions.trip(Control::SecurityBreaker, &change);
        error!(
            origin,
            trip_failures = settings.map_or(0, |settings| settings.trip_failures),
            trip_window_ms = settings.map_or(0, |settings| settings.trip_window_ms),
            halt.epoch = applied.as_ref().map(|applied| applied.next.epoch),
            applied = applied.is_some(),
            "Security breaker tripped: too many signature failures, possible compromise; HARD_HALT until a signed resume"
        );
    }
}
