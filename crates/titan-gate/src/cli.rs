//! The command line: `run`, `halt`, `resume`, `status`, `timeline`, `recover-state`, `sign`
//! and `verify`.
//!
//! Doc comments here are clap's help text, shown to operators as written.
#![allow(clippy::doc_markdown, reason = "doc comments are help text printed verbatim, where backticks would show")]

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::nats_auth::NatsAuthSettings;

/// A low-latency halt gate between trading strategies and their execution service.
#[derive(Debug, Parser)]
#[command(name = "titan-gate", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gate. Signing keys come from TITAN_HMAC_SECRET (the Titan v1 secret, or
    /// TITAN_HMAC_SECRET_FILE) and the keyring; `deploy/titan-gate.example.toml` lists every setting.
    Run(RunArgs),
    /// Publish a halt and wait until every gate replica confirms it.
    Halt(HaltArgs),
    /// Publish a signed resume and wait until every gate replica confirms it.
    Resume(ResumeArgs),
    /// Ask every gate replica for its state; exit non-zero if any is missing or they disagree.
    Status(StatusArgs),
    /// Print an incident timeline from the audit stream: each halt, who applied it, each
    /// resume, and how long each halt lasted.
    Timeline(TimelineArgs),
    /// Replace a corrupt or deleted stored halt state with a global HARD_HALT, so that gates
    /// halted with STATE_UNKNOWN can load it. Trading resumes only through a signed resume.
    RecoverState(RecoverStateArgs),
    /// Sign an envelope (v1) or a message body (v2) read from stdin.
    Sign(SignArgs),
    /// Check the v1 signature of an envelope read from stdin, offline.
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Settings file (TOML); environment variables and flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// NATS server URL [env: NATS_URL] [default: nats://127.0.0.1:4222].
    #[arg(long, value_name = "URL")]
    pub nats_url: Option<String>,
    /// Admin listener address [env: TITAN_GATE_HTTP_ADDR] [default: 127.0.0.1:9464].
    #[arg(long, value_name = "ADDR")]
    pub http_addr: Option<String>,
    /// This replica's name [env: TITAN_GATE_ID] [default: host name].
    #[arg(long, value_name = "NAME")]
    pub gate_id: Option<String>,
    /// Keyring file [env: TITAN_GATE_KEYRING].
    #[arg(long, value_name = "FILE")]
    pub keyring: Option<PathBuf>,
    /// Mode when no state is stored: hard_halt or running [env: TITAN_GATE_INITIAL_MODE].
    #[arg(long, value_name = "MODE")]
    pub initial_mode: Option<String>,
    /// Log as JSON lines instead of text [env: TITAN_GATE_LOG_FORMAT=json].
    #[arg(long)]
    pub log_json: bool,
    #[command(flatten)]
    pub nats_auth: NatsAuthArgs,
}

/// NATS authentication and TLS options. The password comes only from NATS_PASSWORD (or
/// the settings file), because other users of a host can read its command lines.
#[derive(Debug, Args, Clone, Default)]
pub struct NatsAuthArgs {
    /// NATS user name, with the password in NATS_PASSWORD [env: NATS_USER].
    #[arg(long, value_name = "NAME")]
    pub nats_user: Option<String>,
    /// NATS credentials file: a user JWT and its NKey seed [env: NATS_CREDS].
    #[arg(long, value_name = "FILE")]
    pub nats_creds: Option<PathBuf>,
    /// File containing a user NKey seed (SU...) [env: NATS_NKEY_SEED_FILE].
    #[arg(long, value_name = "FILE")]
    pub nats_nkey_seed_file: Option<PathBuf>,
    /// PEM certificates of the CAs that sign the server's certificate; makes TLS
    /// required [env: NATS_TLS_CA].
    #[arg(long, value_name = "FILE")]
    pub nats_tls_ca: Option<PathBuf>,
    /// PEM client certificate, for servers that verify clients; needs --nats-tls-key
    /// [env: NATS_TLS_CERT].
    #[arg(long, value_name = "FILE")]
    pub nats_tls_cert: Option<PathBuf>,
    /// PEM private key of the client certificate [env: NATS_TLS_KEY].
    #[arg(long, value_name = "FILE")]
    pub nats_tls_key: Option<PathBuf>,
}

impl NatsAuthArgs {
    /// Returns the flags as settings, for layering over the environment.
    pub fn settings(&self) -> NatsAuthSettings {
        NatsAuthSettings {
            user: self.nats_user.clone(),
            password: None,
            creds: self.nats_creds.clone(),
            nkey_seed_file: self.nats_nkey_seed_file.clone(),
            tls_ca: self.nats_tls_ca.clone(),
            tls_cert: self.nats_tls_cert.clone(),
            tls_key: self.nats_tls_key.clone(),
        }
    }
}

/// Connection and output options of a client command.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// NATS server URL [env: NATS_URL] [default: nats://127.0.0.1:4222].
    #[arg(long, value_name = "URL")]
    pub nats_url: Option<String>,
    /// Time to wait for replica replies, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 2_000)]
    pub timeout_ms: u64,
    /// Number of replicas expected; fewer replies is a failure [default: all that reply].
    #[arg(long, value_name = "N")]
    pub expect: Option<usize>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub nats_auth: NatsAuthArgs,
}

/// Key selection for a signed command.
#[derive(Debug, Args)]
pub struct SigningArgs {
    /// Keyring file [env: TITAN_GATE_KEYRING].
    #[arg(long, value_name = "FILE")]
    pub keyring: Option<PathBuf>,
    /// Key id to sign with [default: the first key with the needed role].
    #[arg(long, value_name = "ID")]
    pub key_id: Option<String>,
}

#[derive(Debug, Args)]
pub struct HaltArgs {
    /// Reason for the halt, shown in status and logs.
    #[arg(long)]
    pub reason: String,
    /// Operator name, shown in status and logs.
    #[arg(long)]
    pub operator: String,
    /// SOFT_HALT (reduce-only) instead of HARD_HALT.
    #[arg(long)]
    pub soft: bool,
    /// Halt one scope only: venue=NAME, account=NAME, symbol=NAME or strategy=NAME. Venue, account
    /// and symbol match the order subject's tokens exactly (symbol=BTC_USDT, not BTC/USDT).
    #[arg(long, value_name = "KIND=VALUE")]
    pub scope: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(flatten)]
    pub signing: SigningArgs,
}

#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// Reason for the resume, shown in status and logs.
    #[arg(long)]
    pub reason: String,
    /// Operator name, shown in status and logs.
    #[arg(long)]
    pub operator: String,
    /// Resume one scope only: venue=NAME, account=NAME, symbol=NAME or strategy=NAME. A global
    /// resume leaves scoped halts in force; `titan-gate status` lists them.
    #[arg(long, value_name = "KIND=VALUE")]
    pub scope: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(flatten)]
    pub signing: SigningArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct TimelineArgs {
    /// How far back to read, such as 30m, 2h or 1d (units s, m, h, d).
    #[arg(long, value_name = "DURATION", default_value = "24h")]
    pub since: String,
    /// NATS server URL [env: NATS_URL] [default: nats://127.0.0.1:4222].
    #[arg(long, value_name = "URL")]
    pub nats_url: Option<String>,
    /// Time to wait for the server and for each stored record, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 2_000)]
    pub timeout_ms: u64,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub nats_auth: NatsAuthArgs,
}

#[derive(Debug, Args)]
pub struct RecoverStateArgs {
    /// Reason for the HARD_HALT that is stored, shown in status and logs.
    #[arg(long)]
    pub reason: String,
    /// Operator name, shown in status and logs and stored as the writer recover-state:NAME.
    #[arg(long)]
    pub operator: String,
    /// Key-value bucket of the halt state [env: TITAN_GATE_STATE_BUCKET] [default: TITAN_GATE_STATE].
    #[arg(long, value_name = "NAME")]
    pub bucket: Option<String>,
    /// NATS server URL [env: NATS_URL] [default: nats://127.0.0.1:4222].
    #[arg(long, value_name = "URL")]
    pub nats_url: Option<String>,
    /// Time limit for connecting and for each NATS call, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 2_000)]
    pub timeout_ms: u64,
    /// Store the HARD_HALT even when the stored state is valid or missing, which discards
    /// every halt and scope stored before.
    #[arg(long)]
    pub yes: bool,
    #[command(flatten)]
    pub nats_auth: NatsAuthArgs,
}

/// Signature scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scheme {
    /// Titan v1: `ts`, `nonce` and `sig` added to the envelope.
    V1,
    /// titan-gate v2: the Titan-* headers for a subject and body.
    V2,
}

#[derive(Debug, Args)]
pub struct SignArgs {
    /// Signature scheme.
    #[arg(long, value_enum, default_value_t = Scheme::V1)]
    pub scheme: Scheme,
    /// Subject the message will be published to (v2 only).
    #[arg(long, value_name = "SUBJECT")]
    pub subject: Option<String>,
    /// Timestamp to sign, epoch milliseconds [default: now].
    #[arg(long, value_name = "MS")]
    pub ts: Option<i64>,
    /// Nonce to sign [default: 32 random hex characters].
    #[arg(long, value_name = "NONCE")]
    pub nonce: Option<String>,
    #[command(flatten)]
    pub signing: SigningArgs,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Keyring file [env: TITAN_GATE_KEYRING]; the v1 secret comes from TITAN_HMAC_SECRET.
    #[arg(long, value_name = "FILE")]
    pub keyring: Option<PathBuf>,
}
