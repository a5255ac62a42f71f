//! The `CONTROL_PLANE_LOST` halt against real processes: the broker is killed, the gate
//! halts itself in memory, and the halt clears after the reconnect unless it is latched.

mod common;

use async_nats::HeaderMap;
use common::stale::StaleChecker;
use common::{Harness, WAIT, rejection_reason};
use serde_json::Value;
use titan_gate_test_support::wait_until;

/// The configured outage after which the gate halts itself, in milliseconds.
const LOST_AFTER_MS: &str = "300";

/// Starts a RUNNING gate that halts itself after `LOST_AFTER_MS` without its control connection.
async fn start(latch: bool) -> Harness {
    Harness::start_with(true, |builder| {
        builder
            .env("TITAN_GATE_INITIAL_MODE", "running")
            .env("TITAN_GATE_CONTROL_PLANE_LOST_AFTER_MS", LOST_AFTER_MS)
            .env("TITAN_GATE_CONTROL_PLANE_LOST_LATCH", latch.to_string())
    })
    .await
}

/// Kills the broker, waits until `/status` shows the local halt and returns its epoch.
async fn lose_control_plane(harness: &mut Harness) -> u64 {
    harness.server.kill().expect("nats-server is killed");
    wait_until(WAIT, "HARD_HALT CONTROL_PLANE_LOST", || async {
        let status = harness.status();
        status["mode"] == "HARD_HALT" && status["reason"] == "CONTROL_PLANE_LOST"
    })
    .await
    .unwrap_or_else(|error| panic!("{error}\n{}", harness.gate.log()));

    let status = harness.status();
    assert_eq!(status["halted"], true, "{status}");
    assert_eq!(status["control_plane_lost"], true, "{status}");
    let metrics = harness.metrics();
    assert!(metrics.contains("titan_gate_halted{scope=\"global\"} 1"), "{metrics}");
    status["epoch"].as_u64().expect("epoch is a number")
}

/// Restarts the broker and waits until the gate is ready again.
async fn restore_control_plane(harness: &mut Harness) {
    harness.server.restart().expect("nats-server restarts on the same storage");
    wait_until(WAIT, "/readyz 200 after the restart", || async { harness.gate.status_code("/readyz") == 200 })
        .await
        .unwrap_or_else(|error| panic!("{error}\n{}", harness.gate.log()));
}

/// Reads the halt state stored in the bucket.
async fn stored_state(harness: &Harness) -> Value {
    let bucket = harness.jetstream.get_key_value("TITAN_GATE_STATE").await.expect("state bucket exists");
    let value = bucket.get("state").await.expect("state read").expect("state stored");
    serde_json::from_slice(&value).expect("stored state is JSON")
}

/// Reads the audit records this gate made on its own, in stream order.
async fn local_audit_records(harness: &Harness) -> Vec<Value> {
    let Ok(mut stream) = harness.jetstream.get_stream("TITAN_GATE_AUDIT").await else {
        return Vec::new();
    };
    let Ok(info) = stream.info().await else {
        return Vec::new();
    };
    let mut records = Vec::new();
    for sequence in 1..=info.state.last_sequence {
        if let Ok(message) = stream.get_raw_message(sequence).await {
            let record: Value = serde_json::from_slice(&message.payload).expect("audit record is JSON");
            if record["local_only"] == true {
                records.push(record);
            }
        }
    }
    records
}

#[tokio::test]
async fn lost_control_plane_halts_then_clears() {
    let mut harness = start(false).await;
    let admitted = harness.signed_order("sig-before-loss").await;
    assert_eq!(admitted["verdict"], "admitted", "{admitted}");
    let mut checker = StaleChecker::new();
    checker.record_verdict(std::time::Instant::now(), &admitted);

    let lost_epoch = lose_control_plane(&mut harness).await;
    checker.record_status(&harness.status());
    let log = harness.gate.log();
    assert_eq!(log.matches("applied HARD_HALT CONTROL_PLANE_LOST").count(), 1, "{log}");

    restore_control_plane(&mut harness).await;
    harness.wait_mode("RUNNING").await;

    let status = harness.status();
    assert_eq!(status["halted"], false, "{status}");
    assert_eq!(status["control_plane_lost"], false, "{status}");
    let cleared_epoch = status["epoch"].as_u64().expect("epoch is a number");
    assert!(cleared_epoch > lost_epoch, "epoch went from {lost_epoch} to {cleared_epoch}: {status}");
    harness.gate.wait_for_log("CONTROL_PLANE_LOST cleared", WAIT).await.expect("the clearing is logged");
    wait_until(WAIT, "the raised epoch to be stored", || async {
        stored_state(&harness).await["epoch"].as_u64() == Some(cleared_epoch)
    })
    .await
    .unwrap_or_else(|error| panic!("{error}\n{}", harness.gate.log()));
    let stored = stored_state(&harness).await;
    assert_eq!(stored["global"]["mode"], "RUNNING", "{stored}");

    let sent_at = std::time::Instant::now();
    let verdict = harness.signed_order("sig-after-clear").await;
    assert_eq!(verdict["verdict"], "admitted", "{verdict}");
    checker.record_verdict(sent_at, &verdict);
    assert_eq!(checker.stale_admissions(), Vec::<String>::new());

    // Both transitions were queued while the broker was down and written after the reconnect.
    wait_until(WAIT, "the local halt and its clearing in the audit stream", || async {
        local_audit_records(&harness).await.len() >= 2
    })
    .await
    .unwrap_or_else(|error| panic!("{error}\n{}", harness.gate.log()));
    let records = local_audit_records(&harness).await;
    assert_eq!(records.len(), 2, "{records:?}");
    let (halt, clear) = (&records[0], &records[1]);
    assert_eq!(halt["command"], "local_halt", "{halt}");
    assert_eq!(halt["reason"], "CONTROL_PLANE_LOST", "{halt}");
    assert_eq!(halt["from"], "RUNNING", "{halt}");
    assert_eq!(halt["to"], "HARD_HALT", "{halt}");
    assert_eq!(halt["epoch"], lost_epoch, "{halt}");
    assert_eq!(halt["gate_id"], status["gate_id"], "{halt}");
    assert_eq!(clear["command"], "local_clear", "{clear}");
    assert_eq!(clear["from"], "HARD_HALT", "{clear}");
    assert_eq!(clear["to"], "RUNNING", "{clear}");
    assert_eq!(clear["epoch"], cleared_epoch, "{clear}");
}

#[tokio::test]
async fn latched_control_plane_lost_needs_resume() {
    let mut harness = start(true).await;
    lose_control_plane(&mut harness).await;
    restore_control_plane(&mut harness).await;

    let status = harness.status();
    assert_eq!(status["mode"], "HARD_HALT", "{status}");
    assert_eq!(status["reason"], "CONTROL_PLANE_LOST", "{status}");
    assert_eq!(rejection_reason(&harness.signed_order("sig-latched").await), "system_halted");

    // A scoped halt is written while the latch holds. The store keeps its own global
    // entry, never the local halt.
    let event =
        harness.command("titan.cmd.sys.halt.v1.venue.okx", br#"{"reason":"okx outage"}"#, HeaderMap::new()).await;
    assert_eq!(event["outcome"], "applied", "{event}");
    wait_until(WAIT, "the scoped halt to be stored", || async {
        stored_state(&harness).await["scopes"].as_array().is_some_and(|scopes| !scopes.is_empty())
    })
    .await
    .unwrap_or_else(|error| panic!("{error}\n{}", harness.gate.log()));
    let stored = stored_state(&harness).await;
    assert_eq!(stored["global"]["mode"], "RUNNING", "{stored}");
    assert_ne!(stored["global"]["reason"], "CONTROL_PLANE_LOST", "{stored}");
    assert_eq!(harness.status()["reason"], "CONTROL_PLANE_LOST");

    let event = harness.resume().await;
    assert_eq!(event["outcome"], "applied", "{event}");
    harness.wait_mode("RUNNING").await;
    assert_eq!(harness.status()["control_plane_lost"], false);
    wait_until(WAIT, "the resume to be stored", || async {
        stored_state(&harness).await["global"]["reason"] == "test resume"
    })
    .await
    .unwrap_or_else(|error| panic!("{error}\n{}", harness.gate.log()));
}
