//! The automatic risk controls of a gate replica: the dead-man switch, the order-rate
//! breaker, the security breaker, the halt notice that informs execution of a trip,
//! and the on-halt actions. Their pure logic lives in `titan_gate_core::risk`.
//!
//! A trip is an ordinary state change: [`Transitions`] applies it in memory, queues it
//! for the state store, audits and logs it, exactly as for a command.

mod actions;
mod heartbeat;
mod landed;
pub mod notice;
mod security;
mod transitions;

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use titan_gate_core::risk::{LimitedBy, RUNAWAY_ALGO};
use titan_gate_core::{Change, Mode, Reason, Rejection, Scope, ScopeKind};
use tokio::sync::mpsc;
use tracing::error;

use crate::audit::AuditLog;
use crate::gate::Gate;

pub use notice::{NOTICE_SOURCE, is_gate_notice};
pub use security::SecurityBreaker;
pub use transitions::{Applied, Transitions};

/// Batches of landed changes waiting for notices and on-halt actions. Writes are rare,
/// so a full queue means the task that publishes them is stuck.
pub const LANDED_QUEUE_CAPACITY: usize = 256;

/// A control that changes the halt state on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Halts when a configured heartbeat source goes silent.
    DeadMan,
    /// Halts a strategy whose order rate stays over its limit.
    RateBreaker,
    /// Halts everything after a burst of signature failures.
    SecurityBreaker,
}

impl Control {
    /// Returns the operator recorded on the control's halts.
    pub const fn operator(self) -> &'static str {
        match self {
            Control::DeadMan => "titan-gate/dead-man",
            Control::RateBreaker => "titan-gate/rate-breaker",
            Control::SecurityBreaker => "titan-gate/security-breaker",
        }
    }

    /// Returns the `control` metric label.
    pub const fn label(self) -> &'static str {
        match self {
            Control::DeadMan => "dead_man",
            Control::RateBreaker => "rate",
            Control::SecurityBreaker => "security",
        }
    }

    /// Returns a change of the global mode or of `scope`, made by this control.
    pub fn change(self, scope: Option<Scope>, mode: Mode, reason: impl Into<String>) -> Change {
        Change {
            scope,
            mode,
            reason: reason.into(),
            operator: Some(self.operator().to_owned()),
            key_id: None,
            signed_ms: None,
        }
    }
}

/// The risk controls that the order path and the control plane share.
#[derive(Clone, Debug)]
pub struct RiskControls {
    pub transitions: Transitions,
    pub security: Arc<SecurityBreaker>,
}

impl RiskControls {
    /// Creates the controls; `audit` receives the record of every transition.
    pub fn new(gate: Arc<Gate>, audit: AuditLog) -> Self {
        let transitions = Transitions::new(gate, audit);
        let security = Arc::new(SecurityBreaker::new(transitions.clone()));
        Self { transitions, security }
    }

    /// Returns the rejection of an order over a rate limit and, for a runaway strategy,
    /// trips a `HARD_HALT` of its scope.
    pub fn rate_limited(&self, strategy: &str, by: LimitedBy, runaway: bool) -> Rejection {
        if runaway {
            let scope = Scope::new(ScopeKind::Strategy, strategy);
            let change = Control::RateBreaker.change(Some(scope), Mode::HardHalt, RUNAWAY_ALGO);
            if let Some(applied) = self.transitions.trip(Control::RateBreaker, &change) {
                error!(strategy = %strategy, halt.epoch = applied.next.epoch, "Runaway strategy: its order rate stayed over the limit, so its scope is in HARD_HALT until a signed resume");
            }
        }
        let detail = match by {
            LimitedBy::Strategy => format!("strategy {strategy:?} is over its order rate; slow down and retry"),
            LimitedBy::Global => "the gate is over its total order rate; retry shortly".to_owned(),
            LimitedBy::StrategyTableFull => format!(
                "the rate table is full of active strategies, so strategy {strategy:?} cannot be tracked; retry shortly"
            ),
        };
        Rejection { reason: Reason::RateLimited, detail: detail.into(), halted_scope: None }
    }
}

/// Returns milliseconds since the first call, on the monotonic clock, for rate limits
/// and silence checks that must not jump with the wall clock.
pub fn monotonic_ms() -> i64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let elapsed = START.get_or_init(Instant::now).elapsed().as_millis();
    i64::try_from(elapsed).unwrap_or(i64::MAX)
}

/// Starts the dead-man switch, when heartbeat sources are configured, and the task that
/// publishes halt notices and on-halt actions for the changes in `landed`.
pub fn spawn(controls: &RiskControls, control_client: async_nats::Client, landed: mpsc::Receiver<Vec<Change>>) {
    let transitions = controls.transitions.clone();
    if !transitions.gate().settings.risk.heartbeat.sources.is_empty() {
        tokio::spawn(heartbeat::DeadMan::new(transitions.clone()).run(control_client.clone()));
    }
    tokio::spawn(landed::run(transitions, control_client, landed));
}
