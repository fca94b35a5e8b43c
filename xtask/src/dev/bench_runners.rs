//! `cargo xtask bench runners`: what a second runner costs after a first one, per runner
//! kind (issue 14), on the sample chain.
//!
//! Each kind plays two runners as `tests/it/persistence.rs` does, one after the other,
//! each a machine of its own under the same paths (its `HOME`, cargo home, default cache
//! root and a fresh checkout, `CI=true`), sharing only what the kind persists:
//!
//! - `self-hosted`: the second job runs on the same machine: the cache root and the cargo
//!   home stay on its disk; only the checkout is new.
//! - `hosted`: a fresh machine; the cache root is saved after the first run and restored
//!   before the second as `actions/cache` does it (GNU tar `--posix` through
//!   `zstdmt --long=30`, without `tmp/`); both transfers are timed and the archive
//!   measured. GitHub's own upload and download are not (they depend on its network).
//! - `remote`: a fresh machine; the bucket of `[cache.remote]` / `BLLVM_CI_CACHE_BUCKET`
//!   (under a key prefix of its own for this benchmark) is all that is shared. Skipped,
//!   saying so, when no remote is configured.
//!
//! Per kind: the first run (cold: nothing persisted yet), then on the second runner the
//! unchanged chain (every repo `cached`), then the same runner after a change to
//! `bllvm-primitives`, the upstream repo most of the chain depends on (it and its
//! downstream rebuild; no dependency crate should). Each figure is one run's wall time
//! (cold builds take tens of seconds; repeat the command to see the spread), the
//! `Compiling` lines of its step logs, the registry crates among them, and the repos
//! `cached`. Not a test: nothing asserts on a time.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::support::exit::Exit;
use crate::support::fs::{human_bytes, remove_tree};

/// A runner kind, as `bench runners --kind` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// GitHub-hosted: the cache root through `actions/cache`.
    Hosted,
    /// Self-hosted: the cache root on the runner's persistent disk.
    SelfHosted,
    /// A fleet sharing an S3-compatible bucket.
    Remote,
}

impl Kind {
    /// Every kind, in the order of the table.
    pub const ALL: [Kind; 3] = [Kind::SelfHosted, Kind::Hosted, Kind::Remote];

    /// The name the manifest and the flag use.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Hosted => "hosted",
            Kind::SelfHosted => "self-hosted",
            Kind::Remote => "remote",
        }
    }
}

/// Options of `bench runners`.
#[derive(Debug, Clone)]
pub struct RunnersOptions {
    /// Scratch dir (removed first and at the end).
    pub dir: PathBuf,
    /// The kinds to measure.
    pub kinds: Vec<Kind>,
    /// Markdown file whose `<!-- bench:runners -->` section is rewritten.
    pub record: Option<PathBuf>,
}

/// The repo whose change is measured: upstream of most of the sample chain.
const CHANGED: &str = "bllvm-primitives";

/// One measured `ci` run.
#[derive(Debug, Clone, Default)]
struct Measure {
    secs: f64,
    compiled: usize,
    registry: usize,
    cached: usize,
    repos: usize,
}

/// What one kind came to.
#[derive(Debug, Clone, Default)]
struct KindFigures {
    first: Measure,
    unchanged: Measure,
    changed: Measure,
    /// `(what, seconds, bytes)` of the persistence step (hosted: save and restore).
    transfers: Vec<(String, f64, u64)>,
    /// Why the kind was not measured.
    skipped: Option<String>,
}

/// Run the benchmark (see the module docs): print the table, record it if asked.
///
/// Errors: the sample chain cannot be copied, a `ci` run fails, `tar` or `zstdmt` is
/// missing (hosted), or `--kind remote` was asked for without a remote configured.
pub fn run(o: &RunnersOptions) -> Result<ExitCode> {
    let exe = std::env::current_exe().context("find the xtask binary")?;
    // Absolute: `HOME` and `CARGO_HOME` must name one place from every step's directory.
    let dir = std::path::absolute(&o.dir).context("resolve the scratch dir")?;
    remove_tree(&dir)?;
    let mut all = Vec::new();
    for kind in &o.kinds {
        println!("bench runners: {} ...", kind.as_str());
        let figures = measure_kind(&exe, &dir, *kind, o.kinds.len() == 1)?;
        all.push((*kind, figures));
    }
    let body = render(&all);
    print!("{body}");
    if let Some(path) = &o.record {
        crate::dev::bench::record_section(path, "runners", &body)?;
        println!("recorded in {}", path.display());
    }
    remove_tree(&dir)?;
    Ok(Exit::Ok.into())
}

/// One kind: a first runner, what it persists, a second runner (unchanged, then
/// `CHANGED` changed). `only` (the kind was asked for alone) makes a missing remote an
/// error instead of a skipped row.
fn measure_kind(exe: &Path, dir: &Path, kind: Kind, only: bool) -> Result<KindFigures> {
    let mut f = KindFigures::default();
    let env = match kind {
        Kind::Remote => match remote_env(dir)? {
            Some(env) => env,
            None if only => bail!("{}", NO_REMOTE),
            None => {
                f.skipped = Some(NO_REMOTE.to_owned());
                return Ok(f);
            }
        },
        _ => Vec::new(),
    };
    let work = dir.join(kind.as_str()).join("work");
    let a = Machine::fresh(exe, &work, env.clone())?;
    a.checkout()?;
    f.first = a.ci("first")?;
    let archive = dir.join(kind.as_str()).join("cache-root.tar.zst");
    if kind == Kind::Hosted {
        f.transfers
            .push(save_cache_root(&a.cache_root(), &archive)?);
    }
    let b = match kind {
        Kind::SelfHosted => a,
        _ => Machine::fresh(exe, &work, env)?,
    };
    // Every job clones its checkout anew.
    b.checkout()?;
    if kind == Kind::Hosted {
        f.transfers.push(restore_cache_root(&archive)?);
    }
    f.unchanged = b.ci("unchanged")?;
    b.change(CHANGED)?;
    f.changed = b.ci("changed")?;
    Ok(f)
}

const NO_REMOTE: &str = "no remote cache is configured: set BLLVM_CI_CACHE_BUCKET (and \
     BLLVM_CI_CACHE_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) or `[cache.remote]`, \
     and build with `--features remote`";

/// The environment that points the remote kind's runs at the configured bucket, under a
/// key prefix of this benchmark's own (so no earlier run's entries count); `None` when no
/// remote is configured or the binary cannot use one.
fn remote_env(dir: &Path) -> Result<Option<Vec<(String, String)>>> {
    use crate::cache::settings::{BUCKET_ENV, PREFIX_ENV};
    if !cfg!(feature = "remote") || std::env::var(BUCKET_ENV).map_or(true, |b| b.is_empty()) {
        return Ok(None);
    }
    let id = format!(
        "bench-runners-{}-{}/",
        crate::support::time::now_unix(),
        std::process::id()
    );
    println!(
        "  remote: the bucket's key prefix {id} (work dir {})",
        dir.display()
    );
    Ok(Some(vec![(PREFIX_ENV.to_owned(), id)]))
}

/// One runner's machine under `work` (see the module docs).
struct Machine {
    exe: PathBuf,
    work: PathBuf,
    env: Vec<(String, String)>,
}

impl Machine {
    /// A fresh machine at `work` (what was there is removed: the previous runner is gone).
    fn fresh(exe: &Path, work: &Path, env: Vec<(String, String)>) -> Result<Machine> {
        remove_tree(work)?;
        fs::create_dir_all(work.join("home"))?;
        Ok(Machine {
            exe: exe.to_path_buf(),
            work: work.to_path_buf(),
            env,
        })
    }

    fn home(&self) -> PathBuf {
        self.work.join("home")
    }

    fn cache_root(&self) -> PathBuf {
        self.home().join(".cache/bllvm-ci")
    }

    fn manifest(&self) -> PathBuf {
        self.work.join("chain/chain.toml")
    }

    /// A fresh clone of the sample chain: every file newer than anything built before.
    fn checkout(&self) -> Result<()> {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("xtask sits inside the workspace");
        crate::dev::demo::copy_sample(&workspace.join(crate::dev::demo::SAMPLE_DIR), &self.work)?;
        let now = std::time::SystemTime::now();
        for e in walkdir::WalkDir::new(self.work.join("chain"))
            .into_iter()
            .flatten()
        {
            if e.file_type().is_file() {
                fs::File::options()
                    .write(true)
                    .open(e.path())?
                    .set_modified(now)?;
            }
        }
        Ok(())
    }

    /// Change `repo`'s code (a new public function at the top of its `lib.rs`).
    fn change(&self, repo: &str) -> Result<()> {
        let lib = self.work.join("chain").join(repo).join("src/lib.rs");
        let text = fs::read_to_string(&lib).with_context(|| format!("read {}", lib.display()))?;
        let at = text.find("\npub ").map_or(0, |i| i + 1);
        let added = "/// Added by `bench runners`.\npub fn bench_added() -> u32 {\n    2\n}\n\n";
        fs::write(&lib, format!("{}{added}{}", &text[..at], &text[at..]))?;
        Ok(())
    }

    /// `ci` on this machine (run dir `runs/<name>`), measured.
    fn ci(&self, name: &str) -> Result<Measure> {
        let run_dir = self.work.join("runs").join(name);
        let mut c = Command::new(&self.exe);
        c.args(["ci", "--quiet", "--manifest"])
            .arg(self.manifest())
            .arg("--run-dir")
            .arg(&run_dir)
            .env("HOME", self.home())
            .env("CARGO_HOME", self.home().join(".cargo"))
            .env("RUSTUP_HOME", rustup_home())
            .env("CI", "true")
            .env_remove("XDG_CACHE_HOME")
            .env_remove(crate::cache::CACHE_DIR_ENV)
            .env_remove("CARGO_TARGET_DIR")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null());
        if self.env.is_empty() {
            c.env_remove(crate::cache::settings::BUCKET_ENV);
        }
        let start = Instant::now();
        let st = c.status().context("run `xtask ci`")?;
        let secs = start.elapsed().as_secs_f64();
        if !st.success() {
            bail!(
                "`xtask ci` failed on the sample chain (see {})",
                run_dir.display()
            );
        }
        let mut m = count(&run_dir, &registry_crates(&self.work.join("chain")))?;
        m.secs = secs;
        println!(
            "  {name}: {secs:.2}s, {} crates compiled, {} registry crates built, {}/{} cached",
            m.compiled, m.registry, m.cached, m.repos
        );
        Ok(m)
    }
}

/// The toolchains of this machine (a runner image's), whatever `HOME` the runs get.
fn rustup_home() -> PathBuf {
    std::env::var_os("RUSTUP_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".rustup")
        })
}

/// Names of the registry packages in the chain's lockfiles.
fn registry_crates(chain: &Path) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let Ok(rd) = fs::read_dir(chain) else {
        return names;
    };
    for e in rd.flatten() {
        let Ok(text) = fs::read_to_string(e.path().join("Cargo.lock")) else {
            continue;
        };
        let Ok(lock) = text.parse::<toml::Table>() else {
            continue;
        };
        let packages = lock.get("package").and_then(|p| p.as_array());
        for p in packages.into_iter().flatten() {
            let registry = p
                .get("source")
                .and_then(|s| s.as_str())
                .is_some_and(|s| s.starts_with("registry+") || s.starts_with("sparse+"));
            if let (true, Some(n)) = (registry, p.get("name").and_then(|n| n.as_str())) {
                names.insert(n.to_owned());
            }
        }
    }
    names
}

/// Count a run's `Compiling` lines (and the registry crates among them, `Checking` too)
/// and its `cached` repos.
fn count(run_dir: &Path, registry: &BTreeSet<String>) -> Result<Measure> {
    let mut m = Measure::default();
    for e in walkdir::WalkDir::new(run_dir).into_iter().flatten() {
        if e.path().extension().is_none_or(|x| x != "log") {
            continue;
        }
        for line in fs::read_to_string(e.path()).unwrap_or_default().lines() {
            let mut words = line.split_whitespace();
            let verb = words.next().unwrap_or("");
            let krate = words.next().unwrap_or("");
            m.compiled += usize::from(verb == "Compiling");
            m.registry +=
                usize::from(matches!(verb, "Compiling" | "Checking") && registry.contains(krate));
        }
    }
    let summary: serde_json::Value = serde_json::from_slice(
        &fs::read(run_dir.join("summary.json")).context("read the run's summary.json")?,
    )?;
    let repos = summary["repos"].as_array().cloned().unwrap_or_default();
    m.repos = repos.len();
    m.cached = repos.iter().filter(|r| r["status"] == "cached").count();
    Ok(m)
}

/// `actions/cache/save` of `root` into `archive`: everything but `tmp/`, through GNU tar
/// `--posix` and `zstdmt --long=30`. Returns `(what, seconds, archive bytes)`.
fn save_cache_root(root: &Path, archive: &Path) -> Result<(String, f64, u64)> {
    let mut files: Vec<PathBuf> = fs::read_dir(root)
        .with_context(|| format!("read {}", root.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n != "tmp"))
        .collect();
    files.sort();
    let start = Instant::now();
    let st = Command::new("tar")
        .args(["--posix", "-cf"])
        .arg(archive)
        .args(["-P", "--use-compress-program", "zstdmt --long=30"])
        .args(&files)
        .status()
        .context("run tar (GNU tar and zstd: `apt-get install -y tar zstd`)")?;
    if !st.success() {
        bail!("tar could not archive {}", root.display());
    }
    let secs = start.elapsed().as_secs_f64();
    let bytes = fs::metadata(archive)?.len();
    Ok(("save (tar + zstd)".to_owned(), secs, bytes))
}

/// `actions/cache/restore` of `archive`: extracted where it was taken, as an unprivileged
/// user gets it. Returns `(what, seconds, archive bytes)`.
fn restore_cache_root(archive: &Path) -> Result<(String, f64, u64)> {
    let start = Instant::now();
    let st = Command::new("tar")
        .arg("-xf")
        .arg(archive)
        .args(["-P", "--no-same-owner", "--no-same-permissions"])
        .args(["--use-compress-program", "unzstd --long=30"])
        .status()
        .context("run tar")?;
    if !st.success() {
        bail!("tar could not extract {}", archive.display());
    }
    let bytes = fs::metadata(archive)?.len();
    Ok((
        "restore (untar)".to_owned(),
        start.elapsed().as_secs_f64(),
        bytes,
    ))
}

/// The table (Markdown) of every kind's figures.
fn render(all: &[(Kind, KindFigures)]) -> String {
    // `crates compiled`: cargo's `Compiling` lines over every step's log; `registry
    // crates built`: the `Compiling` and `Checking` (clippy) lines of registry crates.
    let mut s = String::from(
        "| runner kind | run | wall (s) | crates compiled | registry crates built | repos cached |\n|---|---|---:|---:|---:|---:|\n",
    );
    let mut notes = String::new();
    for (kind, f) in all {
        if let Some(why) = &f.skipped {
            s += &format!("| {} | not measured | | | | |\n", kind.as_str());
            notes += &format!("- {}: not measured: {why}.\n", kind.as_str());
            continue;
        }
        for (run, m) in [
            ("first runner (cold)", &f.first),
            ("second runner, unchanged", &f.unchanged),
            ("second runner, `bllvm-primitives` changed", &f.changed),
        ] {
            s += &format!(
                "| {} | {run} | {:.2} | {} | {} | {}/{} |\n",
                kind.as_str(),
                m.secs,
                m.compiled,
                m.registry,
                m.cached,
                m.repos
            );
        }
        for (what, secs, bytes) in &f.transfers {
            notes += &format!(
                "- {}: cache root {what}: {secs:.2} s, archive {}.\n",
                kind.as_str(),
                human_bytes(*bytes)
            );
        }
    }
    format!(
        "{s}\n{notes}- crates compiled: cargo's `Compiling` lines over every step's log (a crate \
         built by several steps or repos counts each time); registry crates built: the \
         `Compiling` and `Checking` lines of crates.io packages.\n"
    )
}
