//! The third-party actions and tool versions the generated workflows use, each pinned to
//! a full commit SHA with its release tag beside it (the `# vX.Y.Z` comment GitHub's own
//! hardening guide and zizmor's `unpinned-uses` audit ask for: a tag can be moved, a
//! commit cannot).
//!
//! Each SHA is the commit its tag pointed at when it was read from the action's own
//! repository (`git rev-parse '<tag>^{commit}'`). To move to a newer release, read the
//! new tag's commit the same way and change both fields together; the tests check the
//! shape (40 hex digits, a `v` tag), never the network.
//!
//! Owns these constants only; nothing here writes YAML.

/// One action at one commit.
#[derive(Debug, Clone, Copy)]
pub struct Action {
    /// `owner/repo` or `owner/repo/path` (e.g. `actions/cache/restore`).
    pub path: &'static str,
    /// The full commit SHA the workflows use.
    pub sha: &'static str,
    /// The release tag that commit is, written as the line's comment.
    pub tag: &'static str,
}

impl Action {
    /// The `uses:` value with its tag comment: `actions/checkout@<sha> # v7.0.1`.
    pub fn uses(&self) -> String {
        format!("{}@{} # {}", self.path, self.sha, self.tag)
    }
}

/// actions/checkout v7.0.1.
pub const CHECKOUT: Action = Action {
    path: "actions/checkout",
    sha: "3d3c42e5aac5ba805825da76410c181273ba90b1",
    tag: "v7.0.1",
};

/// actions/cache's restore-only action, v5.0.5 (the same commit as [`CACHE_SAVE`]).
pub const CACHE_RESTORE: Action = Action {
    path: "actions/cache/restore",
    sha: "27d5ce7f107fe9357f9df03efb73ab90386fccae",
    tag: "v5.0.5",
};

/// actions/cache's save-only action, v5.0.5.
pub const CACHE_SAVE: Action = Action {
    path: "actions/cache/save",
    sha: "27d5ce7f107fe9357f9df03efb73ab90386fccae",
    tag: "v5.0.5",
};

/// actions/upload-artifact v7.0.0.
pub const UPLOAD_ARTIFACT: Action = Action {
    path: "actions/upload-artifact",
    sha: "bbbca2ddaa5d8feaa63e36b76fdaad77386f024f",
    tag: "v7.0.0",
};

/// actions/download-artifact v8.0.1.
pub const DOWNLOAD_ARTIFACT: Action = Action {
    path: "actions/download-artifact",
    sha: "3e5f45b2cfb9172054b4087a40e8e0b5a5461e7c",
    tag: "v8.0.1",
};

/// taiki-e/install-action v2.86.5: installs prebuilt cargo tools and checks each
/// download's sha256 against the checksum its manifest holds for that exact version
/// (`checksum: true` is its default; `fallback: none` forbids an unchecked fallback).
pub const INSTALL_ACTION: Action = Action {
    path: "taiki-e/install-action",
    sha: "ba47c86ac325773530516bb756137ac718732518",
    tag: "v2.86.5",
};

/// Every action the generator may write, for the tests.
#[cfg(test)]
pub const ALL: &[Action] = &[
    CHECKOUT,
    CACHE_RESTORE,
    CACHE_SAVE,
    UPLOAD_ARTIFACT,
    DOWNLOAD_ARTIFACT,
    INSTALL_ACTION,
];

/// cargo-nextest version the workflows install: the one `.ci/run` pins (the first with
/// `junit.report-skipped`), which [`INSTALL_ACTION`]'s manifest has a checksum for.
pub const NEXTEST_VERSION: &str = "0.9.143";

/// cargo-tarpaulin version the workflows install where a repo runs the `coverage` step:
/// the newest [`INSTALL_ACTION`]'s manifest has a checksum for.
pub const TARPAULIN_VERSION: &str = "0.37.2";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pin_is_a_full_sha_with_a_release_tag() {
        for a in ALL {
            assert_eq!(a.sha.len(), 40, "{}", a.path);
            assert!(a
                .sha
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
            assert!(
                a.tag.starts_with('v') && a.tag.matches('.').count() == 2,
                "{}",
                a.tag
            );
            assert_eq!(a.uses(), format!("{}@{} # {}", a.path, a.sha, a.tag));
        }
    }
}
