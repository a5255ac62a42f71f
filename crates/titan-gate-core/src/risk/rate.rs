//! Order-rate limits: a token bucket per strategy and one for the whole gate, and the
//! detector that turns a sustained breach into a runaway trip.

use std::collections::HashMap;

/// A rate limit: tokens refill at `rate_per_s` up to `burst`, and each order takes one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    /// Orders per second admitted on average.
    pub rate_per_s: f64,
    /// Orders admitted at once after a quiet period: the bucket's capacity.
    pub burst: u32,
}

impl RateLimit {
    /// Returns the longest pause between two rejections that still counts as one breach:
    /// the time the bucket takes to refill two tokens, at least 1 ms. A sender over its
    /// limit finds the bucket empty again well within it, while a sender back under the
    /// limit stops being rejected and lets the gap pass.
    pub fn breach_gap_ms(&self) -> i64 {
        let gap = (2_000.0 / self.rate_per_s).ceil();
        if gap.is_finite() && gap < 1e15 {
            #[allow(clippy::cast_possible_truncation, reason = "checked finite and below 1e15 just above")]
            let gap = gap as i64;
            gap.max(1)
        } else {
            i64::MAX
        }
    }
}

/// A token bucket on a caller-supplied clock in milliseconds, full when created.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    limit: RateLimit,
    tokens: f64,
    updated_ms: i64,
}

impl TokenBucket {
    /// Creates a full bucket.
    pub fn new(limit: RateLimit, now_ms: i64) -> Self {
        Self { limit, tokens: f64::from(limit.burst), updated_ms: now_ms }
    }

    /// Adds the tokens earned since the last call. A clock that goes back earns nothing.
    fn refill(&mut self, now_ms: i64) {
        if now_ms <= self.updated_ms {
            return;
        }
        #[allow(clippy::cast_precision_loss, reason = "elapsed milliseconds stay far below 2^52")]
        let elapsed_ms = (now_ms - self.updated_ms) as f64;
        self.tokens = (self.tokens + elapsed_ms * self.limit.rate_per_s / 1_000.0).min(f64::from(self.limit.burst));
        self.updated_ms = now_ms;
    }

    /// Returns true when an order may take a token now.
    pub fn has_token(&mut self, now_ms: i64) -> bool {
        self.refill(now_ms);
        self.tokens >= 1.0
    }

    /// Takes one token; call only after [`TokenBucket::has_token`] returned true.
    pub fn take(&mut self) {
        self.tokens -= 1.0;
    }

    /// Returns true when the bucket contains its whole burst, so it is as good as a new one.
    pub fn is_full(&mut self, now_ms: i64) -> bool {
        self.refill(now_ms);
        self.tokens >= f64::from(self.limit.burst)
    }
}

/// Tracks one run of rate-limit rejections: rejections no further apart than a gap
/// belong to the same breach, and a breach lasting long enough is a runaway.
#[derive(Clone, Debug, Default)]
pub struct BreachDetector {
    started_ms: Option<i64>,
    last_rejection_ms: i64,
}

impl BreachDetector {
    /// Records a rejection at `now_ms` and returns how long the breach has lasted, in ms.
    /// A rejection more than `max_gap_ms` after the previous one starts a new breach.
    pub fn record_rejection(&mut self, now_ms: i64, max_gap_ms: i64) -> i64 {
        let started = match self.started_ms {
            Some(started) if now_ms.saturating_sub(self.last_rejection_ms) <= max_gap_ms => started,
            _ => now_ms,
        };
        self.started_ms = Some(started);
        self.last_rejection_ms = now_ms;
        now_ms.saturating_sub(started)
    }

    /// Returns true while a breach may still continue at `now_ms`.
    pub fn is_active(&self, now_ms: i64, max_gap_ms: i64) -> bool {
        self.started_ms.is_some() && now_ms.saturating_sub(self.last_rejection_ms) <= max_gap_ms
    }

    /// Forgets the breach, so the next rejection starts a new one.
    pub fn reset(&mut self) {
        self.started_ms = None;
    }
}

/// The rate limits of one gate replica. `None` turns a limit off.
#[derive(Clone, Debug, PartialEq)]
pub struct RateSettings {
    /// The limit of each strategy.
    pub strategy: Option<RateLimit>,
    /// The limit of all orders together.
    pub global: Option<RateLimit>,
    /// How long a strategy's breach must last before it counts as a runaway; `None`
    /// rejects over-limit orders without ever tripping.
    pub runaway_trip_ms: Option<i64>,
    /// The maximum number of strategies tracked at once.
    pub max_strategies: usize,
}

/// The limit that rejected an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitedBy {
    /// The strategy's own bucket is empty.
    Strategy,
    /// The gate-wide bucket is empty.
    Global,
    /// The strategy table is full of strategies still inside a burst or breach, so a new
    /// strategy cannot be tracked and is rejected rather than admitted unlimited.
    StrategyTableFull,
}

/// The outcome of [`RateLimiter::check`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateVerdict {
    /// Under every limit; the order took its tokens.
    Admit,
    /// Over a limit: reject the order `rate_limited` now.
    Limited {
        /// The limit that applied.
        by: LimitedBy,
        /// True when the strategy's breach has lasted `runaway_trip_ms`; the breach is
        /// forgotten, so the next trip needs a new sustained breach.
        runaway: bool,
    },
}

/// One strategy's bucket and breach.
#[derive(Clone, Debug)]
struct StrategyRate {
    bucket: TokenBucket,
    breach: BreachDetector,
}

/// Token buckets per strategy and for the whole gate, with runaway detection.
#[derive(Clone, Debug)]
pub struct RateLimiter {
    settings: RateSettings,
    global: Option<TokenBucket>,
    strategies: HashMap<String, StrategyRate>,
}

impl RateLimiter {
    /// Creates a limiter with full buckets.
    pub fn new(settings: RateSettings, now_ms: i64) -> Self {
        let global = settings.global.map(|limit| TokenBucket::new(limit, now_ms));
        Self { settings, global, strategies: HashMap::new() }
    }

    /// Returns true when no limit is configured, so callers can skip the check.
    pub fn is_off(&self) -> bool {
        self.settings.strategy.is_none() && self.settings.global.is_none()
    }

    /// Returns the number of strategies tracked.
    pub fn strategy_count(&self) -> usize {
        self.strategies.len()
    }

    /// Checks one order of `strategy` at `now_ms` and takes its tokens when it is under
    /// every limit. An order over a limit takes nothing, so a rejection never uses up
    /// the allowance of a later order.
    pub fn check(&mut self, strategy: &str, now_ms: i64) -> RateVerdict {
        let Some(limit) = self.settings.strategy else {
            return self.check_global(now_ms, None);
        };
        if !self.strategies.contains_key(strategy) && !self.make_room(now_ms) {
            return RateVerdict::Limited { by: LimitedBy::StrategyTableFull, runaway: false };
        }
        let entry = self.strategies.entry(strategy.to_owned()).or_insert_with(|| StrategyRate {
            bucket: TokenBucket::new(limit, now_ms),
            breach: BreachDetector::default(),
        });
        if !entry.bucket.has_token(now_ms) {
            let lasted_ms = entry.breach.record_rejection(now_ms, limit.breach_gap_ms());
            let runaway = self.settings.runaway_trip_ms.is_some_and(|trip_ms| lasted_ms >= trip_ms);
            if runaway {
                entry.breach.reset();
            }
            return RateVerdict::Limited { by: LimitedBy::Strategy, runaway };
        }
        self.check_global(now_ms, Some(strategy))
    }

    /// Checks the global bucket, then takes the tokens of both buckets.
    fn check_global(&mut self, now_ms: i64, strategy: Option<&str>) -> RateVerdict {
        if let Some(global) = &mut self.global {
            if !global.has_token(now_ms) {
                return RateVerdict::Limited { by: LimitedBy::Global, runaway: false };
            }
            global.take();
        }
        if let Some(entry) = strategy.and_then(|strategy| self.strategies.get_mut(strategy)) {
            entry.bucket.take();
        }
        RateVerdict::Admit
    }

    /// Makes room for one more strategy when the table is full, by dropping every
    /// strategy whose bucket is full and whose breach is over: a new bucket would behave
    /// the same. Returns false when nothing could be dropped.
    fn make_room(&mut self, now_ms: i64) -> bool {
        if self.strategies.len() < self.settings.max_strategies {
            return true;
        }
        let gap_ms = self.settings.strategy.map_or(0, |limit| limit.breach_gap_ms());
        self.strategies.retain(|_, entry| !entry.bucket.is_full(now_ms) || entry.breach.is_active(now_ms, gap_ms));
        self.strategies.len() < self.settings.max_strategies
    }
}
