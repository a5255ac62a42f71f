//! The producer side of a run: sends orders on one path, flat out or at a fixed rate,
//! with a bounded number in flight, and records each order's latency.
//!
//! An order's latency runs from its intended send time to its reply (request mode) or to
//! its arrival on the forward subject (fire-and-forget mode). At a fixed rate the
//! intended time is the schedule's, so an order delayed by a full in-flight window
//! counts its wait too (no coordinated omission).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use futures::StreamExt;
use hdrhistogram::Histogram;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::cli::{PathKind, SendMode};
use crate::halt::HaltProbe;
use crate::orders::{HEADER_SENT_NS, OrderFactory, SignedOrder};
use crate::setup::{FORWARD_PREFIX, INTAKE_PREFIX, TAIL};

/// How long a request waits for its reply before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the end of a run waits for the orders still in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Subject of the gate's reject events.
const REJECT_EVENT_SUBJECT: &str = "titan.evt.execution.reject.v1";

/// How to load one path.
#[derive(Clone, Copy, Debug)]
pub struct LoadSpec {
    pub mode: SendMode,
    /// Orders per second, or 0 for flat out.
    pub rate: u64,
    pub in_flight: u32,
    pub warmup: Duration,
    pub duration: Duration,
}

/// The verdict one order received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Admitted,
    Rejected(String),
    Unconfirmed,
    Failed(String),
}

/// A reply's verdict and the gate epoch it carries, if any.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub outcome: Outcome,
    pub epoch: Option<u64>,
}

/// The figures of one path's measured window.
#[derive(Debug)]
pub struct PathStats {
    pub path: PathKind,
    pub window: Duration,
    /// Latency of admitted orders, in nanoseconds.
    pub latency: Histogram<u64>,
    /// Orders that were not admitted, by reason.
    pub not_admitted: BTreeMap<String, u64>,
    /// Orders sent in the window that had no outcome when the run ended.
    pub unaccounted: u64,
}

impl PathStats {
    /// Returns admitted orders per second.
    #[allow(clippy::cast_precision_loss, reason = "order counts stay far below 2^52")]
    pub fn throughput(&self) -> f64 {
        self.latency.len() as f64 / self.window.as_secs_f64()
    }
}

/// State shared by the tasks of one run.
#[derive(Debug)]
struct Recorder {
    origin: Instant,
    window_ns: (u64, u64),
    latency: Mutex<Histogram<u64>>,
    not_admitted: Mutex<BTreeMap<String, u64>>,
    probe: Option<Arc<HaltProbe>>,
}

impl Recorder {
    /// Records the outcome of an order sent at `sent_ns`, if it was sent in the window.
    fn record(&self, sent_ns: u64, verdict: &Verdict) {
        let received = Instant::now();
        if let Some(probe) = &self.probe {
            probe.observe(self.origin + Duration::from_nanos(sent_ns), received, verdict);
        }
        if sent_ns < self.window_ns.0 || sent_ns >= self.window_ns.1 {
            return;
        }
        match &verdict.outcome {
            Outcome::Admitted => {
                let latency = nanos(received.duration_since(self.origin)).saturating_sub(sent_ns).max(1);
                self.latency.lock().expect("latency lock").saturating_record(latency);
            }
            other => {
                let label = match other {
                    Outcome::Rejected(reason) => format!("rejected:{reason}"),
                    Outcome::Unconfirmed => "unconfirmed".to_owned(),
                    Outcome::Failed(error) => format!("failed:{error}"),
                    Outcome::Admitted => unreachable!("admitted orders are handled above"),
                };
                *self.not_admitted.lock().expect("count lock").entry(label).or_default() += 1;
            }
        }
    }
}

/// The producer: its connections and the orders it sends.
#[derive(Debug, Clone)]
pub struct Producer {
    pub client: async_nats::Client,
    pub jetstream: async_nats::jetstream::Context,
    /// A second connection for the fire-and-forget arrivals and reject events, so their
    /// reads never wait behind the producer's writes.
    pub observer: async_nats::Client,
}

/// Runs the warm-up and the measured window on `path` and returns the window's figures.
pub async fn run_path(
    producer: &Producer,
    path: PathKind,
    factory: Arc<OrderFactory>,
    spec: LoadSpec,
    probe: Option<Arc<HaltProbe>>,
) -> anyhow::Result<PathStats> {
    let origin = Instant::now();
    let window_ns = (nanos(spec.warmup), nanos(spec.warmup + spec.duration));
    let histogram = Histogram::new_with_bounds(1, 60_000_000_000, 3).context("histogram bounds")?;
    let recorder = Arc::new(Recorder {
        origin,
        window_ns,
        latency: Mutex::new(histogram),
        not_admitted: Mutex::new(BTreeMap::new()),
        probe,
    });
    let slots = Arc::new(Semaphore::new(spec.in_flight as usize));
    let observer = match spec.mode {
        SendMode::FireAndForget => Some(observe_arrivals(producer, &recorder, &slots).await?),
        SendMode::Request => None,
    };

    let subject = match path {
        PathKind::Direct => format!("{FORWARD_PREFIX}.{TAIL}"),
        PathKind::Forwarder | PathKind::Gate => format!("{INTAKE_PREFIX}.{TAIL}"),
    };
    let end = origin + spec.warmup + spec.duration;
    let mut sequence = 0u64;
    loop {
        let intended = match sequence.saturating_mul(1_000_000_000).checked_div(spec.rate) {
            None => Instant::now(),
            Some(offset_ns) => {
                let intended = origin + Duration::from_nanos(offset_ns);
                tokio::time::sleep_until(intended.into()).await;
                intended
            }
        };
        if intended >= end || Instant::now() >= end {
            break;
        }
        let permit = Arc::clone(&slots).acquire_owned().await.context("in-flight slots closed")?;
        let sent_ns = nanos(intended.duration_since(origin));
        let order = factory.order(&subject, sequence, sent_ns);
        sequence += 1;
        match spec.mode {
            SendMode::Request => {
                let task = Request { producer: producer.clone(), path, subject: subject.clone(), sent_ns };
                let recorder = Arc::clone(&recorder);
                tokio::spawn(async move { task.send(order, &recorder, permit).await });
            }
            SendMode::FireAndForget => {
                permit.forget();
                producer
                    .client
                    .publish_with_headers(subject.clone(), order.headers, order.body)
                    .await
                    .context("publishing an order failed")?;
            }
        }
    }
    producer.client.flush().await.context("flushing the producer failed")?;

    let all = spec.in_flight;
    let unaccounted = match tokio::time::timeout(DRAIN_TIMEOUT, slots.acquire_many(all)).await {
        Ok(_) => 0,
        Err(_) => (spec.in_flight as usize).saturating_sub(slots.available_permits()) as u64,
    };
    if let Some(task) = observer {
        task.abort();
    }
    let latency = recorder.latency.lock().expect("latency lock").clone();
    let not_admitted = recorder.not_admitted.lock().expect("count lock").clone();
    Ok(PathStats { path, window: spec.duration, latency, not_admitted, unaccounted })
}

/// One request-mode order.
struct Request {
    producer: Producer,
    path: PathKind,
    subject: String,
    sent_ns: u64,
}

impl Request {
    async fn send(self, order: SignedOrder, recorder: &Recorder, permit: OwnedSemaphorePermit) {
        let verdict = match self.path {
            PathKind::Direct => self.publish_to_stream(order).await,
            PathKind::Forwarder | PathKind::Gate => self.request_verdict(order).await,
        };
        drop(permit);
        recorder.record(self.sent_ns, &verdict);
    }

    /// Publishes straight to the stream and awaits the acknowledgement.
    async fn publish_to_stream(&self, order: SignedOrder) -> Verdict {
        let jetstream = &self.producer.jetstream;
        let outcome = match jetstream.publish_with_headers(self.subject.clone(), order.headers, order.body).await {
            Ok(ack) => match ack.await {
                Ok(ack) if ack.duplicate => Outcome::Rejected("duplicate_intent".to_owned()),
                Ok(_) => Outcome::Admitted,
                Err(error) => Outcome::Failed(error.kind().to_string()),
            },
            Err(error) => Outcome::Failed(error.kind().to_string()),
        };
        Verdict { outcome, epoch: None }
    }

    /// Sends the order as a request and reads the verdict from the reply.
    async fn request_verdict(&self, order: SignedOrder) -> Verdict {
        let request =
            async_nats::Request::new().headers(order.headers).payload(order.body).timeout(Some(REQUEST_TIMEOUT));
        match self.producer.client.send_request(self.subject.clone(), request).await {
            Ok(reply) => parse_verdict(&reply.payload),
            Err(error) => Verdict { outcome: Outcome::Failed(error.kind().to_string()), epoch: None },
        }
    }
}

/// Reads `verdict`, `reason` and `epoch` from a gate or forwarder reply.
pub fn parse_verdict(payload: &Bytes) -> Verdict {
    #[derive(serde::Deserialize)]
    struct Reply {
        verdict: String,
        reason: Option<String>,
        epoch: Option<u64>,
    }
    let Ok(reply) = serde_json::from_slice::<Reply>(payload) else {
        return Verdict { outcome: Outcome::Failed("unreadable reply".to_owned()), epoch: None };
    };
    let outcome = match reply.verdict.as_str() {
        "admitted" => Outcome::Admitted,
        "rejected" => Outcome::Rejected(reply.reason.unwrap_or_default()),
        "unconfirmed" => Outcome::Unconfirmed,
        other => Outcome::Failed(format!("unknown verdict {other}")),
    };
    Verdict { outcome, epoch: reply.epoch }
}

/// Subscribes to the forward subject and the reject events: each arrival records its
/// order and frees its in-flight slot.
async fn observe_arrivals(
    producer: &Producer,
    recorder: &Arc<Recorder>,
    slots: &Arc<Semaphore>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let arrivals = producer.observer.subscribe(format!("{FORWARD_PREFIX}.>")).await?;
    let rejects = producer.observer.subscribe(REJECT_EVENT_SUBJECT).await?;
    producer.observer.flush().await?;
    let recorder = Arc::clone(recorder);
    let slots = Arc::clone(slots);
    Ok(tokio::spawn(async move {
        let mut messages = futures::stream::select(arrivals, rejects);
        while let Some(message) = messages.next().await {
            let sent_ns = message.headers.as_ref().and_then(|headers| headers.get(HEADER_SENT_NS));
            let outcome = if sent_ns.is_some() {
                Outcome::Admitted
            } else {
                Outcome::Rejected(parse_verdict_event(&message.payload))
            };
            let verdict = Verdict { outcome, epoch: None };
            let sent_ns = sent_ns.and_then(|value| value.as_str().parse().ok()).unwrap_or(recorder.window_ns.0);
            recorder.record(sent_ns, &verdict);
            slots.add_permits(1);
        }
    }))
}

/// Returns the reason of a reject event.
fn parse_verdict_event(payload: &Bytes) -> String {
    serde_json::from_slice::<serde_json::Value>(payload)
        .ok()
        .and_then(|event| event.get("reason").and_then(|reason| reason.as_str().map(str::to_owned)))
        .unwrap_or_else(|| "unreadable reject event".to_owned())
}

/// Returns a duration in whole nanoseconds, saturating.
pub fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}
