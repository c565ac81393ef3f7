//! The sink conformance suite: every sink, driven by the real executor, must store exactly the
//! generator's bytes, leave nothing behind when aborted, and give every buffer back to the pool.

use crate::azure::{azure_sink, Container};
use crate::common::*;
use crate::objects::Remote;
use crate::s3::{s3_sink, Bucket};
use dgen_engine::object::Content;
use dgen_engine::pipeline::executor::{ExecConfig, Executor, ObjectJob};
use dgen_engine::pool::BufferPool;
use dgen_engine::sink::cloud::CloudOptions;
use dgen_engine::sink::{FileEngine, FileOptions, FileSink, NullSink, Sink, WriteReq};
use dgen_engine::Generator;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{mpsc, Arc};

/// A sink under test, with a way to list what it stores (names below its root; open S3 uploads show
/// as `upload:KEY` and Azure blobs with only uncommitted blocks as `staged:NAME`, so leftovers are
/// caught too). The null sink stores nothing and lists nothing.
struct Case {
    name: String,
    sink: Box<dyn Sink>,
    list: Option<Box<dyn Fn() -> Vec<String>>>,
}

/// Every sink: null, files (pwrite and io_uring, with and without O_DIRECT), S3 (moto on loopback),
/// Azure (Azurite on loopback).
fn cases(dir: &Path, test: &str) -> Vec<Case> {
    let mut v = vec![Case { name: "null".into(), sink: Box::new(NullSink), list: None }];
    for (engine, ename) in [(FileEngine::Pwrite, "pwrite"), (FileEngine::IoUring, "io_uring")] {
        for direct in [false, true] {
            let name = format!("file-{ename}{}", if direct { "-direct" } else { "" });
            let root = dir.join(&name);
            let opts = FileOptions { engine, direct, queue_depth: 4, create_root: true, ..FileOptions::default() };
            let sink = FileSink::new(&root, opts).unwrap_or_else(|e| panic!("{name}: {e}"));
            v.push(Case { name, sink: Box::new(sink), list: Some(Box::new(move || files_in(&root))) });
        }
    }
    let bucket = Arc::new(Bucket::new(test));
    let sink = s3_sink(&bucket, "root", CloudOptions::default());
    let list = move || {
        let mut names: Vec<String> =
            bucket.list("root/").into_iter().map(|(k, _)| k.trim_start_matches("root/").to_string()).collect();
        names.extend(bucket.uploads().into_iter().map(|k| format!("upload:{k}")));
        names
    };
    v.push(Case { name: "s3".into(), sink: Box::new(sink), list: Some(Box::new(list)) });
    let container = Arc::new(Container::new(&test.replace('_', "-")));
    let sink = azure_sink(&container, "root", CloudOptions::default());
    let list = move || {
        let mut names: Vec<String> =
            container.list("root/").into_iter().map(|(k, _)| k.trim_start_matches("root/").to_string()).collect();
        // Staged blocks make no blob a reader sees, but they are leftovers: aborts discard them too.
        names.extend(container.uncommitted("root/").into_iter().map(|k| format!("staged:{k}")));
        names
    };
    v.push(Case { name: "azure".into(), sink: Box::new(sink), list: Some(Box::new(list)) });
    v
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                names.push(e.path().strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    names.sort();
    names
}

/// An object read back through its sink (into an aligned buffer, as O_DIRECT wants).
fn read_back(sink: &dyn Sink, name: &str) -> Vec<u8> {
    let r = sink.open(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut buf = BufferPool::new(1, 4 << 20, sink.capabilities().alignment.max(4096)).unwrap().take();
    let mut out = Vec::new();
    loop {
        let n = r.read_at(out.len() as u64, buf.as_mut_slice()).unwrap_or_else(|e| panic!("{name}: {e}"));
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf.as_slice()[..n]);
    }
}

const SIZES: [u64; 7] = [0, 1, 4095, 4097, 3 << 20, (1 << 20) + 517, (64 << 20) + 3];

fn jobs() -> Vec<ObjectJob> {
    SIZES
        .iter()
        .enumerate()
        .map(|(i, &size)| ObjectJob {
            name: format!("dir{}/obj-{i}.bin", i % 2),
            size,
            content: Content::Stream { stream: i as u64, offset: 0 },
        })
        .collect()
}

#[test]
fn every_sink_stores_exactly_the_stream() {
    let dir = tempdir("conformance");
    let gen = Generator::new(2024, profile(2.0, 2.5, 4096));
    for Case { name, sink, list } in cases(&dir, "conformance") {
        // Small buffers and several objects at once: many writes interleave across objects (and S3
        // parts are assembled from several buffers).
        let cfg = ExecConfig { buffer_size: 1 << 20, buffers: 6, threads: 2, open_objects: 3, crc: true };
        let exec = Executor::new(sink.as_ref(), gen.clone(), cfg).unwrap();
        let stats = exec.run(jobs(), &mut (), &AtomicBool::new(false)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(stats.bytes, SIZES.iter().sum::<u64>(), "{name}");
        assert_eq!(stats.objects.len(), SIZES.len(), "{name}");
        assert_eq!(exec.pool().available(), exec.pool().count(), "{name}: buffers not returned");
        for (i, job) in jobs().iter().enumerate() {
            let mut want = vec![0u8; job.size as usize];
            gen.fill(i as u64, 0, &mut want);
            let result = stats.objects.iter().find(|o| o.name == job.name).unwrap();
            assert_eq!(result.crc32c, Some(crc32c::crc32c(&want)), "{name} {}: crc32c", job.name);
            if list.is_none() {
                continue;
            }
            let got = read_back(sink.as_ref(), &job.name);
            assert_eq!(got.len(), want.len(), "{name} {}: size", job.name);
            assert!(got == want, "{name} {}: bytes differ", job.name);
        }
        if let Some(list) = &list {
            let mut want: Vec<String> = jobs().into_iter().map(|j| j.name).collect();
            want.sort();
            let mut got = list();
            got.sort();
            assert_eq!(got, want, "{name}: stray objects");
        } else {
            assert!(sink.open("dir0/obj-0.bin").is_err(), "the null sink keeps nothing");
        }
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn aborted_and_dropped_objects_leave_nothing() {
    let dir = tempdir("abort");
    for Case { name, sink, list } in cases(&dir, "abort") {
        let align = sink.capabilities().alignment.max(4096);
        // 5 MiB buffers: the first write is a whole S3 part or Azure block, so an upload is really
        // open (and a block staged).
        let pool = BufferPool::new(2, 5 << 20, align).unwrap();
        sink.use_pool(&pool);
        for finish_by_drop in [false, true] {
            let id = dgen_engine::object::identity::Identity::parse(b"dgen1:0123456789abcdef0123456789abcdef").unwrap();
            let mut w = sink.create("half/written.bin", Some(15 << 20), &id).unwrap();
            let (tx, rx) = mpsc::channel();
            let mut buf = pool.take();
            buf.as_mut_slice().fill(0xAB);
            let tx2 = tx.clone();
            w.submit(WriteReq { offset: 0, len: 5 << 20, buf, done: Box::new(move |r| tx2.send(r.is_ok()).unwrap()) });
            assert!(rx.recv().unwrap(), "{name}: write failed");
            // A second write still held (an S3 part waiting for the rest of its bytes) when aborted.
            let buf = pool.take();
            w.submit(WriteReq {
                offset: 5 << 20,
                len: 1 << 20,
                buf,
                done: Box::new(move |r| tx.send(r.is_ok()).unwrap()),
            });
            if finish_by_drop {
                drop(w);
            } else {
                w.abort();
            }
            rx.recv_timeout(std::time::Duration::from_secs(30)).expect("every write completes after an abort");
            if let Some(list) = &list {
                assert_eq!(list(), Vec::<String>::new(), "{name}: abort left something");
            }
        }
        assert_eq!(pool.available(), 2, "{name}");
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_failing_object_aborts_the_others() {
    let dir = tempdir("fail-one");
    let gen = Generator::new(1, profile(1.0, 1.0, 4096));
    for Case { name, sink, list } in cases(&dir, "fail-one") {
        let cfg = ExecConfig { buffer_size: 1 << 20, buffers: 6, threads: 2, open_objects: 4, crc: false };
        let exec = Executor::new(sink.as_ref(), gen.clone(), cfg).unwrap();
        let mut js = jobs();
        js.insert(
            2,
            ObjectJob { name: "../escape.bin".into(), size: 10, content: Content::Stream { stream: 9, offset: 0 } },
        );
        let err = exec.run(js, &mut (), &AtomicBool::new(false)).unwrap_err();
        assert!(err.to_string().contains("../escape.bin"), "{name}: {err}");
        assert_eq!(exec.pool().available(), exec.pool().count(), "{name}");
        if let Some(list) = &list {
            // Objects finished before the failure stay; nothing partial, temporary or open does.
            for f in list() {
                assert!(!f.contains("dgen-tmp") && !f.starts_with("upload:"), "{name}: left over: {f}");
                let j = jobs().into_iter().find(|j| j.name == f).expect("only finished objects");
                assert_eq!(sink.open(&f).unwrap().size(), j.size, "{name}: {f} incomplete");
            }
            assert!(!dir.join("escape.bin").exists());
        }
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn cancellation_aborts_cleanly() {
    let dir = tempdir("cancel");
    let gen = Generator::new(1, profile(1.0, 1.0, 4096));
    for Case { name, sink, list } in cases(&dir, "cancel") {
        let cfg = ExecConfig { buffer_size: 1 << 20, buffers: 6, threads: 1, open_objects: 2, crc: false };
        let exec = Executor::new(sink.as_ref(), gen.clone(), cfg).unwrap();
        // Cancel before the start, and in the middle of a 4 GiB object.
        let err = exec.run(jobs(), &mut (), &AtomicBool::new(true)).unwrap_err();
        assert!(matches!(err, dgen_engine::Error::Cancelled), "{name}: {err}");
        let cancel = AtomicBool::new(false);
        let big =
            ObjectJob { name: "big.bin".into(), size: 4 << 30, content: Content::Stream { stream: 0, offset: 0 } };
        let err = std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(std::time::Duration::from_millis(40));
                cancel.store(true, std::sync::atomic::Ordering::Relaxed);
            });
            exec.run([big], &mut (), &cancel).unwrap_err()
        });
        assert!(matches!(err, dgen_engine::Error::Cancelled), "{name}: {err}");
        assert_eq!(exec.pool().available(), exec.pool().count(), "{name}");
        if let Some(list) = &list {
            assert_eq!(list(), Vec::<String>::new(), "{name}: objects after cancel");
        }
    }
    std::fs::remove_dir_all(dir).ok();
}

/// Reads through every storing sink: whole objects and ranges (at buffer, part and block
/// boundaries, and the last short part), checked byte for byte and by CRC; then stat, list and
/// delete see what is stored.
#[test]
fn every_sink_reads_back_ranges_and_stats_lists_deletes() {
    use dgen_engine::pipeline::read::{Check, Expected, Outcome, ReadReq, Reads, Require};
    let dir = tempdir("conformance-reads");
    let gen = Generator::new(77, profile(1.5, 2.0, 4096));
    for Case { name, sink, list } in cases(&dir, "conformance-reads") {
        if list.is_none() {
            continue;
        }
        let cfg = ExecConfig { buffer_size: 1 << 20, buffers: 6, threads: 2, open_objects: 3, crc: true };
        let stats = {
            let exec = Executor::new(sink.as_ref(), gen.clone(), cfg).unwrap();
            exec.run(jobs(), &mut (), &AtomicBool::new(false)).unwrap_or_else(|e| panic!("{name}: {e}"))
        };
        let sink: Arc<dyn Sink> = Arc::from(sink);
        let align = sink.capabilities().alignment.max(4096);
        let pool = BufferPool::new(4, 1 << 20, align).unwrap();
        let (tx, rx) = crossbeam_channel::unbounded();
        let reads = Reads::start(
            sink.clone(),
            pool.clone(),
            Arc::new(gen.clone()),
            3,
            tx,
            Arc::new(AtomicBool::new(false)),
            Arc::default(),
        )
        .unwrap();
        let mut asked = Vec::new();
        for (i, job) in jobs().into_iter().enumerate() {
            let crc = stats.objects.iter().find(|o| o.name == job.name).unwrap().crc32c;
            let expected = Expected { content: job.content.clone(), size: job.size, crc32c: crc };
            let mut ranges = vec![(0, None, Check::Verify), (0, None, Check::Crc)];
            for edge in [1u64 << 20, 5 << 20, 8 << 20, 16 << 20, job.size] {
                // Across each boundary: the part, block and buffer edges, and the object's end.
                let (from, to) = (edge.saturating_sub(3), (edge + 4).min(job.size));
                if from < to {
                    ranges.push((from, Some(to - from), Check::Verify));
                    ranges.push((from, Some(to - from), Check::Crc));
                }
            }
            if job.size > 10 {
                ranges.push((job.size / 3, Some(job.size / 2), Check::Verify));
            }
            for (seq, (offset, len, check)) in ranges.into_iter().enumerate() {
                let want = len.unwrap_or(job.size - offset);
                asked.push((job.name.clone(), offset, want));
                reads.submit(ReadReq {
                    name: job.name.clone(),
                    // Only what carries an identity: every backend stamps the engine's objects.
                    require: Require::Any,
                    offset,
                    len,
                    check,
                    expected: Some(expected.clone()),
                    tag: i,
                    seq: seq as u64,
                });
            }
        }
        reads.submit(ReadReq {
            name: "no/such.bin".into(),
            require: Require::Any,
            offset: 0,
            len: None,
            check: Check::None,
            expected: None,
            tag: 0,
            seq: 0,
        });
        for _ in 0..asked.len() + 1 {
            let r = rx.recv_timeout(std::time::Duration::from_secs(60)).unwrap_or_else(|e| panic!("{name}: {e}"));
            if r.name == "no/such.bin" {
                match &r.outcome {
                    Outcome::Error(e) => assert_eq!(e.kind(), "not_found", "{name}: {e}"),
                    other => panic!("{name}: a missing object read as {other:?}"),
                }
                continue;
            }
            assert!(matches!(r.outcome, Outcome::Passed), "{name} {} @{}: {:?}", r.name, r.offset, r.outcome);
            let i = asked.iter().position(|(n, o, b)| *n == r.name && *o == r.offset && *b == r.bytes);
            assert!(i.is_some(), "{name}: unexpected read {} @{} of {} bytes", r.name, r.offset, r.bytes);
            asked.remove(i.unwrap());
        }
        assert!(asked.is_empty(), "{name}: reads not reported: {asked:?}");
        drop(reads);
        assert_eq!(pool.available(), pool.count(), "{name}: read buffers not returned");
        // stat, list, delete.
        for job in jobs() {
            let info = sink.stat(&job.name).unwrap().unwrap_or_else(|| panic!("{name}: {} missing", job.name));
            assert_eq!(info.size, job.size, "{name} {}", job.name);
            let id = dgen_engine::object::identity::Identity::of(&job.content, &gen, job.size);
            assert_eq!(info.identity, Some(id), "{name} {}: the identity stamped", job.name);
        }
        assert_eq!(sink.stat("dir0/none.bin").unwrap(), None, "{name}");
        let dir0: Vec<ObjectJob> = jobs().into_iter().filter(|j| j.name.starts_with("dir0/")).collect();
        let never = || false;
        if name.starts_with("file") {
            // A file the engine did not write: not stamped, not listed, not deleted.
            let foreign = dir.join(&name).join("dir0/foreign.txt");
            std::fs::write(&foreign, "the user's").unwrap();
            let info = sink.stat("dir0/foreign.txt").unwrap().unwrap();
            assert_eq!((info.size, info.identity), (10, None));
            assert!(matches!(sink.delete("dir0/foreign.txt"), Err(dgen_engine::Error::NotFound { .. })));
            assert!(foreign.exists());
        }
        let l = sink.list("dir0/", &never).unwrap();
        assert_eq!((l.count, l.bytes), (dir0.len() as u64, dir0.iter().map(|j| j.size).sum()), "{name}: list");
        assert_eq!(sink.list("dir", &never).unwrap().count, SIZES.len() as u64, "{name}: list by a name prefix");
        assert_eq!(sink.list("nothing-here/", &never).unwrap().count, 0, "{name}");
        assert!(matches!(sink.list("", &|| true), Err(dgen_engine::Error::Cancelled) | Ok(_)), "{name}: stop");
        sink.delete(&dir0[0].name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(sink.stat(&dir0[0].name).unwrap(), None, "{name}: deleted");
        assert_eq!(sink.list("dir0/", &never).unwrap().count, dir0.len() as u64 - 1, "{name}: list after delete");
    }
    std::fs::remove_dir_all(dir).ok();
}
