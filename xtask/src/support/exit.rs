//! The exit codes of every command, in one type. README's "Exit codes" paragraphs list
//! the same values; `tests/it/layers.rs` checks that no production code outside this
//! file makes an `ExitCode` from a bare number.
//!
//! Owns no policy: which outcome maps to which code is decided by the command.

use std::process::ExitCode;

/// What a command's exit code says. The values are part of the interface (scripts and
/// workflows branch on them) and never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: success (`ci`: every repo passed or was cached; `chain status`: finished green).
    Ok,
    /// 1: a repo failed (a step failed or timed out, or it could not be resolved); for
    /// `chain status` and a release walk, a run failed or a released crate was yanked; for
    /// checks (`workflows --check`, `cache verify`, `stress`, `mutants`), a check failed.
    Failed,
    /// 2: the run could not start (manifest error, missing checkout, cycle, bad flags, a
    /// fatal preflight problem, no GitHub token), or stopped on an internal error.
    CouldNotRun,
    /// 3: GitHub rejected the credentials (401).
    BadCredentials,
    /// 4: the token cannot reach the repo (403/404), or the GitHub App is not installed.
    NoAccess,
    /// 5: an invalid `client_payload` (caught locally, or 422).
    InvalidPayload,
    /// 6: rate limited past `--max-wait`.
    RateLimited,
    /// 7: server or network errors after bounded retries, or an unexpected answer.
    Server,
    /// 8: not finished (a chain's runs still running, or a wait gave up at its timeout).
    NotFinished,
    /// 128 + the signal number: stopped by SIGINT (130) or SIGTERM (143), as shells
    /// report a process killed by a signal.
    Signal(i32),
}

impl Exit {
    /// The numeric code, 0 to 255 (a signal number past 127 saturates at 255).
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Failed => 1,
            Exit::CouldNotRun => 2,
            Exit::BadCredentials => 3,
            Exit::NoAccess => 4,
            Exit::InvalidPayload => 5,
            Exit::RateLimited => 6,
            Exit::Server => 7,
            Exit::NotFinished => 8,
            Exit::Signal(sig) => u8::try_from(128 + sig).unwrap_or(255),
        }
    }

    /// [`Exit::Ok`] when `ok`, else [`Exit::Failed`]: the common "did every check pass".
    pub fn ok_or_failed(ok: bool) -> Exit {
        if ok {
            Exit::Ok
        } else {
            Exit::Failed
        }
    }

    /// The code of a value returned by [`Exit::code`] (for codes carried as numbers in
    /// JSON reports); an unknown number is [`Exit::Failed`] unless it is 0.
    pub fn from_code(code: u8) -> Exit {
        match code {
            0 => Exit::Ok,
            1 => Exit::Failed,
            2 => Exit::CouldNotRun,
            3 => Exit::BadCredentials,
            4 => Exit::NoAccess,
            5 => Exit::InvalidPayload,
            6 => Exit::RateLimited,
            7 => Exit::Server,
            8 => Exit::NotFinished,
            n if n > 128 => Exit::Signal(i32::from(n) - 128),
            _ => Exit::Failed,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_documented_values_and_round_trip() {
        let all = [
            (Exit::Ok, 0),
            (Exit::Failed, 1),
            (Exit::CouldNotRun, 2),
            (Exit::BadCredentials, 3),
            (Exit::NoAccess, 4),
            (Exit::InvalidPayload, 5),
            (Exit::RateLimited, 6),
            (Exit::Server, 7),
            (Exit::NotFinished, 8),
            (Exit::Signal(2), 130),
            (Exit::Signal(15), 143),
        ];
        for (e, code) in all {
            assert_eq!(e.code(), code, "{e:?}");
            assert_eq!(Exit::from_code(code), e);
        }
        assert_eq!(Exit::Signal(200).code(), 255);
        assert_eq!(Exit::ok_or_failed(true), Exit::Ok);
        assert_eq!(Exit::ok_or_failed(false), Exit::Failed);
    }
}
