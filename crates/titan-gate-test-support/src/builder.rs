//! Options for starting a nats-server: JetStream, config file, extra
//! arguments, health check and timeouts.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::{NatsServer, NatsServerError};

const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// The monitoring request that must return 200 before a start counts as ready.
///
/// Without JetStream both variants request plain `/healthz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HealthCheck {
    /// `GET /healthz`: the server runs and JetStream, with the streams and
    /// consumers it recovered from storage, is current.
    #[default]
    Full,
    /// `GET /healthz?js-enabled-only=true`: JetStream is enabled. Use this for
    /// cluster nodes started one at a time, because a lone node's full health
    /// returns 503 until a quorum of nodes has recovered the meta layer.
    JetStreamEnabled,
}

impl HealthCheck {
    pub(crate) fn request_path(self, jetstream: bool) -> &'static str {
        match self {
            Self::JetStreamEnabled if jetstream => "/healthz?js-enabled-only=true",
            _ => "/healthz",
        }
    }
}

/// Options for starting a [`NatsServer`], created by [`NatsServer::builder`].
#[derive(Debug, Clone)]
pub struct NatsServerBuilder {
    pub(crate) jetstream: bool,
    pub(crate) config_file: Option<PathBuf>,
    pub(crate) args: Vec<OsString>,
    pub(crate) env: Vec<(OsString, OsString)>,
    pub(crate) health_check: HealthCheck,
    pub(crate) start_timeout: Duration,
    pub(crate) stop_timeout: Duration,
}

impl Default for NatsServerBuilder {
    fn default() -> Self {
        Self {
            jetstream: true,
            config_file: None,
            args: Vec::new(),
            env: Vec::new(),
            health_check: HealthCheck::default(),
            start_timeout: DEFAULT_START_TIMEOUT,
            stop_timeout: DEFAULT_STOP_TIMEOUT,
        }
    }
}

impl NatsServerBuilder {
    /// Enables JetStream (`-js`, the default) or leaves it off.
    #[must_use]
    pub fn jetstream(mut self, enabled: bool) -> Self {
        self.jetstream = enabled;
        self
    }

    /// Passes a configuration file with `-c`. The listen address, client and
    /// monitoring ports and storage folder set on the command line override
    /// the file's values.
    #[must_use]
    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config_file = Some(path.into());
        self
    }

    /// Appends one command-line argument after the ones this crate sets.
    #[must_use]
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Appends command-line arguments after the ones this crate sets.
    #[must_use]
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable of the server process, such as one that a
    /// `$NAME` reference in the configuration file reads. The process also
    /// inherits the test's own environment.
    #[must_use]
    pub fn env(mut self, name: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Sets the health request that must return 200 before a start returns.
    #[must_use]
    pub fn health_check(mut self, check: HealthCheck) -> Self {
        self.health_check = check;
        self
    }

    /// Sets the limit for each start and restart to become ready (default 10 s).
    #[must_use]
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// Sets how long [`NatsServer::stop`] waits after SIGTERM before it sends
    /// SIGKILL (default 5 s).
    #[must_use]
    pub fn stop_timeout(mut self, timeout: Duration) -> Self {
        self.stop_timeout = timeout;
        self
    }

    /// Starts the server and blocks until it is ready, as [`NatsServer::start`] does.
    pub fn start(self) -> Result<NatsServer, NatsServerError> {
        NatsServer::start_with(self)
    }
}
