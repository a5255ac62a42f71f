//! The titan-gate processes of the demo: the gate service, with its log on the terminal,
//! and the operator commands, run as an operator would run them.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::Context as _;
use tokio::process::{Child, Command};

/// How long the gate may take to report ready on `/readyz`.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the gate may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one operator command may run; it waits 2 s for replicas by default.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(15);
/// The replica name the demo gives its gate.
pub const GATE_ID: &str = "demo-gate";
/// The id of the operators' key in the demo keyring.
pub const OPS_KEY_ID: &str = "ops-demo";

/// The settings the gate and the operator commands share: the binary, the broker and the keys.
#[derive(Debug)]
pub struct Setup {
    pub gate_binary: PathBuf,
    pub nats_url: String,
    pub keyring_path: PathBuf,
    /// The Titan v1 shared secret that strategies sign orders with.
    pub v1_secret: String,
    _keys_dir: tempfile::TempDir,
}

impl Setup {
    /// Finds the gate binary next to the demo's own and writes a keyring with a fresh
    /// operators' key (roles halt and resume) to a temporary folder.
    pub fn new(nats_url: String) -> anyhow::Result<Setup> {
        let gate_binary =
            std::env::current_exe().context("cannot find the demo's own executable")?.with_file_name("titan-gate");
        anyhow::ensure!(
            gate_binary.is_file(),
            "titan-gate binary not found at {}; build it with `cargo build -p titan-gate` (scripts/demo.sh does)",
            gate_binary.display()
        );

        let keys_dir = tempfile::Builder::new()
            .prefix("titan-gate-demo-")
            .tempdir()
            .context("cannot create a temporary folder for the keyring")?;
        let keyring_path = keys_dir.path().join("keyring.toml");
        let keyring =
            format!("[[key]]\nid = \"{OPS_KEY_ID}\"\nsecret = \"{}\"\nroles = [\"halt\", \"resume\"]\n", random_hex());
        std::fs::write(&keyring_path, keyring)
            .with_context(|| format!("cannot write the keyring {}", keyring_path.display()))?;
        // Key material is for the gate's user alone; the gate warns about a wider mode.
        std::fs::set_permissions(&keyring_path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .with_context(|| format!("cannot make the keyring {} private", keyring_path.display()))?;
        Ok(Setup { gate_binary, nats_url, keyring_path, v1_secret: random_hex(), _keys_dir: keys_dir })
    }

    /// Builds a `titan-gate` command with only `PATH`, `RUST_LOG` and the NATS URL from the
    /// environment, so the demo's output does not depend on the caller's shell.
    fn command(&self) -> Command {
        let mut command = Command::new(&self.gate_binary);
        command
            .env_clear()
            .env("NATS_URL", &self.nats_url)
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit());
        for inherited in ["PATH", "RUST_LOG"] {
            if let Some(value) = std::env::var_os(inherited) {
                command.env(inherited, value);
            }
        }
        command
    }
}

/// Returns 32 random lowercase hex characters.
pub fn random_hex() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// A running `titan-gate run`. Dropping it kills the process.
#[derive(Debug)]
pub struct GateService {
    child: Child,
    http_port: u16,
}

impl GateService {
    /// Starts the gate with its log on the terminal and waits until `/readyz` returns 200.
    pub async fn start(setup: &Setup) -> anyhow::Result<GateService> {
        let http_port = titan_gate_test_support::free_port();
        let mut command = setup.command();
        command
            .arg("run")
            .env("TITAN_GATE_HTTP_ADDR", format!("127.0.0.1:{http_port}"))
            .env("TITAN_GATE_ID", GATE_ID)
            .env("TITAN_HMAC_SECRET", &setup.v1_secret)
            .env("TITAN_GATE_KEYRING", &setup.keyring_path)
            .kill_on_drop(true);
        let child = command.spawn().with_context(|| format!("cannot start {}", setup.gate_binary.display()))?;
        let mut gate = GateService { child, http_port };
        gate.wait_ready().await?;
        Ok(gate)
    }

    /// Polls `GET /readyz` until it returns 200, failing early if the gate exits.
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!("titan-gate exited during start with {status}; its log is above");
            }
            if self.get("/readyz").await == Some(200) {
                return Ok(());
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "titan-gate did not report ready on /readyz within {READY_TIMEOUT:?}; its log is above"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Returns the status code of `GET path` on the admin listener, if it responds.
    async fn get(&self, path: &'static str) -> Option<u16> {
        let port = self.http_port;
        let response =
            tokio::task::spawn_blocking(move || titan_gate_test_support::http_get(port, path)).await.ok()??;
        Some(response.status)
    }

    /// Returns the admin listener's address.
    pub fn admin_address(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// Sends SIGTERM and waits for the exit; kills the gate if it does not exit in time.
    pub async fn stop(mut self) -> anyhow::Result<ExitStatus> {
        let pid = self.child.id().and_then(|id| rustix::process::Pid::from_raw(i32::try_from(id).ok()?));
        if let Some(pid) = pid {
            rustix::process::kill_process(pid, rustix::process::Signal::TERM)
                .context("cannot send SIGTERM to titan-gate")?;
        }
        if let Ok(status) = tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await {
            return Ok(status?);
        }
        self.child.kill().await?;
        anyhow::bail!("titan-gate did not exit within {STOP_TIMEOUT:?} of SIGTERM, so it was killed")
    }
}

/// Runs `titan-gate ARGS` as an operator would, with the demo keyring, and prints the
/// command line first. Returns whether it exited with 0.
pub async fn operator_command(setup: &Setup, args: &[&str]) -> anyhow::Result<bool> {
    println!("$ titan-gate {}", shell_words(args));
    let mut command = setup.command();
    command.args(args).env("TITAN_GATE_KEYRING", &setup.keyring_path).kill_on_drop(true);
    let status = tokio::time::timeout(COMMAND_TIMEOUT, command.status())
        .await
        .with_context(|| {
            format!("titan-gate {} did not finish within {COMMAND_TIMEOUT:?}", args.first().unwrap_or(&""))
        })?
        .with_context(|| format!("cannot run {}", display(&setup.gate_binary)))?;
    Ok(status.success())
}

/// Joins arguments for display, quoting those with spaces.
fn shell_words(args: &[&str]) -> String {
    let quoted: Vec<String> =
        args.iter().map(|arg| if arg.contains(' ') { format!("\"{arg}\"") } else { (*arg).to_owned() }).collect();
    quoted.join(" ")
}

fn display(path: &Path) -> String {
    path.display().to_string()
}
