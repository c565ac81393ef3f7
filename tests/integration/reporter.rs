//! The terminal as a user sees it: `run`'s progress bar on a pseudo-terminal, with plugin log lines
//! printed during the run, replayed through a small terminal model.

use crate::common::{bin, workload};
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::Stdio;

/// A pseudo-terminal pair of `cols` columns: (master, slave).
fn openpty(cols: u16) -> (OwnedFd, OwnedFd) {
    let (mut master, mut slave) = (0, 0);
    let size = libc::winsize { ws_row: 40, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: out-pointers to two ints and a valid winsize; no name buffer, default termios.
    let rc = unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), &size) };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors are fresh and owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) }
}

/// Replays what a program wrote to a terminal, handling what progress bars use (CR, LF, cursor up
/// and down, erase line and below, colours and cursor visibility); returns the screen's lines.
fn screen(raw: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(raw);
    let mut rows: Vec<Vec<char>> = vec![Vec::new()];
    let (mut row, mut col) = (0usize, 0usize);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => col = 0,
            '\n' => {
                row += 1;
                col = 0;
                if rows.len() <= row {
                    rows.push(Vec::new());
                }
            }
            '\x1b' if chars.peek() == Some(&'[') => {
                chars.next();
                let mut param = String::new();
                let mut cmd = ' ';
                for d in chars.by_ref() {
                    if d.is_ascii_alphabetic() {
                        cmd = d;
                        break;
                    }
                    param.push(d);
                }
                let n: usize =
                    param.trim_start_matches('?').split(';').next().and_then(|p| p.parse().ok()).unwrap_or(1);
                match cmd {
                    'A' => row = row.saturating_sub(n),
                    'B' => row += n,
                    'G' => col = n.saturating_sub(1),
                    'K' if param == "2" => rows[row].clear(),
                    'K' => rows[row].truncate(col),
                    'J' => {
                        rows[row].truncate(col);
                        rows.truncate(row + 1);
                    }
                    _ => {} // colours, cursor visibility
                }
                while rows.len() <= row {
                    rows.push(Vec::new());
                }
            }
            c if c.is_control() => {}
            c => {
                let line = &mut rows[row];
                while line.len() < col {
                    line.push(' ');
                }
                if col < line.len() {
                    line[col] = c;
                } else {
                    line.push(c);
                }
                col += 1;
            }
        }
    }
    rows.into_iter().map(|r| r.into_iter().collect::<String>().trim_end().to_string()).collect()
}

#[test]
fn plugin_log_lines_during_a_run_print_above_the_progress_bar_not_through_it() {
    let (master, slave) = openpty(120);
    let steps = 8;
    let mut child = bin()
        .args(["run", &workload("ckpt.toml"), "--seed", "1", "--set", "target.uri=\"null://\""])
        .args(["--set", "params.model=\"llama3-1b\"", "--set", "params.ranks=2"])
        .args(["--set", &format!("params.steps={steps}"), "--set", "params.verify=false"])
        .env_remove("NO_COLOR")
        .env("TERM", "xterm-256color")
        .stdin(Stdio::null())
        // A terminal shows both: the table on stdout, the bar and the log lines on stderr.
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave))
        .spawn()
        .unwrap();
    let mut raw = Vec::new();
    let mut master = std::fs::File::from(master);
    let mut buf = [0u8; 65536];
    loop {
        match master.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            // EIO: the child closed its end of the terminal.
            Err(_) => break,
        }
    }
    let status = child.wait().unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(status.success(), "{text}");

    // The bar was drawn with the total the plugin declared (percent and ETA), and drawn before the
    // last log line came: the log lines really were printed while a bar was on the screen.
    let first_bar = text.find("% ").and_then(|i| text[i..].find("eta").map(|j| i + j)).expect(&text);
    let last_log = text.rfind(&format!("step {}:", steps - 1)).expect(&text);
    assert!(first_bar < last_log, "no bar drawn before the last log line: {text}");

    // On the screen each log line stands alone and whole, in order; no bar is left behind.
    let lines = screen(&raw);
    let logs: Vec<&String> = lines.iter().filter(|l| l.contains("step ") && l.contains("tensor bytes")).collect();
    assert_eq!(logs.len(), steps, "{lines:#?}");
    for (i, l) in logs.iter().enumerate() {
        let want = format!("[ckpt] info: step {i}: 2 shards, ");
        assert!(l.starts_with(&want) && l.ends_with(" tensor bytes"), "line {i}: {l:?} in {lines:#?}");
    }
    assert!(!lines.iter().any(|l| l.contains("eta ")), "the bar is left on the screen: {lines:#?}");
    assert!(lines.iter().any(|l| l.starts_with("dgen-engine run: workload 'ckpt'")), "{lines:#?}");
}
