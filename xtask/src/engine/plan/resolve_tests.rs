//! Tests of [`super::resolve_in`] on real cargo workspaces: the inputs of each repo's
//! fingerprint and target key, asserted where the plan produces them.

use std::path::{Path, PathBuf};

use super::*;
use crate::engine::steps::ExecContext;
use crate::support::fs::sha256_file;

/// A chain under `root`: `up` (no dependencies) and `down` (a path dependency on `up`),
/// each its own workspace with a lockfile, plus a decoy `Cargo.lock` in the root that no
/// repo reads.
fn chain(root: &Path) -> Manifest {
    for (name, deps) in [("up", ""), ("down", "up = { path = \"../up\" }\n")] {
        let dir = root.join(name);
        std::fs::create_dir_all(dir.join("src")).unwrap();
        std::fs::write(
            dir.join("Cargo.toml"),
            format!("[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n\n[dependencies]\n{deps}"),
        )
        .unwrap();
        std::fs::write(dir.join("src/lib.rs"), "//! Fixture.\n").unwrap();
        let st = std::process::Command::new("cargo")
            .args(["generate-lockfile", "--offline"])
            .current_dir(&dir)
            .status()
            .unwrap();
        assert!(st.success());
    }
    std::fs::write(root.join("Cargo.lock"), "# a decoy no repo reads\n").unwrap();
    let m = root.join("chain.toml");
    std::fs::write(
        &m,
        "root = \".\"\n[[repo]]\nname = \"up\"\ngithub = \"o/up\"\n[[repo]]\nname = \"down\"\ngithub = \"o/down\"\n",
    )
    .unwrap();
    Manifest::load(&m).unwrap()
}

/// The machine a plan is resolved on: its environment and `$CARGO_HOME`.
struct Machine {
    env: Vec<(String, String)>,
    cargo_home: PathBuf,
}

impl Machine {
    fn new(t: &Path) -> Machine {
        Machine {
            env: vec![("PATH".into(), "/usr/bin".into())],
            cargo_home: t.join("cargo-home"),
        }
    }

    fn with(&self, k: &str, v: &str) -> Machine {
        let mut env = self.env.clone();
        env.push((k.into(), v.into()));
        Machine {
            env,
            cargo_home: self.cargo_home.clone(),
        }
    }
}

fn plan(m: &Manifest, t: &Path, opts: &PlanOptions, machine: &Machine) -> Plan {
    let cache = Cache::open(&t.join("cache")).unwrap();
    resolve_in(
        m,
        opts,
        &cache,
        (&machine.env, &machine.cargo_home),
        &mut |_| {},
    )
    .unwrap()
    .plan
}

/// `(fingerprint, target key)` of `repo`.
fn ids(p: &Plan, repo: &str) -> (String, String) {
    let r = p.repo(repo).unwrap();
    (
        r.fingerprint.hash.clone(),
        r.cache_key.as_ref().unwrap().key.clone(),
    )
}

fn input<'a>(inputs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    inputs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn the_lockfile_input_is_each_repos_own_cargo_lock() {
    let t = tempfile::tempdir().unwrap();
    let m = chain(t.path());
    let p = plan(
        &m,
        t.path(),
        &PlanOptions::default(),
        &Machine::new(t.path()),
    );
    let own = |n: &str| sha256_file(&t.path().join(n).join("Cargo.lock")).unwrap();
    assert_ne!(own("up"), own("down"), "the fixture's lockfiles differ");
    for name in ["up", "down"] {
        let r = p.repo(name).unwrap();
        assert_eq!(r.lock_sha256.as_deref(), Some(own(name).as_str()), "{name}");
        assert_eq!(
            input(&r.fingerprint.inputs, "lockfile-sha256"),
            Some(own(name).as_str()),
            "{name}'s fingerprint"
        );
        let key = r.cache_key.as_ref().unwrap();
        assert_eq!(
            input(&key.inputs, "lockfile-sha256"),
            Some(own(name).as_str()),
            "{name}'s target key"
        );
        assert!(key.key.ends_with(&own(name)[..16]), "{}", key.key);
    }
    let reg = p.registry_key.as_ref().unwrap();
    for name in ["up", "down"] {
        assert_eq!(
            input(&reg.inputs, &format!("lockfile-sha256 {name}")),
            Some(own(name).as_str())
        );
    }
    // Changing one repo's lockfile changes its fingerprint and key, and nothing of the
    // other but the fingerprint downstream of it. (Lockfile version 3 is one cargo keeps
    // as it is; an edit it would normalise away would not stay.)
    let lock = t.path().join("up/Cargo.lock");
    let text = std::fs::read_to_string(&lock).unwrap();
    assert!(text.contains("version = 4"), "{text}");
    std::fs::write(&lock, text.replace("version = 4", "version = 3")).unwrap();
    let q = plan(
        &m,
        t.path(),
        &PlanOptions::default(),
        &Machine::new(t.path()),
    );
    assert_ne!(ids(&p, "up").0, ids(&q, "up").0);
    assert_ne!(ids(&p, "up").1, ids(&q, "up").1);
    assert_ne!(ids(&p, "down").0, ids(&q, "down").0);
    assert_eq!(ids(&p, "down").1, ids(&q, "down").1);
    assert_eq!(
        q.repo("up").unwrap().lock_sha256.as_deref(),
        Some(own("up").as_str())
    );
}

#[test]
fn the_run_the_runner_and_jobs_change_no_key_and_no_fingerprint() {
    let t = tempfile::tempdir().unwrap();
    let m = chain(t.path());
    let base = Machine::new(t.path());
    let a = plan(&m, t.path(), &PlanOptions::default(), &base);
    let in_ci = PlanOptions {
        exec: ExecContext {
            run_dir: t.path().join("elsewhere/run-42"),
            github_actions: true,
            nextest: true,
            cargo_jobs: Some(3),
        },
        ..PlanOptions::default()
    };
    let mut ci = base
        .with("GITHUB_ACTIONS", "true")
        .with("CI", "true")
        .with("GITHUB_SHA", "0123")
        .with("RUNNER_TEMP", "/tmp/r")
        .with("CARGO_TERM_COLOR", "always")
        .with("CARGO_BUILD_JOBS", "7")
        .with("RUST_BACKTRACE", "1")
        .with("RUSTUP_TOOLCHAIN", "nightly")
        .with("CARGO_PKG_NAME", "xtask")
        .with("CARGO_MANIFEST_DIR", "/work/xtask")
        .with("CARGO_TARGET_DIR", "/tmp/t")
        .with("CARGO_NET_OFFLINE", "true")
        .with("CARGO_HTTP_TIMEOUT", "60")
        .with("CARGO_REGISTRY_TOKEN", "rotated");
    // The repo's environment sets CARGO_INCREMENTAL=0: the inherited value is overridden.
    ci = ci.with("CARGO_INCREMENTAL", "1");
    let b = plan(&m, t.path(), &in_ci, &ci);
    for name in ["up", "down"] {
        assert_eq!(ids(&a, name), ids(&b, name), "{name}");
    }
}

#[test]
fn each_machine_input_alone_changes_the_fingerprint_and_the_key() {
    let t = tempfile::tempdir().unwrap();
    let m = chain(t.path());
    let base = Machine::new(t.path());
    let opts = PlanOptions::default();
    let a = plan(&m, t.path(), &opts, &base);
    let changed = |what: &str, p: &Plan, fp: bool, key: bool| {
        for name in ["up", "down"] {
            let (f0, k0) = ids(&a, name);
            let (f1, k1) = ids(p, name);
            assert_eq!(f0 != f1, fp, "{what}: {name}'s fingerprint");
            assert_eq!(k0 != k1, key, "{what}: {name}'s target key");
        }
    };
    for (k, v) in [
        ("RUSTFLAGS", "--cfg x"),
        ("RUSTDOCFLAGS", "-D warnings"),
        ("CARGO_ENCODED_RUSTFLAGS", "--cfg\u{1f}x"),
        ("CARGO_PROFILE_DEV_OPT_LEVEL", "1"),
        ("RUSTC_WRAPPER", "sccache"),
        ("CC", "clang"),
        ("CFLAGS", "-O3"),
        ("CXX", "clang++"),
        ("AR", "llvm-ar"),
        ("TARGET_CC", "clang"),
    ] {
        let p = plan(&m, t.path(), &opts, &base.with(k, v));
        changed(k, &p, true, true);
        let r = p.repo("up").unwrap();
        assert_eq!(input(&r.fingerprint.inputs, &format!("env {k}")), Some(v));
    }
    // A cargo config in a parent directory of the checkouts, and in $CARGO_HOME.
    for cfg in [
        t.path().join(".cargo/config.toml"),
        base.cargo_home.join("config.toml"),
    ] {
        std::fs::create_dir_all(cfg.parent().unwrap()).unwrap();
        std::fs::write(&cfg, "[build]\nrustflags = [\"--cfg\", \"x\"]\n").unwrap();
        changed(
            &cfg.display().to_string(),
            &plan(&m, t.path(), &opts, &base),
            true,
            true,
        );
        std::fs::remove_file(&cfg).unwrap();
    }
    // Another $CARGO_HOME: the key (cargo fingerprints sources by path), not the result.
    let other_home = Machine {
        env: base.env.clone(),
        cargo_home: t.path().join("other-home"),
    };
    changed(
        "cargo home",
        &plan(&m, t.path(), &opts, &other_home),
        false,
        true,
    );
    // A file `up` reads that is neither tracked nor listed anywhere: its content, not its
    // key (cargo sees the change itself), and `down` through `up`.
    std::fs::write(t.path().join("up/generated.rs"), "1").unwrap();
    let p = plan(&m, t.path(), &opts, &base);
    assert_ne!(ids(&a, "up").0, ids(&p, "up").0);
    assert_ne!(ids(&a, "down").0, ids(&p, "down").0);
    assert_eq!(ids(&a, "up").1, ids(&p, "up").1);
}

#[test]
fn a_path_dependency_outside_the_chain_is_an_input_and_one_inside_is_not() {
    let t = tempfile::tempdir().unwrap();
    let m = chain(t.path());
    // `up` depends on a crate that no repo of the chain holds.
    let outside = t.path().join("outside/helper");
    std::fs::create_dir_all(outside.join("src")).unwrap();
    std::fs::write(
        outside.join("Cargo.toml"),
        "[package]\nname = \"helper\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    )
    .unwrap();
    std::fs::write(outside.join("src/lib.rs"), "//! Helper.\n").unwrap();
    let toml = t.path().join("up/Cargo.toml");
    let text = std::fs::read_to_string(&toml).unwrap().replace(
        "[dependencies]\n",
        "[dependencies]\nhelper = { path = \"../outside/helper\" }\n",
    );
    std::fs::write(&toml, text).unwrap();
    let machine = Machine::new(t.path());
    let opts = PlanOptions::default();
    let a = plan(&m, t.path(), &opts, &machine);
    let up = a.repo("up").unwrap();
    let dir = std::fs::canonicalize(&outside).unwrap();
    let name = format!("path dependency {}", dir.display());
    assert!(
        input(&up.fingerprint.inputs, &name).is_some(),
        "{:?}",
        up.fingerprint.inputs
    );
    // `down` reaches `up` as a sibling checkout: covered by `up`'s fingerprint instead.
    let down = a.repo("down").unwrap();
    assert!(
        !down
            .fingerprint
            .inputs
            .iter()
            .any(|(k, _)| k.starts_with("path dependency") && !k.ends_with("helper")),
        "{:?}",
        down.fingerprint.inputs
    );
    std::fs::write(outside.join("src/lib.rs"), "//! Helper, edited.\n").unwrap();
    let b = plan(&m, t.path(), &opts, &machine);
    assert_ne!(ids(&a, "up").0, ids(&b, "up").0);
    assert_ne!(ids(&a, "down").0, ids(&b, "down").0);
}

#[test]
fn the_compiler_identity_is_of_the_rustc_cargo_will_run() {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().unwrap();
    let m = chain(t.path());
    let base = Machine::new(t.path());
    let a = plan(&m, t.path(), &PlanOptions::default(), &base);
    // A `RUSTC` (another compiler build) that cargo would run instead of `rustc`.
    let wrapper = t.path().join("other-rustc");
    std::fs::write(
        &wrapper,
        "#!/bin/sh\nif [ \"$1\" = \"-vV\" ]; then rustc -vV; echo \"local-patch: 1\"; else exec rustc \"$@\"; fi\n",
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let b = plan(
        &m,
        t.path(),
        &PlanOptions::default(),
        &base.with("RUSTC", &wrapper.display().to_string()),
    );
    let rustc = b.repo("up").unwrap().rustc.clone().unwrap();
    assert!(rustc.ends_with("local-patch: 1"), "{rustc}");
    assert_eq!(
        input(&b.repo("up").unwrap().fingerprint.inputs, "rustc -vV"),
        Some(rustc.as_str())
    );
    assert_ne!(ids(&a, "up"), ids(&b, "up"));
    // One that cannot run is the repo's error, blamed on RUSTC.
    let c = plan(
        &m,
        t.path(),
        &PlanOptions::default(),
        &base.with("RUSTC", "/nonexistent/rustc"),
    );
    let e = c.repo("up").unwrap().error.clone().unwrap();
    assert!(e.contains("RUSTC=/nonexistent/rustc cannot run"), "{e}");
}

#[test]
fn the_manifests_build_env_prefixes_are_inputs_too() {
    let t = tempfile::tempdir().unwrap();
    let m = chain(t.path());
    let base = Machine::new(t.path());
    let opts = PlanOptions::default();
    let a = plan(&m, t.path(), &opts, &base);
    let protoc = base.with("PROTOC", "/opt/protoc-25");
    assert_eq!(
        ids(&a, "up"),
        ids(&plan(&m, t.path(), &opts, &protoc), "up"),
        "not an input by default"
    );
    let text = std::fs::read_to_string(&m.path).unwrap();
    std::fs::write(
        &m.path,
        format!("{text}\n[defaults]\nbuild-env = [\"PROTOC\"]\n"),
    )
    .unwrap();
    let m = Manifest::load(&m.path).unwrap();
    let b = plan(&m, t.path(), &opts, &base);
    let c = plan(&m, t.path(), &opts, &protoc);
    assert_ne!(ids(&b, "up").0, ids(&c, "up").0);
    assert_ne!(ids(&b, "up").1, ids(&c, "up").1);
}
