//! Runs one step as a child process: in its own process group, with its output streamed to
//! the terminal and to a log file, and killed with its whole process tree at its timeout.
//!
//! This is the one place that spawns long-running children with `std::process` directly
//! (xshell has no timeouts or process groups); short helper commands go through xshell or
//! `Command::output`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// What to run.
#[derive(Debug, Clone)]
pub struct StepCommand {
    /// Program (`cargo`, or a step's `command[0]`).
    pub program: String,
    /// Arguments.
    pub args: Vec<String>,
    /// Working directory (the repo checkout).
    pub dir: PathBuf,
    /// Environment added to the inherited one.
    pub env: BTreeMap<String, String>,
    /// Inherited variables removed before `env` is added (secrets the step was not given).
    pub env_remove: Vec<String>,
    /// Kill after this long.
    pub timeout: Duration,
    /// The command prints cargo's `--message-format=json`: show each diagnostic's
    /// `rendered` text (the human output), collect the diagnostics, drop the other JSON
    /// messages, and pass every non-JSON line (test output) through.
    pub json_diagnostics: bool,
}

/// A compiler diagnostic from cargo's JSON messages, for annotations and summaries.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    /// `error`, `warning`, ...
    pub level: String,
    /// The message's first line (e.g. "mismatched types").
    pub message: String,
    /// Error code (`E0308`), if any.
    pub code: Option<String>,
    /// File of the primary span, relative to the package's directory as rustc prints it.
    pub file: Option<String>,
    /// 1-based line of the primary span.
    pub line: Option<usize>,
    /// 1-based column of the primary span.
    pub col: Option<usize>,
    /// Directory of the package the diagnostic is about (from its manifest path).
    pub package_dir: Option<String>,
}

/// Interpret one line of `--message-format=json` output: `Ok(Some(d))` a diagnostic (show
/// its rendered text), `Ok(None)` another cargo message (hide it), `Err(())` not JSON
/// (show the line as it is).
fn parse_json_line(line: &[u8]) -> Result<Option<(Diagnostic, String)>, ()> {
    if line.first() != Some(&b'{') {
        return Err(());
    }
    let msg: cargo_metadata::Message = serde_json::from_slice(line).map_err(|_| ())?;
    match msg {
        cargo_metadata::Message::CompilerMessage(cm) => {
            let d = &cm.message;
            let primary = d.spans.iter().find(|s| s.is_primary);
            let package_dir = std::path::Path::new(cm.target.src_path.as_str())
                .ancestors()
                .find(|a| a.join("Cargo.toml").is_file())
                .map(|p| p.display().to_string());
            let level = format!("{:?}", d.level).to_lowercase();
            Ok(Some((
                Diagnostic {
                    level,
                    message: d.message.clone(),
                    code: d.code.as_ref().map(|c| c.code.clone()),
                    file: primary.map(|s| s.file_name.clone()),
                    line: primary.map(|s| s.line_start),
                    col: primary.map(|s| s.column_start),
                    package_dir,
                },
                d.rendered
                    .clone()
                    .unwrap_or_else(|| format!("{}\n", d.message)),
            )))
        }
        cargo_metadata::Message::TextLine(_) => Err(()),
        _ => Ok(None),
    }
}

/// How a step ended.
#[derive(Debug, Clone, PartialEq)]
pub struct StepOutcome {
    /// Exit code; `None` when killed by a signal.
    pub code: Option<i32>,
    /// Whether we killed it at its timeout.
    pub timed_out: bool,
    /// Wall-clock seconds.
    pub secs: f64,
    /// Compiler diagnostics (only with [`StepCommand::json_diagnostics`]).
    pub diagnostics: Vec<Diagnostic>,
}

impl StepOutcome {
    /// Whether the step succeeded (exit code 0, not timed out).
    pub fn success(&self) -> bool {
        self.code == Some(0) && !self.timed_out
    }
}

/// Where a step's output goes besides the log file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Echo {
    /// Stream every line to our stdout as it arrives.
    Stream,
    /// Only log (used by tests and `--quiet`).
    Quiet,
}

/// How long output is still read after a step's process group is gone: a daemon that
/// escaped the group (`setsid`) and kept stdout open must not hang the run. Lines it
/// writes after this are not read (its pipe is abandoned).
pub const DRAIN: Duration = Duration::from_secs(2);

/// Run `cmd`, teeing stdout and stderr line by line to `log` (created) and to `on_output`
/// (with JSON diagnostics: each diagnostic's rendered text instead of its JSON). The
/// child is the leader of a new process group; at its timeout the whole group gets
/// SIGKILL, so grandchildren (rustc, test binaries) die too. After a normal exit the group
/// is killed as well, and output is drained for at most [`DRAIN`], so a stray background
/// process can neither keep running in the group nor hold the run up.
///
/// Errors: the program cannot be spawned (e.g. not installed) or the log cannot be written.
pub fn run_step(cmd: &StepCommand, log: &Path, on_output: &dyn Fn(&[u8])) -> Result<StepOutcome> {
    let start = Instant::now();
    let mut logf = File::create(log).with_context(|| format!("create log {}", log.display()))?;
    writeln!(logf, "$ {} {}", cmd.program, shell_words(&cmd.args))?;
    let mut child = spawn(cmd)?;
    let pgid = child.id() as i32;
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let pipes: [Box<dyn Read + Send>; 2] = [
        Box::new(child.stdout.take().expect("piped")),
        Box::new(child.stderr.take().expect("piped")),
    ];
    for pipe in pipes {
        spawn_reader(pipe, tx.clone());
    }
    drop(tx);
    let mut sink = Sink {
        json: cmd.json_diagnostics,
        diagnostics: Vec::new(),
        log: logf,
        on_output,
    };
    let mut timed_out = false;
    let status: ExitStatus = loop {
        sink.pump(&rx, Duration::from_millis(20));
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if start.elapsed() >= cmd.timeout {
            timed_out = true;
            kill_group(pgid);
            break child.wait()?;
        }
    };
    kill_group(pgid);
    sink.drain(&rx, Instant::now() + DRAIN);
    if timed_out {
        writeln!(
            sink.log,
            "\n[bllvm-ci] killed after its timeout of {} s",
            cmd.timeout.as_secs()
        )?;
    }
    Ok(StepOutcome {
        code: status.code(),
        timed_out,
        secs: start.elapsed().as_secs_f64(),
        diagnostics: sink.diagnostics,
    })
}

fn spawn(cmd: &StepCommand) -> Result<std::process::Child> {
    let inherited = std::env::vars_os().filter(|(k, _)| !cmd.env_remove.iter().any(|r| k == &**r));
    Command::new(&cmd.program)
        .args(&cmd.args)
        .current_dir(&cmd.dir)
        .env_clear()
        .envs(inherited)
        .envs(&cmd.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .with_context(|| {
            format!(
                "start `{}` in {}: is it installed and on PATH?",
                cmd.program,
                cmd.dir.display()
            )
        })
}

/// Read `pipe` line by line into `tx` on a detached thread: the thread ends when the
/// pipe closes or the receiver is gone, and nothing waits for it (see [`DRAIN`]).
fn spawn_reader(pipe: Box<dyn Read + Send>, tx: mpsc::Sender<Vec<u8>>) {
    std::thread::spawn(move || {
        let mut r = BufReader::new(pipe);
        loop {
            let mut line = Vec::new();
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            }
        }
    });
}

/// Where a step's lines go: the log, the caller, and (JSON mode) the diagnostics.
struct Sink<'a> {
    json: bool,
    diagnostics: Vec<Diagnostic>,
    log: File,
    on_output: &'a dyn Fn(&[u8]),
}

impl Sink<'_> {
    /// Take every line that arrives within `wait`.
    fn pump(&mut self, rx: &mpsc::Receiver<Vec<u8>>, wait: Duration) {
        match rx.recv_timeout(wait) {
            Ok(line) => {
                self.line(&line);
                while let Ok(line) = rx.try_recv() {
                    self.line(&line);
                }
            }
            // Both pipes closed while the child still runs: do not spin.
            Err(mpsc::RecvTimeoutError::Disconnected) => std::thread::sleep(wait),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
    }

    /// Take lines until both pipes are closed or `deadline` passes.
    fn drain(&mut self, rx: &mpsc::Receiver<Vec<u8>>, deadline: Instant) {
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match rx.recv_timeout(left) {
                Ok(line) => self.line(&line),
                Err(_) => break,
            }
        }
    }

    fn line(&mut self, line: &[u8]) {
        let shown: Option<Vec<u8>> = if self.json {
            match parse_json_line(line) {
                // `--all-targets` compiles a file for the lib and its tests: the same
                // diagnostic arrives twice; show and keep it once.
                Ok(Some((d, _))) if self.diagnostics.contains(&d) => None,
                Ok(Some((d, rendered))) => {
                    self.diagnostics.push(d);
                    Some(rendered.into_bytes())
                }
                Ok(None) => None,
                Err(()) => Some(line.to_vec()),
            }
        } else {
            Some(line.to_vec())
        };
        if let Some(text) = shown {
            (self.on_output)(&text);
            let _ = self.log.write_all(&text);
        }
    }
}

/// SIGKILL every process in group `pgid`; a group that is already gone is fine.
fn kill_group(pgid: i32) {
    // SAFETY: kill(2) with a negative pid signals a process group; it has no memory effects.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

/// Arguments joined for display, quoting those with spaces.
pub fn shell_words(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if a.is_empty() || a.contains(char::is_whitespace) {
                format!("'{a}'")
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, timeout: Duration) -> StepCommand {
        StepCommand {
            program: "sh".into(),
            args: vec!["-c".into(), script.into()],
            dir: std::env::temp_dir(),
            env: BTreeMap::new(),
            env_remove: Vec::new(),
            timeout,
            json_diagnostics: false,
        }
    }

    #[test]
    fn logs_both_streams_and_exit_code() {
        let t = tempfile::tempdir().unwrap();
        let log = t.path().join("s.log");
        let o = run_step(
            &sh("echo out; echo err >&2; exit 3", Duration::from_secs(30)),
            &log,
            &|_| {},
        )
        .unwrap();
        assert_eq!(o.code, Some(3));
        assert!(!o.success());
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains("out\n") && text.contains("err\n"), "{text}");
    }

    #[test]
    fn timeout_kills_the_whole_tree() {
        let t = tempfile::tempdir().unwrap();
        let pidfile = t.path().join("grandchild.pid");
        let script = format!("sleep 300 & echo $! > {}; wait", pidfile.display());
        let o = run_step(
            &sh(&script, Duration::from_millis(500)),
            &t.path().join("l"),
            &|_| {},
        )
        .unwrap();
        assert!(o.timed_out && !o.success());
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The grandchild was in the step's process group, so it is gone (reaped by init).
        let mut gone = false;
        for _ in 0..100 {
            // SAFETY: signal 0 only checks for existence.
            if unsafe { libc::kill(pid, 0) } != 0 {
                gone = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(gone, "grandchild {pid} survived the timeout");
    }
}
