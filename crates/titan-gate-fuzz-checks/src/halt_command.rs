//! Halt-command reading and its authorization: any subject suffix, body and v2
//! headers. Reading never fails, anything unreadable halts everything, and nothing
//! without a valid `resume` signature loosens the state.

use crate::NOW_MS;
use arbitrary::{Arbitrary, Unstructured};
use titan_gate_core::command::{
    Command, CommandDecision, CommandKind, CommandShape, HALT_SUBJECT, SignedMessage, authenticate, evaluate,
};
use titan_gate_core::keyring::Key;
use titan_gate_core::signature::sign_v2;
use titan_gate_core::{HaltState, Keyring, Mode, OrderHeaders, ReplayMemory, Role};

const CLOCK_WINDOW_MS: i64 = 30_000;

#[derive(Arbitrary, Debug)]
pub struct Input<'a> {
    /// Appended to the global halt subject, so both scoped and unknown subjects occur.
    subject_suffix: &'a str,
    body: &'a [u8],
    key_id: Option<&'a str>,
    timestamp: Option<&'a str>,
    nonce: Option<&'a str>,
    /// A made-up `Titan-Signature` value; ignored when `sign` is true.
    signature: Option<&'a str>,
    /// Sign correctly with the operator key.
    sign: bool,
    /// The mode the gate is in before the command.
    initial: u8,
}

/// Checks the property for one structured input.
pub fn check_input(input: &Input<'_>) {
    let keyring = Keyring::new([Key::new("operator", b"operator-secret", vec![Role::Halt, Role::Resume])]);
    let mut replay = ReplayMemory::new(64);
    let mode = [Mode::Running, Mode::SoftHalt, Mode::HardHalt][usize::from(input.initial % 3)];
    let state = HaltState::initial(mode, "fuzz", NOW_MS - 60_000);

    let subject = format!("{HALT_SUBJECT}{}", input.subject_suffix);
    let command = Command::parse(&subject, input.body);
    if command.shape == CommandShape::Unrecognized {
        assert_eq!(command.kind, CommandKind::Halt(Mode::HardHalt), "anything unreadable is a HARD_HALT");
        assert_eq!(command.scope, None, "anything unreadable halts everything");
    }
    // The reason quotes at most 200 bytes of the subject and of the body, escaped.
    assert!(command.reason.len() <= 8_192, "the reason's echo of the input is bounded");

    let signature = if input.sign {
        let key = Key::new("operator", b"operator-secret", vec![]);
        Some(sign_v2(&key, &subject, input.timestamp.unwrap_or(""), input.nonce.unwrap_or(""), input.body))
    } else {
        input.signature.map(str::to_owned)
    };
    let headers = OrderHeaders {
        msg_id: None,
        key_id: input.key_id,
        timestamp: input.timestamp,
        nonce: input.nonce,
        signature: signature.as_deref(),
    };
    let message = SignedMessage { subject: &subject, body: input.body, headers };
    let role = command.required_role(&state);
    let authentication = authenticate(&message, role, &keyring, &mut replay, NOW_MS, CLOCK_WINDOW_MS);
    if !input.sign {
        assert!(authentication.is_err(), "a made-up signature never authenticates");
    }

    let decision = evaluate(&command, &authentication, &state);
    if let CommandDecision::Apply(change) = decision {
        let current = state.entry(command.scope.as_ref()).map_or(Mode::Running, |entry| entry.mode);
        if change.mode < current {
            assert!(authentication.is_ok(), "only a signed command loosens the state: {change:?}");
        }
    }
}

/// Checks the property for the input that `data` decodes to, the way cargo-fuzz decodes it.
pub fn check(data: &[u8]) {
    if let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) {
        check_input(&input);
    }
}
