//! The inbound rate limit of a connection: a token bucket, refilled continuously.

use std::time::Instant;

use crate::config::RateLimit;

/// A token bucket: `burst` tokens at most, `per_second` added per second, one per message.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    per_second: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(limit: &RateLimit, now: Instant) -> TokenBucket {
        TokenBucket { per_second: limit.per_second, burst: limit.burst, tokens: limit.burst, last: now }
    }

    /// Takes a token for a message arriving at `now`; false when the bucket is empty.
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RateLimitPolicy;
    use std::time::Duration;

    #[test]
    fn allows_a_burst_then_the_rate() {
        let limit = RateLimit { per_second: 10.0, burst: 3.0, policy: RateLimitPolicy::Close };
        let start = Instant::now();
        let mut bucket = TokenBucket::new(&limit, start);
        assert!((0..3).all(|_| bucket.take(start)), "the burst passes");
        assert!(!bucket.take(start), "then the bucket is empty");
        assert!(!bucket.take(start + Duration::from_millis(50)), "half a token is not enough");
        assert!(bucket.take(start + Duration::from_millis(110)), "one token after 100 ms");
        // A long pause refills to the burst, not beyond.
        let later = start + Duration::from_secs(60);
        assert!((0..3).all(|_| bucket.take(later)));
        assert!(!bucket.take(later));
    }
}
