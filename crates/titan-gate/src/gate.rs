//! The state one gate process shares between its tasks: the halt state behind one
//! atomic pointer, the keys, health flags and order counts.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use serde_json::{Value, json};
use titan_gate_core::{Change, HaltEntry, HaltState, Keyring, Mode, Policy, Transition, Verdict};
use tracing::{error, warn};

use crate::config::Settings;
use crate::keys::now_ms;
use crate::metrics;

/// How many permission errors `/readyz` lists at most.
const MAX_PERMISSION_ERRORS: usize = 16;
/// Changes kept until the store confirms a write. Commands are rare, so reaching this
/// means the store has been unwritable for a long time.
const MAX_UNPERSISTED_CHANGES: usize = 4_096;
/// The reason of the `HARD_HALT` a gate is in while it cannot read its stored state.
pub const STATE_UNKNOWN: &str = "STATE_UNKNOWN";
/// The reason of the local `HARD_HALT` a gate applies when its control connection stays
/// down longer than `control_plane_lost_after`.
pub const CONTROL_PLANE_LOST: &str = "CONTROL_PLANE_LOST";

/// One gate process's shared state.
#[derive(Debug)]
pub struct Gate {
    /// The validated settings.
    pub settings: Settings,
    /// The order checks' settings, derived from `settings`.
    pub policy: Policy,
    state: ArcSwap<HaltState>,
    keyring: ArcSwap<Keyring>,
    /// Changes applied in memory and not yet written to the store, oldest first. Its lock
    /// also serializes state changes, so two commands cannot both compute from the same epoch.
    unpersisted: Mutex<VecDeque<Change>>,
    /// The `CONTROL_PLANE_LOST` halt while it is in force. It lives in memory only, so the
    /// writer stores the global entry it replaced instead. Locked only while `unpersisted`
    /// is locked.
    local_halt: Mutex<Option<LocalHalt>>,
    /// Wakes the task that writes the state to the store.
    pub persist_wake: tokio::sync::Notify,
    /// The store's revision of the last state read or written, 0 before the first.
    pub state_revision: AtomicU64,
    /// Connection and subscription flags behind `/readyz`.
    pub health: Health,
    counts: [AtomicU64; 3],
    /// Orders rejected `system_halted` or `reduce_only` since the last transition `apply` made.
    rejected_under_state: AtomicU64,
    /// Nonces in the order replay memory, stored by the intake after each decision.
    pub replay_nonces: AtomicU64,
    /// Limits slow-consumer warnings to one a second.
    pub slow_consumer_log: crate::logging::RejectLogLimiter,
}

/// A global halt this gate applied on its own and never writes to the store.
#[derive(Debug)]
struct LocalHalt {
    /// The global entry in force while the local halt lasts.
    entry: HaltEntry,
    /// The global entry of the stored state, which a write stores in place of `entry`.
    replaced: HaltEntry,
}

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
    /// Why the stored state cannot be used, such as an invalid value; `/readyz` lists it.
    pub state_problem: Mutex<Option<String>>,
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

impl Gate {
    /// Creates the gate in `HARD_HALT` with reason `STATE_UNKNOWN`, the state it keeps
    /// until it has read the stored state.
    pub fn new(settings: Settings, keyring: Keyring) -> Self {
        let policy = Policy {
            max_payload_bytes: settings.max_payload_bytes,
            clock_window_ms: settings.clock_window_ms,
            signatures: settings.signatures,
        };
        let state = HaltState::initial(Mode::HardHalt, STATE_UNKNOWN, now_ms());
        Self {
            settings,
            policy,
            state: ArcSwap::from_pointee(state),
            keyring: ArcSwap::from_pointee(keyring),
            unpersisted: Mutex::new(VecDeque::new()),
            local_halt: Mutex::new(None),
            persist_wake: tokio::sync::Notify::new(),
            state_revision: AtomicU64::new(0),
            health: Health::default(),
            counts: Default::default(),
            rejected_under_state: AtomicU64::new(0),
            replay_nonces: AtomicU64::new(0),
            slow_consumer_log: crate::logging::RejectLogLimiter::new(1),
        }
    }

    /// Returns the current halt state with one atomic load.
    pub fn state(&self) -> arc_swap::Guard<Arc<HaltState>> {
        self.state.load()
    }

    /// Returns the current keys.
    pub fn keyring(&self) -> arc_swap::Guard<Arc<Keyring>> {
        self.keyring.load()
    }

    /// Replaces the keys; orders in decision keep the keys they loaded.
    pub fn replace_keyring(&self, keyring: Keyring) {
        self.keyring.store(Arc::new(keyring));
    }

    /// Applies a change at the current time, publishes the new state and its gauges, and
    /// queues the change for the state store. Returns the transition, the state it replaced
    /// and, when the change applied, the orders rejected under that state (the counter restarts).
    pub fn apply(&self, change: &Change) -> (Transition, Arc<HaltState>, u64) {
        self.apply_if(change, |_| true)
    }

    /// Applies `change` as [`Gate::apply`] does, but only when `allowed` returns true for
    /// the state in force. The check runs under the same lock as the change, so no other
    /// change can come between them. Otherwise returns `Transition::Unchanged`.
    pub fn apply_if(
        &self,
        change: &Change,
        allowed: impl FnOnce(&HaltState) -> bool,
    ) -> (Transition, Arc<HaltState>, u64) {
        let mut unpersisted = self.lock_unpersisted();
        let previous = self.state.load_full();
        let transition = if allowed(&previous) {
            previous.apply(change, now_ms(), self.settings.max_scopes)
        } else {
            Transition::Unchanged
        };
        let mut rejected_under_previous = 0;
        if let Transition::Applied(next) = &transition {
            self.state.store(Arc::new(next.clone()));
            rejected_under_previous = self.rejected_under_state.swap(0, Ordering::AcqRel);
            metrics::record_state(next, Some(&previous));
            if next.global != previous.global {
                // A command replaced the local halt's entry, so the writer stores this one.
                *self.lock_local_halt() = None;
            }
            if unpersisted.len() >= MAX_UNPERSISTED_CHANGES {
                // The change stays in force in memory, but a rebase on another replica's
                // write can no longer re-apply the oldest change.
                let dropped = unpersisted.pop_front();
                error!(limit = MAX_UNPERSISTED_CHANGES, dropped = ?dropped, "Too many halt state changes wait for the state store; dropped the oldest");
            }
            unpersisted.push_back(change.clone());
            self.persist_wake.notify_one();
        }
        (transition, previous, rejected_under_previous)
    }

    /// Applies `HARD_HALT` with reason `STATE_UNKNOWN` in memory only, without queuing it
    /// for the store, for when the stored state cannot be read.
    pub fn halt_state_unknown(&self) -> Arc<HaltState> {
        let _unpersisted = self.lock_unpersisted();
        let previous = self.state.load_full();
        let change = Change {
            scope: None,
            mode: Mode::HardHalt,
            reason: STATE_UNKNOWN.to_owned(),
            operator: None,
            key_id: None,
            signed_ms: None,
        };
        if let Transition::Applied(next) = previous.apply(&change, now_ms(), self.settings.max_scopes) {
            self.state.store(Arc::new(next.clone()));
            metrics::record_state(&next, Some(&previous));
        }
        self.state.load_full()
    }

    /// Applies `HARD_HALT` with reason `CONTROL_PLANE_LOST` in memory only, without queuing
    /// it for the store, if the control connection is still down since `lost_at`. The
    /// global entry it replaces is kept for writes. Returns the new state, or `None` when the
    /// connection came back or the local halt is already in force.
    pub fn halt_control_plane_lost(&self, lost_at: tokio::time::Instant) -> Option<Arc<HaltState>> {
        // Checked under the lock that `replace_state` takes, so a re-read after a reconnect
        // always comes after this halt and can clear it.
        let _unpersisted = self.lock_unpersisted();
        if !self.health.control_lost.load(Ordering::Acquire) || self.health.control_lost_at() != Some(lost_at) {
            return None;
        }
        let mut local_halt = self.lock_local_halt();
        if local_halt.is_some() {
            return None;
        }
        let previous = self.state.load_full();
        let entry = HaltEntry {
            mode: Mode::HardHalt,
            reason: CONTROL_PLANE_LOST.to_owned(),
            operator: None,
            since_ms: now_ms(),
            key_id: None,
        };
        let mut next = (*previous).clone();
        next.epoch = previous.epoch + 1;
        next.global = entry.clone();
        *local_halt = Some(LocalHalt { entry, replaced: previous.global.clone() });
        let next = Arc::new(next);
        self.state.store(Arc::clone(&next));
        metrics::record_state(&next, Some(&previous));
        Some(next)
    }

    /// Returns true while the local `CONTROL_PLANE_LOST` halt is in force.
    pub fn control_plane_lost(&self) -> bool {
        let _unpersisted = self.lock_unpersisted();
        self.lock_local_halt().as_ref().is_some_and(|local_halt| self.state.load().global == local_halt.entry)
    }

    /// Replaces the state with `stored`, a state read from the store, re-applying on top of
    /// it every change not yet written. A change already in force in `stored` drops out of
    /// the queue, since the store already contains its effect. When changes remain, the
    /// result gets an epoch above the current one, so the epoch stays monotonic.
    /// Returns the new state.
    ///
    /// A local `CONTROL_PLANE_LOST` halt stays on top of the result while the control
    /// connection is down or when `control_plane_lost_latch` is set, and is cleared otherwise.
    /// A queued resume signed before a newer stored halt began is dropped, as the control
    /// plane would have rejected it against that halt.
    pub fn replace_state(&self, stored: HaltState) -> Arc<HaltState> {
        let mut unpersisted = self.lock_unpersisted();
        let previous = self.state.load_full();
        let mut next = stored;
        let now = now_ms();
        unpersisted.retain(|change| {
            if !next.permits(change) {
                warn!(halt.scope = ?change.scope, halt.epoch = next.epoch, "Unwritten resume dropped: it was signed before the newer stored halt began");
                return false;
            }
            match next.apply(change, now, self.settings.max_scopes) {
                Transition::Applied(applied) => {
                    next = applied;
                    true
                }
                Transition::Unchanged => false,
            }
        });
        if !unpersisted.is_empty() && next.epoch <= previous.epoch {
            next.epoch = previous.epoch + 1;
        }
        self.keep_or_clear_local_halt(&mut next);
        let next = Arc::new(next);
        self.state.store(Arc::clone(&next));
        metrics::record_state(&next, Some(&previous));
        next
    }

    /// Puts the local halt back on top of `next`, a state built from the store, or clears
    /// it once the control connection is back and the latch is off. Called with
    /// `unpersisted` locked.
    fn keep_or_clear_local_halt(&self, next: &mut HaltState) {
        let mut local_halt = self.lock_local_halt();
        let Some(halt) = local_halt.as_mut() else {
            return;
        };
        if self.settings.control_plane_lost_latch || self.health.control_lost.load(Ordering::Acquire) {
            halt.replaced = std::mem::replace(&mut next.global, halt.entry.clone());
            return;
        }
        warn!(halt.epoch = next.epoch, mode = %next.global.mode, reason = %next.global.reason, "Control connection restored and halt state read again; CONTROL_PLANE_LOST cleared");
        *local_halt = None;
    }

    /// Returns the state to write and how many queued changes it contains. While the local
    /// `CONTROL_PLANE_LOST` halt is in force, the state to write has the global entry it
    /// replaced, so the store never contains the local halt.
    pub fn unpersisted_snapshot(&self) -> (Arc<HaltState>, usize) {
        let unpersisted = self.lock_unpersisted();
        let mut state = self.state.load_full();
        if let Some(local_halt) = self.lock_local_halt().as_ref()
            && state.global == local_halt.entry
        {
            let mut stored = (*state).clone();
            stored.global = local_halt.replaced.clone();
            state = Arc::new(stored);
        }
        (state, unpersisted.len())
    }

    /// Removes the oldest `count` queued changes once a write that contained them landed,
    /// and returns them.
    pub fn mark_persisted(&self, count: usize) -> Vec<Change> {
        let mut unpersisted = self.lock_unpersisted();
        let count = count.min(unpersisted.len());
        unpersisted.drain(..count).collect()
    }

    /// Returns true while some change has not been written to the store.
    pub fn has_unpersisted(&self) -> bool {
        !self.lock_unpersisted().is_empty()
    }

    fn lock_local_halt(&self) -> std::sync::MutexGuard<'_, Option<LocalHalt>> {
        self.local_halt.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_unpersisted(&self) -> std::sync::MutexGuard<'_, VecDeque<Change>> {
        self.unpersisted.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts one order verdict for `/status`.
    pub fn count(&self, verdict: Verdict) {
        let index = match verdict {
            Verdict::Admitted => 0,
            Verdict::Rejected => 1,
            Verdict::Unconfirmed => 2,
        };
        self.counts[index].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one order rejected because of a halt (`system_halted` or `reduce_only`), for
    /// the audit record of the transition that ends the current state.
    pub fn count_halt_rejection(&self) {
        self.rejected_under_state.fetch_add(1, Ordering::AcqRel);
    }

    /// Builds the status document served by `GET /status` and `titan.gate.status.v1`.
    pub fn status(&self) -> Value {
        let state = self.state();
        let scopes: Vec<Value> = state
            .scopes()
            .into_iter()
            .map(|(scope, entry)| {
                let mut value = entry_json(entry);
                value["scope"] = json!(scope.to_string());
                value["kind"] = json!(scope.kind.as_str());
                value["value"] = json!(scope.value);
                value
            })
            .collect();
        let unready = self.health.unready_reasons();
        let mut status = entry_json(&state.global);
        status["gate_id"] = json!(self.settings.gate_id);
        status["epoch"] = json!(state.epoch);
        status["halted"] = json!(state.strictest_mode() != Mode::Running);
        status["scopes"] = json!(scopes);
        status["nats"] = json!({
            "connected": self.health.nats_connected(),
            "orders_connected": self.health.orders_connected.load(Ordering::Acquire),
            "control_connected": self.health.control_connected.load(Ordering::Acquire),
        });
        status["state_revision"] = json!(self.state_revision.load(Ordering::Acquire));
        status["state_loaded"] = json!(self.health.state_loaded.load(Ordering::Acquire));
        status["control_plane_lost"] = json!(self.control_plane_lost());
        status["ready"] = json!(unready.is_empty());
        status["unready_reasons"] = json!(unready);
        status["forward_stream"] =
            json!(*self.health.forward_stream.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        status["keys"] = json!(self.keyring().ids());
        status["orders"] = json!({
            "admitted": self.counts[0].load(Ordering::Relaxed),
            "rejected": self.counts[1].load(Ordering::Relaxed),
            "unconfirmed": self.counts[2].load(Ordering::Relaxed),
        });
        status
    }
}

/// Formats epoch milliseconds as RFC 3339 UTC with exactly three fractional digits,
/// so timestamps line up in tables.
pub fn format_time_ms(epoch_ms: i64) -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    let nanos = i128::from(epoch_ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|time| time.format(FORMAT).ok())
        .unwrap_or_else(|| epoch_ms.to_string())
}

#[cfg(test)]
mod tests;

fn entry_json(entry: &HaltEntry) -> Value {
    json!({
        "mode": entry.mode.as_str(),
        "reason": entry.reason,
        "operator": entry.operator,
        "since": format_time_ms(entry.since_ms),
        "since_ms": entry.since_ms,
        "key_id": entry.key_id,
    })
}
