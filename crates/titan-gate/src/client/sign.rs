//! `titan-gate sign` and `titan-gate verify`: Titan v1 envelope signatures and titan-gate
//! v2 header signatures, offline.

use serde_json::{Value as JsonValue, json};
use titan_gate_core::Role;
use titan_gate_core::envelope::Envelope;
use titan_gate_core::json::{self, Value};
use titan_gate_core::keyring::DEFAULT_KEY_ID;
use titan_gate_core::{Key, Keyring, signature};

use super::{load_keys, random_hex};
use crate::cli::{Scheme, SignArgs, VerifyArgs};
use crate::config::{ENV_KEYRING, Environment};
use crate::keys::now_ms;
use crate::orders::{HEADER_KEY_ID, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP};

/// Largest integer a JavaScript number represents exactly: 2^53 - 1.
const MAX_SAFE_INTEGER: i64 = 9_007_199_254_740_991;

/// Envelope fields that signing adds; an envelope that already has one is not signed again.
const SIGNATURE_FIELDS: [&str; 4] = ["ts", "nonce", "sig", "key_id"];

/// Signs stdin: a Titan envelope (v1) or a message body for `--subject` (v2).
pub(super) fn sign(args: &SignArgs, env: &Environment, input: &[u8]) -> anyhow::Result<String> {
    let keyring = load_keys(args.signing.keyring.as_deref(), env)?;
    let key = match args.signing.key_id.as_deref() {
        Some(id) => find_key(&keyring, id)?,
        None => match keyring.get(DEFAULT_KEY_ID) {
            Some(key) => key,
            None => {
                keyring.first_with_role(Role::Order, now_ms()).map_or_else(|| find_key(&keyring, DEFAULT_KEY_ID), Ok)?
            }
        },
    };
    if !key.has_role(Role::Order) {
        eprintln!(
            "warning: key {:?} lacks the order role, so the gates will reject orders it signs as unknown_key",
            key.id
        );
    }
    let ts = args.ts.unwrap_or_else(now_ms);
    anyhow::ensure!(
        (0..=MAX_SAFE_INTEGER).contains(&ts),
        "--ts {ts} is outside 0..={MAX_SAFE_INTEGER}; give epoch milliseconds"
    );
    let nonce = args.nonce.clone().unwrap_or_else(random_hex);
    warn_about_nonce(&nonce);

    match args.scheme {
        Scheme::V1 => sign_envelope(input, key, ts, &nonce),
        Scheme::V2 => sign_body(input, args.subject.as_deref(), key, ts, &nonce),
    }
}

/// Returns the key `id`, with an error that names where keys come from.
fn find_key<'k>(keyring: &'k Keyring, id: &str) -> anyhow::Result<&'k Key> {
    if let Some(key) = keyring.get(id) {
        return Ok(key);
    }
    if id == DEFAULT_KEY_ID {
        anyhow::bail!(
            "no v1 secret: set TITAN_HMAC_SECRET or HMAC_SECRET (or either with _FILE), or pass --key-id with a keyring"
        );
    }
    let ids = keyring.ids();
    let known = if ids.is_empty() { "the keyring is empty".to_owned() } else { format!("keys: {}", ids.join(", ")) };
    anyhow::bail!("key {id:?} not found ({known}); pass --keyring or set {ENV_KEYRING}")
}

/// Warns when the gates would reject the nonce: they accept 8 to 64 of `[A-Za-z0-9_-]`.
fn warn_about_nonce(nonce: &str) {
    if let Err(rejection) = titan_gate_core::decide::check_nonce_format(nonce, "the nonce") {
        eprintln!("warning: the gates will reject this signature: {}", rejection.detail);
    }
}

/// Signs a Titan envelope with v1 and returns its text with `ts`, `nonce`, `sig` (and
/// `key_id` for a key other than `default`) inserted before the closing brace, so the
/// producer's bytes stay as they were.
fn sign_envelope(input: &[u8], key: &Key, ts: i64, nonce: &str) -> anyhow::Result<String> {
    let envelope = json::parse(input).map_err(|error| anyhow::anyhow!("stdin is not valid JSON: {error}"))?;
    let members = envelope
        .as_object()
        .ok_or_else(|| anyhow::anyhow!("stdin is a JSON {}, not an envelope object", envelope.kind_name()))?;
    for field in SIGNATURE_FIELDS {
        anyhow::ensure!(
            envelope.get(field).is_none(),
            "the envelope already has a `{field}` field; remove ts, nonce, sig and key_id before signing, since a second `{field}` would make the order malformed"
        );
    }
    let payload = payload_object(&envelope)?;
    if let Err(problem) = Envelope::read(&envelope) {
        eprintln!("warning: the gates will reject this envelope as malformed: {problem}");
    }

    let canonical_payload = json::to_canonical_string(payload);
    let sig = signature::sign_v1(key, ts, nonce, &canonical_payload);
    let key_field = if key.id == DEFAULT_KEY_ID {
        String::new()
    } else {
        format!(r#","key_id":{}"#, JsonValue::from(key.id.as_str()))
    };
    let fields = format!(r#""ts":{ts},"nonce":{},"sig":"{sig}"{key_field}"#, JsonValue::from(nonce));

    // The parser accepted an object, so the text ends with `}` and optional whitespace.
    let text = std::str::from_utf8(input)?.trim_end();
    let before_brace = text[..text.len() - 1].trim_end();
    let separator = if members.is_empty() { "" } else { "," };
    Ok(format!("{before_brace}{separator}{fields}{}", &text[before_brace.len()..]))
}

/// Signs a message body with v2 for `subject` and returns the four headers as a JSON object.
fn sign_body(body: &[u8], subject: Option<&str>, key: &Key, ts: i64, nonce: &str) -> anyhow::Result<String> {
    let subject = subject.ok_or_else(|| {
        anyhow::anyhow!("--scheme v2 needs --subject: the signature covers the subject the message is published to")
    })?;
    let valid = !subject.is_empty()
        && subject
            .split('.')
            .all(|token| !token.is_empty() && !token.contains(['*', '>']) && !token.chars().any(char::is_whitespace));
    anyhow::ensure!(
        valid,
        "--subject {subject:?} is not a subject to publish to: it needs non-empty '.'-separated tokens without spaces or wildcards"
    );
    if body.ends_with(b"\n") {
        eprintln!(
            "note: the body ends with a newline, which the signature covers; publish exactly these bytes (printf, not echo, avoids the newline)"
        );
    }

    let timestamp = ts.to_string();
    let signature = signature::sign_v2(key, subject, &timestamp, nonce, body);
    let headers =
        json!({HEADER_KEY_ID: key.id, HEADER_TIMESTAMP: timestamp, HEADER_NONCE: nonce, HEADER_SIGNATURE: signature});
    Ok(headers.to_string())
}

/// Returns the envelope's `payload`, which must be an object because the v1 signature covers it.
fn payload_object<'v>(envelope: &'v Value<'_>) -> anyhow::Result<&'v Value<'v>> {
    let payload = envelope
        .get("payload")
        .ok_or_else(|| anyhow::anyhow!("the envelope has no `payload`; the v1 signature covers the payload object"))?;
    anyhow::ensure!(
        payload.as_object().is_some(),
        "the envelope's `payload` is a JSON {}, not an object",
        payload.kind_name()
    );
    Ok(payload)
}

/// Verifies the v1 signature of an envelope. On failure the output ends with the exact
/// string the signature should cover, so a producer can compare it with its own.
pub(super) fn verify(args: &VerifyArgs, env: &Environment, input: &[u8]) -> anyhow::Result<(bool, String)> {
    let envelope = json::parse(input).map_err(|error| anyhow::anyhow!("stdin is not valid JSON: {error}"))?;
    anyhow::ensure!(envelope.as_object().is_some(), "stdin is a JSON {}, not an envelope object", envelope.kind_name());
    let payload = payload_object(&envelope)?;
    let canonical_payload = json::to_canonical_string(payload);

    let fields = match SignedFields::read(&envelope) {
        Ok(fields) => fields,
        Err(problem) => return Ok((false, format!("invalid: {problem}\ncanonical payload: {canonical_payload}"))),
    };
    let canonical_line = format!("canonical string: {}.{}.{canonical_payload}", fields.ts, fields.nonce);
    let keyring = load_keys(args.keyring.as_deref(), env)?;
    let Some(key) = keyring.get(fields.key_id) else {
        let source = if fields.key_id == DEFAULT_KEY_ID {
            "no v1 secret is set (TITAN_HMAC_SECRET or HMAC_SECRET)".to_owned()
        } else {
            format!("pass --keyring or set {ENV_KEYRING}")
        };
        return Ok((false, format!("invalid: key {:?} not found; {source}\n{canonical_line}", fields.key_id)));
    };

    match signature::verify_v1(key, fields.ts, fields.nonce, &canonical_payload, fields.sig) {
        Ok(()) => Ok((true, format!("valid: key {}", key.id))),
        Err(error) => Ok((false, format!("invalid: {error} (key {})\n{canonical_line}", key.id))),
    }
}

/// The v1 signature fields of an envelope.
#[derive(Debug)]
struct SignedFields<'v> {
    ts: i64,
    nonce: &'v str,
    sig: &'v str,
    key_id: &'v str,
}

impl<'v> SignedFields<'v> {
    /// Reads `ts`, `nonce`, `sig` and `key_id` (default `default`), naming the first one
    /// that is missing or of the wrong type.
    fn read(envelope: &'v Value<'_>) -> Result<Self, String> {
        let text = |name: &str| match envelope.get(name) {
            None | Some(Value::Null) => Err(format!("field `{name}` is missing, so the envelope is not v1-signed")),
            Some(value) => {
                value.as_str().ok_or_else(|| format!("field `{name}` must be a string, found {}", value.kind_name()))
            }
        };
        let ts = match envelope.get("ts") {
            None | Some(Value::Null) => {
                return Err("field `ts` is missing, so the envelope is not v1-signed".to_owned());
            }
            Some(value) => integer(value).ok_or_else(|| {
                format!("field `ts` must be an integer in epoch milliseconds, found {}", value.kind_name())
            })?,
        };
        let key_id = match envelope.get("key_id") {
            None | Some(Value::Null) => DEFAULT_KEY_ID,
            Some(_) => text("key_id")?,
        };
        Ok(Self { ts, nonce: text("nonce")?, sig: text("sig")?, key_id })
    }
}

/// Returns the integer a JSON number represents exactly, within JavaScript's safe range.
#[allow(clippy::cast_possible_truncation, reason = "the value is integral and within ±2^53, so the cast is exact")]
fn integer(value: &Value<'_>) -> Option<i64> {
    let number = value.as_f64()?;
    #[allow(clippy::cast_precision_loss, reason = "2^53 - 1 is exact as a double")]
    let limit = MAX_SAFE_INTEGER as f64;
    (number.fract() == 0.0 && number.abs() <= limit).then_some(number as i64)
}
