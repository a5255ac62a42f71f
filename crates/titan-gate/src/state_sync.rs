//! Keeps the in-memory halt state in step with the copy in the state store: reads it at
//! start and after every reconnect of the control connection, writes local changes with
//! compare-and-set, and adopts the changes other replicas write.
//!
//! One task does all three, so a write, a rebase and an adopted update never interleave.
//! It runs on the control connection, so an order flood cannot delay it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::{Stream, StreamExt};
use titan_gate_core::{Change, HaltState};
use tracing::{error, info, warn};

use crate::gate::Gate;
use crate::keys::now_ms;
use crate::store::{StateStore, StoreError, Stored};

/// The first delay between two failed attempts, which doubles up to [`MAX_RETRY_DELAY`].
const MIN_RETRY_DELAY: Duration = Duration::from_millis(100);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(2);

/// The reason stored with a configured initial state.
const INITIAL_STATE: &str = "INITIAL_STATE";

/// A delay that doubles after each failure, from [`MIN_RETRY_DELAY`] to [`MAX_RETRY_DELAY`].
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Self {
        Self { next: MIN_RETRY_DELAY }
    }

    fn reset(&mut self) {
        self.next = MIN_RETRY_DELAY;
    }

    /// Sleeps for the current delay, or less if the control connection reconnects.
    async fn wait(&mut self, gate: &Gate) {
        let delay = self.next;
        self.next = (self.next * 2).min(MAX_RETRY_DELAY);
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = gate.health.control_reconnected.notified() => {
                // Put the wake back for the loop that restarts the read.
                gate.health.control_reconnected.notify_one();
            }
        }
    }
}

/// The state task's own state.
#[derive(Debug)]
pub struct StateSync {
    gate: Arc<Gate>,
    jetstream: async_nats::jetstream::Context,
    /// The revision the next write expects: the last one this task read or wrote.
    revision: Option<u64>,
    backoff: Backoff,
    /// Receives the changes of each write of this replica that landed.
    landed: Option<tokio::sync::mpsc::Sender<Vec<Change>>>,
}

impl StateSync {
    /// Creates the task state with a JetStream context of its own on the control connection.
    pub fn new(gate: Arc<Gate>, control_client: async_nats::Client) -> Self {
        let jetstream = async_nats::jetstream::new(control_client);
        Self { gate, jetstream, revision: None, backoff: Backoff::new(), landed: None }
    }

    /// Sends the changes of every write of this replica that lands to `landed`, so exactly
    /// one replica acts on a change that several replicas applied.
    #[must_use]
    pub fn report_landed_to(mut self, landed: tokio::sync::mpsc::Sender<Vec<Change>>) -> Self {
        self.landed = Some(landed);
        self
    }

    fn mark_persisted(&self, count: usize, written: &HaltState) {
        let changes = self.gate.mark_persisted(count, written);
        if let Some(landed) = &self.landed
            && !changes.is_empty()
            && let Err(error) = landed.try_send(changes)
        {
            error!(error = %error, "Landed halt state changes dropped: their queue is full or closed, so their notices and on-halt actions are lost");
        }
    }

    /// Reads the stored state, then writes local changes and adopts stored ones until
    /// the control connection reconnects, and starts over. Runs until the process stops.
    pub async fn run(mut self) {
        loop {
            let generation = self.generation();
            let store = self.load(generation).await;
            let updates = match store.watch().await {
                Ok(updates) => updates,
                Err(error) => {
                    warn!(bucket = store.bucket(), error = %error, "Watching the state store failed; reading the state again");
                    self.backoff.wait(&self.gate).await;
                    continue;
                }
            };
            self.follow(&store, updates, generation).await;
        }
    }

    fn generation(&self) -> u64 {
        self.gate.health.control_generation.load(Ordering::Acquire)
    }

    /// Retries [`Self::try_load`] until it succeeds, then marks the state loaded unless
    /// the control connection reconnected in the meantime.
    async fn load(&mut self, generation: u64) -> StateStore {
        loop {
            match self.try_load().await {
                Ok(store) => {
                    self.gate.set_server_max_payload(store.server_max_payload());
                    self.backoff.reset();
                    self.set_problem(None);
                    if self.generation() == generation {
                        // Logged before the flag is set, so the line is in the log before any order is admitted.
                        info!(bucket = store.bucket(), revision = ?self.revision, halt.epoch = self.gate.state().epoch, "Halt state loaded");
                        self.gate.health.state_loaded.store(true, Ordering::Release);
                    }
                    return store;
                }
                Err(error @ (StoreError::Corrupt { .. } | StoreError::Removed { .. })) => {
                    let state = self.gate.halt_state_unknown();
                    error!(error = %error, halt.epoch = state.epoch, "Stored halt state cannot be used; staying in HARD_HALT STATE_UNKNOWN and retrying");
                    self.set_unusable(&error);
                }
                Err(error) => warn!(error = %error, "Reading the stored halt state failed; retrying"),
            }
            self.backoff.wait(&self.gate).await;
        }
    }

    /// Opens the bucket and adopts the stored state, or stores the configured initial
    /// state when none is stored yet.
    async fn try_load(&mut self) -> Result<StateStore, StoreError> {
        let settings = &self.gate.settings;
        let store = StateStore::open(&self.jetstream, &settings.state_bucket, settings.state_replicas).await?;
        loop {
            if let Some(stored) = store.load().await? {
                self.adopt(stored);
                return Ok(store);
            }
            let initial = HaltState::initial(self.gate.settings.initial_mode, INITIAL_STATE, now_ms());
            match store.write(&initial, None, &self.gate.settings.gate_id).await {
                Ok(revision) => {
                    info!(bucket = store.bucket(), mode = %initial.global.mode, "No halt state stored yet; stored the initial state");
                    self.gate.replace_state(initial);
                    self.set_revision(revision);
                    return Ok(store);
                }
                // Another replica stored a state first, so read that one.
                Err(StoreError::Conflict { .. }) => {}
                Err(error) => return Err(error),
            }
        }
    }

    fn adopt(&mut self, stored: Stored) {
        let state = self.gate.replace_state(stored.state);
        self.set_revision(stored.revision);
        info!(updated_by = %stored.updated_by, revision = stored.revision, halt.epoch = state.epoch, mode = %state.global.mode, "Adopted the stored halt state");
    }

    /// Writes local changes and handles stored updates until the control connection
    /// reconnects or the watch ends.
    async fn follow<S>(&mut self, store: &StateStore, mut updates: S, generation: u64)
    where
        S: Stream<Item = Result<Stored, StoreError>> + Unpin,
    {
        loop {
            if self.generation() != generation {
                return;
            }
            if self.gate.has_unpersisted() {
                self.persist(store, generation).await;
                continue;
            }
            tokio::select! {
                () = self.gate.health.control_reconnected.notified() => {}
                () = self.gate.persist_wake.notified() => {}
                update = updates.next() => {
                    let Some(update) = update else {
                        warn!(bucket = store.bucket(), "The state store watch ended; reading the state again");
                        return;
                    };
                    self.on_update(update);
                }
            }
        }
    }

    /// Handles one item of the watch: adopts a state another writer stored, and halts with
    /// `STATE_UNKNOWN`, unready, while the stored value is unusable.
    fn on_update(&mut self, update: Result<Stored, StoreError>) {
        match update {
            Ok(stored) if stored.revision > self.revision.unwrap_or(0) => {
                self.adopt(stored);
                self.set_problem(None);
            }
            // This gate's own write, or the value it read last.
            Ok(_) => {}
            Err(error @ (StoreError::Corrupt { .. } | StoreError::Removed { .. })) => {
                let state = self.gate.halt_state_unknown();
                error!(error = %error, halt.epoch = state.epoch, "Stored halt state became unusable; halted with STATE_UNKNOWN until a valid state is stored");
                self.set_unusable(&error);
            }
            Err(error) => warn!(error = %error, "The state store watch reported an error"),
        }
    }

    /// Makes one attempt to write the current state, expecting the last known revision.
    async fn persist(&mut self, store: &StateStore, generation: u64) {
        let (snapshot, count) = self.gate.unpersisted_snapshot();
        match store.write(&snapshot, self.revision, &self.gate.settings.gate_id).await {
            Ok(revision) => {
                self.set_revision(revision);
                self.mark_persisted(count, &snapshot);
                self.set_problem(None);
                self.backoff.reset();
                info!(revision, halt.epoch = snapshot.epoch, "Halt state stored");
            }
            Err(StoreError::Conflict { .. }) => self.rebase(store, &snapshot, count).await,
            Err(error) => {
                warn!(error = %error, halt.epoch = snapshot.epoch, "Storing the halt state failed; the state stays in force in memory, retrying");
                if self.generation() == generation {
                    self.backoff.wait(&self.gate).await;
                }
            }
        }
    }

    /// Reads the state another writer stored and re-applies the unwritten changes on top,
    /// so the next write carries both. A stored value equal to `attempted` means an
    /// earlier write landed although it reported a failure.
    async fn rebase(&mut self, store: &StateStore, attempted: &HaltState, count: usize) {
        match store.load().await {
            Ok(Some(stored)) if stored.state == *attempted => {
                self.set_revision(stored.revision);
                if stored.updated_by == self.gate.settings.gate_id {
                    self.mark_persisted(count, attempted);
                } else {
                    // Another replica stored the same state, applied in the same millisecond,
                    // so its write landed and this one's notices and actions are its to send.
                    self.gate.mark_persisted(count, attempted);
                }
            }
            Ok(Some(stored)) => {
                let state = self.gate.replace_state(stored.state);
                self.set_revision(stored.revision);
                info!(updated_by = %stored.updated_by, revision = stored.revision, halt.epoch = state.epoch, "Another writer changed the stored halt state; re-applied the local changes on top");
            }
            Ok(None) => self.revision = None,
            Err(error @ (StoreError::Corrupt { revision, .. } | StoreError::Removed { revision, .. })) => {
                // The next write replaces the unusable value with the halted state.
                let state = self.gate.halt_state_unknown();
                error!(error = %error, halt.epoch = state.epoch, "Stored halt state cannot be used; halted with STATE_UNKNOWN and overwriting it");
                self.set_unusable(&error);
                self.revision = Some(revision);
            }
            Err(error) => {
                warn!(error = %error, "Reading the stored halt state after a conflict failed; retrying");
                self.backoff.wait(&self.gate).await;
            }
        }
    }

    fn set_revision(&mut self, revision: u64) {
        self.revision = Some(revision);
        self.gate.state_revision.store(revision, Ordering::Release);
    }

    /// Makes `/readyz` name `error` until a valid state is read or written.
    fn set_unusable(&self, error: &StoreError) {
        self.set_problem(Some(format!("stored halt state cannot be used: {error}")));
    }

    fn set_problem(&self, problem: Option<String>) {
        self.gate.health.set_state_problem(problem);
    }
}
