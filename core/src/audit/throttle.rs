//! The batch throttle: a token bucket on the caller's clock
//! (`--audit-webhook-batch-throttle-qps` / `-burst`).

use std::time::{Duration, Instant};

/// A token bucket driven by the caller's clock.
#[derive(Debug)]
pub(super) struct Throttle {
    pub(super) qps: f64,
    pub(super) burst: f64,
    pub(super) tokens: f64,
    pub(super) last: Option<Instant>,
}

impl Throttle {
    pub(super) fn refill(&mut self, now: Instant) {
        if let Some(last) = self.last {
            let dt = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + dt * self.qps).min(self.burst);
        }
        self.last = Some(now);
    }

    /// When a token is available (`now` or later).
    pub(super) fn ready_at(&self, now: Instant) -> Instant {
        if self.qps <= 0.0 {
            return now;
        }
        let tokens = match self.last {
            Some(last) => {
                let dt = now.saturating_duration_since(last).as_secs_f64();
                (self.tokens + dt * self.qps).min(self.burst)
            }
            None => self.tokens,
        };
        if tokens >= 1.0 - 1e-9 {
            return now;
        }
        let wait = Duration::try_from_secs_f64((1.0 - tokens) / self.qps).unwrap_or(Duration::MAX);
        super::disk::later(now, wait)
    }

    pub(super) fn take(&mut self, now: Instant) {
        if self.qps > 0.0 {
            self.refill(now);
            self.tokens = (self.tokens - 1.0).max(0.0);
        }
    }
}
