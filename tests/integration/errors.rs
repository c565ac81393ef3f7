//! Typed errors: each kind of failure reaches the user as one line, the documented exit code, and
//! its `error_kind` in the JSON report — decided by the error's variant, not its text.

use crate::azure::{azurite, bin_az, Container};
use crate::common::*;
use crate::objects::Remote;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

/// A small objects run into `uri`, with a JSON report; the exit code, stderr and the report.
fn run_to(cmd: &mut Command, dir: &Path, uri: &str, extra: &[&str]) -> (Option<i32>, String, serde_json::Value) {
    let json = dir.join("report.json");
    let _ = std::fs::remove_file(&json);
    let wl = workload("objects.toml");
    let uri = format!("target.uri={uri}");
    let mut args = vec!["run", &wl, "-q", "--set", &uri, "--set", "params.count=4", "--set", "params.size=300000"];
    args.extend(["--set", "params.distribution=fixed"]);
    args.extend(["--json-report", json.to_str().unwrap()]);
    for e in extra {
        args.extend(["--set", e]);
    }
    let o = cmd.args(&args).output().unwrap();
    let report = std::fs::read(&json).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    (o.status.code(), shown(&o), report)
}

#[test]
fn each_kind_of_failure_has_its_exit_code_and_kind() {
    let dir = tempdir("error-kinds");
    let server = azurite();
    let container = Container::new("kinds");
    let conn = server.connection_string();
    let wrong_key = conn.replace(dgen_engine::sink::azure::DEV_KEY, "d3Jvbmcga2V5IGZvciB0aGUgYWNjb3VudA==");
    let nobody = format!("http://127.0.0.1:{}/devstoreaccount1", free_port());
    let no_server = format!("{}BlobEndpoint={nobody}", conn.split("BlobEndpoint=").next().unwrap());
    // What, how run, target, --set, exit code, error_kind, text.
    type Case<'a> = (&'a str, Command, String, Vec<&'a str>, i32, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        ("missing container", bin_az(&conn), "az://no-such-one/x".into(), vec![], 3, "not_found", "does not exist"),
        ("refused key", bin_az(&wrong_key), container.uri("x"), vec![], 3, "denied", "denied (HTTP 403)"),
        ("nobody listening", bin_az(&no_server), container.uri("x"), vec![], 3, "unreachable", "cannot reach"),
        (
            "out of range",
            bin(),
            format!("file://{}", dir.join("o").display()),
            vec!["target.file.queue_depth=0"],
            2,
            "workload",
            "target.file.queue_depth: 0 is out of range",
        ),
        (
            "faulty plugin",
            bin(),
            format!("file://{}", dir.join("o").display()),
            vec!["params.prefix=../escape"],
            4,
            "plugin",
            "plugin 'objects 0.6.0': target name '../escape",
        ),
    ];
    for (what, mut cmd, uri, extra, code, kind, text) in cases {
        let (got, err, report) = run_to(&mut cmd, &dir, &uri, &extra);
        assert_eq!(got, Some(code), "{what}: {err}");
        assert!(err.contains(text), "{what}: want '{text}' in: {err}");
        // One error line (a run that started also prints its summary above it).
        assert_eq!(err.lines().filter(|l| l.starts_with("error:")).count(), 1, "{what}: {err}");
        assert_eq!(report["error_kind"], kind, "{what}: {report}");
        assert_eq!(report["exit_code"], code, "{what}: {report}");
    }
}

#[test]
fn a_full_file_system_is_no_space_and_leaves_nothing_complete() {
    // A file size limit (RLIMIT_FSIZE, what `ulimit -f` sets) makes writes fail with EFBIG like a
    // full or quota-limited file system, without needing a mount.
    let dir = tempdir("error-nospace");
    let out = dir.join("o");
    // The plugin is built (by cargo, which writes big files) before the limit applies.
    let o =
        run(&["run", &workload("objects.toml"), "-q", "--set", "target.uri=\"null://\"", "--set", "params.count=1"]);
    assert_eq!(o.status.code(), Some(0), "{}", shown(&o));
    for engine in ["pwrite", "io_uring"] {
        let mut cmd = bin();
        unsafe {
            cmd.pre_exec(|| {
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                let lim = libc::rlimit { rlim_cur: 256 << 10, rlim_max: 256 << 10 };
                libc::setrlimit(libc::RLIMIT_FSIZE, &lim);
                Ok(())
            });
        }
        let engine_key = format!("target.file.engine={engine}");
        let (code, err, report) = run_to(&mut cmd, &dir, &format!("file://{}", out.display()), &[&engine_key]);
        assert_eq!(code, Some(3), "{engine}: {err}");
        assert_eq!(report["error_kind"], "no_space", "{engine}: {report}");
        assert!(err.contains("File too large"), "{engine}: {err}");
        // Every object was over the limit: none may be left, not even a temporary.
        let left = files_under(&out);
        assert!(left.is_empty(), "{engine}: {left:?}");
    }
}
