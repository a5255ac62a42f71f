//! Shared harness of the black-box tests: a real nats-server with the `TITAN_CMD`
//! stream, a real `titan-gate` process, and signed Titan orders.

#![allow(dead_code, reason = "each test binary uses a different part of the harness")]

pub mod stale;
pub mod users;

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::stream::{Config, RetentionPolicy, Stream};
use futures::StreamExt;
use serde_json::Value;
use titan_gate_core::keyring::DEFAULT_KEY_ID;
use titan_gate_core::{Key, json, signature};
use titan_gate_test_support::{GateProcess, GateProcessBuilder, NatsServer, wait_until};

/// The gate binary under test.
pub const GATE_BINARY: &str = env!("CARGO_BIN_EXE_titan-gate");
pub const V1_SECRET: &str = "titan-test-secret";
pub const OPS_KEY_ID: &str = "ops-test";
pub const OPS_SECRET: &str = "ops-test-secret";
pub const STRATEGY_KEY_ID: &str = "strategy-a";
pub const STRATEGY_SECRET: &str = "strategy-a-secret";
pub const INTAKE: &str = "titan.gate.execution.place.v1";
pub const FORWARD: &str = "titan.cmd.execution.place.v1";
pub const HALT: &str = "titan.cmd.sys.halt.v1";
pub const TAIL: &str = "binance.main.BTC_USDT";
pub const WAIT: Duration = Duration::from_secs(10);

/// Keys of every test gate: an operator key and an order key for strategy-a.
pub const KEYRING: &str = r#"
[[key]]
id = "ops-test"
secret = "ops-test-secret"
roles = ["halt", "resume"]

[[key]]
id = "strategy-a"
secret = "strategy-a-secret"
roles = ["order"]
"#;

/// A nats-server, a client, and a gate.
pub struct Harness {
    pub server: NatsServer,
    pub client: async_nats::Client,
    pub jetstream: async_nats::jetstream::Context,
    pub gate: GateProcess,
    pub keyring_dir: tempfile::TempDir,
}

impl Harness {
    /// Starts a server with `TITAN_CMD` and a gate that starts RUNNING.
    pub async fn start() -> Harness {
        Harness::start_with(true, |builder| builder.env("TITAN_GATE_INITIAL_MODE", "running")).await
    }

    /// Starts a server, optionally with `TITAN_CMD`, and a gate configured by `configure`.
    pub async fn start_with(
        with_stream: bool,
        configure: impl FnOnce(GateProcessBuilder) -> GateProcessBuilder,
    ) -> Harness {
        let server = NatsServer::start().expect("nats-server starts");
        let client = async_nats::connect(server.url()).await.expect("test client connects");
        let jetstream = async_nats::jetstream::new(client.clone());
        if with_stream {
            create_titan_stream(&jetstream).await;
        }
        let keyring_dir = tempfile::tempdir().expect("temporary folder");
        let keyring_path = keyring_dir.path().join("keyring.toml");
        std::fs::write(&keyring_path, KEYRING).expect("keyring written");

        let builder = GateProcess::builder(GATE_BINARY, server.url())
            .env("TITAN_HMAC_SECRET", V1_SECRET)
            .env("TITAN_GATE_KEYRING", keyring_path.display().to_string());
        let gate = configure(builder).start().await.expect("gate starts");
        if with_stream {
            gate.wait_ready(WAIT).await.unwrap_or_else(|error| panic!("{error}\n{}", gate.log()));
        } else {
            wait_until(WAIT, "the gate to report only the missing stream", || async {
                gate.get("/readyz").is_some_and(|response| {
                    response.status == 503
                        && response.body.lines().filter(|line| line.starts_with("- ")).count() == 1
                        && response.body.contains("no JetStream stream")
                })
            })
            .await
            .unwrap_or_else(|error| panic!("{error}\n{}", gate.log()));
        }
        Harness { server, client, jetstream, gate, keyring_dir }
    }

    /// Sends an order as a request and returns the verdict reply.
    pub async fn order(&self, tail: &str, body: impl Into<Vec<u8>>, headers: HeaderMap) -> Value {
        let subject = format!("{INTAKE}.{tail}");
        let request = async_nats::Request::new().payload(body.into().into()).headers(headers).timeout(Some(WAIT));
        let reply = self
            .client
            .send_request(subject, request)
            .await
            .unwrap_or_else(|error| panic!("order request failed: {error}\n{}", self.gate.log()));
        serde_json::from_slice(&reply.payload).expect("verdict reply is JSON")
    }

    /// Sends a v1-signed order with a fresh nonce and returns the verdict.
    pub async fn signed_order(&self, signal_id: &str) -> Value {
        self.order(TAIL, v1_envelope(&payload(signal_id, "BUY_SETUP"), now_ms(), &nonce()), HeaderMap::new()).await
    }

    /// Sends a v1-signed order like [`Self::signed_order`] and records it in `checker`.
    pub async fn checked_order(&self, checker: &mut stale::StaleChecker, signal_id: &str) -> Value {
        let sent_at = std::time::Instant::now();
        let verdict = self.signed_order(signal_id).await;
        checker.record_verdict(sent_at, &verdict);
        verdict
    }

    /// Publishes a halt-subject message (no reply) and waits for this gate's command event.
    pub async fn command(&self, subject: &str, body: &[u8], headers: HeaderMap) -> Value {
        let mut events = self.client.subscribe("titan.evt.gate.command.v1").await.expect("subscribe to command events");
        self.client.flush().await.expect("flush");
        self.client
            .publish_with_headers(subject.to_owned(), headers, body.to_vec().into())
            .await
            .expect("publish command");
        let event =
            tokio::time::timeout(WAIT, events.next()).await.expect("command event arrives").expect("subscription open");
        serde_json::from_slice(&event.payload).expect("command event is JSON")
    }

    /// Sends a v2-signed resume with the ops key.
    pub async fn resume(&self) -> Value {
        let body = br#"{"state":"OPEN","reason":"test resume","operator":"tester"}"#;
        self.command(HALT, body, v2_headers(OPS_KEY_ID, OPS_SECRET, HALT, body, now_ms(), &nonce())).await
    }

    /// Reads every record stored in the audit stream, in stream order; none before it exists.
    pub async fn audit_records(&self) -> Vec<Value> {
        let Ok(mut stream) = self.jetstream.get_stream(titan_gate::audit::AUDIT_STREAM).await else {
            return Vec::new();
        };
        let last = stream.info().await.expect("audit stream info").state.last_sequence;
        let mut records = Vec::new();
        for sequence in 1..=last {
            let message = stream.get_raw_message(sequence).await.expect("audit record stored");
            records.push(serde_json::from_slice(&message.payload).expect("audit record is JSON"));
        }
        records
    }

    /// Returns the forwarded orders stored in `TITAN_CMD`, in stream order.
    pub async fn stored_orders(&self) -> Vec<async_nats::jetstream::message::StreamMessage> {
        let mut stream = self.jetstream.get_stream("TITAN_CMD").await.expect("TITAN_CMD exists");
        let last = stream.info().await.expect("stream info").state.last_sequence;
        let mut stored = Vec::new();
        for sequence in 1..=last {
            if let Ok(message) = stream.get_raw_message(sequence).await
                && message.subject.starts_with("titan.cmd.execution.")
            {
                stored.push(message);
            }
        }
        stored
    }

    /// Returns the gate's `/metrics` text.
    pub fn metrics(&self) -> String {
        self.gate.get("/metrics").expect("metrics answer").body
    }

    /// Returns the gate's `/status` document.
    pub fn status(&self) -> Value {
        serde_json::from_str(&self.gate.get("/status").expect("status answers").body).expect("status is JSON")
    }

    /// Waits until `/status` reports `mode`.
    pub async fn wait_mode(&self, mode: &str) {
        wait_until(WAIT, &format!("mode {mode}"), || async { self.status()["mode"] == mode })
            .await
            .expect("mode reached");
    }
}

impl Harness {
    /// Starts another gate replica on this harness's server, with the same keys.
    pub async fn replica(
        &self,
        gate_id: &str,
        configure: impl FnOnce(GateProcessBuilder) -> GateProcessBuilder,
    ) -> GateProcess {
        let keyring = self.keyring_dir.path().join("keyring.toml");
        let builder = GateProcess::builder(GATE_BINARY, self.server.url())
            .gate_id(gate_id)
            .env("TITAN_HMAC_SECRET", V1_SECRET)
            .env("TITAN_GATE_KEYRING", keyring.display().to_string());
        configure(builder).start().await.expect("replica starts")
    }
}

/// Returns a gate's `/status` document.
pub fn status_of(gate: &GateProcess) -> Value {
    serde_json::from_str(&gate.get("/status").expect("status answers").body).expect("status is JSON")
}

/// Creates the stream Titan's execution service owns, as it configures it.
pub async fn create_titan_stream(jetstream: &async_nats::jetstream::Context) -> Stream {
    jetstream
        .create_stream(Config {
            name: "TITAN_CMD".to_owned(),
            subjects: vec!["titan.cmd.>".to_owned()],
            retention: RetentionPolicy::WorkQueue,
            duplicate_window: Duration::from_secs(60),
            ..Config::default()
        })
        .await
        .expect("TITAN_CMD created")
}

/// Returns the current time in epoch milliseconds.
pub fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock after 1970").as_millis(),
    )
    .expect("fits")
}

/// Returns 32 random lowercase hex characters, like the Titan signer's nonces.
pub fn nonce() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// A Titan intent payload.
pub fn payload(signal_id: &str, intent_type: &str) -> String {
    format!(
        r#"{{"signal_id":"{signal_id}","symbol":"BTC/USDT","direction":1,"type":"{intent_type}","size":0.38771252914452203,"status":"VALIDATED","t_signal":1764806400000,"stop_loss":49000,"child_fills":[],"source":"scavenger","entry_zone":[50000],"metadata":{{"note":"caf\u00e9"}}}}"#
    )
}

/// A Titan envelope around `payload`, signed with the v1 secret.
pub fn v1_envelope(payload: &str, ts: i64, nonce: &str) -> String {
    let key = Key::new(DEFAULT_KEY_ID, V1_SECRET.as_bytes(), vec![]);
    let canonical = json::to_canonical_string(&json::parse(payload.as_bytes()).expect("payload parses"));
    let sig = signature::sign_v1(&key, ts, nonce, &canonical);
    format!(
        r#"{{"id":"intent-{nonce}","type":"titan.cmd.execution.place.v1","version":1,"producer":"titan-brain","ts":{ts},"nonce":"{nonce}","sig":"{sig}","payload":{payload}}}"#
    )
}

/// A Titan envelope around `payload` without any signature.
pub fn unsigned_envelope(payload: &str) -> String {
    format!(r#"{{"type":"titan.cmd.execution.place.v1","version":1,"producer":"titan-brain","payload":{payload}}}"#)
}

/// The four v2 headers for `body` on `subject`.
pub fn v2_headers(key_id: &str, secret: &str, subject: &str, body: &[u8], timestamp: i64, nonce: &str) -> HeaderMap {
    let timestamp = timestamp.to_string();
    let signature = signature::sign_v2(&Key::new(key_id, secret.as_bytes(), vec![]), subject, &timestamp, nonce, body);
    let mut headers = HeaderMap::new();
    headers.insert("Titan-Key-Id", key_id);
    headers.insert("Titan-Timestamp", timestamp.as_str());
    headers.insert("Titan-Nonce", nonce);
    headers.insert("Titan-Signature", signature.as_str());
    headers
}

/// Returns the reason code of a rejected verdict, panicking with the reply otherwise.
pub fn rejection_reason(verdict: &Value) -> &str {
    assert_eq!(verdict["verdict"], "rejected", "expected a rejection: {verdict}");
    verdict["reason"].as_str().expect("reason is a string")
}

/// A Titan envelope with signature fields whose signature is not computed, for payloads
/// that no signer can canonicalize.
pub fn envelope_with_unchecked_signature(payload: &str) -> String {
    let sig = "0".repeat(64);
    format!(
        r#"{{"type":"titan.cmd.execution.place.v1","version":1,"producer":"titan-brain","ts":{},"nonce":"{}","sig":"{sig}","payload":{payload}}}"#,
        now_ms(),
        nonce()
    )
}

/// Returns the value of one series in Prometheus text, such as
/// `titan_gate_halt_notices_total{outcome="received"}`, or `None` when it is absent.
pub fn metric_value(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Sends a v1-signed opening order of `strategy` (the payload's `source`) and returns the verdict.
pub async fn strategy_order(harness: &Harness, strategy: &str, signal_id: &str) -> Value {
    let payload =
        payload(signal_id, "BUY_SETUP").replace(r#""source":"scavenger""#, &format!(r#""source":"{strategy}""#));
    harness.order(TAIL, v1_envelope(&payload, now_ms(), &nonce()), HeaderMap::new()).await
}
