//! Settings of the automatic risk controls: the dead-man switch, the order-rate
//! breaker, the security breaker and the on-halt actions.

use std::collections::BTreeMap;

use serde::Deserialize;
use titan_gate_core::Mode;
use titan_gate_core::command::HALT_SUBJECT;
use titan_gate_core::risk::{RateLimit, RateSettings};

use super::Layers;

pub const ENV_HEARTBEAT_SOURCES: &str = "TITAN_GATE_HEARTBEAT_SOURCES";
pub const ENV_HEARTBEAT_MAX_SILENCE_MS: &str = "TITAN_GATE_HEARTBEAT_MAX_SILENCE_MS";
pub const DEFAULT_HEARTBEAT_MAX_SILENCE_MS: i64 = 5_000;
pub const ENV_HEARTBEAT_MODE: &str = "TITAN_GATE_HEARTBEAT_MODE";
pub const ENV_HEARTBEAT_LATCH: &str = "TITAN_GATE_HEARTBEAT_LATCH";
pub const ENV_STRATEGY_RATE_PER_S: &str = "TITAN_GATE_STRATEGY_RATE_PER_S";
pub const ENV_STRATEGY_BURST: &str = "TITAN_GATE_STRATEGY_BURST";
pub const ENV_GLOBAL_RATE_PER_S: &str = "TITAN_GATE_GLOBAL_RATE_PER_S";
pub const ENV_GLOBAL_BURST: &str = "TITAN_GATE_GLOBAL_BURST";
pub const ENV_RUNAWAY_TRIP_MS: &str = "TITAN_GATE_RUNAWAY_TRIP_MS";
pub const ENV_RATE_MAX_STRATEGIES: &str = "TITAN_GATE_RATE_MAX_STRATEGIES";
/// Strategies with a token bucket at once; see [`RateLimitFile::max_strategies`].
pub const DEFAULT_RATE_MAX_STRATEGIES: usize = 10_000;
pub const ENV_SECURITY_TRIP_FAILURES: &str = "TITAN_GATE_SECURITY_TRIP_FAILURES";
pub const ENV_SECURITY_TRIP_WINDOW_MS: &str = "TITAN_GATE_SECURITY_TRIP_WINDOW_MS";
pub const DEFAULT_SECURITY_TRIP_WINDOW_MS: i64 = 10_000;
/// The maximum number of `[[on_halt_action]]` entries.
pub const MAX_ON_HALT_ACTIONS: usize = 32;
/// The highest accepted order rate, per second.
const MAX_RATE_PER_S: f64 = 1_000_000.0;

/// The `[heartbeat]` table.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatFile {
    /// Sources that must each be heard; none turns the dead-man switch off.
    pub sources: Option<Vec<String>>,
    pub max_silence_ms: Option<i64>,
    /// Maximum silence of single sources, overriding `max_silence_ms`.
    pub max_silence_ms_by_source: Option<BTreeMap<String, i64>>,
    /// `soft_halt` (the default) or `hard_halt`.
    pub mode: Option<String>,
    pub latch: Option<bool>,
}

/// The `[rate_limit]` table.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitFile {
    pub strategy_rate_per_s: Option<f64>,
    pub strategy_burst: Option<u32>,
    pub global_rate_per_s: Option<f64>,
    pub global_burst: Option<u32>,
    pub runaway_trip_ms: Option<i64>,
    /// Strategies tracked at once. At the bound, strategies whose bucket is full again are
    /// forgotten; if none is, a new strategy's orders are rejected `rate_limited`.
    pub max_strategies: Option<usize>,
}

/// The `[security_breaker]` table.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityBreakerFile {
    pub trip_failures: Option<usize>,
    pub trip_window_ms: Option<i64>,
}

/// One `[[on_halt_action]]` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnHaltActionFile {
    pub subject: String,
    #[serde(default)]
    pub payload: String,
}

/// The validated settings of the automatic risk controls.
#[derive(Clone, Debug)]
pub struct RiskSettings {
    pub heartbeat: HeartbeatSettings,
    pub rate: RateSettings,
    /// `None` turns the security breaker off.
    pub security: Option<SecuritySettings>,
    /// Messages published when a global `HARD_HALT` begins, in order.
    pub on_halt_actions: Vec<OnHaltAction>,
}

/// The dead-man switch's settings.
#[derive(Clone, Debug)]
pub struct HeartbeatSettings {
    /// Each configured source with its maximum silence in ms; empty turns the switch off.
    pub sources: Vec<(String, i64)>,
    /// The mode a silent source trips.
    pub mode: Mode,
    /// Keeps the trip after every source is heard again, until a signed resume.
    pub latch: bool,
}

/// The security breaker's settings.
#[derive(Clone, Copy, Debug)]
pub struct SecuritySettings {
    /// The breaker trips on more failures than this inside the window.
    pub trip_failures: usize,
    pub trip_window_ms: i64,
}

/// A message to publish when a global `HARD_HALT` begins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OnHaltAction {
    pub subject: String,
    pub payload: String,
}

impl Layers<'_> {
    /// Resolves the settings of the automatic risk controls.
    pub(super) fn risk(&mut self, forward_prefix: &str) -> RiskSettings {
        RiskSettings {
            heartbeat: self.heartbeat(),
            rate: self.rate(),
            security: self.security(),
            on_halt_actions: self.on_halt_actions(forward_prefix),
        }
    }

    fn heartbeat(&mut self) -> HeartbeatSettings {
        let file = self.file.heartbeat.clone().unwrap_or_default();
        let names = match self.env_text(ENV_HEARTBEAT_SOURCES) {
            Some(text) => text.split(',').map(|name| name.trim().to_owned()).filter(|name| !name.is_empty()).collect(),
            None => file.sources.clone().unwrap_or_default(),
        };
        let max_silence_ms = self.number(
            ENV_HEARTBEAT_MAX_SILENCE_MS,
            "heartbeat.max_silence_ms",
            file.max_silence_ms,
            DEFAULT_HEARTBEAT_MAX_SILENCE_MS,
            10..=3_600_000,
        );
        let overrides = file.max_silence_ms_by_source.clone().unwrap_or_default();
        for (name, silence_ms) in &overrides {
            if !names.contains(name) {
                self.errors.push(format!("heartbeat.max_silence_ms_by_source: {name:?} is not in heartbeat.sources ({ENV_HEARTBEAT_SOURCES}); add it there or remove the override"));
            }
            if !(10..=3_600_000).contains(silence_ms) {
                self.errors
                    .push(format!("heartbeat.max_silence_ms_by_source.{name}: {silence_ms} is outside 10..=3600000"));
            }
        }
        let mut sources: Vec<(String, i64)> = Vec::new();
        for name in names {
            if sources.iter().any(|(known, _)| *known == name) {
                continue;
            }
            let silence_ms = overrides.get(&name).copied().unwrap_or(max_silence_ms);
            sources.push((name, silence_ms));
        }
        let mode = match self.env_text(ENV_HEARTBEAT_MODE).or(file.mode.clone()).as_deref() {
            None | Some("soft_halt") => Mode::SoftHalt,
            Some("hard_halt") => Mode::HardHalt,
            Some(other) => {
                self.errors
                    .push(format!("heartbeat.mode ({ENV_HEARTBEAT_MODE}): {other:?} is not soft_halt or hard_halt"));
                Mode::SoftHalt
            }
        };
        let latch = self.flag(ENV_HEARTBEAT_LATCH, "heartbeat.latch", file.latch, false);
        HeartbeatSettings { sources, mode, latch }
    }

    fn rate(&mut self) -> RateSettings {
        let file = self.file.rate_limit.clone().unwrap_or_default();
        let strategy = self.rate_limit(
            (ENV_STRATEGY_RATE_PER_S, "rate_limit.strategy_rate_per_s", file.strategy_rate_per_s),
            (ENV_STRATEGY_BURST, "rate_limit.strategy_burst", file.strategy_burst),
        );
        let global = self.rate_limit(
            (ENV_GLOBAL_RATE_PER_S, "rate_limit.global_rate_per_s", file.global_rate_per_s),
            (ENV_GLOBAL_BURST, "rate_limit.global_burst", file.global_burst),
        );
        let runaway_trip_ms = self.optional_number(
            ENV_RUNAWAY_TRIP_MS,
            "rate_limit.runaway_trip_ms",
            file.runaway_trip_ms,
            1..=3_600_000,
        );
        if runaway_trip_ms.is_some() && strategy.is_none() {
            self.errors.push(format!("rate_limit.runaway_trip_ms ({ENV_RUNAWAY_TRIP_MS}) needs a strategy rate; set rate_limit.strategy_rate_per_s ({ENV_STRATEGY_RATE_PER_S})"));
        }
        let max_strategies = self.number(
            ENV_RATE_MAX_STRATEGIES,
            "rate_limit.max_strategies",
            file.max_strategies,
            DEFAULT_RATE_MAX_STRATEGIES,
            1..=1_000_000,
        );
        RateSettings { strategy, global, runaway_trip_ms, max_strategies }
    }

    /// Resolves one rate and its burst. The burst defaults to one second of the rate,
    /// at least 1; a burst without a rate is an error.
    fn rate_limit(&mut self, rate: (&str, &str, Option<f64>), burst: (&str, &str, Option<u32>)) -> Option<RateLimit> {
        let (rate_env, rate_key, rate_file) = rate;
        let (burst_env, burst_key, burst_file) = burst;
        let rate_per_s = self.rate_per_s(rate_env, rate_key, rate_file);
        let burst = self.optional_number(burst_env, burst_key, burst_file, 1..=10_000_000);
        match (rate_per_s, burst) {
            (Some(rate_per_s), burst) => {
                #[allow(
                    clippy::cast_possible_truncation,
                    clippy::cast_sign_loss,
                    reason = "rate_per_s is checked to lie in 0..=1e6"
                )]
                let one_second = rate_per_s.ceil().max(1.0) as u32;
                Some(RateLimit { rate_per_s, burst: burst.unwrap_or(one_second) })
            }
            (None, Some(_)) => {
                self.errors
                    .push(format!("{burst_key} ({burst_env}) is set without a rate; set {rate_key} ({rate_env}) too"));
                None
            }
            (None, None) => None,
        }
    }

    fn rate_per_s(&mut self, env_name: &str, key: &str, from_file: Option<f64>) -> Option<f64> {
        let value = match self.env_text(env_name) {
            Some(text) => {
                let Ok(value) = text.trim().parse::<f64>() else {
                    self.errors.push(format!("{key} ({env_name}): {text:?} is not a number of orders per second"));
                    return None;
                };
                value
            }
            None => from_file?,
        };
        if !(value.is_finite() && value > 0.0 && value <= MAX_RATE_PER_S) {
            self.errors.push(format!("{key} ({env_name}): {value} is outside 0 (exclusive) to {MAX_RATE_PER_S}"));
            return None;
        }
        Some(value)
    }

    fn security(&mut self) -> Option<SecuritySettings> {
        let file = self.file.security_breaker.clone().unwrap_or_default();
        let trip_failures = self.optional_number(
            ENV_SECURITY_TRIP_FAILURES,
            "security_breaker.trip_failures",
            file.trip_failures,
            1..=100_000,
        );
        let trip_window_ms = self.number(
            ENV_SECURITY_TRIP_WINDOW_MS,
            "security_breaker.trip_window_ms",
            file.trip_window_ms,
            DEFAULT_SECURITY_TRIP_WINDOW_MS,
            1..=86_400_000,
        );
        trip_failures.map(|trip_failures| SecuritySettings { trip_failures, trip_window_ms })
    }

    /// Checks each `[[on_halt_action]]`. A subject on the halt subjects or under the
    /// forward prefix is an error, since it would halt again or send an order around the gate.
    fn on_halt_actions(&mut self, forward_prefix: &str) -> Vec<OnHaltAction> {
        let entries = self.file.on_halt_action.clone().unwrap_or_default();
        if entries.len() > MAX_ON_HALT_ACTIONS {
            self.errors
                .push(format!("on_halt_action: {} entries, the maximum is {MAX_ON_HALT_ACTIONS}", entries.len()));
        }
        let mut actions = Vec::new();
        for (index, entry) in entries.into_iter().enumerate() {
            let subject = entry.subject.trim().to_owned();
            let valid = !subject.is_empty()
                && subject.split('.').all(|token| !token.is_empty() && !token.contains(['*', '>', ' ', '\t']));
            let below = |prefix: &str| subject == prefix || subject.starts_with(&format!("{prefix}."));
            if !valid {
                self.errors.push(format!("on_halt_action[{index}].subject: {subject:?} is not a subject of non-empty tokens without wildcards"));
            } else if below(HALT_SUBJECT) || below(forward_prefix) {
                self.errors.push(format!("on_halt_action[{index}].subject: {subject:?} is a halt subject or under the forward prefix {forward_prefix:?}; pick another subject"));
            } else {
                actions.push(OnHaltAction { subject, payload: entry.payload });
            }
        }
        actions
    }

    /// Resolves an optional number from the environment or the file, checked against `range`.
    fn optional_number<T>(
        &mut self,
        env_name: &str,
        key: &str,
        from_file: Option<T>,
        range: std::ops::RangeInclusive<T>,
    ) -> Option<T>
    where
        T: std::str::FromStr + PartialOrd + Copy + std::fmt::Display,
    {
        let present = self.env_text(env_name).is_some() || from_file.is_some();
        present.then(|| self.number(env_name, key, from_file, *range.start(), range))
    }
}

#[cfg(test)]
mod tests;
