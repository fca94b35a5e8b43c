//! Persistence end to end (issue 14, item 8), the part GitHub cannot show us here: two
//! fresh runners, one after the other, each with its own `HOME`, cargo home, cache root
//! and checkout, at the same paths (a hosted runner's layout is fixed), sharing only what
//! the mechanism persists:
//!
//! - `remote`: the bucket, on a real S3 server (SeaweedFS, `seaweed.rs`);
//! - `hosted`: the cache root, saved after the run and restored before the next one as
//!   `actions/cache` does it: the paths of `cache actions-key`'s `path` output, GNU tar
//!   `--posix` through `zstdmt --long=30` with `-P`, extracted as a runner's unprivileged
//!   user would (no owners, permissions through the umask, no leases held), the entry
//!   picked by the key and restore keys `cache actions-key` computes.
//!
//! The second runner reports every unchanged repo `cached` with no step run (so it
//! compiles nothing), offline, with nothing but what was persisted; after a change to
//! the leaf repo it builds that repo from the persisted target entry (an O(1) move for
//! `hosted`) and compiles no dependency crate. The figures each runner reached are
//! printed (`--nocapture`); `cargo xtask bench runners` measures them for BENCHMARKS.md.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

#[cfg(feature = "remote")]
use crate::seaweed::{Seaweed, SECRET_KEY};
use crate::support;

/// The registry crates of the sample chain: what "no dependency crate compiled" is about.
const REGISTRY_CRATES: &[&str] = &["itoa", "hex"];

/// One runner's machine: everything under `work`, at the same paths on every runner.
struct Runner {
    work: PathBuf,
}

impl Runner {
    /// A fresh machine at `work` (removed first: the previous runner is gone).
    fn fresh(work: &Path) -> Runner {
        if work.exists() {
            fs::remove_dir_all(work).unwrap();
        }
        fs::create_dir_all(work.join("home")).unwrap();
        Runner {
            work: work.to_path_buf(),
        }
    }
    fn home(&self) -> PathBuf {
        self.work.join("home")
    }
    /// The default cache root for this `HOME` (nothing names it on the command line).
    fn cache_root(&self) -> PathBuf {
        self.home().join(".cache/bllvm-ci")
    }
    fn chain(&self) -> PathBuf {
        self.work.join("chain")
    }
    fn manifest(&self) -> PathBuf {
        self.chain().join("chain.toml")
    }
    fn run_dir(&self, n: usize) -> PathBuf {
        self.work.join(format!("runs/{n}"))
    }

    /// Check out the sample chain as a fresh clone would: every file newer than anything
    /// built before.
    fn checkout(&self) {
        support::copy_sample(&self.chain());
        let now = std::time::SystemTime::now();
        for e in walkdir::WalkDir::new(self.chain()).into_iter().flatten() {
            if e.file_type().is_file() {
                fs::File::options()
                    .write(true)
                    .open(e.path())
                    .unwrap()
                    .set_modified(now)
                    .unwrap();
            }
        }
        let mut m = fs::read_to_string(self.manifest()).unwrap();
        // These tests are about persistence: a busy shared disk must not turn a save into
        // `no-space`.
        m += "\n[cache]\ndisk-max-used-percent = 100\ndisk-min-free-bytes = 0\n";
        fs::write(self.manifest(), m).unwrap();
    }

    /// The xtask binary in this machine's environment: its own `HOME`, cargo home and
    /// cache root; the image's toolchains (`RUSTUP_HOME`); `CI=true` as on a runner;
    /// nothing of the caller's CI, cache or remote settings.
    fn xtask(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
        c.current_dir(&self.work)
            .env("HOME", self.home())
            .env("CARGO_HOME", self.home().join(".cargo"))
            .env("RUSTUP_HOME", rustup_home())
            .env("CI", "true")
            .env("CARGO_TERM_COLOR", "never")
            .env("RUST_BACKTRACE", "0");
        for k in [
            "XDG_CACHE_HOME",
            "BLLVM_CI_CACHE_DIR",
            "CARGO_TARGET_DIR",
            "CARGO_BUILD_TARGET_DIR",
            "GITHUB_ACTIONS",
            "GITHUB_EVENT_NAME",
            "GITHUB_EVENT_PATH",
            "GITHUB_OUTPUT",
            "GITHUB_RUN_ID",
            "GITHUB_RUN_ATTEMPT",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "BLLVM_CI_CACHE_BUCKET",
        ] {
            c.env_remove(k);
        }
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        c
    }

    /// `ci` run `n` with `env` added; returns its output and wall-clock seconds.
    fn ci(&self, n: usize, env: &[(String, String)], offline: bool) -> (String, f64) {
        let mut c = self.xtask();
        c.args(["ci", "--quiet", "--manifest"])
            .arg(self.manifest())
            .arg("--run-dir")
            .arg(self.run_dir(n))
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        if offline {
            // Not a fingerprint input (CARGO_NET_*): the repos stay `cached`, and every
            // crate must come from what was persisted.
            c.env("CARGO_NET_OFFLINE", "true");
        }
        let start = Instant::now();
        let o = c.output().unwrap();
        let secs = start.elapsed().as_secs_f64();
        let t = text(&o);
        assert!(o.status.success(), "ci failed:\n{t}");
        (t, secs)
    }

    /// `cache actions-key` as the hosted workflow runs it in run `run_id`: the outputs it
    /// wrote to `$GITHUB_OUTPUT`.
    fn actions_key(&self, run_id: &str) -> Outputs {
        // A step's own output file (GitHub gives each step a new one).
        let out_file = self.work.join(format!("github-output-{run_id}"));
        let _ = fs::remove_file(&out_file);
        let o = self
            .xtask()
            .args(["cache", "actions-key", "--manifest"])
            .arg(self.manifest())
            .env("GITHUB_OUTPUT", &out_file)
            .env("GITHUB_RUN_ID", run_id)
            .env("GITHUB_RUN_ATTEMPT", "1")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        let written = fs::read_to_string(&out_file).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            written,
            "prints what it writes"
        );
        parse_outputs(&written)
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The toolchains of this machine (the runner image's).
fn rustup_home() -> PathBuf {
    std::env::var_os("RUSTUP_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".rustup"))
}

/// The outputs of a step, as GitHub reads `$GITHUB_OUTPUT` (`name=value` and the
/// multi-line `name<<DELIMITER` form).
#[derive(Debug)]
struct Outputs {
    key: String,
    restore_keys: Vec<String>,
    path: Vec<String>,
}

fn parse_outputs(text: &str) -> Outputs {
    let mut map: Vec<(String, Vec<String>)> = Vec::new();
    let mut lines = text.lines();
    while let Some(l) = lines.next() {
        if let Some((name, delim)) = l.split_once("<<") {
            let vals: Vec<String> = lines
                .by_ref()
                .take_while(|v| *v != delim)
                .map(str::to_owned)
                .collect();
            map.push((name.to_owned(), vals));
        } else if let Some((name, v)) = l.split_once('=') {
            map.push((name.to_owned(), vec![v.to_owned()]));
        } else {
            panic!("not an output line: {l:?}\n{text}");
        }
    }
    let get = |n: &str| {
        map.iter()
            .find(|(k, _)| k == n)
            .unwrap_or_else(|| panic!("no output {n}: {text}"))
            .1
            .clone()
    };
    Outputs {
        key: get("key").remove(0),
        restore_keys: get("restore-keys"),
        path: get("path"),
    }
}

/// GitHub's cache service for one repository, as `actions/cache` uses it: entries by key,
/// immutable, a restore tries the key, then each restore key as a prefix (newest entry
/// first).
struct CacheService {
    dir: PathBuf,
}

impl CacheService {
    fn archive(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.tar.zst"))
    }

    /// `actions/cache/save`: the files the `path` patterns match (one level, as
    /// `implicitDescendants: false` globs them; `!` excludes), archived with
    /// `tar --posix -cf … -P --files-from … --use-compress-program "zstdmt --long=30"`.
    fn save(&self, key: &str, path: &[String]) {
        fs::create_dir_all(&self.dir).unwrap();
        assert!(!self.archive(key).exists(), "cache entries are immutable");
        let mut files = Vec::new();
        let excluded: Vec<&str> = path.iter().filter_map(|p| p.strip_prefix('!')).collect();
        for p in path.iter().filter(|p| !p.starts_with('!')) {
            let matched: Vec<PathBuf> = match p.strip_suffix("/*") {
                Some(dir) => fs::read_dir(dir)
                    .unwrap()
                    .flatten()
                    .map(|e| e.path())
                    .collect(),
                None => vec![PathBuf::from(p)],
            };
            files.extend(
                matched
                    .into_iter()
                    .filter(|f| !excluded.iter().any(|x| Path::new(x) == f)),
            );
        }
        files.sort();
        let list = self.dir.join(format!("{key}.manifest.txt"));
        fs::write(
            &list,
            files
                .iter()
                .map(|f| format!("{}\n", f.display()))
                .collect::<String>(),
        )
        .unwrap();
        let st = Command::new("tar")
            .arg("--posix")
            .arg("-cf")
            .arg(self.archive(key))
            .args(["-P", "--files-from"])
            .arg(&list)
            .args(["--use-compress-program", "zstdmt --long=30"])
            .status()
            .unwrap();
        assert!(st.success(), "tar create");
    }

    /// `actions/cache/restore`: the exact key, else the newest entry under the first
    /// restore key that matches; extracted with `tar -xf … -P --use-compress-program
    /// "unzstd --long=30"` as an unprivileged user gets it. Returns the key restored.
    fn restore(&self, key: &str, restore_keys: &[String]) -> Option<String> {
        let entries: Vec<(std::time::SystemTime, String)> = fs::read_dir(&self.dir)
            .ok()?
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let k = name.strip_suffix(".tar.zst")?.to_owned();
                Some((e.metadata().unwrap().modified().unwrap(), k))
            })
            .collect();
        let pick = std::iter::once(key.to_owned())
            .filter(|k| self.archive(k).exists())
            .chain(restore_keys.iter().filter_map(|rk| {
                entries
                    .iter()
                    .filter(|(_, k)| k.starts_with(rk.as_str()))
                    .max()
                    .map(|(_, k)| k.clone())
            }))
            .next()?;
        let st = Command::new("tar")
            .arg("-xf")
            .arg(self.archive(&pick))
            .args(["-P", "--no-same-owner", "--no-same-permissions"])
            .args(["--use-compress-program", "unzstd --long=30"])
            .status()
            .unwrap();
        assert!(st.success(), "tar extract");
        Some(pick)
    }
}

/// Every step log of a run dir, concatenated.
fn logs(run_dir: &Path) -> String {
    walkdir::WalkDir::new(run_dir)
        .into_iter()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .map(|e| fs::read_to_string(e.path()).unwrap_or_default())
        .collect()
}

/// How many crates the run's steps compiled (cargo's `Compiling` lines, over every step).
fn compiled(run_dir: &Path) -> usize {
    logs(run_dir)
        .lines()
        .filter(|l| l.trim_start().starts_with("Compiling "))
        .count()
}

fn statuses(run_dir: &Path) -> Vec<(String, String)> {
    support::summary(run_dir)["repos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_owned(),
                r["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The leaf repo of the sample chain (nothing downstream of it): changing it leaves every
/// other fingerprint as it was.
const LEAF: &str = "bllvm-sdk";

fn change_leaf(r: &Runner) {
    let lib = r.chain().join(LEAF).join("src/lib.rs");
    let text = fs::read_to_string(&lib).unwrap();
    // Before the first item (clippy wants no item after the test module).
    let at = text.find("\npub ").expect("an item in the leaf's lib.rs") + 1;
    let added = "/// Added on the second runner.\npub fn added() -> u32 {\n    2\n}\n\n";
    fs::write(&lib, format!("{}{added}{}", &text[..at], &text[at..])).unwrap();
}

/// The second runner's checks on its first run (`first`, unchanged checkout) and its run
/// after the leaf changed (`second`): `mechanism` names the case in messages. Returns the
/// leaf's target stage report of the second run.
fn second_runner_checks(
    mechanism: &str,
    b: &Runner,
    first: usize,
    second: usize,
) -> serde_json::Value {
    for (name, status) in statuses(&b.run_dir(first)) {
        assert_eq!(
            status, "cached",
            "{mechanism}: {name} is not cached on the second runner"
        );
    }
    assert_eq!(
        compiled(&b.run_dir(first)),
        0,
        "{mechanism}: {}",
        logs(&b.run_dir(first))
    );
    let s = support::summary(&b.run_dir(second));
    for (name, status) in statuses(&b.run_dir(second)) {
        let want = if name == LEAF { "ok" } else { "cached" };
        assert_eq!(
            status, want,
            "{mechanism}: {name} after the leaf changed: {s}"
        );
    }
    let leaf_logs = logs(&b.run_dir(second).join(LEAF));
    assert!(
        leaf_logs.contains(&format!("Compiling {LEAF} ")),
        "{mechanism}: the changed repo was not built:\n{leaf_logs}"
    );
    for d in REGISTRY_CRATES {
        for verb in ["Compiling", "Checking"] {
            assert!(
                !leaf_logs.contains(&format!("{verb} {d} ")),
                "{mechanism}: the second runner compiled the dependency {d}:\n{leaf_logs}"
            );
        }
    }
    support::repo(&s, LEAF)["cache"][0].clone()
}

#[cfg(feature = "remote")]
#[test]
fn remote_the_second_runner_caches_every_unchanged_repo_from_the_bucket() {
    let server = Seaweed::start();
    let t = tempfile::tempdir().unwrap();
    let env = server.env(SECRET_KEY);
    let work = t.path().join("work");

    // Runner A builds the sample chain from nothing; the bucket gets every target entry
    // and every repo's result record.
    let a = Runner::fresh(&work);
    a.checkout();
    let (out_a, secs_a) = a.ci(0, &env, false);
    assert!(!out_a.contains(SECRET_KEY));
    let statuses_a = statuses(&a.run_dir(0));
    assert!(statuses_a.iter().all(|(_, s)| s == "ok"), "{statuses_a:?}");
    let compiled_a = compiled(&a.run_dir(0));
    assert!(logs(&a.run_dir(0)).contains("Compiling itoa"));
    let objects = server.objects();
    for (name, _) in &statuses_a {
        let prefix = format!("result/{name}-");
        assert!(
            objects
                .iter()
                .any(|o| o.starts_with(&prefix) && o.ends_with("/entry.json")),
            "no shared result record of {name}: {objects:?}"
        );
    }

    // Runner B: a fresh machine (A's is gone), offline, with the bucket alone.
    let b = Runner::fresh(&work);
    b.checkout();
    let (out_b, secs_b) = b.ci(0, &env, true);
    assert!(!out_b.contains("warning"), "{out_b}");
    change_leaf(&b);
    let (_, secs_b2) = b.ci(1, &env, true);
    let leaf = second_runner_checks("remote", &b, 0, 1);
    assert_eq!(leaf["remote"]["restore"], "hit", "{leaf}");
    assert_eq!(leaf["restore"]["status"], "hit", "{leaf}");
    // B kept what it fetched: the records are in its own cache root now.
    assert!(b.cache_root().join("results").join(LEAF).is_dir());
    eprintln!(
        "remote: runner A {secs_a:.1}s, {compiled_a} crates compiled; runner B {secs_b:.1}s, {} compiled, all cached; B after a leaf change {secs_b2:.1}s, {} compiled",
        compiled(&b.run_dir(0)),
        compiled(&b.run_dir(1))
    );
}

#[test]
fn hosted_the_second_runner_caches_every_unchanged_repo_from_the_restored_cache_root() {
    let t = tempfile::tempdir().unwrap();
    let work = t.path().join("work");
    let service = CacheService {
        dir: t.path().join("github-cache-service"),
    };

    // Runner A: the key step, a restore that misses, the run, the save.
    let a = Runner::fresh(&work);
    a.checkout();
    let ka = a.actions_key("1001");
    assert_eq!(
        ka.path,
        vec![
            format!("{}/*", a.cache_root().display()),
            format!("!{}/tmp", a.cache_root().display())
        ],
        "the default cache root of the runner's HOME, without tmp/"
    );
    assert!(ka.key.starts_with(&ka.restore_keys[0]));
    assert!(service.restore(&ka.key, &ka.restore_keys).is_none());
    let (_, secs_a) = a.ci(0, &[], false);
    assert!(statuses(&a.run_dir(0)).iter().all(|(_, s)| s == "ok"));
    let compiled_a = compiled(&a.run_dir(0));
    // On a runner (`CI=true`) target dirs are moved into the cache root at the save, so
    // the cache root holds them.
    assert!(a.cache_root().join("entries/target").is_dir());
    // Something a run was still deleting stays out of the archive.
    fs::create_dir_all(a.cache_root().join("tmp/trash-target.1.0")).unwrap();
    service.save(&ka.key, &ka.path);

    // Runner B: a fresh machine; another run's key restores A's entry by prefix.
    let b = Runner::fresh(&work);
    b.checkout();
    let kb = b.actions_key("1002");
    assert_ne!(kb.key, ka.key, "every run saves an entry of its own");
    assert_eq!(kb.restore_keys, ka.restore_keys);
    assert_eq!(
        service.restore(&kb.key, &kb.restore_keys).as_deref(),
        Some(ka.key.as_str())
    );
    assert!(!b.cache_root().join("tmp/trash-target.1.0").exists());
    // The restored cache root is whole: mtimes (nanoseconds, `--posix`), sizes and every
    // byte match the manifests.
    let o = b
        .xtask()
        .args(["cache", "verify", "--manifest"])
        .arg(b.manifest())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let (out_b, secs_b) = b.ci(0, &[], true);
    assert!(!out_b.contains("warning"), "{out_b}");
    change_leaf(&b);
    let (_, secs_b2) = b.ci(1, &[], true);
    let leaf = second_runner_checks("hosted", &b, 0, 1);
    // The persisted target entry went into place with one rename.
    assert_eq!(leaf["restore"]["status"], "hit", "{leaf}");
    assert_eq!(leaf["restore"]["strategy"], "moved", "{leaf}");
    let (compiled_b, compiled_b2) = (compiled(&b.run_dir(0)), compiled(&b.run_dir(1)));
    // B's own save is a new entry under its own key; a third run restores the newest.
    service.save(&kb.key, &kb.path);
    let c = Runner::fresh(&work);
    c.checkout();
    let kc = c.actions_key("1003");
    assert_eq!(
        service.restore(&kc.key, &kc.restore_keys).as_deref(),
        Some(kb.key.as_str())
    );
    // A restored root is input like any other: a record that claims another repo's
    // success is ignored with a warning, and the repo runs.
    let leaf_results = c.cache_root().join("results").join(LEAF);
    let mut planted = 0;
    for e in fs::read_dir(&leaf_results).unwrap().flatten() {
        let rec = e.path().join("record.json");
        if rec.is_file() {
            let text = fs::read_to_string(&rec).unwrap();
            fs::write(&rec, text.replace(LEAF, "bllvm-node")).unwrap();
            planted += 1;
        }
    }
    assert!(planted > 0, "no record of {LEAF} in the restored root");
    let (out_c, _) = c.ci(0, &[], true);
    assert!(
        out_c.contains(&format!("warning: result record of {LEAF}")) && out_c.contains("ignored"),
        "{out_c}"
    );
    for (name, status) in statuses(&c.run_dir(0)) {
        let want = if name == LEAF { "ok" } else { "cached" };
        assert_eq!(status, want, "{name}");
    }
    eprintln!(
        "hosted: runner A {secs_a:.1}s, {compiled_a} crates compiled; runner B {secs_b:.1}s, {compiled_b} compiled, all cached; B after a leaf change {secs_b2:.1}s, {compiled_b2} compiled; archive {} bytes",
        fs::metadata(service.archive(&ka.key)).unwrap().len()
    );
}

#[test]
fn the_actions_key_follows_what_the_cache_root_should_hold() {
    let t = tempfile::tempdir().unwrap();
    let r = Runner::fresh(&t.path().join("work"));
    r.checkout();
    let base = r.actions_key("7");
    // Same inputs, another run: same restore keys, a new key.
    let again = r.actions_key("8");
    assert_eq!(again.restore_keys, base.restore_keys);
    assert_ne!(again.key, base.key);
    assert!(base.key.ends_with("-7-1"), "{}", base.key);
    // A lockfile change moves the hash, not the stable prefix.
    let lock = r.chain().join("bllvm-node/Cargo.lock");
    let mut lockfile = fs::read_to_string(&lock).unwrap();
    lockfile += "\n# changed\n";
    fs::write(&lock, lockfile).unwrap();
    let locked = r.actions_key("7");
    assert_ne!(locked.restore_keys[0], base.restore_keys[0]);
    assert_eq!(locked.restore_keys[1], base.restore_keys[1]);
    // The selection and the variant are part of the stable prefix.
    let only = |args: &[&str]| {
        let o = r
            .xtask()
            .args(["cache", "actions-key", "--manifest"])
            .arg(r.manifest())
            .args(args)
            .env("GITHUB_RUN_ID", "7")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        parse_outputs(&String::from_utf8_lossy(&o.stdout))
    };
    let node = only(&["--only", "bllvm-node"]);
    assert!(
        node.restore_keys[1].contains("-bllvm-node-base-"),
        "{node:?}"
    );
    assert_ne!(node.restore_keys[1], base.restore_keys[1]);
    // A repo or variant the manifest lacks, or a missing checkout, is an error (exit 2).
    let o = r
        .xtask()
        .args(["cache", "actions-key", "--manifest"])
        .arg(r.manifest())
        .args(["--only", "ghost"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    fs::remove_dir_all(r.chain().join("bllvm-node")).unwrap();
    let o = r
        .xtask()
        .args(["cache", "actions-key", "--manifest"])
        .arg(r.manifest())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("cargo xtask checkout"), "{}", text(&o));
}
