use serde_json::{Value, json};
use titan_gate_core::{Change, Transition};

use super::*;

fn halted_state() -> HaltState {
    let initial = HaltState::initial(Mode::Running, "INITIAL_STATE", 1_000);
    let changes = [
        Change {
            scope: None,
            mode: Mode::SoftHalt,
            reason: "drawdown".to_owned(),
            operator: Some("alice".to_owned()),
            key_id: None,
            signed_ms: None,
        },
        Change {
            scope: Some(Scope::new(ScopeKind::Venue, "binance")),
            mode: Mode::HardHalt,
            reason: "venue outage".to_owned(),
            operator: None,
            key_id: Some("ops-1".to_owned()),
            signed_ms: None,
        },
        Change {
            scope: Some(Scope::new(ScopeKind::Strategy, "mm-1")),
            mode: Mode::SoftHalt,
            reason: "r".to_owned(),
            operator: None,
            key_id: None,
            signed_ms: None,
        },
    ];
    changes.iter().fold(initial, |state, change| match state.apply(change, 2_000, 100) {
        Transition::Applied(next) => next,
        Transition::Unchanged => panic!("change {change:?} must apply"),
    })
}

fn encoded_json(state: &HaltState) -> Value {
    serde_json::from_slice(&encode(state, "gate-a", 5_000)).expect("encode writes JSON")
}

fn decode_error(document: &Value) -> String {
    decode(document.to_string().as_bytes()).expect_err("the document must be rejected")
}

#[test]
fn encode_decode_round_trip() {
    let state = halted_state();
    let (decoded, updated_by, updated_ms) = decode(&encode(&state, "gate-a", 5_000)).expect("decodes");
    assert_eq!(decoded, state);
    assert_eq!(updated_by, "gate-a");
    assert_eq!(updated_ms, 5_000);
}

#[test]
fn encoded_document_fields() {
    let document = encoded_json(&halted_state());
    assert_eq!(document["format"], 1);
    assert_eq!(document["epoch"], 3);
    assert_eq!(document["global"]["mode"], "SOFT_HALT");
    assert_eq!(document["global"]["operator"], "alice");
    assert_eq!(document["updated_by"], "gate-a");
    assert_eq!(
        document["scopes"][0],
        json!({"kind": "venue", "value": "binance", "mode": "HARD_HALT", "reason": "venue outage", "operator": null, "since_ms": 2_000, "key_id": "ops-1"})
    );
    assert_eq!(document["scopes"][1]["kind"], "strategy");
}

#[test]
fn decode_rejects_non_json() {
    let error = decode(b"not json").expect_err("must be rejected");
    assert!(error.starts_with("not a JSON object"), "{error}");
}

#[test]
fn decode_rejects_other_format() {
    let mut document = encoded_json(&halted_state());
    document["format"] = json!(2);
    assert_eq!(decode_error(&document), "unsupported format 2, expected 1");
}

#[test]
fn decode_rejects_missing_format() {
    let mut document = encoded_json(&halted_state());
    document.as_object_mut().expect("an object").remove("format");
    assert_eq!(decode_error(&document), "missing field `format`");
}

#[test]
fn decode_rejects_unknown_global_mode() {
    let mut document = encoded_json(&halted_state());
    document["global"]["mode"] = json!("PAUSED");
    assert_eq!(decode_error(&document), "global: unknown mode \"PAUSED\"");
}

#[test]
fn decode_rejects_unknown_scope_mode() {
    let mut document = encoded_json(&halted_state());
    document["scopes"][0]["mode"] = json!("hard_halt");
    assert_eq!(decode_error(&document), "scope venue:binance: unknown mode \"hard_halt\"");
}

#[test]
fn decode_rejects_unknown_scope_kind() {
    let mut document = encoded_json(&halted_state());
    document["scopes"][0]["kind"] = json!("exchange");
    assert_eq!(decode_error(&document), "unknown scope kind \"exchange\"");
}

#[test]
fn decode_rejects_running_scope() {
    let mut document = encoded_json(&halted_state());
    document["scopes"][0]["mode"] = json!("RUNNING");
    assert_eq!(decode_error(&document), "scope venue:binance: mode RUNNING is never stored for a scope");
}

#[test]
fn decode_rejects_duplicate_scope() {
    let mut document = encoded_json(&halted_state());
    let first = document["scopes"][0].clone();
    document["scopes"].as_array_mut().expect("an array").push(first);
    assert_eq!(decode_error(&document), "a scope is listed more than once");
}

#[test]
fn decode_rejects_empty_scope_value() {
    let mut document = encoded_json(&halted_state());
    document["scopes"][0]["value"] = json!("");
    assert_eq!(decode_error(&document), "scope of kind venue has an empty value");
}

#[test]
fn decode_rejects_missing_epoch() {
    let mut document = encoded_json(&halted_state());
    document.as_object_mut().expect("an object").remove("epoch");
    let error = decode_error(&document);
    assert!(error.contains("missing field `epoch`"), "{error}");
}

#[test]
fn decode_ignores_unknown_fields() {
    let mut document = encoded_json(&halted_state());
    document["writer_version"] = json!("0.2.0");
    let (state, _, _) = decode(document.to_string().as_bytes()).expect("an added field is ignored");
    assert_eq!(state, halted_state());
}
