//! Generator throughput (GB/s) by thread count and data profile.
//!
//! `cargo bench --bench gen`. Buffers are 8 MiB, reused, the size `gen` writes with by default; the
//! side-by-side comparison with peers is `benches/side_by_side.sh`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dgen_engine::generator::aes::Kernel;
use dgen_engine::{Generator, Profile};

const BUF: usize = 8 << 20;

fn fill(c: &mut Criterion) {
    let profiles = [
        ("D1-C1", 1.0, 1.0, 4096),
        ("D2-C2", 2.0, 2.0, 4096),
        ("D1-C3", 1.0, 3.0, 4096),
        ("D4-C5-512B", 4.0, 5.0, 512),
        ("D1-C1-1MiB", 1.0, 1.0, 1 << 20),
    ];
    let mut group = c.benchmark_group("fill");
    group.throughput(Throughput::Bytes(BUF as u64));
    let max_threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    for threads in [1, 2, 4].into_iter().filter(|&t| t <= max_threads) {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        for (name, d, cr, unit) in profiles {
            let gen = Generator::new(42, Profile::new(d, cr, unit).unwrap());
            let mut buf = vec![0u8; BUF];
            let mut offset = 0u64;
            group.bench_function(BenchmarkId::new(name, format!("{threads}t")), |b| {
                b.iter(|| {
                    pool.install(|| gen.fill_par(0, offset, &mut buf));
                    offset += BUF as u64;
                })
            });
        }
    }
    group.finish();

    // The kernels side by side, one thread (identical bytes, different speed).
    let mut group = c.benchmark_group("kernel");
    group.throughput(Throughput::Bytes(BUF as u64));
    for kernel in Kernel::all_available() {
        let gen = Generator::with_kernel(42, Profile::default(), kernel);
        let mut buf = vec![0u8; BUF];
        if kernel == Kernel::Soft {
            group.sample_size(10);
        }
        group.bench_function(kernel.name(), |b| b.iter(|| gen.fill(0, 0, &mut buf)));
    }
    group.finish();
}

/// The whole write pipeline into the null sink: generation, CRC32C, buffer hand-offs and scheduling,
/// with no storage behind it — what the engine costs on top of the generator.
fn pipeline(c: &mut Criterion) {
    use dgen_engine::object::Content;
    use dgen_engine::pipeline::executor::{ExecConfig, Executor, ObjectJob};
    use dgen_engine::sink::NullSink;
    use std::sync::atomic::AtomicBool;
    const TOTAL: u64 = 1 << 30;
    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Bytes(TOTAL));
    group.sample_size(10);
    let sink = NullSink;
    for (objects, crc) in [(1u64, false), (1, true), (64, true)] {
        let cfg = ExecConfig { buffer_size: 8 << 20, buffers: 16, crc, open_objects: 8, ..ExecConfig::default() };
        let exec = Executor::new(&sink, Generator::new(42, Profile::default()), cfg).unwrap();
        let cancel = AtomicBool::new(false);
        let name = format!("null/{objects}-objects{}", if crc { "/crc" } else { "" });
        group.bench_function(name, |b| {
            b.iter(|| {
                let jobs = (0..objects).map(|i| ObjectJob {
                    name: format!("o{i}"),
                    size: TOTAL / objects,
                    content: Content::Stream { stream: i, offset: 0 },
                });
                exec.run(jobs, &mut (), &cancel).unwrap()
            })
        });
    }
    // One generator thread: the executor (which takes the CRC32C on its coordinator's thread when
    // the generator threads leave a core free) against the generator's own loop into one reused
    // buffer, with and without the checksum. With a core free the executor should be within 10 % of
    // `fill/D1-C1/1t` (the target of `gen --threads 1`; `benches/side_by_side.py keepup` measures it
    // as whole processes); on one core it pays for the CRC as `fill-then-crc` does.
    let cfg = ExecConfig { buffer_size: 8 << 20, buffers: 16, crc: true, threads: 1, ..ExecConfig::default() };
    let exec = Executor::new(&sink, Generator::new(42, Profile::default()), cfg).unwrap();
    let cancel = AtomicBool::new(false);
    group.bench_function("null/1-thread/crc", |b| {
        b.iter(|| {
            let job = ObjectJob { name: "o".into(), size: TOTAL, content: Content::Stream { stream: 0, offset: 0 } };
            exec.run([job], &mut (), &cancel).unwrap()
        })
    });
    let gen = Generator::new(42, Profile::default());
    let mut buf = vec![0u8; 8 << 20];
    group.bench_function("fill-then-crc/1-thread", |b| {
        b.iter(|| {
            let mut digest = crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32Iscsi);
            for at in (0..TOTAL).step_by(buf.len()) {
                gen.fill(0, at, &mut buf);
                digest.update(&buf);
            }
            digest.finalize()
        })
    });
    group.finish();
}

criterion_group!(benches, fill, pipeline);
criterion_main!(benches);
