//! Test support for titan-gate: real nats-server processes with JetStream, and
//! helpers that poll conditions under timeouts.
//!
//! Integration tests start a server with [`NatsServer::start`], connect to
//! [`NatsServer::url`], and may [`NatsServer::kill`] and
//! [`NatsServer::restart`] it to test reconnects and recovery. The binary is
//! found as [`find_nats_server`] describes; `scripts/ensure-nats-server.sh`
//! installs one.

mod binary;
mod builder;
mod cluster;
mod error;
mod gate;
mod http;
mod readiness;
mod server;

use std::future::Future;
use std::net::{Ipv4Addr, TcpListener};
use std::time::Duration;

pub use binary::{ENV_NATS_SERVER_BIN, find_nats_server, venv_binary};
pub use builder::{HealthCheck, NatsServerBuilder};
pub use cluster::start_cluster;
pub use error::{NatsServerError, ReadinessStage, WaitTimeoutError};
pub use gate::{GateProcess, GateProcessBuilder, GateProcessError};
pub use http::{HttpResponse, http_get};
pub use server::{ENV_KEEP_DIRS, NatsServer};

/// Interval between two checks of a [`wait_until`] condition.
const WAIT_POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Returns a TCP port on 127.0.0.1 that was free when this function checked.
///
/// Another process can take the port before the caller binds it, so prefer
/// letting the program choose (`-p -1` for nats-server) where it can.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("failed to bind 127.0.0.1:0 to find a free port");
    listener.local_addr().expect("failed to read the address of a bound listener").port()
}

/// Polls `condition` every 20 ms until it returns `true`.
///
/// The whole wait, including a condition call that hangs, is bounded by
/// `timeout`. The timeout error names `what`, e.g. "the gate to reconnect".
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut condition: F) -> Result<(), WaitTimeoutError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let poll = async {
        while !condition().await {
            tokio::time::sleep(WAIT_POLL_INTERVAL).await;
        }
    };

    tokio::time::timeout(timeout, poll).await.map_err(|_| WaitTimeoutError { condition: what.to_owned(), timeout })
}
