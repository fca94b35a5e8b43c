//! How long to wait between polls of GitHub while following a chain: a backoff that
//! starts at `--poll-ms`, doubles while nothing changes (up to eight times that), drops
//! back when something does, and is stretched to stay inside the REST rate limit the last
//! answer stated (`x-ratelimit-remaining`, `x-ratelimit-reset`; GitHub docs, "Rate limits
//! for the REST API": a client should wait for the reset rather than run into a 403).
//! Pure: the clock is an argument.

use std::time::Duration;

use crate::github::dispatch::client::Budget;

/// The longest backoff is this many times the first interval.
pub const MAX_FACTOR: u32 = 8;

/// The backoff state of one follower.
#[derive(Debug, Clone)]
pub struct Pacer {
    base: Duration,
    max: Duration,
    current: Option<Duration>,
}

impl Pacer {
    /// A pacer starting at `base` between polls.
    pub fn new(base: Duration) -> Pacer {
        Pacer {
            base,
            max: base.saturating_mul(MAX_FACTOR),
            current: None,
        }
    }

    /// The wait before the next round of `per_round` requests, after a round in which
    /// something `changed` (or not), given the last `budget` stated at `now` (Unix
    /// seconds). With it, why the wait is longer than the backoff, when the rate limit
    /// made it so:
    ///
    /// - fewer requests left than a round needs: wait for the reset (plus a second);
    /// - else at least `seconds to reset × per_round / remaining`, so the rounds until the
    ///   reset fit in what is left.
    pub fn next(
        &mut self,
        changed: bool,
        budget: Option<Budget>,
        per_round: u64,
        now: u64,
    ) -> (Duration, Option<String>) {
        let backoff = match self.current {
            Some(c) if !changed => c.saturating_mul(2).min(self.max),
            _ => self.base,
        };
        self.current = Some(backoff);
        let Some(b) = budget else {
            return (backoff, None);
        };
        let window = b.reset_unix.saturating_sub(now).max(1);
        let per_round = per_round.max(1);
        if b.remaining < per_round {
            let wait = Duration::from_secs(window + 1);
            return (
                wait.max(backoff),
                Some(format!(
                    "GitHub rate limit: {} request(s) left, waiting {}s for the reset",
                    b.remaining,
                    window + 1
                )),
            );
        }
        let spread = Duration::from_secs_f64(window as f64 * per_round as f64 / b.remaining as f64);
        if spread > backoff {
            let why = format!(
                "GitHub rate limit: {} request(s) left until the reset in {window}s, polling every {:.1}s",
                b.remaining,
                spread.as_secs_f64()
            );
            return (spread, Some(why));
        }
        (backoff, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_while_nothing_changes_up_to_the_cap_and_resets_on_change() {
        let mut p = Pacer::new(Duration::from_secs(10));
        let secs = |p: &mut Pacer, changed| p.next(changed, None, 1, 0).0.as_secs();
        assert_eq!(secs(&mut p, false), 10);
        assert_eq!(secs(&mut p, false), 20);
        assert_eq!(secs(&mut p, false), 40);
        assert_eq!(secs(&mut p, false), 80);
        assert_eq!(secs(&mut p, false), 80);
        assert_eq!(secs(&mut p, true), 10);
        assert_eq!(secs(&mut p, false), 20);
    }

    #[test]
    fn an_exhausted_budget_waits_for_the_reset() {
        let mut p = Pacer::new(Duration::from_millis(10));
        let b = Budget {
            remaining: 2,
            reset_unix: 1_030,
        };
        let (wait, why) = p.next(true, Some(b), 3, 1_000);
        assert_eq!(wait, Duration::from_secs(31));
        assert!(why.unwrap().contains("2 request(s) left, waiting 31s"));
        // A reset already past still waits a moment rather than hammering.
        let (wait, _) = p.next(
            true,
            Some(Budget {
                remaining: 0,
                reset_unix: 900,
            }),
            1,
            1_000,
        );
        assert_eq!(wait, Duration::from_secs(2));
    }

    #[test]
    fn a_low_budget_spreads_the_rounds_until_the_reset() {
        let mut p = Pacer::new(Duration::from_secs(1));
        let b = Budget {
            remaining: 30,
            reset_unix: 1_600,
        };
        // 600 s to the reset, 3 requests a round, 30 left: a round every 60 s.
        let (wait, why) = p.next(true, Some(b), 3, 1_000);
        assert_eq!(wait, Duration::from_secs(60));
        assert!(why.unwrap().contains("polling every 60.0s"));
        // A generous budget leaves the backoff alone.
        let b = Budget {
            remaining: 4_000,
            reset_unix: 1_600,
        };
        assert_eq!(
            p.next(true, Some(b), 3, 1_000),
            (Duration::from_secs(1), None)
        );
    }
}
