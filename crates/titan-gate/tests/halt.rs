//! Halt and resume commands over a real broker: every payload shape, the exact log
//! lines, signed resumes only, metrics and readiness.

mod common;

use std::time::Duration;

use async_nats::HeaderMap;
use common::stale::StaleChecker;
use common::*;
use futures::StreamExt;
use serde_json::Value;
use titan_gate_test_support::wait_until;

#[tokio::test]
async fn gate_starts_hard_halted_until_signed_resume() {
    let harness = Harness::start_with(true, |builder| builder).await;
    let status = harness.status();
    assert_eq!(status["mode"], "HARD_HALT");
    assert_eq!(status["reason"], "INITIAL_STATE");
    assert_eq!(rejection_reason(&harness.signed_order("sig-initial").await), "system_halted");
    harness.gate.wait_for_log("Order Rejected: System Halted", WAIT).await.unwrap();

    let event = harness.resume().await;
    assert_eq!(event["outcome"], "applied", "{event}");
    assert_eq!(event["key_id"], OPS_KEY_ID);
    assert_eq!(harness.signed_order("sig-after-resume").await["verdict"], "admitted");
}

#[tokio::test]
async fn every_halt_payload_shape_halts() {
    let harness = Harness::start().await;
    let shapes: [&[u8]; 7] = [
        br#"{"reason":"kill switch","operator":"alice"}"#,
        br#"{"state":"HARD_HALT","reason":"r"}"#,
        br#"{"active":true,"reason":"r"}"#,
        br#"{"type":"titan.cmd.sys.halt.v1","version":1,"producer":"titan-brain","payload":{"action":"HALT","reason":"drawdown"}}"#,
        b"definitely not json",
        b"",
        br#"{"state":"PAUSE"}"#,
    ];
    let mut checker = StaleChecker::new();
    for (index, shape) in shapes.into_iter().enumerate() {
        let event = harness.command(HALT, shape, HeaderMap::new()).await;
        assert_eq!(event["outcome"], "applied", "{}: {event}", String::from_utf8_lossy(shape));
        assert_eq!(event["mode"], "HARD_HALT");
        checker.record_command_event(&event);
        assert_eq!(harness.status()["mode"], "HARD_HALT");
        let verdict = harness.checked_order(&mut checker, &format!("sig-shape-{index}")).await;
        assert_eq!(rejection_reason(&verdict), "system_halted");
        assert_eq!(harness.resume().await["outcome"], "applied");
        let verdict = harness.checked_order(&mut checker, &format!("sig-resumed-{index}")).await;
        assert_eq!(verdict["verdict"], "admitted", "{verdict}");
    }
    assert_eq!(checker.stale_admissions(), Vec::<String>::new());
    assert!(harness.gate.log().contains("UNRECOGNIZED_COMMAND"), "unrecognized bytes are logged");
}

#[tokio::test]
async fn system_halted_log_line_is_exact() {
    let harness = Harness::start().await;
    harness.command(HALT, br#"{"reason":"runbook kill switch","operator":"alice"}"#, HeaderMap::new()).await;
    harness.signed_order("sig-logged").await;
    harness.gate.wait_for_log("Order Rejected: System Halted", WAIT).await.unwrap();
    let log = harness.gate.log();
    let line = log.lines().find(|line| line.contains("Order Rejected: System Halted")).unwrap();
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("runbook kill switch"), "the halt reason is a field: {line}");
    assert!(line.contains("halt.epoch=1"), "{line}");
    assert!(line.contains(&format!("{INTAKE}.{TAIL}")), "{line}");
}

#[tokio::test]
async fn unsigned_resume_is_refused_and_logged() {
    let harness = Harness::start_with(true, |builder| builder).await;
    let event = harness.command(HALT, br#"{"state":"OPEN","reason":"let me trade"}"#, HeaderMap::new()).await;
    assert_eq!(event["outcome"], "refused", "{event}");
    assert_eq!(harness.status()["mode"], "HARD_HALT");
    harness.gate.wait_for_log("Security: Unsigned Command Detected", WAIT).await.unwrap();

    let event = harness.command(HALT, br#"{"active":false}"#, HeaderMap::new()).await;
    assert_eq!(event["outcome"], "refused", "{event}");
    assert!(
        harness
            .metrics()
            .contains(r#"titan_gate_commands_total{command="resume",outcome="refused",auth="unsigned"} 2"#),
        "{}",
        harness.metrics()
    );
}

#[tokio::test]
async fn badly_signed_resumes_are_refused() {
    let harness = Harness::start_with(true, |builder| builder).await;
    let body = br#"{"state":"OPEN","reason":"r"}"#;
    let wrong_secret = v2_headers(OPS_KEY_ID, "not-the-secret", HALT, body, now_ms(), &nonce());
    let order_key = v2_headers(STRATEGY_KEY_ID, STRATEGY_SECRET, HALT, body, now_ms(), &nonce());
    let stale = v2_headers(OPS_KEY_ID, OPS_SECRET, HALT, body, now_ms() - 120_000, &nonce());
    let other_subject =
        v2_headers(OPS_KEY_ID, OPS_SECRET, "titan.cmd.sys.halt.v1.venue.binance", body, now_ms(), &nonce());
    for (name, headers) in [
        ("wrong secret", wrong_secret),
        ("order key", order_key),
        ("stale", stale),
        ("signed for another subject", other_subject),
    ] {
        let event = harness.command(HALT, body, headers).await;
        assert_eq!(event["outcome"], "refused", "{name}: {event}");
    }
    harness.gate.wait_for_log("HMAC Verification Failed", WAIT).await.unwrap();
    assert_eq!(harness.status()["mode"], "HARD_HALT");
}

#[tokio::test]
async fn replayed_and_pre_halt_resumes_are_refused() {
    let harness = Harness::start().await;
    let body = br#"{"state":"OPEN","reason":"r"}"#;
    let signed_before = v2_headers(OPS_KEY_ID, OPS_SECRET, HALT, body, now_ms() - 1_000, &nonce());
    harness.command(HALT, br#"{"reason":"incident"}"#, HeaderMap::new()).await;
    assert_eq!(harness.command(HALT, body, signed_before).await["outcome"], "refused", "signed before the halt began");

    let headers = v2_headers(OPS_KEY_ID, OPS_SECRET, HALT, body, now_ms() + 1, &nonce());
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(harness.command(HALT, body, headers.clone()).await["outcome"], "applied");
    harness.command(HALT, br#"{"reason":"incident again"}"#, HeaderMap::new()).await;
    let replay = harness.command(HALT, body, headers).await;
    assert_eq!(replay["outcome"], "refused", "{replay}");
    assert_eq!(harness.status()["mode"], "HARD_HALT");
}

#[tokio::test]
async fn signed_halt_records_key_and_unchanged_repeat() {
    let harness = Harness::start().await;
    let body = br#"{"reason":"signed halt","operator":"bob"}"#;
    let event = harness.command(HALT, body, v2_headers(OPS_KEY_ID, OPS_SECRET, HALT, body, now_ms(), &nonce())).await;
    assert_eq!(event["outcome"], "applied");
    assert_eq!(event["key_id"], OPS_KEY_ID);
    assert_eq!(harness.status()["key_id"], OPS_KEY_ID);
    assert_eq!(harness.status()["operator"], "bob");
    let again = harness.command(HALT, br#"{"reason":"again"}"#, HeaderMap::new()).await;
    assert_eq!(again["outcome"], "unchanged");
    assert_eq!(again["epoch"], event["epoch"]);
}

#[tokio::test]
async fn halted_gauge_and_mode_from_first_scrape() {
    let harness = Harness::start_with(true, |builder| builder).await;
    let metrics = harness.metrics();
    assert!(metrics.contains(r#"titan_gate_halted{scope="global"} 1"#), "{metrics}");
    assert!(metrics.contains("titan_gate_mode 2"), "{metrics}");
    assert!(metrics.contains("titan_gate_state_epoch 0"), "{metrics}");
    assert!(metrics.contains(r#"titan_gate_orders_total{verdict="rejected",reason="system_halted"} 0"#), "{metrics}");

    harness.resume().await;
    let metrics = harness.metrics();
    assert!(metrics.contains(r#"titan_gate_halted{scope="global"} 0"#), "{metrics}");
    assert!(metrics.contains("titan_gate_mode 0"), "{metrics}");
    assert!(metrics.contains("titan_gate_state_epoch 1"), "{metrics}");
}

#[tokio::test]
async fn command_request_gets_reply_and_status_subject_answers() {
    let harness = Harness::start_with(false, |builder| builder.env("TITAN_GATE_INITIAL_MODE", "running")).await;
    let reply = harness.client.request(HALT, br#"{"reason":"via request"}"#.to_vec().into()).await.unwrap();
    let reply: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(reply["outcome"], "applied", "{reply}");
    assert_eq!(reply["gate_id"], "test-gate");

    let status = harness.client.request("titan.gate.status.v1", "".into()).await.unwrap();
    let status: Value = serde_json::from_slice(&status.payload).unwrap();
    assert_eq!(status["mode"], "HARD_HALT");
    assert_eq!(status["reason"], "via request");
    assert_eq!(status["gate_id"], "test-gate");
}

#[tokio::test]
async fn readyz_is_503_while_broker_is_down() {
    let mut harness = Harness::start().await;
    assert_eq!(harness.gate.status_code("/readyz"), 200);
    assert!(harness.metrics().contains("titan_gate_ready 1"), "{}", harness.metrics());
    harness.server.kill().unwrap();
    wait_until(WAIT, "readyz 503", || async { harness.gate.status_code("/readyz") == 503 }).await.unwrap();
    let body = harness.gate.get("/readyz").unwrap().body;
    assert!(body.contains("connection to NATS is down"), "{body}");
    assert!(harness.metrics().contains("titan_gate_nats_connected 0"));
    assert!(harness.metrics().contains("titan_gate_ready 0"));
    assert_eq!(harness.gate.status_code("/healthz"), 200);

    harness.server.restart().unwrap();
    harness.gate.wait_ready(Duration::from_secs(20)).await.unwrap();
}

#[tokio::test]
async fn halt_during_flood_takes_effect_while_flood_runs() {
    let harness = Harness::start().await;
    let flood_client = async_nats::connect(harness.server.url()).await.unwrap();
    let flooding = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flood = {
        let flooding = std::sync::Arc::clone(&flooding);
        tokio::spawn(async move {
            let mut sent = 0u32;
            while flooding.load(std::sync::atomic::Ordering::Relaxed) && sent < 200_000 {
                let body = v1_envelope(&payload(&format!("sig-flood-{sent}"), "BUY_SETUP"), now_ms(), &nonce());
                flood_client.publish(format!("{INTAKE}.{TAIL}"), body.into()).await.unwrap();
                sent += 1;
                if sent % 100 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            flood_client.flush().await.unwrap();
            sent
        })
    };
    wait_until(WAIT, "orders admitted during the flood", || async {
        harness.status()["orders"]["admitted"].as_u64().unwrap_or(0) > 200
    })
    .await
    .unwrap();

    let event = harness.command(HALT, br#"{"reason":"halt under flood"}"#, HeaderMap::new()).await;
    assert!(!flood.is_finished(), "the flood must still run when the halt lands");
    let halt_epoch = event["epoch"].as_u64().unwrap();
    let mut checker = StaleChecker::new();
    checker.record_command_event(&event);
    wait_until(WAIT, "system_halted rejections during the flood", || async {
        harness.metrics().contains(r#"reason="system_halted"} "#)
            && !harness.metrics().contains(r#"reason="system_halted"} 0"#)
    })
    .await
    .unwrap();
    flooding.store(false, std::sync::atomic::Ordering::Relaxed);
    let sent = flood.await.unwrap();
    assert!(sent > 0);
    // Requests wait behind the flood's backlog in the intake, so they are sent after it.
    for index in 0..5 {
        let verdict = harness.checked_order(&mut checker, &format!("sig-after-flood-{index}")).await;
        assert_eq!(rejection_reason(&verdict), "system_halted");
    }

    let stored = harness.stored_orders().await;
    let late: Vec<u64> = stored
        .iter()
        .filter_map(|message| {
            message.headers.get("Titan-Gate-Epoch").and_then(|epoch| epoch.as_str().parse::<u64>().ok())
        })
        .filter(|epoch| *epoch >= halt_epoch)
        .collect();
    assert!(late.is_empty(), "{} orders admitted at or after the halt's epoch", late.len());
    assert!(!stored.is_empty());
    assert_eq!(checker.stale_admissions(), Vec::<String>::new());
}

#[tokio::test]
async fn command_events_carry_scope() {
    let harness = Harness::start().await;
    let mut events = harness.client.subscribe("titan.evt.gate.command.v1").await.unwrap();
    harness.client.flush().await.unwrap();
    harness
        .client
        .publish("titan.cmd.sys.halt.v1.venue.binance", br#"{"reason":"venue outage"}"#.to_vec().into())
        .await
        .unwrap();
    let event = tokio::time::timeout(WAIT, events.next()).await.unwrap().unwrap();
    let event: Value = serde_json::from_slice(&event.payload).unwrap();
    assert_eq!(event["scope"], "venue:binance");
    assert_eq!(event["outcome"], "applied");
    assert_eq!(rejection_reason(&harness.signed_order("sig-venue").await), "system_halted");
    assert!(harness.metrics().contains(r#"titan_gate_halted{scope="venue:binance"} 1"#));
    assert_eq!(
        harness
            .order(
                "bybit.main.BTC_USDT",
                v1_envelope(&payload("sig-bybit", "BUY_SETUP"), now_ms(), &nonce()),
                HeaderMap::new()
            )
            .await["verdict"],
        "admitted"
    );
}

#[tokio::test]
async fn status_page_shows_halt_scopes_and_readiness() {
    let mut harness = Harness::start().await;
    let page = harness.gate.get("/").unwrap().body;
    assert!(page.contains(r#"data-halted="false""#), "{page}");
    assert!(page.contains("RUNNING"));

    harness
        .command(
            "titan.cmd.sys.halt.v1.symbol.BTC_USDT",
            br#"{"reason":"<script>alert(1)</script>"}"#,
            HeaderMap::new(),
        )
        .await;
    let page = harness.gate.get("/").unwrap().body;
    assert!(page.contains(r#"data-halted="true""#), "{page}");
    assert!(page.contains("SCOPED HALT (1 scopes)"), "{page}");
    assert!(page.contains("symbol:BTC_USDT"), "{page}");
    assert!(!page.contains("<script>"), "operator text is escaped: {page}");

    harness.server.kill().unwrap();
    wait_until(WAIT, "the page to show NOT READY", || async {
        harness.gate.get("/").is_some_and(|page| page.body.contains("NOT READY"))
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn gate_that_cannot_hear_halts_admits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("nats.conf");
    std::fs::write(
        &config,
        r#"
jetstream: enabled
accounts: {
  TITAN: {
    jetstream: enabled
    users: [
      { user: gate, password: gate-pw, permissions: { subscribe: { deny: ["titan.cmd.sys.halt.v1", "titan.cmd.sys.halt.v1.>"] } } }
      { user: tester, password: tester-pw }
    ]
  }
}
"#,
    )
    .unwrap();
    let server = titan_gate_test_support::NatsServer::builder().config_file(&config).start().unwrap();
    let client = async_nats::ConnectOptions::with_user_and_password("tester".into(), "tester-pw".into())
        .connect(server.url())
        .await
        .unwrap();
    create_titan_stream(&async_nats::jetstream::new(client.clone())).await;
    let gate = titan_gate_test_support::GateProcess::builder(GATE_BINARY, server.url())
        .env("TITAN_HMAC_SECRET", V1_SECRET)
        .env("TITAN_GATE_INITIAL_MODE", "running")
        .env("NATS_USER", "gate")
        .env("NATS_PASSWORD", "gate-pw")
        .start()
        .await
        .unwrap();
    wait_until(WAIT, "readyz to name the denied subscription", || async {
        gate.get("/readyz").is_some_and(|response| response.status == 503 && response.body.contains("permission"))
    })
    .await
    .unwrap_or_else(|error| panic!("{error}\n{}", gate.log()));

    let body = v1_envelope(&payload("sig-deaf", "BUY_SETUP"), now_ms(), &nonce());
    let request = async_nats::Request::new().payload(body.into()).timeout(Some(WAIT));
    let reply = client.send_request(format!("{INTAKE}.{TAIL}"), request).await.unwrap();
    let verdict: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(rejection_reason(&verdict), "system_halted", "{verdict}");
    assert!(verdict["detail"].as_str().unwrap().contains("cannot receive halts"), "{verdict}");
}

#[tokio::test]
async fn order_rejected_while_halted_never_reaches_stream() {
    let harness = Harness::start().await;
    harness.command("titan.cmd.sys.halt.v1.venue.binance", br#"{"reason":"venue outage"}"#, HeaderMap::new()).await;
    let body = v1_envelope(&payload("sig-rejected-once", "BUY_SETUP"), now_ms(), &nonce());
    assert_eq!(rejection_reason(&harness.order(TAIL, body.clone(), HeaderMap::new()).await), "system_halted");

    let other_venue = harness.order("bybit.main.BTC_USDT", body.clone(), HeaderMap::new()).await;
    assert_eq!(rejection_reason(&other_venue), "replayed_nonce", "the same signed bytes on another subject");
    let other_producer = body.replace(r#""producer":"titan-brain""#, r#""producer":"someone-else""#);
    assert_eq!(
        rejection_reason(&harness.order("bybit.main.BTC_USDT", other_producer, HeaderMap::new()).await),
        "replayed_nonce"
    );

    let body_resume = br#"{"state":"OPEN","reason":"venue back"}"#;
    let scoped = "titan.cmd.sys.halt.v1.venue.binance";
    let event = harness
        .command(scoped, body_resume, v2_headers(OPS_KEY_ID, OPS_SECRET, scoped, body_resume, now_ms(), &nonce()))
        .await;
    assert_eq!(event["outcome"], "applied", "{event}");
    assert_eq!(
        rejection_reason(&harness.order(TAIL, body, HeaderMap::new()).await),
        "replayed_nonce",
        "after the resume"
    );
    assert!(harness.stored_orders().await.is_empty());
}
