//! A titan-gate process for black-box tests: started with its own admin port and log
//! file, probed over HTTP, and killed on drop.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::http::{HttpResponse, http_get};
use crate::{WaitTimeoutError, free_port, wait_until};

/// How long a gate may take to serve `/healthz` after its start.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// Builds a [`GateProcess`].
#[derive(Debug)]
pub struct GateProcessBuilder {
    binary: PathBuf,
    nats_url: String,
    gate_id: String,
    env: BTreeMap<String, String>,
    args: Vec<String>,
}

/// A running `titan-gate run`, with stdout and stderr captured to a log file.
#[derive(Debug)]
pub struct GateProcess {
    child: Child,
    http_port: u16,
    gate_id: String,
    dir: tempfile::TempDir,
    command: Vec<String>,
    env: BTreeMap<String, String>,
    binary: PathBuf,
}

/// An error starting or probing a gate process.
#[derive(Debug, thiserror::Error)]
pub enum GateProcessError {
    /// The process could not be spawned or its log file created.
    #[error("cannot start {binary}: {source}")]
    Spawn {
        /// The binary.
        binary: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The process exited before it served `/healthz`.
    #[error("titan-gate exited during start with {status}; log:\n{log}")]
    Exited {
        /// Its exit status.
        status: std::process::ExitStatus,
        /// Its log.
        log: String,
    },
    /// The process did not serve `/healthz` in time.
    #[error("titan-gate did not serve /healthz within {timeout:?}; log:\n{log}")]
    StartTimeout {
        /// The wait.
        timeout: Duration,
        /// Its log.
        log: String,
    },
}

impl GateProcessBuilder {
    /// Starts a builder for the binary at `binary`, connecting to `nats_url`.
    pub fn new(binary: impl Into<PathBuf>, nats_url: impl Into<String>) -> Self {
        Self {
            binary: binary.into(),
            nats_url: nats_url.into(),
            gate_id: "test-gate".to_owned(),
            env: BTreeMap::new(),
            args: Vec::new(),
        }
    }

    /// Names the replica (`TITAN_GATE_ID`).
    #[must_use]
    pub fn gate_id(mut self, gate_id: impl Into<String>) -> Self {
        self.gate_id = gate_id.into();
        self
    }

    /// Sets an environment variable; the gate sees no other variables but `PATH` and `RUST_LOG`.
    #[must_use]
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(name.into(), value.into());
        self
    }

    /// Adds an argument after `run`.
    #[must_use]
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Starts the gate and waits until it serves `/healthz`.
    pub async fn start(self) -> Result<GateProcess, GateProcessError> {
        let dir =
            tempfile::Builder::new().prefix("titan-gate-test-").tempdir().map_err(|source| self.spawn_error(source))?;
        let http_port = free_port();
        let mut env = self.env.clone();
        env.insert("NATS_URL".to_owned(), self.nats_url.clone());
        env.insert("TITAN_GATE_ID".to_owned(), self.gate_id.clone());
        env.insert("TITAN_GATE_HTTP_ADDR".to_owned(), format!("127.0.0.1:{http_port}"));
        let mut command = vec!["run".to_owned()];
        command.extend(self.args.iter().cloned());
        let child = spawn(&self.binary, &command, &env, dir.path()).map_err(|source| self.spawn_error(source))?;
        let mut gate = GateProcess { child, http_port, gate_id: self.gate_id, dir, command, env, binary: self.binary };
        gate.wait_serving().await?;
        Ok(gate)
    }

    fn spawn_error(&self, source: std::io::Error) -> GateProcessError {
        GateProcessError::Spawn { binary: self.binary.display().to_string(), source }
    }
}

fn spawn(binary: &Path, command: &[String], env: &BTreeMap<String, String>, dir: &Path) -> std::io::Result<Child> {
    let log = File::options().create(true).append(true).open(dir.join("gate.log"))?;
    let mut process = Command::new(binary);
    process.args(command).env_clear().envs(env).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
    for inherited in ["PATH", "RUST_LOG"] {
        if let Ok(value) = std::env::var(inherited) {
            process.env(inherited, value);
        }
    }
    process.spawn()
}

impl GateProcess {
    /// Returns a builder.
    pub fn builder(binary: impl Into<PathBuf>, nats_url: impl Into<String>) -> GateProcessBuilder {
        GateProcessBuilder::new(binary, nats_url)
    }

    /// Returns the admin listener's port.
    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    /// Returns the replica's name.
    pub fn gate_id(&self) -> &str {
        &self.gate_id
    }

    /// Sends `GET path` to the admin listener.
    pub fn get(&self, path: &str) -> Option<HttpResponse> {
        http_get(self.http_port, path)
    }

    /// Returns the status code of `GET path`, or 0 when the gate does not answer.
    pub fn status_code(&self, path: &str) -> u16 {
        self.get(path).map_or(0, |response| response.status)
    }

    /// Returns everything the gate logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gate.log")).unwrap_or_default()
    }

    /// Returns the process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until the log contains `text`.
    pub async fn wait_for_log(&self, text: &str, timeout: Duration) -> Result<(), WaitTimeoutError> {
        wait_until(timeout, &format!("the gate to log {text:?}"), || async { self.log().contains(text) }).await
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), WaitTimeoutError> {
        wait_until(timeout, "the gate's /readyz to answer 200", || async { self.status_code("/readyz") == 200 }).await
    }

    /// Sends SIGTERM and waits for the exit, then SIGKILL if it takes longer than `timeout`.
    pub fn stop(&mut self, timeout: Duration) -> std::io::Result<Option<std::process::ExitStatus>> {
        if let Some(pid) = rustix::process::Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(0)) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(Some(status));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child.kill()?;
        self.child.wait().map(Some)
    }

    /// Sends SIGHUP, on which the gate reloads its keys.
    pub fn hangup(&self) -> std::io::Result<()> {
        let pid = i32::try_from(self.child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
            .ok_or_else(|| std::io::Error::other(format!("process id {} is not a valid pid", self.child.id())))?;
        rustix::process::kill_process(pid, rustix::process::Signal::HUP).map_err(std::io::Error::from)
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill(&mut self) -> std::io::Result<()> {
        self.child.kill()?;
        self.child.wait().map(|_| ())
    }

    /// Starts the same command again after a stop or kill, with the same port and log.
    pub async fn restart(&mut self) -> Result<(), GateProcessError> {
        self.child = spawn(&self.binary, &self.command, &self.env, self.dir.path())
            .map_err(|source| GateProcessError::Spawn { binary: self.binary.display().to_string(), source })?;
        self.wait_serving().await
    }

    async fn wait_serving(&mut self) -> Result<(), GateProcessError> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(GateProcessError::Exited { status, log: self.log() });
            }
            if self.status_code("/healthz") == 200 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(GateProcessError::StartTimeout { timeout: START_TIMEOUT, log: self.log() });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for GateProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::env::var_os(crate::ENV_KEEP_DIRS).is_some() {
            let dir =
                std::mem::replace(&mut self.dir, tempfile::TempDir::new().expect("a temporary folder can be created"));
            eprintln!("kept titan-gate test folder {}", dir.keep().display());
        }
    }
}
