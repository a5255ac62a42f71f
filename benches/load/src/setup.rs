//! The processes under test: one nats-server with Titan's `TITAN_CMD` stream, a
//! titan-gate release binary, and the resident memory of a process.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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

/// The server's `max_payload` when the run stores halted scopes. The stored state of
/// 10,000 scopes is over the default of 1 MiB (an estimate: about 150 bytes a scope).
const LARGE_MAX_PAYLOAD: &str = "max_payload: 8388608\n";

/// A nats-server with the `TITAN_CMD` stream, and the producer's connection to it.
#[derive(Debug)]
pub struct Broker {
    pub server: NatsServer,
    pub client: async_nats::Client,
    pub jetstream: async_nats::jetstream::Context,
    _config: Option<tempfile::TempDir>,
}

impl Broker {
    /// Starts nats-server on 127.0.0.1 with its own storage folder and creates the
    /// stream as Titan configures it: `titan.cmd.>`, work-queue retention, a 60 s
    /// duplicate window, file storage. With `large_payloads` the server accepts messages
    /// of up to 8 MiB instead of its default 1 MiB.
    pub async fn start(max_in_flight: usize, large_payloads: bool) -> anyhow::Result<Self> {
        let config = if large_payloads {
            let folder = tempfile::Builder::new().prefix("titan-gate-load-nats-").tempdir()?;
            let file = folder.path().join("nats.conf");
            std::fs::write(&file, LARGE_MAX_PAYLOAD).with_context(|| format!("cannot write {}", file.display()))?;
            Some((folder, file))
        } else {
            None
        };
        let mut builder = NatsServer::builder();
        if let Some((_, file)) = &config {
            builder = builder.config_file(file);
        }
        let server = tokio::task::spawn_blocking(move || builder.start())
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
        Ok(Self { server, client, jetstream, _config: config.map(|(folder, _)| folder) })
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
/// program, or one folder up when this program is a bench target in cargo's `deps`
/// folder. Fails with the build command when the binary is missing.
pub fn gate_binary(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    let binary = if let Some(path) = explicit {
        path.to_path_buf()
    } else {
        let program = std::env::current_exe().context("cannot find this program's executable")?;
        let folder = program.parent().context("this program's executable has no folder")?;
        let folder = match folder.parent() {
            Some(parent) if folder.file_name().is_some_and(|name| name == "deps") => parent,
            _ => folder,
        };
        folder.join("titan-gate")
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

/// A running gate and the folder that contains its keyring.
#[derive(Debug)]
pub struct Gate {
    pub process: GateProcess,
    _keys: tempfile::TempDir,
}

/// Starts the gate in RUNNING mode with the load generator's keys and waits until
/// `/readyz` returns 200. `env` adds or overrides the gate's environment.
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
    status_kib(pid, "VmRSS:")
}

/// Returns the peak resident memory of process `pid` since its start in KiB (`VmHWM` in
/// `/proc/PID/status`), or `None` where that file cannot be read.
pub fn resident_peak_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmHWM:")
}

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Clock ticks per second of the CPU times in `/proc/PID/stat` (`USER_HZ`, 100 in the
/// Linux user-space ABI of every mainstream architecture).
const CLOCK_TICKS_PER_S: f64 = 100.0;

/// Returns the CPU time that process `pid` has used, user and system, in seconds
/// (fields 14 and 15 of `/proc/PID/stat`), or `None` where that file cannot be read.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name in field 2 may contain spaces, so fields are counted after its `)`.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    #[allow(clippy::cast_precision_loss, reason = "clock ticks stay far below 2^52")]
    Some((user + system) as f64 / CLOCK_TICKS_PER_S)
}

/// Samples a process under load: its resident memory every 100 ms, keeping the peak,
/// and its CPU time when the warm-up ends and when the sampler finishes.
#[derive(Debug)]
pub struct ProcessSampler {
    pid: u32,
    peak_kib: Arc<AtomicU64>,
    /// CPU time at the end of the warm-up, as `f64` bits; `u64::MAX` until read.
    cpu_at_window_start: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

/// A process's figures over one path's run.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct ProcessFigures {
    /// Highest `VmRSS` sample during the warm-up and the measured window, in KiB.
    pub peak_rss_kib: u64,
    /// `VmRSS` when the measured window ended, in KiB.
    pub end_rss_kib: u64,
    /// `VmHWM` when the measured window ended: the kernel's peak since the process
    /// started, in KiB.
    pub hwm_kib: u64,
    /// CPU time, user and system, from the end of the warm-up to the end of the run,
    /// which includes the short drain of the orders still in flight, in seconds.
    pub cpu_s: f64,
}

impl ProcessSampler {
    /// Starts sampling process `pid` at the start of a run whose warm-up lasts `warmup`.
    pub fn start(pid: u32, warmup: Duration) -> Self {
        let peak_kib = Arc::new(AtomicU64::new(0));
        let cpu_at_window_start = Arc::new(AtomicU64::new(u64::MAX));
        let peak = Arc::clone(&peak_kib);
        let cpu_start = Arc::clone(&cpu_at_window_start);
        let task = tokio::spawn(async move {
            let window_start = tokio::time::Instant::now() + warmup;
            let mut interval = tokio::time::interval(Duration::from_millis(100));
            loop {
                interval.tick().await;
                if let Some(kib) = resident_kib(pid) {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                if cpu_start.load(Ordering::Relaxed) == u64::MAX
                    && tokio::time::Instant::now() >= window_start
                    && let Some(cpu) = cpu_seconds(pid)
                {
                    cpu_start.store(cpu.to_bits(), Ordering::Relaxed);
                }
            }
        });
        Self { pid, peak_kib, cpu_at_window_start, task }
    }

    /// Stops sampling and returns the figures; 0 stands for a value that could not be read.
    pub fn finish(self) -> ProcessFigures {
        self.task.abort();
        let end_rss_kib = resident_kib(self.pid).unwrap_or(0);
        let start_bits = self.cpu_at_window_start.load(Ordering::Relaxed);
        let cpu_s = match (start_bits, cpu_seconds(self.pid)) {
            (u64::MAX, _) | (_, None) => 0.0,
            (bits, Some(end)) => end - f64::from_bits(bits),
        };
        ProcessFigures {
            peak_rss_kib: self.peak_kib.load(Ordering::Relaxed).max(end_rss_kib),
            end_rss_kib,
            hwm_kib: resident_peak_kib(self.pid).unwrap_or(0),
            cpu_s,
        }
    }
}
