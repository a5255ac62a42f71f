//! The Titan intent envelope: the fields the gate reads, checked for presence and type.

use std::borrow::Cow;
use std::fmt;

use crate::json::Value;

/// Largest integer a double holds exactly; timestamps and versions beyond it are not integers to JS.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// The intent types the execution service knows.
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
    /// What is wrong with it.
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
    /// What the intent does.
    pub intent_type: IntentType,
    /// The strategy that produced it, when the payload says.
    pub source: Option<&'v str>,
}

impl<'v, 'a> Envelope<'v, 'a> {
    /// Reads and checks an envelope from a parsed JSON value.
    pub fn read(value: &'v Value<'a>) -> Result<Self, FieldError> {
        if value.as_object().is_none() {
            return Err(FieldError { field: "(envelope)", problem: format!("must be a JSON object, found {}", value.kind_name()).into() });
        }
        required_str(value, "type", "type")?;
        required_integer(value, "version", "version")?;
        let producer = required_str(value, "producer", "producer")?;
        let payload = value.get("payload").ok_or(missing("payload"))?;
        if payload.as_object().is_none() {
            return Err(wrong_type("payload", "an object", payload));
        }

        Ok(Envelope {
            producer,
            payload,
            intent: Intent::read(payload)?,
            ts: optional_integer(value, "ts", "ts")?,
            nonce: optional_str(value, "nonce", "nonce")?,
            sig: optional_str(value, "sig", "sig")?,
            key_id: optional_str(value, "key_id", "key_id")?,
            id: optional_str(value, "id", "id")?,
            idempotency_key: optional_str(value, "idempotency_key", "idempotency_key")?,
        })
    }

    /// Returns the strategy the order belongs to: the payload's `source`, else the `producer`.
    pub fn strategy(&self) -> &'v str {
        self.intent.source.unwrap_or(self.producer)
    }
}

impl<'v> Intent<'v> {
    fn read(payload: &'v Value<'_>) -> Result<Self, FieldError> {
        let signal_id = required_str(payload, "signal_id", "payload.signal_id")?;
        if signal_id.is_empty() {
            return Err(FieldError { field: "payload.signal_id", problem: "must not be empty".into() });
        }
        required_str(payload, "symbol", "payload.symbol")?;
        let direction = required_integer(payload, "direction", "payload.direction")?;
        if !(-1..=1).contains(&direction) {
            return Err(FieldError { field: "payload.direction", problem: format!("must be -1, 0 or 1, found {direction}").into() });
        }
        let type_text = required_str(payload, "type", "payload.type")?;
        let intent_type = IntentType::parse(type_text).ok_or_else(|| FieldError {
            field: "payload.type",
            problem: "must be one of BUY_SETUP, SELL_SETUP, CLOSE_LONG, CLOSE_SHORT, CLOSE".into(),
        })?;
        let size = required_number(payload, "size", "payload.size")?;
        if size.is_nan() || size <= 0.0 {
            return Err(FieldError { field: "payload.size", problem: "must be greater than 0".into() });
        }
        required_str(payload, "status", "payload.status")?;
        required_number(payload, "t_signal", "payload.t_signal")?;
        required_number(payload, "stop_loss", "payload.stop_loss")?;
        let fills = payload.get("child_fills").ok_or(missing("payload.child_fills"))?;
        if fills.as_array().is_none() {
            return Err(wrong_type("payload.child_fills", "an array", fills));
        }
        let source = optional_str(payload, "source", "payload.source")?;
        Ok(Intent { signal_id, intent_type, source })
    }
}

fn missing(field: &'static str) -> FieldError {
    FieldError { field, problem: "is missing".into() }
}

fn wrong_type(field: &'static str, expected: &'static str, found: &Value<'_>) -> FieldError {
    FieldError { field, problem: format!("must be {expected}, found {}", found.kind_name()).into() }
}

fn required_str<'v>(object: &'v Value<'_>, key: &str, field: &'static str) -> Result<&'v str, FieldError> {
    let value = object.get(key).ok_or(missing(field))?;
    value.as_str().ok_or_else(|| wrong_type(field, "a string", value))
}

/// Reads an optional string; an explicit `null` counts as absent.
fn optional_str<'v>(object: &'v Value<'_>, key: &str, field: &'static str) -> Result<Option<&'v str>, FieldError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value.as_str().map(Some).ok_or_else(|| wrong_type(field, "a string", value)),
    }
}

fn required_number(object: &Value<'_>, key: &str, field: &'static str) -> Result<f64, FieldError> {
    let value = object.get(key).ok_or(missing(field))?;
    value.as_f64().ok_or_else(|| wrong_type(field, "a number", value))
}

fn required_integer(object: &Value<'_>, key: &str, field: &'static str) -> Result<i64, FieldError> {
    let number = required_number(object, key, field)?;
    to_integer(number).ok_or_else(|| FieldError { field, problem: "must be an integer".into() })
}

fn optional_integer(object: &Value<'_>, key: &str, field: &'static str) -> Result<Option<i64>, FieldError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => required_integer(object, key, field).map(Some),
    }
}

/// Converts a double that holds an exact integer within JS's safe range.
#[allow(clippy::cast_possible_truncation, reason = "the value is integral and within ±2^53, so the cast is exact")]
fn to_integer(number: f64) -> Option<i64> {
    (number.fract() == 0.0 && number.abs() <= MAX_SAFE_INTEGER).then_some(number as i64)
}
