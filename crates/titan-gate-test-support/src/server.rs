//! A real nats-server process per test, with its own ports and storage folder.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};
use tempfile::TempDir;

use crate::binary::find_nats_server;
use crate::readiness::{ListenPorts, healthz_ok, read_ports_file};
use crate::{NatsServerBuilder, NatsServerError, ReadinessStage};

/// Environment variable that, when set to a non-empty value, keeps each
/// server's temporary folder (JetStream storage, log, ports file) after drop.
pub const ENV_KEEP_DIRS: &str = "TITAN_TEST_KEEP_DIRS";

const POLL_INTERVAL: Duration = Duration::from_millis(10);
/// Enough for nats-server's usage text (about 70 lines, v2.15), which follows an
/// error about an unknown flag.
const STDERR_TAIL_LINES: usize = 80;
const LOG_FILE_NAME: &str = "nats-server.log";
const STORE_DIR_NAME: &str = "jetstream";

/// A nats-server child process that listens on 127.0.0.1 only.
///
/// The server has a temporary folder for its JetStream storage (`-sd`), its
/// combined stdout and stderr log, and its ports file. Dropping the value
/// kills the process and removes the folder, unless `TITAN_TEST_KEEP_DIRS` is
/// set. A test process that is itself killed leaves the server running.
#[derive(Debug)]
pub struct NatsServer {
    options: NatsServerBuilder,
    binary: PathBuf,
    /// `Some` until drop, which may keep the folder instead of removing it.
    dir: Option<TempDir>,
    dir_path: PathBuf,
    child: Option<Child>,
    port: u16,
    monitor_port: u16,
}

impl NatsServer {
    /// Starts a nats-server with JetStream on random ports of 127.0.0.1.
    ///
    /// Blocks the calling thread until the server has written its ports file
    /// and `/healthz` returns 200. That took about 20 ms in this crate's tests
    /// (nats-server 2.15.1, 2 cores), so it is fine inside `#[tokio::test]`.
    /// From a runtime with other busy tasks, call it through `spawn_blocking`.
    /// [`Self::restart`] and [`Self::stop`] block in the same way.
    pub fn start() -> Result<Self, NatsServerError> {
        Self::builder().start()
    }

    /// Returns a builder for a config file, extra arguments or cluster nodes.
    pub fn builder() -> NatsServerBuilder {
        NatsServerBuilder::default()
    }

    /// Starts a server with `options`, for [`NatsServerBuilder::start`].
    pub(crate) fn start_with(options: NatsServerBuilder) -> Result<Self, NatsServerError> {
        let binary = find_nats_server()?;
        let dir = tempfile::Builder::new().prefix("titan-nats-").tempdir().map_err(NatsServerError::CreateDir)?;

        let mut server = Self {
            options,
            binary,
            dir_path: dir.path().to_path_buf(),
            dir: Some(dir),
            child: None,
            port: 0,
            monitor_port: 0,
        };
        let ports = server.launch(None)?;
        server.port = ports.client;
        server.monitor_port = ports.monitor;
        Ok(server)
    }

    /// Returns the client URL, `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Returns the client port, which stays the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Returns the monitoring port, which stays the same across restarts.
    pub fn monitor_port(&self) -> u16 {
        self.monitor_port
    }

    /// Returns the monitoring URL, `http://127.0.0.1:PORT`.
    pub fn monitor_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.monitor_port)
    }

    /// Returns the JetStream storage folder (`-sd`), kept across restarts.
    pub fn store_dir(&self) -> PathBuf {
        self.dir_path.join(STORE_DIR_NAME)
    }

    /// Returns the server's temporary folder, which contains the storage
    /// folder, the log and the ports file.
    pub fn dir(&self) -> &Path {
        &self.dir_path
    }

    /// Returns the file that receives the server's stdout and stderr.
    pub fn log_path(&self) -> PathBuf {
        self.dir_path.join(LOG_FILE_NAME)
    }

    /// Returns the last lines of the server's log, for failure messages.
    pub fn stderr_tail(&self) -> String {
        log_tail(&self.log_path())
    }

    /// Returns the process id, or `None` after a stop or kill.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Returns whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Sends SIGTERM and waits for the process to exit, then sends SIGKILL if
    /// it is still running after the stop timeout. Does nothing if the server
    /// is not running.
    pub fn stop(&mut self) -> Result<(), NatsServerError> {
        let stop_timeout = self.options.stop_timeout;
        // The child stays in `self` until it is reaped, so on an error drop
        // still kills it.
        let Some(child) = self.child.as_mut() else {
            return Ok(());
        };
        let pid = child.id();
        let process_error = |source| NatsServerError::Process { pid, source };

        if child.try_wait().map_err(process_error)?.is_some() {
            self.child = None;
            return Ok(());
        }
        if let Some(raw_pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
            // ESRCH means the process exited after `try_wait`. The wait below reaps it.
            if let Err(errno) = kill_process(raw_pid, Signal::TERM) {
                if errno != rustix::io::Errno::SRCH {
                    return Err(process_error(errno.into()));
                }
            }
        }

        let deadline = Instant::now() + stop_timeout;
        while Instant::now() < deadline {
            if child.try_wait().map_err(process_error)?.is_some() {
                self.child = None;
                return Ok(());
            }
            std::thread::sleep(POLL_INTERVAL);
        }

        eprintln!("nats-server pid {pid} still running {stop_timeout:?} after SIGTERM; sending SIGKILL");
        self.kill()
    }

    /// Sends SIGKILL, as in a crash, and waits for the process to exit. Does
    /// nothing if the server is not running.
    pub fn kill(&mut self) -> Result<(), NatsServerError> {
        let Some(child) = self.child.as_mut() else {
            return Ok(());
        };
        let pid = child.id();
        let process_error = |source| NatsServerError::Process { pid, source };

        child.kill().map_err(process_error)?;
        child.wait().map_err(process_error)?;
        self.child = None;
        Ok(())
    }

    /// Starts the server again on the same client and monitoring ports and the
    /// same storage folder, and blocks until it is ready as [`Self::start`]
    /// does. A running server is stopped first with [`Self::stop`].
    pub fn restart(&mut self) -> Result<(), NatsServerError> {
        self.stop()?;

        let expected = ListenPorts { client: self.port, monitor: self.monitor_port };
        let actual = self.launch(Some(expected))?;
        if actual.client != expected.client {
            let stderr_tail = self.stderr_tail();
            self.kill()?;
            return Err(NatsServerError::PortChanged { expected: expected.client, actual: actual.client, stderr_tail });
        }
        Ok(())
    }

    /// Spawns the process on `ports`, or on random ports if `None`, and waits
    /// until it is ready. A process that fails to become ready is killed.
    fn launch(&mut self, ports: Option<ListenPorts>) -> Result<ListenPorts, NatsServerError> {
        let mut command = self.command(ports)?;
        let child = command.spawn().map_err(|source| NatsServerError::Spawn { binary: self.binary.clone(), source })?;
        let pid = child.id();
        self.child = Some(child);

        let result = self.wait_until_ready(pid);
        if result.is_err() {
            // The readiness error already carries the log tail, and a failure
            // to kill adds nothing a test could act on.
            let _ = self.kill();
        }
        result
    }

    fn command(&self, ports: Option<ListenPorts>) -> Result<Command, NatsServerError> {
        let log_path = self.log_path();
        let open_log_error = |source| NatsServerError::OpenLog { path: log_path.clone(), source };
        // Append, so the log of a restarted server follows the earlier runs.
        let log: File = OpenOptions::new().create(true).append(true).open(&log_path).map_err(open_log_error)?;
        let log_for_stdout = log.try_clone().map_err(open_log_error)?;

        let (client_port, monitor_port) = match ports {
            Some(ports) => (ports.client.to_string(), ports.monitor.to_string()),
            None => ("-1".to_owned(), "-1".to_owned()),
        };

        let mut command = Command::new(&self.binary);
        if let Some(config_file) = &self.options.config_file {
            command.arg("-c").arg(config_file);
        }
        command
            .args(["-a", "127.0.0.1", "-p", &client_port, "-m", &monitor_port])
            .arg("--ports_file_dir")
            .arg(&self.dir_path);
        if self.options.jetstream {
            command.arg("-js").arg("-sd").arg(self.store_dir());
        }
        command.envs(self.options.env.iter().map(|(name, value)| (name, value)));
        command.args(&self.options.args).stdin(Stdio::null()).stdout(log_for_stdout).stderr(log);
        Ok(command)
    }

    /// Waits for the ports file of process `pid`, then for the health check.
    fn wait_until_ready(&mut self, pid: u32) -> Result<ListenPorts, NatsServerError> {
        let deadline = Instant::now() + self.options.start_timeout;
        let dir = self.dir_path.clone();

        let ports = self.poll_ready(deadline, ReadinessStage::PortsFile, || read_ports_file(&dir, pid))?;

        let path = self.options.health_check.request_path(self.options.jetstream);
        self.poll_ready(deadline, ReadinessStage::Healthz, || healthz_ok(ports.monitor, path).then_some(()))?;

        Ok(ports)
    }

    /// Calls `probe` every 10 ms until it returns `Some`, the process exits,
    /// or `deadline` passes.
    fn poll_ready<T>(
        &mut self,
        deadline: Instant,
        stage: ReadinessStage,
        mut probe: impl FnMut() -> Option<T>,
    ) -> Result<T, NatsServerError> {
        loop {
            if let Some(value) = probe() {
                return Ok(value);
            }

            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(NatsServerError::ExitedEarly { status, stderr_tail: self.stderr_tail() });
                }
            }

            if Instant::now() >= deadline {
                return Err(NatsServerError::StartTimeout {
                    stage,
                    timeout: self.options.start_timeout,
                    stderr_tail: self.stderr_tail(),
                });
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        // Errors are ignored because drop cannot report them, and a process
        // that cannot be killed has already exited.
        let _ = self.kill();

        let keep_dirs = std::env::var_os(ENV_KEEP_DIRS).is_some_and(|value| !value.is_empty());
        if let Some(dir) = self.dir.take() {
            if keep_dirs {
                let path = dir.keep();
                eprintln!("{ENV_KEEP_DIRS} is set: kept nats-server folder {}", path.display());
            }
        }
    }
}

/// Returns the last lines of the log file, or a note if it cannot be read.
fn log_tail(path: &Path) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(STDERR_TAIL_LINES);
            lines[start..].join("\n")
        }
        Err(error) => format!("(failed to read {}: {error})", path.display()),
    }
}
