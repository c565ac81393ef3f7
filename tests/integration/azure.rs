//! The Azure sink against Azurite (npm `azurite`) on loopback, started by the tests: block
//! boundaries, blocks built from several buffers, equality with the file sink's bytes, `verify`, and
//! what users see when things go wrong (missing container, wrong key, no server, Azurite stopped
//! mid-run, Ctrl-C) — with no partial blob committed afterwards.

use crate::common::*;
use azure_storage_blob::models::{
    BlobContainerClientListBlobsOptions, BlockBlobClientUploadOptions, BlockListType, ListBlobsIncludeItem,
};
use azure_storage_blob::{BlobContainerClient, BlobContainerClientOptions};
use dgen_engine::exec::{Content, ExecConfig, Executor, ObjectJob};
use dgen_engine::sink::azure::{AzureOptions, AzureStore, DEV_ACCOUNT, DEV_KEY};
use dgen_engine::sink::cloud::{CloudOptions, CloudSink, Concurrency};
use dgen_engine::Generator;
use futures::StreamExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Where `azurite-blob` is: `DGEN_AZURITE`, the PATH, or where scripts/test installs it.
fn azurite_program() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("DGEN_AZURITE") {
        return Some(PathBuf::from(p));
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("azurite-blob"))
        .find(|p| p.is_file());
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    let cached = home.join(".cache/dgen-engine/azurite/node_modules/.bin/azurite-blob");
    on_path.or_else(|| cached.is_file().then_some(cached))
}

const HINT: &str = "run scripts/test, which installs it, or `npm install -g azurite`";

/// An Azurite blob service on a free loopback port. In memory unless given a directory (which
/// survives a restart, so a test can look at what was left after killing it).
pub struct Azurite {
    pub endpoint: String,
    port: u16,
    server: Server,
}

impl Azurite {
    pub fn start(location: Option<&std::path::Path>) -> Azurite {
        Azurite::start_on(free_port(), location)
    }

    fn start_on(port: u16, location: Option<&std::path::Path>) -> Azurite {
        let program = azurite_program().unwrap_or_else(|| panic!("azurite-blob not found: {HINT}"));
        let mut cmd = Command::new(program);
        cmd.args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string(), "--silent", "--disableTelemetry"])
            // Strict mode refuses the CRC64 header real Azure checks (Azurite does not check it).
            .arg("--loose");
        match location {
            Some(dir) => cmd.args(["--location", dir.to_str().unwrap()]),
            None => cmd.arg("--inMemoryPersistence"),
        };
        let server = Server::start(cmd, port, &|| azurite_program().is_some(), HINT);
        Azurite { endpoint: format!("http://127.0.0.1:{port}/{DEV_ACCOUNT}"), port, server }
    }

    /// Stops it (gracefully, so what it had committed is on disk for the restart) and waits until
    /// its port is closed.
    pub fn stop(&self) {
        self.server.stop();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(Instant::now() < deadline, "Azurite did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts it again on the same port and directory.
    fn restart(self, location: &std::path::Path) -> Azurite {
        self.stop();
        let port = self.port;
        drop(self);
        Azurite::start_on(port, Some(location))
    }

    /// The connection string a user would export for this server.
    pub fn connection_string(&self) -> String {
        format!(
            "DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};BlobEndpoint={}",
            self.endpoint
        )
    }
}

/// The shared in-memory server.
pub fn azurite() -> &'static Azurite {
    static A: OnceLock<Azurite> = OnceLock::new();
    A.get_or_init(|| Azurite::start(None))
}

/// A client of a test container, to look at what the engine left there.
pub struct Container {
    rt: tokio::runtime::Runtime,
    client: BlobContainerClient,
    pub name: String,
}

impl Container {
    /// A new, empty container on the shared server.
    pub fn new(name: &str) -> Container {
        Container::on(azurite(), name)
    }

    pub fn on(server: &Azurite, name: &str) -> Container {
        let name = format!("{name}-{}", std::process::id());
        let c = Container::open(server, &name);
        c.rt.block_on(c.client.create(None)).expect("create container");
        c
    }

    fn open(server: &Azurite, name: &str) -> Container {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let sas =
            dgen_engine::sink::azure::account_sas(DEV_ACCOUNT, DEV_KEY, azure_core::time::OffsetDateTime::now_utc())
                .unwrap();
        let url = format!("{}/{name}?{sas}", server.endpoint).parse().unwrap();
        let options =
            BlobContainerClientOptions { version: dgen_engine::sink::azure::API_VERSION.into(), ..Default::default() };
        let client = rt.block_on(async { BlobContainerClient::new(url, None, Some(options)) }).unwrap();
        Container { rt, client, name: name.to_string() }
    }

    pub fn uri(&self, prefix: &str) -> String {
        format!("az://{}/{prefix}", self.name)
    }

    fn blobs(&self, prefix: &str, uncommitted: bool) -> Vec<(String, u64)> {
        let options = BlobContainerClientListBlobsOptions {
            prefix: Some(prefix.to_string()),
            include: uncommitted.then(|| vec![ListBlobsIncludeItem::UncommittedBlobs]),
            ..Default::default()
        };
        let mut pager = self.client.list_blobs(Some(options)).unwrap();
        let mut v = Vec::new();
        self.rt.block_on(async {
            while let Some(item) = pager.next().await {
                let item = item.unwrap();
                let size = item.properties.and_then(|p| p.content_length).unwrap_or(0);
                v.push((item.name.unwrap_or_default(), size));
            }
        });
        v.sort();
        v
    }

    /// Committed blobs under `prefix` with their sizes: what readers see.
    pub fn list(&self, prefix: &str) -> Vec<(String, u64)> {
        self.blobs(prefix, false)
    }

    /// Blobs under `prefix` that exist only as staged, uncommitted blocks.
    pub fn uncommitted(&self, prefix: &str) -> Vec<String> {
        let committed = self.list(prefix);
        let all = self.blobs(prefix, true);
        all.into_iter().filter(|b| !committed.iter().any(|c| c.0 == b.0)).map(|b| b.0).collect()
    }

    pub fn get(&self, name: &str) -> Vec<u8> {
        let blob = self.client.blob_client(name);
        self.rt.block_on(async {
            let r = blob.download(None).await.unwrap_or_else(|e| panic!("{name}: {e}"));
            r.body.collect().await.unwrap().to_vec()
        })
    }

    pub fn put(&self, name: &str, data: Vec<u8>) {
        let blob = self.client.blob_client(name);
        let options = BlockBlobClientUploadOptions {
            partition_size: std::num::NonZero::new(data.len().max(1) as u64),
            ..Default::default()
        };
        self.rt.block_on(blob.upload(bytes::Bytes::from(data).into(), Some(options))).unwrap();
    }

    /// Sizes of the blob's committed blocks (none for a blob written with one Put Blob).
    pub fn blocks(&self, name: &str) -> Vec<u64> {
        let blob = self.client.blob_client(name).block_blob_client();
        let list = self.rt.block_on(blob.get_block_list(BlockListType::Committed, None)).unwrap();
        let list = list.into_model().unwrap();
        list.committed_blocks.unwrap_or_default().iter().map(|b| b.size.unwrap_or(0) as u64).collect()
    }
}

/// The Azure sink in-process, writing below `prefix` of `container`.
pub fn azure_sink(container: &Container, prefix: &str, cloud: CloudOptions) -> CloudSink<AzureStore> {
    let opts = AzureOptions {
        endpoint: Some(azurite().endpoint.clone()),
        account: Some(DEV_ACCOUNT.into()),
        cloud,
        ..AzureOptions::default()
    };
    dgen_engine::sink::azure::open(&container.uri(prefix), opts).unwrap()
}

/// `dgen-engine` with the environment a user would set for this server (and none of this machine's).
fn bin_az(conn: &str) -> Command {
    let mut c = bin();
    c.env("AZURE_STORAGE_CONNECTION_STRING", conn)
        .env_remove("AZURE_STORAGE_ACCOUNT")
        .env_remove("AZURE_STORAGE_KEY")
        .env_remove("AZURE_STORAGE_SAS_TOKEN");
    c
}

#[test]
fn block_boundaries_store_the_exact_bytes() {
    let container = Container::new("boundaries");
    let gen = Generator::new(5, profile(1.5, 2.0, 4096));
    let sizes = [MIB - 1, MIB, MIB + 1, 3 * MIB + 123];
    let sink = azure_sink(&container, "b", CloudOptions::default());
    let cfg = ExecConfig { buffer_size: MIB as usize, buffers: 8, threads: 2, open_objects: 2, crc: true };
    let exec = Executor::new(&sink, gen.clone(), cfg).unwrap();
    let jobs = sizes.iter().enumerate().map(|(i, &size)| ObjectJob {
        name: format!("o{i}"),
        size,
        content: Content::Stream { stream: i as u64, offset: 0 },
    });
    let stats = exec.run(jobs, &mut (), &AtomicBool::new(false)).unwrap();
    assert_eq!(exec.pool().available(), exec.pool().count(), "buffers not returned");
    for (i, &size) in sizes.iter().enumerate() {
        let name = format!("b/o{i}");
        let mut want = vec![0u8; size as usize];
        gen.fill(i as u64, 0, &mut want);
        let got = container.get(&name);
        assert_eq!(got.len(), want.len(), "{name}");
        assert!(got == want, "{name}: bytes differ");
        let crc = stats.objects.iter().find(|o| o.name == format!("o{i}")).unwrap().crc32c;
        assert_eq!(crc, Some(crc32c::crc32c(&want)), "{name}");
        // Up to one buffer (1 MiB): one Put Blob; beyond: 1 MiB blocks, the last one shorter.
        let blocks = container.blocks(&name);
        if size <= MIB {
            assert!(blocks.is_empty(), "{name}: {blocks:?}");
        } else {
            let mut want = vec![MIB; (size / MIB) as usize];
            if size % MIB != 0 {
                want.push(size % MIB);
            }
            assert_eq!(blocks, want, "{name}");
        }
    }
    assert_eq!(container.uncommitted("b/"), Vec::<String>::new());
}

#[test]
fn large_blocks_are_built_from_many_buffers_within_the_pool() {
    let container = Container::new("bigblocks");
    let gen = Generator::new(9, profile(1.0, 1.0, 4096));
    let opts =
        CloudOptions { part_size: Some(96 * MIB), concurrency: Concurrency::Fixed(2), ..CloudOptions::default() };
    let sink = azure_sink(&container, "", opts);
    let size = 200 * MIB + 7;
    let job = || ObjectJob { name: "big.bin".into(), size, content: Content::Stream { stream: 1, offset: 0 } };
    // 96 MiB blocks from 8 MiB buffers: twelve buffers a block, streamed to the SDK in order.
    let cfg = ExecConfig { buffer_size: 8 << 20, buffers: 16, threads: 2, open_objects: 2, crc: false };
    let exec = Executor::new(&sink, gen.clone(), cfg).unwrap();
    exec.run([job()], &mut (), &AtomicBool::new(false)).unwrap();
    let mut want = vec![0u8; size as usize];
    gen.fill(1, 0, &mut want);
    assert!(container.get("big.bin") == want, "bytes differ");
    assert_eq!(container.blocks("big.bin"), vec![96 * MIB, 96 * MIB, 8 * MIB + 7]);
    // A pool smaller than one block is refused with a message that says what to change.
    let cfg = ExecConfig { buffer_size: 8 << 20, buffers: 4, threads: 2, open_objects: 2, crc: false };
    let exec = Executor::new(&sink, gen.clone(), cfg).unwrap();
    let err = exec.run([job()], &mut (), &AtomicBool::new(false)).unwrap_err().to_string();
    assert!(err.contains("needs parts of 96 MiB") && err.contains("pipeline.buffers"), "{err}");
}

#[test]
fn a_workload_on_azure_stores_the_file_sinks_bytes_and_verifies() {
    let container = Container::new("same-bytes");
    let dir = tempdir("az-vs-file");
    let wl = workload("objects.toml");
    let file_uri = format!("target.uri=file://{}", dir.display());
    let az_uri = format!("target.uri={}", container.uri("objs"));
    // The objects plugin reserves each header and patches it in last; 4 MiB buffers make the
    // bigger objects several blocks and the smaller ones single Put Blobs.
    let common = ["--set", "params.count=12", "--set", "params.size=9000000", "-q"];
    let out = bin().args(["run", &wl, "--set", &file_uri]).args(common).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let conn = azurite().connection_string();
    let out = bin_az(&conn).args(["run", &wl, "--set", &az_uri]).args(common).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let files = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap());
    let mut files: Vec<String> = files.collect();
    files.sort();
    let names: Vec<String> =
        container.list("objs/").into_iter().map(|(k, _)| k.trim_start_matches("objs/").into()).collect();
    assert_eq!(names, files);
    assert!(names.len() == 12, "{names:?}");
    let mut multi = 0;
    for f in &files {
        let want = std::fs::read(dir.join(f)).unwrap();
        assert!(container.get(&format!("objs/{f}")) == want, "{f} differs between file and Azure");
        multi += usize::from(!container.blocks(&format!("objs/{f}")).is_empty());
    }
    assert!(multi > 0 && multi < files.len(), "{multi} of {} blobs in blocks", files.len());
    // verify reads every blob back with ranged reads; a changed blob fails it.
    let out = bin_az(&conn).args(["verify", &wl, "--set", &az_uri]).args(common).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let biggest = files.iter().max_by_key(|f| std::fs::metadata(dir.join(f)).unwrap().len()).unwrap();
    let mut bad = container.get(&format!("objs/{biggest}"));
    let at = bad.len() / 2;
    bad[at] ^= 1;
    container.put(&format!("objs/{biggest}"), bad);
    let out = bin_az(&conn).args(["verify", &wl, "--set", &az_uri]).args(common).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains(&format!("differs at byte offset {at}")), "{}", stderr(&out));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn unusable_targets_fail_with_one_clear_line() {
    let container = Container::new("errors");
    let wl = workload("objects.toml");
    let server = azurite();
    let wrong_key = server.connection_string().replace(DEV_KEY, "d3Jvbmcga2V5IGZvciB0aGUgYWNjb3VudA==");
    let no_server = server.connection_string().replace(&server.port.to_string(), &free_port().to_string());
    let cases = [
        (
            server.connection_string(),
            "az://no-such-container/x".to_string(),
            "container 'no-such-container' does not exist",
        ),
        (wrong_key, container.uri("x"), "denied (HTTP 403): check the account key or SAS"),
        (no_server, container.uri("x"), "cannot reach http://127.0.0.1:"),
        (
            "AccountName=acct;AccountKey=not-base64!".to_string(),
            container.uri("x"),
            "the account key for 'acct' is not valid base64",
        ),
        (String::new(), container.uri("x"), "no storage account: set target.account"),
    ];
    for (conn, uri, want) in cases {
        let out = bin_az(&conn).args(["run", &wl, "--set", &format!("target.uri={uri}"), "-q"]).output().unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(3), "{uri}: {err}");
        assert!(err.contains(want), "{uri}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{uri}: more than one line: {err}");
    }
}

#[test]
fn a_missing_container_is_created_when_asked() {
    let name = format!("created-{}", std::process::id());
    let uri = format!("target.uri=az://{name}/p");
    let conn = azurite().connection_string();
    let args = ["--set", "params.count=3", "--set", "params.size=100000", "-q"];
    let out = bin_az(&conn).args(["run", &workload("objects.toml"), "--set", &uri]).args(args).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("target.create_container = true creates it"), "{}", stderr(&out));
    let out = bin_az(&conn)
        .args(["run", &workload("objects.toml"), "--set", &uri, "--set", "target.create_container=true"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(Container::open(azurite(), &name).list("p/").len(), 3);
}

/// The big-object workload the failure tests interrupt: 24 blobs of 24 MiB (6 blocks each).
fn interrupted_run(conn: &str, uri: &str) -> std::process::Child {
    bin_az(conn)
        .args(["run", &workload("objects.toml"), "-q", "--set", &format!("target.uri={uri}")])
        .args(["--set", "params.count=24", "--set", "params.distribution=\"fixed\"", "--set", "params.size=25165824"])
        .args(["--set", "target.retries=0", "--set", "target.concurrency=4"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

const BLOB_SIZE: u64 = 24 + 25165824 + 4;

#[test]
fn azurite_stopped_mid_run_fails_the_run_and_commits_no_partial_blob() {
    let dir = tempdir("azurite-stop");
    let server = Azurite::start(Some(&dir));
    let container = Container::on(&server, "stopped");
    let relay = Relay::start(&server.endpoint);
    let conn = server.connection_string().replace(&format!(":{}/", server.port), &format!(":{}/", relay.port()));
    let child = interrupted_run(&conn, &container.uri("s"));
    relay.wait_for(100 * MIB);
    let stopped = Instant::now();
    server.stop();
    let out = child.wait_with_output().unwrap();
    eprintln!("the run ended {:?} after Azurite was stopped:\n{}", stopped.elapsed(), stderr(&out));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    let last = err.trim().lines().last().unwrap_or("");
    assert!(last.starts_with("error: az://") && last.contains("cannot reach"), "{err}");
    // Back up with what it had stored: every blob a reader can see is whole.
    let server = server.restart(&dir);
    let container = Container::open(&server, &container.name);
    let blobs = container.list("s/");
    for (name, size) in &blobs {
        assert_eq!(*size, BLOB_SIZE, "{name} is partial");
    }
    assert!(blobs.len() < 24, "the run was not interrupted: {blobs:?}");
    drop(server);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn ctrl_c_commits_no_partial_blob() {
    let container = Container::new("ctrlc");
    let relay = Relay::start(&azurite().endpoint);
    let conn = azurite().connection_string().replace(&format!(":{}/", azurite().port), &format!(":{}/", relay.port()));
    let child = interrupted_run(&conn, &container.uri("c"));
    relay.wait_for(60 * MIB);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(stderr(&out).contains("interrupted"), "{}", stderr(&out));
    let blobs = container.list("c/");
    for (name, size) in &blobs {
        assert_eq!(*size, BLOB_SIZE, "{name} is partial");
    }
    assert!(blobs.len() < 24, "the run was not interrupted: {blobs:?}");
    // The interrupted blobs' staged blocks were discarded too (no blob of their names existed).
    assert_eq!(container.uncommitted("c/"), Vec::<String>::new(), "staged blocks left");
}

#[test]
fn azure_keys_are_checked_in_the_workload() {
    let dir = tempdir("az-keys");
    let cases = [
        (
            "[target]\nuri = \"az://ckpt/p\"\npart_size = \"8MiB\"\n",
            ":8: target.part_size: is an s3:// key (Azure calls it block_size)",
        ),
        (
            "[target]\nuri = \"s3://bkt/p\"\nblock_size = \"8MiB\"\n",
            ":8: target.block_size: is an az:// key (S3 calls it part_size)",
        ),
        (
            "[target]\nuri = \"az://ckpt/p\"\nblock_size = \"5GiB\"\n",
            ":8: target.block_size: must be from 1 B to 3.91 GiB",
        ),
        (
            "[target]\nuri = \"az://ckpt/p\"\naccount = \"My_Account\"\n",
            ":8: target.account: 'My_Account' is not a storage account name",
        ),
        ("[target]\nuri = \"az://ckpt/p\"\nregion = \"eu\"\n", ":8: target.region: is an s3:// key"),
        ("[target]\nuri = \"az://Ckpt/p\"\n", ":7: target.uri: 'az://Ckpt/p' needs a container name"),
        ("[target]\nuri = \"file://./x\"\naccount = \"abc\"\n", ":8: target.account: is an az:// key"),
    ];
    let plugin = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins/objects");
    for (i, (target, want)) in cases.iter().enumerate() {
        let f = dir.join(format!("w{i}.toml"));
        std::fs::write(&f, format!("name = \"t\"\nplugin = \"{}\"\n\n\n\n{target}", plugin.display())).unwrap();
        let out = run(&["run", f.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{target}: {}", stderr(&out));
        assert!(stderr(&out).contains(want), "{target}: {}", stderr(&out));
    }
    std::fs::remove_dir_all(dir).ok();
}
