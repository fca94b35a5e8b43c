//! The variant × toolchain matrix (issue 9, part 4).

use std::fs;

use predicates::prelude::*;

use crate::support::{repo, summary, write_chain, xtask};

#[test]
fn two_variants_run_twice_with_distinct_keys_and_a_missing_toolchain_is_skipped() {
    let t = tempfile::tempdir().unwrap();
    let m = write_chain(
        t.path(),
        &[("a", &[]), ("b", &[("a", "normal")]), ("c", &[])],
        &[
            ("a", "variants = [\"base\", \"extra\"]\nsteps = [\"build\"]\n[repo.features]\nextra = [\"x\"]"),
            ("b", "variants = [\"base\", \"extra\"]\nsteps = [\"build\"]"),
            ("c", "toolchains = [\"stable\", \"0.0.1-not-installed\"]\nsteps = [\"build\"]"),
        ],
    );
    let toml = t.path().join("a/Cargo.toml");
    fs::write(
        &toml,
        fs::read_to_string(&toml).unwrap() + "\n[features]\nx = []\n",
    )
    .unwrap();

    let out = xtask()
        .args(["matrix", "--format", "json", "--manifest"])
        .arg(&m)
        .output()
        .unwrap();
    let cells: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = cells["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "default-base",
            "default-extra",
            "0.0.1-not-installed-base",
            "stable-base"
        ]
    );

    let run = t.path().join("run");
    let out = xtask()
        .args(["ci", "--quiet", "--matrix", "--manifest"])
        .arg(&m)
        .arg("--cache-dir")
        .arg(t.path().join("cache"))
        .arg("--run-dir")
        .arg(&run)
        .env("RUSTUP_AUTO_INSTALL", "0")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "a missing toolchain is a skip, not a failure: {stdout}"
    );

    let base = summary(&run.join("default-base"));
    let extra = summary(&run.join("default-extra"));
    for s in [&base, &extra] {
        assert_eq!(repo(s, "a")["status"], "ok", "{s}");
        assert_eq!(repo(s, "b")["status"], "ok", "{s}");
    }
    let key =
        |s: &serde_json::Value, n: &str| repo(s, n)["cache"][0]["key"].as_str().unwrap().to_owned();
    assert_ne!(key(&base, "a"), key(&extra, "a"));
    assert!(
        key(&extra, "a").starts_with("a-extra-"),
        "{}",
        key(&extra, "a")
    );
    // `c` is not in the variant cells; in its toolchain cells it is built or skipped.
    assert!(base["repos"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["name"] != "c"));
    let missing = summary(&run.join("0.0.1-not-installed-base"));
    assert_eq!(repo(&missing, "c")["status"], "skipped");
    assert!(repo(&missing, "c")["reason"]
        .as_str()
        .unwrap()
        .contains("toolchain `0.0.1-not-installed` is not installed"));
    assert_eq!(
        repo(&summary(&run.join("stable-base")), "c")["status"],
        "ok"
    );

    // One cell alone, as a workflow's matrix job runs it; an unknown cell lists the cells.
    xtask()
        .args(["ci", "--quiet", "--cell", "default-extra", "--manifest"])
        .arg(&m)
        .arg("--cache-dir")
        .arg(t.path().join("cache"))
        .arg("--run-dir")
        .arg(t.path().join("one"))
        .assert()
        .success();
    assert!(t.path().join("one/default-extra/summary.json").is_file());
    assert!(!t.path().join("one/default-base").exists());
    xtask()
        .args(["ci", "--cell", "nope", "--manifest"])
        .arg(&m)
        .arg("--cache-dir")
        .arg(t.path().join("cache"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "no matrix cell `nope` (cells: default-base, default-extra",
        ));

    // The workflow generator turns the cells into a strategy.matrix.
    let wf = t.path().join("wf");
    xtask()
        .args(["workflows", "--manifest"])
        .arg(&m)
        .arg("--out")
        .arg(&wf)
        .assert()
        .success();
    let yml = fs::read_to_string(wf.join(".github/workflows/ci.yml")).unwrap();
    assert!(
        yml.contains("    strategy:\n      fail-fast: false\n      matrix:\n        include:"),
        "{yml}"
    );
    for n in &names {
        assert!(
            yml.contains(&format!("- cell: \"{n}\"")),
            "{n} missing:\n{yml}"
        );
    }
    // The cell reaches the run step through env: (never spliced into the script).
    assert!(yml.contains("CELL: ${{ matrix.cell }}") && yml.contains("--cell \"$CELL\""));
}
