//! Waiting for a released crate version to appear in a Cargo sparse index (crates.io's
//! is `https://index.crates.io/`), so the release walk never dispatches a repo whose
//! dependencies cannot be resolved yet.
//!
//! The layout is cargo's sparse registry protocol (The Cargo Book, "Registry index",
//! "Index files" and "Sparse protocol"): `config.json` at the root; a crate's file at
//! `1/{name}`, `2/{name}`, `3/{c}/{name}` or `{ab}/{cd}/{name}` by the length of its
//! lowercased name; one JSON object per line, one line per published version, with
//! `name`, `vers` and `yanked`. A 404 (or 410/451) means the crate is not in the index
//! (yet). The index is read through `support/http.rs` (octocrab's HTTP stack); it is
//! untrusted input, read only up to [`MAX_FILE_BYTES`] and parsed line by line.

use std::time::{Duration, Instant};

use cargo_metadata::semver::Version;
use serde::Deserialize;

use crate::github::follow::pace::Pacer;
use crate::support::http;

/// crates.io's sparse index.
pub const DEFAULT_INDEX_URL: &str = "https://index.crates.io/";

/// The most of an index file read (the largest crates.io files are a few MB).
pub const MAX_FILE_BYTES: usize = 16 * 1024 * 1024;

/// How long one request to the index may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The index's base URL from `text` (`https://HOST/PATH`, with or without cargo's
/// `sparse+` prefix), ending in `/`.
///
/// Errors: anything but an `http` or `https` URL, saying what to set.
pub fn base_url(text: &str) -> Result<String, String> {
    let t = text.trim();
    let t = t.strip_prefix("sparse+").unwrap_or(t);
    let ok = (t.starts_with("https://") || t.starts_with("http://"))
        && t.parse::<::http::Uri>().is_ok_and(|u| u.host().is_some());
    if !ok {
        return Err(format!(
            "index URL `{text}` is not a sparse index URL: use https://HOST/PATH/ (crates.io: {DEFAULT_INDEX_URL}) in --index-url or [chain] index-url"
        ));
    }
    Ok(if t.ends_with('/') {
        t.to_owned()
    } else {
        format!("{t}/")
    })
}

/// The path of crate `name`'s file in a sparse index (cargo's layout, lowercased).
pub fn index_path(name: &str) -> String {
    let n = name.to_lowercase();
    // Crate names are ASCII; counting chars keeps a stray non-ASCII name from panicking.
    let part = |a: usize, b: usize| n.chars().skip(a).take(b - a).collect::<String>();
    match n.chars().count() {
        0..=2 => format!("{}/{n}", n.chars().count()),
        3 => format!("3/{}/{n}", part(0, 1)),
        _ => format!("{}/{}/{n}", part(0, 2), part(2, 4)),
    }
}

/// What an index file says of one version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listed {
    /// Not listed.
    Absent,
    /// Listed and not yanked.
    Present,
    /// Listed but yanked: dependents cannot resolve to it.
    Yanked,
}

#[derive(Deserialize)]
struct IndexLine {
    name: String,
    vers: String,
    #[serde(default)]
    yanked: bool,
}

/// Whether `file` (an index file) lists `version` of `name`. Lines that do not parse are
/// skipped; versions compare as semver (so `1.0.0` and `1.0.0+build` differ, as cargo
/// treats them), else as text.
pub fn find_version(file: &[u8], name: &str, version: &str) -> Listed {
    let want = Version::parse(version).ok();
    let same = |v: &str| match (&want, Version::parse(v)) {
        (Some(w), Ok(v)) => *w == v,
        _ => v == version,
    };
    let mut out = Listed::Absent;
    for line in file.split(|b| *b == b'\n') {
        let Ok(l) = serde_json::from_slice::<IndexLine>(line) else {
            continue;
        };
        if l.name.eq_ignore_ascii_case(name) && same(&l.vers) {
            out = if l.yanked {
                Listed::Yanked
            } else {
                Listed::Present
            };
        }
    }
    out
}

/// Check that `base` serves a sparse index (`config.json` is a JSON object with `dl`),
/// before anything is released.
///
/// Errors: what is wrong, with how to fix it.
pub async fn check_config(base: &str) -> Result<(), String> {
    let url = format!("{base}config.json");
    let f = http::get(&url, REQUEST_TIMEOUT, 1024 * 1024)
        .await
        .map_err(|e| format!("cannot read {url}: {e}: check --index-url / [chain] index-url"))?;
    let ok = f.status.is_success()
        && serde_json::from_slice::<serde_json::Value>(&f.body)
            .is_ok_and(|v| v.get("dl").is_some_and(|d| d.is_string()));
    if !ok {
        return Err(format!(
            "{url} answered {} without a sparse index's config (a JSON object with `dl`): check --index-url / [chain] index-url",
            f.status.as_u16()
        ));
    }
    Ok(())
}

/// Why a wait for a version ended without it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexWaitError {
    /// The version is listed but yanked.
    Yanked,
    /// Not listed within the timeout; the last thing seen.
    TimedOut(String),
}

/// Poll `base` until `version` of `name` is listed (first after `poll`, backing off while
/// it is not) or `timeout` passes. Transport errors and unexpected statuses are retried
/// until the timeout, and the last one is reported.
pub async fn wait_for(
    base: &str,
    name: &str,
    version: &str,
    timeout: Duration,
    poll: Duration,
) -> Result<(), IndexWaitError> {
    let url = format!("{base}{}", index_path(name));
    let deadline = Instant::now() + timeout;
    let mut pacer = Pacer::new(poll);
    loop {
        let last = match http::get(&url, REQUEST_TIMEOUT, MAX_FILE_BYTES).await {
            Ok(f) if f.status.is_success() && f.complete => {
                match find_version(&f.body, name, version) {
                    Listed::Present => return Ok(()),
                    Listed::Yanked => return Err(IndexWaitError::Yanked),
                    Listed::Absent => format!("{url} does not list {version} yet"),
                }
            }
            Ok(f) if f.status.is_success() => {
                format!("{url} is larger than {MAX_FILE_BYTES} bytes")
            }
            Ok(f) if matches!(f.status.as_u16(), 404 | 410 | 451) => {
                format!(
                    "{url} answered {}: the crate is not in the index yet",
                    f.status.as_u16()
                )
            }
            Ok(f) => format!("{url} answered {}", f.status.as_u16()),
            Err(e) => e,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(IndexWaitError::TimedOut(last));
        }
        let (wait, _) = pacer.next(false, None, 1, 0);
        tokio::time::sleep(wait.min(left)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_cargos_layout() {
        assert_eq!(index_path("a"), "1/a");
        assert_eq!(index_path("ab"), "2/ab");
        assert_eq!(index_path("abc"), "3/a/abc");
        assert_eq!(index_path("cargo"), "ca/rg/cargo");
        assert_eq!(index_path("BLVM-Consensus"), "bl/vm/blvm-consensus");
    }

    #[test]
    fn versions_are_found_yanked_or_absent() {
        let file = br#"{"name":"blvm-consensus","vers":"0.1.0","deps":[],"cksum":"x","features":{},"yanked":false}
not json
{"name":"blvm-consensus","vers":"0.2.0","deps":[],"cksum":"y","features":{},"yanked":true}
{"name":"blvm-consensus","vers":"0.3.0+meta","yanked":false}"#;
        assert_eq!(
            find_version(file, "blvm-consensus", "0.1.0"),
            Listed::Present
        );
        assert_eq!(
            find_version(file, "blvm-consensus", "0.2.0"),
            Listed::Yanked
        );
        assert_eq!(
            find_version(file, "blvm-consensus", "0.4.0"),
            Listed::Absent
        );
        assert_eq!(
            find_version(file, "blvm-consensus", "0.3.0"),
            Listed::Absent
        );
        assert_eq!(find_version(file, "other", "0.1.0"), Listed::Absent);
    }

    #[test]
    fn base_urls_take_cargos_sparse_prefix_and_refuse_others() {
        assert_eq!(
            base_url("sparse+https://index.crates.io/").unwrap(),
            "https://index.crates.io/"
        );
        assert_eq!(
            base_url("http://127.0.0.1:9/idx").unwrap(),
            "http://127.0.0.1:9/idx/"
        );
        for bad in ["", "index.crates.io", "file:///tmp/x", "https://"] {
            assert!(base_url(bad).is_err(), "{bad}");
        }
    }
}
