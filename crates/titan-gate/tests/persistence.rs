//! The persisted halt state against real processes: a killed gate, a restarted broker,
//! two replicas sharing one bucket, and a corrupt stored value.

mod common;

use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use common::stale::StaleChecker;
use common::*;
use serde_json::Value;
use titan_gate::store::{STATE_KEY, StateStore};
use titan_gate_test_support::wait_until;

/// The bucket a gate uses unless configured otherwise.
const BUCKET: &str = "TITAN_GATE_STATE";

/// Returns a gate's `/status` document.
/// Waits until the bucket stores a state of `epoch`, so a write is known to have landed.
async fn wait_stored_epoch(harness: &Harness, epoch: u64) {
    let store = StateStore::open(&harness.jetstream, BUCKET, 1).await.expect("state bucket opens");
    wait_until(WAIT, &format!("the stored state to reach epoch {epoch}"), || async {
        store.load().await.ok().flatten().is_some_and(|stored| stored.state.epoch == epoch)
    })
    .await
    .unwrap_or_else(|error| panic!("{error}\n{}", harness.gate.log()));
}

/// Sends a signed order and returns its verdict, or `None` when the request fails.
async fn try_signed_order(harness: &Harness, signal_id: &str) -> Option<Value> {
    let body = v1_envelope(&payload(signal_id, "BUY_SETUP"), now_ms(), &nonce());
    let request = async_nats::Request::new().payload(body.into()).timeout(Some(Duration::from_secs(2)));
    let reply = harness.client.send_request(format!("{INTAKE}.{TAIL}"), request).await.ok()?;
    Some(serde_json::from_slice(&reply.payload).expect("verdict reply is JSON"))
}

#[tokio::test]
async fn killed_gate_comes_back_halted() {
    let mut harness = Harness::start().await;
    let mut checker = StaleChecker::new();
    assert_eq!(harness.checked_order(&mut checker, "sig-before-kill").await["verdict"], "admitted");
    let event = harness.command(HALT, br#"{"reason":"kill test","operator":"tester"}"#, HeaderMap::new()).await;
    assert_eq!(event["outcome"], "applied");
    checker.record_command_event(&event);
    let epoch = event["epoch"].as_u64().expect("epoch is a number");
    wait_stored_epoch(&harness, epoch).await;

    harness.gate.kill().expect("gate is killed");
    harness.gate.restart().await.expect("gate restarts");
    harness.gate.wait_ready(WAIT).await.unwrap_or_else(|error| panic!("{error}\n{}", harness.gate.log()));

    let status = harness.status();
    assert_eq!(status["mode"], "HARD_HALT", "{status}");
    assert_eq!(status["reason"], "kill test", "{status}");
    assert_eq!(status["operator"], "tester", "{status}");
    assert_eq!(status["epoch"], epoch, "{status}");
    assert_eq!(status["state_loaded"], true, "{status}");
    checker.record_status(&status);
    assert_eq!(rejection_reason(&harness.checked_order(&mut checker, "sig-after-kill").await), "system_halted");
    assert_eq!(checker.orders_after_first_halt(), 1);
    assert_eq!(checker.stale_admissions(), Vec::<String>::new());
}

#[tokio::test]
async fn broker_restart_rereads_state_before_admitting() {
    let mut harness = Harness::start().await;
    let event =
        harness.command("titan.cmd.sys.halt.v1.venue.okx", br#"{"reason":"okx outage"}"#, HeaderMap::new()).await;
    let epoch = event["epoch"].as_u64().expect("epoch is a number");
    let mut checker = StaleChecker::new();
    checker.record_command_event(&event);
    wait_stored_epoch(&harness, epoch).await;
    let revision = harness.status()["state_revision"].as_u64().expect("state_revision is a number");

    harness.server.kill().expect("nats-server is killed");
    wait_until(WAIT, "readyz 503", || async { harness.gate.status_code("/readyz") == 503 })
        .await
        .expect("gate turns unready");
    harness.server.restart().expect("nats-server restarts on the same storage");

    // Orders sent from the reconnect on: none may be admitted before the gate logged
    // the second read of the state.
    let mut verdicts = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while harness.gate.status_code("/readyz") != 200 {
        assert!(Instant::now() < deadline, "gate not ready 20 s after the restart\n{}", harness.gate.log());
        // Until the gate subscribes again, the server reports no responders.
        let sent_at = Instant::now();
        let Some(verdict) = try_signed_order(&harness, &format!("sig-reconnect-{}", verdicts.len())).await else {
            continue;
        };
        checker.record_verdict(sent_at, &verdict);
        let loads = harness.gate.log().matches("Halt state loaded").count();
        verdicts.push((verdict, loads));
    }
    for (verdict, loads) in &verdicts {
        if verdict["verdict"] == "admitted" {
            assert!(*loads >= 2, "order admitted before the state was read again: {verdict}");
        } else {
            assert_eq!(rejection_reason(verdict), "system_halted", "{verdict}");
        }
    }

    let status = harness.status();
    assert_eq!(status["state_loaded"], true, "{status}");
    assert_eq!(status["epoch"], epoch, "{status}");
    assert_eq!(status["state_revision"], revision, "{status}");
    assert_eq!(status["scopes"][0]["scope"], "venue:okx", "{status}");
    assert_eq!(status["scopes"][0]["reason"], "okx outage", "{status}");
    assert!(harness.gate.log().matches("Halt state loaded").count() >= 2, "{}", harness.gate.log());
    assert_eq!(harness.checked_order(&mut checker, "sig-after-reconnect").await["verdict"], "admitted");
    assert!(checker.orders_after_first_halt() >= 1);
    assert_eq!(checker.stale_admissions(), Vec::<String>::new());
}

#[tokio::test]
async fn halt_reaches_both_replicas() {
    let harness =
        Harness::start_with(true, |builder| builder.gate_id("replica-a").env("TITAN_GATE_INITIAL_MODE", "running"))
            .await;
    let replica_b = harness.replica("replica-b", |builder| builder).await;
    replica_b.wait_ready(WAIT).await.unwrap_or_else(|error| panic!("{error}\n{}", replica_b.log()));

    let started = Instant::now();
    harness.client.publish(HALT, br#"{"reason":"halt both"}"#.to_vec().into()).await.expect("halt published");
    wait_until(Duration::from_secs(1), "both replicas to show the halt", || async {
        status_of(&harness.gate)["mode"] == "HARD_HALT" && status_of(&replica_b)["mode"] == "HARD_HALT"
    })
    .await
    .unwrap_or_else(|error| panic!("{error} after {:?}", started.elapsed()));

    wait_until(WAIT, "both replicas to agree on the stored revision", || async {
        let (a, b) = (status_of(&harness.gate), status_of(&replica_b));
        a["state_revision"] == b["state_revision"] && a["epoch"] == b["epoch"]
    })
    .await
    .unwrap_or_else(|error| panic!("{error}\n{}\n{}", status_of(&harness.gate), status_of(&replica_b)));
    let status = status_of(&replica_b);
    assert_eq!(status["reason"], "halt both", "{status}");
    assert_eq!(status["epoch"], 1, "one halt makes one change of epoch: {status}");

    let mut checker = StaleChecker::new();
    checker.record_status(&status_of(&harness.gate));
    checker.record_status(&status);
    for index in 0..4 {
        let verdict = harness.checked_order(&mut checker, &format!("sig-both-{index}")).await;
        assert_eq!(rejection_reason(&verdict), "system_halted");
    }
    assert_eq!(checker.stale_admissions(), Vec::<String>::new());
}

#[tokio::test]
async fn later_replica_adopts_stored_state() {
    let harness = Harness::start().await;
    let event =
        harness.command("titan.cmd.sys.halt.v1.symbol.ETH_USDT", br#"{"reason":"eth halted"}"#, HeaderMap::new()).await;
    let epoch = event["epoch"].as_u64().expect("epoch is a number");
    wait_stored_epoch(&harness, epoch).await;

    // Its own initial mode would be HARD_HALT.
    let replica_b = harness.replica("replica-b", |builder| builder.env("TITAN_GATE_INITIAL_MODE", "hard_halt")).await;
    replica_b.wait_ready(WAIT).await.unwrap_or_else(|error| panic!("{error}\n{}", replica_b.log()));

    let status = status_of(&replica_b);
    assert_eq!(status["mode"], "RUNNING", "{status}");
    assert_eq!(status["epoch"], epoch, "{status}");
    assert_eq!(status["scopes"][0]["scope"], "symbol:ETH_USDT", "{status}");

    // Orders on another symbol are admitted by either replica, never under an older epoch.
    let mut checker = StaleChecker::new();
    checker.record_command_event(&event);
    checker.record_status(&status);
    for index in 0..4 {
        let verdict = harness.checked_order(&mut checker, &format!("sig-adopted-{index}")).await;
        assert_eq!(verdict["verdict"], "admitted", "{verdict}");
    }
    assert_eq!(checker.stale_admissions(), Vec::<String>::new());
}

#[tokio::test]
async fn corrupt_stored_state_keeps_gate_halted() {
    let harness = Harness::start().await;
    let bucket = "CORRUPT_STATE";
    StateStore::open(&harness.jetstream, bucket, 1).await.expect("bucket created");
    let raw = harness.jetstream.get_key_value(bucket).await.expect("bucket opens");
    raw.put(STATE_KEY, b"not json".to_vec().into()).await.expect("raw put succeeds");

    let gate = harness
        .replica("corrupt-reader", |builder| {
            builder.env("TITAN_GATE_STATE_BUCKET", bucket).env("TITAN_GATE_INITIAL_MODE", "running")
        })
        .await;
    wait_until(WAIT, "readyz to report the unusable state", || async {
        gate.get("/readyz").is_some_and(|response| {
            response.status == 503 && response.body.contains("stored halt state cannot be used")
        })
    })
    .await
    .unwrap_or_else(|error| panic!("{error}\n{}", gate.log()));

    let status = status_of(&gate);
    assert_eq!(status["mode"], "HARD_HALT", "{status}");
    assert_eq!(status["reason"], "STATE_UNKNOWN", "{status}");
    assert_eq!(status["state_loaded"], false, "{status}");
    assert!(gate.log().contains("Stored halt state cannot be used"), "{}", gate.log());

    // The documented recovery: an operator writes a valid, halted document to the key.
    let repaired = br#"{"format":1,"epoch":1000,"global":{"mode":"HARD_HALT","reason":"state recovered after corruption","operator":"alice","since_ms":1764806400000,"key_id":null},"scopes":[],"updated_by":"alice","updated_ms":1764806400000}"#;
    raw.put(STATE_KEY, repaired.to_vec().into()).await.expect("raw put succeeds");
    wait_until(WAIT, "the gate to load the repaired state", || async { gate.status_code("/readyz") == 200 })
        .await
        .unwrap_or_else(|error| panic!("{error}\n{}", gate.log()));
    let status = status_of(&gate);
    assert_eq!(status["mode"], "HARD_HALT", "{status}");
    assert_eq!(status["reason"], "state recovered after corruption", "{status}");
    assert_eq!(status["epoch"], 1000, "{status}");
    assert_eq!(status["state_loaded"], true, "{status}");
}

#[tokio::test]
async fn corrupt_state_refuses_resume_and_orders() {
    let harness = Harness::start().await;
    assert_eq!(harness.signed_order("sig-before-corruption").await["verdict"], "admitted");
    let raw = harness.jetstream.get_key_value("TITAN_GATE_STATE").await.expect("the gate's bucket opens");
    raw.put(STATE_KEY, b"garbage{".to_vec().into()).await.expect("raw put succeeds");
    wait_until(WAIT, "readyz to report the unusable state", || async {
        harness.gate.get("/readyz").is_some_and(|response| response.status == 503)
    })
    .await
    .unwrap_or_else(|error| panic!("{error}\n{}", harness.gate.log()));

    // A signed resume must not lift the halt while the stored state is unknown. It is
    // signed after the STATE_UNKNOWN halt began, so that rule is not what refuses it.
    let since_ms = harness.status()["since_ms"].as_i64().expect("status has since_ms");
    wait_until(WAIT, "the clock to pass the halt's start", || async { now_ms() > since_ms })
        .await
        .expect("the clock advances");
    let event = harness.resume().await;
    assert_eq!(event["outcome"], "refused", "{event}");
    let reason = event["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("stored halt state cannot be used"), "{event}");
    assert_eq!(harness.status()["reason"], "STATE_UNKNOWN", "{}", harness.status());

    let verdict = harness.signed_order("sig-after-corruption").await;
    assert_eq!(rejection_reason(&verdict), "system_halted", "{verdict}");
    assert_eq!(harness.stored_orders().await.len(), 1, "only the order before the corruption is stored");
}
