#!/usr/bin/env python3
"""Side-by-side throughput of dgen-engine and its peers, in one run, alternating.

Each round runs every tool once per case, in turn, so a noisy neighbour hits all of them alike; the
tables show medians over the rounds and dgen-engine's ratio to each peer.

    python3 benches/side_by_side.py [gen|write|ckpt|read|restore|plugin|s3|s3get|sinks|mpi|mlperf|python|keepup|realism|blocks|all] [--size 8GiB] [--write-size 16GiB]
        [--rounds 5] [--objects 64] [--object-size 64MiB] [--endpoint URL] [--files 8] [--file-size 800MiB]

gen — the generator alone, per core and with all cores:
- dgen-engine: `gen --size S -o /dev/null --threads T` (null sink), its own reported GB/s.
- dgen-py (PyPI `dgen-py`): `Generator.fill_chunk` into one reused 8 MiB bytearray, timed in-process,
  `max_threads=T`.
- fio: `--ioengine=null --refill_buffers`, `numjobs=T`, 8 MiB blocks, with `dedupe_percentage` and
  `buffer_compress_percentage` set to the same ratios.

write — a file written on the root disk and on /dev/shm, incompressible data, fsync at the end:
- dgen-engine: `gen -o FILE --direct --buffer-size 4MiB --queue-depth 8` (io_uring).
- fio: O_DIRECT, io_uring, 4 MiB blocks, queue depth 8, buffers filled once, `end_fsync`, and
  `fallocate=none`: by default fio preallocates the file before its clock starts, which on tmpfs moves
  all page allocation out of the measurement; dgen-engine allocates while it writes, so fio does too.
- dgen-py + `os.write`: a Python loop of `fill_chunk` into a 4 MiB bytearray and `os.write`, then fsync.
Peak RSS of each process is measured (wait4), to check that memory stays at the buffer pool.

s3 — N objects of S bytes put to one S3-compatible server on loopback (moto's server mode, started
here on a free port unless --endpoint is given), incompressible data:
- dgen-engine: `run workloads/objects.toml` with fixed-size objects into `s3://bench/…` (concurrency
  auto, a 128 MiB pool), its reported GB/s: one PUT per object without checksums (as s3dlio does),
  with CRC32C, and as 8 MiB multipart parts with CRC32C.
- s3dlio (PyPI): `s3dlio.put(prefix, N, size=S, object_type="random")` (its own generator and multipart
  writer, 64 requests in flight), timed in-process.
The server is the likely bottleneck on loopback; the ratio says whether dgen-engine keeps up with a
native peer, and peak RSS whether memory stays at the pool.

read — the same N files of S bytes (written once by dgen-engine), read sequentially, alternating:
- dgen-engine: `run workloads/objects.toml` with `phases = ["get"]`, 4 MiB buffers, 8 reader threads,
  `get_check` none and verify, O_DIRECT and buffered with `cache = "drop"`; the get phase's GB/s.
- fio: the same files (`--filename=a:b:…`), 4 MiB blocks, io_uring, queue depth 8, `invalidate=1`.

s3get — the same N objects (put once by dgen-engine to moto) read back, 16 in flight: dgen-engine's get
phase (no check, and verify) vs s3dlio's `get_many_stats`; GB/s and CPU-seconds per GB of each process.

restore — `run workloads/ckpt.toml` (llama3-1b, 8 shards, one step) saving then restoring (CRC32C
checked), each phase's GB/s; vs fio writing files of the shard size (psync, one job per shard,
`end_fsync`) and then reading them cold (`invalidate=1`).

blocks (not in `all`) — operations in place, the same file (or device), depth, block size, mix and
duration for both tools, alternating, `--duration` seconds per run (default 10): 4 KiB random reads
and 4 KiB random writes at depth 32, O_DIRECT, one ring/job, and 8 KiB random 70/30 with dedup 3
compress 2: dgen-engine's `run workloads/blocks.toml` (its phase's `read`/`write` figures) vs fio
io_uring with registered files and fixed buffers (writes: with and without `refill_buffers`; the mix
with `dedupe_percentage=67`, `buffer_compress_percentage=50`, `refill_buffers`). On a 1 GiB file on
/dev/shm (CPU-bound: the per-operation cost), on the root disk, and on a loop device over a file on
the root disk (`dev://`, root only). IOPS and p50/p99 (µs), medians, and the ratio to each fio.

mpi (not in `all`: it builds with `--features mpi` and needs Open MPI) — 1, 2 and 4 ranks under
`mpirun` writing the same total (`--size`, 64 objects) to the null sink and to files, vs one process
with the same total concurrency (generator threads and objects in flight split over the ranks):
rank 0's merged GB/s, and what the barriers, the gather and the merge cost (the report's
`coordination`), as a share of the run.

mlperf (not in `all`: DLIO needs torch and tensorflow, ~6 GiB, installed into a venv under
~/.cache/dgen-engine from $DLIO_SRC, a checkout of argonne-lcf/dlio_benchmark at mlperf_storage_v2.0,
with the YAMLs of $MLPERF_STORAGE_SRC, a checkout of mlcommons/storage) — MLPerf Storage's llama3-8b
checkpointing, 8 ranks, the same (reshaped, smaller) model for both tools, a save run, the page cache
dropped, a load run, alternating: `run workloads/mlperf-ckpt-8b-scaled.toml` with DLIO's model keys
vs `mpirun -np 8 dlio_benchmark workload=llama3_8b ++workload.model.…`; each tool's own GB/s
(DLIO's figures, both GiB-based) and the peak PSS / RSS of its process tree; the files compared
(names, sizes, what torch.load finds); then dgen-engine alone at full size as far as the disk allows
(4 of the 8 ranks in subset mode: half of the 105 GiB checkpoint).

keepup (not in `all`: it needs `pip install ./python`) — whether the executor keeps up with the
generator on one thread: `gen --threads 1 --size S --seed 1` to `-o /dev/null` and to stdout (sent to
/dev/null), each its own reported GB/s, against the generator's own single-thread fill rate into one
reused 8 MiB buffer (the Python package's `Generator.fill_chunk`, `max_threads=1`), alternating, over
the rounds; the medians and their ratio (the target is ≥ 0.9x).

python (not in `all`: it needs `pip install ./python`) — the Python package against dgen-py in one
Python process, alternating: `Generator.fill_chunk` into the same reused 8 MiB buffer, 1 thread and all
cores, incompressible and dedup 2 compress 2; then `--write-size` bytes to one file on the root disk
with O_DIRECT: `write_file` (io_uring, 16 × 8 MiB pool), dgen-py's `fill_chunk` + `os.write` loop (an
aligned 8 MiB buffer, an O_DIRECT descriptor) and fio (io_uring, 8 MiB blocks, queue depth 16); wall
time around each, fsync included, and each one's peak RSS growth.

realism (not in `all`) — `gen` per core (1 thread, null sink) for each profile kind of "Data that
behaves like real data" (extent, mix, zipf copies, all three) against the uniform profile, the uniform
profile of an earlier build (`--old-bin PATH`) and fio's nearest settings (`dedupe_percentage`,
`dedupe_mode=working_set`, `buffer_compress_percentage`); then `profile`'s scan speed.

sinks — one workload through each sink in turn: the same N objects of S bytes (`run
workloads/objects.toml`, incompressible, 8 MiB buffers, a 128 MiB pool, checksums on, concurrency auto)
written to files (a directory on the root disk, fsynced), to S3 (moto on loopback) and to Azure
(Azurite on loopback, in memory, `--loose` so it accepts the CRC64 headers), alternating per round;
throughput as dgen-engine reports it and the engine's peak RSS for each.

ckpt — a checkpoint's shape on the root disk: F files of S bytes (default 8 × 800 MiB) written at once,
each fsynced, incompressible data, buffered and O_DIRECT:
- dgen-engine: `run workloads/objects.toml` with F fixed-size objects without the CRC footer
  (`params.footer=false`: the plain file fio writes), 8 MiB buffers, a 128 MiB pool, concurrency F,
  the default engine (io_uring) and pwrite, plainly buffered, and io_uring with uncached buffered
  writes (`target.file.uncached=true`, RWF_DONTCACHE, as `workloads/ckpt.toml` writes where the
  kernel has it); its reported GB/s (bytes over the time to the last fsync).
- fio: one psync job per file (`numjobs=F`), 8 MiB blocks, `end_fsync=1`, `fallocate=none`; fio's
  aggregate bandwidth (its job time includes the final fsync).
The files, and fio's, are deleted and the disk synced between runs; each phase of a round starts with
an untimed write of the same shape (the first writer after deletes pays for discarding their blocks).

plugin — the cost of scripting a layout in a Wasm plugin: `run workloads/ckpt.toml` (llama3-8b, 8 ranks,
1 step, into `null://`) against `gen` of the same number of bytes into the null sink, same profile.
Missing peers are installed with pip / apt-get when possible, else skipped with a note.
"""

import argparse
import resource
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHUNK = 8 << 20
PROFILES = [("incompressible", 1.0, 1.0), ("dedup 2 compress 2", 2.0, 2.0)]


def parse_size(text):
    m = re.fullmatch(r"(\d+)\s*(B|KiB|MiB|GiB|TiB)?", text.strip())
    if not m:
        sys.exit(f"bad --size {text!r}")
    return int(m.group(1)) << {"B": 0, None: 0, "KiB": 10, "MiB": 20, "GiB": 30, "TiB": 40}[m.group(2)]


def engine_binary():
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    return os.path.join(target, "release", "dgen-engine")


def run_engine(binary, size, d, c, threads):
    out = subprocess.run(
        [binary, "gen", "--size", str(size), "--dedup", str(d), "--compress", str(c),
         "--threads", str(threads), "--seed", "1", "-o", "/dev/null"],
        check=True, capture_output=True, text=True,
    ).stderr
    return float(re.search(r"= ([\d.]+) GB/s", out).group(1))


DGEN_PY = """
import dgen_py, sys, time
size, d, c, t, chunk = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
g = dgen_py.Generator(size=size, dedup_ratio=d, compress_ratio=c, max_threads=t, seed=1, chunk_size=chunk)
buf = bytearray(chunk)
start = time.perf_counter(); total = 0
while True:
    n = g.fill_chunk(buf)
    if n == 0:
        break
    total += n
print(total / (time.perf_counter() - start) / 1e9)
"""


def run_dgen_py(size, d, c, threads):
    out = subprocess.run([sys.executable, "-c", DGEN_PY, str(size), str(d), str(c), str(threads), str(CHUNK)],
                         check=True, capture_output=True, text=True).stdout
    return float(out.strip())


def run_fio(size, d, c, threads):
    args = ["fio", "--name=gen", "--ioengine=null", "--rw=write", f"--bs={CHUNK}", f"--size={size // threads}",
            f"--numjobs={threads}", "--refill_buffers", "--group_reporting", "--output-format=json"]
    if d > 1:
        args.append(f"--dedupe_percentage={round(100 * (1 - 1 / d))}")
    if c > 1:
        args += [f"--buffer_compress_percentage={round(100 * (1 - 1 / c))}", "--buffer_compress_chunk=4096"]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return json.loads(out[out.index("{"):])["jobs"][0]["write"]["bw_bytes"] / 1e9


def run_and_measure(args, env=None):
    """Like timed(), but reaps the process itself so that its own peak RSS is reported."""
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    out = p.stdout.read()
    err = p.stderr.read()
    _, status, usage = os.wait4(p.pid, 0)
    if os.waitstatus_to_exitcode(status):
        sys.exit(f"{args[0]} failed: {err.strip()}")
    return out, err, usage.ru_maxrss / 1024


def write_engine(binary, path, size):
    _, err, rss = run_and_measure([binary, "gen", "--size", str(size), "--seed", "1", "--direct", "--buffer-size",
                                   "4MiB", "--queue-depth", "8", "-o", path])
    return float(re.search(r"= ([\d.]+) GB/s", err).group(1)), rss


def write_fio(path, size, bs=4 << 20, iodepth=8, direct=True):
    out, _, rss = run_and_measure(["fio", "--name=w", f"--filename={path}", "--rw=write", f"--bs={bs}",
                                   f"--size={size}", f"--direct={int(direct)}", "--ioengine=io_uring",
                                   f"--iodepth={iodepth}", "--end_fsync=1", "--fallocate=none", "--output-format=json"])
    return json.loads(out[out.index("{"):])["jobs"][0]["write"]["bw_bytes"] / 1e9, rss


PY_WRITE = """
import dgen_py, os, sys, time
path, size, chunk = sys.argv[1], int(sys.argv[2]), 4 << 20
g = dgen_py.Generator(size=size, seed=1, chunk_size=chunk)
buf = bytearray(chunk); view = memoryview(buf)
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
start = time.perf_counter(); total = 0
while True:
    n = g.fill_chunk(buf)
    if n == 0:
        break
    done = 0
    while done < n:
        done += os.write(fd, view[done:n])
    total += n
os.fsync(fd); os.close(fd)
print(total / (time.perf_counter() - start) / 1e9)
"""


def write_dgen_py(path, size):
    out, _, rss = run_and_measure([sys.executable, "-c", PY_WRITE, path, str(size)])
    return float(out.strip()), rss


def write_bench(binary, size, rounds):
    places = [("root disk", os.path.join(ROOT, "target", "side-by-side")), ("/dev/shm", "/dev/shm/dgen-side-by-side")]
    tools = {"dgen-engine": lambda p, s: write_engine(binary, p, s)}
    if shutil.which("fio"):
        tools["fio"] = write_fio
    try:
        import dgen_py  # noqa: F401
        tools["dgen-py+write"] = write_dgen_py
    except ImportError:
        pass
    res = {}
    # /dev/shm lives in RAM: keep its file to half the free memory (fixed for the whole run).
    sizes = {"root disk": size, "/dev/shm": min(size, (mem_available() // 2) >> 30 << 30)}
    for r in range(rounds):
        for place, d in places:
            os.makedirs(d, exist_ok=True)
            s = sizes[place]
            # Rotate the order each round: on a VM the first writer after a delete can pay for the host
            # backing fresh pages, and that must not always be the same tool.
            names = list(tools)
            names = names[r % len(names):] + names[:r % len(names)]
            for tool in names:
                fn = tools[tool]
                path = os.path.join(d, "data.bin")
                gbps, rss = fn(path, s)
                os.remove(path)
                res.setdefault((place, s), {}).setdefault(tool, []).append((gbps, rss))
        print(f"write round {r + 1}/{rounds} done", file=sys.stderr)
    for place, d in places:
        shutil.rmtree(d, ignore_errors=True)
    peers = [t for t in tools if t != "dgen-engine"]
    print(f"\nfile writes, GB/s and peak RSS (MiB), median of {rounds} alternating rounds; "
          f"dgen-engine pool = 16 x 4 MiB = 64 MiB")
    print(f"{'where':<26}" + "".join(f"{t:>24}" for t in tools) + "".join(f"{'vs ' + p:>18}" for p in peers))
    for (place, s), by_tool in res.items():
        med = {t: (statistics.median(g for g, _ in v), max(r for _, r in v)) for t, v in by_tool.items()}
        row = f"{place + f' ({s >> 30} GiB)':<26}"
        row += "".join(f"{med[t][0]:>13.2f} {med[t][1]:>6.0f} MiB" for t in tools)
        row += "".join(f"{med['dgen-engine'][0] / med[p][0]:>17.2f}x" for p in peers)
        print(row)
    print("per round (GB/s):")
    for (place, s), by_tool in res.items():
        for t, v in by_tool.items():
            print(f"  {place:<10} {t:<15} " + " ".join(f"{g:.2f}" for g, _ in v))


def ckpt_bench(binary, rounds, files, size):
    base = os.path.join(ROOT, "target", "side-by-side-ckpt")
    report = os.path.join(base, "report.json")

    def engine(direct, how, uncached=False):
        out = os.path.join(base, "engine")
        args = [binary, "run", os.path.join(ROOT, "workloads", "objects.toml"), "-q", "--json-report", report,
                "--set", "data.dedup=1", "--set", "data.compress=1", "--set", "pipeline.buffer_size=8MiB",
                "--set", "pipeline.buffers=16", "--set", f"pipeline.concurrency={files}",
                "--set", f"params.count={files}", "--set", 'params.distribution="fixed"',
                "--set", "params.footer=false", "--set", f"params.size={size - 24}",
                "--set", f"target.uri=file://{out}", "--set", f"target.file.engine=\"{how}\"",
                "--set", f"target.file.direct={'true' if direct else 'false'}",
                "--set", f"target.file.uncached={'true' if uncached else 'false'}"]
        _, _, rss = run_and_measure(args)
        shutil.rmtree(out, ignore_errors=True)
        return json.load(open(report))["gbps"], rss

    def fio(direct):
        out = os.path.join(base, "fio")
        os.makedirs(out, exist_ok=True)
        o, _, rss = run_and_measure(["fio", "--name=ckpt", f"--directory={out}", "--rw=write", "--bs=8m",
                                     f"--size={size}", f"--numjobs={files}", "--ioengine=psync",
                                     f"--direct={int(direct)}", "--end_fsync=1", "--fallocate=none",
                                     "--group_reporting", "--output-format=json"])
        shutil.rmtree(out, ignore_errors=True)
        return json.loads(o[o.index("{"):])["jobs"][0]["write"]["bw_bytes"] / 1e9, rss

    os.makedirs(base, exist_ok=True)
    tools = {"dgen-engine io_uring": lambda d: engine(d, "io_uring"), "dgen-engine pwrite": lambda d: engine(d, "pwrite"),
             # Uncached buffered writes (RWF_DONTCACHE); O_DIRECT has no cache to skip, so that row
             # repeats the plain io_uring one.
             "dgen-engine uncached": lambda d: engine(d, "io_uring", uncached=not d)}
    if shutil.which("fio"):
        tools["fio psync"] = fio
    res = {}
    for r in range(rounds):
        names = list(tools)
        names = names[r % len(names):] + names[:r % len(names)]
        for direct in (False, True):
            # The first writer after the last phase's deletes pays for the file system discarding the
            # freed blocks (0.6 GB/s whichever tool it was): an untimed write of the same shape takes it.
            os.sync()
            tools[names[-1]](direct)
            for name in names:
                os.sync()
                res.setdefault(direct, {}).setdefault(name, []).append(tools[name](direct))
        print(f"ckpt round {r + 1}/{rounds}: " + "; ".join(
            f"{'direct' if d else 'buffered'} " + ", ".join(f"{n} {v[-1][0]:.2f}" for n, v in by.items())
            for d, by in res.items()), file=sys.stderr)
    shutil.rmtree(base, ignore_errors=True)
    print(f"\ncheckpoint shape: {files} files x {size >> 20} MiB at once, fsync per file, root disk; GB/s and "
          f"peak RSS, median of {rounds} alternating rounds ({time.strftime('%Y-%m-%d')})")
    peers = [t for t in tools if not t.startswith("dgen-engine")]
    ours = [t for t in tools if t.startswith("dgen-engine")]
    print(f"{'':<10}" + "".join(f"{t:>28}" for t in tools)
          + "".join(f"{o.removeprefix('dgen-engine ') + ' vs ' + p:>22}" for o in ours for p in peers))
    for direct, by in res.items():
        med = {t: (statistics.median(g for g, _ in v), max(m for _, m in v)) for t, v in by.items()}
        row = f"{'O_DIRECT' if direct else 'buffered':<10}"
        row += "".join(f"{med[t][0]:>17.2f} {med[t][1]:>6.0f} MiB" for t in tools)
        row += "".join(f"{med[o][0] / med[p][0]:>21.2f}x" for o in ours for p in peers)
        print(row)
    print("per round (GB/s):")
    for direct, by in res.items():
        for t, v in by.items():
            print(f"  {'O_DIRECT' if direct else 'buffered':<9} {t:<22} " + " ".join(f"{g:.2f}" for g, _ in v))


def read_bench(binary, rounds, files, size):
    """Reads of the same files, alternating: dgen-engine's get phase vs fio, O_DIRECT and buffered
    cold (fio's invalidate=1, the engine's cache = "drop"), and the engine's verify on top."""
    base = os.path.join(ROOT, "target", "side-by-side-read")
    out = os.path.join(base, "files")
    report = os.path.join(base, "report.json")
    common = ["--set", "data.dedup=1", "--set", "data.compress=1", "--set", f"params.count={files}",
              "--set", 'params.distribution="fixed"', "--set", "params.footer=false",
              "--set", f"params.size={size - 24}", "--set", f"target.uri=file://{out}",
              "--set", "pipeline.buffer_size=4MiB", "--set", "pipeline.buffers=16", "--set", "pipeline.concurrency=8"]
    shutil.rmtree(base, ignore_errors=True)
    os.makedirs(base)
    subprocess.run([binary, "run", os.path.join(ROOT, "workloads", "objects.toml"), "-q", *common], check=True)
    names = [os.path.join(out, f"obj-{i:06}.bin") for i in range(files)]

    def engine(direct, check):
        args = [binary, "run", os.path.join(ROOT, "workloads", "objects.toml"), "-q", "--json-report", report,
                *common, "--set", 'params.phases=["get"]', "--set", f'params.get_check="{check}"',
                "--set", f"target.direct={'true' if direct else 'false'}"]
        _, _, rss = run_and_measure(args)
        r = json.load(open(report))
        get = [p for p in r["phases"] if p["name"] == "get"][0]
        return get["gbps"], rss

    def fio(direct):
        o, _, rss = run_and_measure(["fio", "--name=r", "--filename=" + ":".join(names), "--rw=read", "--bs=4m",
                                     f"--size={size * files}", "--ioengine=io_uring", "--iodepth=8",
                                     f"--direct={int(direct)}", "--invalidate=1", "--output-format=json"])
        return json.loads(o[o.index("{"):])["jobs"][0]["read"]["bw_bytes"] / 1e9, rss

    tools = {"dgen-engine none": lambda d: engine(d, "none"), "dgen-engine verify": lambda d: engine(d, "verify")}
    if shutil.which("fio"):
        tools["fio io_uring qd8"] = fio
    res = {}
    for r in range(rounds):
        order = list(tools)
        order = order[r % len(order):] + order[:r % len(order)]
        for direct in (True, False):
            for name in order:
                res.setdefault(direct, {}).setdefault(name, []).append(tools[name](direct))
        print(f"read round {r + 1}/{rounds}: " + "; ".join(
            f"{'direct' if d else 'buffered cold'} " + ", ".join(f"{n} {v[-1][0]:.2f}" for n, v in by.items())
            for d, by in res.items()), file=sys.stderr)
    shutil.rmtree(base, ignore_errors=True)
    print(f"\nsequential reads of the same {files} files x {size >> 20} MiB, 4 MiB, 8 in flight, root disk; "
          f"GB/s and peak RSS, median of {rounds} alternating rounds ({time.strftime('%Y-%m-%d')})")
    print(f"{'':<14}" + "".join(f"{t:>28}" for t in tools) + f"{'none vs fio':>14}{'verify vs none':>16}")
    for direct, by in res.items():
        med = {t: (statistics.median(g for g, _ in v), max(m for _, m in v)) for t, v in by.items()}
        row = f"{'O_DIRECT' if direct else 'buffered cold':<14}"
        row += "".join(f"{med[t][0]:>17.2f} {med[t][1]:>6.0f} MiB" for t in tools)
        if "fio io_uring qd8" in med:
            row += f"{med['dgen-engine none'][0] / med['fio io_uring qd8'][0]:>13.2f}x"
        row += f"{med['dgen-engine verify'][0] / med['dgen-engine none'][0]:>15.2f}x"
        print(row)


BLOCK_CASES = [
    # name, fio rw, fio bs, rwmixread, engine mix, dedup, compress, unit
    ("4k randread qd32", "randread", "4k", None, '[{op="read",bs="4KiB"}]', 1, 1, "4KiB"),
    ("4k randwrite qd32", "randwrite", "4k", None, '[{op="write",bs="4KiB"}]', 1, 1, "4KiB"),
    ("8k 70/30 d3 c2 qd32", "randrw", "8k", 70, '[{op="read",weight=70,bs="8KiB"},{op="write",weight=30,bs="8KiB"}]', 3, 2, "8KiB"),
]


def blocks_bench(binary, rounds, duration, size=1 << 30):
    """Operations in place, alternating with fio on the same file or device (see the docstring)."""
    if not shutil.which("fio"):
        sys.exit("blocks: fio is needed (apt-get install fio)")
    places = [("/dev/shm", "file"), (os.path.join(ROOT, "target"), "file")]
    loop = None
    if os.geteuid() == 0 and shutil.which("losetup"):
        backing = os.path.join(ROOT, "target", "side-by-side-blocks.img")
        with open(backing, "wb") as f:
            f.truncate(size)
        o = subprocess.run(["losetup", "-f", "--show", backing], capture_output=True, text=True)
        if o.returncode == 0:
            loop = (o.stdout.strip(), backing)
            places.append((loop[0], "dev"))
    results = {}
    try:
        for top, kind in places:
            if kind == "file":
                base = os.path.join(top, "dgen-side-by-side-blocks")
                shutil.rmtree(base, ignore_errors=True)
                os.makedirs(base)
                uri, path = f"file://{base}/out", os.path.join(base, "out", "lun0")
            else:
                base = os.path.join(ROOT, "target", "side-by-side-blocks")
                os.makedirs(base, exist_ok=True)
                uri, path = f"dev://{top}", top
            report = os.path.join(base, "report.json")

            def engine(case, prefill=False):
                name, _, _, _, mix, d, c, unit = case
                phase = f'[{{name="x",mix={mix},pattern="random",depth=32,jobs=1,duration={duration}}}]'
                args = [binary, "run", os.path.join(ROOT, "workloads", "blocks.toml"), "-q", "--json-report", report,
                        "--set", f'target.uri="{uri}"', "--set", f"params.size={size if kind == 'file' else 0}",
                        "--set", f"data.dedup={d}", "--set", f"data.compress={c}", "--set", f'data.dedup_unit="{unit}"',
                        "--set", f"params.prefill={'true' if prefill else 'false'}",
                        "--set", "params.phases=" + (phase if not prefill else "[]")]
                if kind == "file":
                    args += ["--set", "target.file.direct=true"]
                else:
                    args += ["--set", "target.dev.destroy=true"]
                subprocess.run(args, check=True, capture_output=True)
                r = json.load(open(report))
                if prefill:
                    return None
                x = [p for p in r["phases"] if p["name"] == "x"][0]
                return figures(x)

            def fio(case, refill):
                name, rw, bs, mixread, _, d, c, _ = case
                args = ["fio", "--name=x", f"--filename={path}", f"--rw={rw}", f"--bs={bs}", "--direct=1",
                        "--ioengine=io_uring", "--iodepth=32", "--registerfiles=1", "--fixedbufs=1",
                        f"--runtime={duration}", "--time_based", f"--size={size}", "--output-format=json"]
                if mixread is not None:
                    args.append(f"--rwmixread={mixread}")
                if d > 1 or c > 1:
                    args += [f"--dedupe_percentage={round(100 * (1 - 1 / d))}",
                             f"--buffer_compress_percentage={round(100 * (1 - 1 / c))}", "--buffer_compress_chunk=4k"]
                if refill:
                    args.append("--refill_buffers=1")
                o = subprocess.run(args, capture_output=True, text=True, check=True).stdout
                return figures(json.loads(o[o.index("{"):])["jobs"][0])

            def figures(j):
                out = {}
                for k in ("read", "write"):
                    f = j.get(k) or {}
                    if f.get("total_ios", 0) > 0:
                        p = f["clat_ns"]["percentile"]
                        out[k] = (f["iops"], p["50.000000"] / 1e3, p["99.000000"] / 1e3)
                return out

            engine(BLOCK_CASES[0], prefill=True)  # the file written whole once, for both tools
            for r in range(rounds):
                for case in BLOCK_CASES:
                    tools = {"dgen-engine": lambda cs=case: engine(cs), "fio": lambda cs=case: fio(cs, False)}
                    if case[1] != "randread":
                        tools["fio refill"] = lambda cs=case: fio(cs, True)
                    order = list(tools)
                    order = order[r % len(order):] + order[:r % len(order)]
                    for t in order:
                        results.setdefault((top, case[0]), {}).setdefault(t, []).append(tools[t]())
                print(f"blocks {top} round {r + 1}/{rounds} done", file=sys.stderr)
            if kind == "file":
                shutil.rmtree(base, ignore_errors=True)
    finally:
        if loop:
            subprocess.run(["losetup", "-d", loop[0]])
            os.remove(loop[1])
    print(f"\noperations in place, O_DIRECT, io_uring, depth 32, one ring/job, {duration:.0f} s per run, "
          f"{size >> 20} MiB region; IOPS (p50 / p99 µs), median of {rounds} alternating rounds "
          f"({time.strftime('%Y-%m-%d')})")
    for (top, case), by in results.items():
        for kind in ("read", "write"):
            med = {}
            for t, runs in by.items():
                vals = [x[kind] for x in runs if kind in x]
                if vals:
                    med[t] = tuple(statistics.median(v[i] for v in vals) for i in range(3))
            if not med:
                continue
            row = f"{top:<28} {case:<22} {kind:<6}" + "".join(
                f"  {t} {m[0]:>9.0f} ({m[1]:.0f}/{m[2]:.0f})" for t, m in med.items())
            e = med.get("dgen-engine")
            if e:
                row += "".join(f"  vs {t} {e[0] / m[0]:.2f}x" for t, m in med.items() if t != "dgen-engine")
                spread = [x[kind][0] for x in by["dgen-engine"] if kind in x]
                row += f"  (dgen-engine spread {min(spread):.0f}-{max(spread):.0f})"
            print(row)


def restore_bench(binary, rounds, model="llama3-1b", ranks=8):
    """`run workloads/ckpt.toml` saving then restoring (each phase's GB/s from the report), vs fio
    writing then reading files of the same shard sizes (one job per shard, fsync per file, cold)."""
    base = os.path.join(ROOT, "target", "side-by-side-restore")
    report = os.path.join(base, "report.json")
    os.makedirs(base, exist_ok=True)

    def engine():
        out = os.path.join(base, "engine")
        _, _, rss = run_and_measure([binary, "run", os.path.join(ROOT, "workloads", "ckpt.toml"), "-q",
                                     "--json-report", report, "--set", f"target.uri=file://{out}",
                                     "--set", f'params.model="{model}"', "--set", f"params.ranks={ranks}",
                                     "--set", "params.steps=1", "--set", "params.verify=false",
                                     "--set", "params.restore=1", "--set", 'params.restore_check="crc"'])
        r = json.load(open(report))
        shutil.rmtree(out, ignore_errors=True)
        by = {p["name"]: p for p in r["phases"]}
        shards = [o["size"] for o in r["object_list"] if o["name"].endswith(".safetensors")]
        return by["save"]["gbps"], by["restore"]["gbps"], rss, shards

    def fio(shard):
        out = os.path.join(base, "fio")
        os.makedirs(out, exist_ok=True)
        job = ["fio", "--name=ckpt", f"--directory={out}", "--bs=4m", f"--size={shard}", f"--numjobs={ranks}",
               "--ioengine=psync", "--group_reporting", "--output-format=json"]
        w, _, rss_w = run_and_measure(job + ["--rw=write", "--end_fsync=1", "--fallocate=none"])
        r, _, rss_r = run_and_measure(job + ["--rw=read", "--invalidate=1"])
        shutil.rmtree(out, ignore_errors=True)
        bw = lambda o, k: json.loads(o[o.index("{"):])["jobs"][0][k]["bw_bytes"] / 1e9
        return bw(w, "write"), bw(r, "read"), max(rss_w, rss_r)

    res = {"dgen-engine": [], "fio psync": []}
    shard = None
    for r in range(rounds):
        order = ["dgen-engine", "fio psync"] if r % 2 == 0 else ["fio psync", "dgen-engine"]
        for name in order:
            os.sync()
            if name == "dgen-engine":
                save, restore, rss, shards = engine()
                shard = shard or max(shards)
                res[name].append((save, restore, rss))
            elif shutil.which("fio"):
                if shard is None:
                    shard = engine()[3][0]
                res[name].append(fio(shard))
        print(f"restore round {r + 1}/{rounds}: " + ", ".join(
            f"{n} save {v[-1][0]:.2f} restore {v[-1][1]:.2f}" for n, v in res.items() if v), file=sys.stderr)
    shutil.rmtree(base, ignore_errors=True)
    print(f"\ncheckpoint save then restore: {model}, {ranks} shards of ~{(shard or 0) >> 20} MiB, root disk, cold "
          f"reads; GB/s, median of {rounds} alternating rounds ({time.strftime('%Y-%m-%d')})")
    for name, v in res.items():
        if v:
            print(f"  {name:<12} save {statistics.median(x[0] for x in v):.2f}  restore "
                  f"{statistics.median(x[1] for x in v):.2f}  peak RSS {max(x[2] for x in v):.0f} MiB")


def plugin_bench(binary, rounds):
    import tempfile
    report = os.path.join(tempfile.mkdtemp(), "r.json")
    run_args = [binary, "run", os.path.join(ROOT, "workloads", "ckpt.toml"), "-q", "--seed", "1",
                "--set", 'target.uri="null://"', "--set", 'params.model="llama3-8b"', "--set", "params.ranks=8",
                "--set", "params.steps=1", "--set", "params.verify=false", "--json-report", report]
    subprocess.run(run_args, check=True)  # builds the plugin and warms the compile cache
    runs, gens = [], []
    for _ in range(rounds):
        subprocess.run(run_args, check=True)
        r = json.load(open(report))
        runs.append(r["gbps"])
        size = r["bytes"]
        gens.append(run_engine_profile(binary, size, 1.0, 1.5))
    run_med, gen_med = statistics.median(runs), statistics.median(gens)
    print(f"\nplugin overhead, null sink, {size / 1e9:.1f} GB per run, median of {rounds}:")
    print(f"  run workloads/ckpt.toml (llama3-8b, 8 shards): {run_med:.2f} GB/s")
    print(f"  gen, same bytes and profile:                  {gen_med:.2f} GB/s")
    print(f"  time ratio run / gen: {gen_med / run_med:.3f}x")


PY_S3DLIO = """
import sys, time, s3dlio
prefix, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
t = time.perf_counter()
s3dlio.put(prefix, n, template="obj-{}.bin", size=size, object_type="random")
print(n * size / (time.perf_counter() - t) / 1e9)
"""


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what):
    import socket
    for _ in range(600):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.1)
    sys.exit(f"{what} did not start")


def start_moto():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, proc, "moto server (pip install 'moto[server]')")
    return proc, f"http://127.0.0.1:{port}"


def s3_setup(endpoint):
    """A moto server (unless `endpoint` names one), the environment the tools get, a boto3 client and
    the `bench` bucket."""
    import boto3
    server = None
    if endpoint is None:
        server, endpoint = start_moto()
    env = dict(os.environ, AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID=os.environ.get("AWS_ACCESS_KEY_ID", "test"),
               AWS_SECRET_ACCESS_KEY=os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
               AWS_REGION=os.environ.get("AWS_REGION", "us-east-1"))
    s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], region_name=env["AWS_REGION"])
    try:
        s3.create_bucket(Bucket="bench")
    except Exception:
        pass
    return server, endpoint, env, s3


def s3_bench(binary, rounds, count, size, endpoint):
    server, endpoint, env, s3 = s3_setup(endpoint)

    def empty():
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket="bench"):
            for o in page.get("Contents", []):
                s3.delete_object(Bucket="bench", Key=o["Key"])

    payload = size - 28  # the objects plugin adds a 24-byte header and a 4-byte CRC footer
    report = "/tmp/dgen-s3-bench.json"

    def engine(r, checksum=True, single=True):
        _, _, rss = run_and_measure(
            [binary, "run", os.path.join(ROOT, "workloads", "objects.toml"), "-q", "--json-report", report,
             "--set", f"target.uri=s3://bench/dgen-{r}", "--set", "data.dedup=1", "--set", "data.compress=1",
             "--set", "pipeline.buffer_size=8MiB", "--set", "pipeline.buffers=16",
             "--set", f"target.checksum={'true' if checksum else 'false'}",
             "--set", f"target.multipart_threshold={'64MiB' if single else '0'}",
             "--set", f"params.count={count}", "--set", 'params.distribution="fixed"',
             "--set", f"params.size={payload}"], env)
        return json.load(open(report))["gbps"], rss

    def s3dlio(r):
        out, _, rss = run_and_measure([sys.executable, "-c", PY_S3DLIO, f"s3://bench/s3dlio-{r}/", str(count),
                                           str(size)], env)
        return float(out.strip().splitlines()[-1]), rss

    # s3dlio sends no checksum; dgen-engine by default sends a CRC32C with every part, which the server
    # then computes too: both are measured, the like-for-like ratio is without.
    # s3dlio puts objects up to its threshold in one request: the like-for-like run does the same
    # (multipart_threshold 64 MiB); the multipart run cuts them into 8 MiB parts.
    tools = {"dgen-engine": lambda r: engine(r, False), "dgen-engine+crc": engine,
             "dgen-engine-mpu": lambda r: engine(r, True, False), "s3dlio": s3dlio}
    res = {}
    try:
        for r in range(rounds):
            names = list(tools)[r % len(tools):] + list(tools)[:r % len(tools)]
            for name in names:
                res.setdefault(name, []).append(tools[name](r))
                empty()
            print(f"round {r + 1}/{rounds}: " + ", ".join(f"{n} {res[n][-1][0]:.2f} GB/s" for n in tools),
                  file=sys.stderr)
    finally:
        if server:
            server.terminate()
    med = {n: statistics.median(g for g, _ in v) for n, v in res.items()}
    rss = {n: max(m for _, m in v) for n, v in res.items()}
    print(f"\nS3 puts to {endpoint}, {count} objects of {size >> 20} MiB, median of {rounds} alternating rounds:")
    for n in tools:
        print(f"  {n:<16} {med[n]:.3f} GB/s   peak RSS {rss[n]:.0f} MiB")
    print(f"  dgen-engine / s3dlio: {med['dgen-engine'] / med['s3dlio']:.2f}x like for like (one PUT per object, "
          f"no checksum); {med['dgen-engine+crc'] / med['s3dlio']:.2f}x with CRC32C; "
          f"{med['dgen-engine-mpu'] / med['s3dlio']:.2f}x as 8 MiB multipart parts with CRC32C "
          f"(dgen-engine pool: 128 MiB)")


PY_S3DLIO_GET = """
import sys, time, s3dlio
uris = sys.argv[2:]
t = time.perf_counter()
s3dlio.get_many_stats(uris, max_in_flight=int(sys.argv[1]))
print(time.perf_counter() - t)
"""


def s3get_bench(binary, rounds, count, size, endpoint):
    """GETs of the same objects (put once by dgen-engine): dgen-engine's get phase (no check, and
    verify) vs s3dlio's get_many_stats; GB/s, and CPU-seconds per GB read of each process."""
    server, endpoint, env, _ = s3_setup(endpoint)
    report = "/tmp/dgen-s3get-bench.json"
    common = ["--set", "target.uri=s3://bench/get", "--set", "data.dedup=1", "--set", "data.compress=1",
              "--set", "pipeline.buffer_size=8MiB", "--set", "pipeline.buffers=16", "--set", "pipeline.concurrency=16",
              "--set", f"params.count={count}", "--set", 'params.distribution="fixed"',
              "--set", f"params.size={size - 28}"]
    subprocess.run([binary, "run", os.path.join(ROOT, "workloads", "objects.toml"), "-q", *common], env=env, check=True)
    uris = [f"s3://bench/get/obj-{i:06}.bin" for i in range(count)]
    total = count * size

    def measured(args):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        out, _, rss = run_and_measure(args, env)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return out, rss, cpu

    def engine(check):
        _, rss, cpu = measured([binary, "run", os.path.join(ROOT, "workloads", "objects.toml"), "-q",
                                "--json-report", report, *common, "--set", 'params.phases=["get"]',
                                "--set", f'params.get_check="{check}"'])
        get = [p for p in json.load(open(report))["phases"] if p["name"] == "get"][0]
        return get["gbps"], rss, cpu / (total / 1e9)

    def s3dlio():
        out, rss, cpu = measured([sys.executable, "-c", PY_S3DLIO_GET, "16", *uris])
        return total / float(out.strip().splitlines()[-1]) / 1e9, rss, cpu / (total / 1e9)

    tools = {"dgen-engine none": lambda: engine("none"), "dgen-engine verify": lambda: engine("verify"),
             "s3dlio get_many": s3dlio}
    res = {}
    try:
        for r in range(rounds):
            order = list(tools)[r % len(tools):] + list(tools)[:r % len(tools)]
            for name in order:
                res.setdefault(name, []).append(tools[name]())
            print(f"s3get round {r + 1}/{rounds}: " + ", ".join(f"{n} {v[-1][0]:.2f}" for n, v in res.items()),
                  file=sys.stderr)
    finally:
        if server:
            server.terminate()
    print(f"\nS3 GETs from {endpoint} of the same {count} objects of {size >> 20} MiB, 16 in flight, median of "
          f"{rounds} alternating rounds ({time.strftime('%Y-%m-%d')}):")
    for n, v in res.items():
        print(f"  {n:<20} {statistics.median(x[0] for x in v):.3f} GB/s   {statistics.median(x[2] for x in v):.2f} "
              f"CPU-s/GB   peak RSS {max(x[1] for x in v):.0f} MiB")
    med = {n: statistics.median(x[0] for x in v) for n, v in res.items()}
    if "s3dlio get_many" in med:
        print(f"  dgen-engine (no check) / s3dlio: {med['dgen-engine none'] / med['s3dlio get_many']:.2f}x")


def start_azurite():
    """Azurite's blob service on a free port: from the PATH or where scripts/test installs it."""
    program = shutil.which("azurite-blob") or os.path.expanduser(
        "~/.cache/dgen-engine/azurite/node_modules/.bin/azurite-blob")
    if not os.path.exists(program):
        sys.exit("azurite-blob not found: run scripts/test (it installs it) or `npm install -g azurite`")
    port = free_port()
    proc = subprocess.Popen([program, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--inMemoryPersistence",
                             "--loose", "--silent", "--disableTelemetry"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, proc, "azurite-blob")
    return proc, f"http://127.0.0.1:{port}/devstoreaccount1"


def sinks_bench(binary, rounds, count, size):
    import tempfile
    moto, s3_endpoint = start_moto()
    azurite, az_endpoint = start_azurite()
    env = dict(os.environ, AWS_ENDPOINT_URL=s3_endpoint, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
               AWS_REGION="us-east-1")
    for k in ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCOUNT", "AZURE_STORAGE_KEY",
              "AZURE_STORAGE_SAS_TOKEN", "AWS_PROFILE"):
        env.pop(k, None)
    import boto3
    boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id="test", aws_secret_access_key="test",
                 region_name="us-east-1").create_bucket(Bucket="bench")
    payload = size - 28  # the objects plugin adds a 24-byte header and a 4-byte CRC footer
    report = "/tmp/dgen-sinks-bench.json"
    base = os.path.join(tempfile.gettempdir(), f"dgen-sinks-bench-{os.getpid()}")

    def engine(r, target):
        extra = {"file": [f"target.uri=file://{base}/r{r}"],
                 "s3": [f"target.uri=s3://bench/r{r}"],
                 "azure": [f"target.uri=az://bench/r{r}", "target.account=devstoreaccount1",
                           f"target.endpoint={az_endpoint}", "target.create_container=true"]}[target]
        args = [binary, "run", os.path.join(ROOT, "workloads", "objects.toml"), "-q", "--json-report", report,
                "--set", "data.dedup=1", "--set", "data.compress=1",
                "--set", "pipeline.buffer_size=8MiB", "--set", "pipeline.buffers=16",
                "--set", f"params.count={count}", "--set", 'params.distribution="fixed"',
                "--set", f"params.size={payload}"]
        for e in extra:
            args += ["--set", e]
        t = time.perf_counter()
        _, _, rss = run_and_measure(args, env)
        print(f"  {target}: {time.perf_counter() - t:.1f} s wall", file=sys.stderr)
        shutil.rmtree(base, ignore_errors=True)
        return json.load(open(report))["gbps"], rss

    tools = ["file", "s3", "azure"]
    res = {}
    try:
        for r in range(rounds):
            for name in tools[r % 3:] + tools[:r % 3]:
                res.setdefault(name, []).append(engine(r, name))
            print(f"round {r + 1}/{rounds}: " + ", ".join(f"{n} {res[n][-1][0]:.2f} GB/s" for n in tools),
                  file=sys.stderr)
    finally:
        moto.terminate()
        azurite.terminate()
    med = {n: statistics.median(g for g, _ in v) for n, v in res.items()}
    rss = {n: max(m for _, m in v) for n, v in res.items()}
    print(f"\nOne workload through each sink: {count} objects of {size >> 20} MiB, 128 MiB pool, checksums on, "
          f"median of {rounds} alternating rounds ({time.strftime('%Y-%m-%d')}):")
    where = {"file": f"files under {tempfile.gettempdir()}", "s3": f"moto at {s3_endpoint}",
             "azure": f"Azurite at {az_endpoint}"}
    for n in tools:
        print(f"  {n:<6} {med[n]:.3f} GB/s   peak RSS {rss[n]:.0f} MiB   ({where[n]})")
    print(f"  azure / s3: {med['azure'] / med['s3']:.2f}x; azure / file: {med['azure'] / med['file']:.2f}x")


def run_engine_profile(binary, size, d, c):
    return run_engine(binary, size, d, c, os.cpu_count() or 1)


def mem_available():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 8 << 30


def ensure_peers():
    peers = {}
    try:
        import dgen_py  # noqa: F401
        peers["dgen-py"] = run_dgen_py
    except ImportError:
        if subprocess.run([sys.executable, "-m", "pip", "install", "-q", "dgen-py"]).returncode == 0:
            peers["dgen-py"] = run_dgen_py
        else:
            print("note: dgen-py not installable, skipped", file=sys.stderr)
    if shutil.which("fio") is None:
        subprocess.run(["apt-get", "install", "-y", "-qq", "fio"], capture_output=True)
    if shutil.which("fio"):
        peers["fio"] = run_fio
    else:
        print("note: fio not installable, skipped", file=sys.stderr)
    return peers


PY_LOOP_DIRECT = "dgen-py loop"


def _rss_reset():
    """Resets this process's peak RSS (VmHWM), so the next reading is one step's own peak."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _rss_peak_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def fill_rate(g, buf):
    """GB/s of `g.fill_chunk` into `buf`, reused, until the generator is done (timed in-process)."""
    start, total = time.perf_counter(), 0
    while True:
        n = g.fill_chunk(buf)
        if n == 0:
            break
        total += n
    return total / (time.perf_counter() - start) / 1e9


def python_bench(rounds, gen_size, write_size):
    """The Python package against dgen-py, in this one Python process, alternating: fill_chunk into
    the same reused buffer, per core and with all cores; then a file written O_DIRECT on the root
    disk by `write_file` (io_uring), by the loop dgen-py's streaming report measured (fill_chunk into
    an aligned buffer + os.write, here on an O_DIRECT descriptor) and by fio; wall time around each
    call (fsync included), and each step's peak RSS above what the process held before it."""
    import mmap
    try:
        import dgen_engine
    except ImportError:
        sys.exit("python: the dgen_engine package is not installed; pip install ./python first")
    try:
        import dgen_py
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "dgen-py"], check=True)
        import dgen_py
    cores = os.cpu_count() or 1
    buf = mmap.mmap(-1, CHUNK)  # page-aligned: also the O_DIRECT loop's buffer
    for i in range(0, CHUNK, 4096):
        buf[i] = 1

    def fill(make, size):
        return fill_rate(make(size), buf)

    gens = {
        "dgen-engine": lambda d, c, t: lambda size: dgen_engine.Generator(size, d, c, seed=1, max_threads=t),
        "dgen-py": lambda d, c, t: lambda size: dgen_py.Generator(size=size, dedup_ratio=d, compress_ratio=c,
                                                                  max_threads=t, seed=1, chunk_size=CHUNK),
    }
    gen_res = {}
    for r in range(rounds):
        names = list(gens) if r % 2 == 0 else list(reversed(gens))
        for pname, d, c in PROFILES:
            for t in sorted({1, cores}):
                for tool in names:
                    gen_res.setdefault((pname, t), {}).setdefault(tool, []).append(fill(gens[tool](d, c, t), gen_size))
        print(f"python fill round {r + 1}/{rounds} done", file=sys.stderr)

    # The root disk with O_DIRECT (the disk's own speed), and /dev/shm buffered (tmpfs takes O_DIRECT only from Linux 6.6):
    # a device faster than the tools, where what each tool costs shows.
    places = [("root disk, O_DIRECT", os.path.join(ROOT, "target", "side-by-side-python"), True, write_size),
              ("/dev/shm, buffered", "/dev/shm/dgen-side-by-side-python", False,
               min(write_size, (mem_available() // 3) >> 30 << 30))]
    path = direct = size_now = None

    def ours():
        _rss_reset()
        base = _rss_peak_mib()
        start = time.perf_counter()
        st = dgen_engine.write_file(path, size_now, buffer_size=CHUNK, buffer_count=16, use_direct_io=direct,
                                    use_io_uring=True, seed=1)
        secs = time.perf_counter() - start
        assert st.bytes_written == size_now and ("O_DIRECT" in st.engine) == direct, st
        return size_now / secs / 1e9, _rss_peak_mib() - base

    def loop():
        _rss_reset()
        base = _rss_peak_mib()
        start = time.perf_counter()
        g = dgen_py.Generator(size=size_now, seed=1, chunk_size=CHUNK)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | (os.O_DIRECT if direct else 0), 0o644)
        try:
            while True:
                n = g.fill_chunk(buf)
                if n == 0:
                    break
                done = 0
                while done < n:  # n is a multiple of 4 KiB here (sizes are whole MiB)
                    done += os.write(fd, memoryview(buf)[done:n])
            os.fsync(fd)
        finally:
            os.close(fd)
        return size_now / (time.perf_counter() - start) / 1e9, _rss_peak_mib() - base

    def fio():
        return write_fio(path, size_now, bs=CHUNK, iodepth=16, direct=direct)

    writers = {"write_file": ours, PY_LOOP_DIRECT: loop}
    if shutil.which("fio") is None:
        subprocess.run(["apt-get", "install", "-y", "-qq", "fio"], capture_output=True)
    if shutil.which("fio"):
        writers["fio"] = fio
    write_res = {}
    for r in range(rounds):
        names = list(writers)
        names = names[r % len(names):] + names[:r % len(names)]
        for place, d, direct, size_now in places:
            os.makedirs(d, exist_ok=True)
            path = os.path.join(d, "data.bin")
            for tool in names:
                write_res.setdefault((place, size_now), {}).setdefault(tool, []).append(writers[tool]())
                os.remove(path)
                subprocess.run(["sync"])
        print(f"python write round {r + 1}/{rounds} done", file=sys.stderr)
    for _, d, _, _ in places:
        shutil.rmtree(d, ignore_errors=True)

    print(f"\nPython: Generator.fill_chunk into one reused {CHUNK >> 20} MiB buffer, {gen_size >> 30} GiB per run, "
          f"GB/s, median of {rounds} alternating rounds, one process (dgen-engine {dgen_engine.__version__}, "
          f"dgen-py {dgen_py.__version__})")
    print(f"{'profile':<22}{'threads':>8}{'dgen-engine':>13}{'dgen-py':>10}{'ratio':>8}")
    for (pname, t), by in gen_res.items():
        a, b = statistics.median(by["dgen-engine"]), statistics.median(by["dgen-py"])
        print(f"{pname:<22}{t:>8}{a:>13.2f}{b:>10.2f}{a / b:>7.2f}x")
    print(f"\nPython: one file, {CHUNK >> 20} MiB writes, fsync included; GB/s and peak RSS growth (MiB), median "
          f"of {rounds} alternating rounds")
    for (place, size_now), by_tool in write_res.items():
        print(f" {place}, {size_now >> 30} GiB:")
        med = {t: (statistics.median(g for g, _ in v), max(m for _, m in v)) for t, v in by_tool.items()}
        for t, (g, m) in med.items():
            ratio = "" if t == "write_file" else f"   write_file {med['write_file'][0] / g:.2f}x"
            print(f"  {t:<16}{g:>8.2f} GB/s {m:>8.0f} MiB{ratio}")
        print("  per round: " + "; ".join(f"{t} " + " ".join(f"{g:.2f}" for g, _ in v) for t, v in by_tool.items()))


def keepup_bench(binary, rounds, size):
    """`gen --threads 1` to the null sink and to stdout against Generator.fill_chunk on one thread."""
    import mmap
    try:
        import dgen_engine
    except ImportError:
        sys.exit("keepup: the dgen_engine package is not installed; pip install ./python first")
    buf = mmap.mmap(-1, CHUNK)

    def fill():
        return fill_rate(dgen_engine.Generator(size, 1.0, 1.0, seed=1, max_threads=1), buf)

    def gen(out):
        args = [binary, "gen", "--threads", "1", "--size", str(size), "--seed", "1"] + (["-o", out] if out else [])
        err = subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=True).stderr
        return float(re.search(r"= ([\d.]+) GB/s", err).group(1))

    tools = {"fill_chunk": fill, "gen -o /dev/null": lambda: gen("/dev/null"), "gen > /dev/null": lambda: gen(None)}
    res = {}
    for r in range(rounds):
        names = list(tools)
        names = names[r % len(names):] + names[:r % len(names)]
        for t in names:
            res.setdefault(t, []).append(tools[t]())
    base = statistics.median(res["fill_chunk"])
    print(f"\nkeepup: one generator thread, {size >> 30} GiB, GB/s, median of {rounds} alternating rounds "
          f"({os.cpu_count()} cores)")
    for t, v in res.items():
        m = statistics.median(v)
        print(f"  {t:<18}{m:>8.2f}   {m / base:.2f}x of fill_chunk   rounds: " + " ".join(f"{x:.2f}" for x in v))


REALISM_KINDS = [
    ("uniform d2 c2", ["--dedup", "2", "--compress", "2"]),
    ("extent 64K d2 c2", ["--dedup", "2", "--compress", "2", "--dedup-extent", "64KiB"]),
    ("mix 0.3:1,0.5:2,0.2:8 d2", ["--dedup", "2", "--compress-mix", "0.3:1,0.5:2,0.2:8"]),
    ("zipf:1.2 d2 c2", ["--dedup", "2", "--compress", "2", "--dedup-copies", "zipf:1.2"]),
    ("zipf:1.2 d2 + mix + extent", ["--dedup", "2", "--dedup-copies", "zipf:1.2", "--compress-mix",
                                    "0.3:1,0.5:2,0.2:8", "--dedup-extent", "64KiB"]),
]


def realism_bench(binary, rounds, size, old_binary=None):
    """gen per core (1 thread, null sink) for each new profile kind against today's uniform profile,
    the uniform profile of an earlier build (--old-bin) and fio's nearest settings
    (dedupe_mode=working_set, buffer_compress_percentage); then `profile`'s scan speed over a file
    in the page cache."""
    def ours(b, args):
        err = subprocess.run([b, "gen", "--size", str(size), "--threads", "1", "--seed", "1", "-o", "/dev/null",
                              *args], check=True, capture_output=True, text=True).stderr
        return float(re.search(r"= ([\d.]+) GB/s", err).group(1))

    def fio(zipf):
        args = ["fio", "--name=gen", "--ioengine=null", "--rw=write", f"--bs={CHUNK}", f"--size={size}",
                "--numjobs=1", "--refill_buffers", "--output-format=json", "--dedupe_percentage=50",
                "--buffer_compress_percentage=50", "--buffer_compress_chunk=4096"]
        if zipf:
            args += ["--dedupe_mode=working_set", "--dedupe_working_set_percentage=5"]
        out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
        return json.loads(out[out.index("{"):])["jobs"][0]["write"]["bw_bytes"] / 1e9

    cases = [(name, (lambda a=a: ours(binary, a))) for name, a in REALISM_KINDS]
    if old_binary:
        cases.insert(1, ("uniform d2 c2, earlier build", lambda: ours(old_binary, ["--dedup", "2", "--compress", "2"])))
    if shutil.which("fio"):
        cases += [("fio dedupe 50% compress 50%", lambda: fio(False)),
                  ("fio working_set dedupe", lambda: fio(True))]
    res = {}
    for r in range(rounds):
        order = cases[r % len(cases):] + cases[:r % len(cases)]
        for name, fn in order:
            res.setdefault(name, []).append(fn())
        print(f"realism round {r + 1}/{rounds} done", file=sys.stderr)
    # profile's scan: a file of the mixed profile, read from the page cache.
    d = os.path.join(ROOT, "target", "side-by-side-realism")
    os.makedirs(d, exist_ok=True)
    sample = os.path.join(d, "sample.bin")
    subprocess.run([binary, "gen", "--size", "2GiB", "--seed", "1", "-q", "-o", sample, *REALISM_KINDS[-1][1]],
                   check=True)
    scans = []
    for _ in range(rounds):
        out = subprocess.run([binary, "profile", "--json", "-q", d], check=True, capture_output=True, text=True).stdout
        j = json.loads(out)
        scans.append(j["bytes"] / j["seconds"] / 1e9)
    shutil.rmtree(d, ignore_errors=True)
    base = statistics.median(res["uniform d2 c2"])
    print(f"\ngen, 1 thread into the null sink, {size >> 30} GiB per run, GB/s, median of {rounds} rounds "
          f"(rotating order)")
    for name, _ in cases:
        m = statistics.median(res[name])
        print(f"  {name:<34}{m:>8.2f}   {m / base:>5.2f}x of uniform   per round: "
              + " ".join(f"{x:.2f}" for x in res[name]))
    print(f"profile scan (2 cores, file in the page cache): {statistics.median(scans):.2f} GB/s; per round: "
          + " ".join(f"{x:.2f}" for x in scans))


def mpi_binary():
    """The engine built with MPI (a second build: the default one needs no MPI)."""
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    subprocess.run(["cargo", "build", "--release", "--quiet", "--features", "mpi"], cwd=ROOT, check=True)
    return os.path.join(target, "release", "dgen-engine")


# mlperf: DLIO's model shapes (its YAML keys), the same for both tools. "reshaped" models keep the
# llama3-8b YAML's parallelism (8 ranks, TP 1 PP 1, ZeRO 3) and shrink its dimensions so that DLIO,
# which holds every rank's tensors in RAM, fits this machine.
MLPERF_CASES = [
    ("8b reshaped, 1.45 GiB", dict(num_layers=8, hidden_size=768, ffn_hidden_size=2688, num_attention_heads=6,
                                   num_kv_heads=2, vocab_size=32064), 10),
    ("8b reshaped, 4.56 GiB", dict(num_layers=4, hidden_size=2048, ffn_hidden_size=7168, num_attention_heads=16,
                                   num_kv_heads=4, vocab_size=32064), 3),
]
MLPERF_TORCH_CHECK = r"""
import sys, torch
def shape(o):
    if isinstance(o, torch.Tensor): return (str(o.dtype), o.numel())
    if isinstance(o, dict): return {k: shape(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)): return [shape(v) for v in o]
    return repr(o)
ours, theirs = sys.argv[1], sys.argv[2]
a = shape(torch.load(ours, weights_only=True))
b = shape(torch.load(theirs, weights_only=False))
print("same" if a == b else f"different: {str(a)[:300]} vs {str(b)[:300]}")
"""


def tree_memory(pid):
    """PSS and RSS (MiB) summed over a process and its descendants: PSS shares the libraries that
    DLIO's eight Python ranks all map, so it is the fair sum; RSS counts them eight times."""
    kids, pss, rss = {}, 0, 0
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                kids.setdefault(ppid, []).append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    todo = [pid]
    while todo:
        p = todo.pop()
        todo += kids.get(p, [])
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1])
                    elif line.startswith("Rss:"):
                        rss += int(line.split()[1])
        except OSError:
            pass
    return pss / 1024, rss / 1024


def run_sampled(args, env=None, cwd=None, ok=(0,)):
    """Runs args, sampling the process tree's memory every 0.2 s; (stdout, stderr, peak PSS, peak RSS)."""
    import threading
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd)
    peak = [0.0, 0.0]

    def sample():
        while p.poll() is None:
            pss, rss = tree_memory(p.pid)
            peak[0], peak[1] = max(peak[0], pss), max(peak[1], rss)
            time.sleep(0.2)
    t = threading.Thread(target=sample, daemon=True)
    t.start()
    out, err = p.communicate()
    t.join()
    if p.returncode not in ok:
        sys.exit(f"{args[0]} failed ({p.returncode}): {err.strip()[-2000:]}")
    return out, err, peak[0], peak[1]


def drop_caches():
    """What MLPerf's rules ask before a load: the page cache emptied, so loads read the device."""
    subprocess.run(["sync"], check=True)
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def dlio_setup():
    """DLIO as MLPerf Storage v2.0 runs it (mlcommons/storage pins argonne-lcf/dlio_benchmark at the
    `mlperf_storage_v2.0` branch), in a venv under dgen-engine's cache: torch, tensorflow-cpu (DLIO
    imports it whatever the framework), mpi4py and DLIO's pure-Python deps; the source from
    $DLIO_SRC or a pip-installable checkout, and the llama3 YAMLs from $MLPERF_STORAGE_SRC."""
    venv = os.path.join(os.path.expanduser("~"), ".cache", "dgen-engine", "dlio-venv")
    py = os.path.join(venv, "bin", "python")
    if not os.path.exists(os.path.join(venv, "bin", "dlio_benchmark")):
        src = os.environ.get("DLIO_SRC")
        if not src:
            sys.exit("mlperf: DLIO is not installed; set DLIO_SRC to a checkout of argonne-lcf/dlio_benchmark "
                     "(branch mlperf_storage_v2.0)")
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        pip = [py, "-m", "pip", "install", "--quiet"]
        subprocess.run(pip + ["torch", "tensorflow-cpu", "mpi4py", "numpy", "psutil", "hydra-core", "omegaconf",
                              "pandas", "h5py", "Pillow", "PyYAML", "pydftracer==1.0.2"], check=True)
        subprocess.run(pip + ["--no-deps", src], check=True)
    conf = os.environ.get("MLPERF_STORAGE_SRC")
    if not conf:
        sys.exit("mlperf: set MLPERF_STORAGE_SRC to a checkout of mlcommons/storage (its configs/dlio)")
    return venv, py, os.path.join(conf, "configs", "dlio")


def mlperf_bench(binary, rounds):
    """MLPerf Storage's 8b checkpointing, dgen-engine's mlperf-ckpt plugin vs DLIO, same model shape,
    same 8 ranks, same disk, alternating: a save run, the page cache dropped, a load run (as
    mlpstorage runs them); each tool's own figures (DLIO's summary.json, our report's metrics, both
    GiB-based) and the peak memory of its process tree. The first round also checks that the files
    are the same: names, sizes, and the structure torch.load finds in ours and in DLIO's."""
    venv, py, conf = dlio_setup()
    base = os.path.join(ROOT, "target", "side-by-side-mlperf")
    shutil.rmtree(base, ignore_errors=True)
    os.makedirs(base)
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               TF_CPP_MIN_LOG_LEVEL="3", PATH=os.path.join(venv, "bin") + ":" + os.environ["PATH"])
    dropped = True
    wl = os.path.join(ROOT, "workloads", "mlperf-ckpt-8b-scaled.toml")

    def ours(shape, n, write):
        out = os.path.join(base, "ours")
        report = os.path.join(base, "ours.json")
        args = [binary, "run", wl, "-q", "--json-report", report, "--set", f"target.uri=file://{out}",
                "--set", "params.scale=1", "--set", "params.rules=false", "--set", "target.file.cache=keep",
                "--set", "params.time_between_checkpoints=0",
                "--set", f"params.num_checkpoints_write={n if write else 0}",
                "--set", f"params.num_checkpoints_read={0 if write else n}"]
        for k, v in shape.items():
            args += ["--set", f"params.{k}={v}"]
        _, _, pss, rss = run_sampled(args, env)
        m = {x["name"]: x["value"] for x in json.load(open(report))["metrics"]}
        kind = "save" if write else "load"
        return m[f"{kind}_checkpoint_io_mean_GB_per_second"], m["checkpoint_size_GB"], pss, rss

    def dlio(shape, n, write):
        out = os.path.join(base, "dlio")
        args = ["mpirun", "--oversubscribe", "--bind-to", "none", "-np", "8", os.path.join(venv, "bin", "dlio_benchmark"),
                "--config-dir", conf, "workload=llama3_8b", f"hydra.run.dir={out}-results",
                f"++workload.checkpoint.checkpoint_folder={out}", "++workload.checkpoint.time_between_checkpoints=0",
                f"++workload.checkpoint.num_checkpoints_write={n if write else 0}",
                f"++workload.checkpoint.num_checkpoints_read={0 if write else n}"]
        for k, v in shape.items():
            args.append(f"++workload.model.{'' if k == 'num_layers' else 'transformer.'}{k}={v}")
        shutil.rmtree(f"{out}-results", ignore_errors=True)
        _, _, pss, rss = run_sampled(args, env, cwd=base)
        m = json.load(open(f"{out}-results/summary.json"))["metric"]
        kind = "save" if write else "load"
        return m[f"{kind}_checkpoint_io_mean_GB_per_second"], m["checkpoint_size_GB"], pss, rss

    def same_files(name):
        a, b = os.path.join(base, "ours", "llama3-8b"), os.path.join(base, "dlio")
        fa = sorted(os.path.relpath(os.path.join(d, f), a) for d, _, fs in os.walk(a) for f in fs)
        fb = sorted(os.path.relpath(os.path.join(d, f), b) for d, _, fs in os.walk(b) for f in fs)
        if fa != fb:
            return f"{name}: file names differ: {fa[:3]} vs {fb[:3]}"
        worst = max(abs(os.path.getsize(os.path.join(a, f)) - os.path.getsize(os.path.join(b, f))) for f in fa)
        torch_says = set()
        for f in fa:
            if "step1/" in f:
                o = subprocess.run([py, "-c", MLPERF_TORCH_CHECK, os.path.join(a, f), os.path.join(b, f)],
                                   capture_output=True, text=True, check=True).stdout.strip()
                torch_says.add(o)
        return (f"{name}: {len(fa)} files, the same names; sizes differ by at most {worst} bytes (pickle and zip "
                f"headers); torch.load(weights_only=True) of ours vs DLIO's: {', '.join(sorted(torch_says))}")

    res, notes = {}, []
    for r in range(rounds):
        tools = [("dgen-engine", ours), ("DLIO", dlio)]
        if r % 2:
            tools.reverse()
        for name, shape, n in MLPERF_CASES:
            for tool, fn in tools:
                shutil.rmtree(os.path.join(base, "ours" if fn is ours else "dlio"), ignore_errors=True)
                save, size, pss_w, rss_w = fn(shape, n, True)
                dropped = drop_caches() and dropped
                load, _, pss_r, rss_r = fn(shape, n, False)
                res.setdefault(name, {}).setdefault(tool, []).append((save, load, max(pss_w, pss_r),
                                                                       max(rss_w, rss_r), size))
            if r == 0:
                notes.append(same_files(name))
            for d in ("ours", "dlio"):
                shutil.rmtree(os.path.join(base, d), ignore_errors=True)
        print(f"round {r + 1}/{rounds} done", file=sys.stderr)

    # As far as the disk allows at full size: 4 of llama3-8b's 8 ranks in subset mode, their real
    # files (half of the 105 GiB checkpoint), one save and one load; DLIO would need the half
    # checkpoint in RAM, so only dgen-engine runs it.
    free = shutil.disk_usage(base).free
    full = None
    if free > 60 << 30:
        out = os.path.join(base, "full")
        report = os.path.join(base, "full.json")
        common = [binary, "run", wl, "-q", "--json-report", report, "--set", f"target.uri=file://{out}",
                  "--set", "params.scale=1", "--set", "params.rules=false", "--set", "params.subset=true",
                  "--set", "params.simulate_ranks=4", "--set", "params.time_between_checkpoints=0",
                  "--set", "target.file.cache=keep"]
        _, _, pss_w, _ = run_sampled(common + ["--set", "params.num_checkpoints_write=1",
                                               "--set", "params.num_checkpoints_read=0"], env)
        m = {x["name"]: x["value"] for x in json.load(open(report))["metrics"]}
        drop_caches()
        _, _, pss_r, _ = run_sampled(common + ["--set", "params.num_checkpoints_write=0",
                                               "--set", "params.num_checkpoints_read=1"], env)
        m2 = {x["name"]: x["value"] for x in json.load(open(report))["metrics"]}
        rank_gib = sum(v for k, v in m.items() if k.startswith("rank_") and k.endswith("_checkpoint_GB"))
        full = (rank_gib, m["save_checkpoint_io_mean_GB_per_second"], m2["load_checkpoint_io_mean_GB_per_second"],
                max(pss_w, pss_r))
        shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(base, ignore_errors=True)

    print(f"\nMLPerf Storage checkpointing, llama3-8b's 8 ranks (TP 1 PP 1 DP 8, ZeRO 3), buffered writes with "
          f"fsync per file, the page cache {'dropped' if dropped else 'NOT dropped (not root)'} between the save "
          f"run and the load run; median of {rounds} alternating rounds ({time.strftime('%Y-%m-%d')})")
    print(f"{'case':<24}{'tool':<13}{'GiB/ckpt':>9}{'saves':>6}{'save GB/s':>11}{'load GB/s':>11}"
          f"{'peak PSS MiB':>14}{'peak RSS MiB':>14}")
    for name, _, n in MLPERF_CASES:
        med = {}
        for tool, rows in res[name].items():
            med[tool] = [statistics.median(x[i] for x in rows) for i in range(5)]
            save, load, pss, rss, size = med[tool]
            print(f"{name:<24}{tool:<13}{size:>9.3f}{n:>6}{save:>11.3f}{load:>11.3f}{pss:>14.0f}{rss:>14.0f}")
        a, b = med["dgen-engine"], med["DLIO"]
        print(f"{'':<24}{'ratio':<13}{'':>15}{a[0] / b[0]:>10.2f}x{a[1] / b[1]:>10.2f}x{a[2] / b[2]:>13.2f}x")
    if full:
        print(f"{'8b full size, subset 4':<24}{'dgen-engine':<13}{full[0]:>9.3f}{1:>6}{full[1]:>11.3f}"
              f"{full[2]:>11.3f}{full[3]:>14.0f}   (DLIO: would hold {full[0]:.0f} GiB in RAM)")
    else:
        print(f"full size: skipped, {free >> 30} GiB free (needs 60)")
    for n in notes:
        print(n)


def mpi_bench(rounds, total, sinks=("null", "file")):
    """1, 2 and 4 MPI ranks writing the same total (64 objects) to the null sink and to files, vs one
    process with the same total concurrency; rank 0's merged GB/s, and what the barriers, the gather
    and the merge cost it (from the report's `coordination`)."""
    if not shutil.which("mpirun"):
        sys.exit("mpi: mpirun not found (apt-get install openmpi-bin libopenmpi-dev libclang-dev)")
    binary = mpi_binary()
    base = os.path.join(ROOT, "target", "side-by-side-mpi")
    report = os.path.join(base, "report.json")
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    cores = os.cpu_count() or 1
    count = 64

    def run(n, sink, threads=None):
        shutil.rmtree(os.path.join(base, "out"), ignore_errors=True)
        os.makedirs(base, exist_ok=True)
        uri = "null://" if sink == "null" else f"file://{os.path.join(base, 'out')}"
        # Files three ways: plain buffered (page-cache copies dominate and vary run to run on a VM),
        # O_DIRECT and uncached buffered, to tell the page cache's cost from the ranks'.
        mode = {"direct": ["--set", "target.file.direct=true"],
                "uncached": ["--set", "target.file.uncached=true"]}.get(sink, [])
        # The same total concurrency however it is split: generator threads and objects in flight.
        # (`threads`: one process given as many generator threads as n ranks have together.)
        conc = max(1, 8 // n)
        threads = threads or max(1, cores // n)
        args = [binary, "run", os.path.join(ROOT, "workloads", "objects.toml"), "-q", "--json-report", report,
                "--seed", "3", "--set", f"target.uri={uri}", "--set", f"params.count={count}",
                "--set", 'params.distribution="fixed"', "--set", f"params.size={total // count - 24}",
                "--set", f"pipeline.threads={threads}", "--set", f"pipeline.concurrency={conc}"] + mode
        if n > 1:
            args = ["mpirun", "--oversubscribe", "--bind-to", "none", "-np", str(n)] + args
        subprocess.run(args, check=True, env=env, stdout=subprocess.DEVNULL)
        r = json.load(open(report))
        c = r.get("coordination", {})
        # Time at barriers includes waiting for slower ranks (their imbalance); gather and merge are
        # the mechanism's own cost.
        cost = (c.get("barrier_s", 0), c.get("gather_s", 0) + c.get("merge_s", 0))
        return r["gbps"], cost, r.get("run_seconds", r["seconds"])

    res = {}
    for rnd in range(rounds):
        ns = [1, 2, 4]
        ns = ns[rnd % 3:] + ns[:rnd % 3]
        for sink in sinks:
            for n in ns:
                res.setdefault((sink, n), []).append(run(n, sink))
                # More ranks than cores means more generator threads in all than one process has
                # (each rank has at least one): one process with that many is the like-for-like.
                if n * max(1, cores // n) > cores:
                    same = run(1, sink, threads=n * max(1, cores // n))
                    res.setdefault((sink, n, "same threads"), []).append(same)
        print(f"mpi round {rnd + 1}/{rounds}: " + "; ".join(
            f"{k[0]} x{k[1]}{' (1 process, same threads)' if len(k) > 2 else ''} {v[-1][0]:.2f}"
            for k, v in sorted(res.items(), key=lambda kv: str(kv[0]))), file=sys.stderr)
    shutil.rmtree(base, ignore_errors=True)
    print(f"\nMPI ranks on one {cores}-core machine, {total >> 20} MiB in {count} objects per run, same total "
          f"concurrency; merged GB/s (median of {rounds} alternating rounds, {time.strftime('%Y-%m-%d')})")
    print(f"{'sink':<8}{'ranks':>6}{'GB/s':>10}{'vs 1 process':>14}{'at barriers':>14}{'gather+merge':>15}{'of the run':>12}")
    for sink in sinks:
        one = statistics.median(g for g, _, _ in res[(sink, 1)])
        for n in (1, 2, 4):
            v = res[(sink, n)]
            g = statistics.median(x for x, _, _ in v)
            barrier = statistics.median(c[0] for _, c, _ in v)
            gm = statistics.median(c[1] for _, c, _ in v)
            wall = statistics.median(w for _, _, w in v)
            print(f"{sink:<8}{n:>6}{g:>10.2f}{g / one:>13.2f}x{barrier:>12.3f} s{gm * 1000:>12.1f} ms"
                  f"{100 * (barrier + gm) / max(wall, 1e-9):>11.1f}%")
            if (sink, n, "same threads") in res:
                same = statistics.median(x for x, _, _ in res[(sink, n, "same threads")])
                print(f"{'':<8}{'':>6}{'':>10}{g / same:>13.2f}x  vs 1 process with the same {n} generator threads "
                      f"({same:.2f} GB/s)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", nargs="?", default="all", choices=["gen", "write", "ckpt", "read", "restore", "plugin", "s3", "s3get", "sinks", "mpi", "mlperf", "python", "keepup", "realism", "blocks", "all"])
    ap.add_argument("--duration", type=float, default=10.0, help="blocks: seconds per run (default 10)")
    ap.add_argument("--files", type=int, default=8, help="files per ckpt run (default 8)")
    ap.add_argument("--file-size", default="800MiB", help="bytes per ckpt file (default 800MiB)")
    ap.add_argument("--objects", type=int, default=64, help="objects per S3/sinks run (default 64)")
    ap.add_argument("--object-size", default="64MiB", help="bytes per S3/sinks object (default 64MiB)")
    ap.add_argument("--endpoint", help="an S3-compatible endpoint to use instead of a local moto server")
    ap.add_argument("--size", default="8GiB", help="bytes per generator run (default 8GiB)")
    ap.add_argument("--write-size", default="16GiB", help="bytes per file write (default 16GiB)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--old-bin", help="realism: an earlier build's dgen-engine, for its uniform profile")
    ap.add_argument("--sinks", default="null,file", help="mpi: null, file, direct, uncached (default null,file)")
    args = ap.parse_args()
    size = parse_size(args.size)
    if args.what == "mpi":
        return mpi_bench(args.rounds, size, tuple(args.sinks.split(",")))
    binary = engine_binary()
    if args.what == "mlperf":
        return mlperf_bench(binary, args.rounds)
    if args.what == "python":
        return python_bench(args.rounds, size, parse_size(args.write_size))
    if args.what == "keepup":
        return keepup_bench(binary, args.rounds, size)
    if args.what == "realism":
        return realism_bench(binary, args.rounds, size, args.old_bin)
    if args.what == "blocks":
        return blocks_bench(binary, args.rounds, args.duration)
    if args.what in ("sinks", "all"):
        sinks_bench(binary, args.rounds, args.objects, parse_size(args.object_size))
        if args.what == "sinks":
            return
    if args.what in ("s3get", "all"):
        s3get_bench(binary, args.rounds, args.objects, parse_size(args.object_size), args.endpoint)
        if args.what == "s3get":
            return
    if args.what in ("s3", "all"):
        s3_bench(binary, args.rounds, args.objects, parse_size(args.object_size), args.endpoint)
        if args.what == "s3":
            return
    if args.what in ("plugin", "all"):
        plugin_bench(binary, args.rounds)
        if args.what == "plugin":
            return
    peers = ensure_peers()
    if args.what in ("ckpt", "all"):
        ckpt_bench(binary, args.rounds, args.files, parse_size(args.file_size))
        if args.what == "ckpt":
            return
    if args.what in ("read", "all"):
        read_bench(binary, args.rounds, args.files, parse_size(args.file_size))
        if args.what == "read":
            return
    if args.what in ("restore", "all"):
        restore_bench(binary, args.rounds)
        if args.what == "restore":
            return
    if args.what in ("write", "all"):
        write_bench(binary, parse_size(args.write_size), args.rounds)
    if args.what == "write":
        return
    cores = os.cpu_count() or 1
    cases = [(name, d, c, t) for name, d, c in PROFILES for t in sorted({1, cores})]
    results = {}
    runners = {"dgen-engine": lambda s, d, c, t: run_engine(binary, s, d, c, t), **peers}
    for r in range(args.rounds):
        names = list(runners)
        names = names[r % len(names):] + names[:r % len(names)]
        for case in cases:
            _, d, c, t = case
            for name in names:
                results.setdefault(case, {}).setdefault(name, []).append(runners[name](size, d, c, t))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    print(f"\nGB/s, median of {args.rounds} alternating rounds, {size >> 20} MiB per run, {cores} cores "
          f"({time.strftime('%Y-%m-%d')})")
    names = ["dgen-engine"] + list(peers)
    print(f"{'case':<34}" + "".join(f"{n:>13}" for n in names) + "".join(f"{'vs ' + p:>13}" for p in peers))
    for case in cases:
        name, _, _, t = case
        med = {n: statistics.median(results[case][n]) for n in names}
        row = f"{name + f', {t} thread' + ('s' if t > 1 else ''):<34}"
        row += "".join(f"{med[n]:>13.2f}" for n in names)
        row += "".join(f"{med['dgen-engine'] / med[p]:>12.2f}x" for p in peers)
        print(row)
    scale = [statistics.median(results[c]["dgen-engine"]) for c in cases]
    if cores > 1:
        for i in range(0, len(cases), 2):
            print(f"dgen-engine scaling 1 -> {cores} threads, {cases[i][0]}: {scale[i + 1] / scale[i]:.2f}x")


if __name__ == "__main__":
    main()
