//! Talking to GitHub: `repository_dispatch` events (through octocrab) and the errors they
//! can end in.
//!
//! Invariant: only this module talks to the GitHub API, and it is the only place that
//! holds a token ([`Token`]), which has no `Display` and a redacted `Debug`, so it can
//! reach no output, log, summary or metric by accident.
//!
//! Retries are ours, never octocrab's: the crate is built without its `retry` feature,
//! because a blind retry of a POST can send a dispatch twice. [`client::Client`] retries
//! only what is safe to retry (5xx, transport errors, rate limits), a bounded number of
//! times, and every retry of one dispatch carries the same
//! [`payload::ChainPayload::dispatch_id`] so a receiver can drop a duplicate.

pub mod app;
pub mod auth;
pub mod client;
pub mod comment;
pub mod payload;
pub mod runs;

use crate::support::exit::Exit;
use std::fmt;

/// Default API base: what `GITHUB_API_URL` holds on github.com.
pub const DEFAULT_API_URL: &str = "https://api.github.com";

/// The environment variable a token is read from when the manifest names none.
pub const DEFAULT_TOKEN_ENV: &str = "GITHUB_TOKEN";

/// A GitHub token. Never printed: `Debug` shows `Token(***)` and there is no `Display`.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    /// Wrap a token read from the environment (tests build one directly).
    #[cfg(test)]
    pub fn new(secret: String) -> Token {
        Token(secret)
    }

    /// Wrap a secret made here: an app's JWT or an installation token ([`app`]).
    pub(crate) fn from_secret(secret: String) -> Token {
        Token(secret)
    }

    /// Read the token from the environment: the variable `[chain] token-env` names (a PAT
    /// with cross-repo access), when set and non-empty; else `GITHUB_TOKEN`.
    ///
    /// Returns the token and the name of the variable it came from (safe to print).
    /// Errors: [`DispatchError::MissingToken`] when neither is set.
    pub fn from_env(manifest_var: Option<&str>) -> Result<(Token, String), DispatchError> {
        let mut tried = Vec::new();
        for var in manifest_var.into_iter().chain([DEFAULT_TOKEN_ENV]) {
            tried.push(var.to_owned());
            if let Ok(v) = std::env::var(var) {
                if !v.trim().is_empty() {
                    return Ok((Token(v.trim().to_owned()), var.to_owned()));
                }
            }
        }
        tried.dedup();
        Err(DispatchError::MissingToken { tried })
    }

    /// The secret itself, for octocrab's auth header only.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(***)")
    }
}

/// Why a dispatch failed. Each kind has its exit code ([`DispatchError::exit_code`]);
/// `cargo xtask chain` exits with the code of the first failed target:
///
/// | code | kind |
/// |---|---|
/// | 2 | no token in the environment, or unusable app settings (the run could not start) |
/// | 3 | 401: bad credentials; GitHub refused the app's JWT |
/// | 4 | 403/404: the token cannot reach the repo; the app is not installed on its owner |
/// | 5 | invalid dispatch: caught locally, or 422 from GitHub |
/// | 6 | rate limited for longer than `--max-wait` |
/// | 7 | 5xx or transport errors after every retry, or an unexpected status |
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// No token in the environment.
    #[error("no GitHub token: set {}", tried.join(" or "))]
    MissingToken {
        /// The variables that were looked at, in order.
        tried: Vec<String>,
    },
    /// `[chain] app-id-env` / `private-key-env` hold something unusable.
    #[error("GitHub App settings: {reason}")]
    AppConfig {
        /// What is wrong and what to set.
        reason: String,
    },
    /// The app has no installation that can see the repo (404 on its installation).
    #[error("{repo}: the GitHub App is not installed on {owner} or cannot see {repo}: install it on {owner} with `contents: write` and `actions: read` on the chain's repos")]
    NotInstalled {
        /// The owner (organisation or user).
        owner: String,
        /// Target `owner/name`.
        repo: String,
    },
    /// GitHub refused the app's JWT or its installation token request.
    #[error("{repo}: GitHub refused the GitHub App ({status}): {message}")]
    AppRejected {
        /// Target `owner/name`.
        repo: String,
        /// 401 or 403.
        status: u16,
        /// GitHub's message, or what to check.
        message: String,
    },
    /// 401 Unauthorized.
    #[error("{repo}: bad credentials (401): the token is invalid or expired; set a valid token (GITHUB_TOKEN or the variable [chain] token-env names)")]
    BadCredentials {
        /// Target `owner/name`.
        repo: String,
    },
    /// 403 or 404 without rate-limit signs: GitHub answers 404 for a private repo the
    /// token cannot see.
    #[error("{repo}: the token cannot reach this repository ({status}: {message}): it needs the `contents: write` permission on {repo} (a fine-grained PAT or app token; the workflow GITHUB_TOKEN only covers its own repo)")]
    NoAccess {
        /// Target `owner/name`.
        repo: String,
        /// 403 or 404.
        status: u16,
        /// GitHub's message.
        message: String,
    },
    /// 403 or 404 on reading workflow runs: the token cannot see the repo's Actions.
    #[error("{repo}: the token cannot read this repository's workflow runs ({status}: {message}): it needs `actions: read` on {repo} (a fine-grained PAT, or a GitHub App with that permission)")]
    CannotReadRuns {
        /// Target `owner/name`.
        repo: String,
        /// 403 or 404.
        status: u16,
        /// GitHub's message.
        message: String,
    },
    /// The dispatch breaks GitHub's rules: found locally, or a 422 from GitHub.
    #[error("{repo}: invalid dispatch: {reason}")]
    Invalid {
        /// Target `owner/name` (or repo name when caught locally).
        repo: String,
        /// What is wrong.
        reason: String,
    },
    /// 429, or 403 with rate-limit signs, asking to wait longer than `--max-wait`, or
    /// still answered on the last attempt.
    #[error("{repo}: rate limited ({status}) after {attempts} attempt(s): GitHub asks to wait {wait_secs}s (--max-wait is {max_wait_secs}s); retry later or raise --max-wait")]
    RateLimited {
        /// Target `owner/name`.
        repo: String,
        /// 429 or 403.
        status: u16,
        /// Seconds GitHub asked to wait (`Retry-After`, or until `x-ratelimit-reset`).
        wait_secs: u64,
        /// The bound (`--max-wait`).
        max_wait_secs: u64,
        /// Attempts made.
        attempts: u32,
    },
    /// Server errors on every attempt.
    #[error("{repo}: GitHub answered {status} on all {attempts} attempts; retry later (the dispatch may have gone through: receivers dedupe on dispatch_id)")]
    Server {
        /// Target `owner/name`.
        repo: String,
        /// The last status.
        status: u16,
        /// Attempts made.
        attempts: u32,
    },
    /// The request never got an answer (connection refused, timeout, TLS).
    #[error("{repo}: request failed on all {attempts} attempts: {message}; check the network and --api-url / GITHUB_API_URL")]
    Transport {
        /// Target `owner/name`.
        repo: String,
        /// The last error.
        message: String,
        /// Attempts made.
        attempts: u32,
    },
    /// A status this client does not expect from the dispatches endpoint.
    #[error("{repo}: unexpected answer {status}: {message}")]
    Unexpected {
        /// Target `owner/name`.
        repo: String,
        /// HTTP status.
        status: u16,
        /// GitHub's message.
        message: String,
    },
}

impl DispatchError {
    /// The process exit code for this kind (see the table on [`DispatchError`]).
    pub fn exit_code(&self) -> Exit {
        match self {
            DispatchError::MissingToken { .. } | DispatchError::AppConfig { .. } => {
                Exit::CouldNotRun
            }
            DispatchError::BadCredentials { .. } | DispatchError::AppRejected { .. } => {
                Exit::BadCredentials
            }
            DispatchError::NoAccess { .. }
            | DispatchError::NotInstalled { .. }
            | DispatchError::CannotReadRuns { .. } => Exit::NoAccess,
            DispatchError::Invalid { .. } => Exit::InvalidPayload,
            DispatchError::RateLimited { .. } => Exit::RateLimited,
            DispatchError::Server { .. }
            | DispatchError::Transport { .. }
            | DispatchError::Unexpected { .. } => Exit::Server,
        }
    }

    /// A short machine name for the kind (`--format json`).
    pub fn kind(&self) -> &'static str {
        match self {
            DispatchError::MissingToken { .. } => "missing-token",
            DispatchError::AppConfig { .. } => "app-config",
            DispatchError::NotInstalled { .. } => "not-installed",
            DispatchError::AppRejected { .. } => "app-rejected",
            DispatchError::BadCredentials { .. } => "bad-credentials",
            DispatchError::NoAccess { .. } | DispatchError::CannotReadRuns { .. } => "no-access",
            DispatchError::Invalid { .. } => "invalid",
            DispatchError::RateLimited { .. } => "rate-limited",
            DispatchError::Server { .. } => "server",
            DispatchError::Transport { .. } => "transport",
            DispatchError::Unexpected { .. } => "unexpected",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_never_formats() {
        let t = Token::new("ghp_secret_never_print".into());
        assert_eq!(format!("{t:?}"), "Token(***)");
    }
}
