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
//! Never retried: any 2xx (done: GitHub answers 204, but a 200 or 202 from a proxy or a
//! GitHub Enterprise server is the same success), 401, other 403, 404, 422 and any other
//! status.
//!
//! The request goes through octocrab's raw `_post` and the answer is judged here, never
//! by octocrab's `create_dispatch`, which treats any status but 204 as an error and
//! panics on a 2xx (`map_github_error(..).unwrap_err()`): a 200 used to end `chain` with
//! exit 101 before the remaining targets were tried. The answer's body is read for its
//! `message` only, at most [`MAX_ANSWER_BYTES`], and what is shown of it is cut and
//! stripped of control characters and of the token (an answer is untrusted input).

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
    /// Kept to redact it from any answer shown (a hostile server may echo it).
    token: Token,
}

/// The most of an error answer's body read, in bytes; the rest is not read.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The most characters of an answer's message shown.
const MAX_MESSAGE_CHARS: usize = 300;

/// The most of a 2xx answer's body read, in bytes (a page of 100 workflow runs is about
/// 0.5 MB); a longer body is not read and the reply is marked incomplete.
pub const MAX_REPLY_BYTES: usize = 8 * 1024 * 1024;

/// A 2xx answer to [`Client::request`].
#[derive(Debug)]
pub struct Reply {
    /// HTTP status (2xx).
    pub status: u16,
    /// Response headers (the rate-limit budget: [`Budget::from_headers`]).
    pub headers: http::HeaderMap,
    /// The body, empty when it could not be read whole.
    pub body: Vec<u8>,
    /// Whether the body was read whole.
    pub complete: bool,
    /// Attempts it took.
    pub attempts: u32,
}

/// What is left of the REST rate limit, from an answer's `x-ratelimit-remaining` and
/// `x-ratelimit-reset` headers (GitHub docs, "Rate limits for the REST API": the
/// requests left in the current window and when it resets, in Unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Requests left in the current window.
    pub remaining: u64,
    /// When the window resets, Unix seconds.
    pub reset_unix: u64,
}

impl Budget {
    /// The budget an answer's headers state, or `None` when it states none (a proxy, a
    /// server without rate limits) or states it in a form that does not parse.
    pub fn from_headers(headers: &http::HeaderMap) -> Option<Budget> {
        let num = |n: &str| {
            headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        Some(Budget {
            remaining: num("x-ratelimit-remaining")?,
            reset_unix: num("x-ratelimit-reset")?,
        })
    }
}

/// A non-2xx answer, as far as it is needed to decide what to do.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    headers: http::HeaderMap,
    /// GitHub's `message`, else the body's text, else the status's reason; cleaned.
    message: String,
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
            token: token.clone(),
        })
    }

    /// Send one `repository_dispatch` to `github` (`owner/name`): `POST
    /// /repos/{owner}/{repo}/dispatches` with `{event_type, client_payload}`. Any 2xx
    /// answer is success (GitHub's is 204). Returns the number of attempts it took.
    ///
    /// The payload must already be validated ([`super::payload::validate`]).
    pub async fn dispatch(
        &self,
        github: &str,
        event_type: &str,
        payload: &serde_json::Value,
    ) -> Result<u32, DispatchError> {
        let route = format!("/repos/{github}/dispatches");
        let body = serde_json::json!({ "event_type": event_type, "client_payload": payload });
        let reply = self
            .request(github, http::Method::POST, &route, Some(&body))
            .await?;
        Ok(reply.attempts)
    }

    /// One REST call on behalf of `github` (`owner/name`, named in errors): `method` on
    /// `route` (a path under the API base, with its query), with a JSON `body` if any,
    /// retried as the module docs say. Returns the 2xx answer with its headers and at
    /// most [`MAX_REPLY_BYTES`] of its body (a longer or unreadable body is left empty
    /// and marked, so a parse of it fails rather than reading a prefix).
    ///
    /// Errors: the [`DispatchError`] of the last answer or transport failure.
    pub async fn request(
        &self,
        github: &str,
        method: http::Method,
        route: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Reply, DispatchError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last = attempt >= self.policy.attempts;
            let request = http::Request::builder().method(method.clone()).uri(route);
            let res = match self.octo.build_request(request, body) {
                Ok(r) => self.octo.execute(r).await,
                Err(e) => Err(e),
            };
            let wait = match res {
                Ok(r) if r.status().is_success() => return Ok(self.reply(r, attempt).await),
                Ok(r) => {
                    let answer = self.answer(r).await;
                    self.after_status(github, &answer, attempt, last)?
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

    /// Read a 2xx answer (see [`Client::request`]).
    async fn reply(
        &self,
        r: http::Response<
            http_body_util::combinators::BoxBody<hyper::body::Bytes, octocrab::Error>,
        >,
        attempts: u32,
    ) -> Reply {
        use http_body_util::BodyExt;
        let (parts, body) = r.into_parts();
        let read = http_body_util::Limited::new(body, MAX_REPLY_BYTES)
            .collect()
            .await
            .map(|c| c.to_bytes().to_vec());
        Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            complete: read.is_ok(),
            body: read.unwrap_or_default(),
            attempts,
        }
    }

    /// Parse a reply's body as `T`, for `github` (`what` names the call in the error).
    ///
    /// Errors: [`DispatchError::Unexpected`] when the body was cut, is not JSON or has
    /// another shape; the message is cleaned like an error answer's.
    pub fn parse<T: serde::de::DeserializeOwned>(
        &self,
        github: &str,
        what: &str,
        reply: &Reply,
    ) -> Result<T, DispatchError> {
        let unexpected = |message: String| DispatchError::Unexpected {
            repo: github.to_owned(),
            status: reply.status,
            message: clean_message(&message, self.token.expose()),
        };
        if !reply.complete {
            return Err(unexpected(format!(
                "the answer to {what} could not be read whole (at most {MAX_REPLY_BYTES} bytes)"
            )));
        }
        // What is parsed may be shown (run links, job names): a server that echoes the
        // token gets it replaced, like an error answer's message.
        let body = redact(&reply.body, self.token.expose());
        serde_json::from_slice(&body).map_err(|e| {
            unexpected(format!(
                "the answer to {what} is not what GitHub sends: {e}"
            ))
        })
    }

    /// What to do after GitHub answered attempt `attempt` with an error status: how long to
    /// wait before the next attempt, or the error to return (see the module docs for
    /// which statuses are retried).
    fn after_status(
        &self,
        github: &str,
        source: &Answer,
        attempt: u32,
        last: bool,
    ) -> Result<Duration, DispatchError> {
        let status = source.status;
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

    /// Read a non-2xx answer: its status, headers and message (see the module docs). A
    /// body that cannot be read leaves the status's reason as the message.
    async fn answer(
        &self,
        r: http::Response<
            http_body_util::combinators::BoxBody<hyper::body::Bytes, octocrab::Error>,
        >,
    ) -> Answer {
        use http_body_util::BodyExt;
        let (parts, body) = r.into_parts();
        let bytes = http_body_util::Limited::new(body, MAX_ANSWER_BYTES)
            .collect()
            .await
            .map(|c| c.to_bytes().to_vec())
            .unwrap_or_default();
        let reason = parts.status.canonical_reason().unwrap_or("no reason given");
        Answer {
            status: parts.status.as_u16(),
            headers: parts.headers,
            message: answer_message(&bytes, reason, self.token.expose()),
        }
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
fn rate_limit_wait(source: &Answer) -> Option<u64> {
    let status = source.status;
    let header = |n: &str| {
        source
            .headers
            .get(n)
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

/// What an error answer says, for people: GitHub's JSON `message`, else the body's text,
/// else `reason`; the `token` replaced by `***`, control characters by spaces, at most
/// [`MAX_MESSAGE_CHARS`] characters.
fn answer_message(body: &[u8], reason: &str, token: &str) -> String {
    #[derive(serde::Deserialize)]
    struct GitHubError {
        message: Option<String>,
    }
    let text = match serde_json::from_slice::<GitHubError>(body) {
        Ok(GitHubError { message: Some(m) }) => m,
        _ => String::from_utf8_lossy(body).trim().to_owned(),
    };
    let text = if text.trim().is_empty() {
        reason.to_owned()
    } else {
        text
    };
    clean_message(&text, token)
}

/// Text from the server (or about it) made safe to show: the `token` replaced by `***`,
/// control characters by spaces, at most [`MAX_MESSAGE_CHARS`] characters.
pub(crate) fn clean_message(text: &str, token: &str) -> String {
    let text = if token.len() >= 4 {
        text.replace(token, "***")
    } else {
        text.to_owned()
    };
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_MESSAGE_CHARS)
        .collect();
    if text.chars().count() > MAX_MESSAGE_CHARS {
        out.push('…');
    }
    out
}

/// `body` with every occurrence of `token` (at least 4 bytes) replaced by `***`.
fn redact(body: &[u8], token: &str) -> Vec<u8> {
    let t = token.as_bytes();
    if t.len() < 4 || !body.windows(t.len()).any(|w| w == t) {
        return body.to_vec();
    }
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        if body[i..].starts_with(t) {
            out.extend_from_slice(b"***");
            i += t.len();
        } else {
            out.push(body[i]);
            i += 1;
        }
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parsed_body_never_holds_the_token() {
        let tok = "ghp_secretTOKEN123";
        let body = format!(r#"{{"html_url": "https://x/{tok}/{tok}"}}"#);
        assert_eq!(
            redact(body.as_bytes(), tok),
            br#"{"html_url": "https://x/***/***"}"#.to_vec()
        );
        assert_eq!(redact(b"abcd", "abcd"), b"***".to_vec());
        assert_eq!(redact(b"abc", ""), b"abc".to_vec());
    }

    #[test]
    fn an_answer_is_cut_cleaned_and_never_shows_the_token() {
        let tok = "ghp_secretTOKEN123";
        assert_eq!(
            answer_message(br#"{"message": "Not Found"}"#, "Not Found", tok),
            "Not Found"
        );
        assert_eq!(answer_message(b"", "Bad Gateway", tok), "Bad Gateway");
        let echoed = format!("you sent Bearer {tok}\n\x1b[31mred");
        let m = answer_message(echoed.as_bytes(), "x", tok);
        assert!(
            !m.contains(tok) && !m.contains('\n') && !m.contains('\x1b'),
            "{m}"
        );
        let long = "x".repeat(10_000);
        assert_eq!(
            answer_message(long.as_bytes(), "x", tok).chars().count(),
            MAX_MESSAGE_CHARS + 1
        );
    }
}
