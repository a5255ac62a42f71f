//! The security breaker's count: signature failures inside a sliding time window.

use std::collections::VecDeque;

/// Remembers the times of the last `max_failures + 1` failures, which is all it needs to
/// tell whether more than `max_failures` fell inside the window, so its memory is bounded.
#[derive(Clone, Debug)]
pub struct FailureWindow {
    max_failures: usize,
    window_ms: i64,
    times_ms: VecDeque<i64>,
}

impl FailureWindow {
    /// Creates an empty window that trips on more than `max_failures` failures inside
    /// `window_ms` milliseconds.
    pub fn new(max_failures: usize, window_ms: i64) -> Self {
        Self { max_failures, window_ms, times_ms: VecDeque::with_capacity(max_failures.saturating_add(1).min(4_096)) }
    }

    /// Records a failure at `now_ms`. Returns true when it is one more than
    /// `max_failures` inside the window. The window then starts empty again, so the next
    /// trip needs a new run of failures.
    pub fn record(&mut self, now_ms: i64) -> bool {
        let oldest_kept = now_ms.saturating_sub(self.window_ms);
        while self.times_ms.front().is_some_and(|&time| time <= oldest_kept) {
            self.times_ms.pop_front();
        }
        self.times_ms.push_back(now_ms);
        if self.times_ms.len() > self.max_failures {
            self.times_ms.clear();
            return true;
        }
        false
    }

    /// Returns the failures inside the window ending at `now_ms`.
    pub fn count(&self, now_ms: i64) -> usize {
        let oldest_kept = now_ms.saturating_sub(self.window_ms);
        self.times_ms.iter().filter(|&&time| time > oldest_kept).count()
    }
}
