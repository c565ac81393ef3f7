//! The reader threads: each claims the next piece of the oldest read with pieces left, opens the
//! object (once, shared by its pieces), reads the piece into a pool buffer and checks it there —
//! CRC32C pieces combined in order, or every byte against the regenerated recipe.

use super::*;
use crate::error::{Error, Result};
use crate::sink::ObjectReader;
use crc_fast::CrcAlgorithm::Crc32Iscsi;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// A piece claimed by a worker: bytes `[start, end)` of a read.
pub(super) struct Piece {
    pub(super) read: Arc<Active>,
    pub(super) start: u64,
    pub(super) end: u64,
}

pub(super) fn worker(sh: &Shared) {
    let mut scratch: Vec<u8> = Vec::new();
    while let Some(piece) = claim(sh) {
        sh.split.read_started();
        let result = if sh.cancel.load(Ordering::Relaxed) {
            Err(Error::Cancelled)
        } else if piece.start == piece.end && piece.read.state.lock().unwrap().cut {
            // What the stonewall left of a read: nothing to read.
            Ok(PieceResult { crc: 0, want_crc: None, differs: None, arrived: Duration::ZERO })
        } else {
            read_piece(sh, &piece, &mut scratch)
        };
        finish_piece(sh, piece, result);
        sh.split.read_done();
    }
}

/// Waits for the next piece to read; `None` once closed and nothing is left, or at Ctrl-C.
pub(super) fn claim(sh: &Shared) -> Option<Piece> {
    let mut q = sh.queue.lock().unwrap();
    loop {
        // Ctrl-C: what is queued is not read, nor reported (a flood of reads ends at once).
        if sh.cancel.load(Ordering::Relaxed) {
            return None;
        }
        if let Some(front) = q.front().cloned() {
            // Opening can take a round trip (a HEAD): do it without holding the queue, once.
            drop(q);
            let walled = sh.wall.get().is_some_and(|w| w.up());
            if !walled {
                front.started.get_or_init(Instant::now);
            }
            let opened = (!walled).then(|| front.reader.get_or_init(|| open(sh, &front)));
            let mut p = front.state.lock().unwrap();
            q = sh.queue.lock().unwrap();
            if p.claimed_all {
                // Another worker took the last piece while we opened; it is off the queue already.
                continue;
            }
            let Some(opened) = opened else {
                // The stonewall ended the phase: the rest of this read is not read. One empty piece
                // carries it to its end (and its report) like any other.
                p.cut = true;
                p.end = Some(p.next);
                p.claimed_all = true;
                if q.front().is_some_and(|f| Arc::ptr_eq(f, &front)) {
                    q.pop_front();
                }
                p.out += 1;
                let at = p.next;
                drop(p);
                drop(q);
                return Some(Piece { read: front, start: at, end: at });
            };
            let end = match (opened, p.end) {
                (_, Some(end)) => end,
                (Err(e), None) => {
                    p.error.get_or_insert(e.clone());
                    p.end = Some(p.next);
                    p.next
                }
                (Ok(reader), None) => {
                    let end = match read_end(&front.req, reader.size()) {
                        Ok(end) => end,
                        Err(e) => {
                            p.error = Some(e);
                            p.next
                        }
                    };
                    p.end = Some(end);
                    end
                }
            };
            let chunk = sh.pool.buffer_size() as u64;
            let start = p.next;
            // The next buffer boundary; none past the top of the offsets (nothing can be read there).
            let boundary = (start / chunk).checked_add(1).and_then(|n| n.checked_mul(chunk)).unwrap_or(u64::MAX);
            let stop = end.min(boundary).max(start);
            p.next = stop;
            if stop >= end {
                p.claimed_all = true;
                if q.front().is_some_and(|f| Arc::ptr_eq(f, &front)) {
                    q.pop_front();
                }
            }
            p.out += 1;
            drop(p);
            drop(q);
            return Some(Piece { read: front, start, end: stop });
        }
        if sh.closed.load(Ordering::Relaxed) {
            return None;
        }
        q = sh.wake.wait_timeout(q, Duration::from_millis(100)).unwrap().0;
    }
}

pub(super) fn open(sh: &Shared, read: &Active) -> std::result::Result<Arc<dyn ObjectReader>, Error> {
    let name = &read.req.name;
    if let Some(r) = sh.open.lock().unwrap().get(name) {
        allowed(sh, &read.req, r.as_ref())?;
        return Ok(r.clone());
    }
    let r: Arc<dyn ObjectReader> = Arc::from(sh.sink.open(name)?);
    // Before anything of it is looked at (its size included).
    allowed(sh, &read.req, r.as_ref())?;
    if let Some(share) = r.cached_fraction() {
        let _ = read.opened.set((share, r.size()));
    }
    let mut open = sh.open.lock().unwrap();
    if open.len() >= MAX_OPEN {
        open.clear();
    }
    open.insert(name.clone(), r.clone());
    Ok(r)
}

/// Whether `req` may read the object `r` opened: what its identity says (see [`Require`]).
pub(super) fn allowed(sh: &Shared, req: &ReadReq, r: &dyn ObjectReader) -> Result<()> {
    let ok = match req.require {
        Require::Written => true,
        _ if !sh.identities => false,
        Require::Exactly(id) => r.identity() == Some(id),
        Require::Any => r.identity().is_some(),
    };
    if ok {
        return Ok(());
    }
    let why = match (req.require, sh.identities) {
        (_, false) => "was not written in this run, and this store keeps no identities: not read",
        (Require::Exactly(_), true) if r.identity().is_some() => {
            "is not what was declared (another identity): not read"
        }
        _ => "carries no dgen-engine identity (the engine did not write it): not read",
    };
    Err(Error::storage(crate::error::Failure::NotFound, &req.name, why, None))
}

/// Where a read ends, given the object's size on storage; or why it cannot start.
pub(super) fn read_end(req: &ReadReq, size: u64) -> Result<u64> {
    if let Some(x) = req.expected.as_ref().filter(|x| x.size != size) {
        // Shorter or longer than what was written: whatever the check, the object is not the one
        // the run knows (truncated, replaced).
        let how = if size < x.size { "shorter than" } else { "longer than" };
        return Err(Error::sink(&req.name, format!("is {size} bytes on storage, {how} the {} bytes written", x.size)));
    }
    let end = match req.len {
        None => size.max(req.offset),
        Some(len) => req.offset.saturating_add(len),
    };
    if end > size || req.offset > size {
        let from = req.offset.min(end);
        return Err(Error::sink(
            &req.name,
            format!("cannot read bytes {from}..{end}: the object is {size} bytes long"),
        ));
    }
    Ok(end)
}

/// What one piece found: its CRC (and the expected one), or the first difference.
pub(super) struct PieceResult {
    pub(super) crc: u32,
    pub(super) want_crc: Option<u32>,
    pub(super) differs: Option<Verdict>,
    pub(super) arrived: Duration,
}

pub(super) fn read_piece(sh: &Shared, piece: &Piece, scratch: &mut Vec<u8>) -> Result<PieceResult> {
    let read = &piece.read;
    let reader = match read.reader.get() {
        Some(Ok(r)) => r.clone(),
        Some(Err(e)) => return Err(e.clone()),
        None => return Err(Error::sink(&read.req.name, "read before open")),
    };
    // O_DIRECT: read the aligned window around the piece (it lies within one buffer-sized window,
    // which is itself aligned), then look at the piece's part of it.
    let a = sh.align as u64;
    let win_start = piece.start / a * a;
    let win_end = piece.end.div_ceil(a) * a;
    let want = (piece.end - win_start) as usize;
    let waited = Instant::now();
    let mut buf = sh.pool.take();
    let calls = Instant::now();
    sh.split.read_waited(calls - waited);
    let win = &mut buf.as_mut_slice()[..(win_end - win_start) as usize];
    let filled = fill_window(reader.as_ref(), win, win_start, want, piece.end, &read.req.name);
    let checking = Instant::now();
    // Read-call time, whether the calls succeeded or not.
    sh.split.read_io(checking - calls);
    filled?;
    let arrived = read.started.get().map_or(Duration::ZERO, |t| t.elapsed());
    let got = &win[(piece.start - win_start) as usize..want];
    let check = read.req.check;
    let expected = read.req.expected.as_ref().filter(|_| check != Check::None);
    // With the whole object's CRC known, a whole read needs no regenerated bytes.
    let regenerate =
        expected.filter(|x| !(check == Check::Crc && x.crc32c.is_some() && covers_whole(&read.req, x.size)));
    let mut out = PieceResult { crc: 0, want_crc: None, differs: None, arrived };
    if check == Check::None {
        return Ok(out);
    }
    // One pass per cache-sized tile: the CRC of what was read, and the expected bytes regenerated
    // into a scratch that stays in cache, compared (or CRCed) while the tile is still there.
    let mut digest = crc_fast::Digest::new(Crc32Iscsi);
    let mut want_digest = crc_fast::Digest::new(Crc32Iscsi);
    scratch.resize(TILE.min(got.len()), 0);
    for (i, tile) in got.chunks(TILE).enumerate() {
        // A verify compares every byte; the CRC is only what a `crc` read checks (it cost a verify
        // read a tenth of its CPU time).
        if check == Check::Crc {
            digest.update(tile);
        }
        let Some(x) = regenerate else { continue };
        let at = piece.start + (i * TILE) as u64;
        let want = &mut scratch[..tile.len()];
        x.content.fill(&sh.gen, at, want);
        if check == Check::Crc {
            want_digest.update(want);
        } else if out.differs.is_none() && tile != &want[..] {
            let j = tile.iter().zip(want.iter()).position(|(g, w)| g != w).expect("tiles differ");
            out.differs = Some(Verdict::Differs { offset: at + j as u64, expected: want[j], found: tile[j] });
        }
    }
    if check == Check::Crc {
        out.crc = digest.finalize() as u32;
        if regenerate.is_some() {
            out.want_crc = Some(want_digest.finalize() as u32);
        }
    }
    sh.split.checked(checking.elapsed());
    Ok(out)
}

/// Reads `want` bytes of the window starting at `win_start` into `win`; an object that ends first
/// (before `piece_end`) is an error naming it.
pub(super) fn fill_window(
    reader: &dyn ObjectReader,
    win: &mut [u8],
    win_start: u64,
    want: usize,
    piece_end: u64,
    name: &str,
) -> Result<()> {
    let mut filled = 0usize;
    while filled < want {
        let n = reader.read_at(win_start + filled as u64, &mut win[filled..])?;
        if n == 0 {
            return Err(Error::sink(
                name,
                format!(
                    "ended at byte {} while reading up to {piece_end}: shorter than it said",
                    win_start + filled as u64
                ),
            ));
        }
        filled += n;
    }
    Ok(())
}

/// Bytes checked at a time: regenerated into a scratch that stays in the core's cache.
pub(super) const TILE: usize = 128 << 10;

pub(super) fn covers_whole(req: &ReadReq, size: u64) -> bool {
    req.offset == 0 && req.len.is_none_or(|l| l == size)
}

pub(super) fn finish_piece(sh: &Shared, piece: Piece, result: Result<PieceResult>) {
    let read = piece.read;
    let mut p = read.state.lock().unwrap();
    p.out -= 1;
    match result {
        Ok(r) => {
            p.bytes += piece.end - piece.start;
            p.ttfb = Some(p.ttfb.map_or(r.arrived, |t| t.min(r.arrived)));
            if read.req.check == Check::Crc && p.error.is_none() && piece.end > piece.start {
                p.crcs.add(piece.start, piece.end - piece.start, r.crc, r.want_crc);
            }
            if let Some(Verdict::Differs { offset, .. }) = &r.differs {
                let earlier = match &p.failed {
                    Some(Verdict::Differs { offset: o, .. }) => offset < o,
                    _ => true,
                };
                if earlier {
                    p.failed = r.differs;
                }
            }
        }
        Err(e) => {
            p.error.get_or_insert(e);
            // The CRC will not be used: keep nothing more for it.
            p.crcs.early.clear();
        }
    }
    if !(p.claimed_all && p.out == 0) {
        return;
    }
    let req = &read.req;
    let crc =
        (req.check == Check::Crc && p.error.is_none() && p.failed.is_none() && !p.cut).then(|| p.crcs.got.unwrap_or(0));
    if let Some(got) = crc {
        let want = match req.expected.as_ref().and_then(|x| x.crc32c.filter(|_| covers_whole(req, x.size))) {
            Some(whole) => Some(whole),
            None if p.crcs.want_unknown => None,
            None => Some(p.crcs.want.unwrap_or(0)),
        };
        if let Some(want) = want {
            if want != got {
                p.failed = Some(Verdict::CrcMismatch { expected: want, found: got });
            }
        }
    }
    let outcome = if let Some(e) = p.error.take() {
        Outcome::Error(e)
    } else if let Some(v) = p.failed.take() {
        Outcome::Failed(v)
    } else if p.cut {
        Outcome::Cut
    } else {
        Outcome::Passed
    };
    let latency = read.started.get().map_or(Duration::ZERO, |t| t.elapsed());
    let result = ReadResult {
        name: req.name.clone(),
        offset: req.offset,
        bytes: p.bytes,
        latency,
        ttfb: p.ttfb.unwrap_or(latency),
        at: Instant::now(),
        check: req.check,
        crc32c: crc,
        outcome,
        tag: req.tag,
        seq: req.seq,
        cached: read.opened.get().copied(),
    };
    drop(p);
    let _ = sh.done.send(result);
}

/// CRC32C of `a ‖ b` from the CRC of `a` (none: empty) and the CRC of `b`, `len_b` bytes.
pub(super) fn combine(a: Option<u32>, b: u32, len_b: u64) -> u32 {
    match a {
        None => b,
        Some(a) => crc_fast::checksum_combine(Crc32Iscsi, a as u64, b as u64, len_b) as u32,
    }
}
