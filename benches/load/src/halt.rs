//! Halt-to-effect: while orders flow through the gate at a fixed rate, repeated global
//! halts (each lifted by a signed resume), timed from the halt's publish to the first
//! `system_halted` verdict of the halt's epoch; and a count of orders admitted after a
//! halt was applied.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt;
use hdrhistogram::Histogram;

use crate::drive::{Outcome, Verdict, nanos};
use crate::orders::signed_command;

/// The global halt subject.
const HALT_SUBJECT: &str = "titan.cmd.sys.halt.v1";
/// Subject of the gate's command outcomes.
const COMMAND_EVENT_SUBJECT: &str = "titan.evt.gate.command.v1";
/// How long the gate may take to report a command's outcome.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// Time in RUNNING between a resume and the next halt.
pub const RUNNING_GAP: Duration = Duration::from_millis(100);
/// Time a halt stays in force before its resume; it also keeps the resume's timestamp
/// after the halt's start, which the gate requires.
pub const HALT_HOLD: Duration = Duration::from_millis(50);

/// Watches the verdicts of a halt run.
#[derive(Debug, Default)]
pub struct HaltProbe {
    state: Mutex<ProbeState>,
}

#[derive(Debug, Default)]
struct ProbeState {
    /// Send and receive time of the first `system_halted` reply per epoch.
    first_halted_reply: BTreeMap<u64, (Instant, Instant)>,
    /// Send time and epoch of every admitted order.
    admitted: Vec<(Instant, u64)>,
}

/// One applied halt: its publish time, its epoch, and when its applied event arrived.
#[derive(Debug, Clone, Copy)]
struct AppliedHalt {
    published: Instant,
    epoch: u64,
    confirmed: Instant,
    resumed_epoch: u64,
}

/// Results over all halts of one load level.
#[derive(Debug)]
pub struct HaltStats {
    /// Halt publish to first `system_halted` verdict, in nanoseconds.
    pub effect: Histogram<u64>,
    /// The same, but from the first rejected order's send time when that order was sent
    /// after the halt's publish: it leaves out the wait for the producer's next order.
    pub effect_after_send: Histogram<u64>,
    /// Halt publish to the arrival of the gate's `applied` command event, in
    /// nanoseconds: the gate's own time to apply the halt, without any order's round trip.
    pub applied: Histogram<u64>,
    pub halts: u32,
    /// Halts whose epoch never produced a `system_halted` verdict.
    pub without_effect: u32,
    /// Orders admitted under a halted epoch, or sent after the halt's applied event
    /// arrived and admitted under an older epoch.
    pub admitted_after_halt: u64,
}

impl HaltProbe {
    /// Records one verdict; the load driver calls it for every reply.
    pub fn observe(&self, sent: Instant, received: Instant, verdict: &Verdict) {
        let Some(epoch) = verdict.epoch else { return };
        let mut state = self.state.lock().expect("probe lock");
        match &verdict.outcome {
            Outcome::Rejected(reason) if reason == "system_halted" => {
                state.first_halted_reply.entry(epoch).or_insert((sent, received));
            }
            Outcome::Admitted => state.admitted.push((sent, epoch)),
            _ => {}
        }
    }

    fn summarize(&self, halts: &[AppliedHalt]) -> anyhow::Result<HaltStats> {
        let state = self.state.lock().expect("probe lock");
        let mut effect = Histogram::new_with_bounds(1, 60_000_000_000, 3).context("histogram bounds")?;
        let mut effect_after_send = effect.clone();
        let mut applied = effect.clone();
        let mut without_effect = 0;
        for halt in halts {
            applied.saturating_record(nanos(halt.confirmed.saturating_duration_since(halt.published)).max(1));
            let Some(&(sent, received)) = state.first_halted_reply.get(&halt.epoch) else {
                without_effect += 1;
                continue;
            };
            effect.saturating_record(nanos(received.saturating_duration_since(halt.published)).max(1));
            let start = sent.max(halt.published);
            effect_after_send.saturating_record(nanos(received.saturating_duration_since(start)).max(1));
        }
        let admitted_after_halt = state.admitted.iter().filter(|(sent, epoch)| violates(halts, *sent, *epoch)).count();
        Ok(HaltStats {
            effect,
            effect_after_send,
            applied,
            halts: u32::try_from(halts.len()).unwrap_or(u32::MAX),
            without_effect,
            admitted_after_halt: admitted_after_halt as u64,
        })
    }
}

/// Returns true when an order sent at `sent` and admitted under `epoch` should have been
/// halted by one of `halts`.
fn violates(halts: &[AppliedHalt], sent: Instant, epoch: u64) -> bool {
    halts.iter().any(|halt| {
        let under_halted_epoch = epoch >= halt.epoch && epoch < halt.resumed_epoch;
        let sent_while_halted = sent > halt.confirmed && epoch < halt.epoch;
        under_halted_epoch || sent_while_halted
    })
}

/// Publishes `count` halts, each followed by a signed resume, on `operator` (a
/// connection of its own) while the load runs, then summarizes what `probe` saw.
pub async fn run_halts(
    operator: &async_nats::Client,
    probe: &HaltProbe,
    count: u32,
    start_after: Duration,
) -> anyhow::Result<HaltStats> {
    let mut events = operator.subscribe(COMMAND_EVENT_SUBJECT).await?;
    operator.flush().await?;
    tokio::time::sleep(start_after).await;

    let mut halts = Vec::new();
    for _ in 0..count {
        tokio::time::sleep(RUNNING_GAP).await;
        let published = Instant::now();
        let body = r#"{"reason":"load test halt","operator":"titan-gate-load"}"#;
        operator.publish(HALT_SUBJECT, body.into()).await?;
        operator.flush().await?;
        let epoch = await_applied(&mut events, "halt").await?;
        let confirmed = Instant::now();

        tokio::time::sleep(HALT_HOLD).await;
        let body = r#"{"state":"OPEN","reason":"load test resume","operator":"titan-gate-load"}"#;
        let (headers, payload) = signed_command(HALT_SUBJECT, body);
        operator.publish_with_headers(HALT_SUBJECT, headers, payload).await?;
        operator.flush().await?;
        let resumed_epoch = await_applied(&mut events, "resume").await?;
        halts.push(AppliedHalt { published, epoch, confirmed, resumed_epoch });
    }
    // Verdicts of orders decided just before the last resume may still be on their way.
    tokio::time::sleep(Duration::from_millis(200)).await;
    probe.summarize(&halts)
}

/// Waits for the gate's event of an applied `command` and returns its epoch.
async fn await_applied(events: &mut async_nats::Subscriber, command: &str) -> anyhow::Result<u64> {
    let deadline = tokio::time::Instant::now() + COMMAND_TIMEOUT;
    loop {
        let message = tokio::time::timeout_at(deadline, events.next())
            .await
            .with_context(|| format!("no applied {command} event from the gate within {COMMAND_TIMEOUT:?}"))?
            .context("the command event subscription ended")?;
        let event: serde_json::Value = serde_json::from_slice(&message.payload).context("command event is not JSON")?;
        if event["command"] != command {
            continue;
        }
        anyhow::ensure!(event["outcome"] == "applied", "the gate did not apply the {command}: {event}");
        return event["epoch"].as_u64().with_context(|| format!("command event without an epoch: {event}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn halt(origin: Instant, epoch: u64) -> AppliedHalt {
        AppliedHalt { published: origin, epoch, confirmed: origin + Duration::from_millis(1), resumed_epoch: epoch + 1 }
    }

    #[test]
    fn admission_under_halted_epoch_violates() {
        let origin = Instant::now();
        assert!(violates(&[halt(origin, 5)], origin, 5));
    }

    #[test]
    fn older_epoch_sent_after_confirmation_violates() {
        let origin = Instant::now();
        assert!(violates(&[halt(origin, 5)], origin + Duration::from_millis(2), 4));
    }

    #[test]
    fn older_epoch_sent_before_confirmation_is_allowed() {
        let origin = Instant::now();
        assert!(!violates(&[halt(origin, 5)], origin, 4));
    }

    #[test]
    fn epoch_after_resume_is_allowed() {
        let origin = Instant::now();
        assert!(!violates(&[halt(origin, 5)], origin + Duration::from_millis(2), 6));
    }
}
