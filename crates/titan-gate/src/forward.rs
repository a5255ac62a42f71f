//! Forwarding an admitted order to JetStream: the publish, the acknowledgement, and the
//! follow-up of an order whose acknowledgement did not arrive in time.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use bytes::Bytes;
use metrics::{counter, histogram};
use serde_json::json;
use titan_gate_core::decide::check_halt;
use titan_gate_core::{Admission, Reason, Rejection};
use tracing::{info, warn};

use crate::gate::Gate;
use crate::keys::now_ms;
use crate::metrics::{FORWARD_FOLLOW_UPS_TOTAL, FORWARD_SECONDS};
use crate::orders::{HEADER_GATE_EPOCH, HEADER_GATE_ID, HEADER_MSG_ID, OrderPath, Received, is_certain_refusal};

/// Subject of the final outcome of an order that was first `unconfirmed`.
pub const VERDICT_EVENT_SUBJECT: &str = "titan.evt.gate.verdict.v1";

/// Appended to `forward_failed` details: the order passed every check, so its nonce is spent.
const RETRY_HINT: &str = "the order was not stored and its nonce is spent, so sign it again with a new nonce to retry";

/// Pause between re-publishes when the previous attempt failed at once (for example
/// while the connection is down), so the follow-up does not spin.
const RETRY_PAUSE: Duration = Duration::from_millis(250);

/// An admitted order on its way to JetStream.
#[derive(Debug)]
pub struct PendingForward {
    pub msg_id: String,
    pub signal_id: String,
    pub strategy: String,
    pub reducing: bool,
    pub tail: String,
    pub intake_subject: String,
    pub forward_subject: String,
    pub headers: HeaderMap,
    pub payload: Bytes,
    pub epoch: u64,
    pub started: Instant,
}

/// The meaning of JetStream's reply for the order.
#[derive(Debug)]
pub enum ForwardOutcome {
    /// Stored at this stream sequence.
    Stored { sequence: u64 },
    /// Certainly not stored by this publish.
    Refused(Rejection),
    /// Maybe stored: no reply arrived.
    Unknown(String),
}

impl PendingForward {
    /// Prepares the forward of an admitted order: same body, the producer's headers
    /// except `Nats-*` and `Titan-Gate-*` ones, and the gate's message id, replica and epoch.
    pub fn new(gate: &Gate, received: &Received, admission: &Admission, tail: &str, epoch: u64) -> Self {
        let mut headers = HeaderMap::new();
        if let Some(original) = &received.headers {
            for (name, values) in original.iter() {
                let name_text: &str = name.as_ref();
                if starts_with_ignore_case(name_text, "nats-") || starts_with_ignore_case(name_text, "titan-gate-") {
                    continue;
                }
                for value in values {
                    headers.append(name.clone(), value.clone());
                }
            }
        }
        headers.insert(HEADER_MSG_ID, admission.msg_id.as_str());
        headers.insert(HEADER_GATE_ID, gate.settings.gate_id.as_str());
        headers.insert(HEADER_GATE_EPOCH, epoch.to_string().as_str());
        Self {
            msg_id: admission.msg_id.clone(),
            signal_id: admission.signal_id.clone(),
            strategy: admission.strategy.clone(),
            reducing: admission.reducing,
            tail: tail.to_owned(),
            intake_subject: received.subject.clone(),
            forward_subject: format!("{}.{tail}", gate.settings.forward_prefix),
            headers,
            payload: received.payload.clone(),
            epoch,
            started: Instant::now(),
        }
    }
}

/// Returns true when `text` starts with `prefix`, ignoring ASCII case, without the
/// lowercase copy that `to_ascii_lowercase` allocates.
fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.as_bytes().get(..prefix.len()).is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes()))
}

/// Sends the publish. An error here means nothing was sent, so it is a certain rejection.
pub async fn publish(
    jetstream: &async_nats::jetstream::Context,
    pending: &PendingForward,
) -> Result<PublishAckFuture, Rejection> {
    jetstream
        .publish_with_headers(pending.forward_subject.clone(), pending.headers.clone(), pending.payload.clone())
        .await
        .map_err(|error| {
            let (reason, detail): (Reason, Cow<'static, str>) = match error.kind() {
                PublishErrorKind::MaxAckPending => {
                    (Reason::RateLimited, "gate at capacity: too many acknowledgements pending; retry shortly".into())
                }
                _ => (Reason::ForwardFailed, format!("JetStream publish was not sent: {error}; {RETRY_HINT}").into()),
            };
            Rejection { reason, detail, halted_scope: None }
        })
}

/// Awaits the acknowledgement and classifies it.
pub async fn await_ack(gate: &Gate, ack: PublishAckFuture, pending: &PendingForward) -> ForwardOutcome {
    match ack.await {
        Ok(ack) if ack.duplicate => {
            let detail = format!(
                "JetStream already stored message id {:?} in stream {} at sequence {} inside its duplicate window",
                pending.msg_id, ack.stream, ack.sequence
            );
            ForwardOutcome::Refused(Rejection {
                reason: Reason::DuplicateIntent,
                detail: detail.into(),
                halted_scope: None,
            })
        }
        Ok(ack) => {
            histogram!(FORWARD_SECONDS).record(pending.started.elapsed());
            ForwardOutcome::Stored { sequence: ack.sequence }
        }
        Err(error) => classify_error(gate, &error, pending),
    }
}

fn classify_error(
    gate: &Gate,
    error: &async_nats::jetstream::context::PublishError,
    pending: &PendingForward,
) -> ForwardOutcome {
    let kind = error.kind();
    let refused_by_jetstream = kind == PublishErrorKind::Other
        && std::error::Error::source(error)
            .is_some_and(|source| source.downcast_ref::<async_nats::jetstream::Error>().is_some());
    if kind == PublishErrorKind::StreamNotFound {
        let detail = no_responders_detail(gate, &pending.forward_subject);
        return ForwardOutcome::Refused(Rejection {
            reason: Reason::ForwardFailed,
            detail: detail.into(),
            halted_scope: None,
        });
    }
    if is_certain_refusal(kind) || refused_by_jetstream {
        let detail = format!("JetStream refused the order: {error}; {RETRY_HINT}");
        return ForwardOutcome::Refused(Rejection {
            reason: Reason::ForwardFailed,
            detail: detail.into(),
            halted_scope: None,
        });
    }
    let detail = match kind {
        PublishErrorKind::TimedOut => "no JetStream acknowledgement before the deadline".to_owned(),
        PublishErrorKind::BrokenPipe => "NATS connection lost before the acknowledgement".to_owned(),
        _ => format!("JetStream acknowledgement unreadable: {error}"),
    };
    ForwardOutcome::Unknown(detail)
}

/// Describes a publish that the server rejected with "no responders" (status 503), which
/// async-nats reports as `StreamNotFound`. Nothing stored the order either way. When the
/// periodic lookup (every 5 s) found a stream for the forward subject, that stream had no
/// leader to answer, as during a JetStream leader election, or was deleted since the lookup.
fn no_responders_detail(gate: &Gate, subject: &str) -> String {
    let known_stream = gate.health.forward_stream.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    match known_stream {
        Some(stream) => format!(
            "the last lookup found JetStream stream {stream} for subject {subject}, but no server answered the publish (no responders): the stream has no leader, as during a leader election, or was deleted since; {RETRY_HINT}"
        ),
        None => format!("no JetStream stream stores subject {subject}; {RETRY_HINT}"),
    }
}

/// Re-publishes an unconfirmed order with the same message id until JetStream answers,
/// the retry window ends, or a halt now covers the order; then publishes the final
/// outcome on [`VERDICT_EVENT_SUBJECT`]. JetStream's duplicate window makes a re-publish
/// of an order that was in fact stored harmless: it is acknowledged as a duplicate.
pub async fn follow_up(path: &OrderPath, pending: PendingForward) {
    let gate = &path.gate;
    let deadline = pending.started + gate.settings.forward_retry_window;
    let mut attempts = 1u32;
    let (verdict, reason, detail, sequence) = loop {
        let state = gate.state();
        if let Err(rejection) = check_halt(&state, &pending.tail, &pending.strategy, pending.reducing) {
            break (
                "unresolved",
                Some(Reason::ForwardUnconfirmed),
                format!("stopped re-publishing because {}; the order may or may not be stored", rejection.detail),
                None,
            );
        }
        drop(state);
        if Instant::now() >= deadline {
            break (
                "unresolved",
                Some(Reason::ForwardUnconfirmed),
                "no JetStream answer inside the retry window; the order may or may not be stored".to_owned(),
                None,
            );
        }

        attempts += 1;
        let attempt_started = Instant::now();
        let outcome = match publish(&path.jetstream, &pending).await {
            Ok(ack) => match ack.await {
                Ok(ack) => ForwardOutcome::Stored { sequence: ack.sequence },
                Err(error) => classify_error(gate, &error, &pending),
            },
            Err(rejection) => ForwardOutcome::Unknown(rejection.detail.into_owned()),
        };
        match outcome {
            ForwardOutcome::Stored { sequence } => {
                break ("admitted", None, "stored after re-publishing".to_owned(), Some(sequence));
            }
            ForwardOutcome::Refused(rejection) => {
                break ("rejected", Some(rejection.reason), rejection.detail.into_owned(), None);
            }
            ForwardOutcome::Unknown(detail) => {
                warn!(order.id = %pending.msg_id, attempt = attempts, detail = %detail, "Re-publish unconfirmed");
                if attempt_started.elapsed() < RETRY_PAUSE {
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            }
        }
    };

    counter!(FORWARD_FOLLOW_UPS_TOTAL, "outcome" => verdict).increment(1);
    info!(order.id = %pending.msg_id, verdict, attempts, detail = %detail, "Unconfirmed order resolved");
    let event = json!({
        "verdict": verdict,
        "reason": reason.map(Reason::code),
        "detail": detail,
        "stream_seq": sequence,
        "intent_id": pending.msg_id,
        "signal_id": pending.signal_id,
        "subject": pending.intake_subject,
        "epoch": pending.epoch,
        "gate_id": gate.settings.gate_id,
        "attempts": attempts,
        "timestamp": now_ms(),
    });
    path.publish(VERDICT_EVENT_SUBJECT.to_owned(), event.to_string()).await;
}
