//! Scoped halts over a real broker with the real binary. Each scope kind stops only its
//! own orders, and the strictest of the global and scoped modes wins. SOFT is
//! reduce-only, and a scoped resume needs a valid signature. The `titan_gate_halted`
//! gauge follows each scope, and a halt past the scope bound becomes a global `HARD_HALT`.

mod common;

use async_nats::HeaderMap;
use common::*;
use serde_json::Value;

/// A scope to halt, and the subject tail and strategy of an order outside it.
struct ScopeCase {
    kind: &'static str,
    value: &'static str,
    outside_tail: &'static str,
    outside_source: &'static str,
}

impl ScopeCase {
    fn subject(&self) -> String {
        format!("{HALT}.{}.{}", self.kind, self.value)
    }

    fn label(&self) -> String {
        format!("{}:{}", self.kind, self.value)
    }
}

/// Scopes that the default order (`TAIL`, source `scavenger`) falls in, each with an
/// order that differs from the default only in that scope's token.
const SCOPE_CASES: [ScopeCase; 4] = [
    ScopeCase { kind: "venue", value: "binance", outside_tail: "bybit.main.BTC_USDT", outside_source: "scavenger" },
    ScopeCase { kind: "account", value: "main", outside_tail: "binance.sub.BTC_USDT", outside_source: "scavenger" },
    ScopeCase { kind: "symbol", value: "BTC_USDT", outside_tail: "binance.main.ETH_USDT", outside_source: "scavenger" },
    ScopeCase { kind: "strategy", value: "scavenger", outside_tail: TAIL, outside_source: "hunter" },
];

/// Sends a fresh v1-signed order of `intent_type` with strategy `source` on `tail`.
async fn order_of(harness: &Harness, tail: &str, source: &str, intent_type: &str) -> Value {
    let signal_id = format!("sig-{}", nonce());
    let body = payload(&signal_id, intent_type).replace(r#""source":"scavenger""#, &format!(r#""source":"{source}""#));
    harness.order(tail, v1_envelope(&body, now_ms(), &nonce()), HeaderMap::new()).await
}

/// Returns the verdict's reason code, or `admitted`.
fn outcome(verdict: &Value) -> &str {
    if verdict["verdict"] == "admitted" { "admitted" } else { rejection_reason(verdict) }
}

/// Publishes `body` on `subject` with a valid v2 signature by the ops key.
async fn signed_command(harness: &Harness, subject: &str, body: &[u8]) -> Value {
    harness.command(subject, body, v2_headers(OPS_KEY_ID, OPS_SECRET, subject, body, now_ms(), &nonce())).await
}

fn halted_series(metrics: &str, label: &str) -> Option<String> {
    let prefix = format!(r#"titan_gate_halted{{scope="{label}"}} "#);
    metrics.lines().find_map(|line| line.strip_prefix(&prefix).map(str::to_owned))
}

#[tokio::test]
async fn each_scope_kind_halts_only_its_orders() {
    let harness = Harness::start().await;
    for case in &SCOPE_CASES {
        let label = case.label();
        let event = harness.command(&case.subject(), br#"{"reason":"scope test"}"#, HeaderMap::new()).await;
        assert_eq!(event["outcome"], "applied", "{label}: {event}");
        assert_eq!(event["scope"], label.as_str());
        assert_eq!(event["mode"], "HARD_HALT", "{label}: {event}");

        let inside = order_of(&harness, TAIL, "scavenger", "CLOSE").await;
        assert_eq!(rejection_reason(&inside), "system_halted", "{label}: an order inside the scope");
        assert!(inside["detail"].as_str().unwrap().contains(&label), "{label}: {inside}");
        let outside = order_of(&harness, case.outside_tail, case.outside_source, "BUY_SETUP").await;
        assert_eq!(outcome(&outside), "admitted", "{label}: an order outside the scope: {outside}");
        assert_eq!(halted_series(&harness.metrics(), &label).as_deref(), Some("1"), "{label} while halted");
        assert_eq!(halted_series(&harness.metrics(), "global").as_deref(), Some("0"), "{label} leaves global alone");

        let event = signed_command(&harness, &case.subject(), br#"{"state":"OPEN","reason":"scope back"}"#).await;
        assert_eq!(event["outcome"], "applied", "{label} resume: {event}");
        assert_eq!(event["mode"], "RUNNING", "{label} resume: {event}");
        assert_eq!(halted_series(&harness.metrics(), &label).as_deref(), Some("0"), "{label} after the resume");
        let inside = order_of(&harness, TAIL, "scavenger", "BUY_SETUP").await;
        assert_eq!(outcome(&inside), "admitted", "{label}: after the resume: {inside}");
    }
    assert_eq!(harness.status()["scopes"].as_array().map(Vec::len), Some(0), "{}", harness.status());
}

#[tokio::test]
async fn scoped_soft_halt_is_reduce_only() {
    let harness = Harness::start().await;
    let event = harness
        .command(&SCOPE_CASES[2].subject(), br#"{"state":"SOFT_HALT","reason":"thin book"}"#, HeaderMap::new())
        .await;
    assert_eq!(event["outcome"], "applied", "{event}");
    assert_eq!(event["mode"], "SOFT_HALT");
    assert_eq!(halted_series(&harness.metrics(), "symbol:BTC_USDT").as_deref(), Some("1"), "SOFT counts as halted");

    for intent_type in ["CLOSE", "CLOSE_LONG", "CLOSE_SHORT"] {
        let verdict = order_of(&harness, TAIL, "scavenger", intent_type).await;
        assert_eq!(outcome(&verdict), "admitted", "{intent_type}: {verdict}");
    }
    for intent_type in ["BUY_SETUP", "SELL_SETUP"] {
        let verdict = order_of(&harness, TAIL, "scavenger", intent_type).await;
        assert_eq!(rejection_reason(&verdict), "reduce_only", "{intent_type}");
        assert!(verdict["detail"].as_str().unwrap().contains("symbol:BTC_USDT"), "{verdict}");
    }
    let other_symbol = order_of(&harness, "binance.main.ETH_USDT", "scavenger", "BUY_SETUP").await;
    assert_eq!(outcome(&other_symbol), "admitted", "{other_symbol}");
    assert!(
        harness.metrics().contains(r#"titan_gate_orders_total{verdict="rejected",reason="reduce_only"} 2"#),
        "{}",
        harness.metrics()
    );
}

#[tokio::test]
async fn strictest_of_global_and_scope_wins() {
    let harness = Harness::start().await;
    let venue = SCOPE_CASES[0].subject();
    let soft = br#"{"state":"SOFT_HALT","reason":"soft"}"#;
    let hard = br#"{"state":"HARD_HALT","reason":"hard"}"#;
    let elsewhere = "bybit.main.BTC_USDT";

    // Global SOFT, venue HARD: the venue's orders stop entirely, the others are reduce-only.
    assert_eq!(harness.command(HALT, soft, HeaderMap::new()).await["outcome"], "applied");
    assert_eq!(harness.command(&venue, hard, HeaderMap::new()).await["outcome"], "applied");
    assert_eq!(rejection_reason(&order_of(&harness, TAIL, "scavenger", "CLOSE").await), "system_halted");
    assert_eq!(outcome(&order_of(&harness, elsewhere, "scavenger", "CLOSE").await), "admitted");
    assert_eq!(rejection_reason(&order_of(&harness, elsewhere, "scavenger", "BUY_SETUP").await), "reduce_only");

    // Global HARD, venue SOFT: the global mode wins for the venue too. Loosening the
    // venue from HARD to SOFT needs a resume signature.
    let unsigned_loosening = harness.command(&venue, soft, HeaderMap::new()).await;
    assert_eq!(unsigned_loosening["outcome"], "refused", "{unsigned_loosening}");
    assert_eq!(signed_command(&harness, &venue, soft).await["outcome"], "applied");
    assert_eq!(harness.command(HALT, hard, HeaderMap::new()).await["outcome"], "applied");
    let verdict = order_of(&harness, TAIL, "scavenger", "CLOSE").await;
    assert_eq!(rejection_reason(&verdict), "system_halted");
    assert_eq!(verdict["detail"], "the gate is in HARD_HALT", "{verdict}");

    // Global SOFT, venue SOFT: closing orders pass everywhere, opening ones nowhere.
    assert_eq!(signed_command(&harness, HALT, soft).await["outcome"], "applied");
    assert_eq!(outcome(&order_of(&harness, TAIL, "scavenger", "CLOSE_SHORT").await), "admitted");
    assert_eq!(rejection_reason(&order_of(&harness, TAIL, "scavenger", "SELL_SETUP").await), "reduce_only");

    // Global RUNNING, venue SOFT: only the venue is reduce-only.
    assert_eq!(signed_command(&harness, HALT, br#"{"state":"OPEN","reason":"r"}"#).await["outcome"], "applied");
    assert_eq!(rejection_reason(&order_of(&harness, TAIL, "scavenger", "BUY_SETUP").await), "reduce_only");
    assert_eq!(outcome(&order_of(&harness, elsewhere, "scavenger", "BUY_SETUP").await), "admitted");
    let metrics = harness.metrics();
    assert_eq!(halted_series(&metrics, "global").as_deref(), Some("0"), "{metrics}");
    assert_eq!(halted_series(&metrics, "venue:binance").as_deref(), Some("1"), "{metrics}");
}

#[tokio::test]
async fn scoped_resume_needs_valid_signature() {
    let harness = Harness::start().await;
    let account = SCOPE_CASES[1].subject();
    let resume = br#"{"state":"OPEN","reason":"account back"}"#;
    assert_eq!(harness.command(&account, br#"{"reason":"margin call"}"#, HeaderMap::new()).await["outcome"], "applied");

    let unsigned = harness.command(&account, resume, HeaderMap::new()).await;
    assert_eq!(unsigned["outcome"], "refused", "{unsigned}");
    assert_eq!(unsigned["scope"], "account:main");
    harness.gate.wait_for_log("Security: Unsigned Command Detected", WAIT).await.unwrap();

    let wrong_secret = v2_headers(OPS_KEY_ID, "not-the-secret", &account, resume, now_ms(), &nonce());
    let order_key = v2_headers(STRATEGY_KEY_ID, STRATEGY_SECRET, &account, resume, now_ms(), &nonce());
    let signed_for_global = v2_headers(OPS_KEY_ID, OPS_SECRET, HALT, resume, now_ms(), &nonce());
    let other_scope = format!("{HALT}.account.sub");
    let signed_for_other_scope = v2_headers(OPS_KEY_ID, OPS_SECRET, &other_scope, resume, now_ms(), &nonce());
    for (name, headers) in [
        ("wrong secret", wrong_secret),
        ("order key", order_key),
        ("signed for the global subject", signed_for_global),
        ("signed for another account", signed_for_other_scope),
    ] {
        let event = harness.command(&account, resume, headers).await;
        assert_eq!(event["outcome"], "refused", "{name}: {event}");
    }
    harness.gate.wait_for_log("HMAC Verification Failed", WAIT).await.unwrap();
    assert_eq!(rejection_reason(&order_of(&harness, TAIL, "scavenger", "CLOSE").await), "system_halted");

    // A signed global resume lifts only the global mode, which is already RUNNING.
    let global = signed_command(&harness, HALT, resume).await;
    assert_eq!(global["outcome"], "unchanged", "{global}");
    assert_eq!(halted_series(&harness.metrics(), "account:main").as_deref(), Some("1"));

    assert_eq!(signed_command(&harness, &account, resume).await["outcome"], "applied");
    assert_eq!(halted_series(&harness.metrics(), "account:main").as_deref(), Some("0"));
    assert_eq!(outcome(&order_of(&harness, TAIL, "scavenger", "BUY_SETUP").await), "admitted");
    assert!(
        harness.metrics().contains(r#"titan_gate_commands_total{command="resume",outcome="refused",auth="invalid"} 4"#),
        "{}",
        harness.metrics()
    );
}

#[tokio::test]
async fn halt_past_scope_bound_halts_globally() {
    let harness = Harness::start_with(true, |builder| {
        builder.env("TITAN_GATE_INITIAL_MODE", "running").env("TITAN_GATE_MAX_SCOPES", "2")
    })
    .await;
    let soft = br#"{"state":"SOFT_HALT","reason":"within the bound"}"#;
    for subject in [format!("{HALT}.venue.okx"), format!("{HALT}.strategy.hunter")] {
        let event = harness.command(&subject, soft, HeaderMap::new()).await;
        assert_eq!(event["outcome"], "applied", "{event}");
        assert_eq!(event["mode"], "SOFT_HALT", "{event}");
    }

    // Changing a scope already halted at the bound adds none, so it stays scoped.
    let stricter = harness.command(&format!("{HALT}.venue.okx"), br#"{"reason":"worse"}"#, HeaderMap::new()).await;
    assert_eq!(stricter["outcome"], "applied", "{stricter}");
    assert_eq!(harness.status()["mode"], "RUNNING");
    assert_eq!(outcome(&order_of(&harness, TAIL, "scavenger", "BUY_SETUP").await), "admitted");

    let third =
        harness.command(&format!("{HALT}.symbol.ETH_USDT"), br#"{"reason":"one too many"}"#, HeaderMap::new()).await;
    assert_eq!(third["outcome"], "applied", "a halt is never refused: {third}");
    assert_eq!(third["mode"], "HARD_HALT", "{third}");
    let status = harness.status();
    assert_eq!(status["mode"], "HARD_HALT", "{status}");
    assert!(status["reason"].as_str().unwrap().starts_with("SCOPE_LIMIT"), "{status}");
    assert!(status["reason"].as_str().unwrap().contains("one too many"), "{status}");
    assert_eq!(status["scopes"].as_array().map(Vec::len), Some(2), "{status}");

    let metrics = harness.metrics();
    assert_eq!(halted_series(&metrics, "global").as_deref(), Some("1"), "{metrics}");
    assert_eq!(halted_series(&metrics, "symbol:ETH_USDT"), None, "the scope past the bound gets no series");
    assert_eq!(rejection_reason(&order_of(&harness, TAIL, "scavenger", "CLOSE").await), "system_halted");
}
