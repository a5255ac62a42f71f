//! The JS-exact canonical form: whatever the parser accepts, the writer turns into text
//! that parses again and canonicalizes to itself.

use titan_gate_core::json;

/// Checks that the canonical form of `text`, when it parses, is a fixed point.
pub fn check(text: &[u8]) {
    let Ok(value) = json::parse(text) else {
        return;
    };
    let canonical = json::to_canonical_string(&value);
    let reparsed = json::parse(canonical.as_bytes())
        .unwrap_or_else(|error| panic!("canonical text {canonical:?} does not parse: {error}"));
    assert_eq!(json::to_canonical_string(&reparsed), canonical, "canonical text is a fixed point");
}
