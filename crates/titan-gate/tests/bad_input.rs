//! Hostile and broken orders over a real broker: each gets its reason, nothing panics,
//! nothing reaches the stream.

mod common;

use async_nats::HeaderMap;
use common::*;

#[tokio::test]
async fn bad_bodies_are_malformed_or_too_large() {
    let harness = Harness::start_with(true, |builder| {
        builder.env("TITAN_GATE_INITIAL_MODE", "running").env("TITAN_GATE_MAX_PAYLOAD_BYTES", "262144")
    })
    .await;
    let good = payload("sig-bad", "BUY_SETUP");
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("not json", b"hello".to_vec(), "malformed"),
        ("array", b"[1,2,3]".to_vec(), "malformed"),
        ("nesting 100,000 deep", deep.into_bytes(), "malformed"),
        ("over the size limit", vec![b'{'; 300_000], "payload_too_large"),
        ("invalid utf-8", b"{\"type\":\"\xff\xfe\"}".to_vec(), "malformed"),
        (
            "1e400",
            envelope_with_unchecked_signature(&good.replace("0.38771252914452203", "1e400")).into_bytes(),
            "malformed",
        ),
        (
            "-0 size",
            v1_envelope(&good.replace("0.38771252914452203", "-0"), now_ms(), &nonce()).into_bytes(),
            "malformed",
        ),
        (
            "lone surrogate",
            envelope_with_unchecked_signature(&good.replace("sig-bad", "sig-\\udc00")).into_bytes(),
            "malformed",
        ),
        (
            "duplicate key",
            unsigned_envelope(&good).replace(r#""version":1"#, r#""version":1,"version":2"#).into_bytes(),
            "malformed",
        ),
        (
            "__proto__ key",
            envelope_with_unchecked_signature(&good.replace(r#""size""#, r#""__proto__":{"x":1},"size""#)).into_bytes(),
            "malformed",
        ),
        ("missing payload", br#"{"type":"t","version":1,"producer":"p"}"#.to_vec(), "malformed"),
        (
            "version as string",
            unsigned_envelope(&good).replace(r#""version":1"#, r#""version":"1""#).into_bytes(),
            "malformed",
        ),
        ("size as string", unsigned_envelope(&good.replace("0.38771252914452203", "\"1\"")).into_bytes(), "malformed"),
        ("empty body", Vec::new(), "malformed"),
    ];
    for (name, body, expected) in cases {
        let verdict = harness.order(TAIL, body, HeaderMap::new()).await;
        assert_eq!(rejection_reason(&verdict), expected, "{name}: {verdict}");
    }
    assert_eq!(harness.gate.status_code("/healthz"), 200, "the gate survived");
    assert!(harness.stored_orders().await.is_empty());
}

#[tokio::test]
async fn bad_signatures_and_headers() {
    let harness = Harness::start().await;
    let body = unsigned_envelope(&payload("sig-headers", "BUY_SETUP"));
    let subject = format!("{INTAKE}.{TAIL}");
    let valid = v2_headers(STRATEGY_KEY_ID, STRATEGY_SECRET, &subject, body.as_bytes(), now_ms(), &nonce());

    let mut short = valid.clone();
    short.insert("Titan-Signature", "v2=abcdef");
    let mut not_hex = valid.clone();
    not_hex.insert("Titan-Signature", format!("v2={}", "zz".repeat(32)).as_str());
    let mut no_prefix = valid.clone();
    no_prefix.insert("Titan-Signature", "0".repeat(64).as_str());
    let mut garbage_timestamp = valid.clone();
    garbage_timestamp.insert("Titan-Timestamp", "yesterday");
    let mut garbage_nonce = valid.clone();
    garbage_nonce.insert("Titan-Nonce", "no spaces allowed");
    let mut missing_key = valid.clone();
    missing_key.insert("Titan-Key-Id", "nobody");

    let cases = [
        ("short signature", short, "hmac_signature_mismatch"),
        ("non-hex signature", not_hex, "hmac_signature_mismatch"),
        ("signature without v2=", no_prefix, "hmac_signature_mismatch"),
        ("garbage timestamp", garbage_timestamp, "malformed"),
        ("garbage nonce", garbage_nonce, "malformed"),
        ("unknown key", missing_key, "unknown_key"),
    ];
    for (name, headers, expected) in cases {
        let verdict = harness.order(TAIL, body.clone(), headers).await;
        assert_eq!(rejection_reason(&verdict), expected, "{name}: {verdict}");
    }
    let verdict = harness.order(TAIL, body, valid).await;
    assert_eq!(verdict["verdict"], "admitted", "the valid headers still work: {verdict}");
}

#[tokio::test]
async fn subject_without_route_tokens_is_malformed() {
    let harness = Harness::start().await;
    let body = v1_envelope(&payload("sig-route", "BUY_SETUP"), now_ms(), &nonce());
    let verdict = harness.order("binance", body, HeaderMap::new()).await;
    assert_eq!(rejection_reason(&verdict), "malformed", "{verdict}");
}

#[tokio::test]
async fn repeated_or_misspelled_signature_headers_are_malformed() {
    let harness = Harness::start().await;
    let body = unsigned_envelope(&payload("sig-twice", "BUY_SETUP"));
    let subject = format!("{INTAKE}.{TAIL}");
    let mut twice = v2_headers(STRATEGY_KEY_ID, STRATEGY_SECRET, &subject, body.as_bytes(), now_ms(), &nonce());
    twice.append("Titan-Signature", format!("v2={}", "0".repeat(64)).as_str());
    assert_eq!(rejection_reason(&harness.order(TAIL, body.clone(), twice).await), "malformed");

    let mut lowercase = v2_headers(STRATEGY_KEY_ID, STRATEGY_SECRET, &subject, body.as_bytes(), now_ms(), &nonce());
    lowercase.insert("titan-signature", "v2=garbage");
    assert_eq!(rejection_reason(&harness.order(TAIL, body.clone(), lowercase).await), "malformed");

    let mut spoofed = v2_headers(STRATEGY_KEY_ID, STRATEGY_SECRET, &subject, body.as_bytes(), now_ms(), &nonce());
    spoofed.insert("Titan-Gate-Epoch", "999999");
    spoofed.insert("Traceparent", "00-abc-def-01");
    assert_eq!(harness.order(TAIL, body, spoofed).await["verdict"], "admitted");
    let stored = harness.stored_orders().await;
    let epochs: Vec<&str> =
        stored[0].headers.get_all("Titan-Gate-Epoch").map(async_nats::HeaderValue::as_str).collect();
    assert_eq!(epochs, vec!["0"], "the producer's Titan-Gate-Epoch is dropped");
    assert_eq!(stored[0].headers.get("Traceparent").map(async_nats::HeaderValue::as_str), Some("00-abc-def-01"));
}
