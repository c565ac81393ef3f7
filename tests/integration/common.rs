//! Helpers shared by the test modules: measuring what a storage array or a compressor would see,
//! running the binary, and the servers (and a relay in front of them) the object-store tests use.

use dgen_engine::{Generator, Profile};
use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a user would measure on a stream.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    pub blocks: u64,
    pub distinct: u64,
    pub zstd: f64,
    pub lz4: f64,
    pub gzip: f64,
    pub zero_sectors: u64,
}

impl Measured {
    pub fn dedup(&self) -> f64 {
        self.blocks as f64 / self.distinct as f64
    }
}

/// Counts bytes written to it.
#[derive(Default)]
pub struct Counter(pub u64);

impl Write for Counter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0 += b.len() as u64;
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn hash(b: &[u8]) -> u128 {
    xxhash_rust::xxh3::xxh3_128(b)
}

/// Distinct dedup-unit blocks of stream 0 over `len` bytes (hashing only; cheap).
pub fn distinct_blocks(gen: &Generator, len: u64) -> (u64, u64) {
    let unit = gen.profile().unit() as usize;
    let chunk = (8 << 20).max(unit);
    let mut buf = vec![0u8; chunk];
    let mut seen = HashSet::new();
    let mut blocks = 0;
    let mut pos = 0u64;
    while pos < len {
        let n = (chunk as u64).min(len - pos) as usize;
        gen.fill_par(0, pos, &mut buf[..n]);
        for b in buf[..n].chunks(unit) {
            seen.insert(hash(b));
            blocks += 1;
        }
        pos += n as u64;
    }
    (blocks, seen.len() as u64)
}

/// Dedup, zstd -3, lz4 and gzip -6 ratios and all-zero 512 B sectors of stream 0 over `len` bytes.
pub fn measure(gen: &Generator, len: u64, with_compressors: bool) -> Measured {
    let unit = gen.profile().unit() as usize;
    let chunk = (4 << 20).max(unit);
    let mut buf = vec![0u8; chunk];
    let mut seen = HashSet::new();
    let (mut blocks, mut zero_sectors) = (0u64, 0u64);
    let mut zstd = zstd::stream::Encoder::new(Counter::default(), 3).unwrap();
    let mut lz4 = lz4_flex::frame::FrameEncoder::new(Counter::default());
    let mut gzip = flate2::write::GzEncoder::new(Counter::default(), flate2::Compression::new(6));
    let mut pos = 0u64;
    while pos < len {
        let n = (chunk as u64).min(len - pos) as usize;
        let data = &mut buf[..n];
        gen.fill_par(0, pos, data);
        for b in data.chunks(unit) {
            seen.insert(hash(b));
            blocks += 1;
        }
        zero_sectors += data.chunks(512).filter(|s| s.iter().all(|&x| x == 0)).count() as u64;
        if with_compressors {
            zstd.write_all(data).unwrap();
            lz4.write_all(data).unwrap();
            gzip.write_all(data).unwrap();
        }
        pos += n as u64;
    }
    let ratio = |c: u64| len as f64 / c as f64;
    let (z, l, g) = if with_compressors {
        (ratio(zstd.finish().unwrap().0), ratio(lz4.finish().unwrap().0), ratio(gzip.finish().unwrap().0))
    } else {
        (0.0, 0.0, 0.0)
    };
    Measured { blocks, distinct: seen.len() as u64, zstd: z, lz4: l, gzip: g, zero_sectors }
}

pub fn profile(d: f64, c: f64, unit: u64) -> Profile {
    Profile::new(d, c, unit).unwrap()
}

/// The `dgen-engine` binary under test.
pub fn bin() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_dgen-engine"))
}

/// Runs `dgen-engine ARGS` to completion.
pub fn run(args: &[&str]) -> std::process::Output {
    bin().args(args).output().expect("run dgen-engine")
}

/// What a command showed on the terminal: its results (stdout, where `run` puts its table; left out
/// when it is not text, as `gen`'s data), then its messages and errors (stderr).
pub fn shown(o: &std::process::Output) -> String {
    std::str::from_utf8(&o.stdout).unwrap_or("").to_string() + &String::from_utf8_lossy(&o.stderr)
}

/// A fresh, empty directory for one test.
pub fn tempdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("dgen-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A path in the repository's `workloads/`.
pub fn workload(name: &str) -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads").join(name).display().to_string()
}

pub const MIB: u64 = 1 << 20;

/// Every file below `dir`, as paths relative to it (`a/b.bin`), sorted.
pub fn files_under(dir: &std::path::Path) -> Vec<String> {
    fn walk(top: &std::path::Path, dir: &std::path::Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(top, &p, out);
            } else {
                out.push(p.strip_prefix(top).unwrap_or(&p).display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A server process the tests start (moto, Azurite), killed when it is dropped or the test process
/// exits.
pub struct Server {
    pid: i32,
}

impl Server {
    /// Spawns `cmd` and waits until it listens on `port`; `installed` tells a missing program from a
    /// slow one, `hint` says how to install it.
    pub fn start(mut cmd: Command, port: u16, installed: &dyn Fn() -> bool, hint: &str) -> Server {
        let program = cmd.get_program().to_string_lossy().into_owned();
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        let (tx, rx) = std::sync::mpsc::channel();
        // The server is spawned from a thread that lives as long as the process: PR_SET_PDEATHSIG
        // fires when the spawning thread ends, so the server goes when the tests do.
        std::thread::spawn(move || {
            // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
            match cmd.spawn() {
                Ok(mut child) => {
                    tx.send(Ok(child.id() as i32)).unwrap();
                    // Reaped here when it ends (killed by a test, or dying): no zombie holds the port.
                    let _ = child.wait();
                    loop {
                        std::thread::park();
                    }
                }
                Err(e) => tx.send(Err(e)).unwrap(),
            }
        });
        let pid = match rx.recv().unwrap() {
            Ok(pid) => pid,
            Err(e) => panic!("cannot start {program} ({e}): {hint}"),
        };
        let server = Server { pid };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(installed(), "{program} is not installed: {hint}");
            assert!(Instant::now() < deadline, "{program} did not start listening on port {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// Stops the server at once (SIGKILL: no clean shutdown, as when a machine or process dies).
    pub fn kill(&self) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid), nix::sys::signal::Signal::SIGKILL);
    }

    /// Asks the server to stop (SIGTERM, as `docker stop` or a service manager does).
    pub fn stop(&self) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid), nix::sys::signal::Signal::SIGTERM);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP relay in front of a server that counts the bytes sent to it and can drop every connection
/// and refuse new ones for a while: the server "goes away" mid-run and comes back, with its state
/// intact.
pub struct Relay {
    port: u16,
    pub relayed: Arc<AtomicU64>,
    down: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    pub fn start(upstream: &str) -> Relay {
        let upstream = upstream.trim_start_matches("http://").split('/').next().unwrap().to_string();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let relay = Relay { port, relayed: Arc::default(), down: Arc::default(), conns: Arc::default() };
        let (relayed, down, conns) = (relay.relayed.clone(), relay.down.clone(), relay.conns.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if down.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is reset
                }
                let Ok(server) = TcpStream::connect(&upstream) else { continue };
                conns.lock().unwrap().extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                let pipe = |mut from: TcpStream, mut to: TcpStream, count: Option<Arc<AtomicU64>>| {
                    std::thread::spawn(move || {
                        let mut buf = vec![0u8; 256 << 10];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 || to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                            if let Some(c) = &count {
                                c.fetch_add(n as u64, Ordering::Relaxed);
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                };
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap(), Some(relayed.clone()));
                pipe(server, client, None);
            }
        });
        relay
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Cuts every connection and refuses new ones for `outage`, then serves again.
    pub fn outage(&self, outage: Duration) {
        self.down.store(true, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
        std::thread::sleep(outage);
        self.down.store(false, Ordering::SeqCst);
    }

    /// Waits until `bytes` have gone through (the run is well under way).
    pub fn wait_for(&self, bytes: u64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.relayed.load(Ordering::Relaxed) < bytes {
            assert!(Instant::now() < deadline, "the run did not get going");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// SHA-256 of a file, lower-case hex (what a workload pins).
pub fn sha256_file(path: &std::path::Path) -> String {
    dgen_engine::plugin::sha256_hex(&std::fs::read(path).unwrap())
}
