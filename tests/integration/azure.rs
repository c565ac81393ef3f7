//! The Azure sink against Azurite (npm `azurite`) on loopback, started by the tests: block
//! boundaries, blocks built from several buffers, equality with the file sink's bytes, `verify`, and
//! what users see when things go wrong (missing container, wrong key, no server, Azurite stopped
//! mid-run, Ctrl-C) — with no partial blob committed afterwards.

use crate::common::*;
use crate::objects::*;
use azure_storage_blob::models::{
    BlobContainerClientListBlobsOptions, BlockBlobClientUploadOptions, BlockListType, ListBlobsIncludeItem,
};
use azure_storage_blob::{BlobContainerClient, BlobContainerClientOptions};
use dgen_engine::sink::azure::{AzureOptions, AzureStore, AzureTarget, DEV_ACCOUNT, DEV_KEY};
use dgen_engine::sink::cloud::{CloudOptions, CloudSink, Concurrency};
use dgen_engine::Generator;
use futures::StreamExt;
use std::path::PathBuf;
use std::process::Command;
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
    pub port: u16,
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

    /// An in-memory server whose only account is `account` with `key` (Azurite's `AZURITE_ACCOUNTS`),
    /// standing in for a real storage account.
    fn with_account(account: &str, key: &str) -> Azurite {
        let program = azurite_program().unwrap_or_else(|| panic!("azurite-blob not found: {HINT}"));
        let port = free_port();
        let mut cmd = Command::new(program);
        cmd.args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string(), "--silent", "--disableTelemetry"])
            .args(["--loose", "--inMemoryPersistence"])
            .env("AZURITE_ACCOUNTS", format!("{account}:{key}"));
        let server = Server::start(cmd, port, &|| azurite_program().is_some(), HINT);
        Azurite { endpoint: format!("http://127.0.0.1:{port}/{account}"), port, server }
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

    /// Blobs under `prefix` that exist only as staged, uncommitted blocks.
    pub fn uncommitted(&self, prefix: &str) -> Vec<String> {
        let committed = self.list(prefix);
        let all = self.blobs(prefix, true);
        all.into_iter().filter(|b| !committed.iter().any(|c| c.0 == b.0)).map(|b| b.0).collect()
    }

    /// Sizes of the blob's committed blocks (none for a blob written with one Put Blob).
    pub fn blocks(&self, name: &str) -> Vec<u64> {
        let blob = self.client.blob_client(name).block_blob_client();
        let list = self.rt.block_on(blob.get_block_list(BlockListType::Committed, None)).unwrap();
        let list = list.into_model().unwrap();
        list.committed_blocks.unwrap_or_default().iter().map(|b| b.size.unwrap_or(0) as u64).collect()
    }
}

impl Remote for Container {
    fn uri(&self, prefix: &str) -> String {
        format!("az://{}/{prefix}", self.name)
    }

    fn list(&self, prefix: &str) -> Vec<(String, u64)> {
        self.blobs(prefix, false)
    }

    fn get(&self, name: &str) -> Vec<u8> {
        let blob = self.client.blob_client(name);
        self.rt.block_on(async {
            let r = blob.download(None).await.unwrap_or_else(|e| panic!("{name}: {e}"));
            r.body.collect().await.unwrap().to_vec()
        })
    }

    fn put(&self, name: &str, data: Vec<u8>) {
        let blob = self.client.blob_client(name);
        let options = BlockBlobClientUploadOptions {
            partition_size: std::num::NonZero::new(data.len().max(1) as u64),
            ..Default::default()
        };
        self.rt.block_on(blob.upload(bytes::Bytes::from(data).into(), Some(options))).unwrap();
    }

    fn corrupt(&self, name: &str, data: Vec<u8>) {
        use azure_storage_blob::models::BlobClientGetPropertiesResultHeaders;
        let blob = self.client.blob_client(name);
        let props = self.rt.block_on(blob.get_properties(None)).unwrap();
        let options = BlockBlobClientUploadOptions {
            partition_size: std::num::NonZero::new(data.len().max(1) as u64),
            metadata: Some(props.metadata().unwrap()),
            ..Default::default()
        };
        self.rt.block_on(blob.upload(bytes::Bytes::from(data).into(), Some(options))).unwrap();
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
    dgen_engine::sink::azure::open(&AzureTarget::new(&container.uri(prefix), opts).unwrap()).unwrap()
}

/// `dgen-engine` with the environment a user would set for this server (and none of this machine's).
pub fn bin_az(conn: &str) -> Command {
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
    write_and_compare(&sink, &container, "b/", &gen, &sizes, MIB);
    for (i, &size) in sizes.iter().enumerate() {
        // Up to one buffer (1 MiB): one Put Blob; beyond: 1 MiB blocks, the last one shorter.
        let blocks = container.blocks(&format!("b/o{i}"));
        let mut want = vec![MIB; (size / MIB) as usize];
        if size % MIB != 0 {
            want.push(size % MIB);
        }
        if size <= MIB {
            want.clear();
        }
        assert_eq!(blocks, want, "o{i}");
    }
    assert_eq!(container.uncommitted("b/"), Vec::<String>::new());
}

#[test]
fn large_blocks_are_built_from_many_buffers_within_the_pool() {
    let container = Container::new("bigblocks");
    let opts =
        CloudOptions { part_size: Some(96 * MIB), concurrency: Concurrency::Fixed(2), ..CloudOptions::default() };
    big_parts_from_many_buffers(&azure_sink(&container, "", opts), &container);
    // 96 MiB blocks, each streamed to the SDK from twelve buffers.
    assert_eq!(container.blocks("big.bin"), vec![96 * MIB, 96 * MIB, 8 * MIB + 7]);
}

#[test]
fn a_workload_on_azure_stores_the_file_sinks_bytes_and_verifies() {
    let container = Container::new("same-bytes");
    let names = same_bytes_as_files(&container, "az-vs-file", &|| bin_az(&azurite().connection_string()));
    // 4 MiB buffers: the bigger objects went as blocks, the smaller ones as single Put Blobs.
    let in_blocks = names.iter().filter(|f| !container.blocks(&format!("objs/{f}")).is_empty()).count();
    assert!(in_blocks > 0 && in_blocks < names.len(), "{in_blocks} of {} blobs in blocks", names.len());
}

#[test]
fn the_shipped_workload_reaches_an_account_from_a_connection_string_alone() {
    // Not the development account: an account of its own, on a port of its own, named only in the
    // connection string a user would export.
    let key = "cHJvZHVjdGlvbi1hY2NvdW50LWtleS1mb3ItdGVzdHM=";
    let server = Azurite::with_account("prodacct", key);
    let conn =
        format!("DefaultEndpointsProtocol=http;AccountName=prodacct;AccountKey={key};BlobEndpoint={}", server.endpoint);
    let wl = workload("azure-ckpt.toml");
    let o = bin_az(&conn).args(["run", &wl, "-q"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", shown(&o));
    let v = bin_az(&conn).args(["verify", &wl, "-q"]).output().unwrap();
    assert_eq!(v.status.code(), Some(0), "{}", shown(&v));
    // The development account's key is refused there: the connection string was what was used.
    let dev = conn.replace("prodacct", DEV_ACCOUNT).replace(key, DEV_KEY);
    let o = bin_az(&dev).args(["run", &wl, "-q"]).output().unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", shown(&o));
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
        // Nothing configured: Azurite's development account at its default address (nothing there).
        (String::new(), container.uri("x"), "cannot reach http://127.0.0.1:10000/devstoreaccount1"),
    ];
    for (conn, uri, want) in cases {
        let out = bin_az(&conn).args(["run", &wl, "--set", &format!("target.uri={uri}"), "-q"]).output().unwrap();
        let err = shown(&out);
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
    assert_eq!(out.status.code(), Some(3), "{}", shown(&out));
    assert!(shown(&out).contains("target.create_container = true creates it"), "{}", shown(&out));
    let out = bin_az(&conn)
        .args(["run", &workload("objects.toml"), "--set", &uri, "--set", "target.create_container=true"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", shown(&out));
    assert_eq!(Container::open(azurite(), &name).list("p/").len(), 3);
}

#[test]
fn azurite_stopped_mid_run_fails_the_run_and_commits_no_partial_blob() {
    let dir = tempdir("azurite-stop");
    let server = Azurite::start(Some(&dir));
    let container = Container::on(&server, "stopped");
    let relay = Relay::start(&server.endpoint);
    let conn = server.connection_string().replace(&format!(":{}/", server.port), &format!(":{}/", relay.port()));
    let child = interrupted_run(bin_az(&conn), &container.uri("s"));
    relay.wait_for(100 * MIB);
    let stopped = Instant::now();
    server.stop();
    let out = child.wait_with_output().unwrap();
    eprintln!("the run ended {:?} after Azurite was stopped:\n{}", stopped.elapsed(), shown(&out));
    let err = shown(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    let last = err.trim().lines().last().unwrap_or("");
    assert!(last.starts_with("error: az://") && last.contains("cannot reach"), "{err}");
    // Back up with what it had stored: every blob a reader can see is whole.
    let server = server.restart(&dir);
    only_whole_objects(&Container::open(&server, &container.name), "s/");
    drop(server);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn ctrl_c_commits_no_partial_blob() {
    let container = Container::new("ctrlc");
    let relay = Relay::start(&azurite().endpoint);
    let conn = azurite().connection_string().replace(&format!(":{}/", azurite().port), &format!(":{}/", relay.port()));
    let child = interrupted_run(bin_az(&conn), &container.uri("c"));
    relay.wait_for(60 * MIB);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", shown(&out));
    assert!(shown(&out).contains("interrupted"), "{}", shown(&out));
    only_whole_objects(&container, "c/");
    // The interrupted blobs' staged blocks were discarded too (no blob of their names existed).
    assert_eq!(container.uncommitted("c/"), Vec::<String>::new(), "staged blocks left");
}

#[test]
fn azure_keys_are_checked_in_the_workload() {
    target_tables_are_refused(
        "az-keys",
        &[
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
        ],
    );
}
