//! The order-rate breaker and the security breaker: over-limit orders are rejected
//! `rate_limited` at once, a runaway strategy's scope is halted while the others trade,
//! and a burst of signature failures halts everything until a signed resume.

mod common;

use async_nats::HeaderMap;
use common::*;
use titan_gate_test_support::wait_until;

/// Sends orders of `strategy` as fast as replies come back until one is rejected with
/// `reason`, and returns how many were sent.
async fn send_until(harness: &Harness, strategy: &str, reason: &str) -> usize {
    for sent in 1..=20_000 {
        let verdict = strategy_order(harness, strategy, &format!("sig-{strategy}-{sent}")).await;
        if verdict["reason"] == reason {
            return sent;
        }
    }
    panic!("no {reason} rejection for {strategy} after 20000 orders\n{}", harness.gate.log());
}

#[tokio::test]
async fn runaway_strategy_halted_while_others_trade() {
    let harness = Harness::start_with(true, |builder| {
        builder
            .env("TITAN_GATE_INITIAL_MODE", "running")
            .env("TITAN_GATE_STRATEGY_RATE_PER_S", "20")
            .env("TITAN_GATE_STRATEGY_BURST", "5")
            .env("TITAN_GATE_RUNAWAY_TRIP_MS", "300")
    })
    .await;

    send_until(&harness, "hunter", "system_halted").await;
    let status = harness.status();
    assert_eq!(status["mode"], "RUNNING", "only the strategy is halted: {status}");
    let scopes = status["scopes"].as_array().expect("scopes");
    assert_eq!(scopes.len(), 1, "{status}");
    assert_eq!(scopes[0]["scope"], "strategy:hunter");
    assert_eq!(scopes[0]["mode"], "HARD_HALT");
    assert_eq!(scopes[0]["reason"], "RUNAWAY_ALGO");
    assert_eq!(scopes[0]["operator"], "titan-gate/rate-breaker");
    assert_eq!(strategy_order(&harness, "sentinel", "sig-sentinel-1").await["verdict"], "admitted");

    let subject = format!("{HALT}.strategy.hunter");
    let body = br#"{"state":"OPEN","reason":"runaway fixed","operator":"tester"}"#;
    let resume =
        harness.command(&subject, body, v2_headers(OPS_KEY_ID, OPS_SECRET, &subject, body, now_ms(), &nonce())).await;
    assert_eq!(resume["outcome"], "applied", "{resume}");
    let harness = &harness;
    let mut attempt = 0;
    wait_until(WAIT, "hunter admitted again", || {
        attempt += 1;
        let signal_id = format!("sig-hunter-after-{attempt}");
        async move { strategy_order(harness, "hunter", &signal_id).await["verdict"] == "admitted" }
    })
    .await
    .unwrap_or_else(|error| panic!("{error}\n{}", harness.gate.log()));
}

#[tokio::test]
async fn breaker_recovers_when_rate_falls() {
    let harness = Harness::start_with(true, |builder| {
        builder
            .env("TITAN_GATE_INITIAL_MODE", "running")
            .env("TITAN_GATE_STRATEGY_RATE_PER_S", "10")
            .env("TITAN_GATE_STRATEGY_BURST", "3")
            .env("TITAN_GATE_RUNAWAY_TRIP_MS", "1500")
    })
    .await;

    let sent = send_until(&harness, "hunter", "rate_limited").await;
    assert!(sent > 3, "the burst of 3 is admitted first, then {sent} was rejected");
    // Four orders a second for three seconds: under the limit, and longer than the
    // runaway trip time, so a breach that did not end would trip here.
    let mut interval = tokio::time::interval(std::time::Duration::from_millis(250));
    interval.tick().await;
    for index in 0..12 {
        interval.tick().await;
        let verdict = strategy_order(&harness, "hunter", &format!("sig-slow-{index}")).await;
        assert_eq!(verdict["verdict"], "admitted", "order {index}: {verdict}");
    }
    let status = harness.status();
    assert_eq!(status["scopes"].as_array().map(Vec::len), Some(0), "{status}");
    assert_eq!(metric_value(&harness.metrics(), r#"titan_gate_risk_trips_total{control="rate",action="trip"}"#), None);
}

#[tokio::test]
async fn security_breaker_latches_until_signed_resume() {
    let harness = Harness::start_with(true, |builder| {
        builder
            .env("TITAN_GATE_INITIAL_MODE", "running")
            .env("TITAN_GATE_SECURITY_TRIP_FAILURES", "5")
            .env("TITAN_GATE_SECURITY_TRIP_WINDOW_MS", "60000")
    })
    .await;

    for index in 0..3 {
        let envelope = v1_envelope(&payload(&format!("sig-forged-{index}"), "BUY_SETUP"), now_ms(), &nonce());
        let tampered = envelope.replacen("BUY_SETUP", "SELL_SETUP", 1);
        assert_eq!(rejection_reason(&harness.order(TAIL, tampered, HeaderMap::new()).await), "hmac_signature_mismatch");
    }
    assert_eq!(harness.status()["mode"], "RUNNING", "3 failures are under the threshold of 5");
    let body = br#"{"state":"OPEN","reason":"forged resume"}"#;
    for _ in 0..3 {
        let headers = v2_headers(OPS_KEY_ID, "not-the-secret", HALT, body, now_ms(), &nonce());
        assert_eq!(harness.command(HALT, body, headers).await["outcome"], "refused");
    }

    harness.wait_mode("HARD_HALT").await;
    let status = harness.status();
    assert_eq!(status["reason"], "SECURITY");
    assert_eq!(status["operator"], "titan-gate/security-breaker");
    assert_eq!(rejection_reason(&harness.signed_order("sig-after-trip").await), "system_halted");

    let resume = harness.resume().await;
    assert_eq!(resume["outcome"], "applied", "{resume}");
    assert_eq!(harness.signed_order("sig-after-resume").await["verdict"], "admitted");
}
