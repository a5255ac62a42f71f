//! Orders as a Titan strategy sends them: v1-signed intent envelopes, sent as requests
//! on the gate's intake subjects, each getting a verdict in the reply.

use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;
use titan_gate_core::keyring::DEFAULT_KEY_ID;
use titan_gate_core::{Key, json, signature};

use crate::processes::random_hex;

/// The subject prefix on which strategies publish orders for the gate.
pub const INTAKE_PREFIX: &str = "titan.gate.execution.place.v1";
/// How long a strategy waits for a verdict.
const VERDICT_TIMEOUT: Duration = Duration::from_secs(5);

/// One trading intent: the intake route (`venue.account.symbol`) and the payload fields.
#[derive(Debug, Clone, Copy)]
pub struct Intent {
    pub route: &'static str,
    pub symbol: &'static str,
    /// The payload's `type`: `BUY_SETUP`, `SELL_SETUP`, `CLOSE_LONG`, `CLOSE_SHORT` or `CLOSE`.
    pub kind: &'static str,
    pub direction: i8,
    /// The size as the producer writes it, so a full-precision double keeps every digit.
    pub size: &'static str,
    pub entry: f64,
    pub stop_loss: f64,
    pub take_profit: f64,
    /// The strategy that produced the intent.
    pub source: &'static str,
}

/// An order that was sent and the verdict the gate returned.
#[derive(Debug)]
pub struct SentOrder {
    pub signal_id: String,
    pub body: Vec<u8>,
    pub verdict: Value,
}

/// Signs and sends orders with the Titan v1 shared secret, as Titan's signer does.
#[derive(Debug)]
pub struct Strategy {
    client: async_nats::Client,
    key: Key,
    run_id: String,
    sent: u32,
}

impl Strategy {
    pub fn new(client: async_nats::Client, v1_secret: &str) -> Strategy {
        let run_id = random_hex()[..8].to_owned();
        Strategy { client, key: Key::new(DEFAULT_KEY_ID, v1_secret.as_bytes(), Vec::new()), run_id, sent: 0 }
    }

    /// Sends `intent` as a request and returns the verdict, printing one line about it.
    pub async fn send(&mut self, intent: &Intent) -> anyhow::Result<SentOrder> {
        self.sent += 1;
        let signal_id = format!("demo-{}-{:02}", self.run_id, self.sent);
        let body = self.signed_envelope(&signal_id, intent)?;
        let subject = format!("{INTAKE_PREFIX}.{}", intent.route);

        let request = self.client.request(subject.clone(), body.clone().into());
        let reply = tokio::time::timeout(VERDICT_TIMEOUT, request)
            .await
            .with_context(|| format!("no verdict for {signal_id} on {subject} within {VERDICT_TIMEOUT:?}"))?
            .with_context(|| format!("the order request for {signal_id} on {subject} failed"))?;
        let verdict: Value = serde_json::from_slice(&reply.payload).with_context(|| {
            format!("the verdict for {signal_id} is not JSON: {:?}", String::from_utf8_lossy(&reply.payload))
        })?;

        println!(
            "  {signal_id}  {:<11} {:>19} {:<9} on {:<22} -> {}",
            intent.kind,
            intent.size,
            intent.symbol,
            intent.route,
            describe(&verdict)
        );
        Ok(SentOrder { signal_id, body: body.into_bytes(), verdict })
    }

    /// Builds the envelope with `ts`, `nonce` and `sig` over the canonical payload.
    fn signed_envelope(&self, signal_id: &str, intent: &Intent) -> anyhow::Result<String> {
        let now = now_ms();
        let payload = payload_text(signal_id, intent, now);
        let parsed = json::parse(payload.as_bytes())
            .map_err(|error| anyhow::anyhow!("the demo built an invalid payload: {error}: {payload}"))?;
        let nonce = random_hex();
        let sig = signature::sign_v1(&self.key, now, &nonce, &json::to_canonical_string(&parsed));
        Ok(format!(
            r#"{{"id":"intent-{signal_id}","type":"titan.cmd.execution.place.v1","version":1,"producer":"titan-brain","ts":{now},"nonce":"{nonce}","sig":"{sig}","payload":{payload}}}"#
        ))
    }
}

/// Builds the intent payload with the fields the execution service needs.
fn payload_text(signal_id: &str, intent: &Intent, now: i64) -> String {
    let Intent { symbol, kind, direction, size, entry, stop_loss, take_profit, source, .. } = *intent;
    let exchange = intent.route.split('.').next().unwrap_or("binance");
    format!(
        r#"{{"signal_id":"{signal_id}","symbol":"{symbol}","direction":{direction},"type":"{kind}","size":{size},"status":"VALIDATED","t_signal":{now},"stop_loss":{stop_loss},"child_fills":[],"source":"{source}","exchange":"{exchange}","entry_zone":[{entry}],"take_profits":[{take_profit}],"metadata":{{"regime":"trend","confidence":0.82}}}}"#
    )
}

/// Summarizes a verdict: `admitted (stream_seq 3, epoch 1)` or `rejected: system_halted (epoch 2)`.
fn describe(verdict: &Value) -> String {
    let epoch = &verdict["epoch"];
    match verdict["verdict"].as_str() {
        Some("admitted") => format!("admitted (stream_seq {}, epoch {epoch})", verdict["stream_seq"]),
        Some("rejected") => format!("rejected: {} (epoch {epoch})", verdict["reason"].as_str().unwrap_or("?")),
        _ => format!("unexpected verdict {verdict}"),
    }
}

/// Fails unless the order was admitted.
pub fn expect_admitted(order: &SentOrder) -> anyhow::Result<()> {
    anyhow::ensure!(
        order.verdict["verdict"] == "admitted",
        "order {} should have been admitted, but the verdict is {}",
        order.signal_id,
        order.verdict
    );
    Ok(())
}

/// Fails unless the order was rejected with `reason`.
pub fn expect_rejected(order: &SentOrder, reason: &str) -> anyhow::Result<()> {
    let rejected = order.verdict["verdict"] == "rejected" && order.verdict["reason"] == reason;
    anyhow::ensure!(
        rejected,
        "order {} should have been rejected with {reason}, but the verdict is {}",
        order.signal_id,
        order.verdict
    );
    Ok(())
}

/// Returns the current time in epoch milliseconds.
fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}
