//! The processes under test: one nats-server with Titan's `TITAN_CMD` stream, a
//! titan-gate release binary, and the resident memory of a process.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::stream::{Config, RetentionPolicy};
use titan_gate_test_support::{GateProcess, NatsServer};

use crate::orders::{KEYRING, V1_SECRET};

/// Intake subject prefix, the gate's default.
pub const INTAKE_PREFIX: &str = "titan.gate.execution.place.v1";
/// Forward subject prefix, under the stream's subjects; the gate's default.
pub const FORWARD_PREFIX: &str = "titan.cmd.execution.place.v1";
/// The subject tail of every order: venue, account, symbol.
pub const TAIL: &str = "binance.main.BTC_USDT";
/// Name of the stream that Titan's execution service reads.
pub const STREAM: &str = "TITAN_CMD";
/// How long the gate may take to report ready.
const GATE_READY_TIMEOUT: Duration = Duration::from_secs(15);

/// The command that builds the gate binary this program needs.
pub const GATE_BUILD_COMMAND: &str = "cargo build --release -p titan-gate";

/// A nats-server with the `TITAN_CMD` stream, and the producer's connection to it.
#[derive(Debug)]
pub struct Broker {
    pub server: NatsServer,
    pub client: async_nats::Client,
    pub jetstream: async_nats::jetstream::Context,
}

impl Broker {
    /// Starts nats-server on 127.0.0.1 with its own storage folder and creates the
    /// stream as Titan configures it: `titan.cmd.>`, work-queue retention, a 60 s
    /// duplicate window, file storage.
    pub async fn start(max_in_flight: usize) -> anyhow::Result<Self> {
        let server = tokio::task::spawn_blocking(NatsServer::start)
            .await
            .context("the nats-server start task failed")?
            .context("cannot start nats-server; scripts/ensure-nats-server.sh installs one")?;
        let client = connect(&server.url()).await?;
        let jetstream = async_nats::jetstream::ContextBuilder::new()
            .timeout(Duration::from_secs(10))
            .max_ack_inflight(max_in_flight.max(1))
            .build(client.clone());
        jetstream
            .create_stream(Config {
                name: STREAM.to_owned(),
                subjects: vec!["titan.cmd.>".to_owned()],
                retention: RetentionPolicy::WorkQueue,
                duplicate_window: Duration::from_secs(60),
                ..Config::default()
            })
            .await
            .context("cannot create the TITAN_CMD stream")?;
        Ok(Self { server, client, jetstream })
    }

    /// Removes every stored message, so each path starts on an empty stream.
    pub async fn purge(&self) -> anyhow::Result<()> {
        let stream = self.jetstream.get_stream(STREAM).await.context("TITAN_CMD not found")?;
        stream.purge().await.context("cannot purge TITAN_CMD")?;
        Ok(())
    }
}

/// Connects a client whose subscriptions buffer as many messages as the gate's do.
pub async fn connect(url: &str) -> anyhow::Result<async_nats::Client> {
    async_nats::ConnectOptions::new()
        .name("titan-gate-load")
        .subscription_capacity(65_536)
        .connect(url)
        .await
        .with_context(|| format!("cannot connect to {url}"))
}

/// Returns the gate binary to run: `explicit` if given, else `titan-gate` next to this
/// program. Fails with the build command when the binary is missing.
pub fn gate_binary(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    let binary = match explicit {
        Some(path) => path.to_path_buf(),
        None => std::env::current_exe().context("cannot find this program's executable")?.with_file_name("titan-gate"),
    };
    anyhow::ensure!(
        binary.is_file(),
        "titan-gate binary not found at {}; build it with `{GATE_BUILD_COMMAND}` or pass --gate-binary",
        binary.display()
    );
    Ok(binary)
}

/// Returns true when the binary lies in a `release` build folder.
pub fn is_release_build(binary: &Path) -> bool {
    binary.parent().and_then(Path::file_name).is_some_and(|name| name == "release")
}

/// A running gate and the folder that holds its keyring.
#[derive(Debug)]
pub struct Gate {
    pub process: GateProcess,
    _keys: tempfile::TempDir,
}

/// Starts the gate in RUNNING mode with the load generator's keys and waits until
/// `/readyz` answers 200. `env` adds or overrides the gate's environment.
pub async fn start_gate(binary: &Path, nats_url: &str, env: &[(String, String)]) -> anyhow::Result<Gate> {
    let keys = tempfile::Builder::new().prefix("titan-gate-load-").tempdir().context("cannot create a key folder")?;
    let keyring = keys.path().join("keyring.toml");
    std::fs::write(&keyring, KEYRING).with_context(|| format!("cannot write {}", keyring.display()))?;

    let mut builder = GateProcess::builder(binary, nats_url)
        .gate_id("load-gate")
        .env("TITAN_HMAC_SECRET", V1_SECRET)
        .env("TITAN_GATE_KEYRING", keyring.display().to_string())
        .env("TITAN_GATE_INITIAL_MODE", "running");
    for (name, value) in env {
        builder = builder.env(name, value);
    }
    let process = builder.start().await.context("cannot start titan-gate")?;
    if let Err(error) = process.wait_ready(GATE_READY_TIMEOUT).await {
        anyhow::bail!("{error}; gate log:\n{}", process.log());
    }
    Ok(Gate { process, _keys: keys })
}

/// Returns the resident memory of process `pid` in KiB (`VmRSS` in `/proc/PID/status`),
/// or `None` where that file cannot be read (a process that exited, or not Linux).
pub fn resident_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Samples the resident memory of `pid` every 100 ms until dropped, keeping the peak.
#[derive(Debug)]
pub struct MemorySampler {
    peak_kib: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl MemorySampler {
    /// Starts sampling.
    pub fn start(pid: u32) -> Self {
        let peak_kib = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let peak = std::sync::Arc::clone(&peak_kib);
        let task = tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_millis(100));
            loop {
                interval.tick().await;
                if let Some(kib) = resident_kib(pid) {
                    peak.fetch_max(kib, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
        Self { peak_kib, task }
    }

    /// Stops sampling and returns the peak in KiB.
    pub fn finish(self) -> u64 {
        self.task.abort();
        self.peak_kib.load(std::sync::atomic::Ordering::Relaxed)
    }
}
