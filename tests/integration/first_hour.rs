//! The first hour of a new user: each mistake a newcomer makes is caught before the run, with a
//! message that says what to fix, the documented exit code and `error_kind`.

use crate::common::*;

/// A JSON report that cannot be written is found before anything runs, not after the workload.
#[test]
fn an_unwritable_json_report_is_refused_before_the_run() {
    let dir = tempdir("report-path");
    let out = dir.join("out");
    let report = dir.join("nodir").join("r.json");
    let uri = format!("target.uri=\"file://{}\"", out.display());
    let o = run(&["run", &workload("objects.toml"), "--set", &uri, "--json-report", report.to_str().unwrap()]);
    let err = shown(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("cannot write the JSON report") && err.contains("nothing was run"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(files_under(&out).is_empty(), "the workload ran: {:?}", files_under(&out));
    std::fs::remove_dir_all(dir).ok();
}

/// An S3 target with no credentials anywhere says so, and where it looked: `denied`, not a
/// network failure.
#[test]
fn missing_s3_credentials_are_denied_and_say_where_they_were_looked_for() {
    use crate::objects::Remote;
    use crate::s3::{bin_s3, moto, Bucket};
    let bucket = Bucket::new("nocreds");
    let dir = tempdir("nocreds");
    let json = dir.join("r.json");
    let o = bin_s3(&moto().endpoint)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .args(["run", &workload("objects.toml"), "-q", "--set", &format!("target.uri={}", bucket.uri("x"))])
        .args(["--json-report", json.to_str().unwrap()])
        .output()
        .unwrap();
    let err = shown(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("no AWS credentials found") && err.contains("AWS_ACCESS_KEY_ID"), "{err}");
    assert!(err.contains("IMDS") && !err.contains("cannot reach"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["error_kind"], "denied", "{report}");
    std::fs::remove_dir_all(dir).ok();
}
