//! The resolution cache (issue 17 item 2): an unchanged chain is not resolved again,
//! every input resolves again, a damaged record is a miss, `--only` resolves only what it
//! needs. Proven with a `cargo` on `PATH` that logs each invocation before running the
//! real one.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::support::{self, write_chain, xtask};

/// A chain and a logging `cargo` in front of the real one.
struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    manifest: PathBuf,
    cache: PathBuf,
    log: PathBuf,
    path: std::ffi::OsString,
}

impl Fixture {
    fn new(repos: &[(&str, &[support::Dep])]) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("chain");
        fs::create_dir_all(&root).unwrap();
        let manifest = write_chain(&root, repos, &[]);
        let real = support::on_path("cargo").expect("cargo on PATH");
        let bin = tmp.path().join("bin");
        fs::create_dir_all(&bin).unwrap();
        let log = tmp.path().join("cargo.log");
        let script = format!(
            "#!/bin/sh\necho \"$(basename \"$PWD\") $*\" >> '{}'\nexec '{}' \"$@\"\n",
            log.display(),
            real.display()
        );
        fs::write(bin.join("cargo"), script).unwrap();
        fs::set_permissions(bin.join("cargo"), fs::Permissions::from_mode(0o755)).unwrap();
        let mut path = std::ffi::OsString::from(&bin);
        path.push(":");
        path.push(std::env::var_os("PATH").unwrap_or_default());
        Fixture {
            cache: tmp.path().join("cache"),
            _tmp: tmp,
            root,
            manifest,
            log,
            path,
        }
    }

    /// Run `plan` with `extra` flags; returns the repos (checkout dir names) in which a
    /// full `cargo metadata` ran, sorted, and stderr.
    fn plan(&self, extra: &[&str]) -> (Vec<String>, String) {
        let _ = fs::remove_file(&self.log);
        let out = xtask()
            .env("PATH", &self.path)
            // `--no-deps` reads go through `$CARGO` when set: make every read visible.
            .env_remove("CARGO")
            .args(["plan", "--manifest"])
            .arg(&self.manifest)
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(extra)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "plan failed: {stderr}");
        (self.resolved(), stderr)
    }

    /// The repos in which a full `cargo metadata` ran since the log was cleared.
    fn resolved(&self) -> Vec<String> {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let mut repos: Vec<String> = text
            .lines()
            .filter(|l| l.contains(" metadata ") && !l.contains("--no-deps"))
            .map(|l| l.split(' ').next().unwrap().to_owned())
            .collect();
        repos.sort();
        repos
    }

    fn records(&self) -> Vec<PathBuf> {
        walkdir::WalkDir::new(self.cache.join("resolve"))
            .into_iter()
            .flatten()
            .filter(|e| e.file_type().is_file())
            .map(|e| e.path().to_path_buf())
            .collect()
    }
}

fn append(path: &Path, text: &str) {
    let mut s = fs::read_to_string(path).unwrap();
    s.push_str(text);
    fs::write(path, s).unwrap();
}

#[test]
fn an_unchanged_chain_is_resolved_once_and_every_input_resolves_again() {
    let f = Fixture::new(&[("a", &[]), ("b", &[("a", "normal")])]);
    let (first, _) = f.plan(&[]);
    assert_eq!(first, ["a", "b"], "the first plan resolves every repo");
    let (second, _) = f.plan(&[]);
    assert_eq!(
        second,
        Vec::<String>::new(),
        "an unchanged chain ran `cargo metadata`"
    );
    let log = fs::read_to_string(&f.log).unwrap_or_default();
    assert!(
        !log.contains("generate-lockfile"),
        "a lockfile recorded was generated again:\n{log}"
    );

    append(&f.root.join("b/Cargo.toml"), "\n# changed\n");
    assert_eq!(
        f.plan(&[]).0,
        ["b"],
        "a changed Cargo.toml resolves its repo"
    );
    assert_eq!(f.plan(&[]).0, Vec::<String>::new());

    // A committed lockfile replaces the generated one: a new input of `a`.
    let st = std::process::Command::new("cargo")
        .arg("generate-lockfile")
        .current_dir(f.root.join("a"))
        .status()
        .unwrap();
    assert!(st.success());
    append(&f.root.join("a/Cargo.lock"), "\n");
    assert_eq!(f.plan(&[]).0, ["a"], "a changed lockfile resolves its repo");

    assert_eq!(
        f.plan(&["--deps", "registry"]).0,
        ["a", "b"],
        "another deps mode resolves every repo"
    );
    assert_eq!(f.plan(&["--deps", "registry"]).0, Vec::<String>::new());

    // Damaged records are misses, with a warning, and are replaced.
    for r in f.records() {
        fs::write(&r, "{ not a record").unwrap();
    }
    let (again, stderr) = f.plan(&["--deps", "registry"]);
    assert_eq!(again, ["a", "b"], "a damaged record was used");
    assert!(stderr.contains("ignored the resolution record"), "{stderr}");
    assert_eq!(f.plan(&["--deps", "registry"]).0, Vec::<String>::new());
}

#[test]
fn only_resolves_the_selected_repos_and_their_upstream() {
    let f = Fixture::new(&[
        ("a", &[]),
        ("b", &[("a", "normal")]),
        ("c", &[("a", "dev")]),
        ("d", &[]),
    ]);
    let out = xtask()
        .env("PATH", &f.path)
        .env_remove("CARGO")
        .args(["plan", "--format", "json", "--only", "b", "--manifest"])
        .arg(&f.manifest)
        .arg("--cache-dir")
        .arg(&f.cache)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        f.resolved(),
        ["a", "b"],
        "--only b resolved more than b and its upstream"
    );
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        support::levels(&plan),
        [vec!["a", "d"], vec!["b", "c"]],
        "the other repos are still placed (by their declared dependencies)"
    );
    // The full chain then resolves only what `--only` did not.
    assert_eq!(f.plan(&[]).0, ["c", "d"]);
}

impl Fixture {
    /// Run `ci --quiet` into `run_dir`; returns stdout (the run must pass).
    fn ci(&self, run_dir: &Path) -> String {
        let _ = fs::remove_file(&self.log);
        let out = xtask()
            .env("PATH", &self.path)
            .env_remove("CARGO")
            .args(["ci", "--quiet", "--manifest"])
            .arg(&self.manifest)
            .arg("--cache-dir")
            .arg(&self.cache)
            .arg("--run-dir")
            .arg(run_dir)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "ci failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }
}

#[test]
fn a_fully_cached_run_resolves_nothing_and_reports_its_wall_time() {
    let f = Fixture::new(&[("a", &[]), ("b", &[("a", "normal")])]);
    let runs = f.cache.parent().unwrap().to_path_buf();
    let first = f.ci(&runs.join("run1"));
    // Plain lines (not a terminal): the position on every repo and step line, and a
    // closing line per step with its time.
    assert!(first.contains("==> [1/2] a (level 0)"), "{first}");
    assert!(first.contains("--> [2/2] b build: cargo build"), "{first}");
    assert!(first.contains("    [2/2] b build: ok in "), "{first}");
    let t0 = std::time::Instant::now();
    let second = f.ci(&runs.join("run2"));
    let wall = t0.elapsed().as_secs_f64();
    assert_eq!(
        f.resolved(),
        Vec::<String>::new(),
        "an unchanged run ran `cargo metadata`"
    );
    let s = support::summary(&runs.join("run2"));
    for r in ["a", "b"] {
        assert_eq!(support::repo(&s, r)["status"], "cached", "{second}");
    }
    let secs = s["secs"].as_f64().unwrap();
    assert!(
        secs > 0.0 && secs <= wall,
        "the summary's {secs} s is not the run's wall time (the process took {wall} s)"
    );
    // The first run's step times are now the expected ones.
    let third = {
        append(&f.root.join("b/src/lib.rs"), "\n// changed\n");
        f.ci(&runs.join("run3"))
    };
    assert!(
        third.contains("b build: cargo build") && third.contains("(expected ~"),
        "{third}"
    );
}
