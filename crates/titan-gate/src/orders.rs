//! The order path: intake subscription, decision, JetStream forward, and the verdict
//! reported as a reply, an event, a log line and a counter.

use std::sync::Arc;
use std::time::Instant;

use async_nats::HeaderMap;
use async_nats::jetstream::context::PublishErrorKind;
use bytes::Bytes;
use futures::StreamExt;
use metrics::{gauge, histogram};
use serde_json::json;
use titan_gate_core::decide::{check_halt, describe_intent};
use titan_gate_core::risk::{RateLimiter, RateVerdict};
use titan_gate_core::spend::spend_nonces;
use titan_gate_core::{
    Admission, Context, Decision, HaltState, Mode, Order, OrderHeaders, Reason, Rejection, ReplayMemory, Verdict,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info, warn};

use crate::forward::{self, ForwardOutcome, PendingForward};
use crate::gate::Gate;
use crate::keys::now_ms;
use crate::logging::RejectLogLimiter;
use crate::metrics::{self as gate_metrics, DECISION_SECONDS, RATE_STRATEGIES};
use crate::risk::{RiskControls, monotonic_ms};

/// Subject of reject events, in Titan's own event namespace.
pub const REJECT_EVENT_SUBJECT: &str = "titan.evt.execution.reject.v1";
/// `event_type` of reject events, as Titan names it.
pub const REJECT_EVENT_TYPE: &str = "execution.intent.rejected";

pub const HEADER_MSG_ID: &str = "Nats-Msg-Id";
pub const HEADER_KEY_ID: &str = "Titan-Key-Id";
pub const HEADER_TIMESTAMP: &str = "Titan-Timestamp";
pub const HEADER_NONCE: &str = "Titan-Nonce";
pub const HEADER_SIGNATURE: &str = "Titan-Signature";
/// Set on forwarded orders: the replica that admitted it.
pub const HEADER_GATE_ID: &str = "Titan-Gate-Id";
/// Set on forwarded orders: the epoch of the state it was admitted under.
pub const HEADER_GATE_EPOCH: &str = "Titan-Gate-Epoch";

/// Everything the order path's tasks share.
#[derive(Clone, Debug)]
pub struct OrderPath {
    pub gate: Arc<Gate>,
    pub client: async_nats::Client,
    pub jetstream: async_nats::jetstream::Context,
    in_flight: Arc<Semaphore>,
    log_limiter: Arc<RejectLogLimiter>,
    risk: RiskControls,
}

/// One order as received, kept for the verdict report.
#[derive(Debug)]
pub struct Received {
    pub subject: String,
    pub reply: Option<String>,
    pub headers: Option<HeaderMap>,
    pub payload: Bytes,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.as_ref().and_then(|headers| headers.get(name)).map(async_nats::HeaderValue::as_str)
    }
}

impl OrderPath {
    /// Creates the order path.
    pub fn new(
        gate: Arc<Gate>,
        client: async_nats::Client,
        jetstream: async_nats::jetstream::Context,
        log_limiter: Arc<RejectLogLimiter>,
        risk: RiskControls,
    ) -> Self {
        let in_flight = Arc::new(Semaphore::new(gate.settings.max_in_flight));
        Self { gate, client, jetstream, in_flight, log_limiter, risk }
    }

    /// Reads the intake queue subscription until it ends, deciding each order as it comes
    /// and forwarding admitted ones without waiting for earlier acknowledgements. When
    /// `shutdown` changes, it drains the subscription: the server sends no more orders
    /// to this replica, and the ones already received still get their verdict.
    pub async fn run(self, mut shutdown: tokio::sync::watch::Receiver<bool>) -> anyhow::Result<()> {
        let settings = &self.gate.settings;
        let subject = format!("{}.>", settings.intake_prefix);
        let mut subscriber = self.client.queue_subscribe(subject.clone(), settings.queue_group.clone()).await?;
        self.gate.health.intake_subscribed.store(true, std::sync::atomic::Ordering::Release);
        info!(subject = %subject, queue_group = %settings.queue_group, "Intake subscribed");

        // TODO(#6): the spent nonces live only in this process's memory. Missing: a replay
        // memory shared by all replicas and kept across restarts (for example in JetStream).
        // Until then the same signed order sent with two message ids can be admitted once per
        // replica, and once more by a restarted gate while its timestamp is inside the clock window.
        let mut replay = ReplayMemory::new(settings.replay_capacity);
        // Per replica: the queue group spreads a strategy's orders over the replicas.
        let mut rate = RateLimiter::new(settings.risk.rate.clone(), monotonic_ms());
        let mut scratch = String::with_capacity(1024);
        let mut draining = false;
        loop {
            let message = tokio::select! {
                message = subscriber.next() => message,
                _ = shutdown.changed(), if !draining => {
                    draining = true;
                    info!("Draining the intake: no new orders, deciding the ones received");
                    match tokio::time::timeout(std::time::Duration::from_secs(2), subscriber.drain()).await {
                        Ok(Ok(())) => {}
                        Ok(Err(error)) => warn!(error = %error, "Draining the intake subscription failed"),
                        Err(_) => {
                            warn!("Draining the intake timed out; NATS is unreachable");
                            break;
                        }
                    }
                    continue;
                }
            };
            let Some(message) = message else { break };
            let received = Received {
                subject: message.subject.to_string(),
                reply: message.reply.map(|reply| reply.to_string()),
                headers: message.headers,
                payload: message.payload,
            };
            self.handle(received, &mut replay, &mut rate, &mut scratch).await;
        }
        self.gate.health.intake_subscribed.store(false, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    async fn handle(
        &self,
        received: Received,
        replay: &mut ReplayMemory,
        rate: &mut RateLimiter,
        scratch: &mut String,
    ) {
        let started = Instant::now();
        let state = self.gate.state();
        let keyring = self.gate.keyring();
        let tail = tail_of(&received.subject, &self.gate.settings.intake_prefix);
        let headers = OrderHeaders {
            msg_id: received.header(HEADER_MSG_ID),
            key_id: received.header(HEADER_KEY_ID),
            timestamp: received.header(HEADER_TIMESTAMP),
            nonce: received.header(HEADER_NONCE),
            signature: received.header(HEADER_SIGNATURE),
        };
        let order = Order { subject: &received.subject, tail, body: &received.payload, headers };
        let context = Context { state: &state, keyring: &keyring, policy: &self.gate.policy, now_ms: now_ms() };
        let decision = if let Some(problem) = self.gate.health.control_plane_problem() {
            Decision::Reject(Rejection { reason: Reason::SystemHalted, detail: problem.into(), halted_scope: None })
        } else if let Err(problem) = check_headers(received.headers.as_ref()) {
            let reason = if state.global.mode == Mode::HardHalt { Reason::SystemHalted } else { Reason::Malformed };
            Decision::Reject(Rejection { reason, detail: problem.into(), halted_scope: None })
        } else {
            let decision = titan_gate_core::decide(&order, &context, replay, scratch);
            self.limit_rate(decision, rate)
        };
        histogram!(DECISION_SECONDS).record(started.elapsed());

        if let Decision::Reject(rejection) = &decision
            && spends_nonce(rejection.reason)
        {
            spend_nonces(&order, &context, replay, scratch);
        }
        self.gate.replay_nonces.store(replay.len() as u64, std::sync::atomic::Ordering::Relaxed);

        let epoch = state.epoch;
        drop(keyring);
        match decision {
            Decision::Reject(rejection) => self.report_rejection(&received, &rejection, &state).await,
            Decision::Admit(admission) => {
                drop(state);
                self.forward(received, admission, epoch).await;
            }
        }
    }

    /// Rejects an admitted order over a rate limit. The check comes after every other
    /// check, so only orders whose signature verified, fresh and not replayed, use up a
    /// strategy's allowance: a forged order naming a strategy can neither get it limited
    /// nor trip its runaway halt. Its nonce is already spent, so it cannot be replayed later.
    fn limit_rate(&self, decision: Decision, rate: &mut RateLimiter) -> Decision {
        let Decision::Admit(admission) = &decision else { return decision };
        if rate.is_off() {
            return decision;
        }
        let verdict = rate.check(&admission.strategy, monotonic_ms());
        gauge!(RATE_STRATEGIES).set(gate_metrics::u64_to_f64(rate.strategy_count() as u64));
        match verdict {
            RateVerdict::Admit => decision,
            RateVerdict::Limited { by, runaway } => {
                Decision::Reject(self.risk.rate_limited(&admission.strategy, by, runaway))
            }
        }
    }

    /// Checks the state once more, takes an in-flight slot and publishes to JetStream;
    /// the acknowledgement is awaited in its own task.
    async fn forward(&self, received: Received, admission: Admission, decided_epoch: u64) {
        let state = self.gate.state();
        let tail = tail_of(&received.subject, &self.gate.settings.intake_prefix).to_owned();
        if state.epoch != decided_epoch
            && let Err(rejection) = check_halt(&state, &tail, &admission.strategy, admission.reducing)
        {
            self.report_rejection(&received, &rejection, &state).await;
            return;
        }
        let epoch = state.epoch;
        drop(state);

        let Ok(permit) = Arc::clone(&self.in_flight).try_acquire_owned() else {
            let detail = format!(
                "gate at capacity: {} orders await their acknowledgement; retry shortly",
                self.gate.settings.max_in_flight
            );
            self.reject(&received, Reason::RateLimited, detail.into()).await;
            return;
        };

        let pending = PendingForward::new(&self.gate, &received, &admission, &tail, epoch);
        match forward::publish(&self.jetstream, &pending).await {
            Ok(ack) => {
                let path = self.clone();
                tokio::spawn(async move { path.finish(received, pending, ack, permit).await });
            }
            Err(rejection) => self.report_rejection(&received, &rejection, &self.gate.state()).await,
        }
    }

    async fn finish(
        self,
        received: Received,
        pending: PendingForward,
        ack: async_nats::jetstream::context::PublishAckFuture,
        permit: OwnedSemaphorePermit,
    ) {
        let outcome = forward::await_ack(&self.gate, ack, &pending).await;
        drop(permit);
        match outcome {
            ForwardOutcome::Stored { sequence } => self.report_admission(&received, &pending, sequence).await,
            ForwardOutcome::Refused(rejection) => {
                self.report_rejection(&received, &rejection, &self.gate.state()).await;
            }
            ForwardOutcome::Unknown(detail) => {
                self.report_unconfirmed(&received, &pending, &detail).await;
                let path = self.clone();
                tokio::spawn(async move { forward::follow_up(&path, pending).await });
            }
        }
    }

    async fn report_admission(&self, received: &Received, pending: &PendingForward, sequence: u64) {
        self.gate.count(Verdict::Admitted);
        gate_metrics::count_order(Verdict::Admitted, None);
        debug!(order.id = %pending.msg_id, signal.id = %pending.signal_id, subject = %received.subject, stream.seq = sequence, halt.epoch = pending.epoch, "Order admitted");
        if let Some(reply) = &received.reply {
            let body = AdmittedReply {
                verdict: "admitted",
                stream_seq: sequence,
                epoch: pending.epoch,
                msg_id: &pending.msg_id,
                gate_id: &self.gate.settings.gate_id,
            };
            // Serialized from a struct, not a `json!` map: no map nodes or key strings to allocate.
            let body = serde_json::to_string(&body).expect("a reply of strings and integers always serializes");
            self.publish(reply.clone(), body).await;
        }
    }

    async fn report_unconfirmed(&self, received: &Received, pending: &PendingForward, detail: &str) {
        self.gate.count(Verdict::Unconfirmed);
        gate_metrics::count_order(Verdict::Unconfirmed, Some(Reason::ForwardUnconfirmed));
        warn!(order.id = %pending.msg_id, subject = %received.subject, detail = %detail, halt.epoch = pending.epoch, "Order unconfirmed: re-publishing until JetStream acknowledges or refuses it");
        if let Some(reply) = &received.reply {
            let body = json!({"verdict": "unconfirmed", "reason": Reason::ForwardUnconfirmed.code(), "detail": detail, "epoch": pending.epoch, "msg_id": pending.msg_id, "gate_id": self.gate.settings.gate_id});
            self.publish(reply.clone(), body.to_string()).await;
        }
    }

    /// Reports a rejection whose reason comes without a scope or halt.
    pub async fn reject(&self, received: &Received, reason: Reason, detail: std::borrow::Cow<'static, str>) {
        let rejection = Rejection { reason, detail, halted_scope: None };
        self.report_rejection(received, &rejection, &self.gate.state()).await;
    }

    /// Reports a rejection: counter, rate-limited log, reject event, and reply.
    pub async fn report_rejection(&self, received: &Received, rejection: &Rejection, state: &HaltState) {
        let reason = rejection.reason;
        self.gate.count(Verdict::Rejected);
        if matches!(reason, Reason::SystemHalted | Reason::ReduceOnly) {
            self.gate.count_halt_rejection();
        }
        gate_metrics::count_order(Verdict::Rejected, Some(reason));
        if let Some(kind) = reason.security_event() {
            gate_metrics::count_security_event(kind);
        }
        if reason == Reason::HmacSignatureMismatch {
            self.risk.security.record_failure("order");
        }

        let ids =
            describe_intent(received.header(HEADER_MSG_ID), &received.payload, self.gate.policy.max_payload_bytes);
        let intent_id = ids.intent_id.as_deref().unwrap_or("");
        self.log_rejection(received, rejection, state, intent_id);

        let event = json!({
            "event_type": REJECT_EVENT_TYPE,
            "reason": reason.code(),
            "intent_id": ids.intent_id,
            "timestamp": now_ms(),
            "gate_id": self.gate.settings.gate_id,
            "subject": received.subject,
            "signal_id": ids.signal_id,
            "detail": rejection.detail,
            "epoch": state.epoch,
        });
        self.publish(REJECT_EVENT_SUBJECT.to_owned(), event.to_string()).await;
        if let Some(reply) = &received.reply {
            let body = json!({"verdict": "rejected", "reason": reason.code(), "detail": rejection.detail, "epoch": state.epoch, "gate_id": self.gate.settings.gate_id});
            self.publish(reply.clone(), body.to_string()).await;
        }
    }

    fn log_rejection(&self, received: &Received, rejection: &Rejection, state: &HaltState, intent_id: &str) {
        let reason = rejection.reason;
        let permit = self.log_limiter.permit(reason, Instant::now());
        if permit.suppressed_before > 0 {
            info!(
                reason = reason.code(),
                suppressed = permit.suppressed_before,
                "Rejection logs suppressed in the last second"
            );
        }
        if !permit.log {
            return;
        }
        match reason {
            Reason::SystemHalted => {
                let entry = rejection
                    .halted_scope
                    .as_ref()
                    .and_then(|scope| state.scoped(scope.kind, &scope.value))
                    .unwrap_or(&state.global);
                let scope = rejection
                    .halted_scope
                    .as_ref()
                    .map_or_else(|| gate_metrics::GLOBAL_SCOPE.to_owned(), ToString::to_string);
                // A fail-closed rejection (control plane down) has no halt entry of its own.
                let halt_reason =
                    if entry.mode.is_halted() { entry.reason.as_str() } else { rejection.detail.as_ref() };
                warn!(order.id = %intent_id, subject = %received.subject, halt.reason = %halt_reason, halt.scope = %scope, halt.epoch = state.epoch, "Order Rejected: System Halted");
            }
            _ if reason.security_event().is_some() => {
                warn!(order.id = %intent_id, subject = %received.subject, reason = reason.code(), detail = %rejection.detail, halt.epoch = state.epoch, "Order rejected");
            }
            _ => {
                info!(order.id = %intent_id, subject = %received.subject, reason = reason.code(), detail = %rejection.detail, halt.epoch = state.epoch, "Order rejected");
            }
        }
    }

    /// Publishes on core NATS. A failure is logged and does not change the verdict.
    pub async fn publish(&self, subject: String, body: String) {
        if let Err(error) = self.client.publish(subject.clone(), body.into()).await {
            warn!(subject = %subject, error = %error, "Publishing a verdict report failed");
        }
    }

    /// Returns the number of forwarded orders awaiting their acknowledgement.
    pub fn in_flight(&self) -> usize {
        self.gate.settings.max_in_flight.saturating_sub(self.in_flight.available_permits())
    }

    /// Waits until every forwarded order has its acknowledgement, or `timeout` passes;
    /// returns the number still waiting.
    pub async fn wait_in_flight(&self, timeout: std::time::Duration) -> usize {
        let all = u32::try_from(self.gate.settings.max_in_flight).unwrap_or(u32::MAX);
        match tokio::time::timeout(timeout, self.in_flight.acquire_many(all)).await {
            Ok(_) => 0,
            Err(_) => self.gate.settings.max_in_flight.saturating_sub(self.in_flight.available_permits()),
        }
    }

    /// Reports the rejection-log counts of windows that ended without another rejection.
    pub fn flush_suppressed_logs(&self) {
        for (reason, suppressed) in self.log_limiter.take_expired(Instant::now()) {
            info!(reason = reason.code(), suppressed, "Rejection logs suppressed in the last second");
        }
    }
}

/// The reply to an admitted order.
#[derive(serde::Serialize)]
struct AdmittedReply<'a> {
    verdict: &'static str,
    stream_seq: u64,
    epoch: u64,
    msg_id: &'a str,
    gate_id: &'a str,
}

/// Returns true for rejections decided before the order's nonce was recorded, whose
/// nonce must be spent so the same signed bytes cannot be admitted later. The others
/// either spent it already, cannot verify, or cannot be recorded.
fn spends_nonce(reason: Reason) -> bool {
    matches!(
        reason,
        Reason::SystemHalted | Reason::ReduceOnly | Reason::Malformed | Reason::UnknownKey | Reason::StaleTimestamp
    )
}

/// Headers the gate reads, in their one accepted spelling.
const READ_HEADERS: [&str; 5] = [HEADER_MSG_ID, HEADER_KEY_ID, HEADER_TIMESTAMP, HEADER_NONCE, HEADER_SIGNATURE];

/// Rejects a header the gate reads when it appears more than once or in another
/// spelling: two signatures, one valid and one not, must not pass because only the
/// first was read.
fn check_headers(headers: Option<&HeaderMap>) -> Result<(), String> {
    let Some(headers) = headers else { return Ok(()) };
    for (name, values) in headers.iter() {
        let name: &str = name.as_ref();
        let Some(canonical) = READ_HEADERS.iter().find(|candidate| candidate.eq_ignore_ascii_case(name)) else {
            continue;
        };
        if name != *canonical {
            return Err(format!("header {name} must be spelled {canonical}"));
        }
        if values.len() > 1 {
            return Err(format!("header {canonical} appears {} times; send it once", values.len()));
        }
    }
    Ok(())
}

/// Returns the subject tokens after the intake prefix.
fn tail_of<'s>(subject: &'s str, prefix: &str) -> &'s str {
    subject.strip_prefix(prefix).and_then(|rest| rest.strip_prefix('.')).unwrap_or("")
}

/// Returns true for an error the server reported before anything was sent or stored.
pub fn is_certain_refusal(kind: PublishErrorKind) -> bool {
    matches!(
        kind,
        PublishErrorKind::StreamNotFound
            | PublishErrorKind::WrongLastMessageId
            | PublishErrorKind::WrongLastSequence
            | PublishErrorKind::MaxPayloadExceeded
    )
}
