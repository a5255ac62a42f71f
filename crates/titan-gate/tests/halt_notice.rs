//! Telling execution: a trip goes out once as a v2-signed notice on the bare halt
//! subject, which no replica applies again, and a global `HARD_HALT` fires each on-halt
//! action once across the replicas, with an audit record of its outcome.

mod common;

use std::time::Duration;

use async_nats::HeaderMap;
use common::*;
use futures::StreamExt;
use serde_json::Value;
use titan_gate_core::{Key, signature};
use titan_gate_test_support::{GateProcess, GateProcessBuilder, wait_until};

const FLATTEN: &str = "titan.test.flatten.v1";

fn security_breaker(builder: GateProcessBuilder) -> GateProcessBuilder {
    builder
        .env("TITAN_GATE_INITIAL_MODE", "running")
        .env("TITAN_GATE_SECURITY_TRIP_FAILURES", "2")
        .env("TITAN_GATE_SECURITY_TRIP_WINDOW_MS", "60000")
}

/// Returns the sum of one counter over the gates.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "counters are small whole numbers")]
fn metric_sum(gates: &[&GateProcess], series: &str) -> u64 {
    let sum: f64 =
        gates.iter().filter_map(|gate| metric_value(&gate.get("/metrics").expect("metrics answer").body, series)).sum();
    sum.round() as u64
}

/// Waits until both gates have read or written the same stored revision and agree on
/// the state, so every change either applied is stored or dropped.
async fn settled(gates: &[&GateProcess]) {
    wait_until(WAIT, "the replicas to agree on the stored state", || async {
        let statuses: Vec<Value> = gates.iter().map(|gate| status_of(gate)).collect();
        statuses.iter().all(|status| {
            status["state_revision"] == statuses[0]["state_revision"]
                && status["epoch"] == statuses[0]["epoch"]
                && status["mode"] == statuses[0]["mode"]
        })
    })
    .await
    .unwrap_or_else(|error| panic!("{error}: {:?}", gates.iter().map(|gate| status_of(gate)).collect::<Vec<_>>()));
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> &'h str {
    headers.get(name).map_or("", async_nats::HeaderValue::as_str)
}

#[tokio::test]
async fn trip_notice_is_signed_once_without_loop() {
    let harness = Harness::start_with(true, security_breaker).await;
    let b = harness.replica("replica-b", security_breaker).await;
    b.wait_ready(WAIT).await.unwrap_or_else(|error| panic!("{error}\n{}", b.log()));
    let gates = [&harness.gate, &b];
    let mut halts = harness.client.subscribe(HALT).await.expect("subscribe to the halt subject");
    harness.client.flush().await.expect("flush");

    // Every replica hears every command, so both count these three failures and trip.
    let body = br#"{"state":"OPEN","reason":"forged resume"}"#;
    for _ in 0..3 {
        let headers = v2_headers(OPS_KEY_ID, "not-the-secret", HALT, body, now_ms(), &nonce());
        harness.client.publish_with_headers(HALT, headers, body.to_vec().into()).await.expect("publish");
    }
    let notice = tokio::time::timeout(WAIT, async {
        while let Some(message) = halts.next().await {
            if message.payload.as_ref() != body {
                return message;
            }
        }
        panic!("halt subscription closed");
    })
    .await
    .unwrap_or_else(|_| panic!("no notice arrived\n{}", harness.gate.log()));

    let content: Value = serde_json::from_slice(&notice.payload).expect("notice is JSON");
    assert_eq!(content["state"], "HARD_HALT", "{content}");
    assert_eq!(content["reason"], "SECURITY");
    assert_eq!(content["source"], "titan-gate");
    let headers = notice.headers.as_ref().expect("notice has headers");
    assert_eq!(header(headers, "Titan-Key-Id"), OPS_KEY_ID);
    let expected = signature::sign_v2(
        &Key::new(OPS_KEY_ID, OPS_SECRET.as_bytes(), vec![]),
        HALT,
        header(headers, "Titan-Timestamp"),
        header(headers, "Titan-Nonce"),
        &notice.payload,
    );
    assert_eq!(header(headers, "Titan-Signature"), expected);

    settled(&gates).await;
    wait_until(WAIT, "both replicas to recognise the notice", || async {
        metric_sum(&gates, r#"titan_gate_halt_notices_total{outcome="received"}"#) >= 2
    })
    .await
    .unwrap_or_else(|error| panic!("{error}\n{}", b.log()));
    assert_eq!(metric_sum(&gates, r#"titan_gate_halt_notices_total{outcome="published_signed"}"#), 1);
    assert_eq!(metric_sum(&gates, r#"titan_gate_halt_notices_total{outcome="received"}"#), 2);
    let applied_halts = r#"titan_gate_commands_total{command="halt",outcome="applied",auth="signed"}"#;
    assert_eq!(metric_sum(&gates, applied_halts), 0, "the notice must not be applied as a command");
    for gate in gates {
        assert_eq!(status_of(gate)["reason"], "SECURITY", "{}", status_of(gate));
    }
}

#[tokio::test]
async fn unsigned_notice_is_an_ordinary_halt() {
    let harness = Harness::start().await;
    let body = br#"{"state":"SOFT_HALT","reason":"HEARTBEAT_LOST:x","source":"titan-gate"}"#;
    let event = harness.command(HALT, body, HeaderMap::new()).await;
    assert_eq!(event["outcome"], "applied", "{event}");
    assert_eq!(harness.status()["mode"], "SOFT_HALT");
}

/// Writes a settings file with one on-halt action into `dir` and returns its path.
fn settings_file(dir: &tempfile::TempDir) -> String {
    let path = dir.path().join("gate.toml");
    let text = format!(
        "initial_mode = \"running\"\n\n[[on_halt_action]]\nsubject = \"{FLATTEN}\"\npayload = '{{\"action\":\"FLATTEN\"}}'\n"
    );
    std::fs::write(&path, text).expect("settings file written");
    path.display().to_string()
}

#[tokio::test]
async fn on_halt_action_fires_once_and_is_audited() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let config = settings_file(&dir);
    let harness = Harness::start_with(true, |builder| builder.arg("--config").arg(config.clone())).await;
    let b = harness.replica("replica-b", |builder| builder.arg("--config").arg(config.clone())).await;
    b.wait_ready(WAIT).await.unwrap_or_else(|error| panic!("{error}\n{}", b.log()));
    let gates = [&harness.gate, &b];
    settled(&gates).await;
    let mut actions = harness.client.subscribe(FLATTEN).await.expect("subscribe to the action subject");
    harness.client.flush().await.expect("flush");

    let event = harness.command(HALT, br#"{"reason":"flatten drill","operator":"alice"}"#, HeaderMap::new()).await;
    assert_eq!(event["outcome"], "applied", "{event}");
    let action = tokio::time::timeout(WAIT, actions.next()).await.expect("action published").expect("subscribed");
    assert_eq!(action.payload.as_ref(), br#"{"action":"FLATTEN"}"#);

    settled(&gates).await;
    let action_records = || async {
        harness
            .audit_records()
            .await
            .into_iter()
            .filter(|record| record["command"] == "on_halt_action")
            .collect::<Vec<_>>()
    };
    wait_until(WAIT, "the action's audit record", || async { !action_records().await.is_empty() }).await.unwrap();
    let records = action_records().await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["action"]["subject"], FLATTEN);
    assert_eq!(records[0]["action"]["outcome"], "published");
    assert_eq!(records[0]["reason"], "flatten drill");
    assert_eq!(metric_sum(&gates, r#"titan_gate_on_halt_actions_total{outcome="published"}"#), 1);
    assert!(
        tokio::time::timeout(Duration::from_millis(200), actions.next()).await.is_err(),
        "a second action message arrived"
    );
}
