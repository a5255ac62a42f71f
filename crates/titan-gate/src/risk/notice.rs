//! The halt notice: a trip of this gate, published on the bare halt subject with a v2
//! signature so that the execution service halts too, and recognised by every replica
//! so that it is not applied again as a command.

use async_nats::HeaderMap;
use metrics::counter;
use serde_json::json;
use titan_gate_core::command::{AuthError, Command, CommandKind, HALT_SUBJECT, Signer};
use titan_gate_core::{Change, Keyring, Role, signature};
use tracing::{info, warn};

use crate::gate::Gate;
use crate::keys::now_ms;
use crate::metrics::HALT_NOTICES_TOTAL;
use crate::orders::{HEADER_KEY_ID, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP};

/// The `source` of a gate's halt notice.
pub const NOTICE_SOURCE: &str = "titan-gate";

/// Returns true for a gate's notice: a halt whose `source` is `titan-gate`, with a valid
/// v2 signature of a key with role `halt`. An unsigned or badly signed message that
/// claims the same source is an ordinary halt request, since a halt must never be lost.
pub fn is_gate_notice(command: &Command, authentication: &Result<Signer, AuthError>) -> bool {
    matches!(command.kind, CommandKind::Halt(_))
        && command.source.as_deref() == Some(NOTICE_SOURCE)
        && authentication.is_ok()
}

/// Builds the notice body of a trip: `state`, `reason` and `source`, with the `scope`
/// of a scoped trip, the operator and the gate id as extra fields.
fn notice_body(change: &Change, gate_id: &str) -> Vec<u8> {
    let mut body = json!({
        "state": change.mode.as_str(),
        "reason": change.reason,
        "source": NOTICE_SOURCE,
        "operator": change.operator,
        "gate_id": gate_id,
    });
    if let Some(scope) = &change.scope {
        body["scope"] = json!(scope.to_string());
    }
    body.to_string().into_bytes()
}

/// Returns the v2 headers signing `body` on the halt subject with the first valid key
/// with role `halt`, or `None` when there is none.
fn sign(keyring: &Keyring, body: &[u8]) -> Option<HeaderMap> {
    let now = now_ms();
    let key = keyring.first_with_role(Role::Halt, now)?;
    let timestamp = now.to_string();
    let nonce = format!("{:032x}", rand::random::<u128>());
    let signature = signature::sign_v2(key, HALT_SUBJECT, &timestamp, &nonce, body);
    let mut headers = HeaderMap::new();
    headers.insert(HEADER_KEY_ID, key.id.as_str());
    headers.insert(HEADER_TIMESTAMP, timestamp.as_str());
    headers.insert(HEADER_NONCE, nonce.as_str());
    headers.insert(HEADER_SIGNATURE, signature.as_str());
    Some(headers)
}

/// Publishes the notice of a trip whose write this replica landed. Without a key with
/// role `halt` the notice goes out unsigned, which every replica then applies as an
/// ordinary global halt request.
pub async fn publish(gate: &Gate, client: &async_nats::Client, change: &Change) {
    let body = notice_body(change, &gate.settings.gate_id);
    let headers = sign(&gate.keyring(), &body);
    let signed = headers.is_some();
    if !signed {
        warn!(halt.reason = %change.reason, "No valid key with role halt: the halt notice goes out unsigned, so every replica applies it as a global halt request");
    }
    let result = match headers {
        Some(headers) => client.publish_with_headers(HALT_SUBJECT, headers, body.into()).await,
        None => client.publish(HALT_SUBJECT, body.into()).await,
    };
    let outcome = match (&result, signed) {
        (Err(_), _) => "failed",
        (Ok(()), true) => "published_signed",
        (Ok(()), false) => "published_unsigned",
    };
    counter!(HALT_NOTICES_TOTAL, "outcome" => outcome).increment(1);
    match result {
        Ok(()) => {
            info!(subject = HALT_SUBJECT, halt.reason = %change.reason, halt.mode = %change.mode, signed, "Halt notice published");
        }
        Err(error) => {
            warn!(subject = HALT_SUBJECT, halt.reason = %change.reason, error = %error, "Publishing the halt notice failed");
        }
    }
}

/// Counts a notice another replica, or this one, published and this replica recognised.
pub fn record_received(command: &Command, subject: &str, signer: &Signer) {
    counter!(HALT_NOTICES_TOTAL, "outcome" => "received").increment(1);
    info!(subject = %subject, key_id = %signer.key_id, halt.reason = %command.reason, "Halt notice of a gate received; not applied again, since the trip reaches this replica through the state store");
}
