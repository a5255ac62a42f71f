//! Envelope reading: arbitrary bytes through the strict JSON parser, the envelope field
//! checks and the best-effort id reader that reject events use.

use titan_gate_core::decide::describe_intent;
use titan_gate_core::envelope::Envelope;
use titan_gate_core::json;

/// Checks that `body` is read without a panic and that every error explains itself.
pub fn check(body: &[u8]) {
    let ids = describe_intent(None, body, 1 << 20);
    assert!(ids.intent_id.as_ref().is_none_or(|id| id.len() <= 128), "intent id is truncated to 128 bytes");

    let value = match json::parse(body) {
        Ok(value) => value,
        Err(error) => {
            assert!(!error.to_string().is_empty(), "a parse error explains itself");
            return;
        }
    };
    match Envelope::read(&value) {
        Ok(envelope) => {
            assert!(!envelope.intent.signal_id.is_empty(), "an accepted envelope has a signal id");
        }
        Err(error) => assert!(!error.to_string().is_empty(), "a field error explains itself"),
    }
}
