//! What the cache did for one stage of a run (restore, save, the remote's part), as the
//! run summary (`summary.json`, schema 1) and the metrics record it: [`StageReport`] and
//! [`RemoteStage`]. The stage methods of [`super::Tiered`] fill them in; the summary
//! embeds them unchanged, so their serde shape is part of `summary.json`.
//!
//! Owns these types and their words for the text summary; renders nothing else.

use serde::{Deserialize, Serialize};

use super::{Restore, Save};

/// One stage's cache result for a repo (or for the chain-wide stages).
#[derive(Debug, Clone, Serialize)]
pub struct StageReport {
    /// Stage name.
    pub stage: String,
    /// The key used.
    pub key: String,
    /// Restore outcome.
    pub restore: Restore,
    /// Save outcome (`None` before the save ran).
    pub save: Option<Save>,
    /// A cache problem that was turned into a warning, if any.
    pub warning: Option<String>,
    /// What the remote cache did for this stage (`None`: no remote configured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemoteStage>,
}

impl StageReport {
    /// `hit`, `miss`, `kept`, or `error`.
    pub fn restore_word(&self) -> &'static str {
        if self.warning.is_some() && self.restore == Restore::Miss {
            return "error";
        }
        match self.restore {
            Restore::Hit { .. } => "hit",
            Restore::Partial { .. } => "partial hit",
            Restore::Miss => "miss",
            Restore::Kept => "kept",
        }
    }
}

/// What the remote did for one cache stage, in the summary and metrics. Empty strings
/// mean "did not happen".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RemoteStage {
    /// `hit` (downloaded), `miss`, `error`, `local-hit` (the local cache had the key: no
    /// request made) or `off` (the remote was switched off earlier in the run).
    pub restore: String,
    /// Bytes downloaded (compressed archive and manifest).
    #[serde(default)]
    pub restore_bytes: u64,
    /// Seconds the download took, checks included.
    #[serde(default)]
    pub restore_secs: f64,
    /// Uncompressed entry bytes per second of the download.
    #[serde(default)]
    pub restore_rate: f64,
    /// `uploaded`, `exists` (first writer won), `read-only`, `error`, `skipped` (the local
    /// entry was held by another job), or empty when no upload was due.
    #[serde(default)]
    pub upload: String,
    /// Bytes uploaded (compressed archive and manifest).
    #[serde(default)]
    pub upload_bytes: u64,
    /// Seconds the upload took (in the background).
    #[serde(default)]
    pub upload_secs: f64,
    /// Uncompressed entry bytes per second of the upload.
    #[serde(default)]
    pub upload_rate: f64,
}

/// The remote part of a stage in the text summary: ` (remote hit)`, ` (remote miss)`,
/// ` (remote error)`, plus `, uploaded` when an upload went through; empty otherwise.
pub fn summary_word(r: Option<&RemoteStage>) -> String {
    let Some(r) = r else { return String::new() };
    let mut s = match r.restore.as_str() {
        "hit" | "miss" | "error" | "off" => format!(" (remote {})", r.restore),
        _ => String::new(),
    };
    if r.upload == "uploaded" {
        s += ", uploaded";
    }
    s
}

impl StageReport {
    /// A report for `key` before anything happened: a miss, no save, no warning, no
    /// remote part.
    pub fn new(key: &super::CacheKey) -> StageReport {
        StageReport {
            stage: key.stage.to_string(),
            key: key.key.clone(),
            restore: Restore::Miss,
            save: None,
            warning: None,
            remote: None,
        }
    }

    /// Add `w` to the stage's warning (`; `-separated); an empty `w` adds nothing.
    pub fn warn(&mut self, w: impl Into<String>) {
        let w = w.into();
        if w.is_empty() {
            return;
        }
        self.warning = Some(match self.warning.take() {
            Some(prev) => format!("{prev}; {w}"),
            None => w,
        });
    }

    /// The remote part, created empty on first use (a stage has one once a remote is
    /// configured).
    pub fn remote_mut(&mut self) -> &mut RemoteStage {
        self.remote.get_or_insert_with(RemoteStage::default)
    }
}
