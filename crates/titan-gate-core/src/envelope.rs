//! The Titan intent envelope: the fields the gate reads, checked for presence and type.

use std::borrow::Cow;
use std::fmt;

use crate::json::Value;

/// Largest integer a double represents exactly. Timestamps and versions beyond it are not integers to JavaScript.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// The intent types the execution service accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IntentType {
    /// Opens or adds to a long position.
    BuySetup,
    /// Opens or adds to a short position.
    SellSetup,
    /// Reduces a long position.
    CloseLong,
    /// Reduces a short position.
    CloseShort,
    /// Closes whatever position is open.
    Close,
}

impl IntentType {
    /// Parses the payload's `type` field.
    pub fn parse(text: &str) -> Option<IntentType> {
        Some(match text {
            "BUY_SETUP" => IntentType::BuySetup,
            "SELL_SETUP" => IntentType::SellSetup,
            "CLOSE_LONG" => IntentType::CloseLong,
            "CLOSE_SHORT" => IntentType::CloseShort,
            "CLOSE" => IntentType::Close,
            _ => return None,
        })
    }

    /// Returns true for intents that can only reduce risk, the ones `SOFT_HALT` lets through.
    pub const fn is_reducing(self) -> bool {
        matches!(self, IntentType::Close | IntentType::CloseLong | IntentType::CloseShort)
    }
}

/// A field that is missing or has the wrong type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The field's path, such as `payload.size`.
    pub field: &'static str,
    /// The problem with the field.
    pub problem: Cow<'static, str>,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "field `{}` {}", self.field, self.problem)
    }
}

/// The envelope fields the gate uses, borrowed from the parsed message.
#[derive(Debug)]
pub struct Envelope<'v, 'a> {
    /// The envelope's `producer`.
    pub producer: &'v str,
    /// The whole `payload` value, for canonicalization.
    pub payload: &'v Value<'a>,
    /// The payload fields the gate checks.
    pub intent: Intent<'v>,
    /// Signed timestamp, epoch milliseconds, when present.
    pub ts: Option<i64>,
    /// Signer's nonce, when present.
    pub nonce: Option<&'v str>,
    /// Titan v1 signature, when present.
    pub sig: Option<&'v str>,
    /// Key id for the v1 signature, when present.
    pub key_id: Option<&'v str>,
    /// The envelope's `id`.
    pub id: Option<&'v str>,
    /// The envelope's `idempotency_key`.
    pub idempotency_key: Option<&'v str>,
}

/// The payload fields the execution service needs.
#[derive(Debug)]
pub struct Intent<'v> {
    /// Non-empty signal id.
    pub signal_id: &'v str,
    /// The intent's type.
    pub intent_type: IntentType,
    /// The strategy that produced it, when the payload names one.
    pub source: Option<&'v str>,
}

impl<'v, 'a> Envelope<'v, 'a> {
    /// Reads and checks an envelope from a parsed JSON value.
    pub fn read(value: &'v Value<'a>) -> Result<Self, FieldError> {
        let Some(members) = value.as_object() else {
            return Err(FieldError {
                field: "(envelope)",
                problem: format!("must be a JSON object, found {}", value.kind_name()).into(),
            });
        };
        let fields = EnvelopeMembers::find(members);

        required_str(fields.kind, "type")?;
        required_integer(fields.version, "version")?;
        let producer = required_str(fields.producer, "producer")?;
        let payload = fields.payload.ok_or(missing("payload"))?;
        let Some(payload_members) = payload.as_object() else {
            return Err(wrong_type("payload", "an object", payload));
        };

        Ok(Envelope {
            producer,
            payload,
            intent: Intent::read(payload_members)?,
            ts: optional_integer(fields.ts, "ts")?,
            nonce: optional_str(fields.nonce, "nonce")?,
            sig: optional_str(fields.sig, "sig")?,
            key_id: optional_str(fields.key_id, "key_id")?,
            id: optional_str(fields.id, "id")?,
            idempotency_key: optional_str(fields.idempotency_key, "idempotency_key")?,
        })
    }

    /// Returns the strategy the order belongs to: the payload's `source`, else the `producer`.
    pub fn strategy(&self) -> &'v str {
        self.intent.source.unwrap_or(self.producer)
    }
}

impl<'v> Intent<'v> {
    fn read(payload: &'v [(Cow<'_, str>, Value<'_>)]) -> Result<Self, FieldError> {
        let fields = IntentMembers::find(payload);

        let signal_id = required_str(fields.signal_id, "payload.signal_id")?;
        if signal_id.is_empty() {
            return Err(FieldError { field: "payload.signal_id", problem: "must not be empty".into() });
        }
        required_str(fields.symbol, "payload.symbol")?;
        let direction = required_integer(fields.direction, "payload.direction")?;
        if !(-1..=1).contains(&direction) {
            return Err(FieldError {
                field: "payload.direction",
                problem: format!("must be -1, 0 or 1, found {direction}").into(),
            });
        }
        let type_text = required_str(fields.kind, "payload.type")?;
        let intent_type = IntentType::parse(type_text).ok_or_else(|| FieldError {
            field: "payload.type",
            problem: "must be one of BUY_SETUP, SELL_SETUP, CLOSE_LONG, CLOSE_SHORT, CLOSE".into(),
        })?;
        let size = required_number(fields.size, "payload.size")?;
        if size.is_nan() || size <= 0.0 {
            return Err(FieldError { field: "payload.size", problem: "must be greater than 0".into() });
        }
        required_str(fields.status, "payload.status")?;
        required_number(fields.t_signal, "payload.t_signal")?;
        required_number(fields.stop_loss, "payload.stop_loss")?;
        let fills = fields.child_fills.ok_or(missing("payload.child_fills"))?;
        if fills.as_array().is_none() {
            return Err(wrong_type("payload.child_fills", "an array", fills));
        }
        let source = optional_str(fields.source, "payload.source")?;
        Ok(Intent { signal_id, intent_type, source })
    }
}

/// The envelope members the gate reads, each `None` when absent.
#[derive(Default)]
struct EnvelopeMembers<'v, 'a> {
    kind: Option<&'v Value<'a>>,
    version: Option<&'v Value<'a>>,
    producer: Option<&'v Value<'a>>,
    payload: Option<&'v Value<'a>>,
    ts: Option<&'v Value<'a>>,
    nonce: Option<&'v Value<'a>>,
    sig: Option<&'v Value<'a>>,
    key_id: Option<&'v Value<'a>>,
    id: Option<&'v Value<'a>>,
    idempotency_key: Option<&'v Value<'a>>,
}

impl<'v, 'a> EnvelopeMembers<'v, 'a> {
    /// Picks the members out of an object in one pass. Where a hand-built value repeats a
    /// key, the first member counts, as in [`Value::get`].
    fn find(members: &'v [(Cow<'a, str>, Value<'a>)]) -> Self {
        let mut found = Self::default();
        for (name, value) in members {
            let slot = match name.as_ref() {
                "type" => &mut found.kind,
                "version" => &mut found.version,
                "producer" => &mut found.producer,
                "payload" => &mut found.payload,
                "ts" => &mut found.ts,
                "nonce" => &mut found.nonce,
                "sig" => &mut found.sig,
                "key_id" => &mut found.key_id,
                "id" => &mut found.id,
                "idempotency_key" => &mut found.idempotency_key,
                _ => continue,
            };
            slot.get_or_insert(value);
        }
        found
    }
}

/// The payload members the gate reads, each `None` when absent.
#[derive(Default)]
struct IntentMembers<'v, 'a> {
    signal_id: Option<&'v Value<'a>>,
    symbol: Option<&'v Value<'a>>,
    direction: Option<&'v Value<'a>>,
    kind: Option<&'v Value<'a>>,
    size: Option<&'v Value<'a>>,
    status: Option<&'v Value<'a>>,
    t_signal: Option<&'v Value<'a>>,
    stop_loss: Option<&'v Value<'a>>,
    child_fills: Option<&'v Value<'a>>,
    source: Option<&'v Value<'a>>,
}

impl<'v, 'a> IntentMembers<'v, 'a> {
    /// Picks the members out of the payload in one pass, the first of a repeated key.
    fn find(members: &'v [(Cow<'a, str>, Value<'a>)]) -> Self {
        let mut found = Self::default();
        for (name, value) in members {
            let slot = match name.as_ref() {
                "signal_id" => &mut found.signal_id,
                "symbol" => &mut found.symbol,
                "direction" => &mut found.direction,
                "type" => &mut found.kind,
                "size" => &mut found.size,
                "status" => &mut found.status,
                "t_signal" => &mut found.t_signal,
                "stop_loss" => &mut found.stop_loss,
                "child_fills" => &mut found.child_fills,
                "source" => &mut found.source,
                _ => continue,
            };
            slot.get_or_insert(value);
        }
        found
    }
}

fn missing(field: &'static str) -> FieldError {
    FieldError { field, problem: "is missing".into() }
}

fn wrong_type(field: &'static str, expected: &'static str, found: &Value<'_>) -> FieldError {
    FieldError { field, problem: format!("must be {expected}, found {}", found.kind_name()).into() }
}

fn required_str<'v>(member: Option<&'v Value<'_>>, field: &'static str) -> Result<&'v str, FieldError> {
    let value = member.ok_or(missing(field))?;
    value.as_str().ok_or_else(|| wrong_type(field, "a string", value))
}

/// Reads an optional string; an explicit `null` counts as absent.
fn optional_str<'v>(member: Option<&'v Value<'_>>, field: &'static str) -> Result<Option<&'v str>, FieldError> {
    match member {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value.as_str().map(Some).ok_or_else(|| wrong_type(field, "a string", value)),
    }
}

fn required_number(member: Option<&Value<'_>>, field: &'static str) -> Result<f64, FieldError> {
    let value = member.ok_or(missing(field))?;
    value.as_f64().ok_or_else(|| wrong_type(field, "a number", value))
}

fn required_integer(member: Option<&Value<'_>>, field: &'static str) -> Result<i64, FieldError> {
    let number = required_number(member, field)?;
    to_integer(number).ok_or_else(|| FieldError { field, problem: "must be an integer".into() })
}

fn optional_integer(member: Option<&Value<'_>>, field: &'static str) -> Result<Option<i64>, FieldError> {
    match member {
        None | Some(Value::Null) => Ok(None),
        Some(_) => required_integer(member, field).map(Some),
    }
}

/// Converts a double that is an exact integer within JavaScript's safe range.
#[allow(clippy::cast_possible_truncation, reason = "the value is integral and within ±2^53, so the cast is exact")]
fn to_integer(number: f64) -> Option<i64> {
    (number.fract() == 0.0 && number.abs() <= MAX_SAFE_INTEGER).then_some(number as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json;

    const PAYLOAD: &str = r#"{"signal_id":"sig-1","symbol":"BTC/USDT","direction":1,"type":"BUY_SETUP","size":0.5,"status":"VALIDATED","t_signal":1,"stop_loss":2,"child_fills":[],"source":"scavenger"}"#;

    fn read_error(text: &str) -> FieldError {
        let value = json::parse(text.as_bytes()).expect("the test envelope is valid JSON");
        Envelope::read(&value).expect_err("the test envelope must be rejected")
    }

    #[test]
    fn reads_every_field() {
        let text = format!(
            r#"{{"id":"intent-1","idempotency_key":"key-1","type":"t","version":1,"producer":"brain","ts":5,"nonce":"n","sig":"s","key_id":"k","payload":{PAYLOAD}}}"#
        );
        let value = json::parse(text.as_bytes()).unwrap();
        let envelope = Envelope::read(&value).unwrap();

        assert_eq!(envelope.producer, "brain");
        assert_eq!(envelope.ts, Some(5));
        assert_eq!(envelope.nonce, Some("n"));
        assert_eq!(envelope.sig, Some("s"));
        assert_eq!(envelope.key_id, Some("k"));
        assert_eq!(envelope.id, Some("intent-1"));
        assert_eq!(envelope.idempotency_key, Some("key-1"));
        assert_eq!(envelope.intent.signal_id, "sig-1");
        assert_eq!(envelope.intent.intent_type, IntentType::BuySetup);
        assert_eq!(envelope.strategy(), "scavenger");
        assert_eq!(envelope.payload.get("size").and_then(Value::as_f64), Some(0.5));
    }

    #[test]
    fn first_problem_in_check_order_is_reported() {
        let no_type_no_payload = r#"{"version":1,"producer":"brain"}"#;
        assert_eq!(read_error(no_type_no_payload).field, "type");

        let bad_ts_and_intent =
            r#"{"type":"t","version":1,"producer":"brain","ts":"x","payload":{"symbol":"BTC/USDT"}}"#;
        assert_eq!(read_error(bad_ts_and_intent).field, "payload.signal_id");

        let bad_ts_and_nonce =
            format!(r#"{{"type":"t","version":1,"producer":"brain","nonce":7,"ts":"x","payload":{PAYLOAD}}}"#);
        assert_eq!(read_error(&bad_ts_and_nonce).field, "ts");
    }

    #[test]
    fn null_optional_fields_count_as_absent() {
        let text = format!(r#"{{"type":"t","version":1,"producer":"brain","ts":null,"sig":null,"payload":{PAYLOAD}}}"#);
        let value = json::parse(text.as_bytes()).unwrap();
        let envelope = Envelope::read(&value).unwrap();

        assert_eq!(envelope.ts, None);
        assert_eq!(envelope.sig, None);
    }

    /// The parser rejects repeated keys, but a value built by hand can have them.
    #[test]
    fn repeated_key_in_built_value_uses_the_first() {
        let payload = json::parse(PAYLOAD.as_bytes()).unwrap();
        let member = |key: &'static str, value: Value<'static>| (Cow::Borrowed(key), value);
        let envelope_value = Value::Object(vec![
            member("type", Value::String("t".into())),
            member("version", Value::Number(1.0)),
            member("producer", Value::String("first".into())),
            member("producer", Value::String("second".into())),
            member("payload", payload),
        ]);

        let envelope = Envelope::read(&envelope_value).unwrap();

        assert_eq!(envelope.producer, "first");
    }
}
