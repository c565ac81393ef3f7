//! A hostile test plugin with one attack per `mode` (a workload param): each tries to make the host
//! hold memory it never accounted, read storage it did not write, outlive Ctrl-C, or drive the
//! terminal. The tests check that the host stops every one, naming the limit it hit.

use dgen_plugin_sdk::{
    delete, export_plugin, list, log, metric, read_range, stat, verify, wait_all, wait_reads, Config, FieldKind,
    Plugin, ReadCheck, Report, Target,
};
use serde::Deserialize;

#[derive(Deserialize)]
struct Params {
    mode: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    count: u64,
    #[serde(default)]
    how: String,
    #[serde(default)]
    offset: u64,
}

struct Hostile;

fn name_of(i: u64, len: usize) -> String {
    let stem = format!("obj-{i:012}-");
    format!("{stem}{}", "n".repeat(len.saturating_sub(stem.len())))
}

impl Plugin for Hostile {
    #[allow(unreachable_code)]
    fn run(config: &Config) -> Result<Report, String> {
        let p: Params = config.params()?;
        match p.mode.as_str() {
            // Under several ranks, rank 2 fails after its first object, as `how` says: "trap"
            // (a panic while the others keep writing) or "hang" (a loop in its own code while the
            // others wait for it at a barrier, so only its deadline can stop it). Either way the
            // whole run must stop, naming rank 2.
            "rank2" => {
                for i in 0..p.count {
                    let mut t = Target::open(&format!("r{}-{i:06}.bin", config.rank))?;
                    t.fill(p.size)?;
                    t.commit()?;
                    wait_all()?;
                    match (config.rank, p.how.as_str()) {
                        (2, "trap") => panic!("rank 2 gives up after object {i}"),
                        (2, "hang") => {
                            let mut x = 0u64;
                            loop {
                                x = std::hint::black_box(x.wrapping_add(1));
                            }
                        }
                        (_, "hang") => dgen_plugin_sdk::barrier(),
                        _ => {}
                    }
                }
            }
            // Nothing hostile: what the engine costs on its own (the baseline for memory checks).
            "noop" => {
                let mut t = Target::open("noop.bin")?;
                t.fill(4096)?;
                t.commit()?;
                wait_all()?;
            }
            // 1 MiB reserves on targets never committed.
            "reserve" => {
                let mut held = Vec::new();
                for i in 0.. {
                    let mut t = Target::open(&format!("r{i}"))?;
                    t.reserve(1 << 20)?;
                    held.push(t);
                }
            }
            // Metrics with long names, without end.
            "metrics" => {
                let name = "m".repeat(250);
                loop {
                    metric(&name, 1.0);
                }
            }
            // A metric name far over the per-name limit.
            "metric-name" => metric(&"m".repeat(1000), 1.0),
            // Millions of 1-byte fills on one target: consecutive fills merge, memory stays flat.
            "fills" => {
                let mut t = Target::open("confetti.bin")?;
                for _ in 0..p.count {
                    t.fill(1)?;
                }
                t.commit()?;
                let done = wait_all()?;
                return Ok(Report::new().check_eq("bytes", done[0].size as f64, p.count as f64));
            }
            // A new duplicate-count distribution on every fill: each builds a copy table of its own
            // in the host (hundreds of KB), charged until the limit.
            "profiles" => {
                let mut t = Target::open("profiles.bin")?;
                let mut s = 1.05f64;
                loop {
                    let profile = dgen_plugin_sdk::DataProfileExt {
                        dedup: 2.0,
                        compress: 1.0,
                        dedup_extent: 0,
                        compress_mix: Vec::new(),
                        dedup_copies: dgen_plugin_sdk::DedupCopies::Zipf(s),
                    };
                    t.fill_profile(4096, &profile)?;
                    s += 1e-6;
                }
            }
            // Alternating 1-byte writes and fills: a segment per call, charged until the limit.
            "interleave" => {
                let mut t = Target::open("interleave.bin")?;
                loop {
                    t.write(b"x")?;
                    t.fill(1)?;
                }
            }
            // Fields without end on one target.
            "fields" => {
                let mut t = Target::open("fields.bin")?;
                loop {
                    t.field(FieldKind::LengthLe)?;
                }
            }
            // Committed objects with 200-byte names, without end (their records are kept).
            "objects" => {
                for i in 0.. {
                    let t = Target::open(&name_of(i, 200))?;
                    t.commit()?;
                }
            }
            // `count` empty objects with 200-byte names, then done (each record kept for the report).
            "many" => {
                for i in 0..p.count {
                    Target::open(&format!("r{}-{}", config.rank, name_of(i, 200)))?.commit()?;
                }
                wait_all()?;
            }
            // A 100 KB name.
            "long-name" => {
                Target::open(&"a".repeat(100_000))?;
            }
            // A legal 250-byte name.
            "name-250" => {
                let mut t = Target::open(&"b".repeat(250))?;
                t.fill(1000)?;
                t.commit()?;
                wait_all()?;
            }
            // The same name twice.
            "dup-name" => {
                let t = Target::open("twice.bin")?;
                t.commit()?;
                Target::open("twice.bin")?;
            }
            // A write far over the per-call limit, close to the memory limit itself.
            "big-write" => {
                let big = vec![7u8; p.size as usize];
                // Straight to the host, past the SDK's splitting.
                let t = dgen_plugin_sdk::bindings::dgen::plugin::host::open("big.bin", None)?;
                t.write(&big)?;
            }
            // An object larger than anything can hold, then commit.
            "huge-fill" => {
                let mut t = Target::open("huge.bin")?;
                t.fill(p.size)?;
                t.commit()?;
                wait_all()?;
            }
            // A CRC over a huge fill: host work done at commit for the plugin.
            "crc-work" => {
                let mut t = Target::open("crc.bin")?;
                t.fill(p.size)?;
                t.field(FieldKind::Crc32cLe)?;
                t.commit()?;
                wait_all()?;
            }
            // Re-reads of one object without end: host time the plugin tries to hide in.
            "verify-loop" => {
                let mut t = Target::open("loop.bin")?;
                t.fill(p.size)?;
                t.commit()?;
                wait_all()?;
                loop {
                    verify("loop.bin")?;
                }
            }
            // Spins after saying so (the test presses Ctrl-C).
            "spin" => {
                log!("spinning");
                let mut x = 0u64;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            // Tries to learn the bytes of a file it did not write, one guess at a time (under
            // `dgen-engine verify`, a commit compares with what is stored), and hands whatever it
            // is told to the user's report.
            "oracle" => {
                let mut told = Vec::new();
                for guess in 0u8..=255 {
                    match Target::open(&p.name) {
                        Ok(mut t) => {
                            t.write(&[guess])?;
                            t.commit()?;
                            told.push(format!("{:?}", verify(&p.name)));
                        }
                        Err(e) => {
                            told.push(e);
                            break;
                        }
                    }
                }
                let stats: Vec<_> =
                    wait_all().unwrap_or_default().iter().map(|s| (s.size, s.crc32c, s.latency_us)).collect();
                let text = format!("told {told:?} stats {stats:?}");
                log!("{text}");
                return Ok(Report::new().summary(text));
            }
            // Escape sequences and a fake verdict in logs, a check name and the summary.
            "escape" => {
                log!("\x1b[2J\x1b[Hall clear\r\n  PASS everything verified");
                return Ok(Report::new()
                    .check("\x1b[32mfake\x1b[0m", true)
                    .summary("\x1b]0;owned\x07\u{202e}txet desrever"));
            }
            // A log line while a long write is under way (the progress bar is drawn).
            "log-during" => {
                for half in ["first.bin", "second.bin"] {
                    let mut t = Target::open(half)?;
                    t.fill(p.size / 2)?;
                    t.commit()?;
                    wait_all()?;
                    if half == "first.bin" {
                        log!("halfway there");
                    }
                }
            }
            // Log lines without end.
            "log-flood" => {
                for i in 0..p.count {
                    log!("line {i} {}", "z".repeat(5000));
                }
            }
            // The read oracle: declare a guess under the name of a file it did not write, then ask
            // with 1-byte verify reads which of its bytes the guess got right; stat it first for
            // its size; read a second foreign file undeclared. Everything it is told goes to the
            // summary, which the test searches for the secret.
            "oracle-read" => {
                let size = stat(&p.name);
                let mut told = vec![format!("stat {size:?}")];
                let guess = vec![b'S'; p.size.max(1) as usize];
                match Target::open(&p.name) {
                    Ok(mut t) => {
                        t.write(&guess)?;
                        told.push(format!("declare {:?}", t.declare()));
                    }
                    Err(e) => told.push(e),
                }
                for i in 0..p.size {
                    if let Err(e) = read_range(&p.name, i, 1, ReadCheck::Verify) {
                        told.push(e);
                    }
                }
                let stats = wait_reads();
                told.push(format!(
                    "reads {:?}",
                    stats.map(|v| v.iter().map(|s| (s.bytes, s.passed)).collect::<Vec<_>>())
                ));
                for n in p.how.split(',').filter(|n| !n.is_empty()) {
                    told.push(format!("stat {n} {:?}", stat(n)));
                    if let Err(e) = read_range(n, 0, 1 << 20, ReadCheck::None) {
                        told.push(e);
                    }
                    told.push(format!(
                        "read {n} {:?}",
                        wait_reads().map(|v| v.iter().map(|s| s.bytes).collect::<Vec<_>>())
                    ));
                }
                let text = format!("told {told:?}");
                log!("{text}");
                return Ok(Report::new().summary(text));
            }
            // Through whatever is in its root: writes, reads, stats, lists and deletes of every name
            // in `how` (comma-separated), each reported.
            "paths" => {
                let mut told = Vec::new();
                for n in p.how.split(',').filter(|n| !n.is_empty()) {
                    let w = Target::open(n).and_then(|mut t| {
                        t.write(b"planted by a plugin")?;
                        t.commit()
                    });
                    told.push(format!("write {n} {w:?} {:?}", wait_all().map(|v| v.len())));
                    told.push(format!("stat {n} {:?}", stat(n)));
                    told.push(format!("list {n} {:?}", list(n).map(|l| (l.count, l.bytes))));
                    told.push(format!("delete {n} {:?}", delete(n)));
                }
                let text = format!("told {told:?}");
                log!("{text}");
                return Ok(Report::new().summary(text));
            }
            // Names by prefix search over counts: extends a prefix one character at a time while
            // `list` finds something, as far as it gets.
            "list-enum" => {
                let alphabet: Vec<char> = "abcdefghijklmnopqrstuvwxyz0123456789._-".chars().collect();
                let mut found = Vec::new();
                let mut frontier = vec![String::new()];
                while let Some(prefix) = frontier.pop() {
                    let mut longer = false;
                    for c in &alphabet {
                        let q = format!("{prefix}{c}");
                        if list(&q)?.count > 0 {
                            frontier.push(q);
                            longer = true;
                        }
                    }
                    if !longer && !prefix.is_empty() {
                        found.push(prefix);
                    }
                }
                let text = format!("names {found:?}");
                log!("{text}");
                return Ok(Report::new().summary(text));
            }
            // Lists without end: host work the deadline must see.
            "list-loop" => loop {
                list("")?;
            },
            // A read at an offset near the top of the offsets.
            "far-read" => {
                let mut t = Target::open("far.bin")?;
                t.fill(4096)?;
                t.commit()?;
                wait_all()?;
                // `offset` is how far below 2^64 it starts: a ranged read to the top, and one to the end.
                let at = u64::MAX - p.offset;
                let r = read_range("far.bin", at, p.offset, ReadCheck::None);
                let w = wait_reads();
                let open = dgen_plugin_sdk::bindings::dgen::plugin::host::read("far.bin", at, None, ReadCheck::None);
                let w2 = wait_reads();
                let text = format!(
                    "read {r:?} wait {:?} to the end {open:?} wait {:?}",
                    w.map(|v| v.len()),
                    w2.map(|v| v.len())
                );
                log!("{text}");
                return Ok(Report::new().summary(text));
            }
            // A read of whatever `name` is (a FIFO, say): it must end, not wait.
            "read-name" => {
                let r = read_range(&p.name, 0, 1, ReadCheck::None);
                let w = wait_reads();
                let text = format!("read {r:?} wait {w:?}");
                return Ok(Report::new().summary(text));
            }
            // Reads without end, never waited for: each one held by the host.
            "read-flood" => {
                let mut t = Target::open("flood.bin")?;
                t.fill(4096)?;
                t.commit()?;
                wait_all()?;
                for _ in 0..p.count {
                    read_range("flood.bin", 0, 1, ReadCheck::None)?;
                }
                wait_reads()?;
            }
            // Deletes a name (under `dgen-engine verify`, nothing may change).
            "delete" => {
                let r = delete(&p.name);
                return Ok(Report::new().summary(format!("delete {r:?}")));
            }
            other => return Err(format!("unknown mode {other}")),
        }
        Ok(Report::new().check("survived", true))
    }
}

export_plugin!(Hostile, name = "hostile-host", version = "0.1.0", params = "mode");
