//! The dead-man switch: a configured heartbeat source that stays silent halts the gate
//! with `HEARTBEAT_LOST:{source}`, and hearing it again clears that halt unless latched.

mod common;

use std::time::Duration;

use async_nats::HeaderMap;
use common::*;
use titan_gate_test_support::{GateProcessBuilder, wait_until};

const SOURCE: &str = "titan-brain";
const AGE_SERIES: &str = r#"titan_gate_heartbeat_age_seconds{source="titan-brain"}"#;

fn dead_man(builder: GateProcessBuilder) -> GateProcessBuilder {
    builder
        .env("TITAN_GATE_INITIAL_MODE", "running")
        .env("TITAN_GATE_HEARTBEAT_SOURCES", SOURCE)
        .env("TITAN_GATE_HEARTBEAT_MAX_SILENCE_MS", "300")
}

/// Publishes a heartbeat every 50 ms until the returned task is aborted.
fn heartbeats(client: async_nats::Client, subject: &'static str, body: &'static [u8]) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_millis(50));
        loop {
            interval.tick().await;
            let _ = client.publish(subject, body.into()).await;
        }
    })
}

async fn wait_reason(harness: &Harness, mode: &str, reason: &str) {
    wait_until(WAIT, &format!("{mode} with reason {reason}"), || async {
        let status = harness.status();
        status["mode"] == mode && status["reason"] == reason
    })
    .await
    .unwrap_or_else(|error| panic!("{error}: {}\n{}", harness.status(), harness.gate.log()));
}

#[tokio::test]
async fn silence_trips_soft_and_heartbeat_clears() {
    let harness = Harness::start_with(true, dead_man).await;

    wait_reason(&harness, "SOFT_HALT", "HEARTBEAT_LOST:titan-brain").await;
    assert_eq!(harness.status()["operator"], "titan-gate/dead-man");
    assert_eq!(rejection_reason(&harness.signed_order("sig-dead-man-1").await), "reduce_only");
    assert!(metric_value(&harness.metrics(), AGE_SERIES).is_some_and(|age| age >= 0.3), "{}", harness.metrics());

    let publisher = heartbeats(harness.client.clone(), "titan.sys.heartbeat.v1.titan-brain", b"{}");
    wait_reason(&harness, "RUNNING", "HEARTBEAT_RESTORED").await;
    assert_eq!(harness.signed_order("sig-dead-man-2").await["verdict"], "admitted");

    publisher.abort();
    wait_reason(&harness, "SOFT_HALT", "HEARTBEAT_LOST:titan-brain").await;
    let trips = metric_value(&harness.metrics(), r#"titan_gate_risk_trips_total{control="dead_man",action="trip"}"#);
    assert_eq!(trips, Some(2.0));
}

#[tokio::test]
async fn bare_heartbeat_names_source_in_body() {
    let harness = Harness::start_with(true, dead_man).await;
    wait_reason(&harness, "SOFT_HALT", "HEARTBEAT_LOST:titan-brain").await;

    let publisher = heartbeats(harness.client.clone(), "titan.sys.heartbeat.v1", br#"{"service":"titan-brain"}"#);
    wait_reason(&harness, "RUNNING", "HEARTBEAT_RESTORED").await;
    assert!(metric_value(&harness.metrics(), AGE_SERIES).is_some_and(|age| age < 0.3), "{}", harness.metrics());
    publisher.abort();
}

#[tokio::test]
async fn latched_trip_needs_signed_resume() {
    let harness = Harness::start_with(true, |builder| {
        dead_man(builder).env("TITAN_GATE_HEARTBEAT_LATCH", "true").env("TITAN_GATE_HEARTBEAT_MODE", "hard_halt")
    })
    .await;
    wait_reason(&harness, "HARD_HALT", "HEARTBEAT_LOST:titan-brain").await;

    let publisher = heartbeats(harness.client.clone(), "titan.sys.heartbeat.v1.titan-brain", b"{}");
    // Two fresh readings of the age gauge mean at least one whole check ran after the
    // source was heard again, and that check is the one that would clear an unlatched halt.
    let mut fresh_readings = Vec::new();
    wait_until(WAIT, "two fresh heartbeat ages", || {
        let age = metric_value(&harness.metrics(), AGE_SERIES);
        if let Some(age) = age.filter(|age| *age < 0.2 && !fresh_readings.contains(&age.to_bits())) {
            fresh_readings.push(age.to_bits());
        }
        let enough = fresh_readings.len() >= 2;
        async move { enough }
    })
    .await
    .unwrap_or_else(|error| panic!("{error}\n{}", harness.metrics()));
    assert_eq!(harness.status()["mode"], "HARD_HALT", "the latch keeps the trip: {}", harness.status());

    let unsigned = harness.command(HALT, br#"{"state":"OPEN","reason":"no signature"}"#, HeaderMap::new()).await;
    assert_eq!(unsigned["outcome"], "refused", "{unsigned}");
    let resume = harness.resume().await;
    assert_eq!(resume["outcome"], "applied", "{resume}");
    assert_eq!(harness.status()["mode"], "RUNNING");
    assert_eq!(harness.signed_order("sig-latched-1").await["verdict"], "admitted");
    publisher.abort();
}
