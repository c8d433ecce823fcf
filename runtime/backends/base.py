"""The Backend protocol: open, run(graph, feeds) -> outputs, close; a context manager.

A backend opens every graph the manifest's stage plan uses and runs them by name. Feeds and
outputs are the backend's own tensors (numpy arrays on the CPU, torch tensors, ONNX Runtime
OrtValues on a GPU), so stage outputs can stay on the device between graphs; `upload` and
`download` cross to and from numpy. Validation lives in the public `run`, the work in `_run`.

Backends import their heavy library (torch, onnxruntime, tensorrt) inside `check_available`
and `_open`, never at module import time, so `runtime/` imports on a machine that lacks them.
"""

from __future__ import annotations

import contextlib
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from runtime.errors import BackendUnavailable, InputError, ShapeError
from runtime.manifest import BATCH, HEIGHT, REQUESTED_PRECISIONS, WIDTH, Manifest, TensorSpec

if TYPE_CHECKING:
    from runtime.backends.device_frames import DeviceFrames

DEVICES = ("cpu", "cuda")
# A whole frame's device work: device inputs (name -> tensor) -> device outputs.
FrameBody = Callable[[Mapping[str, Any]], Mapping[str, Any]]

log = logging.getLogger(__name__)


class Backend(ABC):
    """Runs the graphs of one manifest on one device; `precision` is what the user asked for
    (auto, fp32, fp16, int8) and `graph_precision` the variant each graph really runs."""

    name: ClassVar[str]

    def __init__(
        self, manifest: Manifest, device: str = "cpu", precision: str = "fp32", threads: int | None = None
    ) -> None:
        if device not in DEVICES:
            raise InputError(f"unknown device {device!r} (use one of {', '.join(DEVICES)})")
        if precision not in REQUESTED_PRECISIONS:
            raise InputError(f"unknown precision {precision!r} (use one of {', '.join(REQUESTED_PRECISIONS)})")
        if threads is not None and threads < 1:
            raise InputError(f"threads must be >= 1, got {threads}")
        self.manifest = manifest
        self.device = device
        self.precision = precision
        self.threads = threads
        self.is_open = False
        # Seconds spent inside each graph's `_run` (the graph itself, without validation), when
        # `record_timings` is on; the benchmark uses it to measure orchestration overhead.
        self.record_timings = False
        self.timings: dict[str, list[float]] = {}

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    @abstractmethod
    def check_available(cls, device: str) -> None:
        """Raise BackendUnavailable, with the reason, if this backend cannot run on `device` here."""

    def open(self) -> Backend:
        """Check availability and open every graph the stage plan uses (idempotent)."""
        if not self.is_open:
            self.check_available(self.device)
            if self.precision != "auto":
                self.manifest.check_precision(self.precision, self.target)  # every missing graph at once
            try:
                self._open(self.manifest.graphs_in_use())
            except BaseException:
                self._close()  # release the graphs opened before the failure, then re-raise
                raise
            self.is_open = True
            plan = ", ".join(f"{g}={p}" for g, p in self.precision_plan().items())
            log.info("precision %s on %s runs: %s", self.precision, self.target, plan)
        return self

    def close(self) -> None:
        if self.is_open:
            self._close()
            self.is_open = False

    def __enter__(self) -> Backend:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def target(self) -> str:
        """This backend's key in the manifest's `auto_precision` ("onnxruntime/cpu", ...)."""
        return f"{self.name}/{self.device}"

    @property
    def runs_synchronously(self) -> bool:
        """Whether `run` returns only once the graph has finished (true on the CPU); progress is
        reported per graph only then, so that reporting never waits on a device."""
        return self.device == "cpu"

    def graph_precision(self, graph: str) -> str:
        """The precision variant of `graph` this backend runs (see Manifest.precision_for)."""
        return self.manifest.precision_for(graph, self.precision, self.target)

    def precision_plan(self) -> dict[str, str]:
        """Graph name -> the precision variant it runs, for every graph in use."""
        return {g: self.graph_precision(g) for g in self.manifest.graphs_in_use()}

    def describe(self) -> str:
        used = sorted({self.graph_precision(g) for g in self.manifest.graphs_in_use()})
        return f"{self.name} on {self.device} ({self.precision}: {', '.join(used)})"

    # ------------------------------------------------------------------ running

    def run(self, graph: str, feeds: Mapping[str, Any]) -> dict[str, Any]:
        """Run `graph` on `feeds` (input name -> tensor); returns output name -> tensor."""
        if not self.is_open:
            raise BackendUnavailable(f"{self.name} backend is not open (call open() or use it in a with block)")
        spec = self.manifest.graph(graph)
        self._validate(graph, spec.inputs, feeds)
        if not self.record_timings:
            return self._run(graph, feeds)
        self._synchronize()
        start = time.perf_counter()
        outputs = self._run(graph, feeds)
        self._synchronize()
        self.timings.setdefault(graph, []).append(time.perf_counter() - start)
        return outputs

    @contextlib.contextmanager
    def returning_memory(self) -> Iterator[None]:
        """Inside, each graph call hands the working memory it pooled back when it ends (for
        calls of very different sizes, such as tiles and a whole-frame prior). Backends that
        keep no pool of their own do nothing."""
        yield

    def reset_timings(self) -> None:
        self.timings = {}

    def _validate(self, graph: str, specs: tuple[TensorSpec, ...], feeds: Mapping[str, Any]) -> None:
        expected = [s.name for s in specs]
        if sorted(feeds) != sorted(expected):
            raise ShapeError(f"graph {graph!r} takes inputs {expected}, got {sorted(feeds)}")
        bound: dict[str, int] = {}
        for spec in specs:
            shape, dtype = self._describe(feeds[spec.name])
            if dtype != spec.dtype and dtype != self._device_dtype(spec.dtype):
                raise ShapeError(f"graph {graph!r} input {spec.name!r} must be {spec.dtype}, got {dtype}")
            if len(shape) != len(spec.shape):
                raise ShapeError(
                    f"graph {graph!r} input {spec.name!r} must have {len(spec.shape)} dimensions "
                    f"{list(spec.shape)}, got shape {list(shape)}"
                )
            for dim, size in zip(spec.shape, shape, strict=True):
                if isinstance(dim, int):
                    if size != dim:
                        raise ShapeError(
                            f"graph {graph!r} input {spec.name!r} has shape {list(shape)}, expected {list(spec.shape)}"
                        )
                    continue
                if bound.setdefault(dim, size) != size:
                    raise ShapeError(
                        f"graph {graph!r} input {spec.name!r}: {dim} is {size}, but another input has {bound[dim]}"
                    )
        multiple, smallest = self.manifest.pad_multiple, self.manifest.min_size
        if bound.get(BATCH, 1) < 1:
            raise ShapeError(f"graph {graph!r}: batch must be >= 1")
        for dim in (HEIGHT, WIDTH):
            if dim in bound and (bound[dim] % multiple or bound[dim] < smallest):
                raise ShapeError(
                    f"graph {graph!r}: {dim} {bound[dim]} must be a multiple of {multiple} and at least {smallest} "
                    "(pad the frame first)"
                )

    # ------------------------------------------------------------------ backend specifics

    @abstractmethod
    def _open(self, graphs: list[str]) -> None: ...

    @abstractmethod
    def _close(self) -> None: ...

    @abstractmethod
    def _run(self, graph: str, feeds: Mapping[str, Any]) -> dict[str, Any]: ...

    def _device_dtype(self, dtype: str) -> str:
        """The dtype this backend keeps a graph input of `dtype` in on its device (the same,
        except where its engines take another, e.g. int32 for int64 on TensorRT 8.6)."""
        return dtype

    @abstractmethod
    def _describe(self, tensor: Any) -> tuple[tuple[int, ...], str]:
        """(shape, dtype name as in the manifest) of one of this backend's tensors."""

    @abstractmethod
    def upload(self, array: np.ndarray) -> Any:
        """A numpy array as this backend's tensor, on its device."""

    @abstractmethod
    def download(self, tensor: Any) -> np.ndarray:
        """One of this backend's tensors as a numpy array on the host."""

    # ------------------------------------------------------------------ frame transfers
    # The pipeline moves a frame with these, so that a device backend can keep one buffer per
    # slot and wait once per frame; on the host they are plain upload/download.

    def stage_in(self, slot: Hashable, array: np.ndarray) -> Any:
        """`array` as this backend's tensor, in memory kept for `slot` (the same every frame of
        that shape): valid until `stage_in` is called for the same slot again."""
        return self.upload(array)

    def fetch_later(self, slot: Hashable, tensor: Any) -> Fetched:
        """Start copying `tensor` to the host; read it with `.get()` after `finish()`."""
        return Fetched(self.download(tensor))

    def frame_graph(self, body: FrameBody, example: dict[str, np.ndarray]) -> Any:
        """`body` (device inputs -> device outputs) captured as one CUDA graph (a
        `cuda_device.FrameGraph`); BackendUnavailable where this backend cannot capture."""
        raise BackendUnavailable(f"the {self.name} backend on {self.device} cannot capture CUDA graphs")

    def device_frames(self) -> DeviceFrames | None:
        """The native frame kernels on this backend's device and stream (8-bit frames in and
        out, padding, tiles, blending; `runtime/backends/device_frames.py`), or None: the
        pipeline then does that work in NumPy on the host, as every CPU backend does."""
        return None

    @property
    def frame_work(self) -> str:
        """Where the pipeline converts, pads, tiles and blends frames with this backend, in words."""
        return "NumPy on the host"

    def finish(self) -> None:
        """Wait once for everything queued (the frame's one synchronisation)."""
        self._synchronize()

    def _synchronize(self) -> None:
        """Wait for queued device work (for honest timings); nothing to do on the CPU."""
        return None


class Fetched:
    """A tensor on its way to the host: `get()` once the backend has finished the frame.

    `reused`: `host` is a buffer the backend writes again next frame, so `get` copies it;
    `check`: applied to what `get` returns (e.g. the NaN/Inf check of a device backend).
    """

    def __init__(
        self, host: np.ndarray, reused: bool = False, check: Callable[[np.ndarray], np.ndarray] | None = None
    ) -> None:
        self._host, self._reused, self._check = host, reused, check

    def get(self) -> np.ndarray:
        values = self._host.copy() if self._reused else self._host
        return values if self._check is None else self._check(values)
