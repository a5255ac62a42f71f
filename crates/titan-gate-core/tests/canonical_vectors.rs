//! Checks the canonical form and HMAC of every recorded titan v1 signature vector.
//!
//! Each fixture line contains a payload text as published, the canonical payload that the
//! JavaScript signer computed and the signature it sent.

use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;
use titan_gate_core::json;

const VECTORS: &str = include_str!("fixtures/titan-v1-signatures.jsonl");

#[derive(Debug, Deserialize)]
struct Vector {
    name: String,
    secret: String,
    ts: u64,
    nonce: String,
    payload_text: String,
    canonical_payload: String,
    sig: String,
}

fn vectors() -> Vec<Vector> {
    VECTORS
        .lines()
        .filter(|line| !line.trim().is_empty())
        .enumerate()
        .map(|(index, line)| {
            serde_json::from_str(line).unwrap_or_else(|error| panic!("fixture line {}: {error}", index + 1))
        })
        .collect()
}

/// Returns lowercase hex HMAC-SHA256 over `{ts}.{nonce}.{canonical}`.
fn sign(secret: &str, ts: u64, nonce: &str, canonical: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(format!("{ts}.{nonce}.{canonical}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[test]
fn fixture_has_vectors() {
    assert!(vectors().len() >= 19, "expected at least 19 titan v1 vectors");
}

#[test]
fn canonical_form_matches_signer() {
    for vector in vectors() {
        let value = json::parse(vector.payload_text.as_bytes())
            .unwrap_or_else(|error| panic!("{}: payload rejected: {error}", vector.name));
        let canonical = json::to_canonical_string(&value);
        assert_eq!(canonical, vector.canonical_payload, "{}", vector.name);
    }
}

#[test]
fn signature_over_canonical_form_matches() {
    for vector in vectors() {
        let value = json::parse(vector.payload_text.as_bytes())
            .unwrap_or_else(|error| panic!("{}: payload rejected: {error}", vector.name));
        let canonical = json::to_canonical_string(&value);
        let signature = sign(&vector.secret, vector.ts, &vector.nonce, &canonical);
        assert_eq!(signature, vector.sig, "{}", vector.name);
    }
}

#[test]
fn write_canonical_appends_to_reused_buffer() {
    let mut out = String::from("prefix:");
    for vector in vectors() {
        let value = json::parse(vector.payload_text.as_bytes()).expect("fixture payload parses");
        out.truncate("prefix:".len());
        json::write_canonical(&value, &mut out);
        assert_eq!(out["prefix:".len()..], vector.canonical_payload, "{}", vector.name);
    }
}
