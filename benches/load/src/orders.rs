//! Signed Titan orders as a strategy sends them: a v1 envelope signed like the Titan
//! signer, or an envelope with titan-gate v2 headers.

use std::time::{SystemTime, UNIX_EPOCH};

use async_nats::HeaderMap;
use bytes::Bytes;
use titan_gate_core::keyring::DEFAULT_KEY_ID;
use titan_gate_core::{Key, json, signature};

use crate::cli::Scheme;

/// The Titan v1 shared secret of the gate under load.
pub const V1_SECRET: &str = "titan-load-v1-secret";
/// The v2 order key.
pub const ORDER_KEY_ID: &str = "strategy-load";
/// The v2 order key's secret.
pub const ORDER_SECRET: &str = "strategy-load-secret";
/// The operators' key, with roles halt and resume.
pub const OPS_KEY_ID: &str = "ops-load";
/// The operators' key's secret.
pub const OPS_SECRET: &str = "ops-load-secret";

/// The gate's keyring file for these keys.
pub const KEYRING: &str = r#"
[[key]]
id = "ops-load"
secret = "ops-load-secret"
roles = ["halt", "resume"]

[[key]]
id = "strategy-load"
secret = "strategy-load-secret"
roles = ["order"]
"#;

/// Header that carries the send time, in nanoseconds since the run's clock origin. The
/// gate and the forwarder copy it to the stored order, so a subscriber on the forward
/// subject can time a fire-and-forget order.
pub const HEADER_SENT_NS: &str = "Load-Sent-Ns";

/// Stands in for the signal id while the payload template is canonicalized.
const SIGNAL_PLACEHOLDER: &str = "SIGNALIDPLACEHOLDER";

/// Builds signed orders with unique ids, nonces and a body of a fixed size.
#[derive(Debug)]
pub struct OrderFactory {
    scheme: Scheme,
    v1_key: Key,
    v2_key: Key,
    /// Prefix of every message id, unique per factory so that ids never repeat inside
    /// the stream's duplicate window across paths and runs.
    id_prefix: String,
    /// The canonical payload before and after the signal id.
    payload_head: String,
    payload_tail: String,
}

/// One order, ready to publish.
#[derive(Debug)]
pub struct SignedOrder {
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl OrderFactory {
    /// Creates a factory whose envelopes are `body_bytes` long (or the minimum size, if
    /// that is larger). `label` goes into every message id.
    pub fn new(scheme: Scheme, body_bytes: usize, label: &str) -> Self {
        let id_prefix = format!("load-{label}-{:08x}-", rand::random::<u32>());
        let unpadded = Self::with_padding(scheme, id_prefix.clone(), 0);
        let sample = unpadded.order("subject", 0, 0);
        let padding = body_bytes.saturating_sub(sample.body.len());
        Self::with_padding(scheme, id_prefix, padding)
    }

    fn with_padding(scheme: Scheme, id_prefix: String, padding: usize) -> Self {
        // Keys in sorted order and numbers in their shortest form, so the text is its own
        // canonical form; `canonical_template` checks that.
        let template = format!(
            r#"{{"child_fills":[],"direction":1,"entry_zone":[50000.25,50100.75],"metadata":{{"pad":"{}"}},"signal_id":"{SIGNAL_PLACEHOLDER}","size":0.38771252914452203,"source":"scavenger","status":"VALIDATED","stop_loss":49012.5,"symbol":"BTC/USDT","t_signal":1764806400000,"type":"BUY_SETUP"}}"#,
            "x".repeat(padding)
        );
        let canonical = canonical_template(&template);
        let (head, tail) = canonical.split_once(SIGNAL_PLACEHOLDER).expect("the template contains the placeholder");
        Self {
            scheme,
            v1_key: Key::new(DEFAULT_KEY_ID, V1_SECRET.as_bytes(), vec![]),
            v2_key: Key::new(ORDER_KEY_ID, ORDER_SECRET.as_bytes(), vec![]),
            id_prefix,
            payload_head: head.to_owned(),
            payload_tail: tail.to_owned(),
        }
    }

    /// Returns order number `sequence` for `subject`, signed now, with `sent_ns` in its
    /// send-time header and a `Nats-Msg-Id` that every path forwards unchanged.
    pub fn order(&self, subject: &str, sequence: u64, sent_ns: u64) -> SignedOrder {
        let msg_id = format!("{}{sequence:012}", self.id_prefix);
        let payload = format!("{}{msg_id}{}", self.payload_head, self.payload_tail);
        let ts = now_ms();
        let nonce = format!("{:032x}", rand::random::<u128>());
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", msg_id.as_str());
        headers.insert(HEADER_SENT_NS, sent_ns.to_string().as_str());

        let body = match self.scheme {
            Scheme::V1 => {
                // The payload is already canonical, so it is signed as it is.
                let sig = signature::sign_v1(&self.v1_key, ts, &nonce, &payload);
                format!(
                    r#"{{"id":"{msg_id}","type":"titan.cmd.execution.place.v1","version":1,"producer":"titan-gate-load","ts":{ts},"nonce":"{nonce}","sig":"{sig}","payload":{payload}}}"#
                )
            }
            Scheme::V2 => {
                let body = format!(
                    r#"{{"id":"{msg_id}","type":"titan.cmd.execution.place.v1","version":1,"producer":"titan-gate-load","payload":{payload}}}"#
                );
                let timestamp = ts.to_string();
                let signature = signature::sign_v2(&self.v2_key, subject, &timestamp, &nonce, body.as_bytes());
                headers.insert("Titan-Key-Id", ORDER_KEY_ID);
                headers.insert("Titan-Timestamp", timestamp.as_str());
                headers.insert("Titan-Nonce", nonce.as_str());
                headers.insert("Titan-Signature", signature.as_str());
                body
            }
        };
        SignedOrder { headers, body: Bytes::from(body) }
    }
}

/// Returns the canonical form of the payload template, which must equal the template:
/// otherwise the v1 signatures, made over the template's text, would not verify.
fn canonical_template(template: &str) -> String {
    let canonical = json::to_canonical_string(&json::parse(template.as_bytes()).expect("the payload template parses"));
    assert_eq!(canonical, template, "the payload template must be written in its canonical form");
    canonical
}

/// Returns the current time in epoch milliseconds.
pub fn now_ms() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

/// Returns a v2-signed command body and headers for the ops key on `subject`.
pub fn signed_command(subject: &str, body: &str) -> (HeaderMap, Bytes) {
    let key = Key::new(OPS_KEY_ID, OPS_SECRET.as_bytes(), vec![]);
    let timestamp = now_ms().to_string();
    let nonce = format!("{:032x}", rand::random::<u128>());
    let signature = signature::sign_v2(&key, subject, &timestamp, &nonce, body.as_bytes());
    let mut headers = HeaderMap::new();
    headers.insert("Titan-Key-Id", OPS_KEY_ID);
    headers.insert("Titan-Timestamp", timestamp.as_str());
    headers.insert("Titan-Nonce", nonce.as_str());
    headers.insert("Titan-Signature", signature.as_str());
    (headers, Bytes::from(body.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use titan_gate_core::signature::{verify_v1, verify_v2};

    #[test]
    fn body_has_requested_size() {
        for scheme in [Scheme::V1, Scheme::V2] {
            let factory = OrderFactory::new(scheme, 2_000, "test");
            let order = factory.order("titan.gate.execution.place.v1.a.b.c", 12_345, 7);
            assert_eq!(order.body.len(), 2_000, "{scheme:?}");
        }
    }

    #[test]
    fn v1_signature_verifies() {
        let factory = OrderFactory::new(Scheme::V1, 400, "test");
        let order = factory.order("subject", 1, 0);
        let value = json::parse(&order.body).expect("the envelope parses");
        let canonical = json::to_canonical_string(value.get("payload").expect("payload"));
        let ts = value.get("ts").and_then(json::Value::as_f64).expect("ts");
        #[allow(clippy::cast_possible_truncation, reason = "ts is a whole number of milliseconds")]
        let ts = ts as i64;
        let nonce = value.get("nonce").and_then(json::Value::as_str).expect("nonce");
        let sig = value.get("sig").and_then(json::Value::as_str).expect("sig");
        assert_eq!(verify_v1(&factory.v1_key, ts, nonce, &canonical, sig), Ok(()));
    }

    #[test]
    fn v2_signature_verifies() {
        let factory = OrderFactory::new(Scheme::V2, 400, "test");
        let subject = "titan.gate.execution.place.v1.a.b.c";
        let order = factory.order(subject, 1, 0);
        let header = |name: &str| order.headers.get(name).expect("header present").as_str().to_owned();
        let verified = verify_v2(
            &factory.v2_key,
            subject,
            &header("Titan-Timestamp"),
            &header("Titan-Nonce"),
            &order.body,
            &header("Titan-Signature"),
        );
        assert_eq!(verified, Ok(()));
    }

    #[test]
    fn message_ids_differ_between_orders_and_factories() {
        let first = OrderFactory::new(Scheme::V1, 400, "test");
        let second = OrderFactory::new(Scheme::V1, 400, "test");
        let id = |factory: &OrderFactory, sequence| {
            factory.order("s", sequence, 0).headers.get("Nats-Msg-Id").expect("message id").as_str().to_owned()
        };
        assert_ne!(id(&first, 1), id(&first, 2));
        assert_ne!(id(&first, 1), id(&second, 1));
    }
}
