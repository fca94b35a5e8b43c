//! The one rule that decides which toolchain builds a repo, used by the plan, preflight and
//! the matrix alike.
//!
//! Precedence, first match wins:
//! 1. the matrix cell's toolchain (`ci --matrix` / `--cell`: the cell *is* a toolchain
//!    choice, so nothing overrides it);
//! 2. `--toolchain NAME` (every repo of the run);
//! 3. the repo's `toolchain = "NAME"` in the chain manifest;
//! 4. the checkout's `rust-toolchain.toml` (or legacy `rust-toolchain`) pin, which rustup
//!    applies by itself when no `RUSTUP_TOOLCHAIN` is set;
//! 5. rustup's default toolchain.
//!
//! Levels 1–3 are passed to every cargo and rustc the repo runs as `RUSTUP_TOOLCHAIN`
//! (rustup's documented override, above pin files); levels 4–5 pass nothing. A
//! `RUSTUP_TOOLCHAIN` inherited by `cargo xtask` itself is never used: the rustup proxy
//! exports the toolchain *it* picked for the xtask workspace, which would override every
//! repo's own pin. The process drops it at start-up ([`take_inherited`]) and preflight
//! reports it, so a user who set it on purpose learns to pass `--toolchain`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// rustup's toolchain override variable (rustup book, "Overrides").
pub const ENV: &str = "RUSTUP_TOOLCHAIN";

/// Where a repo's toolchain comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The matrix cell's toolchain.
    Cell(String),
    /// `--toolchain NAME`.
    Flag(String),
    /// The manifest's `toolchain = "NAME"` for the repo.
    Manifest(String),
    /// The checkout's pin file (`rust-toolchain.toml` or `rust-toolchain`).
    PinFile(PathBuf),
    /// rustup's default toolchain.
    Default,
}

/// The toolchain choice for one repo (see the module docs for the rule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// Why this toolchain.
    pub source: Source,
}

impl Choice {
    /// Apply the rule: `cell` (matrix), `flag` (`--toolchain`), `manifest` (the repo's
    /// `toolchain`), then the pin file in the checkout `dir`, then rustup's default.
    pub fn resolve(
        cell: Option<&str>,
        flag: Option<&str>,
        manifest: Option<&str>,
        dir: &Path,
    ) -> Choice {
        let source = if let Some(t) = cell {
            Source::Cell(t.to_owned())
        } else if let Some(t) = flag {
            Source::Flag(t.to_owned())
        } else if let Some(t) = manifest {
            Source::Manifest(t.to_owned())
        } else if let Some(p) = pin_file(dir) {
            Source::PinFile(p)
        } else {
            Source::Default
        };
        Choice { source }
    }

    /// The `RUSTUP_TOOLCHAIN` override this choice sets, if any (levels 1–3).
    pub fn override_name(&self) -> Option<&str> {
        match &self.source {
            Source::Cell(t) | Source::Flag(t) | Source::Manifest(t) => Some(t),
            Source::PinFile(_) | Source::Default => None,
        }
    }

    /// The environment a repo's cargo and rustc run with for this choice: one
    /// `RUSTUP_TOOLCHAIN` pair, or nothing.
    pub fn env(&self) -> Vec<(String, String)> {
        self.override_name()
            .map(|t| vec![(ENV.to_owned(), t.to_owned())])
            .unwrap_or_default()
    }

    /// Where the choice comes from, for messages: `--toolchain stable`, `the manifest's
    /// toolchain = "1.88.0"`, the pin file's path, `rustup's default toolchain`.
    pub fn describe(&self) -> String {
        match &self.source {
            Source::Cell(t) => format!("the matrix cell's toolchain `{t}`"),
            Source::Flag(t) => format!("--toolchain {t}"),
            Source::Manifest(t) => format!("the manifest's `toolchain = \"{t}\"`"),
            Source::PinFile(p) => p.display().to_string(),
            Source::Default => "rustup's default toolchain".to_owned(),
        }
    }

    /// The toolchain's name where it is known without running rustup: the override, or
    /// the `channel` of a pin file (`None` for rustup's default or an unreadable pin).
    pub fn name(&self) -> Option<String> {
        match &self.source {
            Source::PinFile(p) => pin_channel(p),
            Source::Default => None,
            _ => self.override_name().map(str::to_owned),
        }
    }
}

/// The checkout's toolchain pin file, if it has one (`rust-toolchain.toml` first, as
/// rustup reads it).
pub fn pin_file(dir: &Path) -> Option<PathBuf> {
    ["rust-toolchain.toml", "rust-toolchain"]
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
}

/// The channel a pin file names: `[toolchain] channel = "1.88.0"` in the TOML form, or
/// the whole first line of the legacy one-line form.
pub fn pin_channel(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    if let Ok(v) = text.parse::<toml::Table>() {
        if let Some(c) = v
            .get("toolchain")
            .and_then(|t| t.get("channel"))
            .and_then(|c| c.as_str())
        {
            return Some(c.to_owned());
        }
    }
    let first = text.lines().next()?.trim();
    (!first.is_empty() && !first.contains('=')).then(|| first.to_owned())
}

static INHERITED: OnceLock<Option<String>> = OnceLock::new();

/// Remove `RUSTUP_TOOLCHAIN` from this process's environment and remember its value for
/// [`inherited`]. Call once at start-up, before any thread exists (changing the
/// environment is only sound then).
pub fn take_inherited() {
    let v = std::env::var(ENV).ok().filter(|v| !v.is_empty());
    // SAFETY-relevant: called from `main` before any other thread is spawned.
    std::env::remove_var(ENV);
    let _ = INHERITED.set(v);
}

/// The `RUSTUP_TOOLCHAIN` this process was started with (and ignores), if any.
pub fn inherited() -> Option<&'static str> {
    INHERITED.get().and_then(|v| v.as_deref())
}

/// The inherited `RUSTUP_TOOLCHAIN` when someone set it on purpose: the rustup proxy that
/// starts `cargo xtask` always exports the toolchain it picked for the xtask workspace, so
/// only a value that differs from that choice (`rustup show active-toolchain` here,
/// without the variable) was set by the user. `None` when unset, when it is the proxy's
/// own, or when rustup cannot say.
pub fn deliberate_override() -> Option<&'static str> {
    let v = inherited()?;
    let out = std::process::Command::new("rustup")
        .args(["show", "active-toolchain"])
        .env_remove(ENV)
        .output()
        .ok()?;
    let active = String::from_utf8_lossy(&out.stdout);
    let active = active.split_whitespace().next()?;
    (out.status.success() && active != v).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_is_cell_flag_manifest_pin_default() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let r = |c, f, m| Choice::resolve(c, f, m, d).source;
        assert_eq!(r(None, None, None), Source::Default);
        std::fs::write(
            d.join("rust-toolchain.toml"),
            "[toolchain]\nchannel = \"1.88.0\"\ncomponents = [\"clippy\"]\n",
        )
        .unwrap();
        assert_eq!(
            r(None, None, None),
            Source::PinFile(d.join("rust-toolchain.toml"))
        );
        assert_eq!(r(None, None, Some("m")), Source::Manifest("m".into()));
        assert_eq!(r(None, Some("f"), Some("m")), Source::Flag("f".into()));
        assert_eq!(r(Some("c"), Some("f"), Some("m")), Source::Cell("c".into()));
        let pin = Choice::resolve(None, None, None, d);
        assert_eq!(pin.override_name(), None);
        assert!(pin.env().is_empty());
        assert_eq!(pin.name().as_deref(), Some("1.88.0"));
        let flag = Choice::resolve(None, Some("stable"), None, d);
        assert_eq!(flag.env(), vec![(ENV.to_owned(), "stable".to_owned())]);
        assert_eq!(flag.describe(), "--toolchain stable");
    }

    #[test]
    fn legacy_pin_file_names_its_channel() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("rust-toolchain");
        std::fs::write(&p, "nightly-2024-01-01\n").unwrap();
        assert_eq!(pin_channel(&p).as_deref(), Some("nightly-2024-01-01"));
        assert_eq!(pin_file(dir.path()), Some(p));
    }
}
