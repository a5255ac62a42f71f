//! The audit trail: records in `TITAN_GATE_AUDIT` and on `titan.evt.gate.state.v1`, and
//! the `titan-gate timeline` command that reads them.

mod common;

use async_nats::HeaderMap;
use common::{HALT, Harness, WAIT, rejection_reason};
use futures::StreamExt;
use serde_json::Value;
use titan_gate_test_support::wait_until;

const AUDIT_STREAM: &str = "TITAN_GATE_AUDIT";

fn run_timeline(harness: &Harness, extra: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_titan-gate"))
        .args(["timeline", "--since", "1h"])
        .args(extra)
        .env("NATS_URL", harness.server.url())
        .output()
        .expect("timeline runs")
}

#[tokio::test]
async fn halt_and_resume_are_audited() {
    let harness = Harness::start().await;
    let gate_id = harness.status()["gate_id"].as_str().expect("gate_id").to_owned();
    let mut state_events = harness.client.subscribe("titan.evt.gate.state.v1").await.expect("subscribe");
    harness.client.flush().await.expect("flush");

    let halt = harness.command(HALT, br#"{"reason":"audit drill","operator":"alice"}"#, HeaderMap::new()).await;
    assert_eq!(halt["outcome"], "applied", "{halt}");
    for index in 0..3 {
        assert_eq!(rejection_reason(&harness.signed_order(&format!("sig-audit-{index}")).await), "system_halted");
    }
    let resume = harness.resume().await;
    assert_eq!(resume["outcome"], "applied", "{resume}");

    wait_until(WAIT, "two audit records", || async { harness.audit_records().await.len() >= 2 })
        .await
        .unwrap_or_else(|error| panic!("{error}\n{}", harness.gate.log()));
    let records = harness.audit_records().await;
    assert_eq!(records.len(), 2, "{records:?}");
    let (halted, resumed) = (&records[0], &records[1]);
    assert_eq!(halted["from"], "RUNNING");
    assert_eq!(halted["to"], "HARD_HALT");
    assert_eq!(halted["command"], "halt");
    assert_eq!(halted["scope"], "global");
    assert_eq!(halted["operator"], "alice");
    assert_eq!(halted["reason"], "audit drill");
    assert_eq!(halted["epoch"], halt["epoch"]);
    assert_eq!(halted["gate_id"], gate_id.as_str());
    assert_eq!(resumed["from"], "HARD_HALT");
    assert_eq!(resumed["to"], "RUNNING");
    assert_eq!(resumed["command"], "resume");
    assert_eq!(resumed["key_id"], "ops-test");
    assert_eq!(resumed["epoch"], resume["epoch"]);
    assert_eq!(resumed["gate_id"], gate_id.as_str());
    assert_eq!(resumed["rejected_under_previous"], 3);

    for expected in [halted, resumed] {
        let event = tokio::time::timeout(WAIT, state_events.next()).await.expect("state event arrives").expect("open");
        let event: Value = serde_json::from_slice(&event.payload).expect("state event is JSON");
        assert_eq!(&event, expected);
    }

    let output = run_timeline(&harness, &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("halt (detection, mitigation): RUNNING -> HARD_HALT"), "{stdout}");
    assert!(stdout.contains("resume (resolution): HARD_HALT -> RUNNING"), "{stdout}");
    assert!(stdout.contains("halted for "), "{stdout}");
    assert!(stdout.contains("3 orders rejected during the halt"), "{stdout}");

    let output = run_timeline(&harness, &["--json"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let document: Value = serde_json::from_slice(&output.stdout).expect("timeline --json is JSON");
    let incident = &document["incidents"][0];
    assert_eq!(incident["scope"], "global");
    assert_eq!(incident["rejected_orders"], 3);
    assert!(incident["duration_ms"].as_i64().is_some_and(|ms| ms >= 0), "{incident}");
}

#[tokio::test]
async fn timeline_without_stream_fails() {
    let harness = Harness::start().await;
    wait_until(WAIT, "the audit stream", || async { harness.jetstream.get_stream(AUDIT_STREAM).await.is_ok() })
        .await
        .expect("the gate creates the audit stream");
    harness.jetstream.delete_stream(AUDIT_STREAM).await.expect("audit stream deleted");

    let output = run_timeline(&harness, &[]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("audit stream TITAN_GATE_AUDIT does not exist"), "{stderr}");
}
