//! Halted scopes that no load order falls in, stored in the gate's state bucket before
//! the gate starts, so the gate path can be measured with many halts in force.
//!
//! Writing the state once is far quicker than publishing one halt command per scope,
//! because every applied command rewrites the whole stored state.

use std::time::Duration;

use anyhow::Context as _;
use titan_gate::config::DEFAULT_STATE_BUCKET;
use titan_gate::store::StateStore;
use titan_gate_core::{HaltEntry, HaltState, Mode, Scope, ScopeKind};

use crate::orders::now_ms;

/// Subject on which every gate replica replies with its status.
const STATUS_SUBJECT: &str = "titan.gate.status.v1";

/// Builds a RUNNING state with `count` halted scopes spread over the four kinds, half of
/// them hard and half soft halts, with values that no load order names.
fn state_with_scopes(count: usize) -> HaltState {
    let since_ms = now_ms() - 1_000;
    let entry = |mode| HaltEntry {
        mode,
        reason: "titan-gate-load halted scope".to_owned(),
        operator: Some("titan-gate-load".to_owned()),
        since_ms,
        key_id: None,
    };
    let scopes = (0..count).map(|index| {
        let kind = ScopeKind::ALL[index % ScopeKind::ALL.len()];
        let mode = if index % 2 == 0 { Mode::HardHalt } else { Mode::SoftHalt };
        (Scope::new(kind, format!("load-{}-{index}", kind.as_str())), entry(mode))
    });
    HaltState::from_parts(1, entry(Mode::Running), scopes)
}

/// Stores a state with `count` halted scopes in the gate's default state bucket, which
/// the gate loads when it starts. Does nothing for 0.
pub async fn store_halted_scopes(jetstream: &async_nats::jetstream::Context, count: usize) -> anyhow::Result<()> {
    if count == 0 {
        return Ok(());
    }
    let state = state_with_scopes(count);
    anyhow::ensure!(state.scope_count() == count, "the generated scope names are not distinct");
    let store = StateStore::open(jetstream, DEFAULT_STATE_BUCKET, 1).await.context("cannot open the state bucket")?;
    let revision = store.load().await.context("cannot read the stored state")?.map(|stored| stored.revision);
    store.write(&state, revision, "titan-gate-load").await.context("cannot store the halted scopes")?;
    Ok(())
}

/// Asks the running gate for its status and fails unless it reports `expected` scopes
/// and is not halted globally.
pub async fn check_gate_scopes(client: &async_nats::Client, expected: usize) -> anyhow::Result<()> {
    let reply = tokio::time::timeout(Duration::from_secs(5), client.request(STATUS_SUBJECT, "".into()))
        .await
        .context("the gate did not reply to the status request within 5 s")?
        .context("the status request failed")?;
    let status: serde_json::Value = serde_json::from_slice(&reply.payload).context("the status is not JSON")?;
    let scopes = status["scopes"].as_array().map_or(0, Vec::len);
    anyhow::ensure!(scopes == expected, "the gate reports {scopes} halted scopes, expected {expected}");
    anyhow::ensure!(status["mode"] == "RUNNING", "the gate is not RUNNING globally: mode {}", status["mode"]);
    Ok(())
}
