//! The dead-man switch: every replica listens to the heartbeat subjects on its control
//! connection, and a configured source that stays silent too long trips a halt with
//! reason `HEARTBEAT_LOST:{source}`.

use std::time::{Duration, Instant};

use futures::StreamExt;
use metrics::gauge;
use titan_gate_core::risk::{HEARTBEAT_LOST, HEARTBEAT_SUBJECT, SilenceMonitor, heartbeat_source};
use titan_gate_core::{Change, HaltEntry, Mode};
use tracing::{debug, error, info, warn};

use super::{Control, Transitions, monotonic_ms};
use crate::metrics::{HEARTBEAT_AGE_SECONDS, u64_to_f64};

/// The reason of the change that lifts a dead-man halt once every source is heard.
const HEARTBEAT_RESTORED: &str = "HEARTBEAT_RESTORED";
/// The shortest and longest pause between two silence checks.
const MIN_CHECK_INTERVAL: Duration = Duration::from_millis(5);
const MAX_CHECK_INTERVAL: Duration = Duration::from_millis(250);
/// The shortest pause between two warnings about unreadable heartbeats.
const BAD_HEARTBEAT_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The state of the current silence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Episode {
    /// Every source is heard.
    Quiet,
    /// A source is silent and no dead-man halt is in force yet, for example because a
    /// stricter halt is: the switch tries again at every check.
    Armed,
    /// A source is silent and a dead-man halt is in force.
    Tripped,
    /// A signed resume lifted the dead-man halt while a source was still silent, so the
    /// switch stays quiet until every source is heard again.
    Released,
}

/// The dead-man switch's task state.
#[derive(Debug)]
pub struct DeadMan {
    transitions: Transitions,
    monitor: SilenceMonitor,
    episode: Episode,
    /// The global entry this replica's trip replaced, restored when the trip clears.
    ///
    /// NOTE: only the replica that tripped remembers it; another replica that clears
    /// first sets `RUNNING`, which lifts that softer halt too.
    replaced: Option<HaltEntry>,
    bad_heartbeats: u64,
    last_bad_heartbeat_log: Option<Instant>,
}

impl DeadMan {
    /// Creates the switch for the configured sources, all counted from now.
    pub fn new(transitions: Transitions) -> Self {
        let sources = transitions.gate().settings.risk.heartbeat.sources.clone();
        let monitor = SilenceMonitor::new(sources, monotonic_ms());
        Self {
            transitions,
            monitor,
            episode: Episode::Quiet,
            replaced: None,
            bad_heartbeats: 0,
            last_bad_heartbeat_log: None,
        }
    }

    /// Subscribes to the heartbeat subjects (no queue group: every replica hears every
    /// heartbeat) and checks for silence until the subscriptions end.
    pub async fn run(mut self, client: async_nats::Client) {
        let subscriptions = futures::future::try_join(
            client.subscribe(HEARTBEAT_SUBJECT),
            client.subscribe(format!("{HEARTBEAT_SUBJECT}.>")),
        )
        .await;
        let (bare, suffixed) = match subscriptions {
            Ok(subscriptions) => subscriptions,
            Err(error) => {
                error!(subject = HEARTBEAT_SUBJECT, error = %error, "Subscribing to heartbeats failed; every configured source will count as silent");
                return self.check_forever().await;
            }
        };
        let heartbeat = &self.transitions.gate().settings.risk.heartbeat;
        info!(subject = HEARTBEAT_SUBJECT, sources = ?heartbeat.sources, mode = %heartbeat.mode, latch = heartbeat.latch, "Dead-man switch listening for heartbeats");

        let mut messages = futures::stream::select(bare, suffixed);
        let mut checks = tokio::time::interval(self.check_interval());
        checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                message = messages.next() => {
                    let Some(message) = message else { break };
                    self.hear(&message.subject, &message.payload);
                }
                _ = checks.tick() => self.check(),
            }
        }
        error!("The heartbeat subscriptions ended; every configured source will count as silent");
        self.check_forever().await;
    }

    /// Keeps checking without heartbeats, so lost subscriptions trip the switch.
    async fn check_forever(mut self) {
        let mut checks = tokio::time::interval(self.check_interval());
        loop {
            checks.tick().await;
            self.check();
        }
    }

    fn check_interval(&self) -> Duration {
        let shortest = self.monitor.min_silence_ms().and_then(|ms| u64::try_from(ms).ok()).unwrap_or(1_000);
        (Duration::from_millis(shortest) / 4).clamp(MIN_CHECK_INTERVAL, MAX_CHECK_INTERVAL)
    }

    fn hear(&mut self, subject: &str, body: &[u8]) {
        match heartbeat_source(subject, body) {
            Ok(source) => {
                if !self.monitor.hear(&source, monotonic_ms()) {
                    debug!(source = %source, "Heartbeat of a source that is not configured; ignored");
                }
            }
            Err(error) => {
                self.bad_heartbeats += 1;
                let due = self.last_bad_heartbeat_log.is_none_or(|last| last.elapsed() >= BAD_HEARTBEAT_LOG_INTERVAL);
                if due {
                    self.last_bad_heartbeat_log = Some(Instant::now());
                    warn!(subject = %subject, error = %error, unreadable_so_far = self.bad_heartbeats, "Heartbeat ignored: its source cannot be read");
                }
            }
        }
    }

    /// Publishes the ages, then trips, keeps or clears the dead-man halt.
    fn check(&mut self) {
        let now = monotonic_ms();
        let report = self.monitor.poll(now);
        for (source, age_ms) in self.monitor.ages_ms(now) {
            let seconds = u64_to_f64(u64::try_from(age_ms).unwrap_or(0)) / 1_000.0;
            gauge!(HEARTBEAT_AGE_SECONDS, "source" => source.to_owned()).set(seconds);
        }
        for source in &report.newly_silent {
            warn!(source = %source, "Heartbeat source silent longer than its maximum silence");
        }
        let Some(first_silent) = report.silent.first() else {
            self.episode = Episode::Quiet;
            self.clear_if_ours();
            return;
        };

        let global = self.transitions.gate().state().global.clone();
        let trip_mode = self.transitions.gate().settings.risk.heartbeat.mode;
        self.episode = match self.episode {
            Episode::Released => Episode::Released,
            _ if is_dead_man_entry(&global) => Episode::Tripped,
            Episode::Quiet | Episode::Armed => self.trip(first_silent, trip_mode),
            Episode::Tripped if global.mode < trip_mode => {
                info!(halt.reason = %global.reason, "Dead-man halt lifted while a source is still silent; no new trip until every source is heard");
                Episode::Released
            }
            // A stricter halt replaced the dead-man halt, so trip again once it lifts.
            Episode::Tripped => Episode::Armed,
        };
    }

    fn trip(&mut self, source: &str, mode: Mode) -> Episode {
        let change = Control::DeadMan.change(None, mode, format!("{HEARTBEAT_LOST}:{source}"));
        let Some(applied) = self.transitions.trip(Control::DeadMan, &change) else {
            return Episode::Armed;
        };
        error!(source = %source, halt.mode = %mode, halt.epoch = applied.next.epoch, "Dead-man switch tripped: a heartbeat source went silent");
        self.replaced = Some(applied.previous.global.clone()).filter(|entry| !is_dead_man_entry(entry));
        Episode::Tripped
    }

    /// Lifts the dead-man halt once every source is heard, unless the latch is on,
    /// restoring the halt that this replica's trip replaced, if any.
    fn clear_if_ours(&mut self) {
        let gate = self.transitions.gate();
        if gate.settings.risk.heartbeat.latch || !is_dead_man_entry(&gate.state().global) {
            return;
        }
        let change = match self.replaced.take().filter(|entry| entry.mode.is_halted()) {
            Some(entry) => Change {
                scope: None,
                mode: entry.mode,
                reason: entry.reason,
                operator: entry.operator,
                key_id: entry.key_id,
                signed_ms: None,
            },
            None => Control::DeadMan.change(None, Mode::Running, HEARTBEAT_RESTORED),
        };
        if let Some(applied) = self.transitions.clear(Control::DeadMan, &change, is_dead_man_entry) {
            warn!(halt.mode = %change.mode, halt.epoch = applied.next.epoch, "Every heartbeat source heard again; dead-man halt cleared");
        }
    }
}

/// Returns true for a halt the dead-man switch set.
fn is_dead_man_entry(entry: &HaltEntry) -> bool {
    entry.operator.as_deref() == Some(Control::DeadMan.operator())
        && entry.reason.strip_prefix(HEARTBEAT_LOST).is_some_and(|rest| rest.starts_with(':'))
}
