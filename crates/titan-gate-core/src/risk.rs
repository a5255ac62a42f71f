//! The pure logic of the gate's automatic risk controls: the dead-man switch's silence
//! monitor, the order-rate token buckets with runaway detection, and the security
//! breaker's failure window. Every function takes the clock as a parameter.

pub mod failures;
pub mod heartbeat;
pub mod rate;

pub use failures::FailureWindow;
pub use heartbeat::{HEARTBEAT_SUBJECT, HeartbeatError, SilenceMonitor, SilenceReport, heartbeat_source};
pub use rate::{BreachDetector, LimitedBy, RateLimit, RateLimiter, RateSettings, RateVerdict, TokenBucket};

/// The reason prefix of a dead-man trip; the silent source follows the colon.
pub const HEARTBEAT_LOST: &str = "HEARTBEAT_LOST";
/// The reason of a runaway strategy's trip.
pub const RUNAWAY_ALGO: &str = "RUNAWAY_ALGO";
/// The reason of the security breaker's trip.
pub const SECURITY: &str = "SECURITY";

#[cfg(test)]
mod tests;
