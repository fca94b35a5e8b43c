//! The process lifecycle of `ci` (issue 13 §2 and §6, issue 15): what a cancel
//! (SIGINT/SIGTERM), a SIGKILL of `ci`, a second run on the same checkout and a run dir
//! that cannot be written leave behind. Everything is observed directly: the step's
//! processes by pid (with a bounded wait, never a timing assertion), the checkout's files
//! byte for byte, the exit code and `summary.json`.
//!
//! The fixture is two real cargo repos as real git repos: `base`, and `app`, whose
//! `Cargo.toml` has a sibling `[patch.crates-io]` entry to `base` and which builds in
//! registry mode (so `ci` strips the patch) and commits no `Cargo.lock` (so `ci` generates
//! one). `app`'s only step writes its pid and its background child's pid, says `ready`,
//! and then waits with SIGINT and SIGTERM ignored, so only the escalation to SIGKILL stops
//! it; a file `quick` makes the step exit 0 at once instead.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::support;

/// A bound against hangs (a run that never ends fails the test), not a timing check.
const BOUND: Duration = Duration::from_secs(240);

const ROOMY: &str = "\n[cache]\ndisk-max-used-percent = 100\ndisk-min-free-bytes = 0\n[preflight]\nmin-free-gb = 0\n";

const APP_TOML: &str = "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\npublish = false\n\n[workspace]\n\n[patch.crates-io]\nbase = { path = \"../base\" }\n";

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    manifest: PathBuf,
    app: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        for (name, toml) in [
            ("base", "[package]\nname = \"base\"\nversion = \"0.1.0\"\nedition = \"2021\"\npublish = false\n\n[workspace]\n"),
            ("app", APP_TOML),
        ] {
            let d = dir.join(name);
            fs::create_dir_all(d.join("src")).unwrap();
            fs::write(d.join("Cargo.toml"), toml).unwrap();
            fs::write(d.join("src/lib.rs"), "//! Fixture.\n").unwrap();
            support::git_commit_all(&d);
        }
        let m = dir.display();
        let script = format!(
            "trap \"\" INT TERM; [ -f {m}/quick ] && exit 0; echo $$ > {m}/leader; sleep 300 >/dev/null 2>&1 & echo $! > {m}/child; echo ready > {m}/ready; wait"
        );
        let manifest = dir.join("chain.toml");
        fs::write(
            &manifest,
            format!(
                "root = \".\"\n[defaults]\ntimeout = 600\n\n[[repo]]\nname = \"base\"\ngithub = \"f/base\"\nsteps = []\n\n[[repo]]\nname = \"app\"\ngithub = \"f/app\"\ndeps = \"registry\"\nsteps = [{{ name = \"hold\", command = [\"sh\", \"-c\", '{script}'] }}]\n{ROOMY}"
            ),
        )
        .unwrap();
        Fixture {
            app: dir.join("app"),
            _tmp: tmp,
            dir,
            manifest,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn pid(&self, name: &str) -> i32 {
        fs::read_to_string(self.path(name))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// `ci --quiet` in the background, its output in `out-<tag>.txt`/`err-<tag>.txt`.
    fn start_ci(&self, tag: &str, extra: &[&str]) -> Child {
        let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
        c.args(["ci", "--quiet", "--manifest"])
            .arg(&self.manifest)
            .arg("--cache-dir")
            .arg(self.path("cache"))
            .arg("--run-dir")
            .arg(self.path(&format!("run-{tag}")))
            .args(extra)
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("GITHUB_ACTIONS")
            .env_remove("GITHUB_EVENT_NAME")
            .env_remove("GITHUB_EVENT_PATH")
            .env_remove("BLLVM_CI_CACHE_DIR")
            .stdin(Stdio::null())
            .stdout(fs::File::create(self.path(&format!("out-{tag}.txt"))).unwrap())
            .stderr(fs::File::create(self.path(&format!("err-{tag}.txt"))).unwrap());
        c.spawn().unwrap()
    }

    fn output(&self, tag: &str) -> String {
        format!(
            "{}{}",
            fs::read_to_string(self.path(&format!("out-{tag}.txt"))).unwrap_or_default(),
            fs::read_to_string(self.path(&format!("err-{tag}.txt"))).unwrap_or_default()
        )
    }

    /// Wait until `ready` exists (the step runs), failing if `ci` ends first.
    fn wait_ready(&self, child: &mut Child, tag: &str) {
        let start = Instant::now();
        while !self.path("ready").exists() {
            if let Ok(Some(st)) = child.try_wait() {
                panic!("ci ended ({st}) before its step ran:\n{}", self.output(tag));
            }
            assert!(start.elapsed() < BOUND, "the step never started");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The checkout is exactly as committed: `Cargo.toml` byte for byte, and none of the
    /// run's files (lockfile, its marker, the backup, its record, temp files).
    fn assert_checkout_clean(&self, context: &str) {
        assert_eq!(
            fs::read_to_string(self.app.join("Cargo.toml")).unwrap(),
            APP_TOML,
            "{context}"
        );
        let mut names: Vec<String> = fs::read_dir(&self.app)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "target")
            .collect();
        names.sort();
        assert_eq!(names, [".git", "Cargo.toml", "src"], "{context}");
    }
}

fn wait_exit(child: &mut Child) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if start.elapsed() > BOUND {
            let _ = child.kill();
            panic!("ci did not end");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether `pid` is gone: no such process, or a zombie (it runs no more code; whoever
/// reaps orphans here may be slow to).
fn dead(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    if unsafe { libc::kill(pid, 0) } != 0 {
        return true;
    }
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

/// Wait, bounded, until `pid` is dead; `false` if it outlived the bound.
fn dies(pid: i32) -> bool {
    let start = Instant::now();
    while !dead(pid) {
        if start.elapsed() > BOUND {
            // SAFETY: the test's own stray process.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) of the test's own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

/// While the step runs, the checkout is changed (stripped, lockfile generated): the
/// later checks that it is clean again therefore test a real undo.
fn assert_changed_during_run(f: &Fixture) {
    assert_ne!(
        fs::read_to_string(f.app.join("Cargo.toml")).unwrap(),
        APP_TOML
    );
    assert!(f.app.join("Cargo.lock").exists());
}

#[test]
fn sigint_and_sigterm_stop_the_steps_put_the_checkout_back_and_write_a_cancelled_summary() {
    for (sig, name, code) in [
        (libc::SIGINT, "SIGINT", 130),
        (libc::SIGTERM, "SIGTERM", 143),
    ] {
        let f = Fixture::new();
        let mut ci = f.start_ci("1", &[]);
        f.wait_ready(&mut ci, "1");
        assert_changed_during_run(&f);
        signal(&ci, sig);
        let st = wait_exit(&mut ci);
        let out = f.output("1");
        assert_eq!(st.code(), Some(code), "{name}:\n{out}");
        for p in ["leader", "child"] {
            assert!(dies(f.pid(p)), "{name}: the step's {p} outlived ci");
        }
        f.assert_checkout_clean(name);
        let s = support::summary(&f.path("run-1"));
        assert_eq!(s["cancelled"], name, "{s:#}");
        let app = support::repo(&s, "app");
        assert_eq!(app["status"], "skipped", "{s:#}");
        assert_eq!(app["cancelled"], true);
        assert_eq!(
            app["reason"],
            format!("cancelled by {name} while step `hold` ran")
        );
        assert_eq!(app["steps"][0]["cancelled"], true);
        let base = support::repo(&s, "base");
        assert!(
            base["status"] != "ok" && base["status"] != "failed",
            "{s:#}"
        );
        assert!(
            out.contains(&format!("result: CANCELLED by {name}")),
            "{out}"
        );
    }
}

/// `plan`, `graph` and `cache key` on `f` (read-only commands): each must succeed.
fn read_only_commands(f: &Fixture, check: &dyn Fn(&[&str])) {
    for args in [
        vec!["plan"],
        vec!["graph"],
        vec!["cache", "key", "--repo", "app"],
    ] {
        let o = support::xtask()
            .args(&args)
            .arg("--manifest")
            .arg(&f.manifest)
            .arg("--cache-dir")
            .arg(f.path("cache"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {o:?}");
        check(&args);
    }
}

#[test]
fn sigkill_of_ci_takes_the_steps_along_and_the_next_ci_reconciles_the_checkout() {
    let f = Fixture::new();
    // On a clean checkout, a read-only command's temporary strip and lockfile are gone
    // when it ends.
    read_only_commands(&f, &|args| f.assert_checkout_clean(&format!("{args:?}")));
    let mut ci = f.start_ci("1", &[]);
    f.wait_ready(&mut ci, "1");
    signal(&ci, libc::SIGKILL);
    let st = wait_exit(&mut ci);
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&st), Some(9));
    // The leader dies with ci (its death signal); the background child, which ignores
    // SIGTERM, only through the watchdog's SIGKILL.
    for p in ["leader", "child"] {
        assert!(dies(f.pid(p)), "the step's {p} outlived a SIGKILL of ci");
    }
    let stripped = fs::read(f.app.join("Cargo.toml")).unwrap();
    assert_ne!(stripped, APP_TOML.as_bytes());
    // Read-only commands never reconcile (or otherwise touch) the leftovers.
    read_only_commands(&f, &|args| {
        assert_eq!(
            fs::read(f.app.join("Cargo.toml")).unwrap(),
            stripped,
            "{args:?}"
        );
        assert!(f.app.join("Cargo.toml.orig.bllvm-ci").exists(), "{args:?}");
        assert!(f.app.join("Cargo.lock").exists(), "{args:?}");
    });
    // The next ci puts the original back (and removes the generated lockfile) before it
    // strips again, and leaves the checkout as committed.
    fs::write(f.path("quick"), "").unwrap();
    let mut ci = f.start_ci("2", &[]);
    let st = wait_exit(&mut ci);
    let out = f.output("2");
    assert_eq!(st.code(), Some(0), "{out}");
    assert!(
        out.contains("put back the Cargo.toml a killed run left stripped"),
        "{out}"
    );
    f.assert_checkout_clean("after the reconciling run");
}

#[test]
fn a_manifest_edited_after_a_killed_run_is_kept_and_ci_fails_closed() {
    let f = Fixture::new();
    let mut ci = f.start_ci("1", &[]);
    f.wait_ready(&mut ci, "1");
    signal(&ci, libc::SIGKILL);
    wait_exit(&mut ci);
    for p in ["leader", "child"] {
        assert!(dies(f.pid(p)));
    }
    // The user puts the patch back by hand, with a change of their own.
    let edited = format!("{APP_TOML}# edited after the killed run\n");
    fs::write(f.app.join("Cargo.toml"), &edited).unwrap();
    fs::write(f.path("quick"), "").unwrap();
    let mut ci = f.start_ci("2", &[]);
    let st = wait_exit(&mut ci);
    let out = f.output("2");
    assert_eq!(st.code(), Some(2), "{out}");
    assert!(
        out.contains("Cargo.toml was changed after the run stripped it"),
        "{out}"
    );
    assert!(out.contains("is in the way"), "{out}");
    assert_eq!(
        fs::read_to_string(f.app.join("Cargo.toml")).unwrap(),
        edited
    );
    assert_eq!(
        fs::read_to_string(f.app.join("Cargo.toml.orig.bllvm-ci")).unwrap(),
        APP_TOML
    );
}

#[test]
fn a_second_run_on_the_same_checkout_waits_or_fails_at_once_with_no_wait() {
    let f = Fixture::new();
    let mut first = f.start_ci("1", &[]);
    f.wait_ready(&mut first, "1");
    // --no-wait: exit 2 at once, naming the holder; nothing of the first run is touched.
    let mut busy = f.start_ci("2", &["--no-wait"]);
    let st = wait_exit(&mut busy);
    let out = f.output("2");
    assert_eq!(st.code(), Some(2), "{out}");
    assert!(
        out.contains("is in use by pid") && out.contains(&first.id().to_string()),
        "{out}"
    );
    assert_changed_during_run(&f);
    // Without it: the second run waits, saying for whom, and starts no step meanwhile.
    let mut second = f.start_ci("3", &[]);
    let start = Instant::now();
    while !f.output("3").contains("waiting for checkout") {
        assert!(start.elapsed() < BOUND, "{}", f.output("3"));
        assert!(second.try_wait().unwrap().is_none(), "{}", f.output("3"));
        std::thread::sleep(Duration::from_millis(50));
    }
    let leader = f.pid("leader");
    fs::write(f.path("quick"), "").unwrap();
    signal(&first, libc::SIGINT);
    assert_eq!(wait_exit(&mut first).code(), Some(130), "{}", f.output("1"));
    let st = wait_exit(&mut second);
    let out = f.output("3");
    assert_eq!(st.code(), Some(0), "{out}");
    assert_eq!(
        f.pid("leader"),
        leader,
        "the second run's step must exit at once"
    );
    f.assert_checkout_clean("after both runs");
}

/// `summary.json` and the step's log point at /dev/full (every write fails with ENOSPC):
/// the repo's result is unchanged (ok, exit 0), and the summary is printed to stdout with
/// warnings naming each path and operation.
#[test]
fn a_run_dir_that_cannot_be_written_fails_no_repo_and_the_summary_is_still_printed() {
    let f = Fixture::new();
    fs::write(f.path("quick"), "").unwrap();
    let run = f.path("run-1");
    fs::create_dir_all(run.join("app")).unwrap();
    std::os::unix::fs::symlink("/dev/full", run.join("summary.json")).unwrap();
    std::os::unix::fs::symlink("/dev/full", run.join("app/hold.log")).unwrap();
    let mut ci = f.start_ci("1", &[]);
    let st = wait_exit(&mut ci);
    let out = fs::read_to_string(f.path("out-1.txt")).unwrap();
    assert_eq!(st.code(), Some(0), "{}", f.output("1"));
    assert!(out.contains("result: ok"), "{out}");
    let summary_json = run.join("summary.json");
    assert!(
        out.contains(&format!(
            "warning: write summary {}",
            summary_json.display()
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("write log {}", run.join("app/hold.log").display())),
        "{out}"
    );
    assert!(out.contains("No space left on device"), "{out}");
    f.assert_checkout_clean("after the run");
}

/// A second signal stops at once (the emergency path): the step group is killed without
/// waiting out the grace period, the checkout is put back, and ci exits 130.
#[test]
fn a_second_sigint_stops_at_once_and_still_puts_the_checkout_back() {
    let f = Fixture::new();
    let mut ci = f.start_ci("1", &[]);
    f.wait_ready(&mut ci, "1");
    signal(&ci, libc::SIGINT);
    // The first one is being handled (the message is printed) before the second is sent.
    let start = Instant::now();
    while !f.output("1").contains("send it again to stop at once") {
        assert!(start.elapsed() < BOUND, "{}", f.output("1"));
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(&ci, libc::SIGINT);
    let st = wait_exit(&mut ci);
    let out = f.output("1");
    assert_eq!(st.code(), Some(130), "{out}");
    assert!(out.contains("stopped at once"), "{out}");
    for p in ["leader", "child"] {
        assert!(dies(f.pid(p)), "the step's {p} outlived ci");
    }
    f.assert_checkout_clean("after an emergency stop");
}

/// `cargo xtask stress`'s lifecycle scenarios with small counts (README, "Reliability",
/// has the larger runs).
#[test]
fn stress_signals_and_shared_checkout_pass_with_small_counts() {
    let scratch = tempfile::tempdir().unwrap();
    let o = support::xtask()
        .args([
            "stress",
            "--scenario",
            "signals",
            "--scenario",
            "shared-checkout",
            "--signal-rounds",
            "4",
            "--shared-rounds",
            "1",
            "--format",
            "json",
            "--dir",
        ])
        .arg(scratch.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for s in v["scenarios"].as_array().unwrap() {
        assert_eq!(s["problems"].as_array().unwrap().len(), 0, "{s:#}");
        let ops: u64 = s["ops"]
            .as_object()
            .unwrap()
            .values()
            .filter_map(|n| n.as_u64())
            .sum();
        assert!(ops > 0, "{s:#}");
    }
}
