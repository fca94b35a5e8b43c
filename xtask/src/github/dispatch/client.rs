//! The octocrab client that sends `repository_dispatch` events, with our own bounded
//! retry policy (octocrab's is compiled out: see the module docs of [`super`]).
//!
//! What is retried, per the GitHub REST docs ("Rate limits for the REST API", "Create a
//! repository dispatch event"):
//! - 5xx and transport errors: up to [`RetryPolicy::attempts`] attempts in all, waiting
//!   `base_delay * 2^(n-1)` (capped at `max_wait`) before attempt n+1;
//! - 429, and 403 that carries rate-limit signs (`retry-after`,
//!   `x-ratelimit-remaining: 0`, or a message saying "rate limit"): wait `retry-after` seconds, else until
//!   `x-ratelimit-reset`, else one minute, if that is at most `max_wait`; otherwise fail
//!   at once with [`DispatchError::RateLimited`].
//!
//! Never retried: 204 (done), 401, other 403, 404, 422 and any other status.

use std::time::Duration;

use octocrab::Octocrab;

use super::{DispatchError, Token};

/// How hard to try one dispatch.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, at least 1.
    pub attempts: u32,
    /// Backoff before the second attempt; doubles after each failure.
    pub base_delay: Duration,
    /// The longest single wait, for backoff and rate limits alike.
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            base_delay: Duration::from_secs(1),
            max_wait: Duration::from_secs(60),
        }
    }
}

/// A GitHub REST client for dispatches.
pub struct Client {
    octo: Octocrab,
    policy: RetryPolicy,
}

/// Media type GitHub recommends for REST requests (sent as `Accept`).
pub const ACCEPT: &str = "application/vnd.github+json";

impl Client {
    /// A client for the API at `api_url` (e.g. `https://api.github.com`, a GitHub
    /// Enterprise `https://HOST/api/v3`, or a test server on 127.0.0.1).
    ///
    /// Requests carry `Authorization: Bearer <token>`, `Accept: application/vnd.github+json`,
    /// `X-GitHub-Api-Version: 2022-11-28` and `User-Agent: octocrab`.
    pub fn new(api_url: &str, token: &Token, policy: RetryPolicy) -> anyhow::Result<Client> {
        use anyhow::Context;
        let octo = Octocrab::builder()
            .base_uri(api_url)
            .with_context(|| {
                format!("invalid API URL `{api_url}`: pass --api-url https://HOST[/api/v3]")
            })?
            .personal_token(token.expose().to_owned())
            .add_header(http::header::ACCEPT, ACCEPT.to_owned())
            .set_connect_timeout(Some(Duration::from_secs(10)))
            .set_read_timeout(Some(Duration::from_secs(30)))
            .build()
            .context("build the GitHub client")?;
        Ok(Client {
            octo,
            policy: RetryPolicy {
                attempts: policy.attempts.max(1),
                ..policy
            },
        })
    }

    /// Send one `repository_dispatch` to `github` (`owner/name`): `POST
    /// /repos/{owner}/{repo}/dispatches` with `{event_type, client_payload}`, expecting
    /// 204. Returns the number of attempts it took.
    ///
    /// The payload must already be validated ([`super::payload::validate`]).
    pub async fn dispatch(
        &self,
        github: &str,
        event_type: &str,
        payload: &serde_json::Value,
    ) -> Result<u32, DispatchError> {
        let (owner, name) = github.split_once('/').unwrap_or((github, ""));
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last = attempt >= self.policy.attempts;
            let res = self
                .octo
                .repos(owner, name)
                .create_dispatch(event_type)
                .client_payload(payload.clone())
                .send()
                .await;
            let wait = match res {
                Ok(()) => return Ok(attempt),
                Err(octocrab::Error::GitHub { source, .. }) => {
                    self.after_status(github, &source, attempt, last)?
                }
                Err(_) if !last => self.backoff(attempt),
                Err(e) => {
                    return Err(DispatchError::Transport {
                        repo: github.to_owned(),
                        message: transport_message(&e),
                        attempts: attempt,
                    })
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// What to do after GitHub answered attempt `attempt` with an error status: how long to
    /// wait before the next attempt, or the error to return (see the module docs for
    /// which statuses are retried).
    fn after_status(
        &self,
        github: &str,
        source: &octocrab::GitHubError,
        attempt: u32,
        last: bool,
    ) -> Result<Duration, DispatchError> {
        let status = source.status_code.as_u16();
        let repo = github.to_owned();
        if let Some(wait_secs) = rate_limit_wait(source) {
            if wait_secs > self.policy.max_wait.as_secs() || last {
                return Err(DispatchError::RateLimited {
                    repo,
                    status,
                    wait_secs,
                    max_wait_secs: self.policy.max_wait.as_secs(),
                    attempts: attempt,
                });
            }
            return Ok(Duration::from_secs(wait_secs));
        }
        let message = source.message.clone();
        Err(match status {
            500..=599 if !last => return Ok(self.backoff(attempt)),
            401 => DispatchError::BadCredentials { repo },
            403 | 404 => DispatchError::NoAccess {
                repo,
                status,
                message,
            },
            422 => DispatchError::Invalid {
                repo,
                reason: format!("GitHub answered 422: {message}"),
            },
            500..=599 => DispatchError::Server {
                repo,
                status,
                attempts: attempt,
            },
            _ => DispatchError::Unexpected {
                repo,
                status,
                message,
            },
        })
    }

    /// The octocrab client, for the other REST calls of this module (PR comments).
    pub(crate) fn octocrab(&self) -> &Octocrab {
        &self.octo
    }

    /// `base_delay * 2^(attempt-1)`, capped at `max_wait`.
    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.policy
            .base_delay
            .saturating_mul(factor)
            .min(self.policy.max_wait)
    }
}

/// When the answer is a rate limit (429, or 403 with `retry-after`,
/// `x-ratelimit-remaining: 0` or a message saying "rate limit"), the seconds to wait:
/// `retry-after`, else until `x-ratelimit-reset`, else one minute. `None` otherwise.
fn rate_limit_wait(source: &octocrab::GitHubError) -> Option<u64> {
    let status = source.status_code.as_u16();
    let header = |n: &str| {
        source
            .headers
            .as_ref()
            .and_then(|h| h.get(n))
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .map(str::to_owned)
    };
    let retry_after = header("retry-after").and_then(|v| v.parse::<u64>().ok());
    let remaining = header("x-ratelimit-remaining");
    let reset = header("x-ratelimit-reset").and_then(|v| v.parse::<u64>().ok());
    let rate_limited = status == 429
        || (status == 403
            && (retry_after.is_some()
                || remaining.as_deref() == Some("0")
                || source.message.to_lowercase().contains("rate limit")));
    rate_limited.then(|| {
        retry_after
            .or_else(|| reset.map(|r| r.saturating_sub(crate::support::time::now_unix())))
            .unwrap_or(60)
    })
}

/// The error and its causes on one line (octocrab's `Display` alone hides the cause).
fn transport_message(e: &octocrab::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(c) = cur {
        let s = c.to_string();
        if !parts.contains(&s) {
            parts.push(s);
        }
        cur = c.source();
    }
    parts.join(": ")
}
