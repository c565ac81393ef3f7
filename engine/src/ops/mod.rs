//! The operations engine: random and mixed I/O in place on a region of a file or a block device,
//! run natively from one job description (the `job` call of contract 1.2), with no host call and no
//! record per operation — counters, exact latency histograms and a per-interval series only.
//!
//! - [`spec`] — a job as the plugin writes it, checked key by key;
//! - [`pattern`] — what each operation is and where it goes (mix, sizes, sequential / random /
//!   zipf / hot sets);
//! - [`genmap`] — each block's generation, one byte per block, claimed while a write is in flight;
//! - [`journal`] — that map on disk, written ahead of the writes, for read-backs after a crash;
//! - [`worker`] — one stream of operations: rate cap, write bytes (generation-exact, see
//!   [`crate::generator::region`]), completions into histograms and the series;
//! - [`ring`] — the io_uring driver (a ring per worker, registered buffers and file); [`psync`] — the
//!   pread/pwrite driver where rings are missing;
//! - [`stats`] — per-kind figures with fio's JSON names, and the series;
//! - [`check`] — the read-back of a whole region: lost writes, torn and corrupt blocks;
//! - [`record`] — what a phase keeps of its jobs for the report.

pub mod check;
pub mod genmap;
pub mod journal;
pub mod pattern;
pub mod psync;
pub mod record;
pub mod ring;
pub mod spec;
pub mod stats;
pub mod worker;

use crate::error::{Error, Result};
use crate::generator::region::RegionData;
use crate::pool::BufferPool;
use check::CheckFigures;
use genmap::GenMap;
use serde::Serialize;
use spec::{JobSpec, OpKind, VerifyWhen};
use stats::{new_kinds, KindFigures, Kinds, Point, SeriesBuilder};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};
use worker::{Feed, Shared, Worker};

/// Prefill writes are this long (or the region, if shorter).
pub const PREFILL_BS: u64 = 1 << 20;

/// The part of a file or device a job works on, open — or a pool of objects (files), each holding
/// an equal, consecutive stretch of it: one space for the access pattern and the data, whose
/// operations never cross from one file to the next.
pub struct Region {
    /// The files, in order (one for a file or a device).
    pub files: Vec<Arc<File>>,
    /// Their names, for messages and for the blocks a read-back lists.
    pub names: Vec<String>,
    /// For messages: the file's path, the device, or the pool.
    pub name: String,
    /// Where the region starts in each file, bytes.
    pub offset: u64,
    /// Bytes of the region in each file.
    pub segment: u64,
    /// Bytes of the region in all.
    pub size: u64,
    /// Opened with O_DIRECT.
    pub direct: bool,
    /// What O_DIRECT needs of offsets, lengths and buffers (1: nothing).
    pub align: u64,
}

impl Region {
    /// A region of one file or device.
    pub fn single(file: Arc<File>, name: String, offset: u64, size: u64, direct: bool, align: u64) -> Region {
        Region { files: vec![file], names: vec![name.clone()], name, offset, segment: size, size, direct, align }
    }

    /// The first file (the only one, but for a pool).
    pub fn file(&self) -> &File {
        &self.files[0]
    }

    /// Which file byte `at` of the region is in, and where in that file.
    #[inline]
    pub fn place(&self, at: u64) -> (usize, u64) {
        ((at / self.segment) as usize, self.offset + at % self.segment)
    }

    /// Whether the files live in memory (tmpfs, ramfs): operations there cost CPU only. (A block
    /// device's node lives on devtmpfs, which says tmpfs too: only regular files are asked.)
    pub fn in_memory(&self) -> bool {
        if !self.file().metadata().is_ok_and(|m| m.is_file()) {
            return false;
        }
        const TMPFS_MAGIC: i64 = 0x0102_1994;
        const RAMFS_MAGIC: i64 = 0x8584_58f6;
        // SAFETY: a zeroed statfs is a valid value for fstatfs to fill.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: a valid descriptor and a struct fstatfs fills.
        let rc = unsafe { libc::fstatfs(self.file().as_raw_fd(), &mut st) };
        rc == 0 && matches!(st.f_type as i64, TMPFS_MAGIC | RAMFS_MAGIC)
    }

    /// Syncs every file (see [`sync`]).
    pub fn sync_all(&self) -> Result<()> {
        for (f, n) in self.files.iter().zip(&self.names) {
            sync(f).map_err(|e| Error::io(n, e))?;
        }
        Ok(())
    }
}

/// `fdatasync`, where the file can be synced at all (EINVAL: a special file, such as null://'s
/// `/dev/zero`, that keeps nothing to sync).
pub fn sync(file: &File) -> std::io::Result<()> {
    match file.sync_data() {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
        r => r,
    }
}

/// How to drive the operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Driver {
    IoUring,
    Psync,
}

impl Driver {
    pub fn name(self) -> &'static str {
        match self {
            Driver::IoUring => "io_uring",
            Driver::Psync => "psync",
        }
    }
}

/// A pass over the region before the operations.
#[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct PrefillFigures {
    pub bytes: u64,
    /// Writes it took.
    pub ios: u64,
    pub seconds: f64,
}

/// What a job did.
#[derive(Clone, Debug)]
pub struct JobOutcome {
    pub prefill: Option<PrefillFigures>,
    /// Per kind, after the ramp.
    pub kinds: Kinds,
    /// From the ramp's end to the last completion, seconds.
    pub seconds: f64,
    pub series: Vec<Point>,
    pub check: Option<CheckFigures>,
    pub driver: Driver,
    /// A storage failure that stopped the job (the figures are up to it).
    pub error: Option<Error>,
}

impl JobOutcome {
    pub fn figures(&self, k: OpKind) -> KindFigures {
        KindFigures::of(&self.kinds[k.index()], self.seconds)
    }
}

/// Checks a job against its region (sizes, alignment) before anything runs; the error names the key.
pub fn check_against(
    spec: &JobSpec,
    region: &Region,
    unit: u64,
    extent: u64,
) -> std::result::Result<(), spec::SpecError> {
    let bad = |key: String, message: String| spec::SpecError { key, message };
    if region.size == 0 || !region.segment.is_multiple_of(extent) {
        return Err(bad(
            "size".into(),
            format!("{} bytes is not a whole number of dedup extents ({extent} bytes)", region.segment),
        ));
    }
    if region.align > unit {
        return Err(bad(
            "data.dedup_unit".into(),
            format!(
                "O_DIRECT here needs {}-byte alignment, and a block (the dedup unit, {unit} bytes) is written whole: \
                 use a unit of at least {} bytes, or direct = false",
                region.align, region.align
            ),
        ));
    }
    if !region.offset.is_multiple_of(unit.max(region.align)) {
        return Err(bad(
            "offset".into(),
            format!("{} is not a multiple of {} bytes", region.offset, unit.max(region.align)),
        ));
    }
    for (i, e) in spec.mix.iter().enumerate() {
        for (j, &(bs, _)) in e.sizes.iter().enumerate() {
            let key = if e.sizes.len() == 1 { format!("mix[{i}].bs") } else { format!("mix[{i}].bs[{j}]") };
            let need = if e.op == OpKind::Read { region.align } else { unit.max(region.align) };
            if !bs.is_multiple_of(need) {
                let why = if e.op == OpKind::Read {
                    "what O_DIRECT needs here"
                } else {
                    "a block: the data's dedup unit, which writes and trims cover whole"
                };
                return Err(bad(key, format!("{bs} bytes is not a multiple of {need} bytes ({why})")));
            }
            if bs > region.segment {
                return Err(bad(key, format!("{bs} bytes is larger than the region ({} bytes)", region.segment)));
            }
        }
    }
    Ok(())
}

/// Everything a job runs with.
pub struct JobEnv<'a> {
    pub region: &'a Region,
    pub data: &'a RegionData,
    pub map: &'a GenMap,
    /// The map on disk, when the job keeps one.
    pub journal: Option<&'a journal::Journal>,
    pub cancel: &'a AtomicBool,
    pub seed: u64,
    pub driver: Driver,
    /// Write the whole region before the operations.
    pub prefill: bool,
    /// Threads for the read-back.
    pub check_threads: usize,
}

/// Bytes the job's buffers take (what the host charges for it while it runs).
pub fn buffer_bytes(spec: &JobSpec, prefill: bool) -> u64 {
    let ops = spec.jobs as u64 * spec.depth as u64 * spec.max_bs().next_multiple_of(4096);
    let fill = if prefill { spec.jobs as u64 * prefill_depth(spec) as u64 * PREFILL_BS } else { 0 };
    ops.max(fill)
}

/// Writes in flight per ring in a prefill: sequential 1 MiB writes need few to keep a device busy.
fn prefill_depth(spec: &JobSpec) -> u32 {
    spec.depth.clamp(4, 8)
}

/// Runs a job: the prefill, the operations, the read-back, as asked.
pub fn run(spec: &JobSpec, env: &JobEnv) -> Result<JobOutcome> {
    let mut out = JobOutcome {
        prefill: None,
        kinds: new_kinds(),
        seconds: 0.0,
        series: Vec::new(),
        check: None,
        driver: env.driver,
        error: None,
    };
    if env.prefill {
        let started = Instant::now();
        let bs = PREFILL_BS.min(env.region.size) / env.data.unit() * env.data.unit();
        let sweep = Pass {
            depth: prefill_depth(spec),
            jobs: spec.jobs,
            ramp: 0.0,
            end: None,
            rate: (None, None),
            think: 0.0,
            fsync_every: 0,
            batch: spec.batch,
        };
        let r = drive(env, &sweep, bs, 1.0, |i, n| {
            let stripe = env.region.size / env.data.unit() / n as u64 * env.data.unit();
            let start = stripe * i as u64;
            let end = if i + 1 == n as usize { env.region.size } else { start + stripe };
            (Feed::Sweep { next: start, end, bs, op: OpKind::Write }, None)
        })?;
        if let Some(e) = r.error {
            out.error = Some(e);
            return Ok(out);
        }
        // Writes durable before the region counts as whole.
        env.region.sync_all()?;
        if let Some(j) = env.journal {
            j.store(env.map)?;
        }
        let w = &r.kinds[OpKind::Write.index()];
        out.prefill = Some(PrefillFigures { bytes: w.bytes, ios: w.ios, seconds: started.elapsed().as_secs_f64() });
    }
    if spec.verify != VerifyWhen::Only && !spec.mix.is_empty() {
        let pass = Pass {
            depth: spec.depth,
            jobs: spec.jobs,
            ramp: spec.ramp,
            end: spec.duration.map(|d| d + spec.ramp),
            rate: (spec.rate_iops, spec.rate_bytes),
            think: spec.think,
            fsync_every: spec.fsync_every,
            batch: spec.batch,
        };
        let (unit, align) = (env.data.unit(), env.region.align.max(512));
        let ops = spec.ops;
        let r = drive(env, &pass, spec.max_bs(), spec.series_interval, |i, n| {
            let picker = pattern::Picker::new(
                &spec.mix,
                &spec.pattern,
                pattern::Space { region: env.region.size, segment: env.region.segment, unit, read_align: align },
                env.seed,
                i as u32,
                n,
            );
            let quota = ops.map(|o| o / n as u64 + u64::from((i as u64) < o % n as u64));
            (Feed::Mix(picker), quota)
        })?;
        out.kinds = r.kinds;
        out.seconds = r.seconds;
        out.series = r.series;
        if r.error.is_some() {
            out.error = r.error;
            return Ok(out);
        }
    }
    if spec.verify != VerifyWhen::Never {
        out.check = Some(check::check_region(env.region, env.data, env.map, env.cancel, env.check_threads)?);
        // Blocks whose writes were in flight at a crash are settled now.
        if let Some(j) = env.journal {
            j.store(env.map)?;
        }
    }
    Ok(out)
}

/// How one pass of workers runs.
struct Pass {
    depth: u32,
    jobs: u32,
    ramp: f64,
    /// Seconds from the start after which no operation starts.
    end: Option<f64>,
    rate: (Option<f64>, Option<f64>),
    think: f64,
    fsync_every: u64,
    batch: Option<bool>,
}

struct Driven {
    kinds: Kinds,
    seconds: f64,
    series: Vec<Point>,
    error: Option<Error>,
}

/// Runs the workers of one pass (`jobs` rings, or `jobs × depth` threads) to their end, its series
/// in intervals of `interval` seconds.
fn drive(
    env: &JobEnv,
    pass: &Pass,
    bs: u64,
    interval: f64,
    feed: impl Fn(usize, u32) -> (Feed, Option<u64>) + Sync,
) -> Result<Driven> {
    let (workers, depth) = match env.driver {
        Driver::IoUring => (pass.jobs, pass.depth as usize),
        Driver::Psync => (pass.jobs * pass.depth, 1),
    };
    let buf_size = bs.max(4096).next_multiple_of(4096) as usize;
    let interval_ns = (interval * 1e9) as u64;
    let ramp_ns = (pass.ramp * 1e9) as u64;
    let series = SeriesBuilder::new(interval_ns, ramp_ns, workers as usize);
    // Memory takes batches best (fewer calls); a device each operation as it comes (a plugged
    // batch may not fit its queue, and waits), as fio submits by default.
    let batch = pass.batch.unwrap_or_else(|| env.region.in_memory());
    let failed = AtomicBool::new(false);
    let start = Instant::now();
    let shared = Shared {
        region: env.region,
        data: env.data,
        map: env.map,
        journal: env.journal,
        buffered: !env.region.direct,
        series: &series,
        start,
        ramp_ns,
        interval_ns,
        end: pass.end.map(|e| start + Duration::from_secs_f64(e)),
        cancel: env.cancel,
        failed: &failed,
    };
    let per = |r: Option<f64>| r.map(|r| r / workers as f64);
    let think = Duration::from_secs_f64(pass.think);
    let results: Vec<Result<(Kinds, u64, Option<Error>)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers as usize)
            .map(|i| {
                let (shared, feed) = (&shared, &feed);
                s.spawn(move || -> Result<(Kinds, u64, Option<Error>)> {
                    let (f, quota) = feed(i, workers);
                    let mut w =
                        Worker::new(shared, i, f, quota, (per(pass.rate.0), per(pass.rate.1)), pass.fsync_every);
                    let pool =
                        BufferPool::new(depth, buf_size, env.region.align.max(4096) as usize).map_err(Error::pool)?;
                    match env.driver {
                        Driver::IoUring => {
                            let fds: Vec<i32> = env.region.files.iter().map(|f| f.as_raw_fd()).collect();
                            if let Err(e) = ring::run(&mut w, &fds, depth, &pool, think, batch) {
                                w.error.get_or_insert(Error::io(format!("io_uring on {}", env.region.name), e));
                            }
                        }
                        Driver::Psync => psync::run(&mut w, &env.region.files, pool.take(), think),
                    }
                    w.finish();
                    Ok((w.totals, w.last_done_ns, w.error))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(Error::resource("an operations thread panicked"))))
            .collect()
    });
    let mut kinds = new_kinds();
    let mut last = 0u64;
    let mut error = None;
    for r in results {
        let (k, l, e) = r?;
        for (a, b) in kinds.iter_mut().zip(&k) {
            a.add(b);
        }
        last = last.max(l);
        if error.is_none() {
            error = e;
        }
    }
    if error.is_none() && env.cancel.load(std::sync::atomic::Ordering::Relaxed) {
        error = Some(Error::Cancelled);
    }
    let series = std::mem::take(&mut series.lock().unwrap_or_else(|e| e.into_inner()).points);
    let seconds = last.saturating_sub(ramp_ns) as f64 / 1e9;
    Ok(Driven { kinds, seconds, series, error })
}
