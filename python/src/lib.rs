//! `dgen_engine._native`: the engine's generator, its one-object write path and its workload runs,
//! for the `dgen_engine` Python package (`dgen_engine/__init__.py` is the public face: argument
//! names, defaults, docstrings, buffer handling; this module does the work).
//!
//! Everything long runs with the GIL released. A write or a run goes on a thread of its own while
//! the calling thread waits with the GIL taken only every 50 ms, to call the progress callback and
//! to let Python see Ctrl-C (`PyErr_CheckSignals`): then the engine is cancelled, aborts what it
//! has open (no complete-looking file, no open upload), and KeyboardInterrupt is raised.

use dgen_engine::generator::{Generator, Profile};
use dgen_engine::pipeline::executor::Observer;
use dgen_engine::Error;
use pyo3::exceptions::{PyKeyboardInterrupt, PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// An engine error as the Python exception a user expects: bad values `ValueError`, storage
/// `OSError` (with the errno when there is one, so `FileNotFoundError`, `PermissionError` … are
/// raised as such), Ctrl-C `KeyboardInterrupt`, the rest `RuntimeError`.
fn to_py(e: Error) -> PyErr {
    let message = e.to_string();
    match &e {
        Error::InvalidValue { .. } | Error::Workload { .. } => PyValueError::new_err(message),
        Error::Cancelled => PyKeyboardInterrupt::new_err(message),
        Error::NotFound { .. }
        | Error::Denied { .. }
        | Error::Unreachable { .. }
        | Error::NoSpace { .. }
        | Error::Io { .. }
        | Error::Sink { .. } => match errno(&e) {
            Some(n) => PyOSError::new_err((n, message)),
            None => PyOSError::new_err(message),
        },
        _ => PyRuntimeError::new_err(message),
    }
}

/// The OS error number under an engine error, or the one its kind stands for.
fn errno(e: &Error) -> Option<i32> {
    if let Error::Io { error, .. } = e {
        return error.raw_os_error();
    }
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = cur {
        if let Some(n) = s.downcast_ref::<std::io::Error>().and_then(|io| io.raw_os_error()) {
            return Some(n);
        }
        cur = s.source();
    }
    match e {
        Error::NotFound { .. } => Some(libc_errno::ENOENT),
        Error::Denied { .. } => Some(libc_errno::EACCES),
        Error::NoSpace { .. } => Some(libc_errno::ENOSPC),
        _ => None,
    }
}

/// The errno values this module names (Linux's).
mod libc_errno {
    pub const ENOENT: i32 = 2;
    pub const EACCES: i32 = 13;
    pub const ENOSPC: i32 = 28;
}

/// The profile of the arguments: `extent` None is the unit (32 KiB with a mix), `mix` None is
/// `compress` for every block.
fn profile(
    dedup: Option<f64>,
    compress: f64,
    unit: u64,
    extent: Option<u64>,
    mix: Option<Vec<(f64, f64)>>,
    copies: Option<String>,
) -> PyResult<Profile> {
    let named = |e: Error| {
        // The engine names its workload keys; Python callers know the arguments.
        let text = e
            .to_string()
            .replace("data.dedup_unit", "dedup_unit")
            .replace("data.dedup_extent", "dedup_extent")
            .replace("data.compress_mix", "compress_mix")
            .replace("data.dedup_copies", "dedup_copies")
            .replace("data.dedup", "dedup_ratio");
        PyValueError::new_err(text.replace("data.compress", "compress_ratio"))
    };
    let copies = copies.as_deref().map(dgen_engine::generator::copies::CopySpec::parse).transpose().map_err(named)?;
    Profile::from_keys(dgen_engine::generator::DataKeys { dedup, compress, unit, extent, mix, copies }).map_err(named)
}

/// The generator of one run: `(seed, profile)` → the bytes of stream 0 at any offset, filled in
/// parallel on a pool of `max_threads` threads (all cores by default), the same bytes whatever
/// the thread count and the chunking.
#[pyclass(module = "dgen_engine._native", frozen)]
struct Stream {
    gen: Generator,
    pool: Option<rayon::ThreadPool>,
}

#[pymethods]
impl Stream {
    #[new]
    #[pyo3(signature = (seed, dedup, compress, unit, max_threads, extent=None, mix=None, copies=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        seed: Option<u64>,
        dedup: Option<f64>,
        compress: f64,
        unit: u64,
        max_threads: Option<usize>,
        extent: Option<u64>,
        mix: Option<Vec<(f64, f64)>>,
        copies: Option<String>,
    ) -> PyResult<Stream> {
        let p = profile(dedup, compress, unit, extent, mix, copies)?;
        let gen = Generator::new(seed.unwrap_or_else(dgen_engine::run::random_seed), p);
        let pool = match max_threads {
            None => None,
            Some(0) => return Err(PyValueError::new_err("max_threads must be at least 1")),
            Some(n) => Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .build()
                    .map_err(|e| PyRuntimeError::new_err(format!("cannot start {n} generator threads: {e}")))?,
            ),
        };
        Ok(Stream { gen, pool })
    }

    #[getter]
    fn seed(&self) -> u64 {
        self.gen.seed()
    }

    /// The stream's compress ratio (with a mix, the one it implies).
    #[getter]
    fn compress(&self) -> f64 {
        self.gen.profile().compress()
    }

    #[getter]
    fn extent(&self) -> u64 {
        self.gen.profile().extent()
    }

    /// The dedup ratio (with a histogram of copies, the one it implies).
    #[getter]
    fn dedup(&self) -> f64 {
        self.gen.profile().dedup()
    }

    /// The dedup ratio the first `len` bytes hold, counted exactly (None: less than one extent).
    fn dedup_over(&self, len: u64) -> Option<f64> {
        self.gen.dedup_over(len)
    }

    #[getter]
    fn kernel(&self) -> &'static str {
        self.gen.kernel().name()
    }

    /// Fills `len` bytes at address `addr` with the stream's bytes from `offset`, GIL released.
    ///
    /// # Safety (the caller's, in `dgen_engine/__init__.py`)
    /// `addr..addr + len` is a writable buffer the caller holds exported (a ctypes view of it)
    /// for the whole call, so nothing can free or resize it meanwhile.
    fn fill(&self, py: Python<'_>, addr: usize, len: usize, offset: u64) -> PyResult<()> {
        if len == 0 {
            return Ok(());
        }
        if addr == 0 {
            return Err(PyValueError::new_err("a null buffer"));
        }
        let (gen, pool) = (&self.gen, &self.pool);
        py.detach(|| {
            // SAFETY: see the method's doc; the slice lives only for this call.
            let buf = unsafe { std::slice::from_raw_parts_mut(addr as *mut u8, len) };
            match pool {
                Some(p) => p.install(|| gen.fill_par(0, offset, buf)),
                None => gen.fill_par(0, offset, buf),
            }
        });
        Ok(())
    }
}

trait EngineMessage {
    fn and_engine_message(self) -> PyErr;
}

impl EngineMessage for PyErr {
    /// A KeyboardInterrupt from the signal handler, replaced by one saying what the engine did;
    /// any other exception (a handler that raises something else) kept as it is.
    fn and_engine_message(self) -> PyErr {
        let is_interrupt = Python::attach(|py| self.is_instance_of::<PyKeyboardInterrupt>(py));
        if is_interrupt {
            to_py(Error::Cancelled)
        } else {
            self
        }
    }
}

/// Bytes written so far, shared with the waiting thread.
struct Counter(Arc<AtomicU64>);

impl Observer for Counter {
    fn progress(&mut self, bytes: u64) {
        self.0.store(bytes, Ordering::Relaxed);
    }
}

/// Runs `work` on a thread of its own with the GIL released; meanwhile, every 50 ms, calls
/// `progress(bytes)` and checks for Ctrl-C, which cancels the work, waits for its clean abort and
/// raises KeyboardInterrupt.
fn supervised<T: Send + 'static>(
    py: Python<'_>,
    progress: Option<Py<PyAny>>,
    work: impl FnOnce(Arc<AtomicU64>, Arc<AtomicBool>) -> dgen_engine::Result<T> + Send + 'static,
) -> PyResult<T> {
    let bytes = Arc::new(AtomicU64::new(0));
    let cancel = Arc::new(AtomicBool::new(false));
    let (b, c) = (bytes.clone(), cancel.clone());
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::Builder::new()
        .name("dgen-engine".into())
        .spawn(move || {
            let _ = tx.send(work(b, c));
        })
        .map_err(|e| PyRuntimeError::new_err(format!("cannot start the engine's thread: {e}")))?;
    let mut interrupted: Option<PyErr> = None;
    let mut signalled = false;
    let mut reported = u64::MAX;
    loop {
        match py.detach(|| rx.recv_timeout(Duration::from_millis(50))) {
            Ok(result) => {
                return match (interrupted, result) {
                    // Ctrl-C, seen by the engine: its clean abort, said as KeyboardInterrupt.
                    (Some(e), Err(Error::Cancelled)) if signalled => Err(e.and_engine_message()),
                    (Some(e), _) => Err(e),
                    (None, r) => r.map_err(to_py),
                };
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                return Err(PyRuntimeError::new_err("the engine's thread ended without a result"));
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
        }
        if interrupted.is_some() {
            continue;
        }
        if let Err(e) = py.check_signals() {
            cancel.store(true, Ordering::SeqCst);
            interrupted = Some(e);
            signalled = true;
            continue;
        }
        if let Some(cb) = &progress {
            let now = bytes.load(Ordering::Relaxed);
            if now != reported {
                reported = now;
                if let Err(e) = cb.call1(py, (now,)) {
                    // A callback that raises stops the write as Ctrl-C does, with its exception;
                    // Ctrl-C itself may land while the callback runs, and is then said as Ctrl-C.
                    cancel.store(true, Ordering::SeqCst);
                    signalled = e.is_instance_of::<PyKeyboardInterrupt>(py);
                    interrupted = Some(e);
                }
            }
        }
    }
}

/// Writes one object; the arguments are `dgen_engine.write_file`'s, checked there.
#[pyfunction]
#[pyo3(signature = (path, size, buffer_size, buffer_count, use_direct_io, dedup_ratio, compress_ratio,
                    use_io_uring, seed, dedup_unit, verify, progress, max_threads, target, dedup_extent=None,
                    compress_mix=None, dedup_copies=None))]
#[allow(clippy::too_many_arguments)]
fn write_file<'py>(
    py: Python<'py>,
    path: String,
    size: u64,
    buffer_size: usize,
    buffer_count: usize,
    use_direct_io: bool,
    dedup_ratio: Option<f64>,
    compress_ratio: f64,
    use_io_uring: bool,
    seed: Option<u64>,
    dedup_unit: u64,
    verify: bool,
    progress: Option<Py<PyAny>>,
    max_threads: Option<usize>,
    target: String,
    dedup_extent: Option<u64>,
    compress_mix: Option<Vec<(f64, f64)>>,
    dedup_copies: Option<String>,
) -> PyResult<Bound<'py, PyDict>> {
    let p = profile(dedup_ratio, compress_ratio, dedup_unit, dedup_extent, compress_mix, dedup_copies)?;
    let gen = Generator::new(seed.unwrap_or_else(dgen_engine::run::random_seed), p);
    let mut table: toml::Table = toml::from_str(&target)
        .map_err(|e| PyValueError::new_err(format!("target: not a table of [target] keys: {e}")))?;
    if dgen_engine::sink::target::split(&path).map_err(to_py)?.0.starts_with("file://") {
        let file = table.entry("file").or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(t) = file {
            t.entry("direct").or_insert(toml::Value::Boolean(use_direct_io));
            let engine = if use_io_uring { "auto" } else { "pwrite" };
            t.entry("engine").or_insert(toml::Value::String(engine.into()));
        }
    }
    let threads = max_threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let spec = dgen_engine::run::write_file::WriteSpec {
        uri: path,
        size,
        buffer_size,
        buffers: buffer_count,
        threads,
        verify,
        target: table,
    };
    let seed = gen.seed();
    let w = supervised(py, progress, move |bytes, cancel| {
        dgen_engine::run::write_file::write(&gen, &spec, &mut Counter(bytes), &cancel)
    })?;
    let s = &w.result.stats;
    let d = PyDict::new(py);
    d.set_item("bytes_written", s.bytes)?;
    d.set_item("duration_secs", s.elapsed.as_secs_f64())?;
    d.set_item("throughput", s.bytes as f64 / s.elapsed.as_secs_f64().max(1e-9) / 1e9)?;
    d.set_item("operations", s.ops)?;
    d.set_item("crc32c", w.result.crc32c)?;
    d.set_item("seed", seed)?;
    d.set_item("generate_secs", s.generate.as_secs_f64())?;
    d.set_item("io_secs", s.io_busy.as_secs_f64())?;
    d.set_item("wait_secs", s.buffer_wait.as_secs_f64())?;
    d.set_item("threads", s.threads)?;
    d.set_item("object", &w.object)?;
    d.set_item("engine", &w.engine)?;
    d.set_item("pool_bytes", w.result.pool_bytes)?;
    d.set_item("notes", w.notes.clone())?;
    d.set_item("latency_p50_us", s.op_latency.value_at_quantile(0.5))?;
    d.set_item("latency_p99_us", s.op_latency.value_at_quantile(0.99))?;
    match &w.verdict {
        Some(v) => {
            d.set_item("verified", v.is_identical())?;
            d.set_item("verify", v.to_string())?;
        }
        None => d.set_item("verified", py.None())?,
    }
    Ok(d)
}

/// Runs (or verifies) a workload in this process, as `dgen-engine run` does without a launcher:
/// `(exit code, the JSON report, the lines the CLI would print)`.
#[pyfunction]
#[pyo3(signature = (workload, sets, seed, verify, progress))]
fn run_workload(
    py: Python<'_>,
    workload: String,
    sets: Vec<String>,
    seed: Option<u64>,
    verify: bool,
    progress: Option<Py<PyAny>>,
) -> PyResult<(u8, String, Vec<String>)> {
    use dgen_engine::plugin::host::Mode;
    use dgen_engine::run::{RunEnv, Session};
    let mode = if verify { Mode::Verify } else { Mode::Write };
    let path = std::path::PathBuf::from(&workload);
    let failure = {
        let path = path.clone();
        move |e: &Error| {
            let report = dgen_engine::report::Report::failure(&path, verify, e);
            (e.exit_code(), report.to_json().to_string(), vec![format!("error: {e}")])
        }
    };
    let r = supervised(py, progress, move |bytes, cancel| {
        let attempt = || -> dgen_engine::Result<(u8, String, Vec<String>)> {
            let events = Arc::new(dgen_engine::events::Silent);
            let session = Session::open(&path, &sets, seed, mode, true, &*events)?;
            let env = RunEnv::alone(cancel.clone(), events);
            let outcome = session.run(&mut Counter(bytes), &env)?;
            if let Some(Error::Cancelled) = &outcome.error {
                return Err(Error::Cancelled);
            }
            let report = session.report(&outcome);
            Ok((outcome.exit_code(), report.to_json().to_string(), report.lines()))
        };
        Ok(match attempt() {
            Ok(r) => r,
            Err(Error::Cancelled) => return Err(Error::Cancelled),
            Err(e) => failure(&e),
        })
    })?;
    Ok(r)
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Stream>()?;
    m.add_function(wrap_pyfunction!(write_file, m)?)?;
    m.add_function(wrap_pyfunction!(run_workload, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("DEFAULT_UNIT", dgen_engine::generator::DEFAULT_UNIT)?;
    Ok(())
}
