//! Unit tests of the pure follower: states, matching, picking, the verdict and the table.

use super::*;
use crate::github::dispatch::runs::{Job, JobStep};

fn run(id: u64, title: &str, status: &str, conclusion: Option<&str>, created: &str) -> WorkflowRun {
    WorkflowRun {
        id,
        display_title: Some(title.into()),
        status: Some(status.into()),
        conclusion: conclusion.map(Into::into),
        html_url: Some(format!("https://github.com/o/r/actions/runs/{id}")),
        created_at: Some(created.into()),
        run_started_at: Some(created.into()),
        updated_at: Some("2024-05-01T12:02:05Z".into()),
        run_attempt: Some(1),
    }
}

/// a → b → c, in that order.
fn scope() -> Scope {
    let repo = |n: &str, down: &[&str]| ScopeRepo {
        name: n.into(),
        github: format!("o/{n}"),
        downstream: down.iter().map(|d| (*d).to_owned()).collect(),
    };
    Scope {
        repos: vec![repo("a", &["b", "c"]), repo("b", &["c"]), repo("c", &[])],
    }
}

fn seen(state: RunState) -> Seen {
    Seen {
        run: Some(RunInfo {
            id: 1,
            state,
            url: "https://x/1".into(),
            started_unix: Some(100),
            updated_unix: Some(165),
            attempt: 1,
        }),
        failure: None,
    }
}

#[test]
fn states_map_githubs_status_and_conclusion() {
    use RunState::*;
    assert_eq!(RunState::from_api(Some("queued"), None), Queued);
    assert_eq!(RunState::from_api(Some("waiting"), None), Queued);
    assert_eq!(RunState::from_api(Some("in_progress"), None), InProgress);
    assert_eq!(RunState::from_api(Some("something_new"), None), InProgress);
    assert!(RunState::from_api(Some("completed"), Some("success")).is_green());
    for bad in [
        "failure",
        "cancelled",
        "timed_out",
        "skipped",
        "neutral",
        "startup_failure",
    ] {
        let s = RunState::from_api(Some("completed"), Some(bad));
        assert!(s.is_red() && !s.is_active(), "{bad}");
        assert_eq!(RunState::from_api(None, Some(bad)), s);
    }
    assert!(RunState::from_api(Some("completed"), None).is_red());
}

#[test]
fn a_chain_id_matches_as_a_whole_word_only() {
    let t = Some("bllvm-chain repository_dispatch gh-1-1");
    assert!(matches(t, "gh-1-1"));
    assert!(!matches(t, "gh-1"));
    assert!(!matches(t, ""));
    assert!(!matches(None, "gh-1-1"));
    assert!(matches(
        Some("bllvm-chain repository_dispatch my chain"),
        "my chain"
    ));
}

#[test]
fn pick_takes_the_newest_match_after_the_dispatch_and_not_a_known_run() {
    let runs = vec![
        run(
            5,
            "x repository_dispatch c2",
            "queued",
            None,
            "2024-05-01T12:03:00Z",
        ),
        run(
            4,
            "x repository_dispatch c1",
            "queued",
            None,
            "2024-05-01T12:02:00Z",
        ),
        run(
            3,
            "x repository_dispatch c1",
            "completed",
            Some("success"),
            "2024-05-01T12:01:00Z",
        ),
        run(
            2,
            "x repository_dispatch c1",
            "completed",
            Some("failure"),
            "2024-05-01T11:00:00Z",
        ),
    ];
    let none = BTreeSet::new();
    assert_eq!(pick(&runs, "c1", None, &none).unwrap().id, 4);
    let known: BTreeSet<u64> = [4].into();
    assert_eq!(pick(&runs, "c1", None, &known).unwrap().id, 3);
    let since = unix_time("2024-05-01T12:00:00Z");
    assert_eq!(pick(&runs, "c1", since, &[4, 3].into()), None);
    assert_eq!(pick(&runs, "c3", None, &none), None);
}

#[test]
fn verdict_rows_and_exit_codes() {
    let sc = scope();
    let expected: BTreeSet<String> = ["a".to_owned()].into();
    let mut s = BTreeMap::new();
    let st = |s: &BTreeMap<String, Seen>| ChainStatus::build(&sc, "c", &expected, s, 200);
    // Nothing found yet: `a` is expected and pending.
    assert_eq!(st(&s).verdict(), Verdict::Pending);
    assert_eq!(st(&s).exit_code(), Exit::NotFinished);
    // `a` green: its downstream is expected too, and not there yet.
    s.insert("a".into(), seen(RunState::Completed(Conclusion::Success)));
    let status = st(&s);
    assert_eq!(
        status
            .rows
            .iter()
            .map(|r| r.repo.as_str())
            .collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
    assert_eq!(status.verdict(), Verdict::Pending);
    // `b` fails: `c` never starts, the chain is finished and red.
    s.insert("b".into(), seen(RunState::Completed(Conclusion::Failure)));
    let status = st(&s);
    assert_eq!(status.verdict(), Verdict::Failed("b".into()));
    assert_eq!(status.rows[2].blocked_by.as_deref(), Some("b"));
    assert!(status.finished());
    assert_eq!(status.exit_code(), Exit::Failed);
    assert_eq!(status.first_failure().unwrap(), "b: run failure");
    // `b` green and `c` running: not finished; `c` green: green.
    s.insert("b".into(), seen(RunState::Completed(Conclusion::Success)));
    s.insert("c".into(), seen(RunState::InProgress));
    assert!(!st(&s).finished());
    s.insert("c".into(), seen(RunState::Completed(Conclusion::Success)));
    assert_eq!(st(&s).exit_code(), Exit::Ok);
    // A failure while another run still goes is failed but not finished.
    s.insert("a".into(), seen(RunState::Completed(Conclusion::Cancelled)));
    s.insert("c".into(), seen(RunState::Queued));
    let status = st(&s);
    assert_eq!(status.verdict(), Verdict::Failed("a".into()));
    assert!(!status.finished());
    // No row at all is pending, never green.
    let empty = ChainStatus::build(&sc, "c", &BTreeSet::new(), &BTreeMap::new(), 0);
    assert_eq!(empty.exit_code(), Exit::NotFinished);
}

#[test]
fn the_failure_line_names_the_job_and_step_and_is_cleaned() {
    let info = seen(RunState::Completed(Conclusion::Failure)).run.unwrap();
    let step = |n: &str, c: &str| JobStep {
        name: Some(n.into()),
        conclusion: Some(c.into()),
    };
    let jobs = vec![
        Job {
            name: Some("setup".into()),
            conclusion: Some("success".into()),
            html_url: None,
            steps: vec![],
        },
        Job {
            name: Some("chain\u{1b}[31m".into()),
            conclusion: Some("failure".into()),
            html_url: Some("https://github.com/o/b/actions/runs/1/job/2".into()),
            steps: vec![
                step("check out", "success"),
                step("build and test this repo", "failure"),
            ],
        },
    ];
    let line = failure_line("b", &jobs, &info);
    assert_eq!(
        line,
        "b: job `chain [31m` failed at step `build and test this repo` (https://github.com/o/b/actions/runs/1/job/2)"
    );
    assert_eq!(failure_line("b", &[], &info), "b: run failure");
}

#[test]
fn the_table_lists_the_rows_in_order_with_durations_and_links() {
    let sc = scope();
    let mut s = BTreeMap::new();
    s.insert("a".into(), seen(RunState::Completed(Conclusion::Success)));
    s.insert("b".into(), seen(RunState::Completed(Conclusion::Failure)));
    let status = ChainStatus::build(&sc, "c9", &BTreeSet::new(), &s, 200);
    let text = render::text(&status);
    assert_eq!(
        text,
        "chain c9: failed at b\n\
         repo  state        conclusion  duration  run\n\
         a     completed    success     1m05s     https://x/1\n\
         b     completed    failure     1m05s     https://x/1\n\
         c     not started  -           -         (b failed upstream)\n\
         first failure: b: run failure\n"
    );
    let j = render::json(&status);
    assert_eq!(j["verdict"], "failed");
    assert_eq!(j["exit_code"], 1);
    assert_eq!(j["repos"][2]["state"], "not_started");
    assert_eq!(j["repos"][0]["duration_secs"], 65);
    assert_eq!(render::duration(7_380), "2h03m");
}
