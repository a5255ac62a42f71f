//! Command line of the load generator.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Measures titan-gate beside a direct JetStream publish and a no-op forwarder, on one
/// nats-server that this program starts on 127.0.0.1.
#[derive(Debug, Parser)]
#[command(name = "titan-gate-load", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub load: LoadArgs,
}

/// A subcommand; without one the program runs the measurement.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the no-op forwarder until stdin closes (started by the measurement itself).
    #[command(hide = true)]
    Forward(ForwardArgs),
}

/// Settings of the no-op forwarder process.
#[derive(Debug, Args)]
pub struct ForwardArgs {
    /// NATS server URL.
    #[arg(long)]
    pub nats_url: String,
    /// Maximum orders awaiting their JetStream acknowledgement, as the gate's
    /// `TITAN_GATE_MAX_IN_FLIGHT`.
    #[arg(long, default_value_t = 4096)]
    pub max_in_flight: usize,
}

/// Settings of a measurement run.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Measured time of each path, e.g. 10s, 500ms or 1m.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Unmeasured load before each path's measurement, e.g. 2s.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Orders per second; 0 sends as fast as the in-flight limit allows.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Maximum orders sent and still waiting for their reply or arrival.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub in_flight: u32,
    /// Size of each order's body in bytes (the envelope, padded in its payload).
    #[arg(long, default_value_t = 400, value_parser = clap::value_parser!(u32).range(1..=8_388_608))]
    pub payload_bytes: u32,
    /// The way orders are sent: as requests timed to their reply, or published without a
    /// reply and timed to their arrival on the forward subject.
    #[arg(long, value_enum, default_value_t = SendMode::Request)]
    pub mode: SendMode,
    /// Signature scheme of the orders.
    #[arg(long, value_enum, default_value_t = Scheme::V1)]
    pub signature: Scheme,
    /// Paths to measure, in this order.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "direct,forwarder,gate")]
    pub paths: Vec<PathKind>,
    /// Halts per load level in the halt-to-effect measurement (at 50 % and 100 % of the
    /// gate's measured throughput); 0 skips it. Needs the gate path and request mode.
    #[arg(long, default_value_t = 50)]
    pub halts: u32,
    /// Halted scopes in force on the gate path, stored in the gate's state bucket before
    /// the gate starts. No load order falls in them, so they only add to the halt check.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub halted_scopes: u32,
    /// Writes the report as JSON to this file, or to stdout for `-`.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// The titan-gate binary; by default the one next to this program, which must be a
    /// release build: `cargo build --release -p titan-gate`.
    #[arg(long)]
    pub gate_binary: Option<PathBuf>,
    /// Environment variable for the gate process, as NAME=VALUE (repeatable), e.g.
    /// `TITAN_GATE_REPLAY_CAPACITY=262144`.
    #[arg(long = "gate-env", value_parser = parse_env_pair)]
    pub gate_env: Vec<(String, String)>,
}

/// The way the producer sends an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SendMode {
    /// A request; the latency ends at the reply (the JetStream acknowledgement on the
    /// direct path, the verdict otherwise).
    Request,
    /// A publish without reply; the latency ends when the order arrives on the forward
    /// subject, seen by a plain subscription.
    FireAndForget,
}

/// The signature an order carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scheme {
    /// Titan v1: the envelope's `sig` over the canonical payload.
    V1,
    /// titan-gate v2: headers over the subject and the whole body.
    V2,
}

/// One way from the producer to the `TITAN_CMD` stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PathKind {
    /// Published straight to the stream's subject.
    Direct,
    /// Through the no-op forwarder.
    Forwarder,
    /// Through titan-gate.
    Gate,
}

impl PathKind {
    /// Returns the name used in reports.
    pub fn label(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Forwarder => "forwarder",
            Self::Gate => "gate",
        }
    }
}

/// Parses a duration written as a whole number and a unit: `ms`, `s` or `m`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let value: u64 = digits.parse().map_err(|_| format!("{text:?} is not a duration like 10s, 500ms or 1m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(value)),
        "s" => Ok(Duration::from_secs(value)),
        "m" => Ok(Duration::from_secs(value * 60)),
        _ => Err(format!("{text:?} has no known unit; use ms, s or m, as in 10s")),
    }
}

/// Parses `NAME=VALUE`.
fn parse_env_pair(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("{text:?} is not NAME=VALUE")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_units_parse() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    }

    #[test]
    fn duration_without_unit_is_rejected() {
        let error = parse_duration("10").expect_err("a bare number has no unit");
        assert!(error.contains("no known unit"), "{error}");
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("1h").is_err());
    }

    #[test]
    fn env_pair_needs_a_name() {
        assert_eq!(parse_env_pair("A=b=c"), Ok(("A".to_owned(), "b=c".to_owned())));
        assert!(parse_env_pair("=x").is_err());
        assert!(parse_env_pair("novalue").is_err());
    }
}
