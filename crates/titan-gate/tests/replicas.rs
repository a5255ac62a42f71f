//! Several gate replicas sharing one broker and one state bucket: a halt reaches all of
//! them, and commands racing on different connections end in one agreed state.

mod common;

use std::time::Duration;

use common::stale::StaleChecker;
use common::*;
use serde_json::Value;
use titan_gate_test_support::{GateProcess, wait_until};

/// Waits until every gate reports the same epoch and mode, and returns that status.
async fn agreed(gates: &[&GateProcess]) -> Value {
    wait_until(WAIT, "every replica to agree on epoch and mode", || async {
        let statuses: Vec<Value> = gates.iter().map(|gate| status_of(gate)).collect();
        statuses.iter().all(|status| {
            status["epoch"] == statuses[0]["epoch"]
                && status["mode"] == statuses[0]["mode"]
                && status["state_loaded"] == true
        })
    })
    .await
    .unwrap_or_else(|error| panic!("{error}: {:?}", gates.iter().map(|gate| status_of(gate)).collect::<Vec<_>>()));
    status_of(gates[0])
}

#[tokio::test]
async fn halt_reaches_three_replicas_within_a_second() {
    let harness = Harness::start().await;
    let b = harness.replica("replica-b", |builder| builder).await;
    let c = harness.replica("replica-c", |builder| builder).await;
    for gate in [&b, &c] {
        gate.wait_ready(WAIT).await.unwrap();
    }
    agreed(&[&harness.gate, &b, &c]).await;

    let started = std::time::Instant::now();
    harness.client.publish(HALT, br#"{"reason":"halt all three"}"#.to_vec().into()).await.unwrap();
    wait_until(Duration::from_secs(1), "all three replicas halted", || async {
        [&harness.gate, &b, &c].iter().all(|gate| status_of(gate)["mode"] == "HARD_HALT")
    })
    .await
    .unwrap();
    assert!(started.elapsed() < Duration::from_secs(1));
    let status = agreed(&[&harness.gate, &b, &c]).await;
    assert_eq!(status["reason"], "halt all three");

    let mut checker = StaleChecker::new();
    for gate in [&harness.gate, &b, &c] {
        checker.record_status(&status_of(gate));
    }
    for index in 0..6 {
        let verdict = harness.checked_order(&mut checker, &format!("sig-three-{index}")).await;
        assert_eq!(rejection_reason(&verdict), "system_halted");
    }
    assert_eq!(checker.stale_admissions(), Vec::<String>::new());
}

#[tokio::test]
async fn racing_halt_and_resume_end_in_one_agreed_state() {
    let harness = Harness::start_with(true, |builder| builder).await;
    let b = harness.replica("replica-b", |builder| builder).await;
    b.wait_ready(WAIT).await.unwrap();
    let other_client = async_nats::connect(harness.server.url()).await.unwrap();

    let mut events = harness.client.subscribe("titan.evt.gate.command.v1").await.unwrap();
    harness.client.flush().await.unwrap();
    let mut checker = StaleChecker::new();
    for round in 0..5 {
        let resume = br#"{"state":"OPEN","reason":"racing resume"}"#;
        let headers = v2_headers(OPS_KEY_ID, OPS_SECRET, HALT, resume, now_ms(), &nonce());
        let halt = format!(r#"{{"reason":"racing halt {round}"}}"#);
        let (first, second) = tokio::join!(
            harness.client.publish_with_headers(HALT, headers, resume.to_vec().into()),
            other_client.publish(HALT, halt.into_bytes().into()),
        );
        first.unwrap();
        second.unwrap();
        harness.client.flush().await.unwrap();
        other_client.flush().await.unwrap();
        // Two commands, each acted on by both replicas.
        for _ in 0..4 {
            let event = tokio::time::timeout(WAIT, futures::StreamExt::next(&mut events))
                .await
                .expect("command event")
                .unwrap();
            checker.record_command_event(&serde_json::from_slice(&event.payload).expect("command event is JSON"));
        }

        let status = agreed(&[&harness.gate, &b]).await;
        checker.record_status(&status_of(&harness.gate));
        checker.record_status(&status_of(&b));
        let mode = status["mode"].as_str().unwrap().to_owned();
        assert!(mode == "HARD_HALT" || mode == "RUNNING", "round {round}: {status}");
        let verdict = harness.checked_order(&mut checker, &format!("sig-race-{round}")).await;
        if mode == "HARD_HALT" {
            assert_eq!(rejection_reason(&verdict), "system_halted", "round {round}");
        } else {
            assert_eq!(verdict["verdict"], "admitted", "round {round}: {verdict}");
        }
        harness.client.publish(HALT, br#"{"reason":"reset between rounds"}"#.to_vec().into()).await.unwrap();
        for _ in 0..2 {
            tokio::time::timeout(WAIT, futures::StreamExt::next(&mut events)).await.expect("command event").unwrap();
        }
        agreed(&[&harness.gate, &b]).await;
    }
    assert!(checker.orders_after_first_halt() >= 1, "no order was sent after a halt");
    assert_eq!(checker.stale_admissions(), Vec::<String>::new());
}
