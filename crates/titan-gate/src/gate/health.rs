//! The readiness flags of one gate process: connections, subscriptions, the loaded state
//! and the problems `/readyz` lists.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

/// How long applied halt state changes may wait for the store before `/readyz` reports
/// them: longer than a few retries of a slow write, short enough to alert on.
const UNSTORED_GRACE_MS: i64 = 5_000;

/// How many permission errors `/readyz` lists at most.
const MAX_PERMISSION_ERRORS: usize = 16;

/// Readiness flags that `/readyz` checks.
#[derive(Debug, Default)]
pub struct Health {
    /// The order connection is up.
    pub orders_connected: AtomicBool,
    /// The control connection is up.
    pub control_connected: AtomicBool,
    /// The intake queue subscription exists.
    pub intake_subscribed: AtomicBool,
    /// The command and status subscriptions exist.
    pub commands_subscribed: AtomicBool,
    /// The halt state was read from the store since the control connection last connected.
    pub state_loaded: AtomicBool,
    /// The reason the stored state cannot be used, such as an invalid value, which
    /// `/readyz` lists. Set through [`Health::set_state_problem`].
    state_problem: Mutex<Option<String>>,
    /// True while `state_problem` is set, for the order path's lock-free check.
    state_unusable: AtomicBool,
    /// When the oldest change still waiting for the store was applied, in epoch ms; 0 for none.
    unstored_since_ms: AtomicI64,
    /// Set when the control connection drops, so the next connect counts as a reconnect.
    pub control_lost: AtomicBool,
    /// When the control connection dropped, while it stays down.
    control_lost_at: Mutex<Option<tokio::time::Instant>>,
    /// Wakes the task that halts the gate when the control connection stays down too long.
    pub control_disconnected: tokio::sync::Notify,
    /// Counts reconnects of the control connection; a state read started under an older
    /// count is stale.
    pub control_generation: AtomicU64,
    /// Wakes the state task after a reconnect of the control connection.
    pub control_reconnected: tokio::sync::Notify,
    /// Permission violations the server reported; any keeps the gate unready.
    pub permission_errors: Mutex<Vec<String>>,
    /// The JetStream stream that stores the forward subject, once found.
    pub forward_stream: Mutex<Option<String>>,
    /// True once the first lookup of the forward stream finished, found or not.
    pub forward_stream_checked: AtomicBool,
    /// Set when the server refused a subscription of the control connection: this gate
    /// cannot receive halts until it restarts with the right permissions.
    pub commands_denied: AtomicBool,
}

impl Health {
    /// Returns the reasons the gate is not ready; empty when it is.
    pub fn unready_reasons(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        let checks = [
            (&self.orders_connected, "order connection to NATS is down"),
            (&self.control_connected, "control connection to NATS is down"),
            (&self.intake_subscribed, "intake subscription is not active"),
            (&self.commands_subscribed, "command subscriptions are not active"),
            (&self.state_loaded, "halt state is not loaded"),
        ];
        for (flag, reason) in checks {
            if !flag.load(Ordering::Acquire) {
                reasons.push(reason.to_owned());
            }
        }
        if let Some(problem) = self.state_problem.lock().unwrap_or_else(std::sync::PoisonError::into_inner).as_ref() {
            reasons.push(problem.clone());
        }
        let unstored_since = self.unstored_since_ms.load(Ordering::Acquire);
        let unstored_ms = crate::keys::now_ms() - unstored_since;
        if unstored_since != 0 && unstored_ms > UNSTORED_GRACE_MS {
            reasons.push(format!(
                "halt state changes applied {} s ago are not stored yet, so a restart would lose them; the log names the store error",
                unstored_ms / 1000
            ));
        }
        let errors = self.permission_errors.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        reasons.extend(errors.iter().map(|error| format!("NATS permission violation: {error}")));
        let stream = self.forward_stream.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if stream.is_none() {
            let checked = self.forward_stream_checked.load(Ordering::Acquire);
            reasons.push(if checked {
                "no JetStream stream stores the forward subject; every order would be forward_failed".to_owned()
            } else {
                "the forward stream has not been looked up yet".to_owned()
            });
        }
        reasons
    }

    /// Records a permission violation the server reported.
    pub fn record_permission_error(&self, error: String) {
        let mut errors = self.permission_errors.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if errors.len() < MAX_PERMISSION_ERRORS && !errors.contains(&error) {
            errors.push(error);
        }
    }

    /// Returns why this gate could miss a halt right now, if it could: the control
    /// connection is down, its subscriptions are not active, the server denied them, or
    /// the stored state has not been read since the last connect. Orders are rejected
    /// while this is `Some`, because a gate that cannot hear a halt must not admit anything.
    pub fn control_plane_problem(&self) -> Option<&'static str> {
        if self.commands_denied.load(Ordering::Acquire) {
            Some(
                "the NATS server denied the halt subscriptions, so this gate cannot receive halts; fix its permissions",
            )
        } else if !self.control_connected.load(Ordering::Acquire) {
            Some("the control connection to NATS is down, so this gate cannot receive halts")
        } else if !self.commands_subscribed.load(Ordering::Acquire) {
            Some("the halt subscriptions are not active, so this gate cannot receive halts")
        } else if !self.state_loaded.load(Ordering::Acquire) {
            Some("the halt state is not loaded yet from the state store, so this gate cannot know whether it is halted")
        } else if self.state_unusable.load(Ordering::Acquire) {
            Some(
                "the stored halt state cannot be used, so this gate cannot know whether it is halted; /readyz names the problem",
            )
        } else {
            None
        }
    }

    /// Sets or clears why the stored state cannot be used. While it is set, orders are
    /// rejected `system_halted` and no command may loosen the state.
    pub fn set_state_problem(&self, problem: Option<String>) {
        let mut slot = self.state_problem.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        self.state_unusable.store(problem.is_some(), Ordering::Release);
        *slot = problem;
    }

    /// Records that a change waits for the store, keeping the time of the oldest one.
    pub fn note_unstored(&self, now_ms: i64) {
        let _ = self.unstored_since_ms.compare_exchange(0, now_ms, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Records that no change waits for the store.
    pub fn clear_unstored(&self) {
        self.unstored_since_ms.store(0, Ordering::Release);
    }

    /// Returns why the halt state cannot be trusted: not loaded since the control
    /// connection last connected, or stored as an unusable value.
    pub fn state_uncertainty(&self) -> Option<&'static str> {
        if !self.state_loaded.load(Ordering::Acquire) {
            Some("the halt state is not loaded from the state store")
        } else if self.state_unusable.load(Ordering::Acquire) {
            Some("the stored halt state cannot be used")
        } else {
            None
        }
    }

    /// Records a drop of the control connection: the next connect counts as a reconnect,
    /// and the `CONTROL_PLANE_LOST` timer starts unless it already runs for this outage.
    pub fn record_control_disconnect(&self) {
        self.lock_control_lost_at().get_or_insert_with(tokio::time::Instant::now);
        self.control_lost.store(true, Ordering::Release);
        self.control_disconnected.notify_one();
    }

    /// Returns when the control connection dropped, or `None` while it is up.
    pub fn control_lost_at(&self) -> Option<tokio::time::Instant> {
        *self.lock_control_lost_at()
    }

    fn lock_control_lost_at(&self) -> std::sync::MutexGuard<'_, Option<tokio::time::Instant>> {
        self.control_lost_at.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a reconnect of the control connection: the state must be read again before
    /// orders are admitted, since a halt may have been stored while this gate was away.
    pub fn record_control_reconnect(&self) {
        *self.lock_control_lost_at() = None;
        self.state_loaded.store(false, Ordering::Release);
        self.control_generation.fetch_add(1, Ordering::AcqRel);
        self.control_reconnected.notify_one();
    }

    /// Returns true when both NATS connections are up.
    pub fn nats_connected(&self) -> bool {
        self.orders_connected.load(Ordering::Acquire) && self.control_connected.load(Ordering::Acquire)
    }
}
