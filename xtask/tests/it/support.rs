//! Shared fixtures for the integration tests: the xtask binary, copies of the sample
//! chain, and small real cargo workspaces written as real git repos.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The `xtask` binary under test, with a quiet, predictable environment.
pub fn xtask() -> assert_cmd::Command {
    let mut c = assert_cmd::Command::new(env!("CARGO_BIN_EXE_xtask"));
    // A shared target dir from the caller's environment would make every fixture repo
    // build into one place, which is not what the tests are about.
    c.env_remove("BLLVM_CI_CACHE_DIR")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET_DIR")
        .env_remove("GITHUB_ACTIONS")
        .env_remove("GITHUB_EVENT_NAME")
        .env_remove("GITHUB_EVENT_PATH")
        .env("RUST_BACKTRACE", "0")
        .env("CARGO_TERM_COLOR", "never");
    c
}

/// The orchestrator workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Copy `ci/sample` (without build output) into `dst`, keeping file mtimes; returns the
/// manifest path of the copy.
pub fn copy_sample(dst: &Path) -> PathBuf {
    copy_dir(&workspace().join("ci/sample"), dst);
    dst.join("chain.toml")
}

fn copy_dir(src: &Path, dst: &Path) {
    for e in walkdir::WalkDir::new(src)
        .min_depth(1)
        .into_iter()
        .filter_entry(|e| e.file_name() != "target")
    {
        let e = e.unwrap();
        let to = dst.join(e.path().strip_prefix(src).unwrap());
        if e.file_type().is_dir() {
            fs::create_dir_all(&to).unwrap();
        } else {
            fs::create_dir_all(to.parent().unwrap()).unwrap();
            fs::copy(e.path(), &to).unwrap();
            let m = e.metadata().unwrap().modified().unwrap();
            fs::File::options()
                .write(true)
                .open(&to)
                .unwrap()
                .set_modified(m)
                .unwrap();
        }
    }
}

/// A dependency of a fixture crate: `(repo, kind)` with kind `normal`, `dev` or `build`.
pub type Dep<'a> = (&'a str, &'a str);

/// Write a fixture chain under `root`: one cargo repo per `(name, deps)`, each its own
/// workspace with one library crate of the same name, depending on its upstream siblings
/// through `path` dependencies; plus a `chain.toml` (with `extra` appended to each repo
/// table by name). Returns the manifest path.
pub fn write_chain(root: &Path, repos: &[(&str, &[Dep])], extra: &[(&str, &str)]) -> PathBuf {
    let mut manifest = String::from("root = \".\"\n[defaults]\ntimeout = 300\n");
    for (name, deps) in repos {
        let dir = root.join(name);
        fs::create_dir_all(dir.join("src")).unwrap();
        let mut toml = format!(
            "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\npublish = false\n\n[workspace]\n"
        );
        for kind in ["normal", "dev", "build"] {
            let section = match kind {
                "normal" => "dependencies",
                "dev" => "dev-dependencies",
                _ => "build-dependencies",
            };
            toml += &format!("\n[{section}]\n");
            for (d, k) in deps.iter().filter(|(_, k)| *k == kind) {
                let _ = k;
                toml += &format!("{d} = {{ path = \"../{d}\" }}\n");
            }
        }
        fs::write(dir.join("Cargo.toml"), toml).unwrap();
        fs::write(
            dir.join("src/lib.rs"),
            "//! Fixture crate.\n\n/// A value.\npub fn value() -> u32 {\n    1\n}\n",
        )
        .unwrap();
        manifest += &format!("\n[[repo]]\nname = \"{name}\"\ngithub = \"fixture/{name}\"\n");
        for (n, e) in extra.iter().filter(|(n, _)| n == name) {
            let _ = n;
            manifest += e;
            manifest.push('\n');
        }
    }
    let path = root.join("chain.toml");
    fs::write(&path, manifest).unwrap();
    path
}

/// `git init` + commit everything in `dir`.
pub fn git_commit_all(dir: &Path) {
    for args in [
        vec!["init", "-q", "-b", "main"],
        vec!["add", "-A"],
        vec![
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.invalid",
            "commit",
            "-q",
            "-m",
            "init",
        ],
    ] {
        let st = Command::new("git")
            .args(&args)
            .current_dir(dir)
            .status()
            .unwrap();
        assert!(st.success(), "git {args:?} in {}", dir.display());
    }
}

/// Parse the plan JSON of `plan --format json`.
pub fn plan_json(manifest: &Path, cache: &Path) -> serde_json::Value {
    let out = xtask()
        .args(["plan", "--format", "json", "--manifest"])
        .arg(manifest)
        .arg("--cache-dir")
        .arg(cache)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "plan failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Repo names per level from a plan JSON.
pub fn levels(plan: &serde_json::Value) -> Vec<Vec<String>> {
    let mut levels: Vec<Vec<String>> = Vec::new();
    for r in plan["repos"].as_array().unwrap() {
        let l = r["level"].as_u64().unwrap() as usize;
        if levels.len() <= l {
            levels.resize(l + 1, Vec::new());
        }
        levels[l].push(r["name"].as_str().unwrap().to_owned());
    }
    levels
}

/// The `summary.json` of a run dir.
pub fn summary(run_dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(run_dir.join("summary.json")).unwrap()).unwrap()
}

/// A repo's entry in a summary.
pub fn repo<'a>(summary: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    summary["repos"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in summary"))
}
