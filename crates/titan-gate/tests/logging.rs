//! Log output: JSON lines on request, and rejection logs rate-limited under a flood
//! with the suppressed count reported.

mod common;

use std::time::Duration;

use async_nats::HeaderMap;
use common::*;
use serde_json::Value;

#[tokio::test]
async fn json_log_lines_carry_fields() {
    let harness = Harness::start_with(true, |builder| builder.env("TITAN_GATE_LOG_FORMAT", "json")).await;
    assert_eq!(rejection_reason(&harness.signed_order("sig-json").await), "system_halted");
    harness.gate.wait_for_log("Order Rejected: System Halted", WAIT).await.unwrap();

    let log = harness.gate.log();
    let line = log.lines().find(|line| line.contains("Order Rejected: System Halted")).unwrap();
    let record: Value = serde_json::from_str(line).unwrap_or_else(|error| panic!("not JSON ({error}): {line}"));
    assert_eq!(record["level"], "WARN");
    assert_eq!(record["message"], "Order Rejected: System Halted");
    assert_eq!(record["halt.reason"], "INITIAL_STATE");
    assert_eq!(record["halt.epoch"], 0);
    assert_eq!(record["subject"], format!("{INTAKE}.{TAIL}"));
    assert!(record["order.id"].as_str().is_some_and(|id| id.starts_with("intent-")), "{record}");
}

#[tokio::test]
async fn rejection_flood_logs_are_rate_limited() {
    let harness = Harness::start_with(true, |builder| {
        builder.env("TITAN_GATE_INITIAL_MODE", "running").env("TITAN_GATE_REJECT_LOGS_PER_SECOND", "5")
    })
    .await;
    let flood = 400;
    for _ in 0..flood {
        harness.client.publish(format!("{INTAKE}.{TAIL}"), "garbage".into()).await.unwrap();
    }
    harness.client.flush().await.unwrap();
    titan_gate_test_support::wait_until(WAIT, "every flood order rejected", || async {
        harness.status()["orders"]["rejected"].as_u64() == Some(flood)
    })
    .await
    .unwrap();
    harness.gate.wait_for_log("suppressed", Duration::from_secs(5)).await.unwrap();

    let log = harness.gate.log();
    let logged = log.lines().filter(|line| line.contains("Order rejected")).count();
    assert!(logged >= 5, "the first rejections are logged: {logged}");
    assert!(logged < 50, "{logged} rejection lines for {flood} rejections");
    let summary = log.lines().find(|line| line.contains("suppressed")).unwrap();
    assert!(summary.contains("reason=malformed"), "{summary}");

    let verdict = harness.order(TAIL, "garbage again", HeaderMap::new()).await;
    assert_eq!(rejection_reason(&verdict), "malformed", "rate-limited logs never change the verdict");
}
