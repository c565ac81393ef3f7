//! Hardening II: a shared plugin can read nothing, touch nothing and run nothing this engine did
//! not write. Each case is an attack of the hostile plugin (tests/plugins/hostile) that worked on
//! an earlier main; each checks what a user would: the secret never shows, files outside the root
//! and foreign files inside it are unchanged, the exit code and message, the time it took.

use crate::common::*;
use crate::hardening::{assert_within_limit, one_error_line, plugin, Case};
use std::path::Path;
use std::time::Duration;

const SECRET: &str = "TOPSECRET-7c0ffee-the-launch-code-is-42";

/// The run's whole output and JSON report, to search for what must not be there.
fn everything(r: &crate::hardening::Ran, json: &Path) -> (String, serde_json::Value) {
    let report = std::fs::read_to_string(json).unwrap_or_default();
    let all = format!("{}{}{report}", String::from_utf8_lossy(&r.out.stdout), r.err());
    (all, serde_json::from_str(&report).unwrap_or_default())
}

#[test]
fn a_declared_guess_reads_nothing_of_a_file_the_engine_did_not_write() {
    let case = Case::new(
        "oracle-read",
        "oracle-read",
        &format!("name = \"secret.txt\"\nsize = {}\nhow = \"other.txt\"", SECRET.len()),
    );
    std::fs::create_dir_all(case.out()).unwrap();
    std::fs::write(case.out().join("secret.txt"), SECRET).unwrap();
    std::fs::write(case.out().join("other.txt"), "a file of the user's").unwrap();
    let json = case.dir.join("r.json");
    let r = case.run(&["--json-report", json.to_str().unwrap()]);
    let (all, v) = everything(&r, &json);
    assert!(!all.contains("TOPSECRET"), "the secret reached the output: {all}");
    let summary = v["summary"].as_str().unwrap_or_default().to_string();
    let told = if summary.is_empty() { all.clone() } else { summary };
    // Not its size, not that it exists: stat finds nothing, reads are "no such object".
    assert!(told.contains("stat Ok(None)"), "{told}");
    assert!(!told.contains(&SECRET.len().to_string()), "the size leaked: {told}");
    assert!(told.contains("'secret.txt': no such object"), "{told}");
    assert!(!told.contains("true"), "a read passed: {told}");
    assert!(told.contains("stat other.txt Ok(None)"), "{told}");
    assert!(told.contains("'other.txt': no such object"), "{told}");
    // Nothing of this machine's paths either.
    assert!(!told.contains(case.dir.to_str().unwrap()), "the root's path leaked: {told}");
    // The user is told why, and the run fails as a read that could not be done (exit 3).
    assert_eq!(r.code(), Some(3), "{}", r.err());
    assert!(r.err().contains("carries no dgen-engine identity"), "{}", r.err());
    assert_eq!(std::fs::read_to_string(case.out().join("secret.txt")).unwrap(), SECRET);
    assert_within_limit("oracle-read", &r);
}

#[test]
fn symlinks_in_the_root_lead_nowhere() {
    let case = Case::new("symlinks", "paths", "how = \"link/planted.bin,link/victim.txt,flink,flink2/x\"");
    let outside = case.dir.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("victim.txt"), SECRET).unwrap();
    std::fs::create_dir_all(case.out()).unwrap();
    std::os::unix::fs::symlink(&outside, case.out().join("link")).unwrap();
    std::os::unix::fs::symlink(outside.join("victim.txt"), case.out().join("flink")).unwrap();
    std::os::unix::fs::symlink(&outside, case.out().join("flink2")).unwrap();
    let json = case.dir.join("r.json");
    let r = case.run(&["--json-report", json.to_str().unwrap()]);
    let (all, _) = everything(&r, &json);
    assert!(!all.contains("TOPSECRET"), "{all}");
    // Nothing outside changed: no file created, the victim still there and whole.
    let mut outside_now: Vec<_> =
        std::fs::read_dir(&outside).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    outside_now.sort();
    assert_eq!(outside_now, ["victim.txt"], "{all}");
    assert_eq!(std::fs::read_to_string(outside.join("victim.txt")).unwrap(), SECRET);
    // The symlinks themselves are still there (a write does not replace one, a delete does not
    // remove one).
    for l in ["link", "flink", "flink2"] {
        assert!(std::fs::symlink_metadata(case.out().join(l)).unwrap().file_type().is_symlink(), "{l}: {all}");
    }
    for told in [
        "stat link/victim.txt Ok(None)",
        "list link/victim.txt Ok((0, 0))",
        r#"delete link/victim.txt Err(\"'link/victim.txt': no such object\")"#,
        r#"delete flink Err(\"'flink': no such object\")"#,
        r#"delete flink2/x Err(\"'flink2/x': no such object\")"#,
    ] {
        assert!(all.contains(told), "not told {told}: {all}");
    }
    // The refused write fails the run, saying why.
    assert_eq!(r.code(), Some(3), "{}", r.err());
}

#[test]
fn a_foreign_file_in_the_root_is_neither_replaced_nor_deleted() {
    let case = Case::new("foreign-file", "paths", "how = \"mine.txt\"");
    std::fs::create_dir_all(case.out()).unwrap();
    std::fs::write(case.out().join("mine.txt"), SECRET).unwrap();
    let r = case.run(&["-q"]);
    assert_eq!(std::fs::read_to_string(case.out().join("mine.txt")).unwrap(), SECRET, "{}", r.err());
    assert!(r.err().contains("which dgen-engine did not write: it is not replaced"), "{}", r.err());
    assert_eq!(r.code(), Some(3), "{}", r.err());
    // A file the user names for `gen -o` is theirs to replace, whoever wrote it.
    let user_file = case.dir.join("data.bin");
    std::fs::write(&user_file, SECRET).unwrap();
    let o = run(&["gen", "--size", "8KiB", "-o", user_file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", shown(&o));
    assert_eq!(std::fs::metadata(&user_file).unwrap().len(), 8192);
    // Its own objects it may delete…
    let case = Case::new("own-file", "paths", "how = \"own.txt\"");
    let first = case.run(&[]);
    assert!(first.err().contains(r#"delete own.txt Ok(())"#), "{}", first.err());
    assert_eq!(first.code(), Some(0), "{}", first.err());
    assert!(first.left.is_empty(), "{:?}", first.left);
    // … and replace: a second run over the first's objects.
    let case = Case::new("own-again", "noop", "");
    for _ in 0..2 {
        let r = case.run(&["-q"]);
        assert_eq!(r.code(), Some(0), "{}", r.err());
        assert_eq!(r.left, ["noop.bin"]);
    }
}

#[test]
fn list_finds_no_name_of_a_foreign_file() {
    let case = Case::new("list-enum", "list-enum", "");
    std::fs::create_dir_all(case.out().join("private")).unwrap();
    for n in ["alpha.key", "private/budget.xls", "zz-top.txt"] {
        std::fs::write(case.out().join(n), "user data").unwrap();
    }
    let json = case.dir.join("r.json");
    let r = case.run(&["--json-report", json.to_str().unwrap()]);
    let (all, v) = everything(&r, &json);
    assert_eq!(r.code(), Some(0), "{}", r.err());
    assert_eq!(v["summary"], "names []", "{all}");
    for n in ["alpha", "budget", "zz-top"] {
        assert!(!all.contains(n), "'{n}' was found: {all}");
    }
}

#[test]
fn verify_changes_nothing_on_storage() {
    let case = Case::new("verify-delete", "delete", "name = \"keep.txt\"");
    std::fs::create_dir_all(case.out()).unwrap();
    std::fs::write(case.out().join("keep.txt"), "the user's").unwrap();
    let r = case.run_verb("verify", &["-q"]);
    assert_eq!(r.code(), Some(4), "{}", r.err());
    assert!(one_error_line(&r).contains("called delete('keep.txt') under `dgen-engine verify`"), "{}", r.err());
    assert_eq!(std::fs::read_to_string(case.out().join("keep.txt")).unwrap(), "the user's");
}

#[test]
fn reads_far_past_an_end_and_of_a_fifo_end_at_once() {
    // `offset` is how far below 2^64 the read starts (TOML integers stop at 2^63).
    for back in [1u64, 1 << 20, 1 << 62] {
        let case = Case::new("far-read", "far-read", &format!("offset = {back}"));
        let r = case.run(&["-q"]);
        assert!(r.took < Duration::from_secs(20), "took {:?}", r.took);
        assert!(r.err().contains("beyond any object's end") || r.out.status.code() == Some(0), "{}", r.err());
    }
    // A FIFO in the root: not an object, never waited on.
    let case = Case::new("fifo", "read-name", "name = \"pipe\"");
    std::fs::create_dir_all(case.out()).unwrap();
    nix::unistd::mkfifo(&case.out().join("pipe"), nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let r = case.run(&["-q"]);
    assert!(r.took < Duration::from_secs(20), "took {:?}", r.took);
    assert_eq!(r.code(), Some(3), "{}", r.err());
    assert!(r.err().contains("pipe"), "{}", r.err());
    // `gen -o FIFO` and a FIFO as the workload both end with a message, not a wait.
    let dir = tempdir("fifo-gen");
    let fifo = dir.join("f");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let t = std::time::Instant::now();
    let o = run(&["run", fifo.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", shown(&o));
    assert!(t.elapsed() < Duration::from_secs(10));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_loop_of_lists_meets_the_deadline() {
    let case = Case::new("list-loop", "list-loop", "");
    std::fs::create_dir_all(case.out()).unwrap();
    for i in 0..2000 {
        std::fs::write(case.out().join(format!("f{i:05}")), "x").unwrap();
    }
    let r = case.run(&["-q", "--set", "limits.deadline=1"]);
    assert_eq!(r.code(), Some(4), "{}", r.err());
    assert!(one_error_line(&r).contains("ran past its deadline of 1 s"), "{}", r.err());
    assert!(r.took < Duration::from_secs(10), "took {:?}", r.took);
}

#[test]
fn reads_in_flight_are_charged_what_they_cost() {
    // A limit large enough that what a read really holds shows over the engine's baseline (at
    // the old charge, a 256 MiB limit let the reads reach 670 MiB).
    let case = Case::new("read-flood", "read-flood", "count = 100000000");
    let r = case.run(&["-q", "--set", "limits.memory=\"256MiB\""]);
    assert_eq!(r.code(), Some(4), "{}", r.err());
    assert!(one_error_line(&r).contains("exceeded its memory limit of 256 MiB"), "{}", r.err());
    let allowed = crate::hardening::baseline() + (256 << 20) + (8 << 20);
    eprintln!("peak RSS read-flood: {} MiB", r.rss >> 20);
    assert!(r.rss <= allowed, "peak RSS {} MiB over the limit: {}", r.rss >> 20, r.err());
}

#[test]
fn a_root_holding_the_cache_the_workload_or_the_plugin_is_refused() {
    let case = Case::new("root-guard", "noop", "");
    // The workload's own directory as the root.
    let r = case.run(&["-q", "--set", &format!("target.uri=file://{}", case.dir.display())]);
    assert_eq!(r.code(), Some(2), "{}", r.err());
    assert!(r.err().contains("contains the workload file"), "{}", r.err());
    // The cache (through a symlink to it, too).
    let cache = tempdir("root-guard-cache");
    let link = case.dir.join("cache-link");
    std::os::unix::fs::symlink(&cache, &link).unwrap();
    let mut c = case.command("run", &["-q", "--set", &format!("target.uri=file://{}", link.display())]);
    c.env("DGEN_CACHE_DIR", cache.join("dgen"));
    let o = c.output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", shown(&o));
    assert!(shown(&o).contains("contains the compiled-plugin cache"), "{}", shown(&o));
    // The plugin's own directory.
    let dir = plugin().parent().unwrap();
    let r = case.run(&["-q", "--set", &format!("target.uri=file://{}", dir.display())]);
    assert_eq!(r.code(), Some(2), "{}", r.err());
    assert!(r.err().contains("contains the plugin"), "{}", r.err());
    std::fs::remove_dir_all(cache).ok();
}

/// The `.cwasm` entries in a cache directory.
fn entries(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    v.sort();
    v
}

#[test]
fn a_poisoned_cache_entry_is_never_run() {
    let case = Case::new("poison", "noop", "");
    let cache = tempdir("poison-cache");
    let compiled = cache.join("compiled");
    let with_cache = |mut cmd: std::process::Command| {
        cmd.env("DGEN_CACHE_DIR", &cache);
        cmd.output().unwrap()
    };
    let o = with_cache(case.command("run", &["-q"]));
    assert_eq!(o.status.code(), Some(0), "{}", shown(&o));
    let hostile = entries(&compiled);
    assert_eq!(hostile.len(), 1, "{hostile:?}");
    // Another plugin's compiled code (one that traps at once), as a plugin that reached the cache
    // would write it under the pinned plugin's entry — with that entry's MAC file too.
    let trap_wasm = case.dir.join("trap.wasm");
    let trap_crate = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/plugins/trap");
    let o = run(&["plugin", "build", trap_crate.to_str().unwrap(), "-o", trap_wasm.to_str().unwrap()]);
    assert!(o.status.success(), "{}", shown(&o));
    let trap_case = case.dir.join("trap.toml");
    std::fs::write(
        &trap_case,
        format!("name = \"t\"\nplugin = \"{}\"\n[target]\nuri = \"null://\"\n", trap_wasm.display()),
    )
    .unwrap();
    let mut cmd = bin();
    cmd.args(["run", trap_case.to_str().unwrap(), "-q"]);
    let o = with_cache(cmd);
    assert_eq!(o.status.code(), Some(4), "the trap plugin traps: {}", shown(&o));
    let trap: Vec<_> = entries(&compiled).into_iter().filter(|e| !hostile.contains(e)).collect();
    assert_eq!(trap.len(), 1);
    std::fs::copy(&trap[0], &hostile[0]).unwrap();
    std::fs::copy(trap[0].with_extension("mac"), hostile[0].with_extension("mac")).unwrap();
    // The workload pins the hostile plugin's sha256: its own code must run, not the trap's.
    let sha = crate::common::sha256_file(plugin());
    let pinned = case.dir.join("pinned.toml");
    let text = std::fs::read_to_string(&case.workload).unwrap().replace(
        &format!("plugin = \"{}\"", plugin().display()),
        &format!("plugin = {{ path = \"{}\", sha256 = \"{sha}\" }}", plugin().display()),
    );
    std::fs::write(&pinned, text).unwrap();
    let mut cmd = bin();
    cmd.args(["run", pinned.to_str().unwrap(), "-q"]);
    let o = with_cache(cmd);
    assert_eq!(o.status.code(), Some(0), "the poisoned entry ran: {}", shown(&o));
    // A cache directory others can write to is refused, naming it.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&compiled, std::fs::Permissions::from_mode(0o777)).unwrap();
    let o = with_cache(case.command("run", &["-q"]));
    assert_eq!(o.status.code(), Some(3), "{}", shown(&o));
    assert!(shown(&o).contains("is writable by others"), "{}", shown(&o));
    std::fs::remove_dir_all(cache).ok();
}

#[test]
fn a_plugin_builds_to_the_same_bytes_from_any_checkout() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let base = tempdir("repro");
    let mut shas = Vec::new();
    for at in ["one", "two/levels/deeper"] {
        let tree = base.join(at);
        for d in ["plugins/objects/src", "plugin-sdk/src", "plugin-sdk/wit"] {
            std::fs::create_dir_all(tree.join(d)).unwrap();
            for e in std::fs::read_dir(root.join(d)).unwrap() {
                let e = e.unwrap();
                std::fs::copy(e.path(), tree.join(d).join(e.file_name())).unwrap();
            }
        }
        for f in ["plugins/objects/Cargo.toml", "plugins/objects/Cargo.lock", "plugin-sdk/Cargo.toml"] {
            if root.join(f).exists() {
                std::fs::copy(root.join(f), tree.join(f)).unwrap();
            }
        }
        let out = tree.join("objects.wasm");
        let o = run(&["plugin", "build", tree.join("plugins/objects").to_str().unwrap(), "-o", out.to_str().unwrap()]);
        assert!(o.status.success(), "{}", shown(&o));
        let wasm = std::fs::read(&out).unwrap();
        // Nothing of this machine: not the checkout, not the home directory.
        for here in [tree.to_str().unwrap(), &std::env::var("HOME").unwrap()] {
            assert!(!wasm.windows(here.len()).any(|w| w == here.as_bytes()), "{here} is in the plugin");
        }
        shas.push(sha256_file(&out));
        // `plugin inspect` prints the sha256 a workload pins.
        let o = run(&["plugin", "inspect", out.to_str().unwrap()]);
        assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("sha256:   {}", shas.last().unwrap())));
    }
    assert_eq!(shas[0], shas[1], "two checkouts built different plugins");
    std::fs::remove_dir_all(base).ok();
}

#[test]
fn ctrl_c_and_sigterm_end_each_blocking_case_within_a_second() {
    use nix::sys::signal::Signal;
    let many = |case: &Case| {
        std::fs::create_dir_all(case.out()).unwrap();
        for i in 0..20_000 {
            std::fs::write(case.out().join(format!("f{i:05}")), "x").unwrap();
        }
    };
    // (what, mode, params, prepare, signal)
    type Prep = fn(&Case);
    let none: Prep = |_| {};
    let cases: [(&str, &str, String, Prep, Signal); 4] = [
        // Gigabytes of a file in the page cache: its temporary is slow to close.
        ("a multi-GB write", "huge-fill", "size = 60000000000".into(), none, Signal::SIGINT),
        ("a multi-GB write (SIGTERM)", "huge-fill", "size = 60000000000".into(), none, Signal::SIGTERM),
        ("lists of a crowded root", "list-loop", String::new(), many, Signal::SIGINT),
        ("a flood of reads", "read-flood", "count = 100000000".into(), none, Signal::SIGINT),
    ];
    for (what, mode, params, prepare, signal) in cases {
        let case = Case::new(mode, mode, &params);
        prepare(&case);
        let (r, exit_after) =
            case.signal_after(&["-q", "--set", "limits.memory=\"1GiB\""], Duration::from_secs(3), signal);
        assert_eq!(r.code(), Some(130), "{what}: {}", r.err());
        assert!(exit_after < Duration::from_secs(1), "{what}: the engine took {exit_after:?} to stop");
        // Nothing of the interrupted write, under its name or a temporary one (what was there
        // before, and the object the flood reads, stay).
        assert!(r.left.iter().all(|f| f.starts_with('f')), "{what}: left {:?}", r.left);
    }
}

#[test]
fn ranks_run_in_turn_are_charged_what_earlier_ranks_left() {
    // Each rank's objects fit its limit; what the ranks before it keep for the merged report is
    // carried into its account, so 32 ranks in turn stop at the limit instead of growing past it.
    let case = Case::new("in-turn", "many", "count = 20000");
    let r = case.run(&["-q", "--world-size", "32", "--set", "target.uri=\"null://\""]);
    assert_eq!(r.code(), Some(4), "{}", r.err());
    assert!(r.err().contains("for the ranks run before this one"), "{}", r.err());
    assert_within_limit("ranks in turn", &r);
    // Two ranks fit.
    let r = case.run(&["-q", "--world-size", "2", "--set", "target.uri=\"null://\""]);
    assert_eq!(r.code(), Some(0), "{}", r.err());
}

#[test]
fn object_stores_keep_what_the_engine_did_not_write_out_of_reach() {
    use crate::objects::Remote;
    let bucket = crate::s3::Bucket::new("foreign");
    let container = crate::azure::Container::new("foreign");
    let stores: [(&dyn Remote, std::process::Command); 2] = [
        (&bucket, crate::s3::bin_s3(&crate::s3::moto().endpoint)),
        (&container, crate::azure::bin_az(&crate::azure::azurite().connection_string())),
    ];
    for (remote, mut cmd) in stores {
        let key = "p/secret.txt";
        remote.put(key, SECRET.as_bytes().to_vec());
        // A plugin writes, stats, lists and deletes the name of an object put there by another tool.
        let case = Case::new("cloud-foreign", "paths", "how = \"secret.txt\"");
        cmd.args(["run", case.workload.to_str().unwrap(), "--set", &format!("target.uri={}", remote.uri("p"))]);
        let o = cmd.output().unwrap();
        let err = shown(&o);
        assert!(!err.contains("TOPSECRET"), "{err}");
        for told in [
            "stat secret.txt Ok(None)",
            "list secret.txt Ok((0, 0))",
            r#"delete secret.txt Err(\"'secret.txt': no such object\")"#,
        ] {
            assert!(err.contains(told), "{}: not told {told}: {err}", remote.uri("p"));
        }
        // Its write was refused, not made over the user's object.
        assert_eq!(o.status.code(), Some(3), "{err}");
        assert!(err.contains("which dgen-engine did not write: it is not replaced"), "{err}");
        assert_eq!(remote.get(key), SECRET.as_bytes(), "{}", remote.uri("p"));
    }
}
