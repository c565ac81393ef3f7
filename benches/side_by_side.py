#!/usr/bin/env python3
"""Side-by-side generator throughput: dgen-engine vs dgen-py vs fio, in one run, alternating.

Each round runs every tool once per (profile, threads) case, in turn, so a noisy neighbour hits all of
them alike; the table shows medians over the rounds and dgen-engine's ratio to each peer.

    python3 benches/side_by_side.py [--size 8GiB] [--rounds 5]

- dgen-engine: `gen --size S -o /dev/null --threads T`, its own reported GB/s.
- dgen-py (PyPI `dgen-py`): `Generator.fill_chunk` into one reused 8 MiB bytearray, timed in-process,
  `max_threads=T`.
- fio: `--ioengine=null --refill_buffers`, `numjobs=T`, 8 MiB blocks, with `dedupe_percentage` and
  `buffer_compress_percentage` set to the same ratios.
Missing peers are installed with pip / apt-get when possible, else skipped with a note.
"""

import argparse
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


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="8GiB", help="bytes per run (default 8GiB)")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    size = parse_size(args.size)
    binary = engine_binary()
    peers = ensure_peers()
    cores = os.cpu_count() or 1
    cases = [(name, d, c, t) for name, d, c in PROFILES for t in sorted({1, cores})]
    results = {}
    for r in range(args.rounds):
        for case in cases:
            _, d, c, t = case
            results.setdefault(case, {}).setdefault("dgen-engine", []).append(run_engine(binary, size, d, c, t))
            for peer, fn in peers.items():
                results[case].setdefault(peer, []).append(fn(size, d, c, t))
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
