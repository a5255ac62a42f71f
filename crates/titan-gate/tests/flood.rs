//! A flood of malformed and hostile orders on a real broker: random bytes, nesting bombs,
//! huge numbers, lone surrogates, invalid UTF-8, oversized bodies and oversized or
//! repeated headers. Each gets a rejection with a reason, the gate stays up with bounded
//! memory, and a valid order afterwards is still admitted.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_nats::HeaderMap;
use common::*;
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use serde_json::Value;

/// Hostile orders sent in one flood.
const FLOOD_SIZE: usize = 4_000;

/// Requests in flight at once.
const CONCURRENCY: usize = 32;

/// How much of the flood's bytes the gate's resident memory may grow by, during and after
/// the flood: room for the allocator's slack and the buffers of the requests in flight, but
/// not for a queue of the bodies. The flood is about 240 MB, mostly its oversized bodies. A
/// debug build grew by 12 MiB with the system allocator and by 88 MiB with mimalloc, which
/// keeps freed pages for reuse.
const RSS_GROWTH_SHARE: (u64, u64) = (3, 4);

/// Reasons a hostile order may get: each is a check the decision makes before forwarding.
const EXPECTED_REASONS: [&str; 6] =
    ["malformed", "payload_too_large", "unsigned", "hmac_signature_mismatch", "unknown_key", "stale_timestamp"];

/// One hostile order: what kind it is, its subject tail, body and headers.
struct Hostile {
    kind: &'static str,
    tail: String,
    body: Vec<u8>,
    headers: HeaderMap,
}

/// Builds the `index`-th hostile order, cycling through the kinds.
fn hostile(index: usize, rng: &mut StdRng) -> Hostile {
    let good = payload(&format!("sig-flood-{index}"), "BUY_SETUP");
    let (kind, body, headers) = match index % 10 {
        0 => ("random bytes", random_bytes(rng, 0..4_096), HeaderMap::new()),
        1 => ("invalid utf-8", invalid_utf8(&unsigned_envelope(&good), rng), HeaderMap::new()),
        2 => ("nesting bomb", nesting_bomb(rng), HeaderMap::new()),
        3 => ("huge number", huge_number(&good, rng), HeaderMap::new()),
        4 => ("lone surrogate", lone_surrogate(&good, rng), HeaderMap::new()),
        5 => ("oversized headers", unsigned_envelope(&good).into_bytes(), oversized_headers(rng)),
        6 => ("repeated headers", unsigned_envelope(&good).into_bytes(), repeated_headers(&good)),
        7 => ("oversized body", oversized_body(rng), HeaderMap::new()),
        8 => ("token soup", token_soup(rng), HeaderMap::new()),
        _ => ("made-up signature", unsigned_envelope(&good).into_bytes(), made_up_signature(rng)),
    };
    let tail = if index % 7 == 0 { hostile_tail(rng) } else { TAIL.to_owned() };
    Hostile { kind, tail, body, headers }
}

fn random_bytes(rng: &mut StdRng, length: std::ops::Range<usize>) -> Vec<u8> {
    let mut bytes = vec![0u8; rng.random_range(length)];
    rng.fill_bytes(&mut bytes);
    bytes
}

/// Overwrites a few bytes of a valid envelope with bytes that are never valid UTF-8 there.
fn invalid_utf8(envelope: &str, rng: &mut StdRng) -> Vec<u8> {
    let mut bytes = envelope.as_bytes().to_vec();
    for _ in 0..rng.random_range(1..4) {
        let at = rng.random_range(0..bytes.len());
        bytes[at] = [0xC0, 0xFF, 0x80, 0xF5, 0xED][rng.random_range(0..5)];
    }
    bytes
}

/// Returns arrays or objects nested up to 30,000 deep, closed or left open.
fn nesting_bomb(rng: &mut StdRng) -> Vec<u8> {
    let depth = rng.random_range(100..30_000);
    let (open, close) = if rng.random_bool(0.5) { ("[", "]") } else { ("{\"a\":", "}") };
    let closes = if rng.random_bool(0.5) { depth } else { depth / 2 };
    format!("{}1{}", open.repeat(depth), close.repeat(closes)).into_bytes()
}

fn huge_number(good: &str, rng: &mut StdRng) -> Vec<u8> {
    let digits = "9".repeat(rng.random_range(310..20_000));
    let numbers = [
        "1e999999".to_owned(),
        "-1e400".to_owned(),
        digits.clone(),
        format!("0.{digits}1"),
        format!("1{digits}e-{digits}"),
        "123456789012345678901234567890".to_owned(),
    ];
    let number = &numbers[rng.random_range(0..numbers.len())];
    let field =
        ["\"size\":0.38771252914452203", "\"t_signal\":1764806400000", "\"direction\":1"][rng.random_range(0..3)];
    let (name, _) = field.split_once(':').expect("field has a colon");
    envelope_with_unchecked_signature(&good.replace(field, &format!("{name}:{number}"))).into_bytes()
}

/// Returns an envelope whose signal id has an unpaired surrogate, escaped or as the raw
/// bytes UTF-8 forbids.
fn lone_surrogate(good: &str, rng: &mut StdRng) -> Vec<u8> {
    let escaped = ["\\ud800", "\\udfff", "\\ud800\\u0041", "\\udc00\\ud800", "\\ud83d"][rng.random_range(0..5)];
    if rng.random_bool(0.5) {
        envelope_with_unchecked_signature(&good.replace("sig-flood", &format!("sig-{escaped}"))).into_bytes()
    } else {
        let mut bytes = unsigned_envelope(good).into_bytes();
        let at = bytes.windows(9).position(|window| window == b"sig-flood").expect("the signal id is in the body");
        bytes.splice(at..at + 3, [0xED, 0xA0, 0x80]);
        bytes
    }
}

/// Returns header values of up to 32 KiB or up to 300 extra headers, within the broker's limit.
fn oversized_headers(rng: &mut StdRng) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let long = "A".repeat(rng.random_range(4_096..32_768));
    match rng.random_range(0..4) {
        0 => headers.insert("Titan-Signature", format!("v2={long}").as_str()),
        1 => headers.insert("Titan-Key-Id", long.as_str()),
        2 => {
            headers.insert("Titan-Key-Id", STRATEGY_KEY_ID);
            headers.insert("Titan-Timestamp", long.as_str());
            headers.insert("Titan-Nonce", long.as_str());
            headers.insert("Titan-Signature", format!("v2={}", "0".repeat(64)).as_str());
        }
        _ => {
            for number in 0..rng.random_range(50..300) {
                headers.insert(format!("X-Junk-{number}").as_str(), "x".repeat(64).as_str());
            }
        }
    }
    headers
}

/// Returns a valid v2 signature next to a second signature header, repeated or spelled in
/// lowercase.
fn repeated_headers(good: &str) -> HeaderMap {
    let body = unsigned_envelope(good);
    let subject = format!("{INTAKE}.{TAIL}");
    let mut headers = v2_headers(STRATEGY_KEY_ID, STRATEGY_SECRET, &subject, body.as_bytes(), now_ms(), &nonce());
    if good.len() % 2 == 0 {
        headers.append("Titan-Signature", format!("v2={}", "0".repeat(64)).as_str());
    } else {
        headers.insert("titan-signature", format!("v2={}", "0".repeat(64)).as_str());
    }
    headers
}

/// Returns a body over the gate's 64 KiB default limit and under the broker's 1 MiB limit.
fn oversized_body(rng: &mut StdRng) -> Vec<u8> {
    let filler = "x".repeat(rng.random_range(70_000..900_000));
    unsigned_envelope(&payload(&filler, "BUY_SETUP")).into_bytes()
}

/// Returns random JSON tokens, which give the parser plausible structure in impossible orders.
fn token_soup(rng: &mut StdRng) -> Vec<u8> {
    const TOKENS: [&str; 16] =
        ["{", "}", "[", "]", ",", ":", "\"", "\\u", "1e", "-0", "true", "null", "\"payload\"", "\\", "\u{0}", "99"];
    (0..rng.random_range(1..2_000)).map(|_| TOKENS[rng.random_range(0..TOKENS.len())]).collect::<String>().into_bytes()
}

fn made_up_signature(rng: &mut StdRng) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let key_id = if rng.random_bool(0.5) { STRATEGY_KEY_ID } else { "no-such-key" };
    headers.insert("Titan-Key-Id", key_id);
    headers.insert("Titan-Timestamp", now_ms().to_string().as_str());
    headers.insert("Titan-Nonce", nonce().as_str());
    headers.insert("Titan-Signature", format!("v2={}", hex::encode(random_bytes(rng, 32..33))).as_str());
    headers
}

/// Returns a subject tail with many tokens or one very long token.
fn hostile_tail(rng: &mut StdRng) -> String {
    if rng.random_bool(0.5) { vec!["t"; rng.random_range(10..200)].join(".") } else { "z".repeat(2_000) }
}

/// Reads the resident set size of process `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the gate process is alive");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("/proc status has VmRSS")
}

#[tokio::test]
async fn flood_gets_rejections_with_bounded_memory() {
    let harness = Harness::start().await;
    let pid = harness.gate.pid();
    let rss_before = rss_kib(pid);

    let peak_rss = Arc::new(AtomicU64::new(rss_before));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak_rss, sampling) = (peak_rss.clone(), sampling.clone());
        tokio::spawn(async move {
            while sampling.load(Ordering::SeqCst) {
                peak_rss.fetch_max(rss_kib(pid), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    let mut rng = StdRng::seed_from_u64(0x7174_616e);
    let orders: Vec<Hostile> = (0..FLOOD_SIZE).map(|index| hostile(index, &mut rng)).collect();
    let flood_bytes: u64 = orders.iter().map(|order| order.body.len() as u64).sum();
    let (numerator, denominator) = RSS_GROWTH_SHARE;
    let rss_bound = rss_before + flood_bytes / 1024 * numerator / denominator;
    let client = harness.client.clone();
    let replies: Vec<(&'static str, Result<Value, String>)> = futures::stream::iter(orders)
        .map(|order| {
            let client = client.clone();
            async move {
                let subject = format!("{INTAKE}.{}", order.tail);
                let request =
                    async_nats::Request::new().payload(order.body.into()).headers(order.headers).timeout(Some(WAIT));
                let verdict = match client.send_request(subject, request).await {
                    Ok(reply) => serde_json::from_slice(&reply.payload).map_err(|error| error.to_string()),
                    Err(error) => Err(error.to_string()),
                };
                (order.kind, verdict)
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    sampling.store(false, Ordering::SeqCst);
    sampler.await.expect("the sampler did not panic");

    let mut reasons: BTreeMap<(&str, String), usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for (kind, verdict) in &replies {
        match verdict {
            Ok(verdict) if verdict["verdict"] == "rejected" => {
                let reason = verdict["reason"].as_str().unwrap_or("").to_owned();
                assert!(EXPECTED_REASONS.contains(&reason.as_str()), "{kind}: unexpected reason in {verdict}");
                let detail = verdict["detail"].as_str().unwrap_or("");
                assert!(!detail.is_empty(), "{kind}: a rejection explains itself: {verdict}");
                *reasons.entry((kind, reason)).or_default() += 1;
            }
            Ok(verdict) => failures.push(format!("{kind}: not rejected: {verdict}")),
            Err(error) => failures.push(format!("{kind}: no verdict: {error}")),
        }
    }
    eprintln!("verdicts by kind and reason: {reasons:#?}");
    assert!(failures.is_empty(), "{} of {FLOOD_SIZE} orders got no rejection: {:#?}", failures.len(), &failures[..]);
    let rejected: usize = reasons.values().sum();
    assert_eq!(replies.len(), FLOOD_SIZE, "every order was sent");
    assert_eq!(rejected, FLOOD_SIZE, "every order got a rejection");

    let peak = peak_rss.load(Ordering::SeqCst);
    let rss_after = rss_kib(pid);
    eprintln!(
        "gate VmRSS: {rss_before} KiB before, {peak} KiB peak, {rss_after} KiB after, a flood of {} KiB",
        flood_bytes / 1024
    );
    assert!(peak < rss_bound, "peak VmRSS {peak} KiB is over the {rss_bound} KiB bound");
    assert!(rss_after < rss_bound, "VmRSS after the flood {rss_after} KiB is over the {rss_bound} KiB bound");

    assert_eq!(harness.gate.status_code("/healthz"), 200, "the gate is still up");
    let verdict = harness.signed_order("sig-after-flood").await;
    assert_eq!(verdict["verdict"], "admitted", "a valid order after the flood: {verdict}");
    assert_eq!(harness.stored_orders().await.len(), 1, "no hostile order reached the stream");
    let counted: u64 = harness
        .metrics()
        .lines()
        .filter(|line| line.starts_with(r#"titan_gate_orders_total{verdict="rejected""#))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<u64>().ok())
        .sum();
    assert_eq!(
        counted,
        u64::try_from(FLOOD_SIZE).expect("fits"),
        "titan_gate_orders_total counts every rejection of the flood"
    );
}
