"""Type stubs for dgen_engine (see the module docstring: write_file, Generator, generate, run, verify)."""
import os
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple, Union

__version__: str
MiB: int

class WriteStats:
    bytes_written: int
    duration_secs: float
    throughput: float
    operations: int
    crc32c: int
    seed: int
    generate_secs: float
    io_secs: float
    wait_secs: float
    threads: int
    object: str
    engine: str
    pool_bytes: int
    latency_p50_us: int
    latency_p99_us: int
    verified: Optional[bool]
    notes: list[str]
    def as_dict(self) -> Dict[str, Any]: ...

def write_file(
    path: Union[str, os.PathLike[str]],
    size: int,
    buffer_size: int = ...,
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
    compress_mix: Optional[Sequence[Tuple[float, float]]] = None,
    dedup_copies: Optional[Union[str, os.PathLike[str]]] = None,
) -> WriteStats: ...

class _Position(int):
    def __call__(self) -> int: ...

class Generator:
    def __init__(
        self,
        size: Optional[int] = None,
        dedup_ratio: float = 1.0,
        compress_ratio: float = 1.0,
        seed: Optional[int] = None,
        dedup_unit: int = 4096,
        max_threads: Optional[int] = None,
        chunk_size: int = ...,
        dedup_extent: Optional[int] = None,
        compress_mix: Optional[Sequence[Tuple[float, float]]] = None,
        dedup_copies: Optional[Union[str, os.PathLike[str]]] = None,
        **dgen_py_only: Any,
    ) -> None: ...
    @property
    def dedup(self) -> float: ...
    @property
    def dedup_extent(self) -> int: ...
    def dedup_held(self, size: Optional[int] = None) -> Optional[float]: ...
    @property
    def stream_compress_ratio(self) -> float: ...
    @property
    def seed(self) -> int: ...
    @property
    def chunk_size(self) -> int: ...
    @property
    def position(self) -> _Position: ...
    def total_size(self) -> Optional[int]: ...
    def is_complete(self) -> bool: ...
    def fill_chunk(self, buffer: Any) -> int: ...
    def get_chunk(self, chunk_size: Optional[int] = None) -> Optional[bytes]: ...
    def generate(self, size: int) -> bytes: ...
    def seek(self, offset: int) -> None: ...
    def reset(self) -> None: ...
    def set_seed(self, seed: Optional[int]) -> None: ...

def generate(
    size: int,
    dedup_ratio: float = 1.0,
    compress_ratio: float = 1.0,
    seed: Optional[int] = None,
    dedup_unit: int = 4096,
    max_threads: Optional[int] = None,
    dedup_extent: Optional[int] = None,
    compress_mix: Optional[Sequence[Tuple[float, float]]] = None,
    dedup_copies: Optional[Union[str, os.PathLike[str]]] = None,
) -> bytes: ...

class WorkloadError(Exception):
    exit_code: int
    message: str
    report: Optional[Dict[str, Any]]
    def __init__(self, exit_code: int, message: str, report: Optional[Dict[str, Any]] = None) -> None: ...

def run(
    workload: Union[str, os.PathLike[str]],
    set: Optional[Mapping[str, Any]] = None,
    seed: Optional[int] = None,
    progress: Optional[Callable[[int], Any]] = None,
) -> Dict[str, Any]: ...
def verify(
    workload: Union[str, os.PathLike[str]],
    set: Optional[Mapping[str, Any]] = None,
    seed: Optional[int] = None,
    progress: Optional[Callable[[int], Any]] = None,
) -> Dict[str, Any]: ...
