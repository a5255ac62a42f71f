//! The state one gate process shares between its tasks: the halt state behind one
//! atomic pointer, the keys, health flags and order counts.

mod health;
mod local_halt;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use serde_json::{Value, json};
use titan_gate_core::{Change, HaltEntry, HaltState, Keyring, Mode, Policy, Transition, Verdict};
use tracing::{error, warn};

pub use self::health::Health;
use self::local_halt::LocalHalt;
pub use self::local_halt::{CONTROL_PLANE_LOST, STATE_UNKNOWN};
use crate::audit::{AuditLog, AuditQueue};
use crate::config::Settings;
use crate::keys::now_ms;
use crate::metrics;
use crate::store;

/// Changes kept until the store confirms a write. Commands are rare, so reaching this
/// means the store has been unwritable for a long time.
const MAX_UNPERSISTED_CHANGES: usize = 4_096;

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
    /// An epoch the store must reach although no change is queued, or 0 for none. It is set
    /// when the in-memory epoch had to be raised above the stored one, so that replicas
    /// adopt the raised epoch. Changed only while `unpersisted` is locked.
    unwritten_epoch: AtomicU64,
    /// The `STATE_UNKNOWN` or `CONTROL_PLANE_LOST` halt this gate applied on its own, while
    /// it is in force. Locked only while `unpersisted` is locked.
    local_halt: Mutex<Option<LocalHalt>>,
    /// Wakes the task that writes the state to the store.
    pub persist_wake: tokio::sync::Notify,
    /// The store's revision of the last state read or written, 0 before the first.
    pub state_revision: AtomicU64,
    /// Connection and subscription flags behind `/readyz`.
    pub health: Health,
    /// The sending side of the audit queue, for every transition this gate applies.
    pub audit: AuditLog,
    /// The receiving side of the audit queue until `run` starts its writer.
    audit_queue: Mutex<Option<AuditQueue>>,
    counts: [AtomicU64; 3],
    /// Orders rejected `system_halted` or `reduce_only` since the last transition this gate
    /// applied, by command or on its own.
    rejected_under_state: AtomicU64,
    /// Nonces in the order replay memory, stored by the intake after each decision.
    pub replay_nonces: AtomicU64,
    /// Limits slow-consumer warnings to one a second.
    pub slow_consumer_log: crate::logging::RejectLogLimiter,
    /// The largest stored state the server accepts, from its `max_payload` less
    /// [`store::ENCODING_HEADROOM_BYTES`]. A new scoped halt that would make the state
    /// larger becomes a global `HARD_HALT`, as one past `max_scopes` does.
    max_state_bytes: AtomicUsize,
}

/// nats-server's default `max_payload`, assumed until the control connection reports the
/// server's own.
const DEFAULT_SERVER_MAX_PAYLOAD: usize = 1024 * 1024;

impl Gate {
    /// Creates the gate in `HARD_HALT` with reason `STATE_UNKNOWN`, the state it keeps
    /// until it has read the stored state. This first `STATE_UNKNOWN`, at epoch 0, is the
    /// starting point rather than a transition, so it is not audited.
    pub fn new(settings: Settings, keyring: Keyring) -> Self {
        let (audit, audit_queue) = AuditLog::new();
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
            unwritten_epoch: AtomicU64::new(0),
            local_halt: Mutex::new(None),
            persist_wake: tokio::sync::Notify::new(),
            state_revision: AtomicU64::new(0),
            health: Health::default(),
            audit,
            audit_queue: Mutex::new(Some(audit_queue)),
            counts: Default::default(),
            rejected_under_state: AtomicU64::new(0),
            replay_nonces: AtomicU64::new(0),
            slow_consumer_log: crate::logging::RejectLogLimiter::new(1),
            max_state_bytes: AtomicUsize::new(DEFAULT_SERVER_MAX_PAYLOAD - store::ENCODING_HEADROOM_BYTES),
        }
    }

    /// Records the connected server's `max_payload`, which bounds the stored state.
    pub fn set_server_max_payload(&self, max_payload: usize) {
        if max_payload > 0 {
            let bytes = max_payload.saturating_sub(store::ENCODING_HEADROOM_BYTES);
            self.max_state_bytes.store(bytes, Ordering::Release);
        }
    }

    /// Applies `change` to `state`. A new scoped halt that would make the stored state
    /// larger than the server accepts is applied as the scope limit's global `HARD_HALT`,
    /// because a state that cannot be stored would be lost by the next restart.
    fn apply_bounded(&self, state: &HaltState, change: &Change, now_ms: i64) -> Transition {
        let transition = state.apply(change, now_ms, self.settings.max_scopes);
        let max_bytes = self.max_state_bytes.load(Ordering::Acquire);
        if let Transition::Applied(next) = &transition
            && next.scope_count() > state.scope_count()
            && store::encoded_len(next) > max_bytes
        {
            warn!(
                halt.scope = ?change.scope,
                scopes = state.scope_count(),
                max_state_bytes = max_bytes,
                "Storing another scoped halt would exceed the server's max_payload; applying a global HARD_HALT instead"
            );
            return state.apply(change, now_ms, state.scope_count());
        }
        transition
    }

    /// Returns the current halt state with one atomic load.
    pub fn state(&self) -> arc_swap::Guard<Arc<HaltState>> {
        self.state.load()
    }

    /// Returns the current keys.
    pub fn keyring(&self) -> arc_swap::Guard<Arc<Keyring>> {
        self.keyring.load()
    }

    /// Takes the receiving side of the audit queue, for the writer task; `None` after the first call.
    pub fn take_audit_queue(&self) -> Option<AuditQueue> {
        self.audit_queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()
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
        let transition =
            if allowed(&previous) { self.apply_bounded(&previous, change, now_ms()) } else { Transition::Unchanged };
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
            self.health.note_unstored(now_ms());
            self.persist_wake.notify_one();
        }
        (transition, previous, rejected_under_previous)
    }

    /// Replaces the state with `stored`, a state read from the store, re-applying on top of
    /// it every change not yet written. A change already in force in `stored` drops out of
    /// the queue, since the store already contains its effect. The epoch never goes down:
    /// see [`Self::settle_epoch`]. Returns the new state.
    ///
    /// A local `CONTROL_PLANE_LOST` halt stays on top of the result while the control
    /// connection is down or when `control_plane_lost_latch` is set, and is cleared otherwise.
    /// A local `STATE_UNKNOWN` halt is cleared, since `stored` is a valid state.
    /// A queued resume signed before a newer stored halt began is dropped, as the control
    /// plane would have rejected it against that halt.
    pub fn replace_state(&self, stored: HaltState) -> Arc<HaltState> {
        let mut unpersisted = self.lock_unpersisted();
        let previous = self.state.load_full();
        let stored_epoch = stored.epoch;
        let mut next = stored;
        let now = now_ms();
        unpersisted.retain(|change| {
            if !next.permits(change) {
                warn!(halt.scope = ?change.scope, halt.epoch = next.epoch, "Unwritten resume dropped: it was signed before the newer stored halt began");
                return false;
            }
            match self.apply_bounded(&next, change, now) {
                Transition::Applied(applied) => {
                    next = applied;
                    true
                }
                Transition::Unchanged => false,
            }
        });
        if unpersisted.is_empty() {
            self.health.clear_unstored();
        }
        let cleared = self.keep_or_clear_local_halt(&mut next);
        self.settle_epoch(&previous, &mut next, stored_epoch, !unpersisted.is_empty(), cleared.is_some());
        let next = Arc::new(next);
        self.state.store(Arc::clone(&next));
        metrics::record_state(&next, Some(&previous));
        if let Some(cleared) = cleared {
            self.audit_local_clear(&previous, &next, &cleared);
        }
        next
    }

    /// Keeps the epoch this replica reports from going down when `next`, built from a
    /// stored state at `stored_epoch`, replaces the state in force. Called with
    /// `unpersisted` locked.
    ///
    /// With changes still queued, or a local halt just cleared, `next` differs from the
    /// state in force, so it gets an epoch above that state's. Otherwise an epoch below the
    /// one in force is raised to it. When no change and no local halt remains, a raised
    /// epoch is queued for writing, so the other replicas adopt it and agree.
    fn settle_epoch(
        &self,
        previous: &HaltState,
        next: &mut HaltState,
        stored_epoch: u64,
        changes_queued: bool,
        cleared_local: bool,
    ) {
        if self.unwritten_epoch.load(Ordering::Acquire) <= stored_epoch {
            self.unwritten_epoch.store(0, Ordering::Release);
        }
        let minimum = if changes_queued || cleared_local { previous.epoch + 1 } else { previous.epoch };
        if next.epoch >= minimum {
            return;
        }
        next.epoch = minimum;
        if !changes_queued && self.lock_local_halt().is_none() {
            self.unwritten_epoch.store(minimum, Ordering::Release);
            self.persist_wake.notify_one();
        }
    }

    /// Returns the state to write and how many queued changes it contains. While the local
    /// `CONTROL_PLANE_LOST` halt is in force, the state to write has the global entry it
    /// replaced, so the store never contains that halt. A local `STATE_UNKNOWN` halt is
    /// written as it is, so a write that replaces an unusable stored value stores a halt.
    pub fn unpersisted_snapshot(&self) -> (Arc<HaltState>, usize) {
        let unpersisted = self.lock_unpersisted();
        let mut state = self.state.load_full();
        if let Some(local_halt) = self.lock_local_halt().as_ref()
            && local_halt.is_control_plane_lost()
            && state.global == local_halt.entry
        {
            let mut stored = (*state).clone();
            stored.global = local_halt.replaced.clone();
            state = Arc::new(stored);
        }
        (state, unpersisted.len())
    }

    /// Records a write that landed and returns the oldest `count` queued changes, which
    /// it contained, removing them from the queue. It also clears the raised epoch if
    /// `written`, the state written, reached it.
    pub fn mark_persisted(&self, count: usize, written: &HaltState) -> Vec<Change> {
        let mut unpersisted = self.lock_unpersisted();
        let count = count.min(unpersisted.len());
        let landed = unpersisted.drain(..count).collect();
        if unpersisted.is_empty() {
            self.health.clear_unstored();
        }
        if self.unwritten_epoch.load(Ordering::Acquire) <= written.epoch {
            self.unwritten_epoch.store(0, Ordering::Release);
        }
        let mut local_halt = self.lock_local_halt();
        if local_halt.as_ref().is_some_and(|halt| !halt.is_control_plane_lost() && written.global == halt.entry) {
            // The store now contains the STATE_UNKNOWN halt, so it is no longer local.
            *local_halt = None;
        }
        landed
    }

    /// Returns true while some change or a raised epoch has not been written to the store.
    pub fn has_unpersisted(&self) -> bool {
        let unpersisted = self.lock_unpersisted();
        !unpersisted.is_empty() || self.unwritten_epoch.load(Ordering::Acquire) != 0
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
