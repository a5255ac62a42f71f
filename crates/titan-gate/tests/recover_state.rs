//! `titan-gate recover-state` against a real nats-server and gate: it repairs a corrupt or
//! deleted stored state, rejects a valid one unless `--yes` is given, and the store's
//! history and open helpers that it uses.

mod common;

use std::process::Output;

use common::{GATE_BINARY, Harness, WAIT, status_of};
use titan_gate::store::{DEFAULT_TIMEOUT, STATE_KEY, StateStore, StoreError};
use titan_gate_core::{HaltEntry, HaltState, Mode};
use titan_gate_test_support::{GateProcess, NatsServer, wait_until};

const BUCKET: &str = "TITAN_GATE_STATE";
const REASON: &str = "state recovered after corruption";

/// Runs `titan-gate recover-state` against the harness's server with `extra` arguments.
fn recover_state(harness: &Harness, extra: &[&str]) -> Output {
    std::process::Command::new(GATE_BINARY)
        .args(["recover-state", "--reason", REASON, "--operator", "alice"])
        .args(extra)
        .env("NATS_URL", harness.server.url())
        .output()
        .expect("titan-gate runs")
}

fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

async fn state_store(harness: &Harness) -> StateStore {
    StateStore::open_existing(&harness.jetstream, BUCKET, DEFAULT_TIMEOUT)
        .await
        .expect("the bucket opens")
        .expect("the gate created the bucket")
}

/// Stores a RUNNING state at `epoch` over the gate's state and waits until the gate adopts it.
async fn store_running_state(harness: &Harness, epoch: u64) {
    let store = state_store(harness).await;
    let current = store.load().await.expect("the state loads").expect("the gate stored a state");
    let global = HaltEntry {
        mode: Mode::Running,
        reason: "test state".to_owned(),
        operator: None,
        since_ms: common::now_ms(),
        key_id: None,
    };
    store
        .write(&HaltState::from_parts(epoch, global, []), Some(current.revision), "test")
        .await
        .expect("the test state is stored");
    wait_until(WAIT, &format!("the gate to adopt epoch {epoch}"), || async { harness.status()["epoch"] == epoch })
        .await
        .unwrap_or_else(|error| panic!("{error}\n{}", harness.gate.log()));
}

/// Waits until the running gate, which reads the unusable value through its watch, halts
/// with `STATE_UNKNOWN` and returns 503 on `/readyz` naming the problem, and checks that it
/// rejects an order. Then starts a replica, which cannot load the state at all and so
/// reports the same.
async fn wait_state_unknown(harness: &Harness) -> GateProcess {
    wait_until(WAIT, "the running gate's readyz 503 with STATE_UNKNOWN", || async {
        harness.gate.get("/readyz").is_some_and(|response| {
            response.status == 503 && response.body.contains("stored halt state cannot be used")
        }) && harness.status()["reason"] == "STATE_UNKNOWN"
    })
    .await
    .unwrap_or_else(|error| panic!("{error}\n{}", harness.gate.log()));
    let status = harness.status();
    assert_eq!(status["mode"], "HARD_HALT", "{status}");
    assert_eq!(common::rejection_reason(&harness.signed_order("sig-state-unknown").await), "system_halted");

    let replica = harness.replica("gate-b", |builder| builder).await;
    wait_until(WAIT, "the replica's readyz 503 with STATE_UNKNOWN", || async {
        replica.get("/readyz").is_some_and(|response| response.status == 503)
            && status_of(&replica)["reason"] == "STATE_UNKNOWN"
    })
    .await
    .unwrap_or_else(|error| panic!("{error}\n{}", replica.log()));
    replica
}

async fn wait_recovered(gate: &GateProcess, epoch_before: u64) {
    wait_until(WAIT, "the gate to adopt the recovered HARD_HALT", || async {
        let status = status_of(gate);
        status["mode"] == "HARD_HALT" && status["reason"] == REASON
    })
    .await
    .unwrap_or_else(|error| panic!("{error}\n{}", gate.log()));
    let status = status_of(gate);
    assert_eq!(status["operator"], "alice", "{status}");
    let epoch = status["epoch"].as_u64().expect("epoch is a number");
    assert!(epoch > epoch_before, "recovered epoch {epoch} is not above {epoch_before}: {status}");
    wait_until(WAIT, "readyz 200", || async { gate.get("/readyz").is_some_and(|response| response.status == 200) })
        .await
        .unwrap_or_else(|error| panic!("{error}\n{}", gate.log()));
}

#[tokio::test]
async fn recovers_corrupt_state() {
    let harness = Harness::start().await;
    store_running_state(&harness, 41).await;

    let kv = harness.jetstream.get_key_value(BUCKET).await.expect("the state bucket exists");
    kv.put(STATE_KEY, "not a halt state".into()).await.expect("the corrupt value is written");
    let replica = wait_state_unknown(&harness).await;

    let output = recover_state(&harness, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("epoch 42"), "{}", describe(&output));
    assert!(stdout.contains("titan-gate resume"), "{}", describe(&output));
    wait_recovered(&replica, 41).await;
    wait_recovered(&harness.gate, 41).await;

    let history = state_store(&harness).await.history().await.expect("history reads");
    let recovered = history
        .iter()
        .filter_map(|revision| revision.as_ref().ok())
        .find(|stored| stored.updated_by == "recover-state:alice")
        .unwrap_or_else(|| panic!("no revision by recover-state: {history:?}"));
    assert_eq!(recovered.state.epoch, 42);
    assert_eq!(recovered.state.scope_count(), 0);
    // The running gate had reported its own STATE_UNKNOWN halt at epoch 42, so clearing it
    // raises the epoch to 43 and stores that, and both gates agree on it.
    let store = state_store(&harness).await;
    wait_until(WAIT, "the raised epoch 43 to be stored", || async {
        store.load().await.ok().flatten().is_some_and(|stored| stored.state.epoch == 43)
    })
    .await
    .unwrap_or_else(|error| panic!("{error}\n{}", harness.gate.log()));
    for gate in [&harness.gate, &replica] {
        wait_until(WAIT, "each gate to report epoch 43", || async { status_of(gate)["epoch"] == 43 })
            .await
            .unwrap_or_else(|error| panic!("{error}\n{}", gate.log()));
    }

    harness.resume().await;
    harness.wait_mode("RUNNING").await;
}

#[tokio::test]
async fn recovers_deleted_state() {
    let harness = Harness::start().await;
    store_running_state(&harness, 7).await;

    let kv = harness.jetstream.get_key_value(BUCKET).await.expect("the state bucket exists");
    kv.delete(STATE_KEY).await.expect("the state is deleted");
    let replica = wait_state_unknown(&harness).await;

    let output = recover_state(&harness, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    wait_recovered(&replica, 7).await;
    wait_recovered(&harness.gate, 7).await;
}

#[tokio::test]
async fn rejects_valid_state_without_yes() {
    let harness = Harness::start().await;
    store_running_state(&harness, 5).await;
    let before = state_store(&harness).await.load().await.expect("loads").expect("stored");

    let output = recover_state(&harness, &[]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("nothing to recover"), "{}", describe(&output));
    assert!(stderr.contains("mode RUNNING, epoch 5"), "{}", describe(&output));
    let after = state_store(&harness).await.load().await.expect("loads").expect("stored");
    assert_eq!(after.revision, before.revision, "the rejected command wrote a state");
    assert_eq!(harness.status()["mode"], "RUNNING");

    let output = recover_state(&harness, &["--yes"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    wait_recovered(&harness.gate, 5).await;
}

#[tokio::test]
async fn missing_bucket_fails() {
    let harness = Harness::start().await;

    let output = recover_state(&harness, &["--bucket", "NO_SUCH_BUCKET"]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("NO_SUCH_BUCKET not found"), "{}", describe(&output));
    let missing = harness.jetstream.get_key_value("NO_SUCH_BUCKET").await;
    assert!(missing.is_err(), "recover-state created the bucket");
}

#[tokio::test]
async fn store_history_lists_revisions() {
    let server = NatsServer::start().expect("nats-server starts");
    let client = async_nats::connect(server.url()).await.expect("client connects");
    let jetstream = async_nats::jetstream::new(client);

    let missing = StateStore::open_existing(&jetstream, "history_test", DEFAULT_TIMEOUT).await.expect("open works");
    assert!(missing.is_none(), "open_existing found a bucket that was never created");

    let created = StateStore::open(&jetstream, "history_test", 1).await.expect("the store opens");
    assert!(created.history().await.expect("history reads").is_empty());
    let store = StateStore::open_existing(&jetstream, "history_test", DEFAULT_TIMEOUT)
        .await
        .expect("open works")
        .expect("the bucket exists");

    let state = HaltState::initial(Mode::Running, "INITIAL_STATE", 1_000);
    let first = store.write(&state, None, "gate-a").await.expect("the state is stored");
    let kv = jetstream.get_key_value("history_test").await.expect("the bucket exists");
    let corrupt = kv.put(STATE_KEY, "{}".into()).await.expect("the corrupt value is written");
    let deleted = kv.delete(STATE_KEY).await;
    deleted.expect("the key is deleted");

    let history = store.history().await.expect("history reads");
    assert_eq!(history.len(), 3, "{history:?}");
    let stored = history[0].as_ref().expect("the first revision decodes");
    assert_eq!(stored.revision, first);
    assert_eq!(stored.state, state);
    assert!(
        matches!(&history[1], Err(StoreError::Corrupt { revision, .. }) if *revision == corrupt),
        "{:?}",
        history[1]
    );
    assert!(matches!(&history[2], Err(StoreError::Removed { .. })), "{:?}", history[2]);
}
