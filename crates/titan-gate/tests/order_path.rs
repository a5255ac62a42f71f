//! The order path end to end: admitted orders land in `TITAN_CMD` byte for byte, and
//! each reject reason comes from a real input.

mod common;

use async_nats::HeaderMap;
use common::*;
use futures::StreamExt;
use serde_json::Value;
use titan_gate_test_support::wait_until;

#[tokio::test]
async fn admitted_order_lands_byte_identical() {
    let harness = Harness::start().await;
    let body = v1_envelope(&payload("sig-admit-1", "BUY_SETUP"), now_ms(), &nonce());

    let verdict = harness.order(TAIL, body.clone(), HeaderMap::new()).await;
    assert_eq!(verdict["verdict"], "admitted", "{verdict}");
    assert!(verdict["stream_seq"].as_u64().is_some(), "{verdict}");

    let stored = harness.stored_orders().await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].subject.as_str(), format!("{FORWARD}.{TAIL}"));
    assert_eq!(stored[0].payload.as_ref(), body.as_bytes());
    let intent_id = body.split(r#""id":""#).nth(1).and_then(|rest| rest.split('"').next()).unwrap();
    assert_eq!(stored[0].headers.get("Nats-Msg-Id").map(async_nats::HeaderValue::as_str), Some(intent_id));
    assert_eq!(stored[0].headers.get("Titan-Gate-Id").map(async_nats::HeaderValue::as_str), Some("test-gate"));
}

#[tokio::test]
async fn forward_drops_reserved_headers_in_any_case() {
    let harness = Harness::start().await;
    let body = v1_envelope(&payload("sig-headers-1", "BUY_SETUP"), now_ms(), &nonce());
    let mut headers = HeaderMap::new();
    // Forwarded, this would make JetStream refuse the order as bound for another stream.
    headers.insert("NATS-Expected-Stream", "NOT_TITAN_CMD");
    headers.insert("titan-gate-epoch", "999");
    headers.insert("X-Trace-Id", "trace-1");

    let verdict = harness.order(TAIL, body, headers).await;
    assert_eq!(verdict["verdict"], "admitted", "{verdict}");
    let stored = harness.stored_orders().await;
    let header = |name: &str| stored[0].headers.get(name).map(async_nats::HeaderValue::as_str);
    assert_eq!(header("NATS-Expected-Stream"), None);
    assert_eq!(header("titan-gate-epoch"), None);
    assert_eq!(header("Titan-Gate-Epoch"), Some(verdict["epoch"].to_string().as_str()));
    assert_eq!(header("X-Trace-Id"), Some("trace-1"));
}

#[tokio::test]
async fn v2_signed_order_is_admitted_with_header_msg_id() {
    let harness = Harness::start().await;
    let body = unsigned_envelope(&payload("sig-v2-1", "SELL_SETUP"));
    let subject = format!("{INTAKE}.{TAIL}");
    let mut headers = v2_headers(STRATEGY_KEY_ID, STRATEGY_SECRET, &subject, body.as_bytes(), now_ms(), &nonce());
    headers.insert("Nats-Msg-Id", "producer-chosen-id");

    let verdict = harness.order(TAIL, body.clone(), headers).await;
    assert_eq!(verdict["verdict"], "admitted", "{verdict}");
    let stored = harness.stored_orders().await;
    assert_eq!(stored[0].headers.get("Nats-Msg-Id").map(async_nats::HeaderValue::as_str), Some("producer-chosen-id"));
    assert_eq!(stored[0].payload.as_ref(), body.as_bytes());
}

#[tokio::test]
async fn same_intent_twice_is_duplicate() {
    let harness = Harness::start().await;
    let first = harness.signed_order("sig-dup").await;
    assert_eq!(first["verdict"], "admitted", "{first}");
    // Signed anew with another nonce, so only the message id repeats.
    let second = harness.signed_order("sig-dup").await;
    assert_eq!(second["verdict"], "admitted", "envelope ids differ, so JetStream sees two intents: {second}");

    let body = v1_envelope(&payload("sig-dup-2", "BUY_SETUP"), now_ms(), &nonce());
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", "same-id");
    assert_eq!(harness.order(TAIL, body, headers.clone()).await["verdict"], "admitted");
    let again = v1_envelope(&payload("sig-dup-2", "BUY_SETUP"), now_ms(), &nonce());
    assert_eq!(rejection_reason(&harness.order(TAIL, again, headers).await), "duplicate_intent");
    assert_eq!(harness.stored_orders().await.len(), 3);
}

#[tokio::test]
async fn every_check_reason_from_real_input() {
    let harness = Harness::start_with(true, |builder| {
        builder.env("TITAN_GATE_INITIAL_MODE", "running").env("TITAN_GATE_MAX_PAYLOAD_BYTES", "4096")
    })
    .await;
    let good_payload = payload("sig-reasons", "BUY_SETUP");
    let signed = v1_envelope(&good_payload, now_ms(), &nonce());
    let replayed_nonce = nonce();
    let first = v1_envelope(&payload("sig-replay-a", "BUY_SETUP"), now_ms(), &replayed_nonce);
    assert_eq!(harness.order(TAIL, first, HeaderMap::new()).await["verdict"], "admitted");

    let cases: Vec<(&str, Vec<u8>, HeaderMap)> = vec![
        ("malformed", b"not json".to_vec(), HeaderMap::new()),
        ("payload_too_large", vec![b' '; 5000], HeaderMap::new()),
        ("unsigned", unsigned_envelope(&good_payload).into_bytes(), HeaderMap::new()),
        ("hmac_signature_mismatch", signed.replace("0.38771252914452203", "0.5").into_bytes(), HeaderMap::new()),
        ("unknown_key", signed.replace(r#""ts":"#, r#""key_id":"nobody","ts":"#).into_bytes(), HeaderMap::new()),
        ("stale_timestamp", v1_envelope(&good_payload, now_ms() - 120_000, &nonce()).into_bytes(), HeaderMap::new()),
        (
            "replayed_nonce",
            v1_envelope(&payload("sig-replay-b", "BUY_SETUP"), now_ms(), &replayed_nonce).into_bytes(),
            HeaderMap::new(),
        ),
    ];
    for (expected, body, headers) in cases {
        let verdict = harness.order(TAIL, body, headers).await;
        assert_eq!(rejection_reason(&verdict), expected, "{verdict}");
        assert!(verdict["detail"].as_str().is_some_and(|detail| !detail.is_empty()), "{verdict}");
    }
    assert_eq!(harness.stored_orders().await.len(), 1, "no rejected order may reach the stream");
}

#[tokio::test]
async fn halted_and_reduce_only_reasons() {
    let harness = Harness::start().await;
    harness.command(HALT, br#"{"state":"SOFT_HALT","reason":"reduce risk"}"#, HeaderMap::new()).await;
    assert_eq!(rejection_reason(&harness.signed_order("sig-open").await), "reduce_only");
    let close = v1_envelope(&payload("sig-close", "CLOSE_LONG"), now_ms(), &nonce());
    assert_eq!(harness.order(TAIL, close, HeaderMap::new()).await["verdict"], "admitted");

    harness.command(HALT, br#"{"state":"HARD_HALT","reason":"stop"}"#, HeaderMap::new()).await;
    let close = v1_envelope(&payload("sig-close-2", "CLOSE_LONG"), now_ms(), &nonce());
    assert_eq!(rejection_reason(&harness.order(TAIL, close, HeaderMap::new()).await), "system_halted");
}

#[tokio::test]
async fn no_stream_is_prompt_forward_failed() {
    let harness = Harness::start_with(false, |builder| builder.env("TITAN_GATE_INITIAL_MODE", "running")).await;
    let started = std::time::Instant::now();
    let verdict = harness.signed_order("sig-nostream").await;
    assert_eq!(rejection_reason(&verdict), "forward_failed", "{verdict}");
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "took {:?}", started.elapsed());
    let detail = verdict["detail"].as_str().expect("detail is a string");
    assert!(detail.contains("no JetStream stream stores subject"), "{verdict}");
}

/// A stream the gate found, which then stops replying (here it is deleted, as a stand-in
/// for a stream without a leader during an election): the detail names the stream and the
/// missing reply instead of claiming that no stream exists.
#[tokio::test]
async fn known_stream_without_responders_is_named() {
    let harness = Harness::start().await;
    assert_eq!(harness.status()["forward_stream"], "TITAN_CMD");
    // The gate looks the stream up again every 5 s. A lookup between the deletion and the
    // order changes the detail, so the round is repeated when the status shows one happened.
    for attempt in 0..3 {
        harness.jetstream.delete_stream("TITAN_CMD").await.expect("TITAN_CMD deleted");
        let verdict = harness.signed_order(&format!("sig-no-leader-{attempt}")).await;
        let lookup_ran = harness.status()["forward_stream"].is_null();
        if !lookup_ran {
            assert_eq!(rejection_reason(&verdict), "forward_failed", "{verdict}");
            let detail = verdict["detail"].as_str().expect("detail is a string");
            assert!(detail.contains("stream TITAN_CMD"), "{verdict}");
            assert!(detail.contains("no responders"), "{verdict}");
            assert!(!detail.contains("no JetStream stream stores"), "{verdict}");
            return;
        }
        create_titan_stream(&harness.jetstream).await;
        wait_until(WAIT, "the gate to find TITAN_CMD again", || async {
            harness.status()["forward_stream"] == "TITAN_CMD"
        })
        .await
        .expect("stream found again");
    }
    panic!("the forward stream lookup ran between deletion and order in every attempt");
}

#[tokio::test]
async fn silent_responder_gives_unconfirmed_then_final_verdict() {
    let harness = Harness::start_with(false, |builder| {
        builder
            .env("TITAN_GATE_INITIAL_MODE", "running")
            .env("TITAN_GATE_FORWARD_ACK_TIMEOUT_MS", "200")
            .env("TITAN_GATE_FORWARD_RETRY_WINDOW_MS", "20000")
    })
    .await;
    // A subscriber that never answers gives the publish a responder but no acknowledgement.
    let _silent = harness.client.subscribe(format!("{FORWARD}.>")).await.unwrap();
    let mut verdicts = harness.client.subscribe("titan.evt.gate.verdict.v1").await.unwrap();
    harness.client.flush().await.unwrap();

    let verdict = harness.signed_order("sig-unconfirmed").await;
    assert_eq!(verdict["verdict"], "unconfirmed", "{verdict}");
    assert_eq!(verdict["reason"], "forward_unconfirmed");

    create_titan_stream(&harness.jetstream).await;
    let event = tokio::time::timeout(WAIT, verdicts.next()).await.expect("final verdict arrives").unwrap();
    let event: Value = serde_json::from_slice(&event.payload).unwrap();
    assert_eq!(event["verdict"], "admitted", "{event}");
    assert_eq!(harness.stored_orders().await.len(), 1);
}

#[tokio::test]
async fn rejection_publishes_reject_event_and_counts() {
    let harness = Harness::start().await;
    let mut events = harness.client.subscribe("titan.evt.execution.reject.v1").await.unwrap();
    harness.client.flush().await.unwrap();
    let body = unsigned_envelope(&payload("sig-event", "BUY_SETUP"));
    harness.order(TAIL, body, HeaderMap::new()).await;

    let event = tokio::time::timeout(WAIT, events.next()).await.expect("reject event arrives").unwrap();
    let event: Value = serde_json::from_slice(&event.payload).unwrap();
    assert_eq!(event["event_type"], "execution.intent.rejected");
    assert_eq!(event["reason"], "unsigned");
    assert_eq!(event["signal_id"], "sig-event");
    assert_eq!(event["gate_id"], "test-gate");
    assert_eq!(event["subject"], format!("{INTAKE}.{TAIL}"));
    assert!(event["epoch"].as_u64().is_some(), "{event}");
    assert!(
        harness.metrics().contains(r#"titan_gate_orders_total{verdict="rejected",reason="unsigned"} 1"#),
        "{}",
        harness.metrics()
    );
    assert!(harness.metrics().contains(r#"titan_gate_security_events_total{kind="unsigned"} 1"#));
}

#[tokio::test]
async fn fire_and_forget_orders_are_forwarded_concurrently() {
    let harness = Harness::start().await;
    let count = 500;
    for index in 0..count {
        let body = v1_envelope(&payload(&format!("sig-bulk-{index}"), "BUY_SETUP"), now_ms(), &nonce());
        harness.client.publish(format!("{INTAKE}.{TAIL}"), body.into()).await.unwrap();
    }
    harness.client.flush().await.unwrap();
    titan_gate_test_support::wait_until(WAIT, "all orders stored", || async {
        let mut stream = harness.jetstream.get_stream("TITAN_CMD").await.unwrap();
        stream.info().await.unwrap().state.messages == count
    })
    .await
    .unwrap();
    // The stream stores an order before its acknowledgement reaches the gate, which counts
    // the order as admitted only then.
    titan_gate_test_support::wait_until(WAIT, "the gate to count every acknowledgement", || async {
        harness.status()["orders"]["admitted"] == count
    })
    .await
    .unwrap_or_else(|error| panic!("{error}: {}", harness.status()));
    let mut stream = harness.jetstream.get_stream("TITAN_CMD").await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, count, "no order is stored twice");
}

#[tokio::test]
async fn sigterm_drains_and_exits_cleanly() {
    let mut harness = Harness::start().await;
    for index in 0..300 {
        let body = v1_envelope(&payload(&format!("sig-drain-{index}"), "BUY_SETUP"), now_ms(), &nonce());
        harness.client.publish(format!("{INTAKE}.{TAIL}"), body.into()).await.unwrap();
    }
    harness.client.flush().await.unwrap();
    let status = harness.gate.stop(std::time::Duration::from_secs(10)).unwrap().expect("the gate exits");
    assert!(status.success(), "exit status {status}\n{}", harness.gate.log());
    let log = harness.gate.log();
    assert!(log.contains("Draining the intake"), "{log}");
    assert!(log.contains("titan-gate stopped"), "{log}");
    assert!(!log.contains("still awaiting"), "{log}");
}

#[tokio::test]
async fn sigterm_exits_promptly_with_broker_gone() {
    let mut harness = Harness::start().await;
    harness.server.kill().unwrap();
    titan_gate_test_support::wait_until(WAIT, "the gate to notice", || async {
        harness.gate.status_code("/readyz") == 503
    })
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let status = harness.gate.stop(std::time::Duration::from_secs(15)).unwrap().expect("the gate exits");
    assert!(status.success(), "exit status {status}\n{}", harness.gate.log());
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "took {:?}\n{}",
        started.elapsed(),
        harness.gate.log()
    );
}
