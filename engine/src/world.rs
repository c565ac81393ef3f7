//! Where this process stands among the ranks of a run, and what the ranks do together: a barrier
//! at every phase start, the gather of each rank's figures to rank 0 for the one merged report, and
//! the word that a rank failed, so that all of them stop (and abort their open objects) within
//! moments instead of waiting at the next barrier for a rank that will not come.
//!
//! Alone, or as one rank of a run launched without MPI (`--rank`/`--world-size`), there is nothing
//! to wait for: [`World::solo`]. Under `mpirun`/`srun` (built with `--features mpi`), every MPI
//! call goes through one thread of its own ([`mpi`]'s `MPI_THREAD_FUNNELED` on that thread), which
//! between requests watches for another rank's failure message and raises the run's cancel flag.
//!
//! Stonewalling (a workload's `stonewall = true`, IOR's `-D` semantics by count): the first rank to
//! finish a phase tells the others, and the phase ends for them too — the [`Wall`] they share with
//! their executor and reader threads goes up, which stops what they had not finished.

use crate::error::{Error, Result};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Whether this rank's current phase was ended by another rank finishing it first (stonewalling).
/// Phases are counted by their starts (the plugin's `phase` calls, the same on every rank), so a
/// word about a phase this rank has left already changes nothing.
#[derive(Default)]
pub struct Wall {
    current: AtomicU64,
    /// One past the latest phase another rank finished.
    ended: AtomicU64,
    /// When the wall went up for the current phase, and which rank raised it.
    raised: Mutex<Option<(u64, Instant, u32)>>,
}

impl Wall {
    /// This rank is now in phase `seq`.
    pub fn enter(&self, seq: u64) {
        self.current.store(seq, Ordering::SeqCst);
    }

    /// Rank `by` finished phase `seq`: it is over here too, if this rank is still in it.
    pub fn end(&self, seq: u64, by: u32) {
        let before = self.ended.fetch_max(seq + 1, Ordering::SeqCst);
        if before <= seq {
            let mut r = self.raised.lock().unwrap_or_else(|e| e.into_inner());
            if r.is_none_or(|(s, _, _)| s < seq) {
                *r = Some((seq, Instant::now(), by));
            }
        }
    }

    /// True once another rank finished the phase this rank is in.
    pub fn up(&self) -> bool {
        self.ended.load(Ordering::SeqCst) > self.current.load(Ordering::SeqCst)
    }

    /// For phase `seq`: when the wall went up and which rank finished first, if it did.
    pub fn raised(&self, seq: u64) -> Option<(Instant, u32)> {
        let r = self.raised.lock().unwrap_or_else(|e| e.into_inner());
        r.filter(|(s, _, _)| *s == seq).map(|(_, at, by)| (at, by))
    }
}

/// A rank's failure, as the others learn it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerFailure {
    pub rank: u32,
    pub code: u8,
    pub message: String,
}

impl PeerFailure {
    pub fn error(&self) -> Error {
        Error::Rank { rank: self.rank, code: self.code, message: self.message.clone() }
    }
}

/// The environment variables launchers set for each process: Open MPI, MPICH/Hydra and Slurm's PMI,
/// PMIx. Seen without MPI support, they mean a launch this build cannot join.
pub fn launcher_world_size() -> Option<u32> {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"]
        .iter()
        .find_map(|k| std::env::var(k).ok().and_then(|v| v.trim().parse().ok()))
        .or_else(|| std::env::var_os("PMIX_RANK").map(|_| 0))
}

enum Kind {
    Solo,
    #[cfg(feature = "mpi")]
    Mpi(mpi_world::MpiWorld),
}

/// This process's rank among the run's, and how the ranks reach each other.
pub struct World {
    rank: u32,
    size: u32,
    host: String,
    /// Ranks of the run on this host, this one included.
    node_ranks: u32,
    kind: Kind,
    /// A failure another rank reported.
    failure: Arc<Mutex<Option<PeerFailure>>>,
    /// Phases ended by a rank that finished them first.
    wall: Arc<Wall>,
    /// What the ranks' coordination cost this one: barriers and the time in them (waiting for
    /// slower ranks included), and the gather.
    costs: Mutex<Costs>,
}

/// Barriers passed and the wall time in them, and the gather's wall time.
#[derive(Clone, Copy, Debug, Default)]
pub struct Costs {
    pub barriers: u64,
    pub barrier_wait: Duration,
    pub gather: Duration,
}

fn host_name() -> String {
    nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "localhost".into())
}

impl World {
    /// This process's place among a run's ranks: MPI under a launcher (built with `--features mpi`),
    /// else rank `rank` of `size` as the `--rank`/`--world-size` flags say, else alone. Asking for a
    /// rank under a launcher, a rank outside the world, or a launch this build cannot join is bad
    /// input (exit 2).
    pub fn for_run(rank: Option<u32>, size: Option<u32>, cancel: Arc<AtomicBool>) -> Result<World> {
        if let (Some(r), Some(n)) = (rank, size) {
            if r >= n {
                return Err(Error::InvalidValue {
                    key: "--rank",
                    value: r.to_string(),
                    reason: format!("is not below --world-size {n} (ranks are 0 … {})", n.saturating_sub(1)),
                });
            }
        }
        match (launcher_world_size(), rank) {
            (Some(_), Some(r)) => Err(Error::InvalidValue {
                key: "--rank",
                value: r.to_string(),
                reason: "is for runs without a launcher; under mpirun/srun the launcher assigns ranks".into(),
            }),
            #[cfg(feature = "mpi")]
            (Some(_), None) => World::mpi(cancel),
            #[cfg(not(feature = "mpi"))]
            (Some(n), None) if n > 1 => {
                drop(cancel);
                Err(Error::Workload {
                    at: "MPI launch".into(),
                    message: format!(
                        "started by an MPI launcher as one of {n} ranks, but this dgen-engine was built without MPI: \
                         build it with `cargo build --release --features mpi` (docs/ranks.md, \"Many hosts on MPI\")"
                    ),
                })
            }
            _ => {
                drop(cancel);
                Ok(World::solo(rank.unwrap_or(0), size.unwrap_or(1)))
            }
        }
    }

    /// Rank `rank` of `size`, without a launcher: barriers and gathers are this process alone.
    pub fn solo(rank: u32, size: u32) -> World {
        World {
            rank,
            size: size.max(1),
            host: host_name(),
            node_ranks: 1,
            kind: Kind::Solo,
            failure: Arc::default(),
            wall: Arc::default(),
            costs: Mutex::default(),
        }
    }

    /// The MPI world this process was launched into; `cancel` is raised when another rank fails.
    #[cfg(feature = "mpi")]
    pub fn mpi(cancel: Arc<AtomicBool>) -> Result<World> {
        let failure: Arc<Mutex<Option<PeerFailure>>> = Arc::default();
        let wall: Arc<Wall> = Arc::default();
        let (m, rank, size, host, node_ranks) = mpi_world::MpiWorld::start(cancel, failure.clone(), wall.clone())?;
        Ok(World { rank, size, host, node_ranks, kind: Kind::Mpi(m), failure, wall, costs: Mutex::default() })
    }

    pub fn rank(&self) -> u32 {
        self.rank
    }

    pub fn size(&self) -> u32 {
        self.size
    }

    /// The host this rank runs on (for the per-host rows).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Ranks of the run on this host, this one included (1 alone or in turn).
    pub fn node_ranks(&self) -> u32 {
        self.node_ranks
    }

    /// True under a launcher with other ranks to reach.
    pub fn is_mpi(&self) -> bool {
        !matches!(self.kind, Kind::Solo)
    }

    /// The phases other ranks ended by finishing them first.
    pub fn wall(&self) -> &Arc<Wall> {
        &self.wall
    }

    /// Tells every other rank that this one has finished phase `seq`, so that it ends for them too
    /// (stonewalling). Alone, there is no one to tell.
    pub fn stonewall(&self, seq: u64) {
        match &self.kind {
            Kind::Solo => {}
            #[cfg(feature = "mpi")]
            Kind::Mpi(m) => m.stonewall(seq),
        }
        let _ = seq;
    }

    /// What another rank reported, if one failed.
    pub fn peer_failure(&self) -> Option<PeerFailure> {
        self.failure.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits until every rank has reached it. A peer's failure, or `cancel`, ends the wait with
    /// the error to stop with.
    pub fn barrier(&self, cancel: &AtomicBool) -> Result<()> {
        let t = std::time::Instant::now();
        let r = match &self.kind {
            Kind::Solo => Ok(()),
            #[cfg(feature = "mpi")]
            Kind::Mpi(m) => m.barrier(cancel, &self.failure),
        };
        let mut c = self.costs.lock().unwrap_or_else(|e| e.into_inner());
        c.barriers += 1;
        c.barrier_wait += t.elapsed();
        drop(c);
        r.and_then(|()| if cancel.load(Ordering::Relaxed) { Err(self.stop_error()) } else { Ok(()) })
    }

    /// `a` and `b` summed and `c` the largest over all ranks, on every rank. Collective: every rank
    /// calls it at the same point; it starts with a barrier (so a failed peer ends the wait).
    pub fn sum_max(&self, a: u64, b: u64, c: f64, cancel: &AtomicBool) -> Result<(u64, u64, f64)> {
        self.barrier(cancel)?;
        match &self.kind {
            Kind::Solo => Ok((a, b, c)),
            #[cfg(feature = "mpi")]
            Kind::Mpi(m) => m.sum_max(a, b, c),
        }
    }

    /// What coordinating with the other ranks has cost this one so far.
    pub fn costs(&self) -> Costs {
        *self.costs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Why this rank stops early: a peer's failure, else Ctrl-C.
    pub fn stop_error(&self) -> Error {
        self.peer_failure().map_or(Error::Cancelled, |f| f.error())
    }

    /// Every rank's `mine`, in rank order, on rank 0 (`None` on the others). Collective: every rank
    /// calls it once, at the end of a run that did not fail.
    pub fn gather(&self, mine: Vec<u8>) -> Result<Option<Vec<Vec<u8>>>> {
        let t = std::time::Instant::now();
        let r = match &self.kind {
            Kind::Solo => Ok(Some(vec![mine])),
            #[cfg(feature = "mpi")]
            Kind::Mpi(m) => m.gather(mine),
        };
        self.costs.lock().unwrap_or_else(|e| e.into_inner()).gather += t.elapsed();
        r
    }

    /// Tells every other rank that this one failed (exit `code`, `message`).
    pub fn fail(&self, code: u8, message: &str) {
        match &self.kind {
            Kind::Solo => {}
            #[cfg(feature = "mpi")]
            Kind::Mpi(m) => m.fail(code, message),
        }
        let _ = (code, message);
    }

    /// After a failed run: rank 0 waits (a bounded time) for every other rank to have aborted its open
    /// objects, then ends the job with `code`; the other ranks report that they are done and wait to
    /// be ended. Alone, nothing to do. Returns only on rank 0 of a solo world, or when waiting ran out.
    pub fn end_failed(&self, code: u8, grace: Duration) {
        match &self.kind {
            Kind::Solo => {}
            #[cfg(feature = "mpi")]
            Kind::Mpi(m) => m.end_failed(code, grace),
        }
        let _ = (code, grace);
    }

    /// Ends MPI after a run that did not fail (every rank calls it, once).
    pub fn finish(&self) {
        match &self.kind {
            Kind::Solo => {}
            #[cfg(feature = "mpi")]
            Kind::Mpi(m) => m.finish(),
        }
    }
}

#[cfg(feature = "mpi")]
mod mpi_world {
    use super::{PeerFailure, Wall};
    use crate::error::{Error, Result};
    use crossbeam_channel::{Receiver, Sender};
    use mpi::traits::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    /// Message tags: a failure (code byte + text), and "done aborting" after one.
    const FAIL: i32 = 0x0d6e;
    const DONE: i32 = 0x0d6f;
    /// "I finished phase N" (8 bytes, little-endian), for stonewalling.
    const WALL: i32 = 0x0d70;
    /// How often the MPI thread looks for another rank's failure while idle or waiting.
    const POLL: Duration = Duration::from_millis(10);

    enum Req {
        Barrier(Sender<Result<()>>),
        Gather(Vec<u8>, Sender<Result<Option<Vec<Vec<u8>>>>>),
        SumMax([u64; 2], f64, Sender<([u64; 2], f64)>),
        Fail(u8, String),
        Wall(u64),
        EndFailed(u8, Duration, Sender<()>),
        Finish,
    }

    pub(super) struct MpiWorld {
        tx: Sender<Req>,
        thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    }

    impl MpiWorld {
        pub(super) fn start(
            cancel: Arc<AtomicBool>,
            failure: Arc<Mutex<Option<PeerFailure>>>,
            wall: Arc<Wall>,
        ) -> Result<(MpiWorld, u32, u32, String, u32)> {
            let (tx, rx) = crossbeam_channel::unbounded();
            let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
            let thread = std::thread::Builder::new()
                .name("dgen-mpi".into())
                .spawn(move || serve(rx, ready_tx, cancel, failure, wall))
                .map_err(|e| Error::resource_from("cannot start the MPI thread", e))?;
            let (rank, size, host, node_ranks) =
                ready_rx.recv().map_err(|_| Error::resource("MPI did not start"))?.map_err(Error::resource)?;
            Ok((MpiWorld { tx, thread: Mutex::new(Some(thread)) }, rank, size, host, node_ranks))
        }

        pub(super) fn barrier(&self, cancel: &AtomicBool, failure: &Mutex<Option<PeerFailure>>) -> Result<()> {
            let (tx, rx) = crossbeam_channel::bounded(1);
            let _ = self.tx.send(Req::Barrier(tx));
            // The MPI thread ends the wait on a peer's failure; Ctrl-C ends it here (the barrier
            // stays pending, which the abort that follows a failed run does not mind).
            loop {
                match rx.recv_timeout(Duration::from_millis(50)) {
                    Ok(r) => return r,
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                        return Err(Error::resource("the MPI thread ended"))
                    }
                    Err(_) => {
                        if let Some(f) = failure.lock().unwrap_or_else(|e| e.into_inner()).clone() {
                            return Err(f.error());
                        }
                        if cancel.load(Ordering::Relaxed) {
                            return Err(Error::Cancelled);
                        }
                    }
                }
            }
        }

        pub(super) fn gather(&self, mine: Vec<u8>) -> Result<Option<Vec<Vec<u8>>>> {
            let (tx, rx) = crossbeam_channel::bounded(1);
            let _ = self.tx.send(Req::Gather(mine, tx));
            rx.recv().map_err(|_| Error::resource("the MPI thread ended"))?
        }

        pub(super) fn sum_max(&self, a: u64, b: u64, c: f64) -> Result<(u64, u64, f64)> {
            let (tx, rx) = crossbeam_channel::bounded(1);
            let _ = self.tx.send(Req::SumMax([a, b], c, tx));
            let ([a, b], c) = rx.recv().map_err(|_| Error::resource("the MPI thread ended"))?;
            Ok((a, b, c))
        }

        pub(super) fn fail(&self, code: u8, message: &str) {
            let _ = self.tx.send(Req::Fail(code, message.to_string()));
        }

        pub(super) fn stonewall(&self, seq: u64) {
            let _ = self.tx.send(Req::Wall(seq));
        }

        pub(super) fn end_failed(&self, code: u8, grace: Duration) {
            let (tx, rx) = crossbeam_channel::bounded(1);
            let _ = self.tx.send(Req::EndFailed(code, grace, tx));
            let _ = rx.recv_timeout(grace + Duration::from_secs(5));
        }

        pub(super) fn finish(&self) {
            let _ = self.tx.send(Req::Finish);
            if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
                let _ = t.join();
            }
        }
    }

    /// The MPI thread: initialises MPI, serves requests, and between them looks for failures.
    fn serve(
        rx: Receiver<Req>,
        ready: Sender<std::result::Result<(u32, u32, String, u32), String>>,
        cancel: Arc<AtomicBool>,
        failure: Arc<Mutex<Option<PeerFailure>>>,
        wall: Arc<Wall>,
    ) {
        let Some((universe, _)) = mpi::initialize_with_threading(mpi::Threading::Funneled) else {
            let _ = ready.send(Err("cannot initialise MPI (MPI_Init_thread failed)".into()));
            return;
        };
        let world = universe.world();
        let (rank, size) = (world.rank() as u32, world.size() as u32);
        let host = mpi::environment::processor_name().unwrap_or_else(|_| super::host_name());
        // The ranks sharing this node's memory (MPI_Comm_split_type SHARED): a collective every
        // rank makes here, at start.
        let node_ranks = world.split_shared(world.rank()).size().max(1) as u32;
        let _ = ready.send(Ok((rank, size, host, node_ranks)));
        let watch = |failure: &Mutex<Option<PeerFailure>>| {
            while let Some((msg, status)) = world
                .any_process()
                .immediate_probe_with_tag(FAIL)
                .map(|_| world.any_process().receive_vec_with_tag::<u8>(FAIL))
            {
                let code = msg.first().copied().unwrap_or(1);
                let text = String::from_utf8_lossy(msg.get(1..).unwrap_or_default()).into_owned();
                let mut f = failure.lock().unwrap_or_else(|e| e.into_inner());
                if f.is_none() {
                    *f = Some(PeerFailure { rank: status.source_rank() as u32, code, message: text });
                }
                cancel.store(true, Ordering::SeqCst);
            }
            while let Some((msg, status)) = world
                .any_process()
                .immediate_probe_with_tag(WALL)
                .map(|_| world.any_process().receive_vec_with_tag::<u8>(WALL))
            {
                let seq = msg.get(..8).and_then(|b| b.try_into().ok()).map_or(u64::MAX, u64::from_le_bytes);
                if seq != u64::MAX {
                    wall.end(seq, status.source_rank() as u32);
                }
            }
        };
        let failed = |failure: &Mutex<Option<PeerFailure>>| failure.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut sent_failure = false;
        loop {
            let req = match rx.recv_timeout(POLL) {
                Ok(r) => r,
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    watch(&failure);
                    continue;
                }
                Err(_) => Req::Finish,
            };
            match req {
                Req::Barrier(reply) => {
                    let mut pending = world.immediate_barrier();
                    let r = loop {
                        match pending.test() {
                            Ok(_) => break Ok(()),
                            Err(p) => pending = p,
                        }
                        watch(&failure);
                        if let Some(f) = failed(&failure) {
                            // The barrier cannot be cancelled: leave it; the run ends in an abort.
                            std::mem::forget(pending);
                            break Err(f.error());
                        }
                        std::thread::sleep(Duration::from_micros(200));
                    };
                    let _ = reply.send(r);
                }
                Req::SumMax(sums, max, reply) => {
                    // Every rank has just passed a barrier: none is missing from the reduction.
                    let mut s = [0u64; 2];
                    world.all_reduce_into(&sums[..], &mut s[..], mpi::collective::SystemOperation::sum());
                    let mut m = 0f64;
                    world.all_reduce_into(&max, &mut m, mpi::collective::SystemOperation::max());
                    let _ = reply.send((s, m));
                }
                Req::Gather(mine, reply) => {
                    let _ = reply.send(Ok(gather(&world, mine)));
                }
                Req::Fail(code, message) => {
                    if !sent_failure && failed(&failure).is_none() {
                        sent_failure = true;
                        let mut msg = vec![code];
                        msg.extend_from_slice(message.as_bytes());
                        for r in (0..size as i32).filter(|&r| r != rank as i32) {
                            // Small messages go eagerly: this does not wait for the peer.
                            world.process_at_rank(r).send_with_tag(&msg[..], FAIL);
                        }
                    }
                }
                Req::Wall(seq) => {
                    let msg = seq.to_le_bytes();
                    for r in (0..size as i32).filter(|&r| r != rank as i32) {
                        world.process_at_rank(r).send_with_tag(&msg[..], WALL);
                    }
                }
                Req::EndFailed(code, grace, reply) => {
                    if rank == 0 {
                        let until = Instant::now() + grace;
                        let mut done = 1u32;
                        while done < size && Instant::now() < until {
                            watch(&failure);
                            if world.any_process().immediate_probe_with_tag(DONE).is_some() {
                                let _ = world.any_process().receive_vec_with_tag::<u8>(DONE);
                                done += 1;
                            } else {
                                std::thread::sleep(POLL);
                            }
                        }
                        let _ = reply.send(());
                        world.abort(code as i32);
                    } else {
                        world.process_at_rank(0).send_with_tag(&[code][..], DONE);
                        let until = Instant::now() + grace;
                        while Instant::now() < until {
                            watch(&failure);
                            std::thread::sleep(POLL);
                        }
                        let _ = reply.send(());
                        // Rank 0 did not end the job: end it from here.
                        world.abort(code as i32);
                    }
                }
                Req::Finish => {
                    // Every rank sent its last stonewall word before the closing barrier: take
                    // them in, so none is left unreceived when MPI ends.
                    watch(&failure);
                    break;
                }
            }
        }
        drop(universe);
    }

    fn gather(world: &mpi::topology::SimpleCommunicator, mine: Vec<u8>) -> Option<Vec<Vec<u8>>> {
        let root = world.process_at_rank(0);
        let len = mine.len() as i32;
        if world.rank() == 0 {
            let mut lens = vec![0i32; world.size() as usize];
            root.gather_into_root(&len, &mut lens[..]);
            let displs: Vec<i32> = lens
                .iter()
                .scan(0i32, |acc, &x| {
                    let at = *acc;
                    *acc += x;
                    Some(at)
                })
                .collect();
            let mut buf = vec![0u8; lens.iter().map(|&l| l as usize).sum()];
            {
                let mut part = mpi::datatype::PartitionMut::new(&mut buf[..], &lens[..], &displs[..]);
                root.gather_varcount_into_root(&mine[..], &mut part);
            }
            Some(displs.iter().zip(&lens).map(|(&d, &l)| buf[d as usize..(d + l) as usize].to_vec()).collect())
        } else {
            root.gather_into(&len);
            root.gather_varcount_into(&mine[..]);
            None
        }
    }
}
