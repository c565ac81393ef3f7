//! The S3 sink against a real S3-compatible server on loopback: moto's server mode (PyPI
//! `moto[server]`), started once for the test binary. Part boundaries, multi-buffer parts, equality
//! with the file sink's bytes, `verify`, and what users see when things go wrong (missing bucket,
//! refused credentials, no server, a server that goes away mid-run, Ctrl-C) — with no multipart
//! upload left open afterwards.

use crate::common::*;
use crate::objects::*;
use aws_sdk_s3::Client;
use dgen_engine::sink::cloud::{CloudOptions, CloudSink, Concurrency};
use dgen_engine::sink::s3::{S3Options, S3Store, S3Target};
use dgen_engine::Generator;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A moto server on a free loopback port, killed when the test process exits.
pub struct Moto {
    pub endpoint: String,
    _server: Server,
}

fn start_moto(auth: bool) -> Moto {
    let port = free_port();
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()]);
    if auth {
        // Every request is checked against moto's IAM: unknown access keys are refused.
        cmd.env("INITIAL_NO_AUTH_ACTION_COUNT", "0");
    }
    let hint = "run scripts/test, which installs it, or `pip install 'moto[server]'`";
    let server = Server::start(cmd, port, &|| has_moto(), hint);
    Moto { endpoint: format!("http://127.0.0.1:{port}"), _server: server }
}

fn has_moto() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| Command::new("python3").args(["-c", "import moto.server"]).status().is_ok_and(|s| s.success()))
}

/// The shared server (no authentication).
pub fn moto() -> &'static Moto {
    static M: OnceLock<Moto> = OnceLock::new();
    M.get_or_init(|| start_moto(false))
}

fn moto_with_auth() -> &'static Moto {
    static M: OnceLock<Moto> = OnceLock::new();
    M.get_or_init(|| start_moto(true))
}

/// A client of the test server, to look at what the engine left there.
pub struct Bucket {
    rt: tokio::runtime::Runtime,
    client: Client,
    pub name: String,
}

fn client(endpoint: &str) -> Client {
    let creds = aws_sdk_s3::config::Credentials::new("test", "test", None, None, "tests");
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(creds)
        .force_path_style(true)
        .build();
    Client::from_conf(conf)
}

impl Bucket {
    /// A new, empty bucket on the shared server.
    pub fn new(name: &str) -> Bucket {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let client = client(&moto().endpoint);
        let name = format!("{name}-{}", std::process::id());
        rt.block_on(client.create_bucket().bucket(&name).send()).expect("create bucket");
        Bucket { rt, client, name }
    }

    /// Multipart uploads still open (their parts take space and cost money).
    pub fn uploads(&self) -> Vec<String> {
        let out = self.rt.block_on(self.client.list_multipart_uploads().bucket(&self.name).send()).unwrap();
        out.uploads().iter().map(|u| u.key().unwrap_or("?").to_string()).collect()
    }

    pub fn etag(&self, key: &str) -> String {
        let out = self.rt.block_on(self.client.head_object().bucket(&self.name).key(key).send()).expect(key);
        out.e_tag().unwrap_or("").trim_matches('"').to_string()
    }
}

impl Remote for Bucket {
    fn uri(&self, prefix: &str) -> String {
        format!("s3://{}/{prefix}", self.name)
    }

    fn list(&self, prefix: &str) -> Vec<(String, u64)> {
        let out = self.rt.block_on(self.client.list_objects_v2().bucket(&self.name).prefix(prefix).send()).unwrap();
        let mut v: Vec<(String, u64)> =
            out.contents().iter().map(|o| (o.key().unwrap().to_string(), o.size().unwrap_or(0) as u64)).collect();
        v.sort();
        v
    }

    fn get(&self, key: &str) -> Vec<u8> {
        let out = self.rt.block_on(self.client.get_object().bucket(&self.name).key(key).send()).expect(key);
        self.rt.block_on(out.body.collect()).unwrap().into_bytes().to_vec()
    }

    fn put(&self, key: &str, data: Vec<u8>) {
        let body = aws_sdk_s3::primitives::ByteStream::from(data);
        self.rt.block_on(self.client.put_object().bucket(&self.name).key(key).body(body).send()).unwrap();
    }

    fn corrupt(&self, key: &str, data: Vec<u8>) {
        let head = self.rt.block_on(self.client.head_object().bucket(&self.name).key(key).send()).unwrap();
        let body = aws_sdk_s3::primitives::ByteStream::from(data);
        let put =
            self.client.put_object().bucket(&self.name).key(key).set_metadata(head.metadata().cloned()).body(body);
        self.rt.block_on(put.send()).unwrap();
    }
}

/// The S3 sink in-process, writing below `prefix` of `bucket`.
pub fn s3_sink(bucket: &Bucket, prefix: &str, cloud: CloudOptions) -> CloudSink<S3Store> {
    let opts = S3Options {
        endpoint: Some(moto().endpoint.clone()),
        region: Some("us-east-1".into()),
        credentials: Some(("test".into(), "test".into())),
        cloud,
        ..S3Options::default()
    };
    dgen_engine::sink::s3::open(&S3Target::new(&bucket.uri(prefix), opts).unwrap()).unwrap()
}

/// `dgen-engine` with the environment a user would set for an S3-compatible server (and nothing
/// from this machine's own AWS configuration).
pub fn bin_s3(endpoint: &str) -> Command {
    let mut c = bin();
    c.env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL_S3")
        .env_remove("AWS_SESSION_TOKEN");
    c
}

#[test]
fn part_boundaries_store_the_exact_bytes() {
    let bucket = Bucket::new("boundaries");
    let gen = Generator::new(5, profile(1.5, 2.0, 4096));
    let sizes = [5 * MIB - 1, 5 * MIB, 5 * MIB + 1, 3 * 5 * MIB + 123];
    // One buffer per part, and parts assembled from five 1 MiB buffers: the same parts either way.
    for buffer in [5 * MIB, MIB] {
        let prefix = format!("b{buffer}/");
        let sink = s3_sink(&bucket, &prefix, CloudOptions::default());
        write_and_compare(&sink, &bucket, &prefix, &gen, &sizes, buffer);
        for (i, &size) in sizes.iter().enumerate() {
            // Up to 5 MiB: one PUT (a plain MD5 ETag); beyond: 5 MiB parts ("md5-N").
            let parts = if size <= 5 * MIB { None } else { Some(size.div_ceil(5 * MIB)) };
            let etag = bucket.etag(&format!("{prefix}o{i}"));
            assert_eq!(etag.split_once('-').map(|(_, n)| n.parse::<u64>().unwrap()), parts, "o{i}: ETag {etag}");
        }
    }
    assert_eq!(bucket.uploads(), Vec::<String>::new());
}

#[test]
fn large_parts_are_built_from_many_buffers_within_the_pool() {
    let bucket = Bucket::new("bigparts");
    let opts =
        CloudOptions { part_size: Some(96 * MIB), concurrency: Concurrency::Fixed(2), ..CloudOptions::default() };
    big_parts_from_many_buffers(&s3_sink(&bucket, "", opts), &bucket);
    assert!(bucket.etag("big.bin").ends_with("-3"), "{}", bucket.etag("big.bin"));
    assert_eq!(bucket.uploads(), Vec::<String>::new());
}

#[test]
fn a_workload_on_s3_stores_the_file_sinks_bytes_and_verifies() {
    let bucket = Bucket::new("same-bytes");
    same_bytes_as_files(&bucket, "s3-vs-file", &|| bin_s3(&moto().endpoint));
}

#[test]
fn unusable_targets_fail_with_one_clear_line() {
    let bucket = Bucket::new("errors");
    let wl = workload("objects.toml");
    let cases = [
        (
            moto().endpoint.clone(),
            "s3://no-such-bucket-here/x".to_string(),
            "bucket 'no-such-bucket-here' does not exist",
        ),
        (moto_with_auth().endpoint.clone(), bucket.uri("x"), "denied (HTTP 403): check the credentials"),
        (format!("http://127.0.0.1:{}", free_port()), bucket.uri("x"), "cannot reach http://127.0.0.1:"),
    ];
    for (endpoint, uri, want) in cases {
        let out = bin_s3(&endpoint).args(["run", &wl, "--set", &format!("target.uri={uri}"), "-q"]).output().unwrap();
        let err = shown(&out);
        assert_eq!(out.status.code(), Some(3), "{uri}: {err}");
        assert!(err.contains(want), "{uri}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{uri}: more than one line: {err}");
    }
}

#[test]
fn a_server_that_goes_away_mid_run_fails_the_run_and_leaves_no_upload_open() {
    let bucket = Bucket::new("outage");
    let relay = Relay::start(&moto().endpoint);
    let child = interrupted_run(bin_s3(&relay.endpoint()), &bucket.uri("o"));
    relay.wait_for(100 * MIB);
    // Open uploads exist now; the server goes away for 3 s and comes back.
    relay.outage(Duration::from_secs(3));
    let out = child.wait_with_output().unwrap();
    let err = shown(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    let last = err.trim().lines().last().unwrap_or("");
    assert!(last.starts_with("error: s3://") && last.contains("cannot reach"), "{err}");
    assert_eq!(bucket.uploads(), Vec::<String>::new(), "multipart uploads left open");
    only_whole_objects(&bucket, "o/");
}

#[test]
fn ctrl_c_aborts_every_open_upload() {
    let bucket = Bucket::new("ctrlc");
    let relay = Relay::start(&moto().endpoint);
    let child = interrupted_run(bin_s3(&relay.endpoint()), &bucket.uri("c"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while bucket.uploads().is_empty() || relay.relayed.load(Ordering::Relaxed) < 60 * MIB {
        assert!(Instant::now() < deadline, "no upload was started");
        std::thread::sleep(Duration::from_millis(10));
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", shown(&out));
    assert!(shown(&out).contains("interrupted"), "{}", shown(&out));
    assert_eq!(bucket.uploads(), Vec::<String>::new(), "multipart uploads left open");
    only_whole_objects(&bucket, "c/");
}

#[test]
fn s3_keys_are_checked_in_the_workload() {
    target_tables_are_refused(
        "s3-keys",
        &[
            (
                "[target]\nuri = \"file://./x\"\nendpoint = \"http://h\"\n",
                ":8: target.endpoint: is an object-store key",
            ),
            (
                "[target]\nuri = \"s3://bkt/p\"\nconcurrency = \"lots\"\n",
                ":8: target.concurrency: 'lots' is not 'auto'",
            ),
            (
                "[target]\nuri = \"s3://bkt/p\"\npart_size = \"1MiB\"\n",
                ":8: target.part_size: must be from 5 MiB to 5 GiB",
            ),
            ("[target]\nuri = \"s3://B/p\"\n", ":7: target.uri:"),
            ("[target]\nuri = \"s3://bkt\"\nengine = \"pwrite\"\n", ":8: target.engine: is a file:// key"),
        ],
    );
}
