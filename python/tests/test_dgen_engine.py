"""dgen_engine from Python, against the real CLI, real files (O_DIRECT and not), a real S3 server
(moto on loopback) and the shipped workloads. Run by scripts/test after `pip install ./python`."""

import hashlib
import mmap
import os
import signal
import socket
import subprocess
import sys
import time
import zlib

import pytest

import dgen_engine as dg

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MiB = 1 << 20


def cli():
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    path = os.environ.get("DGEN_ENGINE_BIN", os.path.join(target, "release", "dgen-engine"))
    if not os.path.exists(path):
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    return path


def cli_bytes(size, seed, d=1.0, c=1.0, unit=4096):
    out = subprocess.run([cli(), "gen", "--size", str(size), "--seed", str(seed), "--dedup", str(d), "--compress",
                          str(c), "--dedup-unit", str(unit), "-q"], capture_output=True, check=True)
    return out.stdout


PROFILES = [(1.0, 1.0, 4096, 1), (2.0, 2.0, 4096, 7), (3.0, 1.5, 8192, 12345), (1.0, 4.0, 65536, 2**64 - 1)]


@pytest.mark.parametrize("d,c,unit,seed", PROFILES)
def test_the_same_bytes_as_the_cli(d, c, unit, seed):
    size = 3 * MiB + 12345
    want = cli_bytes(size, seed, d, c, unit)
    assert dg.generate(size, d, c, seed=seed, dedup_unit=unit) == want
    g = dg.Generator(size, d, c, seed=seed, dedup_unit=unit, max_threads=2)
    assert g.seed == seed
    # Chunks of odd sizes, one ending mid-block, equal the whole.
    parts, sizes = [], [1, 4095, 4097, 1 << 20, 777, 3 * MiB]
    for n in sizes:
        buf = bytearray(n)
        got = g.fill_chunk(buf)
        parts.append(bytes(buf[:got]))
    assert b"".join(parts) == want
    assert g.is_complete() and g.position == size and g.position() == size
    assert g.fill_chunk(bytearray(10)) == 0


def test_extents_and_mixes_give_the_cli_s_bytes():
    size = 2 * MiB + 4097
    want = subprocess.run([cli(), "gen", "--size", str(size), "--seed", "8", "--dedup", "2", "--dedup-extent", "64KiB",
                           "--compress-mix", "0.3:1,0.5:2,0.2:8", "-q"], capture_output=True, check=True).stdout
    g = dg.Generator(size, 2.0, seed=8, dedup_extent=64 << 10, compress_mix=[(0.3, 1), (0.5, 2), (0.2, 8)])
    assert g.dedup_extent == 64 << 10 and abs(g.stream_compress_ratio - 1 / (0.3 + 0.25 + 0.025)) < 1e-9
    buf = bytearray(size)
    assert g.fill_chunk(buf) == size and bytes(buf) == want
    # A mix without an extent gets 32 KiB; bad ones name the argument.
    assert dg.Generator(compress_mix=[[0.5, 1], [0.5, 4]]).dedup_extent == 32 << 10
    with pytest.raises(ValueError, match="compress_mix.*add up to 0.5"):
        dg.Generator(compress_mix=[(0.5, 2)])
    with pytest.raises(ValueError, match="dedup_extent"):
        dg.Generator(dedup_unit=8192, dedup_extent=4096)
    with pytest.raises(TypeError, match="compress_mix must be"):
        dg.Generator(compress_mix=[1, 2])


def test_duplicate_count_distributions_give_the_cli_s_bytes(tmp_path):
    hist = tmp_path / "copies.txt"
    hist.write_text("1, 600\n2, 200\n10, 10\n")
    size = 3 * MiB
    for args, kwargs in [(["--dedup", "3", "--dedup-copies", "zipf:1.3"], dict(dedup_ratio=3, dedup_copies="zipf:1.3")),
                         (["--dedup-copies", str(hist)], dict(dedup_copies=hist))]:
        want = subprocess.run([cli(), "gen", "--size", str(size), "--seed", "4", *args, "-q"], capture_output=True,
                              check=True).stdout
        assert dg.generate(size, seed=4, **kwargs) == want, args
    assert abs(dg.Generator(dedup_copies=str(hist)).dedup - 1100 / 810) < 1e-9
    with pytest.raises(ValueError, match="dedup_copies.*cannot reach dedup 9"):
        dg.Generator(dedup_ratio=9, dedup_copies="zipf:3")
    with pytest.raises(ValueError, match="dedup_ratio.*implies"):
        dg.Generator(dedup_ratio=4, dedup_copies=str(hist))
    with pytest.raises(ValueError, match="none.txt.*cannot be read"):
        dg.Generator(dedup_copies=str(tmp_path / "none.txt"))


def test_dedup_held_is_what_counting_the_blocks_finds():
    # 64 MiB of zipf 2 at D 4 on 1 MiB extents (4 columns of 16 rows): far from D, and said exactly.
    size = 64 * MiB
    g = dg.Generator(size, dedup_ratio=4, dedup_copies="zipf:2", dedup_extent=MiB, seed=1)
    data = dg.generate(size, dedup_ratio=4, dedup_copies="zipf:2", dedup_extent=MiB, seed=1)
    blocks = [data[i:i + 4096] for i in range(0, size, 4096)]
    counted = len(blocks) / len(set(blocks))
    assert abs(g.dedup_held() - counted) < 1e-9 and abs(counted / 4 - 1) > 0.01, (g.dedup_held(), counted)
    assert dg.Generator(dedup_ratio=2).dedup_held(4 * MiB) == 1.0
    assert dg.Generator(dedup_ratio=2).dedup_held(1024) is None
    with pytest.raises(ValueError, match="size"):
        dg.Generator(dedup_ratio=2).dedup_held()


def test_fill_chunk_into_every_kind_of_buffer_in_place():
    np = pytest.importorskip("numpy")
    want = cli_bytes(2 * MiB, 99, 2.0, 3.0)
    g = dg.Generator(seed=99, dedup_ratio=2.0, compress_ratio=3.0)
    # bytearray
    ba = bytearray(MiB)
    assert g.fill_chunk(ba) == MiB and bytes(ba) == want[:MiB]
    # a memoryview of part of a bytearray: only that part is written
    g.reset()
    big = bytearray(b"\xee" * (MiB + 20))
    assert g.fill_chunk(memoryview(big)[10:10 + MiB]) == MiB
    assert bytes(big[10:10 + MiB]) == want[:MiB] and big[:10] == b"\xee" * 10 and big[-10:] == b"\xee" * 10
    # a numpy array of another dtype: its bytes
    g.seek(MiB)
    a = np.zeros(MiB // 4, dtype=np.float32)
    assert g.fill_chunk(a) == MiB and a.tobytes() == want[MiB:]
    # an anonymous mmap
    g.reset()
    m = mmap.mmap(-1, 2 * MiB)
    assert g.fill_chunk(m) == 2 * MiB and m[:] == want
    m.close()
    # random access: seek anywhere, the same bytes
    g.seek(123457)
    assert g.generate(1000) == want[123457:124457]
    # what is not writable or not contiguous is refused with a reason
    with pytest.raises(TypeError, match="read-only"):
        g.fill_chunk(b"abc")
    with pytest.raises(ValueError, match="contiguous"):
        g.fill_chunk(np.zeros((4, 4), dtype=np.uint8)[:, ::2])


def test_dgen_py_names_work():
    g = dg.Generator(size=10 * MiB, dedup_ratio=1.0, compress_ratio=1.0, numa_mode="auto", seed=5)
    assert g.total_size() == 10 * MiB and g.chunk_size > 0
    first = g.get_chunk(MiB)
    assert len(first) == MiB and g.position() == MiB
    # set_seed keeps the position, as dgen-py's does: the new seed's bytes from here on.
    g.set_seed(6)
    assert g.position == MiB and g.get_chunk(MiB) == cli_bytes(2 * MiB, 6)[MiB:]
    g.set_seed(5)
    g.reset()
    assert g.position == 0 and g.get_chunk(MiB) == first
    while g.get_chunk() is not None:
        pass
    assert g.is_complete() and g.get_chunk(MiB) is None


def test_bad_generator_arguments_name_themselves():
    for kwargs, says in [
        (dict(dedup_ratio=0.5), "dedup_ratio = 0.5"),
        (dict(compress_ratio=float("nan")), "compress_ratio"),
        (dict(dedup_unit=3000), "dedup_unit = 3000"),
        (dict(max_threads=0), "max_threads = 0"),
        (dict(size=-1), "size = -1"),
        (dict(seed=-1), "seed = -1"),
    ]:
        with pytest.raises(ValueError, match=says):
            dg.Generator(**kwargs)
    with pytest.raises(TypeError, match="numa_nod"):
        dg.Generator(numa_nod=1)


def cli_crc32c(size, seed, d, c):
    """The CRC32C `dgen-engine gen` prints for the same stream."""
    import re
    err = subprocess.run([cli(), "gen", "--size", str(size), "--seed", str(seed), "--dedup", str(d), "--compress",
                          str(c), "-o", "/dev/null"], capture_output=True, text=True, check=True).stderr
    return int(re.search(r"crc32c of the data: 0x([0-9a-f]{8})", err).group(1), 16)


@pytest.mark.parametrize("direct", [True, False])
def test_write_file_writes_the_cli_s_bytes_and_verifies(tmp_path, direct):
    path = tmp_path / "data.bin"
    size = 8 * MiB + 4096 * 3
    st = dg.write_file(str(path), size, buffer_size=MiB, buffer_count=4, use_direct_io=direct,
                       dedup_ratio=2.0, compress_ratio=2.0, seed=42, verify=True)
    assert st.bytes_written == size and st.verified is True and st.seed == 42
    assert ("O_DIRECT" in st.engine) == direct, st.engine
    assert st.operations >= 9 and st.throughput > 0 and st.duration_secs > 0
    assert st.pool_bytes == 4 * MiB
    data = path.read_bytes()
    assert data == cli_bytes(size, 42, 2.0, 2.0)
    assert st.crc32c == cli_crc32c(size, 42, 2.0, 2.0)
    assert not [p for p in os.listdir(tmp_path) if p != "data.bin"]
    # pwrite instead of io_uring, a path-like, a progress callback
    seen = []
    st = dg.write_file(tmp_path / "b.bin", 4 * MiB, buffer_size=MiB, use_direct_io=False, use_io_uring=False,
                       seed=42, progress=seen.append)
    assert "pwrite" in st.engine and (tmp_path / "b.bin").stat().st_size == 4 * MiB
    assert seen == sorted(seen)


def test_write_file_refuses_bad_arguments_by_name(tmp_path):
    p = str(tmp_path / "x")
    for kwargs, exc, says in [
        (dict(size=-5), ValueError, "size = -5"),
        (dict(size=10, buffer_size=100), ValueError, "buffer_size = 100"),
        (dict(size=10, buffer_count=0), ValueError, "buffer_count = 0"),
        (dict(size=10, dedup_ratio=0), ValueError, "dedup_ratio = 0"),
        (dict(size=10, compress_ratio=0.9), ValueError, "compress_ratio = 0.9"),
        (dict(size=10, dedup_unit=1000), ValueError, "dedup_unit = 1000"),
        (dict(size="10"), TypeError, "size must be an int"),
        (dict(size=10, progress=5), TypeError, "progress must be callable"),
        (dict(size=10, target={"file": {"queue_dept": 4}}), ValueError, "queue_dept"),
    ]:
        with pytest.raises(exc, match=says):
            dg.write_file(p, **kwargs)
    with pytest.raises(ValueError, match="http://"):
        dg.write_file("http://host/x", 10)
    assert not os.listdir(tmp_path)


def test_an_unwritable_path_raises_oserror_with_errno(tmp_path):
    with pytest.raises(OSError) as e:
        dg.write_file(str(tmp_path / "no" / "such" / "dir" / "f"), MiB, use_direct_io=False)
    assert e.value.errno is not None and "no" in str(e.value), e.value
    # A path under a regular file: ENOTDIR, whoever runs the test (root ignores permissions).
    (tmp_path / "plain").write_bytes(b"x")
    with pytest.raises(NotADirectoryError) as e:
        dg.write_file(str(tmp_path / "plain" / "f"), MiB, use_direct_io=False)
    assert e.value.errno == 20, e.value
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        os.chmod(ro, 0o500)
        with pytest.raises(PermissionError):
            dg.write_file(str(ro / "f"), MiB, use_direct_io=False)


def test_ctrl_c_mid_write_aborts_and_leaves_no_complete_looking_file(tmp_path):
    path = tmp_path / "big.bin"
    code = ("import dgen_engine as dg, sys\n"
            "try:\n"
            "    dg.write_file(sys.argv[1], 1 << 40, buffer_size=1 << 20, buffer_count=4, use_direct_io=False,\n"
            "                  progress=lambda n: n > 0 and print('started', flush=True))\n"
            "except KeyboardInterrupt as e:\n"
            "    print('KeyboardInterrupt', e, flush=True)\n")
    p = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    line = p.stdout.readline()
    assert line.startswith("started"), line + p.stderr.read()
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=30)
    assert "KeyboardInterrupt" in out and "aborted" in out, out + err
    assert p.returncode == 0
    assert not path.exists() and not os.listdir(tmp_path), os.listdir(tmp_path)


def wait_port(port, server, what, seconds=30):
    """Waits until a server listens on loopback `port`; fails naming it if it exits or never does."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        if server.poll() is not None:
            pytest.fail(f"{what} exited with {server.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"{what} is not listening on port {port} after {seconds} s")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture(scope="module")
def s3():
    pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    wait_port(port, server, "moto")
    env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1",
           "AWS_EC2_METADATA_DISABLED": "true"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket="pybucket")
    yield endpoint, client
    server.kill()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def test_write_file_to_s3_multipart_then_verify(s3):
    endpoint, client = s3
    size = 20 * MiB + 5
    st = dg.write_file("s3://pybucket/dir/obj.bin", size, buffer_size=8 * MiB, buffer_count=4, seed=3,
                       compress_ratio=2.0, verify=True, target={"endpoint": endpoint})
    assert st.bytes_written == size and st.verified is True and st.object == "s3://pybucket/dir/obj.bin"
    body = client.get_object(Bucket="pybucket", Key="dir/obj.bin")["Body"].read()
    assert hashlib.sha256(body).digest() == hashlib.sha256(cli_bytes(size, 3, 1.0, 2.0)).digest()
    assert not client.list_multipart_uploads(Bucket="pybucket").get("Uploads")
    with pytest.raises(OSError, match="nobucket"):
        dg.write_file("s3://nobucket/x", MiB, target={"endpoint": endpoint})


AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def azurite_program():
    import shutil
    found = shutil.which("azurite-blob")
    cached = os.path.expanduser("~/.cache/dgen-engine/azurite/node_modules/.bin/azurite-blob")
    return found or (cached if os.path.exists(cached) else None)


@pytest.fixture(scope="module")
def azurite():
    program = azurite_program()
    if program is None:
        pytest.skip("azurite-blob not installed (scripts/test installs it)")
    port = free_port()
    server = subprocess.Popen([program, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--silent",
                               "--disableTelemetry", "--loose", "--inMemoryPersistence"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, server, "azurite")
    endpoint = f"http://127.0.0.1:{port}/devstoreaccount1"
    conn = (f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AZURITE_KEY};"
            f"BlobEndpoint={endpoint}")
    old = os.environ.get("AZURE_STORAGE_CONNECTION_STRING")
    os.environ["AZURE_STORAGE_CONNECTION_STRING"] = conn
    yield endpoint
    server.kill()
    if old is None:
        os.environ.pop("AZURE_STORAGE_CONNECTION_STRING", None)
    else:
        os.environ["AZURE_STORAGE_CONNECTION_STRING"] = old


def test_write_file_to_azure_block_blob_then_verify(azurite):
    size = 12 * MiB + 777
    st = dg.write_file("az://pycontainer/dir/blob.bin", size, buffer_size=4 * MiB, buffer_count=4, seed=9,
                       dedup_ratio=2.0, verify=True, target={"create_container": True})
    assert st.bytes_written == size and st.verified is True, st
    assert st.object == "az://pycontainer/dir/blob.bin"
    # The bytes read back from Azurite are the CLI's: the same CRC32C, and verify compared each one.
    assert st.crc32c == cli_crc32c(size, 9, 2.0, 1.0)
    with pytest.raises(OSError, match="nocontainer"):
        dg.write_file("az://nocontainer/x", MiB)


def test_run_returns_the_report_and_a_failing_check_raises_with_exit_code_1(tmp_path):
    out = tmp_path / "out"
    r = dg.run(os.path.join(ROOT, "workloads", "ckpt.toml"),
               set={"target.uri": f"file://{out}", "params.model": "tiny", "params.ranks": 2,
                    # a tiny checkpoint's throughput is its fsyncs' latency: no floor here
                    "params.min_gbps": 0}, seed=11)
    assert r["seed"] == 11 and r["bytes"] > 0 and all(c["passed"] for c in r["checks"]), r
    assert sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) >= r["bytes"]
    v = dg.verify(os.path.join(ROOT, "workloads", "ckpt.toml"),
                  set={"target.uri": f"file://{out}", "params.model": "tiny", "params.ranks": 2}, seed=11)
    assert v["bytes"] == r["bytes"]
    with pytest.raises(dg.WorkloadError) as e:
        dg.run(os.path.join(ROOT, "workloads", "mlperf-ckpt-8b-scaled.toml"),
               set={"target.uri": f"file://{tmp_path / 'm'}", "params.scale": 0.0001,
                    "params.num_checkpoints_write": 1, "params.num_checkpoints_read": 1,
                    "params.time_between_checkpoints": 0})
    assert e.value.exit_code == 1 and "full-size checkpoint" in e.value.message, e.value
    assert e.value.report["checks"]
    with pytest.raises(dg.WorkloadError) as e:
        dg.run(os.path.join(ROOT, "workloads", "ckpt.toml"), set={"data.dedup": 0.5})
    assert e.value.exit_code == 2 and "data.dedup" in e.value.message, e.value
