//! The halt state store against a real nats-server: compare-and-set, watches, corrupt
//! values, a dead broker and a restart on the same storage.

use std::time::{Duration, Instant};

use futures::StreamExt;
use titan_gate::store::{DEFAULT_TIMEOUT, STATE_KEY, StateStore, StoreError, Stored};
use titan_gate_core::{Change, HaltState, Mode, Scope, ScopeKind, Transition};
use titan_gate_test_support::{NatsServer, wait_until};

const BUCKET: &str = "titan_gate_state";
const WAIT: Duration = Duration::from_secs(10);

/// A server and one client with the store open on it.
struct Fixture {
    server: NatsServer,
    client: async_nats::Client,
    store: StateStore,
}

impl Fixture {
    async fn start() -> Fixture {
        let server = NatsServer::start().expect("nats-server starts");
        let client = connect(&server).await;
        let store = open(&client).await;
        Fixture { server, client, store }
    }

    /// Opens the store again on a connection of its own, as another replica would.
    async fn other_replica(&self) -> StateStore {
        open(&connect(&self.server).await).await
    }

    /// Returns the raw bucket, for writes that bypass the store.
    async fn raw_bucket(&self) -> async_nats::jetstream::kv::Store {
        let jetstream = async_nats::jetstream::new(self.client.clone());
        jetstream.get_key_value(BUCKET).await.expect("the bucket exists")
    }
}

async fn connect(server: &NatsServer) -> async_nats::Client {
    tokio::time::timeout(WAIT, async_nats::connect(server.url()))
        .await
        .expect("connect timed out")
        .expect("client connects")
}

async fn open(client: &async_nats::Client) -> StateStore {
    let jetstream = async_nats::jetstream::new(client.clone());
    StateStore::open(&jetstream, BUCKET, 1).await.expect("the store opens")
}

fn change(scope: Option<Scope>, mode: Mode, reason: &str) -> Change {
    Change {
        scope,
        mode,
        reason: reason.to_owned(),
        operator: Some("alice".to_owned()),
        key_id: Some("ops-1".to_owned()),
        signed_ms: None,
    }
}

fn applied(state: &HaltState, change: &Change) -> HaltState {
    match state.apply(change, 1_700_000_000_000, 100) {
        Transition::Applied(next) => next,
        Transition::Unchanged => panic!("change {change:?} must apply"),
    }
}

/// Builds a state with a global soft halt and two scoped halts, at epoch 3.
fn halted_state() -> HaltState {
    let initial = HaltState::initial(Mode::Running, "INITIAL_STATE", 1_600_000_000_000);
    let global = applied(&initial, &change(None, Mode::SoftHalt, "drawdown"));
    let venue =
        applied(&global, &change(Some(Scope::new(ScopeKind::Venue, "binance")), Mode::HardHalt, "venue outage"));
    applied(&venue, &change(Some(Scope::new(ScopeKind::Symbol, "BTC_USDT")), Mode::SoftHalt, "thin book"))
}

async fn next_update<S>(updates: &mut S) -> Option<S::Item>
where
    S: futures::Stream + Unpin,
{
    tokio::time::timeout(WAIT, updates.next()).await.expect("an update arrives in time")
}

async fn load_some(store: &StateStore) -> Stored {
    store.load().await.expect("load succeeds").expect("a state is stored")
}

#[tokio::test]
async fn round_trip_global_and_scoped() {
    let fixture = Fixture::start().await;
    let state = halted_state();

    let revision = fixture.store.write(&state, None, "gate-a").await.expect("create succeeds");
    let stored = load_some(&fixture.other_replica().await).await;

    assert_eq!(stored.state, state);
    assert_eq!(stored.state.epoch, 3);
    assert_eq!(stored.state.scope_count(), 2);
    assert_eq!(stored.revision, revision);
    assert_eq!(stored.updated_by, "gate-a");
    assert!(stored.updated_ms > 0);
}

#[tokio::test]
async fn load_on_empty_bucket_is_none() {
    let fixture = Fixture::start().await;
    assert_eq!(fixture.store.load().await, Ok(None));
}

#[tokio::test]
async fn open_twice_uses_existing_bucket() {
    let fixture = Fixture::start().await;
    let revision = fixture.store.write(&halted_state(), None, "gate-a").await.expect("create succeeds");

    let reopened = fixture.other_replica().await;
    assert_eq!(load_some(&reopened).await.revision, revision);
}

#[tokio::test]
async fn open_rejects_invalid_bucket_name() {
    let server = NatsServer::start().expect("nats-server starts");
    let jetstream = async_nats::jetstream::new(connect(&server).await);
    let error = StateStore::open(&jetstream, "bad.name", 1).await.expect_err("a dotted name is invalid");
    assert_eq!(error, StoreError::InvalidBucket { bucket: "bad.name".to_owned() });
}

#[tokio::test]
async fn create_twice_conflicts() {
    let fixture = Fixture::start().await;
    fixture.store.write(&halted_state(), None, "gate-a").await.expect("first create succeeds");

    let error = fixture.store.write(&halted_state(), None, "gate-b").await.expect_err("second create must fail");
    assert!(matches!(error, StoreError::Conflict { expected: None, .. }), "{error:?}");
    assert_eq!(load_some(&fixture.store).await.updated_by, "gate-a");
}

#[tokio::test]
async fn stale_update_conflicts_and_keeps_value() {
    let fixture = Fixture::start().await;
    let first = halted_state();
    let stale_revision = fixture.store.write(&first, None, "gate-a").await.expect("create succeeds");
    let second = applied(&first, &change(None, Mode::HardHalt, "escalate"));
    let current_revision = fixture.store.write(&second, Some(stale_revision), "gate-a").await.expect("update succeeds");
    assert!(current_revision > stale_revision);

    let resumed = applied(&first, &change(None, Mode::Running, "stale resume"));
    let error =
        fixture.store.write(&resumed, Some(stale_revision), "gate-b").await.expect_err("stale update must fail");

    assert!(
        matches!(error, StoreError::Conflict { expected: Some(revision), .. } if revision == stale_revision),
        "{error:?}"
    );
    let stored = load_some(&fixture.store).await;
    assert_eq!(stored.state, second);
    assert_eq!(stored.revision, current_revision);
    assert_eq!(stored.updated_by, "gate-a");
}

#[tokio::test]
async fn racing_writers_one_wins_per_revision() {
    let fixture = Fixture::start().await;
    let other = fixture.other_replica().await;
    let mut revision = fixture.store.write(&halted_state(), None, "gate-a").await.expect("create succeeds");

    for round in 0..20 {
        let base = load_some(&fixture.store).await.state;
        let from_a =
            applied(&base, &change(Some(Scope::new(ScopeKind::Account, format!("a-{round}"))), Mode::HardHalt, "a"));
        let from_b =
            applied(&base, &change(Some(Scope::new(ScopeKind::Account, format!("b-{round}"))), Mode::SoftHalt, "b"));
        let (a, b) = tokio::join!(
            fixture.store.write(&from_a, Some(revision), "gate-a"),
            other.write(&from_b, Some(revision), "gate-b")
        );

        let winners: Vec<u64> = [&a, &b].into_iter().filter_map(|result| result.as_ref().ok().copied()).collect();
        assert_eq!(winners.len(), 1, "round {round}: exactly one write wins, got {a:?} and {b:?}");
        let loser = if a.is_ok() { &b } else { &a };
        assert!(
            matches!(loser, Err(StoreError::Conflict { .. })),
            "round {round}: the other write conflicts, got {loser:?}"
        );

        let stored = load_some(&fixture.store).await;
        assert_eq!(stored.revision, winners[0], "round {round}");
        let expected = if a.is_ok() { &from_a } else { &from_b };
        assert_eq!(&stored.state, expected, "round {round}: the stored state is the winner's");
        revision = winners[0];
    }
}

/// Each writer applies its changes with re-read and retry on conflict; no change is lost,
/// so the final epoch counts every change of both writers.
#[tokio::test]
async fn racing_writers_with_retry_lose_nothing() {
    const CHANGES_PER_WRITER: u64 = 15;
    let fixture = Fixture::start().await;
    let other = fixture.other_replica().await;
    fixture
        .store
        .write(&HaltState::initial(Mode::Running, "INITIAL_STATE", 0), None, "gate-a")
        .await
        .expect("create succeeds");

    let writer = |store: StateStore, gate_id: &'static str, scope: &'static str| async move {
        for index in 0..CHANGES_PER_WRITER {
            let mode = if index % 2 == 0 { Mode::HardHalt } else { Mode::Running };
            let change = change(Some(Scope::new(ScopeKind::Venue, scope)), mode, gate_id);
            loop {
                let stored = load_some(&store).await;
                let next = applied(&stored.state, &change);
                match store.write(&next, Some(stored.revision), gate_id).await {
                    Ok(_) => break,
                    Err(StoreError::Conflict { .. }) => {}
                    Err(error) => panic!("{gate_id}: write failed: {error}"),
                }
            }
        }
    };
    let both =
        async { tokio::join!(writer(fixture.store.clone(), "gate-a", "venue-a"), writer(other, "gate-b", "venue-b")) };
    tokio::time::timeout(WAIT, Box::pin(both)).await.expect("the writers finish in time");

    assert_eq!(load_some(&fixture.store).await.state.epoch, 2 * CHANGES_PER_WRITER);
}

#[tokio::test]
async fn watch_sees_other_client_write() {
    let fixture = Fixture::start().await;
    let mut updates = fixture.store.watch().await.expect("watch starts");
    let other = fixture.other_replica().await;

    let state = halted_state();
    let revision = other.write(&state, None, "gate-b").await.expect("create succeeds");

    let update = tokio::time::timeout(WAIT, updates.next())
        .await
        .expect("an update arrives in time")
        .expect("the watch is open");
    let update = update.expect("the update decodes");
    assert_eq!(update.state, state);
    assert_eq!(update.revision, revision);
    assert_eq!(update.updated_by, "gate-b");
}

#[tokio::test]
async fn watch_starts_with_current_value() {
    let fixture = Fixture::start().await;
    let state = halted_state();
    let revision = fixture.store.write(&state, None, "gate-a").await.expect("create succeeds");

    let mut updates = fixture.store.watch().await.expect("watch starts");
    let first = tokio::time::timeout(WAIT, updates.next())
        .await
        .expect("the current value arrives in time")
        .expect("the watch is open");
    let first = first.expect("the current value decodes");
    assert_eq!(first.revision, revision);
    assert_eq!(first.state, state);
}

#[tokio::test]
async fn corrupt_value_is_reported() {
    let fixture = Fixture::start().await;
    let raw = fixture.raw_bucket().await;
    let cases: [(&[u8], &str); 3] = [
        (b"not json", "not a JSON object"),
        (br#"{"format":9}"#, "unsupported format 9"),
        (
            br#"{"format":1,"epoch":4,"global":{"mode":"PAUSED","reason":"r","operator":null,"since_ms":1,"key_id":null},"scopes":[],"updated_by":"x","updated_ms":1}"#,
            "unknown mode \"PAUSED\"",
        ),
    ];

    for (value, expected) in cases {
        let revision = raw.put(STATE_KEY, value.to_vec().into()).await.expect("raw put succeeds");
        let error = fixture.store.load().await.expect_err("a corrupt value must fail to load");
        let StoreError::Corrupt { revision: reported, detail, .. } = &error else {
            panic!("expected Corrupt, got {error:?}");
        };
        assert_eq!(*reported, revision);
        assert!(detail.contains(expected), "{detail}");
        assert!(error.to_string().contains(BUCKET), "{error}");
    }
}

#[tokio::test]
async fn deleted_key_is_reported_and_recreated() {
    let fixture = Fixture::start().await;
    let mut updates = fixture.store.watch().await.expect("watch starts");
    let revision = fixture.store.write(&halted_state(), None, "gate-a").await.expect("create succeeds");
    fixture.raw_bucket().await.delete(STATE_KEY).await.expect("raw delete succeeds");

    let error = fixture.store.load().await.expect_err("a deleted key must not load as a state");
    assert!(
        matches!(error, StoreError::Removed { operation: "deleted", revision: marker, .. } if marker > revision),
        "{error:?}"
    );

    let write = next_update(&mut updates).await;
    assert!(matches!(write, Some(Ok(_))), "the watch first sees the write, got {write:?}");
    let delete = next_update(&mut updates).await;
    assert!(matches!(delete, Some(Err(StoreError::Removed { .. }))), "then the delete, got {delete:?}");

    let recreated =
        fixture.store.write(&halted_state(), None, "gate-b").await.expect("create over a delete marker succeeds");
    assert_eq!(load_some(&fixture.store).await.revision, recreated);
}

#[tokio::test]
async fn killed_server_load_is_unavailable() {
    let mut fixture = Fixture::start().await;
    fixture.store.write(&halted_state(), None, "gate-a").await.expect("create succeeds");
    fixture.server.kill().expect("nats-server is killed");

    let started = Instant::now();
    let result = tokio::time::timeout(DEFAULT_TIMEOUT * 3, fixture.store.load()).await.expect("load must not hang");
    let elapsed = started.elapsed();

    assert!(matches!(result, Err(StoreError::Unavailable { operation: "load", .. })), "{result:?}");
    assert!(elapsed < DEFAULT_TIMEOUT + Duration::from_secs(1), "load took {elapsed:?}");
}

/// Returns true when every thread of process `pid` is in state `T` (stopped by a signal),
/// as `/proc/PID/task/TID/stat` reports it on Linux.
fn all_threads_stopped(pid: &str) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|task| {
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // The state follows the command name, which is in parentheses and may contain spaces.
        stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('T'))
    })
}

/// A stopped (SIGSTOP) server keeps its socket open but never responds, so only the
/// store's own timeout ends the call.
#[tokio::test]
async fn frozen_server_load_times_out() {
    let fixture = Fixture::start().await;
    fixture.store.write(&halted_state(), None, "gate-a").await.expect("create succeeds");
    let pid = fixture.server.pid().expect("nats-server is running").to_string();
    let signal = |name: &str| {
        let status = std::process::Command::new("kill").args([name, pid.as_str()]).status().expect("kill runs");
        assert!(status.success(), "kill {name} {pid} failed");
    };
    signal("-STOP");
    // `kill` returns before every thread has stopped, and a thread still running could reply to the load.
    wait_until(WAIT, "every nats-server thread to stop", || std::future::ready(all_threads_stopped(&pid)))
        .await
        .expect("nats-server stops");

    let store = fixture.store.clone().with_timeout(Duration::from_millis(500));
    let started = Instant::now();
    let result = tokio::time::timeout(WAIT, store.load()).await;
    let elapsed = started.elapsed();
    signal("-CONT");

    let error = result.expect("load must not hang").expect_err("a frozen server cannot reply");
    assert!(
        matches!(&error, StoreError::Unavailable { operation: "load", detail, .. } if detail.contains("timed out")),
        "{error:?}"
    );
    assert!(elapsed < Duration::from_secs(2), "load took {elapsed:?}");
}

#[tokio::test]
async fn killed_server_write_is_unavailable() {
    let mut fixture = Fixture::start().await;
    let revision = fixture.store.write(&halted_state(), None, "gate-a").await.expect("create succeeds");
    fixture.server.kill().expect("nats-server is killed");

    let store = fixture.store.clone().with_timeout(Duration::from_millis(300));
    let result = tokio::time::timeout(WAIT, store.write(&halted_state(), Some(revision), "gate-a"))
        .await
        .expect("write must not hang");
    assert!(matches!(result, Err(StoreError::Unavailable { operation: "update", .. })), "{result:?}");
}

#[tokio::test]
async fn state_survives_server_restart() {
    let mut fixture = Fixture::start().await;
    let state = halted_state();
    let revision = fixture.store.write(&state, None, "gate-a").await.expect("create succeeds");

    fixture.server.restart().expect("nats-server restarts on the same storage");
    let store = fixture.store.clone();
    wait_until(WAIT, "the state to load after the restart", || {
        let store = store.clone();
        async move { matches!(store.load().await, Ok(Some(_))) }
    })
    .await
    .expect("the store is reachable again");

    let stored = load_some(&fixture.store).await;
    assert_eq!(stored.state, state);
    assert_eq!(stored.revision, revision);
}

/// After a broker restart a new watch delivers the current value at once. The old one
/// catches up only when the client notices its lost consumer, which took about 10 s with
/// async-nats 0.52 (two missed 5 s idle heartbeats), so callers watch again after a reconnect.
#[tokio::test]
async fn watch_after_server_restart() {
    let mut fixture = Fixture::start().await;
    let mut old_updates = fixture.store.watch().await.expect("watch starts");
    let first = fixture.store.write(&halted_state(), None, "gate-a").await.expect("create succeeds");
    let seen = next_update(&mut old_updates).await;
    assert!(matches!(&seen, Some(Ok(stored)) if stored.revision == first), "{seen:?}");

    fixture.server.restart().expect("nats-server restarts on the same storage");
    let other = fixture.other_replica().await;
    let stored = load_some(&other).await;
    let next = applied(&stored.state, &change(None, Mode::HardHalt, "after restart"));
    let second = other.write(&next, Some(stored.revision), "gate-b").await.expect("update succeeds");

    let mut new_updates = tokio::time::timeout(WAIT, async {
        loop {
            match fixture.store.watch().await {
                Ok(updates) => return updates,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
    .await
    .expect("a new watch starts after the restart");
    let current =
        tokio::time::timeout(Duration::from_secs(2), new_updates.next()).await.expect("the new watch delivers at once");
    assert!(matches!(&current, Some(Ok(stored)) if stored.revision == second), "{current:?}");

    let caught_up = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match old_updates.next().await {
                Some(Ok(stored)) if stored.revision == second => return,
                // The lost consumer is reported as an error before the client recreates it.
                Some(_) => {}
                None => panic!("the old watch ended"),
            }
        }
    });
    caught_up.await.expect("the old watch catches up");
}
