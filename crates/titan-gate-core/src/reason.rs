//! Verdicts and the closed set of reject reasons with their stable wire codes.

use std::fmt;

/// The reason and detail of a rejected order. The codes are part of the external contract:
/// senders, dashboards and alerts match on them, so they never change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// The gate is in `HARD_HALT`, globally or for a scope the order falls in.
    SystemHalted,
    /// `SOFT_HALT` is in force and the intent does not reduce a position.
    ReduceOnly,
    /// Not JSON, not an object, or envelope fields missing or of the wrong type.
    Malformed,
    /// The message is larger than the configured limit.
    PayloadTooLarge,
    /// No signature, and the accepted schemes require one.
    Unsigned,
    /// A signature is present and does not verify.
    HmacSignatureMismatch,
    /// The key id names no key the gate holds, or a key that may not sign this order now.
    UnknownKey,
    /// The signed timestamp lies outside the accepted clock window.
    StaleTimestamp,
    /// The nonce was already seen inside the clock window.
    ReplayedNonce,
    /// JetStream already stored an order with this message id inside its duplicate window.
    DuplicateIntent,
    /// A producer or scope exceeded its order rate, or the gate is at capacity.
    RateLimited,
    /// JetStream refused the order, or no stream stores the forward subject.
    ForwardFailed,
    /// No acknowledgement arrived by the deadline, so the order may or may not be stored.
    ForwardUnconfirmed,
}

impl Reason {
    /// Every reason, in the order the contract lists them.
    pub const ALL: [Reason; 13] = [
        Reason::SystemHalted,
        Reason::ReduceOnly,
        Reason::Malformed,
        Reason::PayloadTooLarge,
        Reason::Unsigned,
        Reason::HmacSignatureMismatch,
        Reason::UnknownKey,
        Reason::StaleTimestamp,
        Reason::ReplayedNonce,
        Reason::DuplicateIntent,
        Reason::RateLimited,
        Reason::ForwardFailed,
        Reason::ForwardUnconfirmed,
    ];

    /// Returns the stable snake-case code used in replies, events, logs and metric labels.
    pub const fn code(self) -> &'static str {
        match self {
            Reason::SystemHalted => "system_halted",
            Reason::ReduceOnly => "reduce_only",
            Reason::Malformed => "malformed",
            Reason::PayloadTooLarge => "payload_too_large",
            Reason::Unsigned => "unsigned",
            Reason::HmacSignatureMismatch => "hmac_signature_mismatch",
            Reason::UnknownKey => "unknown_key",
            Reason::StaleTimestamp => "stale_timestamp",
            Reason::ReplayedNonce => "replayed_nonce",
            Reason::DuplicateIntent => "duplicate_intent",
            Reason::RateLimited => "rate_limited",
            Reason::ForwardFailed => "forward_failed",
            Reason::ForwardUnconfirmed => "forward_unconfirmed",
        }
    }

    /// Returns the verdict an order with this reason gets: every reason rejects
    /// except `forward_unconfirmed`, whose outcome is not known yet.
    pub const fn verdict(self) -> Verdict {
        match self {
            Reason::ForwardUnconfirmed => Verdict::Unconfirmed,
            _ => Verdict::Rejected,
        }
    }

    /// Returns the security event this reason counts as, if it is one.
    pub const fn security_event(self) -> Option<SecurityEvent> {
        match self {
            Reason::Unsigned => Some(SecurityEvent::Unsigned),
            Reason::HmacSignatureMismatch => Some(SecurityEvent::HmacFailed),
            Reason::UnknownKey => Some(SecurityEvent::UnknownKey),
            Reason::ReplayedNonce => Some(SecurityEvent::Replay),
            Reason::StaleTimestamp => Some(SecurityEvent::Stale),
            _ => None,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// The one outcome every order gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Forwarded and acknowledged by JetStream.
    Admitted,
    /// Will not reach execution through this gate.
    Rejected,
    /// Forwarded without an acknowledgement by the deadline; the final outcome follows as an event.
    Unconfirmed,
}

impl Verdict {
    /// Every verdict.
    pub const ALL: [Verdict; 3] = [Verdict::Admitted, Verdict::Rejected, Verdict::Unconfirmed];

    /// Returns the lowercase wire name.
    pub const fn code(self) -> &'static str {
        match self {
            Verdict::Admitted => "admitted",
            Verdict::Rejected => "rejected",
            Verdict::Unconfirmed => "unconfirmed",
        }
    }
}

/// Kinds of security-relevant failures, counted separately from the verdicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SecurityEvent {
    /// A message that needed a signature carried none.
    Unsigned,
    /// A signature did not verify.
    HmacFailed,
    /// A signature named a key the gate does not hold or may not use.
    UnknownKey,
    /// A nonce was used twice.
    Replay,
    /// A signed timestamp was outside the clock window.
    Stale,
}

impl SecurityEvent {
    /// Every kind.
    pub const ALL: [SecurityEvent; 5] = [
        SecurityEvent::Unsigned,
        SecurityEvent::HmacFailed,
        SecurityEvent::UnknownKey,
        SecurityEvent::Replay,
        SecurityEvent::Stale,
    ];

    /// Returns the metric label value.
    pub const fn code(self) -> &'static str {
        match self {
            SecurityEvent::Unsigned => "unsigned",
            SecurityEvent::HmacFailed => "hmac_failed",
            SecurityEvent::UnknownKey => "unknown_key",
            SecurityEvent::Replay => "replay",
            SecurityEvent::Stale => "stale",
        }
    }
}
