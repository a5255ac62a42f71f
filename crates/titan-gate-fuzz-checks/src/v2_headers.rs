//! The order decision with hostile v2 headers: any subject tail, body and header
//! values, and signatures that are either made up or computed with a real key. A made-up
//! signature must never be admitted, and an admitted nonce must never be admitted again.

use crate::NOW_MS;
use arbitrary::{Arbitrary, Unstructured};
use titan_gate_core::keyring::Key;
use titan_gate_core::signature::sign_v2;
use titan_gate_core::{
    Context, Decision, HaltState, Keyring, Mode, Order, OrderHeaders, Policy, ReplayMemory, Role, decide,
};

const INTAKE: &str = "titan.gate.execution.place.v1";

/// The key of the test keyring that a computed signature uses.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum KeyChoice {
    /// Order key, no strategy binding.
    Open,
    /// Order key bound to strategy `scavenger`.
    Bound,
    /// Order key whose validity ended before `NOW_MS`.
    Expired,
    /// Halt and resume key, which may not sign orders.
    Operator,
}

impl KeyChoice {
    const fn id(self) -> &'static str {
        match self {
            KeyChoice::Open => "open",
            KeyChoice::Bound => "bound",
            KeyChoice::Expired => "expired",
            KeyChoice::Operator => "operator",
        }
    }
}

#[derive(Arbitrary, Debug)]
pub enum SignatureInput<'a> {
    Absent,
    /// A header value taken as it comes.
    Raw(&'a str),
    /// A correct signature with this key over the message as sent.
    Computed(KeyChoice),
}

#[derive(Arbitrary, Debug)]
pub enum TimestampInput<'a> {
    Absent,
    Raw(&'a str),
    /// `NOW_MS` plus this offset, written in decimal.
    Offset(i32),
}

#[derive(Arbitrary, Debug)]
pub enum BodyInput<'a> {
    Raw(&'a [u8]),
    /// A well-formed unsigned envelope with these fields.
    Envelope {
        signal_id: &'a str,
        source: Option<&'a str>,
        reducing: bool,
    },
}

#[derive(Arbitrary, Debug)]
pub struct Input<'a> {
    tail: &'a str,
    body: BodyInput<'a>,
    key_id: Option<&'a str>,
    key_id_matches_signer: bool,
    timestamp: TimestampInput<'a>,
    nonce: Option<&'a str>,
    signature: SignatureInput<'a>,
    msg_id: Option<&'a str>,
}

fn keyring() -> Keyring {
    Keyring::new([
        Key::new("open", b"open-secret", vec![Role::Order]),
        Key::new("bound", b"bound-secret", vec![Role::Order]).with_strategy(Some("scavenger".to_owned())),
        Key::new("expired", b"expired-secret", vec![Role::Order]).with_validity(None, Some(NOW_MS - 1)),
        Key::new("operator", b"operator-secret", vec![Role::Halt, Role::Resume]),
    ])
}

fn secret_of(choice: KeyChoice) -> &'static [u8] {
    match choice {
        KeyChoice::Open => b"open-secret",
        KeyChoice::Bound => b"bound-secret",
        KeyChoice::Expired => b"expired-secret",
        KeyChoice::Operator => b"operator-secret",
    }
}

fn body_bytes(body: &BodyInput<'_>) -> Vec<u8> {
    match body {
        BodyInput::Raw(bytes) => bytes.to_vec(),
        BodyInput::Envelope { signal_id, source, reducing } => {
            let intent = if *reducing { "CLOSE" } else { "BUY_SETUP" };
            let source = source.map_or(String::new(), |source| format!(",\"source\":{source:?}"));
            format!(
                "{{\"type\":\"titan.cmd.execution.place.v1\",\"version\":1,\"producer\":\"fuzz\",\"payload\":{{\"signal_id\":{signal_id:?},\"symbol\":\"BTC/USDT\",\"direction\":1,\"type\":\"{intent}\",\"size\":0.5,\"status\":\"VALIDATED\",\"t_signal\":1,\"stop_loss\":2,\"child_fills\":[]{source}}}}}"
            )
            .into_bytes()
        }
    }
}

/// Checks the property for one structured input.
pub fn check_input(input: &Input<'_>) {
    let keyring = keyring();
    let policy = Policy::default();
    let state = HaltState::initial(Mode::Running, "fuzz", 0);
    let mut replay = ReplayMemory::new(64);
    let mut scratch = String::new();

    let subject = format!("{INTAKE}.{}", input.tail);
    let body = body_bytes(&input.body);
    let timestamp = match input.timestamp {
        TimestampInput::Absent => None,
        TimestampInput::Raw(text) => Some(text.to_owned()),
        TimestampInput::Offset(offset) => Some((NOW_MS + i64::from(offset)).to_string()),
    };
    let nonce = input.nonce;
    let signer = match input.signature {
        SignatureInput::Computed(choice) => Some(choice),
        _ => None,
    };
    let key_id = match signer {
        Some(choice) if input.key_id_matches_signer => Some(choice.id()),
        _ => input.key_id,
    };
    let signature = match input.signature {
        SignatureInput::Absent => None,
        SignatureInput::Raw(text) => Some(text.to_owned()),
        SignatureInput::Computed(choice) => {
            let key = Key::new(choice.id(), secret_of(choice), vec![]);
            Some(sign_v2(&key, &subject, timestamp.as_deref().unwrap_or(""), nonce.unwrap_or(""), &body))
        }
    };

    let headers = OrderHeaders {
        msg_id: input.msg_id,
        key_id,
        timestamp: timestamp.as_deref(),
        nonce,
        signature: signature.as_deref(),
    };
    let order = Order { subject: &subject, tail: input.tail, body: &body, headers };
    let context = Context { state: &state, keyring: &keyring, policy: &policy, now_ms: NOW_MS };

    let Decision::Admit(admission) = decide(&order, &context, &mut replay, &mut scratch) else {
        return;
    };
    let choice = signer.expect("only a computed signature is admitted: no v1 signature is in these bodies");
    assert_eq!(admission.key_id, choice.id(), "the key that signed is the key reported");
    assert!(matches!(choice, KeyChoice::Open | KeyChoice::Bound), "{choice:?} may not sign orders now");
    if let KeyChoice::Bound = choice {
        assert_eq!(admission.strategy, "scavenger", "a bound key signs only its own strategy's orders");
    }
    let again = decide(&order, &context, &mut replay, &mut scratch);
    assert!(matches!(again, Decision::Reject(_)), "a nonce is admitted once: {again:?}");
}

/// Checks the property for the input that `data` decodes to, the way cargo-fuzz decodes it.
pub fn check(data: &[u8]) {
    if let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) {
        check_input(&input);
    }
}
