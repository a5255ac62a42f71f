//! Settings: a TOML file, overridden by environment variables, overridden by flags.
//! Every wrong setting is collected and reported at once.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use titan_gate_core::{Mode, SignaturePolicy};

use crate::secret::SecretString;

pub use self::nats_url::parse_server_list;

mod nats_url;

mod risk;
pub use risk::*;

use crate::nats_auth::{NatsAuth, NatsAuthSettings};

/// Exit code for bad configuration (`EX_CONFIG` would be 78; the contract fixes 64, `EX_USAGE`).
pub const EXIT_BAD_CONFIG: i32 = 64;

pub const ENV_NATS_URL: &str = "NATS_URL";
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";
pub const ENV_NATS_USER: &str = "NATS_USER";
pub const ENV_NATS_PASSWORD: &str = "NATS_PASSWORD";
pub const ENV_NATS_CREDS: &str = "NATS_CREDS";
pub const ENV_HTTP_ADDR: &str = "TITAN_GATE_HTTP_ADDR";
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:9464";
pub const ENV_KEYRING: &str = "TITAN_GATE_KEYRING";
pub const ENV_INITIAL_MODE: &str = "TITAN_GATE_INITIAL_MODE";
pub const ENV_CLOCK_WINDOW_MS: &str = "TITAN_GATE_CLOCK_WINDOW_MS";
pub const ENV_GATE_ID: &str = "TITAN_GATE_ID";
pub const ENV_MAX_PAYLOAD_BYTES: &str = "TITAN_GATE_MAX_PAYLOAD_BYTES";
pub const ENV_SIGNATURES: &str = "TITAN_GATE_SIGNATURES";
pub const ENV_FORWARD_ACK_TIMEOUT_MS: &str = "TITAN_GATE_FORWARD_ACK_TIMEOUT_MS";
pub const ENV_FORWARD_RETRY_WINDOW_MS: &str = "TITAN_GATE_FORWARD_RETRY_WINDOW_MS";
pub const ENV_MAX_IN_FLIGHT: &str = "TITAN_GATE_MAX_IN_FLIGHT";
pub const ENV_REPLAY_CAPACITY: &str = "TITAN_GATE_REPLAY_CAPACITY";
pub const ENV_MAX_SCOPES: &str = "TITAN_GATE_MAX_SCOPES";
pub const ENV_LOG_FORMAT: &str = "TITAN_GATE_LOG_FORMAT";
pub const ENV_REJECT_LOGS_PER_SECOND: &str = "TITAN_GATE_REJECT_LOGS_PER_SECOND";
pub const ENV_INTAKE_PREFIX: &str = "TITAN_GATE_INTAKE_PREFIX";
pub const ENV_FORWARD_PREFIX: &str = "TITAN_GATE_FORWARD_PREFIX";
pub const ENV_STATE_BUCKET: &str = "TITAN_GATE_STATE_BUCKET";
pub const ENV_STATE_REPLICAS: &str = "TITAN_GATE_STATE_REPLICAS";
pub const ENV_CONTROL_PLANE_LOST_AFTER_MS: &str = "TITAN_GATE_CONTROL_PLANE_LOST_AFTER_MS";
pub const ENV_CONTROL_PLANE_LOST_LATCH: &str = "TITAN_GATE_CONTROL_PLANE_LOST_LATCH";

pub const DEFAULT_INTAKE_PREFIX: &str = "titan.gate.execution.place.v1";
pub const DEFAULT_FORWARD_PREFIX: &str = "titan.cmd.execution.place.v1";
pub const DEFAULT_QUEUE_GROUP: &str = "titan-gate";
pub const DEFAULT_FORWARD_ACK_TIMEOUT_MS: u64 = 2_000;
/// Re-publishing an unconfirmed order is safe only inside JetStream's duplicate window
/// (60 s on `TITAN_CMD`), so the default stays well inside it.
pub const DEFAULT_FORWARD_RETRY_WINDOW_MS: u64 = 30_000;
pub const DEFAULT_MAX_IN_FLIGHT: usize = 4_096;
pub const DEFAULT_MAX_SCOPES: usize = 10_000;
pub const DEFAULT_REJECT_LOGS_PER_SECOND: u32 = 10;
/// The JetStream key-value bucket that stores the halt state.
pub const DEFAULT_STATE_BUCKET: &str = "TITAN_GATE_STATE";
/// Replicas of the state bucket when the gate creates it. Use 3 on a 3-node cluster.
pub const DEFAULT_STATE_REPLICAS: usize = 1;
/// How long the control connection may stay down before the gate halts with
/// `CONTROL_PLANE_LOST`.
pub const DEFAULT_CONTROL_PLANE_LOST_AFTER_MS: u64 = 5_000;
/// Messages the NATS client buffers per subscription before it drops and reports a slow consumer.
pub const DEFAULT_SUBSCRIPTION_CAPACITY: usize = 65_536;

/// The v1 shared secret's environment variables, in order of preference.
pub const ENV_V1_SECRETS: [&str; 2] = ["TITAN_HMAC_SECRET", "HMAC_SECRET"];

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The settings file, every key optional. Unknown keys are errors so a typo cannot
/// silently leave a default in force.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    pub nats_url: Option<String>,
    pub nats_user: Option<String>,
    pub nats_password: Option<SecretString>,
    pub nats_creds: Option<PathBuf>,
    pub nats_nkey_seed_file: Option<PathBuf>,
    pub nats_tls_ca: Option<PathBuf>,
    pub nats_tls_cert: Option<PathBuf>,
    pub nats_tls_key: Option<PathBuf>,
    pub http_addr: Option<String>,
    pub gate_id: Option<String>,
    pub keyring: Option<PathBuf>,
    pub initial_mode: Option<String>,
    pub clock_window_ms: Option<i64>,
    pub max_payload_bytes: Option<usize>,
    pub signatures: Option<String>,
    pub intake_prefix: Option<String>,
    pub forward_prefix: Option<String>,
    pub queue_group: Option<String>,
    pub forward_ack_timeout_ms: Option<u64>,
    pub forward_retry_window_ms: Option<u64>,
    pub max_in_flight: Option<usize>,
    pub replay_capacity: Option<usize>,
    pub max_scopes: Option<usize>,
    pub log_format: Option<LogFormat>,
    pub reject_logs_per_second: Option<u32>,
    pub state_bucket: Option<String>,
    pub state_replicas: Option<usize>,
    pub control_plane_lost_after_ms: Option<u64>,
    pub control_plane_lost_latch: Option<bool>,
    pub heartbeat: Option<HeartbeatFile>,
    pub rate_limit: Option<RateLimitFile>,
    pub security_breaker: Option<SecurityBreakerFile>,
    pub on_halt_action: Option<Vec<OnHaltActionFile>>,
}

/// Settings given as flags to `titan-gate run`; they override everything else.
#[derive(Clone, Debug, Default)]
pub struct FlagSettings {
    pub nats_url: Option<String>,
    /// NATS authentication and TLS flags; the password is never a flag.
    pub nats_auth: NatsAuthSettings,
    pub http_addr: Option<String>,
    pub gate_id: Option<String>,
    pub keyring: Option<PathBuf>,
    pub initial_mode: Option<String>,
    pub log_format: Option<String>,
}

/// The validated settings of a running gate.
#[derive(Clone, Debug)]
pub struct Settings {
    pub nats: NatsSettings,
    pub http_addr: SocketAddr,
    pub gate_id: String,
    pub keyring_path: Option<PathBuf>,
    pub initial_mode: Mode,
    pub clock_window_ms: i64,
    pub max_payload_bytes: usize,
    pub signatures: SignaturePolicy,
    pub intake_prefix: String,
    pub forward_prefix: String,
    pub queue_group: String,
    pub forward_ack_timeout: Duration,
    pub forward_retry_window: Duration,
    pub max_in_flight: usize,
    pub replay_capacity: usize,
    pub max_scopes: usize,
    pub log_format: LogFormat,
    pub reject_logs_per_second: u32,
    /// The key-value bucket that stores the halt state, created if missing.
    pub state_bucket: String,
    /// Replicas of the state bucket when the gate creates it. An existing bucket keeps its own.
    pub state_replicas: usize,
    /// How long the control connection may stay down before the gate applies a local
    /// `HARD_HALT` with reason `CONTROL_PLANE_LOST`.
    pub control_plane_lost_after: Duration,
    /// Keeps the local `CONTROL_PLANE_LOST` halt after the reconnect and the re-read of the
    /// stored state, until a signed resume lifts it.
    pub control_plane_lost_latch: bool,
    /// The automatic risk controls: dead-man switch, rate and security breakers, on-halt actions.
    pub risk: RiskSettings,
}

/// How to reach NATS. Its `Debug` output hides the passwords (see [`crate::secret`]).
#[derive(Clone)]
pub struct NatsSettings {
    /// `nats_url` as given: one URL or a comma-separated list.
    pub url: String,
    /// The servers of `url`, in order. The client connects to one at random and fails over to the others.
    pub servers: Vec<async_nats::ServerAddr>,
    /// Credentials and TLS files, already read and checked.
    pub auth: NatsAuth,
}

/// Every setting that was wrong, each naming the setting, its source and the problem.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
pub struct ConfigError(pub Vec<String>);

/// A source of environment variables, so tests can pass a map instead of the process environment.
pub type Environment = BTreeMap<String, String>;

/// Reads the process environment.
pub fn process_environment() -> Environment {
    std::env::vars().collect()
}

impl Settings {
    /// Loads settings from an optional file, the environment and flags, in rising precedence.
    pub fn load(file: Option<&Path>, env: &Environment, flags: &FlagSettings) -> Result<Settings, ConfigError> {
        let mut errors = Vec::new();
        let file_settings = match file {
            Some(path) => read_file(path).unwrap_or_else(|error| {
                errors.push(error);
                FileSettings::default()
            }),
            None => FileSettings::default(),
        };
        let mut layers = Layers { file: &file_settings, env, errors: &mut errors };
        let settings = layers.build(flags);
        if errors.is_empty() { Ok(settings) } else { Err(ConfigError(errors)) }
    }
}

fn read_file(path: &Path) -> Result<FileSettings, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("config file {}: cannot be read: {error}", path.display()))?;
    toml::from_str(&text).map_err(|error| format!("config file {}: {}", path.display(), error.to_string().trim_end()))
}

/// Resolves each setting from flag, environment and file, recording every error.
struct Layers<'a> {
    file: &'a FileSettings,
    env: &'a Environment,
    errors: &'a mut Vec<String>,
}

impl Layers<'_> {
    #[allow(clippy::too_many_lines, reason = "one short resolution per setting, in the order of the settings file")]
    fn build(&mut self, flags: &FlagSettings) -> Settings {
        let file = self.file;
        let nats_url = pick(flags.nats_url.clone(), self.env_text(ENV_NATS_URL), file.nats_url.clone())
            .unwrap_or_else(|| DEFAULT_NATS_URL.to_owned());
        let nats_servers = parse_server_list(&nats_url).unwrap_or_else(|error| {
            self.errors.push(format!("nats_url ({ENV_NATS_URL}): {error}"));
            Vec::new()
        });
        let http_text = pick(flags.http_addr.clone(), self.env_text(ENV_HTTP_ADDR), file.http_addr.clone())
            .unwrap_or_else(|| DEFAULT_HTTP_ADDR.to_owned());
        let http_addr = http_text.parse().unwrap_or_else(|_| {
            self.errors
                .push(format!("http_addr ({ENV_HTTP_ADDR}): {http_text:?} is not an address like 127.0.0.1:9464"));
            SocketAddr::from(([127, 0, 0, 1], 9464))
        });
        let gate_id = pick(flags.gate_id.clone(), self.env_text(ENV_GATE_ID), file.gate_id.clone())
            .unwrap_or_else(default_gate_id);
        if gate_id.is_empty() || gate_id.len() > 128 {
            self.errors.push(format!("gate_id ({ENV_GATE_ID}): must be 1 to 128 characters"));
        }
        let mode_text = pick(flags.initial_mode.clone(), self.env_text(ENV_INITIAL_MODE), file.initial_mode.clone())
            .unwrap_or_else(|| "hard_halt".to_owned());
        let initial_mode = match mode_text.as_str() {
            "hard_halt" => Mode::HardHalt,
            "running" => Mode::Running,
            other => {
                self.errors.push(format!("initial_mode ({ENV_INITIAL_MODE}): {other:?} is not hard_halt or running"));
                Mode::HardHalt
            }
        };
        let signatures_text =
            pick(None, self.env_text(ENV_SIGNATURES), file.signatures.clone()).unwrap_or_else(|| "any".to_owned());
        let signatures = match signatures_text.as_str() {
            "any" => SignaturePolicy::Any,
            "v1" => SignaturePolicy::V1,
            "v2" => SignaturePolicy::V2,
            other => {
                self.errors.push(format!("signatures ({ENV_SIGNATURES}): {other:?} is not any, v1 or v2"));
                SignaturePolicy::Any
            }
        };
        let log_text = pick(flags.log_format.clone(), self.env_text(ENV_LOG_FORMAT), None);
        let log_format = match log_text.as_deref() {
            None => file.log_format.unwrap_or(LogFormat::Text),
            Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                self.errors.push(format!("log_format ({ENV_LOG_FORMAT}): {other:?} is not text or json"));
                LogFormat::Text
            }
        };

        let clock_window_ms = self.number(
            ENV_CLOCK_WINDOW_MS,
            "clock_window_ms",
            file.clock_window_ms,
            titan_gate_core::decide::DEFAULT_CLOCK_WINDOW_MS,
            1..=3_600_000,
        );
        let max_payload_bytes = self.number(
            ENV_MAX_PAYLOAD_BYTES,
            "max_payload_bytes",
            file.max_payload_bytes,
            titan_gate_core::decide::DEFAULT_MAX_PAYLOAD_BYTES,
            64..=8 * 1024 * 1024,
        );
        let forward_ack_timeout_ms = self.number(
            ENV_FORWARD_ACK_TIMEOUT_MS,
            "forward_ack_timeout_ms",
            file.forward_ack_timeout_ms,
            DEFAULT_FORWARD_ACK_TIMEOUT_MS,
            10..=60_000,
        );
        let forward_retry_window_ms = self.number(
            ENV_FORWARD_RETRY_WINDOW_MS,
            "forward_retry_window_ms",
            file.forward_retry_window_ms,
            DEFAULT_FORWARD_RETRY_WINDOW_MS,
            0..=55_000,
        );
        let max_in_flight =
            self.number(ENV_MAX_IN_FLIGHT, "max_in_flight", file.max_in_flight, DEFAULT_MAX_IN_FLIGHT, 1..=1_000_000);
        let replay_capacity = self.number(
            ENV_REPLAY_CAPACITY,
            "replay_capacity",
            file.replay_capacity,
            titan_gate_core::replay::DEFAULT_REPLAY_CAPACITY,
            1..=100_000_000,
        );
        let max_scopes = self.number(ENV_MAX_SCOPES, "max_scopes", file.max_scopes, DEFAULT_MAX_SCOPES, 0..=1_000_000);
        let reject_logs_per_second = self.number(
            ENV_REJECT_LOGS_PER_SECOND,
            "reject_logs_per_second",
            file.reject_logs_per_second,
            DEFAULT_REJECT_LOGS_PER_SECOND,
            0..=100_000,
        );
        // JetStream allows at most 5 replicas of a stream.
        let state_replicas =
            self.number(ENV_STATE_REPLICAS, "state_replicas", file.state_replicas, DEFAULT_STATE_REPLICAS, 1..=5);
        let state_bucket = self.state_bucket(file.state_bucket.clone());
        let control_plane_lost_after_ms = self.number(
            ENV_CONTROL_PLANE_LOST_AFTER_MS,
            "control_plane_lost_after_ms",
            file.control_plane_lost_after_ms,
            DEFAULT_CONTROL_PLANE_LOST_AFTER_MS,
            100..=600_000,
        );
        let control_plane_lost_latch =
            self.flag(ENV_CONTROL_PLANE_LOST_LATCH, "control_plane_lost_latch", file.control_plane_lost_latch, false);

        let intake_prefix =
            self.subject_prefix(ENV_INTAKE_PREFIX, "intake_prefix", file.intake_prefix.clone(), DEFAULT_INTAKE_PREFIX);
        let forward_prefix = self.subject_prefix(
            ENV_FORWARD_PREFIX,
            "forward_prefix",
            file.forward_prefix.clone(),
            DEFAULT_FORWARD_PREFIX,
        );
        if intake_prefix == forward_prefix || forward_prefix.starts_with(&format!("{intake_prefix}.")) {
            self.errors.push(format!(
                "intake_prefix ({ENV_INTAKE_PREFIX}) {intake_prefix:?} and forward_prefix ({ENV_FORWARD_PREFIX}) {forward_prefix:?} overlap, so the gate would read its own output"
            ));
        }

        for (key, env_name, prefix) in [
            ("intake_prefix", ENV_INTAKE_PREFIX, &intake_prefix),
            ("forward_prefix", ENV_FORWARD_PREFIX, &forward_prefix),
        ] {
            let halt = titan_gate_core::command::HALT_SUBJECT;
            if prefix == halt || prefix.starts_with(&format!("{halt}.")) || halt.starts_with(&format!("{prefix}.")) {
                self.errors.push(format!(
                    "{key} ({env_name}) {prefix:?} overlaps the halt subjects {halt}, so orders and halts would mix; pick another prefix"
                ));
            }
        }

        let risk = self.risk(&forward_prefix);

        Settings {
            nats: NatsSettings { url: nats_url, servers: nats_servers, auth: self.nats_auth(&flags.nats_auth) },
            http_addr,
            gate_id,
            keyring_path: pick(
                flags.keyring.clone(),
                self.env_text(ENV_KEYRING).map(PathBuf::from),
                file.keyring.clone(),
            ),
            initial_mode,
            clock_window_ms,
            max_payload_bytes,
            signatures,
            intake_prefix,
            forward_prefix,
            queue_group: file.queue_group.clone().unwrap_or_else(|| DEFAULT_QUEUE_GROUP.to_owned()),
            forward_ack_timeout: Duration::from_millis(forward_ack_timeout_ms),
            forward_retry_window: Duration::from_millis(forward_retry_window_ms),
            max_in_flight,
            replay_capacity,
            max_scopes,
            log_format,
            reject_logs_per_second,
            state_bucket,
            state_replicas,
            control_plane_lost_after: Duration::from_millis(control_plane_lost_after_ms),
            control_plane_lost_latch,
            risk,
        }
    }

    /// Resolves the bucket name, which JetStream key-value limits to letters, digits, '-' and '_'.
    fn state_bucket(&mut self, from_file: Option<String>) -> String {
        let bucket =
            pick(None, self.env_text(ENV_STATE_BUCKET), from_file).unwrap_or_else(|| DEFAULT_STATE_BUCKET.to_owned());
        let valid = !bucket.is_empty()
            && bucket
                .chars()
                .all(|character| character.is_ascii_alphanumeric() || character == '-' || character == '_');
        if !valid {
            self.errors.push(format!("state_bucket ({ENV_STATE_BUCKET}): {bucket:?} is not a bucket name; use only letters, digits, '-' and '_'"));
        }
        bucket
    }

    /// Resolves and checks the NATS credentials and TLS files from flag, environment and file.
    fn nats_auth(&mut self, flags: &NatsAuthSettings) -> NatsAuth {
        let file = self.file;
        let from_file = NatsAuthSettings {
            user: file.nats_user.clone(),
            password: file.nats_password.as_ref().map(|secret| secret.expose().to_owned()),
            creds: file.nats_creds.clone(),
            nkey_seed_file: file.nats_nkey_seed_file.clone(),
            tls_ca: file.nats_tls_ca.clone(),
            tls_cert: file.nats_tls_cert.clone(),
            tls_key: file.nats_tls_key.clone(),
        };
        let settings =
            flags.clone().with_defaults_from(NatsAuthSettings::from_env(self.env)).with_defaults_from(from_file);
        settings.load().unwrap_or_else(|errors| {
            self.errors.extend(errors);
            NatsAuth::default()
        })
    }

    fn env_text(&self, name: &str) -> Option<String> {
        self.env.get(name).filter(|value| !value.is_empty()).cloned()
    }

    /// Resolves a number from the environment or the file, checked against `range`.
    fn number<T>(
        &mut self,
        env_name: &str,
        key: &str,
        from_file: Option<T>,
        default: T,
        range: std::ops::RangeInclusive<T>,
    ) -> T
    where
        T: std::str::FromStr + PartialOrd + Copy + std::fmt::Display,
    {
        let value = if let Some(text) = self.env_text(env_name) {
            let Ok(value) = text.trim().parse::<T>() else {
                self.errors.push(format!("{key} ({env_name}): {text:?} is not a whole number"));
                return default;
            };
            value
        } else {
            from_file.unwrap_or(default)
        };
        if !range.contains(&value) {
            self.errors.push(format!("{key} ({env_name}): {value} is outside {}..={}", range.start(), range.end()));
            return default;
        }
        value
    }

    /// Resolves a boolean from the environment (`true` or `false`) or the file.
    fn flag(&mut self, env_name: &str, key: &str, from_file: Option<bool>, default: bool) -> bool {
        match self.env_text(env_name).as_deref().map(str::trim) {
            None => from_file.unwrap_or(default),
            Some("true") => true,
            Some("false") => false,
            Some(other) => {
                self.errors.push(format!("{key} ({env_name}): {other:?} is not true or false"));
                default
            }
        }
    }

    fn subject_prefix(&mut self, env_name: &str, key: &str, from_file: Option<String>, default: &str) -> String {
        let prefix = pick(None, self.env_text(env_name), from_file).unwrap_or_else(|| default.to_owned());
        let valid = !prefix.is_empty()
            && prefix.split('.').all(|token| !token.is_empty() && !token.contains(['*', '>', ' ', '\t']));
        if !valid {
            self.errors.push(format!(
                "{key} ({env_name}): {prefix:?} is not a subject prefix of non-empty tokens without wildcards"
            ));
        }
        prefix
    }
}

fn pick<T>(flag: Option<T>, env: Option<T>, file: Option<T>) -> Option<T> {
    flag.or(env).or(file)
}

fn default_gate_id() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "titan-gate".to_owned())
}

#[cfg(test)]
mod tests;
