//! The execution side: the `TITAN_CMD` stream and the `EXECUTION_CORE` consumer, set up
//! as Titan's execution service sets them up, and read back to check what the gate stored.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use async_nats::jetstream::stream::{Config, RetentionPolicy, Stream};
use futures::StreamExt;

pub const STREAM: &str = "TITAN_CMD";
pub const CONSUMER: &str = "EXECUTION_CORE";
const ORDER_FILTER: &str = "titan.cmd.execution.>";

/// The stream and consumer handles.
#[derive(Debug)]
pub struct Execution {
    pub stream: Stream,
    pub consumer: PullConsumer,
}

/// A stored order fetched by the consumer.
#[derive(Debug)]
pub struct FetchedOrder {
    pub subject: String,
    pub msg_id: String,
    pub gate_id: String,
    pub payload: Vec<u8>,
}

impl Execution {
    /// Creates `TITAN_CMD` (`titan.cmd.>`, work-queue retention, 60 s duplicate window)
    /// and the durable pull consumer `EXECUTION_CORE` on `titan.cmd.execution.>`.
    pub async fn create(jetstream: &async_nats::jetstream::Context) -> anyhow::Result<Execution> {
        let config = Config {
            name: STREAM.to_owned(),
            subjects: vec!["titan.cmd.>".to_owned()],
            retention: RetentionPolicy::WorkQueue,
            duplicate_window: Duration::from_secs(60),
            ..Config::default()
        };
        let stream =
            jetstream.create_stream(config).await.with_context(|| format!("cannot create the stream {STREAM}"))?;
        let consumer_config = pull::Config {
            durable_name: Some(CONSUMER.to_owned()),
            filter_subject: ORDER_FILTER.to_owned(),
            ack_policy: AckPolicy::Explicit,
            ..pull::Config::default()
        };
        let consumer = stream
            .create_consumer(consumer_config)
            .await
            .with_context(|| format!("cannot create the consumer {CONSUMER}"))?;
        Ok(Execution { stream, consumer })
    }

    /// Returns the number of messages in the stream and the orders pending on the consumer.
    pub async fn counts(&mut self) -> anyhow::Result<(u64, u64)> {
        let messages =
            self.stream.info().await.with_context(|| format!("cannot read the info of {STREAM}"))?.state.messages;
        let pending =
            self.consumer.info().await.with_context(|| format!("cannot read the info of {CONSUMER}"))?.num_pending;
        Ok((messages, pending))
    }

    /// Fetches the next order as the execution service would, and acknowledges it, which
    /// removes it from the work-queue stream.
    pub async fn take_one(&self) -> anyhow::Result<FetchedOrder> {
        let mut batch = self
            .consumer
            .fetch()
            .max_messages(1)
            .expires(Duration::from_secs(2))
            .messages()
            .await
            .with_context(|| format!("cannot fetch from {CONSUMER}"))?;
        let message = batch
            .next()
            .await
            .with_context(|| format!("{CONSUMER} had no order to fetch"))?
            .map_err(|error| anyhow::anyhow!("fetching from {CONSUMER} failed: {error}"))?;
        let header = |name: &str| {
            message
                .headers
                .as_ref()
                .and_then(|headers| headers.get(name))
                .map_or_else(String::new, |value| value.as_str().to_owned())
        };
        let fetched = FetchedOrder {
            subject: message.subject.to_string(),
            msg_id: header("Nats-Msg-Id"),
            gate_id: header("Titan-Gate-Id"),
            payload: message.payload.to_vec(),
        };
        message
            .double_ack()
            .await
            .map_err(|error| anyhow::anyhow!("acknowledging the fetched order failed: {error}"))?;
        Ok(fetched)
    }

    /// Returns the `Nats-Msg-Id` of every order stored under `titan.cmd.execution.>`.
    pub async fn stored_order_ids(&mut self) -> anyhow::Result<BTreeSet<String>> {
        let state =
            self.stream.info().await.with_context(|| format!("cannot read the info of {STREAM}"))?.state.clone();
        let mut ids = BTreeSet::new();
        if state.messages == 0 {
            return Ok(ids);
        }
        for sequence in state.first_sequence..=state.last_sequence {
            // A work-queue stream deletes acknowledged messages, so gaps are expected.
            let Ok(message) = self.stream.get_raw_message(sequence).await else {
                continue;
            };
            if message.subject.starts_with("titan.cmd.execution.")
                && let Some(id) = message.headers.get("Nats-Msg-Id")
            {
                ids.insert(id.as_str().to_owned());
            }
        }
        Ok(ids)
    }
}
