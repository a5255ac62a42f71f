//! Live key rotation on a running gate: a new key added on SIGHUP, the old one removed by
//! editing the keyring file, while orders keep flowing and every verdict is counted.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_nats::HeaderMap;
use common::*;
use serde_json::Value;
use titan_gate_test_support::wait_until;

const OLD_KEY_ID: &str = "orders-2026-11";
const OLD_SECRET: &str = "orders-2026-11-secret";
const NEW_KEY_ID: &str = "orders-2026-12";
const NEW_SECRET: &str = "orders-2026-12-secret";

/// How long a reload may take to show in `/status`: a file change settles over two
/// polls of one second each, so this leaves several seconds of margin.
const RELOAD_WAIT: Duration = Duration::from_secs(15);

/// Fragments of the JSON log line of a reload, by what started it.
const SIGHUP_RELOAD: &str = r#""trigger":"SIGHUP""#;
const FILE_CHANGE_RELOAD: &str = r#""trigger":"file change""#;

const OPS_KEY: &str = r#"
[[key]]
id = "ops-test"
secret = "ops-test-secret"
roles = ["halt", "resume"]
"#;

fn order_key(id: &str, secret: &str) -> String {
    format!("\n[[key]]\nid = \"{id}\"\nsecret = \"{secret}\"\nroles = [\"order\"]\n")
}

/// Counts of the outcomes of an order flow.
#[derive(Debug, Default)]
struct Tally {
    sent: AtomicU64,
    admitted: AtomicU64,
    rejected: AtomicU64,
    failed_requests: AtomicU64,
}

/// Sends v2-signed orders one after another until `stop` is set, signing with the new key
/// once `use_new_key` is set, and counts every outcome in `tally`.
async fn send_orders(
    client: async_nats::Client,
    use_new_key: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) {
    let subject = format!("{INTAKE}.{TAIL}");
    let mut number = 0u64;
    while !stop.load(Ordering::SeqCst) {
        number += 1;
        let (key_id, secret) =
            if use_new_key.load(Ordering::SeqCst) { (NEW_KEY_ID, NEW_SECRET) } else { (OLD_KEY_ID, OLD_SECRET) };
        let body = unsigned_envelope(&payload(&format!("sig-rotation-{number}"), "BUY_SETUP"));
        let headers = v2_headers(key_id, secret, &subject, body.as_bytes(), now_ms(), &nonce());
        let request = async_nats::Request::new().payload(body.into()).headers(headers).timeout(Some(WAIT));

        tally.sent.fetch_add(1, Ordering::SeqCst);
        let Ok(reply) = client.send_request(subject.clone(), request).await else {
            tally.failed_requests.fetch_add(1, Ordering::SeqCst);
            continue;
        };
        let verdict: Value = serde_json::from_slice(&reply.payload).unwrap_or(Value::Null);
        if verdict["verdict"] == "admitted" {
            tally.admitted.fetch_add(1, Ordering::SeqCst);
        } else {
            eprintln!("order {number} signed by {key_id} was not admitted: {verdict}");
            tally.rejected.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Returns the key ids `/status` lists.
fn key_ids(harness: &Harness) -> Vec<String> {
    harness.status()["keys"]
        .as_array()
        .map(|ids| ids.iter().filter_map(|id| id.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// Returns how many log lines contain `text`.
fn count_in_log(harness: &Harness, text: &str) -> usize {
    harness.gate.log().lines().filter(|line| line.contains(text)).count()
}

/// Sends one order signed by `key_id` and returns its verdict.
async fn order_signed_by(harness: &Harness, key_id: &str, secret: &str, signal_id: &str) -> Value {
    let subject = format!("{INTAKE}.{TAIL}");
    let body = unsigned_envelope(&payload(signal_id, "BUY_SETUP"));
    let headers = v2_headers(key_id, secret, &subject, body.as_bytes(), now_ms(), &nonce());
    harness.order(TAIL, body, headers).await
}

/// Waits until `at_least` more orders of the flow have been admitted.
async fn wait_for_admissions(tally: &Tally, at_least: u64, what: &str) {
    let start = tally.admitted.load(Ordering::SeqCst);
    wait_until(WAIT, what, || async { tally.admitted.load(Ordering::SeqCst) >= start + at_least })
        .await
        .expect("orders keep being admitted");
}

#[tokio::test]
async fn rotation_keeps_orders_flowing() {
    let harness = Harness::start_with(true, |builder| {
        builder.env("TITAN_GATE_INITIAL_MODE", "running").env("TITAN_GATE_LOG_FORMAT", "json")
    })
    .await;
    let keyring_path = harness.keyring_dir.path().join("keyring.toml");
    std::fs::write(&keyring_path, format!("{OPS_KEY}{}", order_key(OLD_KEY_ID, OLD_SECRET))).expect("keyring written");
    wait_until(RELOAD_WAIT, "the old key to be loaded", || async {
        key_ids(&harness).contains(&OLD_KEY_ID.to_owned())
    })
    .await
    .expect("first keyring loaded");

    let use_new_key = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let flow = tokio::spawn(send_orders(harness.client.clone(), use_new_key.clone(), stop.clone(), tally.clone()));
    wait_for_admissions(&tally, 20, "orders signed by the old key to be admitted").await;

    // Overlap: both keys, put in force by SIGHUP.
    let both = format!("{OPS_KEY}{}{}", order_key(OLD_KEY_ID, OLD_SECRET), order_key(NEW_KEY_ID, NEW_SECRET));
    std::fs::write(&keyring_path, both).expect("keyring written");
    harness.gate.hangup().expect("SIGHUP sent");
    wait_until(RELOAD_WAIT, "the gate to log a reload on SIGHUP", || async {
        count_in_log(&harness, SIGHUP_RELOAD) == 1
    })
    .await
    .unwrap_or_else(|error| panic!("{error}\n{}", harness.gate.log()));
    wait_until(RELOAD_WAIT, "the new key to be loaded", || async {
        key_ids(&harness).contains(&NEW_KEY_ID.to_owned())
    })
    .await
    .expect("overlapping keyring loaded");
    wait_for_admissions(&tally, 20, "orders signed by the old key to be admitted during the overlap").await;
    let old_during_overlap = order_signed_by(&harness, OLD_KEY_ID, OLD_SECRET, "sig-old-overlap").await;
    assert_eq!(old_during_overlap["verdict"], "admitted", "old key during the overlap: {old_during_overlap}");

    use_new_key.store(true, Ordering::SeqCst);
    wait_for_admissions(&tally, 20, "orders signed by the new key to be admitted").await;

    // Removal: the old key goes, noticed through the file change alone.
    let file_reloads_before = count_in_log(&harness, FILE_CHANGE_RELOAD);
    std::fs::write(&keyring_path, format!("{OPS_KEY}{}", order_key(NEW_KEY_ID, NEW_SECRET))).expect("keyring written");
    wait_until(RELOAD_WAIT, "the old key to be removed", || async {
        !key_ids(&harness).contains(&OLD_KEY_ID.to_owned())
    })
    .await
    .unwrap_or_else(|error| panic!("{error}\n{}", harness.gate.log()));
    assert!(count_in_log(&harness, FILE_CHANGE_RELOAD) > file_reloads_before, "the file change reloaded the keyring");
    wait_for_admissions(&tally, 20, "orders signed by the new key to be admitted after the removal").await;
    let old_after_removal = order_signed_by(&harness, OLD_KEY_ID, OLD_SECRET, "sig-old-removed").await;
    assert_eq!(rejection_reason(&old_after_removal), "unknown_key", "{old_after_removal}");

    stop.store(true, Ordering::SeqCst);
    tokio::time::timeout(WAIT, flow).await.expect("the order flow stops").expect("the order flow did not panic");
    let sent = tally.sent.load(Ordering::SeqCst);
    let admitted = tally.admitted.load(Ordering::SeqCst);
    eprintln!("order flow during the rotation: {sent} sent, {admitted} admitted");
    assert_eq!(tally.failed_requests.load(Ordering::SeqCst), 0, "every order got a reply");
    assert_eq!(tally.rejected.load(Ordering::SeqCst), 0, "no order signed by a key in force was rejected");
    assert_eq!(admitted, sent, "every order sent was admitted");
    assert_eq!(harness.gate.status_code("/healthz"), 200, "the gate ran throughout");

    let stored = harness.stored_orders().await.len();
    let stored_expected = usize::try_from(admitted + 1).expect("fits");
    assert_eq!(stored, stored_expected, "the stream holds the flow's orders and the one overlap order");
    assert_eq!(metric_value(&harness.metrics(), r#"titan_gate_keyring_reloads_total{outcome="failed"}"#), Some(0.0));
}

#[tokio::test]
async fn broken_keyring_keeps_previous_keys() {
    let harness = Harness::start().await;
    let keyring_path = harness.keyring_dir.path().join("keyring.toml");
    std::fs::write(&keyring_path, "[[key]]\nid = \"half-written\nsecret = ").expect("keyring written");
    harness.gate.hangup().expect("SIGHUP sent");

    let failed = r#"titan_gate_keyring_reloads_total{outcome="failed"}"#;
    wait_until(RELOAD_WAIT, "the reload to fail", || async {
        metric_value(&harness.metrics(), failed).is_some_and(|count| count >= 1.0)
    })
    .await
    .unwrap_or_else(|error| panic!("{error}\n{}", harness.gate.log()));
    // The counter can rise before the log line reaches the gate's log file.
    harness
        .gate
        .wait_for_log("the previous keys stay in force", RELOAD_WAIT)
        .await
        .unwrap_or_else(|error| panic!("{error}\n{}", harness.gate.log()));

    let verdict = order_signed_by(&harness, STRATEGY_KEY_ID, STRATEGY_SECRET, "sig-after-broken-reload").await;
    assert_eq!(verdict["verdict"], "admitted", "the keys loaded at start are still in force: {verdict}");
    let verdict = harness.order(TAIL, unsigned_envelope(&payload("sig-unsigned", "BUY_SETUP")), HeaderMap::new()).await;
    assert_eq!(rejection_reason(&verdict), "unsigned", "{verdict}");
}
