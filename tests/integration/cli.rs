//! The `dgen-engine` command as a user runs it: output bytes, the summary, and one-line errors with
//! exit code 2 for bad input.

use crate::common::*;
use dgen_engine::Generator;

#[test]
fn gen_to_file_matches_the_library() {
    let dir = tempdir("gen-file");
    let path = dir.join("data.bin");
    let o = run(&[
        "gen",
        "--size",
        "5MiB",
        "--dedup",
        "2",
        "--compress",
        "3",
        "--dedup-unit",
        "8KiB",
        "--seed",
        "77",
        "-o",
        path.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", shown(&o));
    let got = std::fs::read(&path).unwrap();
    let mut want = vec![0u8; 5 << 20];
    Generator::new(77, profile(2.0, 3.0, 8192)).fill(0, 0, &mut want);
    assert!(got == want, "file differs from Generator::fill");
    let err = shown(&o);
    assert!(err.contains("5242880 bytes"), "{err}");
    assert!(err.contains("seed 77"), "{err}");
    assert!(err.contains("dedup 2 compress 3 unit 8 KiB"), "{err}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn gen_to_stdout_by_default() {
    let o = run(&["gen", "--size", "100003", "--seed", "5", "--threads", "2", "--buffer-size", "4KiB"]);
    assert!(o.status.success(), "{}", shown(&o));
    let mut want = vec![0u8; 100003];
    Generator::new(5, profile(1.0, 1.0, 4096)).fill(0, 0, &mut want);
    assert!(o.stdout == want);
}

#[test]
fn random_seed_is_printed_and_reproduces() {
    let o = run(&["gen", "--size", "64KiB", "--compress", "2"]);
    assert!(o.status.success());
    let err = shown(&o);
    let seed: u64 = err.split("seed ").nth(1).unwrap().split(';').next().unwrap().parse().unwrap();
    let again = run(&["gen", "--size", "64KiB", "--compress", "2", "--seed", &seed.to_string()]);
    assert!(again.stdout == o.stdout);
}

#[test]
fn size_zero_writes_an_empty_file() {
    let dir = tempdir("gen-zero");
    let path = dir.join("empty.bin");
    let o = run(&["gen", "--size", "0", "-o", path.to_str().unwrap()]);
    assert!(o.status.success(), "{}", shown(&o));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn bad_values_give_one_line_naming_the_flag_and_exit_2() {
    let cases: [(&[&str], &str); 11] = [
        (&["gen", "--size", "12XB"], "--size"),
        (&["gen", "--size", "-5"], "--size"),
        (&["gen", "--size", "1GiB", "--dedup", "0.5"], "--dedup"),
        (&["gen", "--size", "1GiB", "--dedup", "abc"], "--dedup"),
        (&["gen", "--size", "1GiB", "--compress", "0"], "--compress"),
        (&["gen", "--size", "1GiB", "--compress", "1000"], "--compress"),
        (&["gen", "--size", "1GiB", "--dedup-unit", "3000"], "--dedup-unit"),
        (&["gen", "--size", "1GiB", "--dedup-unit", "256"], "--dedup-unit"),
        (&["gen", "--size", "1GiB", "--threads", "0"], "--threads"),
        (&["gen", "--size", "1GiB", "--seed", "-1"], "--seed"),
        (&["gen"], "--size"),
    ];
    for (args, flag) in cases {
        let o = run(args);
        let err = shown(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: not one line: {err}");
        assert!(err.starts_with("error: ") && err.contains(flag), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(o.stdout.is_empty(), "{args:?} wrote data");
    }
}

#[test]
fn unwritable_output_is_an_io_error() {
    let o = run(&["gen", "--size", "1MiB", "-o", "/nonexistent-dir/x.bin"]);
    assert_eq!(o.status.code(), Some(3), "{}", shown(&o));
    let err = shown(&o);
    assert!(err.contains("/nonexistent-dir/x.bin"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

#[test]
fn help_and_version_exit_0() {
    assert!(run(&["--help"]).status.success());
    assert!(run(&["gen", "--help"]).status.success());
    let v = run(&["--version"]);
    assert!(v.status.success());
    assert!(String::from_utf8_lossy(&v.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn the_embedding_example_writes_verifies_and_runs_a_workload() {
    // Built by `cargo test` beside the binary: target/<profile>/examples/embed.
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_dgen-engine")).with_file_name("examples").join("embed");
    let dir = tempdir("embed");
    let o = std::process::Command::new(&exe).arg(&dir).output().expect("run the example");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}{}", out, String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::metadata(dir.join("data.bin")).unwrap().len(), 64 << 20);
    assert!(out.contains("identical"), "{out}");
    assert!(out.contains("report: 8 objects"), "{out}");
    assert_eq!(files_under(&dir.join("objects")).len(), 8, "{out}");
    std::fs::remove_dir_all(dir).ok();
}
