//! Release sets: the version every repo of the chain is released at together, kept in
//! `ci/versions.toml` (beside the manifest), in the spirit of the bllvm project's own
//! `versions.toml`:
//!
//! ```toml
//! [release."0.2.0"]
//! blvm-primitives = "0.2.0"
//! blvm-consensus = { version = "0.2.0", git-tag = "v0.2.0" }
//! ```
//!
//! `cargo xtask chain --release 0.2.0` checks that a set is consistent with the
//! dependency requirements the repos declare (every requirement of one repo of the set
//! on a package of another accepts that repo's version in the set), then releases each
//! repo in run order, one at a time ([`crate::github::walk`]): dispatch the release event
//! type, wait for the run to finish green, wait for each crate the repo publishes to
//! appear in the index at that version, then the next. It is a dry run unless
//! `--execute` is given, as with cargo-release.
//!
//! Which crates a repo publishes: its workspace packages whose `publish` allows
//! crates.io (no `publish` key, or a list naming `crates-io`), unless the set's entry
//! says (`crates = ["name", ...]`; `[]` for none).
//!
//! This module owns the file format and the check; it reads each checkout's declared
//! dependencies with `cargo metadata --no-deps` (read-only, no resolution) and sends
//! nothing itself: `commands::chain` walks the set through [`crate::github::walk`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cargo_metadata::semver::{Version, VersionReq};
use serde::Deserialize;

use crate::engine::manifest::{Manifest, RepoKind};
use crate::engine::plan::Plan;
use crate::github::dispatch::payload::ChainPayload;
use crate::github::propagate::Target;

/// `ci/versions.toml` beside the manifest.
pub fn default_versions_path(manifest: &Manifest) -> PathBuf {
    manifest
        .path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
        .join("versions.toml")
}

/// The whole `versions.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionsFile {
    /// Release sets by name (usually the version of the set, e.g. `"0.2.0"`), each
    /// mapping repo names of the manifest to what they are released at.
    #[serde(default)]
    pub release: BTreeMap<String, BTreeMap<String, Entry>>,
}

/// One repo's entry in a release set: a version string, or a table.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Entry {
    /// `repo = "0.2.0"`.
    Version(String),
    /// `repo = { version = "0.2.0", git-tag = "v0.2.0" }`.
    Table(EntryTable),
}

/// The table form of an [`Entry`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct EntryTable {
    /// Semver version the repo is released at.
    pub version: String,
    /// Tag the release gets (informational; the receiving workflow creates it). Parsed so
    /// the file's schema is checked (`deny_unknown_fields`), not read by the walk.
    #[serde(default)]
    #[allow(dead_code)]
    pub git_tag: Option<String>,
    /// The crates the repo publishes at this version, which the walk waits for in the
    /// index (default: read from the repo's `Cargo.toml`s; `[]`: none).
    #[serde(default)]
    pub crates: Option<Vec<String>>,
}

impl Entry {
    /// The version string.
    pub fn version(&self) -> &str {
        match self {
            Entry::Version(v) => v,
            Entry::Table(t) => &t.version,
        }
    }

    /// The crates the entry says the repo publishes, if it says.
    pub fn crates(&self) -> Option<&[String]> {
        match self {
            Entry::Version(_) => None,
            Entry::Table(t) => t.crates.as_deref(),
        }
    }
}

impl VersionsFile {
    /// Read and parse `path`.
    pub fn load(path: &Path) -> Result<VersionsFile> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "cannot read release sets from {}: create it (see ci/versions.toml) or pass --versions PATH",
                path.display()
            )
        })?;
        toml::from_str(&text).with_context(|| format!("parse {}", path.display()))
    }
}

/// A dependency requirement of one repo on a package another repo publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// The repo that declares the dependency.
    pub repo: String,
    /// The repo that publishes the package.
    pub upstream: String,
    /// The package.
    pub package: String,
    /// The declared requirement (`^0.1`, `=0.2.0`, ...).
    pub req: VersionReq,
}

/// Every requirement of a repo of the set on a repo of the set that the set's versions
/// break, as messages that say how to fix it (empty: consistent).
pub fn check_consistency(
    set_name: &str,
    set: &BTreeMap<String, Version>,
    requirements: &[Requirement],
) -> Vec<String> {
    requirements
        .iter()
        .filter(|r| set.contains_key(&r.repo))
        .filter_map(|r| {
            let v = set.get(&r.upstream)?;
            (!r.req.matches(v)).then(|| {
                format!(
                    "`{}` requires {} {} but release set {set_name} has {} at {v}: change the requirement in {}'s Cargo.toml or the set in versions.toml",
                    r.repo, r.package, r.req, r.upstream, r.repo
                )
            })
        })
        .collect()
}

/// What the release walk reads from the repos' `Cargo.toml`s.
#[derive(Debug, Clone, Default)]
pub struct Workspaces {
    /// Declared requirements between repos of the plan, sorted.
    pub requirements: Vec<Requirement>,
    /// Per repo, its workspace packages that publish to crates.io, sorted.
    pub publishes: BTreeMap<String, Vec<String>>,
}

/// Declared requirements between repos of the plan and the packages each publishes, read
/// with `cargo metadata --no-deps` in each cargo checkout. Packages map to repos through
/// [`crate::engine::plan::RepoPlan::versions`].
pub fn read_workspaces(plan: &Plan) -> Result<Workspaces> {
    let owner: BTreeMap<&str, &str> = plan
        .repos
        .iter()
        .flat_map(|r| {
            r.versions
                .keys()
                .map(move |p| (p.as_str(), r.name.as_str()))
        })
        .collect();
    let mut out = Workspaces::default();
    for r in plan.repos.iter().filter(|r| r.kind == RepoKind::Cargo) {
        let meta = cargo_metadata::MetadataCommand::new()
            .current_dir(&r.dir)
            .no_deps()
            .exec()
            .with_context(|| {
                format!(
                    "read the dependencies of `{}` (cargo metadata --no-deps in {})",
                    r.name,
                    r.dir.display()
                )
            })?;
        let mut publishes = Vec::new();
        for p in meta.workspace_packages() {
            // `publish` absent: anywhere; a list: those registries only (`[]`: none).
            if p.publish
                .as_ref()
                .is_none_or(|l| l.iter().any(|r| r == "crates-io"))
            {
                publishes.push(p.name.to_string());
            }
            for d in &p.dependencies {
                if let Some(up) = owner.get(d.name.as_str()) {
                    if *up != r.name {
                        out.requirements.push(Requirement {
                            repo: r.name.clone(),
                            upstream: (*up).to_owned(),
                            package: d.name.clone(),
                            req: d.req.clone(),
                        });
                    }
                }
            }
        }
        publishes.sort();
        out.publishes.insert(r.name.clone(), publishes);
    }
    out.requirements
        .sort_by(|a, b| (&a.repo, &a.package).cmp(&(&b.repo, &b.package)));
    out.requirements.dedup();
    Ok(out)
}

/// One repo of a release set, in the walk's order: its dispatch, the version it is
/// released at and the crates the walk waits for in the index.
#[derive(Debug, Clone)]
pub struct ReleaseStep {
    /// The dispatch.
    pub target: Target,
    /// The version of the set.
    pub version: String,
    /// Crates published at `version` (empty: the repo publishes none).
    pub crates: Vec<String>,
}

/// The set's versions, parsed.
///
/// Errors: a repo the manifest does not have, or a version that is not semver.
fn set_versions(
    manifest: &Manifest,
    set: &BTreeMap<String, Entry>,
) -> Result<BTreeMap<String, Version>> {
    let mut versions = BTreeMap::new();
    for (repo, entry) in set {
        manifest.repo(repo)?;
        let v = Version::parse(entry.version()).with_context(|| {
            format!(
                "`{repo} = \"{}\"` is not a semver version (like 0.2.0)",
                entry.version()
            )
        })?;
        versions.insert(repo.clone(), v);
    }
    Ok(versions)
}

/// The release steps of set `set_name`, in run order, after checking the set.
///
/// Errors: the set does not exist, names a repo the manifest does not have, has a
/// version that is not semver, or breaks a declared requirement (all listed).
pub fn plan_release(
    manifest: &Manifest,
    plan: &Plan,
    file: &VersionsFile,
    set_name: &str,
    event_type: Option<&str>,
    chain_id: &str,
) -> Result<Vec<ReleaseStep>> {
    let Some(set) = file.release.get(set_name) else {
        bail!(
            "no release set `{set_name}` (known: {}): add [release.\"{set_name}\"] to versions.toml",
            if file.release.is_empty() { "none".to_owned() } else { file.release.keys().cloned().collect::<Vec<_>>().join(", ") }
        );
    };
    let versions = set_versions(manifest, set)?;
    let workspaces = read_workspaces(plan)?;
    let problems = check_consistency(set_name, &versions, &workspaces.requirements);
    if !problems.is_empty() {
        bail!(
            "release set {set_name} is inconsistent:\n  {}",
            problems.join("\n  ")
        );
    }
    let event_type = event_type
        .map(str::to_owned)
        .unwrap_or_else(|| manifest.chain.event_type("release"));
    let mut steps = Vec::new();
    for r in plan.repos.iter().filter(|r| versions.contains_key(&r.name)) {
        let crates = match set[&r.name].crates() {
            Some(c) => c.to_vec(),
            None => workspaces
                .publishes
                .get(&r.name)
                .cloned()
                .unwrap_or_default(),
        };
        let target = Target {
            repo: r.name.clone(),
            github: manifest.repo(&r.name)?.github.clone(),
            event_type: event_type.clone(),
            payload: ChainPayload {
                source: "release".into(),
                sha: None,
                git_ref: None,
                version: Some(versions[&r.name].to_string()),
                event: "release".into(),
                chain_id: chain_id.to_owned(),
                hop: 1,
                path: Vec::new(),
                dispatch_id: format!("{chain_id}:1:{}", r.name),
                release_set: Some(set_name.to_owned()),
            },
            skip: None,
        };
        steps.push(ReleaseStep {
            target,
            version: versions[&r.name].to_string(),
            crates,
        });
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(repo: &str, up: &str, r: &str) -> Requirement {
        Requirement {
            repo: repo.into(),
            upstream: up.into(),
            package: up.into(),
            req: VersionReq::parse(r).unwrap(),
        }
    }

    #[test]
    fn consistency() {
        let set: BTreeMap<String, Version> = [("cons", "0.2.0"), ("proto", "0.2.0")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Version::parse(v).unwrap()))
            .collect();
        let ok = [
            req("proto", "cons", "0.2"),
            req("node", "proto", "0.1"),
            req("proto", "prim", "0.1"),
        ];
        assert!(check_consistency("0.2.0", &set, &ok).is_empty());
        let bad = [req("proto", "cons", "0.1")];
        let p = check_consistency("0.2.0", &set, &bad);
        assert_eq!(p.len(), 1);
        assert!(
            p[0].contains("`proto` requires cons ^0.1 but release set 0.2.0 has cons at 0.2.0"),
            "{}",
            p[0]
        );
    }

    #[test]
    fn file_format() {
        let f: VersionsFile = toml::from_str(
            "[release.\"0.2.0\"]\na = \"0.2.0\"\nb = { version = \"0.2.1\", git-tag = \"v0.2.1\" }\nc = { version = \"1.0.0\", crates = [\"c-core\", \"c\"] }\n",
        )
        .unwrap();
        let s = &f.release["0.2.0"];
        assert_eq!(s["a"].version(), "0.2.0");
        assert_eq!(s["b"].version(), "0.2.1");
        assert_eq!((s["a"].crates(), s["b"].crates()), (None, None));
        assert_eq!(s["c"].crates().unwrap(), ["c-core", "c"]);
        assert!(toml::from_str::<VersionsFile>(
            "[release.x]\na = { version = \"1.0.0\", bogus = 1 }\n"
        )
        .is_err());
    }
}
