//! Runs one step as a child process: in its own process group, with its output streamed to
//! the terminal and to a log file, stopped with its whole process group at its timeout or
//! when the run is cancelled (SIGTERM or the signal received, SIGKILL after
//! [`GRACE`]), and never outliving us: its leader has `PR_SET_PDEATHSIG`, and the
//! watchdog (`support::watchdog`) stops the rest of its group if we die.
//!
//! Cargo's own progress bar: on a terminal, where step output is streamed to it, the
//! console calls [`forward_cargo_progress`]; cargo steps then get
//! `CARGO_TERM_PROGRESS_WHEN=always` (cargo draws no bar into a pipe otherwise) and the
//! terminal's width, and output is split at `\r` as well as `\n`. A chunk that ends in a
//! lone `\r` is a redraw: it reaches the terminal but never the log or the tail, so logs
//! hold the lines a person would see once the bar is gone, as without a terminal.
//!
//! This is the one place that spawns long-running children with `std::process` directly
//! (xshell has no timeouts or process groups); short helper commands go through xshell or
//! `Command::output`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::signals::{self, GRACE};
use super::watchdog;

/// Width in columns cargo's progress bar is drawn for in steps; 0: not forwarded.
static CARGO_PROGRESS_WIDTH: AtomicUsize = AtomicUsize::new(0);

/// Forward cargo's own progress bar to a terminal of `width` columns from now on (`None`:
/// stop). Only for output streamed to a terminal: see the module docs.
pub fn forward_cargo_progress(width: Option<usize>) {
    CARGO_PROGRESS_WIDTH.store(width.unwrap_or(0), Ordering::Relaxed);
}

/// The columns of the terminal on stdout, if it is one.
pub fn terminal_width() -> Option<usize> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` into the struct we own; it fails on a
    // descriptor that is not a terminal, which is answered with `None`.
    let r = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_col > 0).then_some(usize::from(ws.ws_col))
}

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
    /// Whether we stopped it at its timeout.
    pub timed_out: bool,
    /// The signal the run was cancelled with, when it was forwarded to this step (then
    /// its exit code says nothing about the step itself).
    pub cancelled: Option<i32>,
    /// Wall-clock seconds from the start to the leader's exit (the drain of a stray
    /// process's output after it is not counted).
    pub secs: f64,
    /// Compiler diagnostics (only with [`StepCommand::json_diagnostics`]).
    pub diagnostics: Vec<Diagnostic>,
    /// Why the log is missing or incomplete (`create log PATH: ...`, `write log PATH:
    /// ...`); the step ran all the same and its output went to `on_output`.
    pub log_error: Option<String>,
    /// The last [`TAIL_BYTES`] bytes of the output shown (at most), for checks that must
    /// not depend on the log being writable.
    pub tail: Vec<u8>,
}

impl StepOutcome {
    /// Whether the step succeeded (exit code 0, not timed out, not cancelled).
    pub fn success(&self) -> bool {
        self.code == Some(0) && !self.timed_out && self.cancelled.is_none()
    }
}

/// How much of a step's output [`StepOutcome::tail`] keeps, in bytes.
pub const TAIL_BYTES: usize = 64 * 1024;

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

/// How often a running step is checked for its exit, its timeout and a cancel.
const POLL: Duration = Duration::from_millis(20);

/// Why a step is being stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    /// Its timeout passed: SIGTERM, SIGKILL after the grace period.
    Timeout,
    /// The run was cancelled by this signal: it is forwarded, SIGKILL after the grace.
    Cancel(i32),
}

/// A stop in progress.
#[derive(Debug, Clone, Copy)]
struct Stopping {
    why: Why,
    since: Instant,
    killed: bool,
}

/// Run `cmd`, teeing stdout and stderr line by line to `log` (created) and to `on_output`
/// (with JSON diagnostics: each diagnostic's rendered text instead of its JSON).
///
/// The child leads a new process group and dies with us (`PR_SET_PDEATHSIG`; the
/// watchdog, `support::watchdog`, stops the rest of its group). At its timeout the group
/// gets SIGTERM and, after [`GRACE`], SIGKILL, so grandchildren (rustc, test binaries)
/// stop too; a cancel of the run ([`signals::cancelled`]) forwards the signal the same
/// way. After the leader exits, what is left of the group is killed, and output is
/// drained for at most [`DRAIN`], so a stray background process can neither keep running
/// in the group nor hold the run up. A run already cancelled starts nothing.
///
/// A log that cannot be created or written is not an error: the step runs, its output
/// still reaches `on_output`, and [`StepOutcome::log_error`] says what failed.
///
/// Errors: the program cannot be spawned (e.g. not installed).
pub fn run_step(cmd: &StepCommand, log: &Path, on_output: &dyn Fn(&[u8])) -> Result<StepOutcome> {
    let start = Instant::now();
    let (logf, log_error) = open_log(cmd, log);
    let width = CARGO_PROGRESS_WIDTH.load(Ordering::Relaxed);
    let progress = (width > 0 && cmd.program == "cargo").then_some(width);
    let mut sink = Sink {
        redraws: progress.is_some(),
        json: cmd.json_diagnostics,
        diagnostics: Vec::new(),
        log: logf,
        log_path: log.to_path_buf(),
        log_error,
        tail: Vec::new(),
        on_output,
    };
    if let Some(sig) = signals::cancelled() {
        sink.note(&format!(
            "[bllvm-ci] not started: the run was cancelled by {}",
            signals::name(sig)
        ));
        return Ok(sink.outcome(None, None, Some(sig), 0.0));
    }
    let mut child = spawn(cmd, progress)?;
    let pgid = child.id() as i32;
    let group = Group::track(pgid);
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let pipes: [Box<dyn Read + Send>; 2] = [
        Box::new(child.stdout.take().expect("piped")),
        Box::new(child.stderr.take().expect("piped")),
    ];
    for pipe in pipes {
        spawn_reader(pipe, tx.clone(), progress.is_some());
    }
    drop(tx);
    let (status, stopping) = supervise(&mut child, pgid, cmd.timeout, start, &mut sink, &rx)?;
    let secs = start.elapsed().as_secs_f64();
    kill_group(pgid, libc::SIGKILL);
    drop(group);
    sink.drain(&rx, Instant::now() + DRAIN);
    let why = stopping.map(|s| s.why);
    match why {
        Some(Why::Timeout) => sink.note(&format!(
            "[bllvm-ci] killed after its timeout of {} s (SIGTERM to its process group, SIGKILL after {} s)",
            cmd.timeout.as_secs(),
            GRACE.as_secs()
        )),
        Some(Why::Cancel(sig)) => sink.note(&format!(
            "[bllvm-ci] the run was cancelled by {}: forwarded to the step's process group (SIGKILL after {} s)",
            signals::name(sig),
            GRACE.as_secs()
        )),
        None => {}
    }
    let cancelled = match why {
        Some(Why::Cancel(sig)) => Some(sig),
        _ => None,
    };
    Ok(sink.outcome(status.code(), why, cancelled, secs))
}

/// Wait for the leader of group `pgid` to exit, pumping output, stopping the group at the
/// timeout or on a cancel. After a stop, what is left of the group gets the rest of the
/// grace period to exit before SIGKILL.
fn supervise(
    child: &mut Child,
    pgid: i32,
    timeout: Duration,
    start: Instant,
    sink: &mut Sink<'_>,
    rx: &mpsc::Receiver<Vec<u8>>,
) -> Result<(ExitStatus, Option<Stopping>)> {
    let mut stopping: Option<Stopping> = None;
    let status = loop {
        sink.pump(rx, POLL);
        if let Some(st) = child.try_wait()? {
            break st;
        }
        stopping = next_stop(stopping, pgid, start.elapsed() >= timeout);
    };
    if let Some(s) = &mut stopping {
        while !s.killed && signals::group_alive(pgid) {
            sink.pump(rx, POLL);
            if s.since.elapsed() >= GRACE {
                kill_group(pgid, libc::SIGKILL);
                s.killed = true;
            }
        }
    }
    Ok((status, stopping))
}

/// One tick of the stop rule: start a stop at the timeout or on a cancel (the first
/// reason wins), escalate to SIGKILL once the grace period is over.
fn next_stop(cur: Option<Stopping>, pgid: i32, past_timeout: bool) -> Option<Stopping> {
    match cur {
        None => {
            let why = if past_timeout {
                Why::Timeout
            } else {
                Why::Cancel(signals::cancelled()?)
            };
            kill_group(
                pgid,
                match why {
                    Why::Timeout => libc::SIGTERM,
                    Why::Cancel(sig) => sig,
                },
            );
            Some(Stopping {
                why,
                since: Instant::now(),
                killed: false,
            })
        }
        Some(mut s) => {
            if !s.killed && s.since.elapsed() >= GRACE {
                kill_group(pgid, libc::SIGKILL);
                s.killed = true;
            }
            Some(s)
        }
    }
}

/// Create the log and write the command line; a failure is returned as the reason the
/// log is missing, never as an error.
fn open_log(cmd: &StepCommand, log: &Path) -> (Option<File>, Option<String>) {
    match File::create(log) {
        Ok(mut f) => match writeln!(f, "$ {} {}", cmd.program, shell_words(&cmd.args)) {
            Ok(()) => (Some(f), None),
            Err(e) => (None, Some(format!("write log {}: {e}", log.display()))),
        },
        Err(e) => (None, Some(format!("create log {}: {e}", log.display()))),
    }
}

/// A step's process group while it runs: tracked for an emergency stop
/// ([`signals::track_group`]) and listed with the watchdog; both undone on drop.
struct Group {
    pgid: i32,
    _tracked: signals::TrackedGroup,
}

impl Group {
    fn track(pgid: i32) -> Group {
        watchdog::add(pgid);
        Group {
            pgid,
            _tracked: signals::track_group(pgid),
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        watchdog::remove(self.pgid);
    }
}

/// Make the child die with us: `PR_SET_PDEATHSIG` (SIGKILL), set between fork and exec.
/// The setting belongs to the thread that spawned the child (the child dies when that
/// thread ends), which is why only a thread that waits for the child may spawn it.
fn die_with_parent(cmd: &mut Command) {
    let parent = std::process::id() as i32;
    // SAFETY: the closure runs in the child between fork and exec and calls only
    // async-signal-safe functions (prctl, getppid), allocating nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // We died before the setting took effect: do not run orphaned.
            if libc::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// Spawn the step; `progress`: cargo draws its progress bar for that many columns
/// (unless the step's own environment says otherwise).
fn spawn(cmd: &StepCommand, progress: Option<usize>) -> Result<Child> {
    // The inherited environment without what the step was not given (secrets).
    let inherited = std::env::vars_os().filter(|(k, _)| !cmd.env_remove.iter().any(|r| k == &**r));
    let mut c = Command::new(&cmd.program);
    if let Some(width) = progress {
        c.env("CARGO_TERM_PROGRESS_WHEN", "always")
            .env("CARGO_TERM_PROGRESS_WIDTH", width.to_string());
    }
    c.args(&cmd.args)
        .current_dir(&cmd.dir)
        .env_clear()
        .envs(inherited)
        .envs(&cmd.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    die_with_parent(&mut c);
    c.spawn().with_context(|| {
        format!(
            "start `{}` in {}: is it installed and on PATH?",
            cmd.program,
            cmd.dir.display()
        )
    })
}

/// Run a short helper that writes into a checkout (e.g. `cargo generate-lockfile`) like
/// [`Command::output`], but in its own process group that dies with us and that an
/// emergency stop kills before it undoes the helper's change — so a stop can never race
/// a helper that writes after the undo.
///
/// Errors: as [`Command::output`].
pub fn output_tracked(cmd: &mut Command) -> std::io::Result<Output> {
    cmd.process_group(0);
    die_with_parent(cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn()?;
    let group = Group::track(child.id() as i32);
    let out = child.wait_with_output();
    kill_group(group.pgid, libc::SIGKILL);
    drop(group);
    out
}

/// Read `pipe` line by line into `tx` on a detached thread (`split_cr`: a lone `\r` ends
/// a chunk too, see the module docs): the thread ends when the pipe closes or the
/// receiver is gone, and nothing waits for it (see [`DRAIN`]).
fn spawn_reader(pipe: Box<dyn Read + Send>, tx: mpsc::Sender<Vec<u8>>, split_cr: bool) {
    std::thread::spawn(move || {
        let mut r = BufReader::new(pipe);
        loop {
            let mut line = Vec::new();
            let read = if split_cr {
                read_chunk(&mut r, &mut line)
            } else {
                r.read_until(b'\n', &mut line)
            };
            match read {
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

/// Read up to and including the next `\n`, or a `\r` not followed by `\n` (`\r\n`
/// stays one line end), into `out`; returns the bytes read (0 at the end).
fn read_chunk(r: &mut impl BufRead, out: &mut Vec<u8>) -> std::io::Result<usize> {
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(out.len());
        }
        // A `\r` that ended the last buffer: a `\n` may follow.
        if out.last() == Some(&b'\r') {
            if buf[0] == b'\n' {
                out.push(b'\n');
                r.consume(1);
            }
            return Ok(out.len());
        }
        match buf.iter().position(|b| *b == b'\n' || *b == b'\r') {
            Some(i) if buf[i] == b'\r' && i + 1 == buf.len() => {
                out.extend_from_slice(buf);
                r.consume(i + 1);
            }
            Some(i) => {
                let end = if buf[i] == b'\r' && buf[i + 1] == b'\n' {
                    i + 2
                } else {
                    i + 1
                };
                out.extend_from_slice(&buf[..end]);
                r.consume(end);
                return Ok(out.len());
            }
            None => {
                let n = buf.len();
                out.extend_from_slice(buf);
                r.consume(n);
            }
        }
    }
}

/// Where a step's lines go: the log, the caller, the tail and (JSON mode) the
/// diagnostics.
struct Sink<'a> {
    json: bool,
    /// A chunk ending in a lone `\r` is a redraw (cargo's progress bar): shown, never
    /// logged.
    redraws: bool,
    diagnostics: Vec<Diagnostic>,
    /// `None` when the log could not be created, or once a write to it failed.
    log: Option<File>,
    log_path: PathBuf,
    log_error: Option<String>,
    tail: Vec<u8>,
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
            if self.redraws && text.ends_with(b"\r") {
                return;
            }
            // What a redraw leaves before the next line: the erase sequence (`ESC[K`).
            let kept = text.strip_prefix(b"\x1b[K").unwrap_or(&text);
            self.keep_tail(kept);
            self.log_write(kept);
        }
    }

    fn keep_tail(&mut self, text: &[u8]) {
        self.tail.extend_from_slice(text);
        if self.tail.len() > 2 * TAIL_BYTES {
            self.tail.drain(..self.tail.len() - TAIL_BYTES);
        }
    }

    /// Write to the log only (our own notes about the step).
    fn note(&mut self, text: &str) {
        self.log_write(format!("\n{text}\n").as_bytes());
    }

    fn log_write(&mut self, text: &[u8]) {
        if let Some(f) = &mut self.log {
            if let Err(e) = f.write_all(text) {
                self.log_error = Some(format!("write log {}: {e}", self.log_path.display()));
                self.log = None;
            }
        }
    }

    fn outcome(
        mut self,
        code: Option<i32>,
        why: Option<Why>,
        cancelled: Option<i32>,
        secs: f64,
    ) -> StepOutcome {
        if self.tail.len() > TAIL_BYTES {
            self.tail.drain(..self.tail.len() - TAIL_BYTES);
        }
        StepOutcome {
            code,
            timed_out: why == Some(Why::Timeout),
            cancelled,
            secs,
            diagnostics: self.diagnostics,
            log_error: self.log_error,
            tail: self.tail,
        }
    }
}

/// Send `sig` to every process in group `pgid`; a group that is already gone is fine.
fn kill_group(pgid: i32, sig: i32) {
    // SAFETY: kill(2) with a negative pid signals a process group; it has no memory effects.
    unsafe {
        libc::kill(-pgid, sig);
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
    fn a_lone_carriage_return_ends_a_chunk_and_crlf_stays_one_line_end() {
        // A reader with a tiny buffer, so a `\r` also falls at a buffer's end.
        for cap in [1, 2, 3, 64] {
            let data: &[u8] = b"[=> ] 1/9\r[==> ] 2/9\r\x1b[K   Compiling a\nwin\r\nend";
            let mut r = std::io::BufReader::with_capacity(cap, data);
            let mut chunks = Vec::new();
            loop {
                let mut c = Vec::new();
                if read_chunk(&mut r, &mut c).unwrap() == 0 {
                    break;
                }
                chunks.push(String::from_utf8(c).unwrap());
            }
            assert_eq!(
                chunks,
                [
                    "[=> ] 1/9\r",
                    "[==> ] 2/9\r",
                    "\x1b[K   Compiling a\n",
                    "win\r\n",
                    "end"
                ],
                "buffer of {cap}"
            );
        }
    }

    #[test]
    fn redraws_reach_the_terminal_but_not_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("step.log");
        let shown = std::sync::Mutex::new(Vec::new());
        let on_output = |b: &[u8]| shown.lock().unwrap().extend_from_slice(b);
        let mut sink = Sink {
            json: false,
            redraws: true,
            diagnostics: Vec::new(),
            log: Some(File::create(&log).unwrap()),
            log_path: log.clone(),
            log_error: None,
            tail: Vec::new(),
            on_output: &on_output,
        };
        for chunk in [&b"[=> ] 1/9\r"[..], b"\x1b[K   Compiling a\n", b"done\r\n"] {
            sink.line(chunk);
        }
        drop(sink);
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "   Compiling a\ndone\r\n",
            "the log holds no redraw and no erase sequence"
        );
        assert!(
            shown.lock().unwrap().starts_with(b"[=> ] 1/9\r"),
            "the terminal sees the bar"
        );
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

    /// Whether `pid` is gone: no such process, or a zombie nobody reaped yet (it runs no
    /// more code; the test process's reaper may not be init).
    fn dead(pid: i32) -> bool {
        // SAFETY: signal 0 only checks for existence.
        if unsafe { libc::kill(pid, 0) } != 0 {
            return true;
        }
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                s.rsplit_once(')')
                    .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
            })
            .unwrap_or(true)
    }

    /// Wait (bounded, generously: this is a bound against a hang, not a timing check)
    /// until `pid` is dead.
    fn dies(pid: i32) -> bool {
        (0..500).any(|_| {
            let d = dead(pid);
            if !d {
                std::thread::sleep(Duration::from_millis(20));
            }
            d
        })
    }

    fn read_pid(p: &Path) -> i32 {
        std::fs::read_to_string(p).unwrap().trim().parse().unwrap()
    }

    /// The grandchild holds neither pipe (its output goes to /dev/null) and is not the
    /// leader, so only a kill of the whole process group reaches it: a leader-only kill
    /// returns as promptly and leaves it running, which the direct check below sees.
    #[test]
    fn timeout_kills_the_whole_tree() {
        let t = tempfile::tempdir().unwrap();
        let pidfile = t.path().join("grandchild.pid");
        let script = format!(
            "sleep 300 >/dev/null 2>&1 </dev/null & echo $! > {}; wait",
            pidfile.display()
        );
        let o = run_step(
            &sh(&script, Duration::from_millis(500)),
            &t.path().join("l"),
            &|_| {},
        )
        .unwrap();
        assert!(o.timed_out && !o.success(), "{o:?}");
        let pid = read_pid(&pidfile);
        assert!(dies(pid), "grandchild {pid} survived the timeout");
    }

    /// A timeout sends SIGTERM first: a step that handles it gets to exit on its own
    /// (here it writes a file and exits 0, and is still reported as timed out).
    #[test]
    fn a_timeout_sends_sigterm_first() {
        let t = tempfile::tempdir().unwrap();
        let got = t.path().join("got-term");
        let script = format!(
            "trap 'echo term > {}; exit 0' TERM; sleep 300 >/dev/null & wait",
            got.display()
        );
        let o = run_step(
            &sh(&script, Duration::from_millis(300)),
            &t.path().join("l"),
            &|_| {},
        )
        .unwrap();
        assert!(o.timed_out && !o.success(), "{o:?}");
        assert_eq!(std::fs::read_to_string(&got).unwrap().trim(), "term");
    }

    /// A group that ignores SIGTERM gets SIGKILL after the grace period: leader and
    /// grandchild are both gone.
    #[test]
    fn a_group_that_ignores_sigterm_gets_sigkill() {
        let t = tempfile::tempdir().unwrap();
        let pids = t.path().join("pids");
        let script = format!(
            "trap '' TERM; sleep 300 >/dev/null & echo $! > {p}; echo $$ >> {p}; wait",
            p = pids.display()
        );
        let o = run_step(
            &sh(&script, Duration::from_millis(300)),
            &t.path().join("l"),
            &|_| {},
        )
        .unwrap();
        assert!(o.timed_out && o.code.is_none(), "{o:?}");
        for pid in std::fs::read_to_string(&pids).unwrap().lines() {
            let pid: i32 = pid.trim().parse().unwrap();
            assert!(dies(pid), "{pid} survived SIGKILL");
        }
    }

    /// A daemon that escaped the process group (`setsid`) and keeps stdout open (for
    /// far longer than this test may take) does not hold the step up: the step returns,
    /// within a generous bound against a hang, with its real outcome (exit 0, not timed
    /// out, a duration below its 5 s timeout). Without the bounded drain it never returns.
    #[test]
    fn an_escaped_daemon_holding_stdout_does_not_hang_the_step() {
        let t = tempfile::tempdir().unwrap();
        let pidfile = t.path().join("daemon.pid");
        let script = format!(
            "setsid sleep 100000 & echo $! > {}; echo started",
            pidfile.display()
        );
        let log = t.path().join("l");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let seen = std::sync::Mutex::new(Vec::new());
            let o = run_step(&sh(&script, Duration::from_secs(5)), &log, &|b| {
                seen.lock().unwrap().extend_from_slice(b)
            });
            let _ = tx.send((o.map_err(|e| e.to_string()), seen.into_inner().unwrap()));
        });
        let got = rx.recv_timeout(Duration::from_secs(120));
        if let Ok(p) = std::fs::read_to_string(&pidfile) {
            // SAFETY: kill(2) of the test's own daemon.
            unsafe { libc::kill(p.trim().parse().unwrap_or(0).max(2), libc::SIGKILL) };
        }
        let (o, seen) = got.expect("the step hung on the escaped daemon's stdout");
        let o = o.unwrap();
        assert_eq!((o.code, o.timed_out), (Some(0), false), "{o:?}");
        assert!(
            o.secs < 5.0,
            "reported the daemon's lifetime, not the step's: {o:?}"
        );
        assert!(String::from_utf8_lossy(&seen).contains("started"));
    }

    /// A log that cannot be created does not fail the step: it runs, its output reaches
    /// the caller and the tail, and the outcome says which path failed and how.
    #[test]
    fn an_unwritable_log_is_reported_not_fatal() {
        let t = tempfile::tempdir().unwrap();
        let log = t.path().join("no-such-dir/s.log");
        let o = run_step(&sh("echo hello", Duration::from_secs(30)), &log, &|_| {}).unwrap();
        assert!(o.success(), "{o:?}");
        let why = o.log_error.unwrap();
        assert!(
            why.starts_with("create log ") && why.contains("no-such-dir"),
            "{why}"
        );
        assert_eq!(o.tail, b"hello\n");
        // A full device: the log opens, every write fails.
        let o = run_step(
            &sh("echo hello", Duration::from_secs(30)),
            Path::new("/dev/full"),
            &|_| {},
        )
        .unwrap();
        assert!(o.success(), "{o:?}");
        assert!(o.log_error.unwrap().starts_with("write log /dev/full"));
    }
}
