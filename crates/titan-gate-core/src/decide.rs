//! The decision on one order: halt state, size, shape, signature, freshness and replay,
//! cheapest first, as a pure function of the order, the state, the keys and the clock.

use std::borrow::Cow;

use crate::envelope::Envelope;
use crate::json::{self, Value};
use crate::keyring::{DEFAULT_KEY_ID, KeyError, Keyring, Role};
use crate::reason::Reason;
use crate::replay::{ReplayError, ReplayMemory};
use crate::signature::{self, SignatureError};
use crate::state::{HaltState, Mode, Scope};

pub(crate) mod halt;

pub use halt::check_halt;
use halt::{Route, Strictest, halted};

/// Default largest order body, in bytes.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 64 * 1024;

/// Default clock window, in milliseconds either side of the gate's clock.
pub const DEFAULT_CLOCK_WINDOW_MS: i64 = 30_000;

/// The signature schemes an order must carry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SignaturePolicy {
    /// A valid v1 or v2 signature (the default).
    #[default]
    Any,
    /// A valid Titan v1 envelope signature.
    V1,
    /// A valid titan-gate v2 header signature.
    V2,
}

/// The checks' settings.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Largest body accepted, in bytes.
    pub max_payload_bytes: usize,
    /// Accepted difference between a signed timestamp and the gate's clock, in milliseconds.
    pub clock_window_ms: i64,
    /// The required signatures.
    pub signatures: SignaturePolicy,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            clock_window_ms: DEFAULT_CLOCK_WINDOW_MS,
            signatures: SignaturePolicy::Any,
        }
    }
}

/// The v2 and idempotency headers of an order message, as received.
#[derive(Clone, Copy, Debug, Default)]
pub struct OrderHeaders<'a> {
    /// `Nats-Msg-Id`.
    pub msg_id: Option<&'a str>,
    /// `Titan-Key-Id`.
    pub key_id: Option<&'a str>,
    /// `Titan-Timestamp`.
    pub timestamp: Option<&'a str>,
    /// `Titan-Nonce`.
    pub nonce: Option<&'a str>,
    /// `Titan-Signature`.
    pub signature: Option<&'a str>,
}

/// One order message as it arrived on an intake subject.
#[derive(Clone, Copy, Debug)]
pub struct Order<'a> {
    /// The full subject it was published to.
    pub subject: &'a str,
    /// The subject tokens after the intake prefix: `{venue}.{account}.{symbol}`.
    pub tail: &'a str,
    /// The body, forwarded byte for byte when admitted.
    pub body: &'a [u8],
    /// Its headers.
    pub headers: OrderHeaders<'a>,
}

/// Inputs of the decision besides the order.
#[derive(Clone, Copy, Debug)]
pub struct Context<'c> {
    /// The halt state, loaded once for this order.
    pub state: &'c HaltState,
    /// The keys.
    pub keyring: &'c Keyring,
    /// The settings.
    pub policy: &'c Policy,
    /// The gate's clock, epoch milliseconds.
    pub now_ms: i64,
}

/// The decision on one order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Every check passed: forward it.
    Admit(Admission),
    /// A check failed.
    Reject(Rejection),
}

/// An admitted order's facts that the forwarder needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admission {
    /// The id JetStream deduplicates on (`Nats-Msg-Id`).
    pub msg_id: String,
    /// The payload's signal id.
    pub signal_id: String,
    /// The id of the key whose signature was checked (the v2 key when both are present).
    pub key_id: String,
    /// The strategy the order belongs to, for the strategy scope.
    pub strategy: String,
    /// True for intents that only reduce a position.
    pub reducing: bool,
}

/// The reason and detail of a rejected order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// The reason code.
    pub reason: Reason,
    /// A sentence the sender can act on.
    pub detail: Cow<'static, str>,
    /// For `system_halted` and `reduce_only`: the scope whose halt applied, `None` for the global one.
    pub halted_scope: Option<Scope>,
}

impl Rejection {
    fn new(reason: Reason, detail: impl Into<Cow<'static, str>>) -> Self {
        Self { reason, detail: detail.into(), halted_scope: None }
    }
}

/// Decides one order. `scratch` is reused for the canonical payload so the hot path
/// does not allocate it anew. Only an order whose every check passes consumes its nonce.
pub fn decide(order: &Order<'_>, context: &Context<'_>, replay: &mut ReplayMemory, scratch: &mut String) -> Decision {
    match decide_inner(order, context, replay, scratch) {
        Ok(admission) => Decision::Admit(admission),
        Err(rejection) => Decision::Reject(rejection),
    }
}

fn decide_inner(
    order: &Order<'_>,
    context: &Context<'_>,
    replay: &mut ReplayMemory,
    scratch: &mut String,
) -> Result<Admission, Rejection> {
    let state = context.state;
    if state.global.mode == Mode::HardHalt {
        return Err(halted(None, Mode::HardHalt));
    }

    let Some(route) = Route::parse(order.tail) else {
        return Err(Rejection::new(
            Reason::Malformed,
            "subject must end in {venue}.{account}.{symbol}, each a literal token, not * or >",
        ));
    };
    let route_strictest = Strictest::of_route(state, &route);
    if route_strictest.mode == Mode::HardHalt {
        return Err(route_strictest.rejection());
    }

    if order.body.len() > context.policy.max_payload_bytes {
        let detail = format!("body is {} bytes, the limit is {}", order.body.len(), context.policy.max_payload_bytes);
        return Err(Rejection::new(Reason::PayloadTooLarge, detail));
    }
    let value =
        json::parse(order.body).map_err(|error| Rejection::new(Reason::Malformed, format!("invalid JSON: {error}")))?;
    let envelope = Envelope::read(&value).map_err(|error| Rejection::new(Reason::Malformed, error.to_string()))?;
    let strategy = envelope.strategy();
    let reducing = envelope.intent.intent_type.is_reducing();
    route_strictest.with_strategy(state, strategy).check(reducing)?;

    let key_id = check_signatures(order, &envelope, context, scratch)?;
    check_nonces(order, &envelope, context, replay)?;

    Ok(Admission {
        msg_id: message_id(order.headers.msg_id, &envelope).to_owned(),
        signal_id: envelope.intent.signal_id.to_owned(),
        key_id,
        strategy: strategy.to_owned(),
        reducing,
    })
}

/// Checks every signature present and that the policy's required one is among them.
/// Returns the id of the key that signed (the v2 key when both schemes are present).
fn check_signatures(
    order: &Order<'_>,
    envelope: &Envelope<'_, '_>,
    context: &Context<'_>,
    scratch: &mut String,
) -> Result<String, Rejection> {
    let has_v2 = order.headers.signature.is_some();
    let has_v1 = envelope.sig.is_some();
    let required_present = match context.policy.signatures {
        SignaturePolicy::Any => has_v1 || has_v2,
        SignaturePolicy::V1 => has_v1,
        SignaturePolicy::V2 => has_v2,
    };
    if !required_present {
        let detail = match context.policy.signatures {
            SignaturePolicy::Any => {
                "no signature: sign the envelope (sig, ts, nonce) or add the Titan-Signature headers"
            }
            SignaturePolicy::V1 => "no Titan v1 signature: this gate requires sig, ts and nonce in the envelope",
            SignaturePolicy::V2 => {
                "no v2 signature: this gate requires the Titan-Key-Id, Titan-Timestamp, Titan-Nonce and Titan-Signature headers"
            }
        };
        return Err(Rejection::new(Reason::Unsigned, detail));
    }

    let mut key_id = String::new();
    if has_v1 {
        key_id = check_v1(envelope, context, scratch)?;
    }
    if has_v2 {
        key_id = check_v2(order, envelope, context)?;
    }
    Ok(key_id)
}

fn check_v1(envelope: &Envelope<'_, '_>, context: &Context<'_>, scratch: &mut String) -> Result<String, Rejection> {
    let signature_text = envelope.sig.unwrap_or_default();
    let ts = envelope
        .ts
        .ok_or_else(|| Rejection::new(Reason::Malformed, "field `ts` is missing; a signed envelope needs it"))?;
    let nonce = envelope
        .nonce
        .ok_or_else(|| Rejection::new(Reason::Malformed, "field `nonce` is missing; a signed envelope needs it"))?;
    check_nonce_format(nonce, "field `nonce`")?;
    let key_id = envelope.key_id.unwrap_or(DEFAULT_KEY_ID);
    let key = authorize(context, key_id, envelope.strategy())?;

    scratch.clear();
    json::write_canonical(envelope.payload, scratch);
    signature::verify_v1(key, ts, nonce, scratch, signature_text).map_err(|error| signature_rejection(error, "v1"))?;
    check_clock(ts, context)?;
    Ok(key.id.clone())
}

fn check_v2(order: &Order<'_>, envelope: &Envelope<'_, '_>, context: &Context<'_>) -> Result<String, Rejection> {
    let headers = &order.headers;
    let signature_text = headers.signature.unwrap_or_default();
    let key_id = headers
        .key_id
        .ok_or_else(|| Rejection::new(Reason::Malformed, "header Titan-Key-Id is missing; a v2 signature needs it"))?;
    let timestamp_text = headers.timestamp.ok_or_else(|| {
        Rejection::new(Reason::Malformed, "header Titan-Timestamp is missing; a v2 signature needs it")
    })?;
    let nonce = headers
        .nonce
        .ok_or_else(|| Rejection::new(Reason::Malformed, "header Titan-Nonce is missing; a v2 signature needs it"))?;
    let timestamp = parse_timestamp(timestamp_text)?;
    check_nonce_format(nonce, "header Titan-Nonce")?;
    let key = authorize(context, key_id, envelope.strategy())?;

    signature::verify_v2(key, order.subject, timestamp_text, nonce, order.body, signature_text)
        .map_err(|error| signature_rejection(error, "v2"))?;
    check_clock(timestamp, context)?;
    Ok(key.id.clone())
}

/// Finds the key and checks that it may sign this strategy's orders now.
fn authorize<'k>(context: &Context<'k>, key_id: &str, strategy: &str) -> Result<&'k crate::keyring::Key, Rejection> {
    let key = context
        .keyring
        .authorize(key_id, Role::Order, context.now_ms)
        .map_err(|error: KeyError| Rejection::new(Reason::UnknownKey, error.to_string()))?;
    if let Some(bound) = &key.strategy
        && bound != strategy
    {
        return Err(Rejection::new(
            Reason::UnknownKey,
            format!("key {:?} signs only for strategy {bound:?}, not {strategy:?}", key.id),
        ));
    }
    Ok(key)
}

fn signature_rejection(error: SignatureError, scheme: &str) -> Rejection {
    Rejection::new(Reason::HmacSignatureMismatch, format!("{scheme} {error}"))
}

/// Parses a v2 timestamp header: decimal epoch milliseconds, nothing else, so the signed
/// text and the checked number cannot differ.
pub fn parse_timestamp(text: &str) -> Result<i64, Rejection> {
    let digits = text.as_bytes();
    let valid = !digits.is_empty() && digits.len() <= 16 && digits.iter().all(u8::is_ascii_digit);
    if !valid {
        return Err(Rejection::new(
            Reason::Malformed,
            "header Titan-Timestamp must be epoch milliseconds in decimal digits",
        ));
    }
    // At most 16 digits are below 10^16, far from overflowing an i64.
    Ok(digits.iter().fold(0, |value, &digit| value * 10 + i64::from(digit - b'0')))
}

/// Checks a nonce is 8 to 64 characters of `[A-Za-z0-9_-]`, which Titan's 32 hex characters satisfy.
pub fn check_nonce_format(nonce: &str, field: &str) -> Result<(), Rejection> {
    let valid = (8..=64).contains(&nonce.len()) && nonce.bytes().all(|byte| NONCE_BYTES[usize::from(byte)]);
    if valid {
        Ok(())
    } else {
        Err(Rejection::new(Reason::Malformed, format!("{field} must be 8 to 64 characters of A-Z, a-z, 0-9, _ or -")))
    }
}

/// The bytes allowed in a nonce, `[A-Za-z0-9_-]`, as a table indexed by byte. A lookup
/// per byte avoids the branches of range tests, which mispredict on random nonces.
const NONCE_BYTES: [bool; 256] = {
    let mut allowed = [false; 256];
    let mut byte: u8 = 0;
    loop {
        allowed[byte as usize] = byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-';
        if byte == u8::MAX {
            break;
        }
        byte += 1;
    }
    allowed
};

/// Checks a signed timestamp against the clock window.
pub fn check_clock(timestamp_ms: i64, context: &Context<'_>) -> Result<(), Rejection> {
    let skew = timestamp_ms.saturating_sub(context.now_ms);
    if skew.abs() <= context.policy.clock_window_ms {
        return Ok(());
    }
    let direction = if skew > 0 { "ahead of" } else { "behind" };
    let detail = format!(
        "signed timestamp is {} ms {direction} the gate's clock; the window is ±{} ms",
        skew.abs(),
        context.policy.clock_window_ms
    );
    Err(Rejection::new(Reason::StaleTimestamp, detail))
}

/// Records the nonces of every signature present; a nonce both schemes share is recorded once.
fn check_nonces(
    order: &Order<'_>,
    envelope: &Envelope<'_, '_>,
    context: &Context<'_>,
    replay: &mut ReplayMemory,
) -> Result<(), Rejection> {
    let v1 = envelope.sig.and(envelope.ts.zip(envelope.nonce));
    let v2 = order.headers.signature.and(order.headers.timestamp.zip(order.headers.nonce));
    if let Some((ts, nonce)) = v1 {
        remember_nonce(replay, nonce, ts, context)?;
    }
    if let Some((text, nonce)) = v2
        && v1.is_none_or(|(_, v1_nonce)| v1_nonce != nonce)
    {
        remember_nonce(replay, nonce, parse_timestamp(text)?, context)?;
    }
    Ok(())
}

fn remember_nonce(replay: &mut ReplayMemory, nonce: &str, ts: i64, context: &Context<'_>) -> Result<(), Rejection> {
    let expires_at_ms = ts.saturating_add(context.policy.clock_window_ms);
    replay.check_and_insert(nonce.as_bytes(), expires_at_ms, context.now_ms).map_err(|error| match error {
        ReplayError::Replayed => Rejection::new(
            Reason::ReplayedNonce,
            "nonce was already used inside the clock window; sign again with a new nonce",
        ),
        ReplayError::Full { .. } => {
            Rejection::new(Reason::RateLimited, format!("{error}; retry after the window passes or slow down"))
        }
    })
}

/// Returns the order's message id: the `Nats-Msg-Id` header, else the envelope's
/// `idempotency_key`, else its `id`, else the payload's `signal_id`.
pub fn message_id<'v>(header: Option<&'v str>, envelope: &Envelope<'v, '_>) -> &'v str {
    header
        .filter(|id| !id.is_empty())
        .or(envelope.idempotency_key.filter(|id| !id.is_empty()))
        .or(envelope.id.filter(|id| !id.is_empty()))
        .unwrap_or(envelope.intent.signal_id)
}

/// Ids of an order for reject events and logs, read on a best-effort basis from a body
/// that may be invalid.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IntentIds {
    /// The message id when the body is a readable envelope.
    pub intent_id: Option<String>,
    /// The payload's `signal_id`, when readable.
    pub signal_id: Option<String>,
}

/// Reads the ids of an order, whatever else is wrong with it.
pub fn describe_intent(header_msg_id: Option<&str>, body: &[u8], max_bytes: usize) -> IntentIds {
    let parsed = if body.len() <= max_bytes { json::parse(body).ok() } else { None };
    let text = |value: Option<&Value<'_>>| {
        value
            .and_then(Value::as_str)
            .filter(|text| !text.is_empty())
            .map(|text| crate::keyring::truncate(text, 128).to_owned())
    };
    let signal_id =
        parsed.as_ref().and_then(|value| text(value.get("payload").and_then(|payload| payload.get("signal_id"))));
    let from_body =
        parsed.as_ref().and_then(|value| text(value.get("idempotency_key")).or_else(|| text(value.get("id"))));
    let intent_id = header_msg_id
        .filter(|id| !id.is_empty())
        .map(|id| crate::keyring::truncate(id, 128).to_owned())
        .or(from_body)
        .or_else(|| signal_id.clone());
    IntentIds { intent_id, signal_id }
}

#[cfg(test)]
mod tests;
