//! A shared plugin is a stranger's code: a hostile plugin (tests/plugins/hostile, one attack per
//! `mode`) must not make the host hold unaccounted memory, read storage it did not write, outlive
//! Ctrl-C or drive the terminal; bad workload values and flags must be refused before anything is
//! allocated. Each case checks the exit code, the one-line message naming the limit or key, the peak
//! RSS of the engine (from `wait4`) and what is left in the target root.

use crate::common::*;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const LIMIT_MIB: u64 = 64;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The hostile plugin, built once for all cases (and compiled once: the cache is keyed by content).
pub(crate) fn plugin() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| {
        let out = std::env::temp_dir().join(format!("dgen-hostile-host-{}.wasm", std::process::id()));
        let crate_dir = root().join("tests/plugins/hostile");
        let o = run(&["plugin", "build", crate_dir.to_str().unwrap(), "-o", out.to_str().unwrap()]);
        assert!(o.status.success(), "building the hostile plugin: {}", shown(&o));
        // One run compiles it into the engine's cache, so that no measured run pays for compiling.
        let dir = tempdir("harden-warm");
        let wl = dir.join("w.toml");
        let text = format!(
            "name = \"warm\"\nplugin = \"{}\"\n[target]\nuri = \"null://\"\n[params]\nmode = \"noop\"\n",
            out.display()
        );
        std::fs::write(&wl, text).unwrap();
        let o = run(&["run", wl.to_str().unwrap(), "-q"]);
        assert!(o.status.success(), "warming the hostile plugin: {}", shown(&o));
        std::fs::remove_dir_all(dir).ok();
        out
    })
}

/// A run of the engine, with what a user would look at afterwards.
pub(crate) struct Ran {
    pub(crate) out: Output,
    /// Peak resident memory of the engine process, bytes.
    pub(crate) rss: u64,
    /// Files left under the target root.
    pub(crate) left: Vec<String>,
    pub(crate) took: Duration,
}

impl Ran {
    pub(crate) fn err(&self) -> String {
        shown(&self.out)
    }
    pub(crate) fn code(&self) -> Option<i32> {
        self.out.status.code()
    }
}

/// Spawns the engine with piped output; `wait_measured` reaps it.
fn spawn(cmd: &mut Command) -> (Child, std::thread::JoinHandle<Vec<u8>>, std::thread::JoinHandle<Vec<u8>>) {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn dgen-engine");
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let a = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let b = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    (child, a, b)
}

/// Waits for the child with `wait4`, which reports its own peak RSS (getrusage of one child).
fn wait_measured(
    child: Child,
    so: std::thread::JoinHandle<Vec<u8>>,
    se: std::thread::JoinHandle<Vec<u8>>,
) -> (Output, u64) {
    let pid = child.id() as i32;
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for our own child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    assert_eq!(rc, pid, "wait4");
    std::mem::forget(child); // reaped above
    let out = Output {
        status: std::process::ExitStatus::from_raw(status),
        stdout: so.join().unwrap(),
        stderr: se.join().unwrap(),
    };
    (out, ru.ru_maxrss as u64 * 1024)
}

pub(crate) struct Case {
    pub(crate) dir: PathBuf,
    pub(crate) workload: PathBuf,
}

impl Case {
    /// A workload running the hostile plugin in `mode` with extra `[params]` lines, a 4 × 1 MiB
    /// pool and a 64 MiB plugin memory limit, into `DIR/out`.
    pub(crate) fn new(name: &str, mode: &str, params: &str) -> Case {
        let dir = tempdir(&format!("harden-{name}"));
        let workload = dir.join("w.toml");
        std::fs::write(
            &workload,
            format!(
                "name = \"hostile\"\nplugin = \"{}\"\n[target]\nuri = \"file://{}\"\n[pipeline]\nbuffer_size = \"1MiB\"\nbuffers = 4\nthreads = 2\n[limits]\nmemory = \"{LIMIT_MIB}MiB\"\nfuel = 1e13\ndeadline = 60\n[params]\nmode = \"{mode}\"\n{params}\n",
                plugin().display(),
                dir.join("out").display()
            ),
        )
        .unwrap();
        Case { dir, workload }
    }

    pub(crate) fn out(&self) -> PathBuf {
        self.dir.join("out")
    }

    pub(crate) fn command(&self, verb: &str, extra: &[&str]) -> Command {
        let mut c = bin();
        c.arg(verb).arg(&self.workload).args(extra);
        c
    }

    fn finish(&self, (out, rss): (Output, u64), took: Duration) -> Ran {
        Ran { out, rss, left: files_under(&self.out()), took }
    }

    pub(crate) fn run(&self, extra: &[&str]) -> Ran {
        self.run_verb("run", extra)
    }

    pub(crate) fn run_verb(&self, verb: &str, extra: &[&str]) -> Ran {
        let t = Instant::now();
        let (child, a, b) = spawn(&mut self.command(verb, extra));
        let r = wait_measured(child, a, b);
        self.finish(r, t.elapsed())
    }

    /// Runs, presses Ctrl-C (SIGINT) once `ready` holds of the time since the start, and measures
    /// how long the engine takes to exit after it.
    pub(crate) fn interrupt_after(&self, extra: &[&str], after: Duration) -> (Ran, Duration) {
        self.signal_after(extra, after, nix::sys::signal::Signal::SIGINT)
    }

    /// As [`Case::interrupt_after`], with another signal (SIGTERM).
    pub(crate) fn signal_after(
        &self,
        extra: &[&str],
        after: Duration,
        signal: nix::sys::signal::Signal,
    ) -> (Ran, Duration) {
        let t = Instant::now();
        let (child, a, b) = spawn(&mut self.command("run", extra));
        std::thread::sleep(after);
        let pressed = Instant::now();
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal);
        let r = wait_measured(child, a, b);
        let exit_after = pressed.elapsed();
        (self.finish(r, t.elapsed()), exit_after)
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Peak RSS of a run that does nothing hostile: the engine, its pool, a tiny plugin.
pub(crate) fn baseline() -> u64 {
    static BASE: OnceLock<u64> = OnceLock::new();
    *BASE.get_or_init(|| {
        let case = Case::new("noop", "noop", "");
        // Twice: the first run compiles the plugin into the cache; the second is the steady cost.
        let _ = case.run(&["-q"]);
        let r = case.run(&["-q"]);
        assert_eq!(r.code(), Some(0), "{}", r.err());
        r.rss
    })
}

/// The failing line of a run: exactly one line on stderr, naming the plugin.
pub(crate) fn one_error_line(r: &Ran) -> String {
    let err = r.err();
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "want one error line: {err}");
    assert!(lines[0].contains("plugin 'hostile-host 0.1.0'"), "the plugin is not named: {err}");
    lines[0].to_string()
}

/// Memory within the limit: peak RSS at most the baseline (engine + pool) plus the plugin's limit,
/// with 8 MiB for the allocator's slack.
pub(crate) fn assert_within_limit(what: &str, r: &Ran) {
    let base = baseline();
    eprintln!("peak RSS {what}: {} MiB (baseline {} MiB)", r.rss >> 20, base >> 20);
    let allowed = base + (LIMIT_MIB << 20) + (8 << 20);
    assert!(
        r.rss <= allowed,
        "{what}: peak RSS {} MiB, more than baseline {} MiB + limit {LIMIT_MIB} MiB: {}",
        r.rss >> 20,
        base >> 20,
        r.err()
    );
}

#[test]
fn host_memory_held_for_a_plugin_is_accounted() {
    let memory = format!("exceeded its memory limit of {LIMIT_MIB} MiB ([limits] memory)");
    let cases: &[(&str, &str, &[&str], &str)] = &[
        ("reserve", "", &[], "reserving a region"),
        ("metrics", "", &[], "recording a metric"),
        ("interleave", "", &[], ""),
        ("profiles", "", &[], "data profiles"),
        ("fields", "", &[], "adding a field"),
        // Objects are charged as they are opened and again as they are committed: the limit is met
        // at whichever comes first (it moves with the plugin's own memory).
        ("objects", "", &["--set", "target.uri=\"null://\""], "committing an object|opening a target"),
    ];
    let mut failures = Vec::new();
    for &(mode, params, sets, what) in cases {
        let case = Case::new(mode, mode, params);
        let mut args = vec!["-q"];
        args.extend_from_slice(sets);
        let r = case.run(&args);
        if r.code() != Some(4) {
            failures.push(format!("{mode}: exit {:?}: {}", r.code(), r.err()));
            continue;
        }
        let line = one_error_line(&r);
        if !line.contains(&memory) || !what.split('|').any(|w| line.contains(w)) {
            failures.push(format!("{mode}: the message does not name the limit ({what}): {line}"));
        }
        if !r.left.is_empty() {
            failures.push(format!("{mode}: left {:?}", r.left));
        }
        assert_within_limit(mode, &r);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn consecutive_fills_cost_one_segment() {
    // Three million 1-byte fills on one object: the layout stays one segment, memory flat.
    let case = Case::new("fills", "fills", "count = 3000000");
    let r = case.run(&["-q"]);
    assert_eq!(r.code(), Some(0), "{}", r.err());
    assert_eq!(std::fs::metadata(case.out().join("confetti.bin")).unwrap().len(), 3_000_000);
    let base = baseline();
    assert!(r.rss <= base + (16 << 20), "peak RSS {} MiB vs baseline {} MiB", r.rss >> 20, base >> 20);
}

#[test]
fn plugin_sized_arguments_are_refused_before_the_host_copies_them() {
    let cases: &[(&str, &str, &str)] = &[
        ("long-name", "", "target name of 100000 bytes is longer than the 1024 bytes allowed"),
        ("metric-name", "", "metric name of 1000 bytes is longer than the 256 bytes allowed"),
        ("big-write", "size = 50331648", "write of 50331648 bytes exceeds the 1048576 bytes allowed per call"),
    ];
    for &(mode, params, want) in cases {
        let case = Case::new(mode, mode, params);
        let r = case.run(&["-q"]);
        assert_eq!(r.code(), Some(4), "{mode}: {}", r.err());
        let line = one_error_line(&r);
        assert!(line.contains(want), "{mode}: {line}");
        assert!(r.left.is_empty(), "{mode}: left {:?}", r.left);
        assert_within_limit(mode, &r);
    }
}

#[test]
fn names_are_written_once_and_long_legal_names_work() {
    let case = Case::new("dup", "dup-name", "");
    let r = case.run(&["-q"]);
    assert_eq!(r.code(), Some(4), "{}", r.err());
    let line = one_error_line(&r);
    assert!(line.contains("'twice.bin' was already opened in this run: each name is written once per run"), "{line}");
    assert_eq!(r.left, vec!["twice.bin".to_string()], "the first one is written, whole");
    assert_within_limit("dup-name", &r);

    // A 250-byte name is legal: its temporary name must fit the 255-byte limit too.
    let case = Case::new("n250", "name-250", "");
    let r = case.run(&["-q"]);
    assert_eq!(r.code(), Some(0), "{}", r.err());
    assert_eq!(r.left, vec!["b".repeat(250)]);
    assert_eq!(std::fs::metadata(case.out().join("b".repeat(250))).unwrap().len(), 1000);
}

#[test]
fn huge_objects_are_refused_without_allocating() {
    // 8 EiB, as large as a file can be: refused by the host at the fill.
    let case = Case::new("huge", "huge-fill", &format!("size = {}", i64::MAX));
    let r = case.run(&["-q"]);
    assert_eq!(r.code(), Some(4), "{}", r.err());
    let line = one_error_line(&r);
    assert!(
        line.contains(
            "'huge.bin': a fill of 8.00 EiB would run past the end of the run's data stream (4 EiB per data profile)"
        ),
        "{line}"
    );
    assert!(r.left.is_empty(), "left {:?}", r.left);

    // 1 EiB into the null sink: writing starts (nothing sized by the object is allocated), and
    // Ctrl-C stops it.
    let case = Case::new("huge-null", "huge-fill", &format!("size = {}", 1u64 << 60));
    let (r, exit_after) = case.interrupt_after(&["-q", "--set", "target.uri=\"null://\""], Duration::from_secs(2));
    assert_eq!(r.code(), Some(130), "{}", r.err());
    assert!(exit_after < Duration::from_secs(3), "took {exit_after:?} to stop");
    assert_within_limit("huge-null", &r);

    // 1 EiB into a file: a file system that cannot hold it says so before a byte is written (ext4:
    // 16 TiB); one that can starts writing, and Ctrl-C stops it. Either way nothing is left.
    let case = Case::new("huge-file", "huge-fill", &format!("size = {}", 1u64 << 60));
    let (child, a, b) = spawn(&mut case.command("run", &["-q"]));
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(3)
        && std::fs::metadata(format!("/proc/{}", child.id())).is_ok_and(|_| {
            std::fs::read_to_string(format!("/proc/{}/stat", child.id())).is_ok_and(|s| !s.contains(") Z "))
        })
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT);
    let r = case.finish(wait_measured(child, a, b), t.elapsed());
    match r.code() {
        Some(3) => assert!(r.err().contains("the file system does not hold a file of 1 EiB"), "{}", r.err()),
        Some(130) => {}
        other => panic!("exit {other:?}: {}", r.err()),
    }
    assert!(r.left.is_empty(), "left {:?}", r.left);
    assert_within_limit("huge-file", &r);

    // gen: sizes beyond a file, and pools beyond the machine, are refused before anything exists.
    let dir = tempdir("huge-gen");
    let file = dir.join("x.bin");
    for (args, want) in [
        (vec!["--size", "16000000TiB"], "--size"),
        (vec!["--size", "1MiB", "--buffers", "65536", "--buffer-size", "1GiB"], "more than three quarters"),
        (vec!["--size", "1MiB", "--threads", "20000"], "--threads"),
        (vec!["--size", "1MiB", "--queue-depth", "100000"], "--queue-depth"),
    ] {
        let mut a = vec!["gen", "-o", file.to_str().unwrap(), "-q"];
        a.extend(args.iter().copied());
        let o = run(&a);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", shown(&o));
        assert!(shown(&o).contains(want), "{args:?}: {}", shown(&o));
        assert_eq!(shown(&o).lines().count(), 1, "{args:?}: {}", shown(&o));
        assert!(files_under(&dir).is_empty(), "{args:?} left {:?}", files_under(&dir));
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn ctrl_c_stops_a_running_plugin_and_host_work_done_for_it() {
    // A plugin spinning in its own code, with fuel and deadline to spare.
    let case = Case::new("spin", "spin", "");
    let (r, exit_after) = case.interrupt_after(&[], Duration::from_secs(2));
    assert!(r.err().contains("spinning"), "{}", r.err());
    assert_eq!(r.code(), Some(130), "{}", r.err());
    assert!(exit_after < Duration::from_secs(1), "Ctrl-C took {exit_after:?} to stop the plugin");
    assert!(r.left.is_empty(), "left {:?}", r.left);
    assert_within_limit("spin", &r);

    // Host work done at commit for the plugin (the CRC field over 1 TiB of fill).
    let case = Case::new("crc-int", "crc-work", &format!("size = {}", 1u64 << 40));
    let (r, exit_after) = case.interrupt_after(&["-q"], Duration::from_secs(2));
    assert_eq!(r.code(), Some(130), "{}", r.err());
    assert!(exit_after < Duration::from_secs(1), "Ctrl-C took {exit_after:?} to stop the commit");
    assert!(r.left.is_empty(), "left {:?}", r.left);
    assert_within_limit("crc-work", &r);
}

#[test]
fn host_work_counts_against_the_deadline() {
    // The CRC of a 1 TiB fill is worked out at commit: it is the plugin's time.
    let case = Case::new("crc-deadline", "crc-work", &format!("size = {}", 1u64 << 40));
    let r = case.run(&["-q", "--set", "limits.deadline=2"]);
    assert_eq!(r.code(), Some(4), "{}", r.err());
    assert!(one_error_line(&r).contains("ran past its deadline of 2 s"), "{}", r.err());
    assert!(r.took < Duration::from_secs(15), "took {:?}", r.took);
    assert!(r.left.is_empty(), "left {:?}", r.left);
    assert_within_limit("crc-deadline", &r);

    // Re-reading one object without end: each object is read back once, so the loop is the
    // plugin's own time and the deadline ends it.
    let case = Case::new("verify-loop", "verify-loop", "size = 8388608");
    let r = case.run(&["-q", "--set", "limits.deadline=2"]);
    assert_eq!(r.code(), Some(4), "{}", r.err());
    assert!(one_error_line(&r).contains("ran past its deadline of 2 s"), "{}", r.err());
    assert!(r.took < Duration::from_secs(15), "took {:?}", r.took);
    assert_within_limit("verify-loop", &r);
}

#[test]
fn verify_tells_the_plugin_nothing_of_what_is_stored() {
    let case = Case::new("oracle", "oracle", "name = \"secret.txt\"");
    let secret = "TOPSECRET-7c0ffee-the-launch-code-is-42";
    std::fs::create_dir_all(case.out()).unwrap();
    std::fs::write(case.out().join("secret.txt"), secret).unwrap();
    let json = case.dir.join("report.json");
    let r = case.run_verb("verify", &["--json-report", json.to_str().unwrap()]);
    assert_eq!(r.code(), Some(1), "{}", r.err());
    let report = std::fs::read_to_string(&json).unwrap();
    let all = format!("{}{}{report}", String::from_utf8_lossy(&r.out.stdout), r.err());
    // Not the secret, not a piece of it in any encoding a guess-by-guess plugin would report.
    for needle in [secret, "TOPSECRET", &format!("{:?}", secret.as_bytes()[..4].to_vec())] {
        assert!(!all.contains(needle), "'{needle}' reached the output: {all}");
    }
    let v: serde_json::Value = serde_json::from_str(&report).unwrap();
    let summary = v["summary"].as_str().unwrap();
    // The plugin was told: no match, and it may not guess again under the same name.
    assert!(summary.contains("does not match what was written"), "{summary}");
    assert!(summary.contains("was already opened in this run"), "{summary}");
    for leak in ["offset", "found", "0x", &secret.len().to_string()] {
        assert!(!summary.contains(leak), "the plugin learned '{leak}': {summary}");
    }
    // What it was told of the object: no CRC, no timing.
    assert!(summary.contains("stats [(1, 0, 0)]"), "{summary}");
    // The user's report has the details.
    assert_eq!(v["verify"][0]["identical"], false);
    // The file carries no identity: it is not compared at all.
    assert!(v["verify"][0]["verdict"].as_str().unwrap().contains("carries no identity"), "{report}");
    assert_within_limit("oracle", &r);
    // The secret is untouched.
    assert_eq!(std::fs::read_to_string(case.out().join("secret.txt")).unwrap(), secret);
}

#[test]
fn plugin_text_cannot_drive_the_terminal() {
    let case = Case::new("escape", "escape", "");
    let r = case.run(&[]);
    assert_eq!(r.code(), Some(0), "{}", r.err());
    let raw = &[&r.out.stdout[..], &r.out.stderr[..]].concat();
    assert!(!raw.contains(&0x1b) && !raw.contains(&b'\r') && !raw.contains(&0x07), "raw control bytes: {:?}", r.err());
    let err = r.err();
    assert!(err.contains("\\x1b[2J\\x1b[Hall clear\\r\\n  PASS everything verified"), "{err}");
    assert!(err.contains("\\x1b[32mfake\\x1b[0m"), "{err}");
    assert!(err.contains("\\u{202e}txet desrever"), "{err}");
    // One plugin log call is one terminal line.
    assert_eq!(err.lines().filter(|l| l.contains("all clear")).count(), 1, "{err}");

    let case = Case::new("flood", "log-flood", "count = 100000");
    let r = case.run(&[]);
    assert_eq!(r.code(), Some(0), "{}", r.err());
    let err = r.err();
    let shown = err.lines().filter(|l| l.starts_with("[hostile-host] info: line")).count();
    assert!((100..=200).contains(&shown), "{shown} log lines shown");
    assert!(err.lines().all(|l| l.chars().count() <= 1100), "a line longer than the cap");
    assert!(err.contains("log lines not shown"), "{}", &err[err.len().saturating_sub(2000)..]);
    assert!(err.contains("cut to 1000 characters"), "{}", &err[err.len().saturating_sub(2000)..]);
}

#[test]
fn trap_messages_are_one_line_with_the_backtrace_behind_verbose() {
    let dir = tempdir("trap-verbose");
    let wl = dir.join("w.toml");
    std::fs::write(
        &wl,
        format!(
            "name = \"t\"\nplugin = \"{}\"\n[target]\nuri = \"file://{}\"\n",
            root().join("tests/plugins/trap").display(),
            dir.join("out").display()
        ),
    )
    .unwrap();
    let json = dir.join("r.json");
    let o = run(&["run", wl.to_str().unwrap(), "-q", "--json-report", json.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(4), "{}", shown(&o));
    let err = shown(&o);
    assert_eq!(err.lines().filter(|l| l.starts_with("error: plugin 'hostile-trap")).count(), 1, "{err}");
    assert!(!err.contains("backtrace") && !err.contains("Caused by"), "{err}");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(v["error_detail"].as_str().unwrap().contains("wasm backtrace"), "{v}");
    let o = run(&["run", wl.to_str().unwrap(), "-q", "-v"]);
    assert_eq!(o.status.code(), Some(4));
    assert!(shown(&o).lines().filter(|l| l.starts_with("detail:")).count() > 1, "{}", shown(&o));
    std::fs::remove_dir_all(dir).ok();
}

/// This host's tag in temporary names (as the file sink makes it: FNV-1a of the host name).
fn host_tag() -> String {
    let host = nix::unistd::gethostname().unwrap().to_string_lossy().into_owned();
    let h = host.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    format!("{:08x}", h as u32)
}

#[test]
fn temporaries_of_a_killed_run_are_removed_by_the_next() {
    // A run killed with SIGKILL mid-write leaves its temporary behind.
    let case = Case::new("killed", "huge-fill", &format!("size = {}", 64u64 << 30));
    let (child, a, b) = spawn(&mut case.command("run", &["-q"]));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !files_under(&case.out()).iter().any(|f| f.contains(".dgen-tmp.")) {
        assert!(Instant::now() < deadline, "no temporary appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGKILL);
    let _ = wait_measured(child, a, b);
    let left = files_under(&case.out());
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].starts_with(".huge.bin.dgen-tmp.") && !left.contains(&"huge.bin".to_string()), "{left:?}");
    // A temporary of a live process (this test's) is not touched.
    let live = case.out().join(format!(".other.dgen-tmp.{}.{}.0", host_tag(), std::process::id()));
    std::fs::write(&live, b"in use").unwrap();
    let noop = std::fs::read_to_string(&case.workload).unwrap().replace("mode = \"huge-fill\"", "mode = \"noop\"");
    std::fs::write(&case.workload, noop).unwrap();
    let r = case.run(&[]);
    assert_eq!(r.code(), Some(0), "{}", r.err());
    let notes: Vec<&str> = r
        .out
        .stderr
        .split(|&b| b == b'\n')
        .filter_map(|l| std::str::from_utf8(l).ok())
        .filter(|l| l.contains("temporary file"))
        .collect();
    assert_eq!(notes.len(), 1, "{}", r.err());
    assert!(notes[0].contains("removed 1 temporary file left under"), "{}", notes[0]);
    assert_eq!(
        files_under(&case.out()),
        vec![live.file_name().unwrap().to_string_lossy().into_owned(), "noop.bin".into()]
    );
}

#[test]
fn workload_values_out_of_range_are_refused_naming_the_key() {
    let dir = tempdir("ranges");
    let plugin = root().join("plugins/objects");
    let head = format!("name = \"x\"\nplugin = \"{}\"\n", plugin.display());
    let fifo = dir.join("fifo.wasm");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "b0.toml",
            format!("{head}[pipeline]\nbuffers = 0\n"),
            "b0.toml:4: pipeline.buffers: 0 is out of range: must be from 1 to 65536",
        ),
        (
            "bmax.toml",
            format!("{head}[pipeline]\nbuffers = 4294967295\n"),
            "bmax.toml:4: pipeline.buffers: 4294967295 is out of range",
        ),
        ("bfloat.toml", format!("{head}[pipeline]\nbuffers = 1.5\n"), "bfloat.toml:4: pipeline.buffers"),
        (
            "bmem.toml",
            format!("{head}[pipeline]\nbuffers = 60000\nbuffer_size = \"1GiB\"\n"),
            "pipeline.buffers: a pool of 60000 × 1 GiB",
        ),
        (
            "qd.toml",
            format!("{head}[target]\nqueue_depth = 100000\n"),
            "qd.toml:4: target.queue_depth: 100000 is out of range: must be from 1 to 1024",
        ),
        (
            "thr.toml",
            format!("{head}[pipeline]\nthreads = 20000\n"),
            "thr.toml:4: pipeline.threads: 20000 is out of range",
        ),
        (
            "conc.toml",
            format!("{head}[pipeline]\nconcurrency = 0\n"),
            "conc.toml:4: pipeline.concurrency: 0 is out of range",
        ),
        (
            "mem.toml",
            format!("{head}[limits]\nmemory = 0\n"),
            "mem.toml:4: limits.memory: must be from 1 MiB to 64 GiB",
        ),
        ("dl.toml", format!("{head}[limits]\ndeadline = 0\n"), "dl.toml:4: limits.deadline: 0 is out of range"),
        ("fuel.toml", format!("{head}[limits]\nfuel = -1\n"), "fuel.toml:4: limits.fuel"),
        (
            "bs.toml",
            format!("{head}[pipeline]\nbuffer_size = 0\n"),
            "bs.toml:4: pipeline.buffer_size: must be from 1 byte to 1 GiB",
        ),
        (
            "pin.toml",
            "name = \"x\"\nplugin = { path = \"fifo.wasm\", sha256 = \"abc\" }\n".to_string(),
            "pin.toml:2: plugin: sha256 must be 64 hexadecimal digits (the output of `sha256sum`), not 3 characters",
        ),
        ("fifo.toml", "name = \"x\"\nplugin = \"fifo.wasm\"\n".to_string(), "fifo.toml:2: plugin:"),
        (
            "dev.toml",
            format!("name = \"x\"\nplugin = {{ path = \"/dev/zero\", sha256 = \"{}\" }}\n", "0".repeat(64)),
            "dev.toml:2: plugin: /dev/zero is not a regular file",
        ),
        (
            "devcrate.toml",
            "name = \"x\"\nplugin = \"/dev/zero\"\n".to_string(),
            "is neither a .wasm file nor a plugin crate directory",
        ),
    ];
    for (file, text, want) in cases {
        let path = dir.join(file);
        std::fs::write(&path, text).unwrap();
        let o = run(&["run", path.to_str().unwrap()]);
        let err = shown(&o);
        assert_eq!(o.status.code(), Some(2), "{file}: {err}");
        assert!(err.contains(want), "{file}: wanted '{want}' in: {err}");
        assert_eq!(err.lines().count(), 1, "{file}: {err}");
    }
    // A workload that is a FIFO is refused, not waited on.
    let fifo_wl = dir.join("w.fifo");
    nix::unistd::mkfifo(&fifo_wl, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let o = run(&["run", fifo_wl.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", shown(&o));
    assert!(shown(&o).contains("is not a regular file"), "{}", shown(&o));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_plugin_log_line_does_not_break_the_progress_line() {
    // On a pseudo-terminal (util-linux `script`), the bar is drawn; a log line during the run must
    // come out on a line of its own, the bar cleared before it, not glued to the bar's text.
    let case = Case::new("pty", "log-during", &format!("size = {}", 24u64 << 30));
    let cmd =
        format!("{} run {} --set target.uri='\"null://\"'", env!("CARGO_BIN_EXE_dgen-engine"), case.workload.display());
    let o = Command::new("script").args(["-qfec", &cmd, "/dev/null"]).output().expect("script (util-linux)");
    let raw = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{raw}");
    let at = raw.find("[hostile-host] info: halfway there").unwrap_or_else(|| panic!("no log line: {raw:?}"));
    assert!(raw.contains("written"), "no progress bar was drawn: {raw:?}");
    let line_start = raw[..at].rfind(['\n', '\r']).map_or(0, |i| i + 1);
    // What stands between the start of the line and the log text: escape sequences at most.
    let between = strip_ansi(&raw[line_start..at]);
    assert!(between.trim().is_empty(), "the log line shares a line with {between:?}: {raw:?}");
}

/// Text without ANSI CSI escape sequences.
fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' && chars.peek() == Some(&'[') {
            chars.next();
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
