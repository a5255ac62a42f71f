//! The no-op forwarder: the gate's intake queue subscription and JetStream
//! publish-and-acknowledge with no checks at all, so the limit for any gate on this broker.
//!
//! It mirrors the gate's forward path: the same client settings, a bounded number of
//! acknowledgements in flight (an order over the bound is rejected, not queued), each
//! acknowledgement awaited in its own task, and the reply sent after the acknowledgement.
//! It runs as a child process of the load generator, so it has a runtime and a CPU share
//! of its own, as the gate does.

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::context::PublishAckFuture;
use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::cli::ForwardArgs;
use crate::setup::{FORWARD_PREFIX, INTAKE_PREFIX};

/// Line the forwarder prints once it is subscribed.
const READY_LINE: &str = "forwarder ready";
/// How long the forwarder may take to subscribe after its start.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// The gate's default acknowledgement deadline (`TITAN_GATE_FORWARD_ACK_TIMEOUT_MS`).
const ACK_TIMEOUT: Duration = Duration::from_secs(2);
/// The gate's subscription buffer (`DEFAULT_SUBSCRIPTION_CAPACITY` in the gate).
const SUBSCRIPTION_CAPACITY: usize = 65_536;

/// Runs the forwarder until its stdin closes, which happens when the parent exits.
pub async fn run(args: ForwardArgs) -> anyhow::Result<()> {
    let client = async_nats::ConnectOptions::new()
        .name("titan-gate-load-forwarder")
        .subscription_capacity(SUBSCRIPTION_CAPACITY)
        .connect(args.nats_url.as_str())
        .await
        .with_context(|| format!("forwarder cannot connect to {}", args.nats_url))?;
    let jetstream = async_nats::jetstream::ContextBuilder::new()
        .timeout(ACK_TIMEOUT)
        .max_ack_inflight(args.max_in_flight)
        .backpressure_on_inflight(false)
        .build(client.clone());
    let mut intake = client.queue_subscribe(format!("{INTAKE_PREFIX}.>"), "titan-gate-load-forwarder".into()).await?;
    client.flush().await?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{READY_LINE}").and_then(|()| stdout.flush()).context("cannot report ready on stdout")?;
    drop(stdout);

    let in_flight = Arc::new(Semaphore::new(args.max_in_flight));
    let mut stdin = tokio::io::stdin();
    let mut scratch = [0u8; 64];
    loop {
        let message = tokio::select! {
            message = intake.next() => message,
            read = stdin.read(&mut scratch) => match read {
                Ok(0) | Err(_) => break,
                Ok(_) => continue,
            },
        };
        let Some(message) = message else { break };
        let Ok(permit) = Arc::clone(&in_flight).try_acquire_owned() else {
            reply(&client, message.reply.as_deref(), r#"{"verdict":"rejected","reason":"rate_limited"}"#).await;
            continue;
        };
        let tail = message.subject.strip_prefix(INTAKE_PREFIX).unwrap_or(".");
        let subject = format!("{FORWARD_PREFIX}{tail}");
        let headers = message.headers.unwrap_or_default();
        match jetstream.publish_with_headers(subject, headers, message.payload).await {
            Ok(ack) => {
                let client = client.clone();
                let reply_to = message.reply.map(|subject| subject.to_string());
                tokio::spawn(async move { finish(&client, ack, reply_to, permit).await });
            }
            Err(_) => {
                reply(&client, message.reply.as_deref(), r#"{"verdict":"rejected","reason":"forward_failed"}"#).await;
            }
        }
    }
    Ok(())
}

/// Awaits one acknowledgement, frees the in-flight slot, and replies with the verdict.
async fn finish(
    client: &async_nats::Client,
    ack: PublishAckFuture,
    reply_to: Option<String>,
    permit: OwnedSemaphorePermit,
) {
    let outcome = ack.await;
    drop(permit);
    let body = match outcome {
        Ok(ack) if ack.duplicate => r#"{"verdict":"rejected","reason":"duplicate_intent"}"#.to_owned(),
        Ok(ack) => format!(r#"{{"verdict":"admitted","stream_seq":{}}}"#, ack.sequence),
        Err(_) => r#"{"verdict":"unconfirmed","reason":"forward_unconfirmed"}"#.to_owned(),
    };
    reply(client, reply_to.as_deref(), &body).await;
}

async fn reply(client: &async_nats::Client, reply_to: Option<&str>, body: &str) {
    if let Some(subject) = reply_to {
        if let Err(error) = client.publish(subject.to_owned(), body.to_owned().into()).await {
            eprintln!("forwarder: reply to {subject} failed: {error}");
        }
    }
}

/// A forwarder child process, killed when dropped.
#[derive(Debug)]
pub struct ForwarderProcess {
    child: Child,
}

impl ForwarderProcess {
    /// Returns the process id, or 0 once the process has been reaped.
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// Starts this program's `forward` subcommand and waits until it is subscribed.
    pub async fn start(nats_url: &str) -> anyhow::Result<Self> {
        let program = std::env::current_exe().context("cannot find this program's executable")?;
        let mut child = Command::new(program)
            .args(["forward", "--nats-url", nats_url])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start the forwarder process")?;
        let stdout = child.stdout.take().context("the forwarder's stdout is not captured")?;
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(START_TIMEOUT, lines.next_line())
            .await
            .with_context(|| format!("the forwarder did not report ready within {START_TIMEOUT:?}"))?
            .context("reading the forwarder's stdout failed")?;
        anyhow::ensure!(
            first.as_deref() == Some(READY_LINE),
            "the forwarder printed {first:?} instead of {READY_LINE:?}; see its stderr above"
        );
        Ok(Self { child })
    }

    /// Closes the forwarder's stdin, which stops it, and waits for its exit.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        drop(self.child.stdin.take());
        match tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await {
            Ok(status) => {
                status.context("waiting for the forwarder failed")?;
            }
            Err(_) => self.child.kill().await.context("killing the forwarder failed")?,
        }
        Ok(())
    }
}
