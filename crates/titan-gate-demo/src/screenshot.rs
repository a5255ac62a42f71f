//! `titan-gate-demo status-page-screenshot PNG`: takes a screenshot of the status page of a
//! halted gate (a global `HARD_HALT` and a scoped `SOFT_HALT`, both set with the operator
//! commands) in headless Chromium, for the documentation.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use titan_gate_test_support::NatsServer;

use crate::processes::{GateService, Setup, operator_command};
use crate::stream::Execution;

/// The browser window, in CSS pixels.
const WINDOW_SIZE: &str = "1200,800";
/// Bounds the Chromium run. The wrapper script itself kills Chromium after 60 s.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(90);

/// Starts nats-server, the stream and a gate, halts it, and writes the screenshot to `output`.
pub fn run(output: &Path) -> anyhow::Result<()> {
    let output = std::path::absolute(output).with_context(|| format!("invalid output path {}", output.display()))?;
    let mut server = NatsServer::start()
        .context("cannot start nats-server; run scripts/ensure-nats-server.sh or set NATS_SERVER_BIN")?;
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")?;
    let result = runtime.block_on(halt_and_capture(server.url(), &output));
    drop(runtime);
    let stopped = server.stop().context("nats-server did not stop cleanly");
    result.and(stopped)
}

async fn halt_and_capture(nats_url: String, output: &Path) -> anyhow::Result<()> {
    let client = async_nats::connect(nats_url.as_str())
        .await
        .with_context(|| format!("cannot connect to nats-server at {nats_url}"))?;
    Execution::create(&async_nats::jetstream::new(client)).await?;
    let setup = Setup::new(nats_url)?;
    let gate = GateService::start(&setup).await?;

    let result = capture_halted(&setup, &gate, output).await;
    let stopped = gate.stop().await.map(|_| ());
    result.and(stopped)
}

async fn capture_halted(setup: &Setup, gate: &GateService, output: &Path) -> anyhow::Result<()> {
    // The gate starts in HARD_HALT (INITIAL_STATE), so a resume comes first and the
    // global halt then carries the reason and operator of a real incident.
    let commands: [&[&str]; 3] = [
        &["resume", "--reason", "pre-open checks done", "--operator", "alice"],
        &["halt", "--reason", "SEV-1: runaway fills on binance", "--operator", "alice"],
        &["halt", "--soft", "--scope", "symbol=ETH_USDT", "--reason", "thin book on ETH_USDT", "--operator", "bob"],
    ];
    for args in commands {
        let succeeded = operator_command(setup, args).await?;
        anyhow::ensure!(succeeded, "titan-gate {} should exit with 0; its output is above", args.join(" "));
    }

    // A screenshot left from an earlier run would hide a run that wrote none.
    match std::fs::remove_file(output) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            return Err(error).with_context(|| format!("cannot replace {}", output.display()));
        }
        _ => {}
    }
    let script = headless_chromium_script();
    let url = format!("{}/", gate.admin_address());
    println!("$ {} {url} --screenshot={} --window-size={WINDOW_SIZE}", script.display(), output.display());
    let status = tokio::process::Command::new(&script)
        .arg(&url)
        .arg(format!("--screenshot={}", output.display()))
        .arg(format!("--window-size={WINDOW_SIZE}"))
        .kill_on_drop(true)
        .status();
    let status = tokio::time::timeout(BROWSER_TIMEOUT, status)
        .await
        .with_context(|| format!("Chromium did not finish within {BROWSER_TIMEOUT:?}"))?
        .with_context(|| format!("cannot run {}", script.display()))?;
    anyhow::ensure!(status.success(), "{} exited with {status}; its output is above", script.display());
    anyhow::ensure!(output.is_file(), "Chromium exited with 0 but wrote no screenshot to {}", output.display());
    println!("wrote {}", output.display());
    Ok(())
}

/// Returns the path of `scripts/headless-chromium.sh` in this source tree.
fn headless_chromium_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/headless-chromium.sh")
}
