//! Runs every recorded signature vector through the gate's own verifiers: Titan v1 via
//! `signature::verify_v1` over our canonical payload, and v2 via `signature::verify_v2`.

use serde::Deserialize;
use titan_gate_core::{Key, json, signature};

#[derive(Debug, Deserialize)]
struct V1Vector {
    name: String,
    secret: String,
    ts: i64,
    nonce: String,
    payload_text: String,
    sig: String,
}

#[derive(Debug, Deserialize)]
struct V2Vector {
    name: String,
    key_id: String,
    secret: String,
    subject: String,
    timestamp_ms: i64,
    nonce: String,
    body: String,
    headers: std::collections::BTreeMap<String, String>,
}

fn lines<T: for<'de> Deserialize<'de>>(text: &str) -> Vec<T> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).expect("fixture line parses"))
        .collect()
}

#[test]
fn every_v1_vector_verifies() {
    let vectors: Vec<V1Vector> = lines(include_str!("fixtures/titan-v1-signatures.jsonl"));
    assert!(vectors.len() >= 19);
    for vector in vectors {
        let key = Key::new("default", vector.secret.as_bytes(), vec![]);
        let canonical =
            json::to_canonical_string(&json::parse(vector.payload_text.as_bytes()).expect("payload parses"));
        let result = signature::verify_v1(&key, vector.ts, &vector.nonce, &canonical, &vector.sig);
        assert_eq!(result, Ok(()), "{}", vector.name);
        let tampered = signature::verify_v1(&key, vector.ts + 1, &vector.nonce, &canonical, &vector.sig);
        assert!(tampered.is_err(), "{}: another timestamp must not verify", vector.name);
    }
}

#[test]
fn every_v2_vector_verifies() {
    let vectors: Vec<V2Vector> = lines(include_str!("fixtures/gate-v2-signatures.jsonl"));
    assert!(vectors.len() >= 5);
    for vector in vectors {
        let key = Key::new(vector.key_id.clone(), vector.secret.as_bytes(), vec![]);
        let timestamp = vector.timestamp_ms.to_string();
        assert_eq!(vector.headers["Titan-Timestamp"], timestamp, "{}", vector.name);
        assert_eq!(vector.headers["Titan-Key-Id"], vector.key_id, "{}", vector.name);
        assert_eq!(vector.headers["Titan-Nonce"], vector.nonce, "{}", vector.name);
        let header = &vector.headers["Titan-Signature"];
        let body = vector.body.as_bytes();
        assert_eq!(
            signature::verify_v2(&key, &vector.subject, &timestamp, &vector.nonce, body, header),
            Ok(()),
            "{}",
            vector.name
        );
        assert_eq!(
            &signature::sign_v2(&key, &vector.subject, &timestamp, &vector.nonce, body),
            header,
            "{}",
            vector.name
        );
        let other_subject = format!("{}.x", vector.subject);
        assert!(
            signature::verify_v2(&key, &other_subject, &timestamp, &vector.nonce, body, header).is_err(),
            "{}",
            vector.name
        );
    }
}
