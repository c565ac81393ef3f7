//! The sink conformance suite: every sink, driven by the real executor, must store exactly the
//! generator's bytes, leave nothing behind when aborted, and give every buffer back to the pool.

use crate::common::*;
use dgen_engine::exec::{Content, ExecConfig, Executor, ObjectJob};
use dgen_engine::pool::BufferPool;
use dgen_engine::sink::{FileEngine, FileOptions, FileSink, NullSink, Sink, WriteReq};
use dgen_engine::Generator;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;

/// Every sink under test, each writing into its own directory (the null sink keeps nothing).
fn sinks(dir: &Path) -> Vec<(String, Box<dyn Sink>, Option<PathBuf>)> {
    let mut v: Vec<(String, Box<dyn Sink>, Option<PathBuf>)> = vec![("null".into(), Box::new(NullSink), None)];
    for (engine, ename) in [(FileEngine::Pwrite, "pwrite"), (FileEngine::IoUring, "io_uring")] {
        for direct in [false, true] {
            let name = format!("file-{ename}{}", if direct { "-direct" } else { "" });
            let root = dir.join(&name);
            let opts = FileOptions { engine, direct, queue_depth: 4, create_root: true };
            let sink = FileSink::new(&root, opts).unwrap_or_else(|e| panic!("{name}: {e}"));
            v.push((name, Box::new(sink), Some(root)));
        }
    }
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
    for (name, sink, root) in sinks(&dir) {
        // Small buffers and several objects at once: many writes interleave across objects.
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
            let Some(root) = &root else { continue };
            let got = std::fs::read(root.join(&job.name)).unwrap();
            assert_eq!(got.len(), want.len(), "{name} {}: size", job.name);
            assert!(got == want, "{name} {}: bytes differ", job.name);
            // The sink's own read-back agrees.
            let r = sink.open(&job.name).unwrap();
            assert_eq!(r.size(), job.size);
        }
        if let Some(root) = &root {
            let mut want: Vec<String> = jobs().into_iter().map(|j| j.name).collect();
            want.sort();
            assert_eq!(files_in(root), want, "{name}: stray files");
        } else {
            assert!(sink.open("dir0/obj-0.bin").is_err(), "the null sink keeps nothing");
        }
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn aborted_and_dropped_objects_leave_nothing() {
    let dir = tempdir("abort");
    for (name, sink, root) in sinks(&dir) {
        let align = sink.capabilities().alignment.max(4096);
        let pool = BufferPool::new(2, 1 << 20, align).unwrap();
        for finish_by_drop in [false, true] {
            let mut w = sink.create("half/written.bin", Some(3 << 20)).unwrap();
            let (tx, rx) = mpsc::channel();
            let mut buf = pool.take();
            buf.as_mut_slice().fill(0xAB);
            w.submit(WriteReq {
                offset: 0,
                len: 1 << 20,
                buf,
                done: Box::new(move |r| {
                    tx.send(r.is_ok()).unwrap();
                }),
            });
            assert!(rx.recv().unwrap(), "{name}: write failed");
            if finish_by_drop {
                drop(w);
            } else {
                w.abort();
            }
            if let Some(root) = &root {
                assert_eq!(files_in(root), Vec::<String>::new(), "{name}: abort left files");
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
    for (name, sink, root) in sinks(&dir) {
        let cfg = ExecConfig { buffer_size: 1 << 20, buffers: 4, threads: 2, open_objects: 4, crc: false };
        let exec = Executor::new(sink.as_ref(), gen.clone(), cfg).unwrap();
        let mut js = jobs();
        js.insert(
            2,
            ObjectJob { name: "../escape.bin".into(), size: 10, content: Content::Stream { stream: 9, offset: 0 } },
        );
        let err = exec.run(js, &mut (), &AtomicBool::new(false)).unwrap_err();
        assert!(err.to_string().contains("../escape.bin"), "{name}: {err}");
        assert_eq!(exec.pool().available(), exec.pool().count(), "{name}");
        if let Some(root) = &root {
            // Objects finished before the failure stay; nothing partial or temporary does.
            for f in files_in(root) {
                assert!(!f.contains("dgen-tmp"), "{name}: temporary left: {f}");
                let j = jobs().into_iter().find(|j| j.name == f).expect("only finished objects");
                assert_eq!(std::fs::metadata(root.join(&f)).unwrap().len(), j.size, "{name}: {f} incomplete");
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
    for (name, sink, root) in sinks(&dir) {
        let cfg = ExecConfig { buffer_size: 1 << 20, buffers: 4, threads: 1, open_objects: 2, crc: false };
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
        if let Some(root) = &root {
            assert_eq!(files_in(root), Vec::<String>::new(), "{name}: files after cancel");
        }
    }
    std::fs::remove_dir_all(dir).ok();
}
