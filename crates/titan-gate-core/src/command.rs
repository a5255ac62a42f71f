//! Halt and resume commands: reading every payload shape Titan uses, checking who signed
//! them, and deciding whether they change the state.

use crate::decide::{OrderHeaders, check_nonce_format, parse_timestamp};
use crate::json::{self, Value};
use crate::keyring::{KeyError, Keyring, Role, truncate};
use crate::replay::{ReplayError, ReplayMemory};
use crate::signature::{self, SignatureError};
use crate::state::{Change, HaltState, Mode, Scope, ScopeKind};

/// The global halt subject; scoped halts append `.{kind}.{value}`.
pub const HALT_SUBJECT: &str = "titan.cmd.sys.halt.v1";

/// How many bytes of an unrecognized command are kept for the log.
const ECHO_BYTES: usize = 200;

/// The requested action of a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandKind {
    /// Set this halt mode (`SOFT_HALT` or `HARD_HALT`).
    Halt(Mode),
    /// Lift the halt.
    Resume,
}

impl CommandKind {
    /// Returns the `command` label: `halt`, `soft_halt` or `resume`.
    pub const fn label(self) -> &'static str {
        match self {
            CommandKind::Halt(Mode::SoftHalt) => "soft_halt",
            CommandKind::Halt(_) => "halt",
            CommandKind::Resume => "resume",
        }
    }
}

/// The payload shape of a command, one of those Titan uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandShape {
    /// `{"reason":…,"operator":…}`, the runbook's form.
    Runbook,
    /// `{"state":"HARD_HALT"|"SOFT_HALT"|"OPEN",…}`.
    State,
    /// `{"active":true|false,…}`.
    Active,
    /// A Titan envelope whose `payload.action` is `HALT`.
    Envelope,
    /// Anything else, which is read as a request to stop.
    Unrecognized,
}

/// A command read from a halt subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    /// The requested action.
    pub kind: CommandKind,
    /// The scope from the subject, `None` for the global state.
    pub scope: Option<Scope>,
    /// The reason it gives.
    pub reason: String,
    /// The sender, when the command names one.
    pub operator: Option<String>,
    /// Its `source` field, which the gate sets on halts it trips itself.
    pub source: Option<String>,
    /// Its shape.
    pub shape: CommandShape,
}

impl Command {
    /// Reads a command. This never fails: a message on a halt subject is somebody asking
    /// to stop, so whatever cannot be read becomes a global `HARD_HALT` whose reason
    /// quotes the start of the received bytes.
    pub fn parse(subject: &str, body: &[u8]) -> Command {
        let Ok(scope) = parse_scope(subject) else {
            return unrecognized(&format!("unrecognized halt subject {:?}", truncate(subject, ECHO_BYTES)), body);
        };
        let value = match json::parse(body) {
            Ok(value) if value.as_object().is_some() => value,
            Ok(_) | Err(_) if body.iter().all(u8::is_ascii_whitespace) => {
                return unrecognized("empty halt command", body);
            }
            Ok(value) => {
                return unrecognized(&format!("halt command is a JSON {}, not an object", value.kind_name()), body);
            }
            Err(error) => return unrecognized(&format!("halt command is not valid JSON ({error})"), body),
        };
        let mut command = match read_shape(&value) {
            Ok(command) => command,
            Err(problem) => unrecognized(&problem, body),
        };
        if command.shape != CommandShape::Unrecognized {
            command.scope = scope;
        }
        command
    }

    /// Returns the role a key needs to sign this command against `state`: `resume` for a
    /// resume or a halt that would loosen a stricter mode, `halt` otherwise.
    pub fn required_role(&self, state: &HaltState) -> Role {
        match self.kind {
            CommandKind::Resume => Role::Resume,
            CommandKind::Halt(mode) if mode < state.mode(self.scope.as_ref()) => Role::Resume,
            CommandKind::Halt(_) => Role::Halt,
        }
    }
}

/// Parses the scope from a halt subject: `Ok(None)` for the global subject,
/// `Ok(Some(scope))` for a scoped one, and an error for anything else.
fn parse_scope(subject: &str) -> Result<Option<Scope>, UnknownSubject> {
    let rest = subject.strip_prefix(HALT_SUBJECT).ok_or(UnknownSubject)?;
    if rest.is_empty() {
        return Ok(None);
    }
    let (kind, value) = rest.strip_prefix('.').and_then(|rest| rest.split_once('.')).ok_or(UnknownSubject)?;
    let kind = ScopeKind::parse(kind).ok_or(UnknownSubject)?;
    // Venue, account and symbol are single subject tokens, so a dotted value could never
    // match an order; it is read as unrecognized, which halts everything.
    if value.is_empty() || (kind != ScopeKind::Strategy && value.contains('.')) {
        return Err(UnknownSubject);
    }
    // A wildcard token matches no order literally, but a sender may mean every value, so
    // it is read as unrecognized, which halts everything.
    if value.split('.').any(crate::decide::halt::is_wildcard) {
        return Err(UnknownSubject);
    }
    Ok(Some(Scope::new(kind, value)))
}

/// A halt subject that names no known scope.
#[derive(Debug)]
struct UnknownSubject;

fn unrecognized(problem: &str, body: &[u8]) -> Command {
    let echo = String::from_utf8_lossy(&body[..body.len().min(ECHO_BYTES)]).into_owned();
    Command {
        kind: CommandKind::Halt(Mode::HardHalt),
        scope: None,
        reason: format!("UNRECOGNIZED_COMMAND: {problem}; received {echo:?}"),
        operator: None,
        source: None,
        shape: CommandShape::Unrecognized,
    }
}

fn read_shape(value: &Value<'_>) -> Result<Command, String> {
    let text = |object: &Value<'_>, key: &str| {
        object.get(key).and_then(Value::as_str).map(|text| truncate(text, ECHO_BYTES).to_owned())
    };
    let reason = text(value, "reason");
    let operator = text(value, "operator");
    let source = text(value, "source");

    let (kind, shape, reason, operator) = if let Some(state) = value.get("state") {
        let kind = match state.as_str() {
            Some("HARD_HALT") => CommandKind::Halt(Mode::HardHalt),
            Some("SOFT_HALT") => CommandKind::Halt(Mode::SoftHalt),
            Some("OPEN") => CommandKind::Resume,
            _ => return Err("unknown `state`: expected HARD_HALT, SOFT_HALT or OPEN".to_owned()),
        };
        (kind, CommandShape::State, reason, operator)
    } else if let Some(active) = value.get("active") {
        let kind = match active {
            Value::Bool(true) => CommandKind::Halt(Mode::HardHalt),
            Value::Bool(false) => CommandKind::Resume,
            _ => return Err("`active` must be true or false".to_owned()),
        };
        (kind, CommandShape::Active, reason, operator)
    } else if let Some(payload) = value.get("payload") {
        if payload.get("action").and_then(Value::as_str) != Some("HALT") {
            return Err("envelope whose `payload.action` is not HALT".to_owned());
        }
        let reason = text(payload, "reason").or(reason);
        let operator = text(payload, "operator").or(operator).or_else(|| text(value, "producer"));
        (CommandKind::Halt(Mode::HardHalt), CommandShape::Envelope, reason, operator)
    } else if reason.is_some() {
        (CommandKind::Halt(Mode::HardHalt), CommandShape::Runbook, reason, operator)
    } else {
        return Err("no `reason`, `state`, `active` or `payload.action`".to_owned());
    };

    let reason = reason.filter(|reason| !reason.is_empty()).unwrap_or_else(|| "UNSPECIFIED".to_owned());
    Ok(Command { kind, scope: None, reason, operator, source, shape })
}

/// A verified command signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signer {
    /// The key that signed.
    pub key_id: String,
    /// The signed timestamp, epoch milliseconds.
    pub timestamp_ms: i64,
}

/// A reason a command's signature was not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Titan-Signature` header.
    #[error("command is not signed")]
    Unsigned,
    /// A signature header is present but another v2 header is missing or invalid.
    #[error("{0}")]
    MalformedHeaders(String),
    /// The key is unknown, outside its validity or lacks the role.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The signature does not verify.
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// The signed timestamp is outside the clock window.
    #[error("signed timestamp is {skew_ms} ms from the gate's clock; the window is ±{window_ms} ms")]
    Stale {
        /// Signed time minus the gate's time.
        skew_ms: i64,
        /// The accepted window.
        window_ms: i64,
    },
    /// The nonce was already used, or the replay memory is full.
    #[error(transparent)]
    Replay(#[from] ReplayError),
}

impl AuthError {
    /// Returns true for the failures logged as `HMAC Verification Failed`: a signature
    /// that is present but wrong, as opposed to one that is missing.
    pub fn is_bad_signature(&self) -> bool {
        !matches!(self, AuthError::Unsigned)
    }
}

/// A command as received: its subject, body and v2 headers.
#[derive(Clone, Copy, Debug)]
pub struct SignedMessage<'a> {
    /// The subject it was published to.
    pub subject: &'a str,
    /// Its body.
    pub body: &'a [u8],
    /// Its headers.
    pub headers: OrderHeaders<'a>,
}

/// Checks a command's v2 signature for `role`. A valid signature consumes its nonce.
pub fn authenticate(
    message: &SignedMessage<'_>,
    role: Role,
    keyring: &Keyring,
    replay: &mut ReplayMemory,
    now_ms: i64,
    clock_window_ms: i64,
) -> Result<Signer, AuthError> {
    let SignedMessage { subject, body, headers } = message;
    let signature_text = headers.signature.ok_or(AuthError::Unsigned)?;
    let missing =
        |name: &str| AuthError::MalformedHeaders(format!("header {name} is missing; a v2 signature needs it"));
    let key_id = headers.key_id.ok_or_else(|| missing("Titan-Key-Id"))?;
    let timestamp_text = headers.timestamp.ok_or_else(|| missing("Titan-Timestamp"))?;
    let nonce = headers.nonce.ok_or_else(|| missing("Titan-Nonce"))?;
    let timestamp_ms = parse_timestamp(timestamp_text)
        .map_err(|rejection| AuthError::MalformedHeaders(rejection.detail.into_owned()))?;
    check_nonce_format(nonce, "header Titan-Nonce")
        .map_err(|rejection| AuthError::MalformedHeaders(rejection.detail.into_owned()))?;

    let key = keyring.authorize(key_id, role, now_ms)?;
    signature::verify_v2(key, subject, timestamp_text, nonce, body, signature_text)?;
    let skew_ms = timestamp_ms.saturating_sub(now_ms);
    if skew_ms.abs() > clock_window_ms {
        return Err(AuthError::Stale { skew_ms, window_ms: clock_window_ms });
    }
    replay.check_and_insert(nonce.as_bytes(), timestamp_ms.saturating_add(clock_window_ms), now_ms)?;
    Ok(Signer { key_id: key.id.clone(), timestamp_ms })
}

/// The decision on a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandDecision {
    /// Apply this change to the state.
    Apply(Change),
    /// Leave the state as it is, for this reason.
    Refuse(Refusal),
}

/// The reason a command that would lift or loosen a halt was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// It was not signed, or its signature was not accepted.
    #[error("{0}")]
    NotAuthorized(AuthError),
    /// It was signed before the halt it would lift began, so it may be an old command replayed.
    #[error("signed at {signed_ms}, before the halt it would lift began at {halt_since_ms}")]
    SignedBeforeHalt {
        /// The signed timestamp.
        signed_ms: i64,
        /// When the halt began.
        halt_since_ms: i64,
    },
    /// The gate cannot trust its halt state, which may hold a stricter halt, so nothing
    /// may loosen it until a valid state is loaded.
    #[error(
        "{0}; store a valid state with `titan-gate recover-state` or wait for the store, then send the command again"
    )]
    StateUnknown(&'static str),
}

/// Decides what a command does to `state`. A halt that does not loosen anything needs
/// no signature, because stopping never adds risk. A resume, or a halt that would
/// loosen a stricter mode, needs a `resume` signature made after the halt began.
pub fn evaluate(command: &Command, authentication: &Result<Signer, AuthError>, state: &HaltState) -> CommandDecision {
    let signer = authentication.as_ref().ok();
    let change = Change {
        scope: command.scope.clone(),
        mode: match command.kind {
            CommandKind::Halt(mode) => mode,
            CommandKind::Resume => Mode::Running,
        },
        reason: command.reason.clone(),
        operator: command.operator.clone(),
        key_id: signer.map(|signer| signer.key_id.clone()),
        signed_ms: signer.map(|signer| signer.timestamp_ms),
    };
    if command.required_role(state) == Role::Halt {
        return CommandDecision::Apply(change);
    }

    let signer = match authentication {
        Ok(signer) => signer,
        Err(error) => return CommandDecision::Refuse(Refusal::NotAuthorized(error.clone())),
    };
    if let Some(entry) = state.entry(command.scope.as_ref())
        && entry.mode.is_halted()
        && signer.timestamp_ms <= entry.since_ms
    {
        return CommandDecision::Refuse(Refusal::SignedBeforeHalt {
            signed_ms: signer.timestamp_ms,
            halt_since_ms: entry.since_ms,
        });
    }
    CommandDecision::Apply(change)
}

#[cfg(test)]
mod tests;
