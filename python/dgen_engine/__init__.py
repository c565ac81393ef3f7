"""dgen-engine from Python: synthetic data at hardware speed, with exact dedup and compression ratios.

- ``write_file(path, size, ...)`` — generation and I/O entirely in Rust (a fixed pool of aligned
  buffers, io_uring or pwrite, O_DIRECT), to a path, ``s3://bucket/key`` or ``az://container/blob``:
  the Rust-native write dgen-py's streaming report proposed. Returns a ``WriteStats``.
- ``Generator(size, dedup_ratio, compress_ratio, seed, ...)`` — ``fill_chunk(buf)`` into any writable
  buffer (bytearray, memoryview, numpy array, mmap) in place and in parallel, the GIL released; the
  same bytes as ``dgen-engine gen`` for the same seed and profile.
- ``generate(size, ...) -> bytes``.
- ``run(workload, set=..., seed=...)`` / ``verify(workload, ...)`` — a workload file run as
  ``dgen-engine run`` runs it; returns its JSON report as a dict, raises ``WorkloadError`` when the
  run fails.
"""

from __future__ import annotations

import ctypes
import json as _json
import os as _os
from typing import Any, Callable, Dict, Mapping, Optional, Union

from . import _native

__all__ = ["write_file", "WriteStats", "Generator", "generate", "run", "verify", "WorkloadError", "__version__"]
__version__ = _native.__version__

MiB = 1 << 20
_MAX_SIZE = (1 << 63) - 1
_MAX_BUFFER = 1 << 30


def _int(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} = {value}: must be from {lo} to {hi}")
    return value


def _ratio(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    value = float(value)
    if not (value >= 1.0 and value <= 1e6):
        raise ValueError(f"{name} = {value}: must be from 1 to 1000000 (1 = none)")
    return value


def _power_of_two(name: str, value: Any, lo: str) -> int:
    """A power of two from 512 to 1 MiB; `lo` says what the least is called in the message."""
    value = _int(name, value, 512, 1 << 20)
    if value & (value - 1):
        raise ValueError(f"{name} = {value}: must be a power of two from {lo} to 1048576")
    return value


def _unit(value: Any) -> int:
    return _power_of_two("dedup_unit", value, "512")


def _extent(value: Any) -> Optional[int]:
    return None if value is None else _power_of_two("dedup_extent", value, "the dedup unit")


def _mix(value: Any) -> Optional[list]:
    """``[(fraction, ratio), …]`` (pairs as tuples or lists), checked again by the engine."""
    if value is None:
        return None
    try:
        pairs = [(float(f), float(r)) for f, r in value]
    except (TypeError, ValueError):
        raise TypeError("compress_mix must be a list of (fraction, ratio) pairs, e.g. [(0.3, 1), (0.7, 4)]") from None
    return pairs


def _copies(value: Any) -> Optional[str]:
    """``"even"``, ``"zipf:S"`` or a histogram file's path."""
    if value is None:
        return None
    if isinstance(value, _os.PathLike):
        value = _os.fspath(value)
    if not isinstance(value, str) or not value:
        raise TypeError("dedup_copies must be 'even', 'zipf:S' or the path of a 'copies, blocks' file")
    return value


def _dedup_arg(dedup_ratio: float, copies: Optional[str]) -> Optional[float]:
    """None where a histogram of copies should set the ratio (dedup_ratio left at its default)."""
    return None if copies is not None and dedup_ratio == 1.0 else dedup_ratio


def _seed(value: Any) -> Optional[int]:
    if value is None:
        return None
    return _int("seed", value, 0, (1 << 64) - 1)


def _threads(value: Any) -> Optional[int]:
    if value is None:
        return None
    return _int("max_threads", value, 1, 1024)


class WriteStats:
    """What ``write_file`` did.

    Attributes: ``bytes_written``, ``duration_secs``, ``throughput`` (GB/s, 10^9 bytes per second),
    ``operations`` (writes issued), ``crc32c`` (of the data), ``seed`` (pass it again for the same
    bytes), the time split ``generate_secs`` (thread-time generating), ``io_secs`` (wall time with
    a write in flight) and ``wait_secs`` (wall time waiting for a free buffer), ``threads``,
    ``object`` (the URI written), ``engine`` (how: ``io_uring, O_DIRECT``, ``s3`` …),
    ``pool_bytes`` (the buffer pool: the data memory), ``latency_p50_us`` / ``latency_p99_us`` (per
    write), ``verified`` (True / False after ``verify=True``, else None), ``notes``.
    """

    __slots__ = ("_d",)

    def __init__(self, d: Dict[str, Any]):
        self._d = d

    def __getattr__(self, name: str) -> Any:
        try:
            return self._d[name]
        except KeyError:
            raise AttributeError(name) from None

    def as_dict(self) -> Dict[str, Any]:
        """The figures as a plain dict (for JSON)."""
        return dict(self._d)

    def __repr__(self) -> str:
        d = self._d
        return (f"WriteStats(bytes_written={d['bytes_written']}, duration_secs={d['duration_secs']:.3f}, "
                f"throughput={d['throughput']:.2f} GB/s, operations={d['operations']}, "
                f"crc32c=0x{d['crc32c']:08x}, engine={d['engine']!r}, verified={d['verified']})")


def write_file(
    path: Union[str, "_os.PathLike[str]"],
    size: int,
    buffer_size: int = 8 * MiB,
    buffer_count: int = 16,
    use_direct_io: bool = True,
    dedup_ratio: float = 1.0,
    compress_ratio: float = 1.0,
    use_io_uring: bool = True,
    seed: Optional[int] = None,
    dedup_unit: int = 4096,
    verify: bool = False,
    progress: Optional[Callable[[int], Any]] = None,
    *,
    max_threads: Optional[int] = None,
    target: Optional[Mapping[str, Any]] = None,
    dedup_extent: Optional[int] = None,
    compress_mix: Optional[Any] = None,
    dedup_copies: Optional[str] = None,
) -> WriteStats:
    """Writes ``size`` bytes of synthetic data to ``path``, generation and I/O entirely in Rust.

    ``path`` is a file path, ``file://…``, ``s3://bucket/key`` or ``az://container/blob``. A file is
    written under a temporary name and renamed when complete (and fsynced); an upload is completed
    only when every part is in. On any failure, or Ctrl-C (KeyboardInterrupt, raised once the
    engine has aborted), nothing complete-looking is left.

    ``buffer_size`` bytes per write (rounded up to the O_DIRECT alignment), ``buffer_count``
    buffers in the fixed, pre-faulted pool: the data memory is their product whatever ``size``
    is. ``use_direct_io`` opens the file O_DIRECT; ``use_io_uring`` writes through an io_uring
    ring where the kernel allows it (else pwrite threads; ``WriteStats.engine`` says which).
    ``dedup_ratio`` D and ``compress_ratio`` C are exact and independent: total / distinct blocks
    of ``dedup_unit`` bytes, and what zstd / lz4 / gzip achieve. The same ``seed`` gives the same
    bytes (those of ``dgen-engine gen --seed``); ``None`` draws one (``WriteStats.seed``).
    ``verify`` reads the object back and compares every byte (``WriteStats.verified``).
    ``progress(bytes_written)`` is called about every 50 ms; if it raises, the write stops with
    that exception. ``max_threads`` generator threads (all cores by default). ``target``: more
    ``[target]`` keys for the backend, as in a workload (``{"endpoint": "http://…"}`` for S3,
    ``{"file": {"queue_depth": 16}}``). ``dedup_extent``, ``compress_mix`` and ``dedup_copies`` as for ``Generator``.

    The GIL is released for the whole write. Raises ``ValueError`` / ``TypeError`` for bad
    arguments (naming the argument), ``OSError`` (with ``errno``) for I/O and storage errors.
    """
    path = _os.fspath(path)
    if not isinstance(path, str) or not path:
        raise ValueError("path must be a non-empty path or URI")
    size = _int("size", size, 0, _MAX_SIZE)
    buffer_size = _int("buffer_size", buffer_size, 4096, _MAX_BUFFER)
    buffer_count = _int("buffer_count", buffer_count, 1, 65536)
    dedup_ratio = _ratio("dedup_ratio", dedup_ratio)
    compress_ratio = _ratio("compress_ratio", compress_ratio)
    dedup_unit = _unit(dedup_unit)
    if progress is not None and not callable(progress):
        raise TypeError("progress must be callable (it is given the bytes written so far)")
    table = _toml_table(target or {}, "target")
    copies = _copies(dedup_copies)
    d = _native.write_file(path, size, buffer_size, buffer_count, bool(use_direct_io), _dedup_arg(dedup_ratio, copies),
                           compress_ratio, bool(use_io_uring), _seed(seed), dedup_unit, bool(verify), progress,
                           _threads(max_threads), table, _extent(dedup_extent), _mix(compress_mix),
                           copies)
    return WriteStats(d)


def _toml_value(v: Any, where: str) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return _json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x, where) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{_json.dumps(str(k))} = {_toml_value(x, where)}" for k, x in v.items()) + "}"
    raise TypeError(f"{where}: {type(v).__name__} values cannot be given (str, int, float, bool, list, dict)")


def _toml_table(d: Mapping[str, Any], where: str) -> str:
    if not isinstance(d, Mapping):
        raise TypeError(f"{where} must be a dict")
    return "\n".join(f"{_json.dumps(str(k))} = {_toml_value(v, f'{where}[{k!r}]')}" for k, v in d.items())


class _Position(int):
    """The stream position: an int that may also be called, as dgen-py's ``position()`` is."""

    def __call__(self) -> int:
        return int(self)


def _view(buf: Any):
    """A ctypes view of a writable, contiguous buffer (no copy) and its length; the view holds the
    buffer exported (a bytearray cannot be resized meanwhile) until it is dropped."""
    mv = memoryview(buf)
    try:
        if mv.readonly:
            raise TypeError(f"fill_chunk needs a writable buffer; {type(buf).__name__} is read-only")
        if not mv.c_contiguous:
            raise ValueError("fill_chunk needs a contiguous buffer")
        n = mv.nbytes
    finally:
        mv.release()
    if n == 0:
        return None, 0
    return (ctypes.c_char * n).from_buffer(buf), n


class Generator:
    """A stream of synthetic data with exact dedup and compression ratios, filled into your buffers.

    ``Generator(size=None, dedup_ratio=1.0, compress_ratio=1.0, seed=None, dedup_unit=4096,
    max_threads=None, chunk_size=32 MiB, dedup_extent=None, compress_mix=None)``: ``size`` bytes in all
    (None: endless). ``dedup_extent``: duplicates come in aligned runs of this many bytes, so arrays
    deduplicating at any unit up to it see ``dedup_ratio``. ``compress_mix``: ``[(fraction, ratio), …]``
    instead of one ``compress_ratio``, each extent's ratio drawn deterministically. ``dedup_copies``:
    how many copies each distinct block has — ``"even"`` (all ``dedup_ratio``), ``"zipf:S"`` (P(k) ∝ k^-S
    with mean ``dedup_ratio``) or the path of a file of ``copies, blocks`` lines (its mean is the ratio). Byte ``i`` of the stream is byte ``i``
    of ``dgen-engine gen --seed SEED --dedup D --compress C --dedup-unit U`` whatever the chunking
    and the thread count. dgen-py's names are kept: ``fill_chunk``, ``get_chunk``, ``reset``,
    ``position``, ``total_size``, ``is_complete``, ``set_seed``, ``chunk_size``.
    """

    def __init__(
        self,
        size: Optional[int] = None,
        dedup_ratio: float = 1.0,
        compress_ratio: float = 1.0,
        seed: Optional[int] = None,
        dedup_unit: int = 4096,
        max_threads: Optional[int] = None,
        chunk_size: int = 32 * MiB,
        dedup_extent: Optional[int] = None,
        compress_mix: Optional[Any] = None,
        dedup_copies: Optional[str] = None,
        **dgen_py_only: Any,
    ):
        for k in dgen_py_only:
            if k not in ("numa_mode", "numa_node", "block_size", "method"):
                raise TypeError(f"Generator() got an unexpected keyword argument '{k}'")
        self._size = None if size is None else _int("size", size, 0, _MAX_SIZE)
        self._dedup = _ratio("dedup_ratio", dedup_ratio)
        self._compress = _ratio("compress_ratio", compress_ratio)
        self._unit = _unit(dedup_unit)
        self._threads = _threads(max_threads)
        self._chunk = _int("chunk_size", chunk_size, 1, _MAX_BUFFER)
        self._extent = _extent(dedup_extent)
        self._mix = _mix(compress_mix)
        self._copies = _copies(dedup_copies)
        self._stream = self._new_stream(_seed(seed))
        self._pos = 0

    def _new_stream(self, seed: Optional[int]):
        return _native.Stream(seed, _dedup_arg(self._dedup, self._copies), self._compress, self._unit, self._threads,
                              self._extent, self._mix, self._copies)

    @property
    def dedup_extent(self) -> int:
        """Bytes per run of duplicates (the dedup unit unless given; 32 KiB with a mix)."""
        return self._stream.extent

    @property
    def dedup(self) -> float:
        """The dedup ratio: ``dedup_ratio``, or what a histogram in ``dedup_copies`` implies."""
        return self._stream.dedup

    def dedup_held(self, size: Optional[int] = None) -> Optional[float]:
        """The dedup ratio the first ``size`` bytes (default: the generator's size) hold, counted
        exactly: ``dedup`` once the stream is long enough for its copies; a short stream of a
        long-tailed ``dedup_copies`` on large extents holds another. None below one extent."""
        size = self._size if size is None else _int("size", size, 0, _MAX_SIZE)
        if size is None:
            raise ValueError("size: an endless generator needs the size to count over")
        return self._stream.dedup_over(size)

    @property
    def stream_compress_ratio(self) -> float:
        """What the whole stream compresses by: ``compress_ratio``, or what ``compress_mix`` implies."""
        return self._stream.compress

    @property
    def seed(self) -> int:
        """The seed (drawn at random when none was given): pass it again for the same bytes."""
        return self._stream.seed

    @property
    def chunk_size(self) -> int:
        """The size ``get_chunk()`` uses when not told one."""
        return self._chunk

    @property
    def position(self) -> _Position:
        """Bytes generated so far (``position`` or, as in dgen-py, ``position()``)."""
        return _Position(self._pos)

    def total_size(self) -> Optional[int]:
        """The stream's size (None: endless)."""
        return self._size

    def is_complete(self) -> bool:
        """Whether the whole ``size`` has been generated."""
        return self._size is not None and self._pos >= self._size

    def _take(self, n: int) -> int:
        return n if self._size is None else max(0, min(n, self._size - self._pos))

    def fill_chunk(self, buffer: Any) -> int:
        """Fills ``buffer`` (any writable, contiguous buffer: bytearray, memoryview, numpy array,
        mmap …) in place with the next bytes of the stream, in parallel, the GIL released; returns
        the bytes written: ``len(buffer)`` in bytes, or fewer (0 at the end) when ``size`` is reached."""
        view, n = _view(buffer)
        n = self._take(n)
        if n:
            self._stream.fill(ctypes.addressof(view), n, self._pos)
            self._pos += n
        del view
        return n

    def get_chunk(self, chunk_size: Optional[int] = None) -> Optional[bytes]:
        """The next ``chunk_size`` bytes (default ``self.chunk_size``) as bytes; None at the end."""
        n = self._take(self._chunk if chunk_size is None else _int("chunk_size", chunk_size, 0, _MAX_BUFFER))
        if n == 0 and self.is_complete():
            return None
        out = bytearray(n)
        self.fill_chunk(out)
        return bytes(out)

    def generate(self, size: int) -> bytes:
        """The next ``size`` bytes as bytes (fewer at the end of a sized stream)."""
        out = bytearray(self._take(_int("size", size, 0, _MAX_BUFFER)))
        self.fill_chunk(out)
        return bytes(out)

    def seek(self, offset: int) -> None:
        """Moves to byte ``offset`` of the stream: the stream has random access, nothing is replayed."""
        hi = _MAX_SIZE if self._size is None else self._size
        self._pos = _int("offset", offset, 0, hi)

    def reset(self) -> None:
        """Back to the start: the same bytes again."""
        self._pos = 0

    def set_seed(self, seed: Optional[int]) -> None:
        """Another seed (None: a random one) from the next fill on, keeping the position, as dgen-py's
        ``set_seed`` does: the bytes that follow are those of the new seed's stream at this position
        (``reset()`` then gives the new stream from its start)."""
        self._stream = self._new_stream(_seed(seed))

    def __repr__(self) -> str:
        return (f"Generator(size={self._size}, dedup_ratio={self._dedup}, compress_ratio={self._compress}, "
                f"seed={self.seed}, dedup_unit={self._unit}, position={self._pos})")


def generate(
    size: int,
    dedup_ratio: float = 1.0,
    compress_ratio: float = 1.0,
    seed: Optional[int] = None,
    dedup_unit: int = 4096,
    max_threads: Optional[int] = None,
    dedup_extent: Optional[int] = None,
    compress_mix: Optional[Any] = None,
    dedup_copies: Optional[str] = None,
) -> bytes:
    """``size`` bytes from the start of the stream of ``seed`` and the profile, as bytes."""
    g = Generator(size, dedup_ratio, compress_ratio, seed, dedup_unit, max_threads, dedup_extent=dedup_extent,
                  compress_mix=compress_mix, dedup_copies=dedup_copies)
    return g.generate(size)


class WorkloadError(Exception):
    """A workload run that did not pass: ``exit_code`` as the CLI's (1 checks failed or data
    differs, 2 bad workload, 3 storage, 4 plugin), ``message``, and ``report`` (the JSON report as
    a dict, with the checks that failed)."""

    def __init__(self, exit_code: int, message: str, report: Optional[Dict[str, Any]] = None):
        super().__init__(f"exit code {exit_code}: {message}")
        self.exit_code = exit_code
        self.message = message
        self.report = report


def _sets(set: Optional[Mapping[str, Any]]) -> list:
    out = []
    for k, v in (set or {}).items():
        if not isinstance(k, str) or not k:
            raise TypeError("set: keys are workload keys as strings, e.g. 'params.ranks'")
        out.append(f"{k}={_toml_value(v, f'set[{k!r}]')}")
    return out


def _run(workload: Any, set: Optional[Mapping[str, Any]], seed: Optional[int], verify: bool,
         progress: Optional[Callable[[int], Any]]) -> Dict[str, Any]:
    path = _os.fspath(workload)
    code, report, lines = _native.run_workload(path, _sets(set), _seed(seed), verify, progress)
    d = _json.loads(report)
    if code != 0:
        failed = [c.get("name") for r in [d] for c in (r.get("checks") or []) if not c.get("passed", True)]
        message = d.get("error") or (f"check {', '.join(map(repr, failed))} failed" if failed else None)
        if not message:
            message = next((l for l in lines if l.startswith("error")), "the run did not pass")
        raise WorkloadError(code, message if isinstance(message, str) else _json.dumps(message), d)
    return d


def run(
    workload: Union[str, "_os.PathLike[str]"],
    set: Optional[Mapping[str, Any]] = None,
    seed: Optional[int] = None,
    progress: Optional[Callable[[int], Any]] = None,
) -> Dict[str, Any]:
    """Runs a workload file as ``dgen-engine run WORKLOAD --set K=V … --seed S`` does (one process,
    no launcher) and returns its JSON report as a dict. ``set`` overrides workload keys:
    ``{"params.ranks": 8, "target.uri": "file:///mnt/x"}``. Raises ``WorkloadError`` (with the exit
    code, message and report) when the run fails or a check does not pass. Ctrl-C aborts the run
    cleanly and raises KeyboardInterrupt."""
    return _run(workload, set, seed, False, progress)


def verify(
    workload: Union[str, "_os.PathLike[str]"],
    set: Optional[Mapping[str, Any]] = None,
    seed: Optional[int] = None,
    progress: Optional[Callable[[int], Any]] = None,
) -> Dict[str, Any]:
    """Re-reads everything a workload wrote and compares it with what was meant to be written, as
    ``dgen-engine verify`` does; its report as a dict, ``WorkloadError`` when anything differs."""
    return _run(workload, set, seed, True, progress)
