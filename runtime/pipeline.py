"""The restoration pipeline: padding, the stage loop over the exported graphs, tiling, cropping.

Per stage k (from the manifest's stage plan), with x_0 = y::

    v = gradient_k(x, y)                      graph "stage{k}_gd"
    z = prior(v, noise, stage index)          graph "prior" (zeros when the model has none)
    x = proximal_k(v, z)                      graph "stage{k}_prox"

Padding to the model multiple (reflect, bottom and right) and cropping back happen here,
outside the graphs: in NumPy on the host, or, when the backend offers the native frame kernels
on its CUDA device (`Backend.device_frames()`, `runtime/backends/device_frames.py`), on the
device: `restore_bgr8` then moves 8-bit frames both ways and converts them there (the video loop,
image restoration and the benchmarks hand it the 8-bit frames they decode), and tiles are cut
and blended there (`frame_work` says which path runs). The sampler's starting noise is
drawn once, on the host, by the rule the manifest records (`NOISE_RULE`), and broadcast over the
batch.

Tiling (`tile=N`, or `tile="auto"`: per frame size, tiles only when the manifest's memory
estimate of the whole frame is over `max_memory`, see `runtime/memory_plan.py`) is
stage-synchronous: every stage runs its gradient half tile by tile, the tiles are blended
into a whole-frame v_k, the prior graph runs once on that whole frame (the prior is a global
property of the image, so all tiles share it, exactly as in the whole-frame run), then the
proximal half runs tile by tile and is blended into x_k. Each stage therefore starts from a
seamless frame. What tiling still changes is what the graphs see inside a tile (the
decomposed W X M operator and the channel attention are per tile, not per frame); the
tests measure that cost on real photographs.

Memory: each stage output replaces the one before as soon as the next graph has read it, so
only the input, the current estimate and the running graph's tensors are alive at once.

Progress: `restore(..., progress=callback)` calls `callback(done, total)` after each unit of
work the host has already waited for: each tile blended on the host (its output has been
downloaded) and, on backends whose graphs run synchronously (the CPU), each graph. Nothing is
synchronised for it, so on a GPU a whole frame, or a tiled one blended on the device, reports
only its end.

Two speed-for-quality knobs, per call (`runtime/tradeoffs.py` measures both):

- `stages=k` runs only the first k of the K stages and returns x_k. Every stage output is a
  valid image (the model is trained with a loss on each stage), so a real-time loop can run
  fewer stages when it falls behind (`runtime.video.adaptive.DepthController`).
- `prior_cache=PriorCache(n)` reuses each stage's z (the output of the whole prior graph) from
  the frame that computed it for up to n following frames, unless the frame size changes or a
  cheap scene-change test fires (`runtime.prior_cache`). The cache keeps z on the host (a few
  floats per frame) and uploads it per stage, so it works with every backend. The gradient and
  proximal halves still run on every frame; only the prior graph is skipped.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import numpy as np

from runtime.backends.base import Backend, Fetched
from runtime.backends.device_frames import DeviceFrames
from runtime.backends.options import BackendOptions
from runtime.backends.select import candidate_order, open_backend
from runtime.errors import BackendUnavailable, InferenceError, InputError, ShapeError
from runtime.manifest import Manifest, Stage, load_manifest
from runtime.memory_plan import DEFAULT_MAX_MEMORY, TilePlan, plan_tiles_for_budget
from runtime.pixels import ScaleRule, bgr8_to_rgb_float, pad_nchw, rgb_float_to_bgr8
from runtime.prior_cache import PriorCache
from runtime.tiling import Blender, Tile, check_tiling, plan_tiles

log = logging.getLogger(__name__)

NOISE_RULE = (
    "numpy.random.default_rng(noise_seed).standard_normal(noise_shape, dtype=numpy.float32), broadcast over the batch"
)
DEFAULT_TILE_OVERLAP = 32
AUTO_TILE = "auto"
# progress(done, total): units of work finished so far, out of total for this call.
Progress = Callable[[int, int], None]


def sampler_noise(manifest: Manifest) -> np.ndarray | None:
    """The sampler's starting noise (1, prior_dim) by NOISE_RULE; None when there is no prior."""
    if manifest.sampler is None:
        return None
    return noise_from_seed(manifest.sampler.noise_seed, manifest.sampler.noise_shape)


def noise_from_seed(seed: int, shape: Sequence[int]) -> np.ndarray:
    """NOISE_RULE itself; PyTorch-side evaluation uses it too, so both score the same model."""
    return np.random.default_rng(seed).standard_normal(tuple(shape), dtype=np.float32)


def padded_size(height: int, width: int, multiple: int, min_size: int) -> tuple[int, int]:
    """The graph input size for a frame: up to the next multiple, and at least `min_size`."""
    if height < multiple or width < multiple:
        raise ShapeError(
            f"frame {width}x{height} is smaller than the model multiple {multiple}: "
            f"the model needs at least {multiple}x{multiple} pixels"
        )

    def up(n: int) -> int:
        return max(-(-n // multiple) * multiple, min_size)

    return up(height), up(width)


class Pipeline:
    """Restores frames with one opened backend; use `from_manifest` to build one."""

    def __init__(
        self,
        manifest: Manifest,
        backend: Backend,
        tile: int | str | None = None,
        tile_overlap: int = DEFAULT_TILE_OVERLAP,
        max_memory: int = DEFAULT_MAX_MEMORY,
        cuda_graphs: bool = True,
    ) -> None:
        """`tile`: None or 0 for whole frames, N for N x N tiles, "auto" for tiles only where a
        whole frame's estimated memory is over `max_memory` bytes. `cuda_graphs`: on a CUDA
        backend, replay each whole frame of a given shape as one captured CUDA graph (without a
        prior cache; plain launches where capture is refused, see `launches`)."""
        if tile == AUTO_TILE:
            if max_memory <= 0:
                raise InputError(f"the memory budget must be positive, got {max_memory}")
            check_tiling(max(tile_overlap + manifest.pad_multiple, manifest.min_size), tile_overlap,
                         manifest.pad_multiple, manifest.min_size)  # fmt: skip
        elif isinstance(tile, str):
            raise InputError(f"tile must be a size, 0 or {AUTO_TILE!r}, got {tile!r}")
        elif tile:
            check_tiling(tile, tile_overlap, manifest.pad_multiple, manifest.min_size)
        self.manifest = manifest
        self.backend = backend
        self.tile = tile or None
        self.tile_overlap = tile_overlap
        self.max_memory = max_memory
        self._noise = sampler_noise(manifest)
        self._constants: dict[int, dict[str, Any]] = {}  # per batch size: uploaded noise, stage, zero z
        self.cuda_graphs = cuda_graphs
        self._frame_graphs: dict[tuple[Any, ...], Any] = {}  # (shape, depth) -> FrameGraph, or why not
        self._launches = "no frame yet"

    @classmethod
    def from_manifest(
        cls,
        artifacts: str | os.PathLike[str],
        backend: str | Sequence[str] | None = None,
        device: str | None = None,
        precision: str = "auto",
        threads: int | None = None,
        tile: int | str | None = None,
        tile_overlap: int = DEFAULT_TILE_OVERLAP,
        verify: bool = True,
        max_memory: int = DEFAULT_MAX_MEMORY,
        backend_options: BackendOptions | None = None,
        cuda_graphs: bool = True,
    ) -> Pipeline:
        """Read `<artifacts>/manifest.json` (checking every file's sha256 when `verify`) and
        open the first available backend among `backend` (a name, names in order of preference,
        or None for the default order: TensorRT, ONNX Runtime, torch; GPU before CPU; on the CPU
        the backend the manifest's `cpu_timing` measured fastest first).
        `precision` is auto, fp32, fp16 or int8 (see Manifest.precision_for). `backend_options`
        (e.g. {"io_binding": True}) go to the backend that has them; setting one leaves out the
        candidates that do not (runtime/backends/options.py). `cuda_graphs`: see `__init__`."""
        manifest = load_manifest(artifacts, verify=verify)
        names = [backend] if isinstance(backend, str) else backend
        fastest_cpu = manifest.cpu_timing.fastest() if manifest.cpu_timing else None
        candidates = candidate_order(names, device, fastest_cpu)
        opened = open_backend(manifest, candidates, precision, threads, backend_options)
        try:
            return cls(manifest, opened, tile, tile_overlap, max_memory, cuda_graphs)
        except BaseException:
            opened.close()
            raise

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ frames

    @property
    def stage_count(self) -> int:
        """K, the number of unfolding stages; `stages=` takes 1..K."""
        return len(self.manifest.stages)

    def tile_plan(self, height: int, width: int, batch: int = 1) -> TilePlan:
        """How a frame of height x width (before padding) runs: whole or in tiles, with the
        memory estimates behind an automatic choice."""
        h, w = padded_size(height, width, self.manifest.pad_multiple, self.manifest.min_size)
        return self._padded_tile_plan(batch, h, w)

    def restore(
        self,
        image: np.ndarray,
        stages: int | None = None,
        prior_cache: PriorCache | None = None,
        progress: Progress | None = None,
    ) -> np.ndarray:
        """Restore one float32 HxWx3 RGB frame in [0, 1]; returns the same shape, clipped to [0, 1].

        `stages`: run only the first `stages` of the K stages (1..K; None: all) and return x_stages.
        `prior_cache`: reuse the priors of an earlier frame while the cache says they still hold.
        `progress`: called as progress(done, total) as the work goes (see the module docstring)."""
        if not isinstance(image, np.ndarray) or image.ndim != 3:
            raise ShapeError(f"expected an HxWx3 image, got {getattr(image, 'shape', type(image).__name__)}")
        return self.restore_batch(image[None], stages, prior_cache, progress)[0]

    def restore_batch(
        self,
        frames: np.ndarray,
        stages: int | None = None,
        prior_cache: PriorCache | None = None,
        progress: Progress | None = None,
    ) -> np.ndarray:
        """Restore float32 NxHxWx3 RGB frames in [0, 1] (one size); returns NxHxWx3 in [0, 1].
        `stages`, `prior_cache` and `progress` as in `restore`."""
        if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[3] != 3:
            raise ShapeError(f"expected NxHxWx3 frames, got {getattr(frames, 'shape', type(frames).__name__)}")
        if frames.dtype != np.float32:
            raise InputError(f"frames must be float32 in [0, 1], got {frames.dtype}")
        if frames.shape[0] < 1:
            raise ShapeError("empty batch")
        plan = self._stage_plan(stages)  # before any work, so a bad count fails fast
        n, h, w, _ = frames.shape
        height, width = padded_size(h, w, self.manifest.pad_multiple, self.manifest.min_size)
        tile = self._tile_for(n, height, width)
        if tile is not None and prior_cache is None and self.backend.device_frames() is None:
            # Tiles are cut from the caller's frames, padding included: no frame-sized NCHW copy.
            def y_tile(t: Tile) -> np.ndarray:
                return _hwc_tile(frames, t, height, width)

            out = self._run_tiled(y_tile, (n, 3, height, width), plan, None, None, tile, progress)
        else:
            y = pad_nchw(np.ascontiguousarray(frames.transpose(0, 3, 1, 2)), height, width)
            out = self.run(y, len(plan), prior_cache, progress)
            del y  # the output below is one more frame: let the input go first
        out = out[:, :, :h, :w].transpose(0, 2, 3, 1)
        return np.clip(out, 0.0, 1.0, out=np.empty(out.shape, dtype=np.float32))

    def run(
        self,
        y: np.ndarray,
        stages: int | None = None,
        prior_cache: PriorCache | None = None,
        progress: Progress | None = None,
    ) -> np.ndarray:
        """The model on padded input (N, 3, H, W), H and W valid graph sizes; unclipped output.
        `stages`, `prior_cache` and `progress` as in `restore`."""
        if y.ndim != 4 or y.shape[1] != 3:
            raise ShapeError(f"expected (N, 3, H, W), got {y.shape}")
        plan = self._stage_plan(stages)
        y = np.ascontiguousarray(y, dtype=np.float32)
        if self._noise is None:
            prior_cache = None  # no prior graph: z is zeros, nothing to reuse
        cached = None
        if prior_cache is not None:
            cached = prior_cache.lookup(y, [s.stage for s in plan if s.prior is not None])
        tile = self._tile_for(y.shape[0], y.shape[2], y.shape[3])
        b = self.backend
        frames = b.device_frames()
        if tile is not None and frames is None:

            def y_tile(t: Tile) -> np.ndarray:
                return y[:, :, t.rows, t.cols]

            return self._run_tiled(y_tile, y.shape, plan, cached, prior_cache, tile, progress)
        # Per-graph progress only where run() returns after the work is done: never a device sync.
        report = progress if b.runs_synchronously and tile is None else None
        total = self._work_units(plan, y.shape[2], y.shape[3], tile)
        if prior_cache is None and tile is None:

            def body(inputs: dict[str, Any]) -> dict[str, Any]:
                return {"x": self._stage_loop(inputs["y"], y.shape[0], plan, None, None, None)}

            captured = self._run_captured({"y": y}, len(plan), body)
            if captured is not None:
                if progress is not None:
                    progress(total, total)
                return captured["x"]
        # One wait per frame: the input goes in through a kept buffer, the priors to be cached
        # and the output come back through copies queued on the device, read after `finish`.
        fetched: dict[int, Fetched] | None = {} if prior_cache is not None else None
        if tile is None:
            x = self._stage_loop(b.stage_in("y", y), y.shape[0], plan, cached, fetched, report)
        else:
            assert frames is not None
            x = self._tiled_on_device(frames, b.stage_in("y", y), y.shape, plan, cached, fetched, tile)
        out = b.fetch_later("x", x)
        del x
        b.finish()
        _store_priors(prior_cache, fetched)
        if progress is not None and report is None:
            progress(total, total)
        return out.get()

    def restore_bgr8(
        self,
        frame: np.ndarray,
        stages: int | None = None,
        prior_cache: PriorCache | None = None,
        progress: Progress | None = None,
        scale_rule: ScaleRule = ScaleRule.MUL_RECIPROCAL,
    ) -> np.ndarray:
        """Restore one 8-bit BGR frame (HxWx3 uint8, as OpenCV decodes it); returns the same.

        With the native frame kernels on a CUDA backend (`frame_work` says which) the frame
        crosses to the device as bytes and is converted, padded, tiled, blended, cropped and
        quantised there, with one wait per frame (`runtime/backends/device_frames.py`).
        Elsewhere it takes the NumPy path, `rgb_float_to_bgr8(restore(bgr8_to_rgb_float(frame,
        scale_rule)))`, which the kernels reproduce bit for bit (tests/runtime/test_frame_kernels.py).
        `scale_rule`: how the samples become [0, 1], as the frame's float copy would have been made
        (`runtime/pixels.py`): the video path's multiplication (the default) or still images'
        division (`ScaleRule.DIVIDE`). NaN/Inf: where the backend checks its outputs (TensorRT's
        `check_finite`, on by default), the device path raises the InferenceError TensorRT's float
        downloads raise when the restored frame holds NaN or Inf: the kernel that makes the bytes
        counts them, and the count comes back in the frame's one wait. Unchecked, NaN becomes 0
        and Inf 0 or 255.
        `stages`, `prior_cache` and `progress` as in `restore`."""
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            got = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
            raise InputError(f"expected an 8-bit HxWx3 BGR frame, got {got}")
        frames = self.backend.device_frames()
        if frames is None:
            rgb = bgr8_to_rgb_float(frame, scale_rule)
            return rgb_float_to_bgr8(self.restore(rgb, stages, prior_cache, progress))
        plan = self._stage_plan(stages)
        h, w = frame.shape[:2]
        height, width = padded_size(h, w, self.manifest.pad_multiple, self.manifest.min_size)
        tile = self._tile_for(1, height, width)
        total = self._work_units(plan, height, width, tile)
        if self._noise is None:
            prior_cache = None  # no prior graph: z is zeros, nothing to reuse
        if prior_cache is None and tile is None:

            def body(inputs: dict[str, Any]) -> dict[str, Any]:
                y = frames.to_planar(inputs["bgr8"], height, width, scale_rule)
                return frames.bgr8_outputs(self._stage_loop(y, 1, plan, None, None, None), h, w)

            captured = self._run_captured({"bgr8": frame}, len(plan), body, variant=scale_rule)
            if captured is not None:
                if progress is not None:
                    progress(total, total)
                return frames.bgr8_result(captured)
        cached, fetched = None, None
        if prior_cache is not None:
            # The cache's scene test reads the padded frame on the host: the C reference makes it,
            # bit for bit the frame the NumPy path would look up.
            padded = frames.planar_on_host(frame, height, width, scale_rule)[None]
            cached = prior_cache.lookup(padded, [s.stage for s in plan if s.prior is not None])
            fetched = {}
        y = frames.planar_from_bgr8(frame, height, width, scale_rule)
        if tile is None:
            x = self._stage_loop(y, 1, plan, cached, fetched, None)
        else:
            x = self._tiled_on_device(frames, y, (1, 3, height, width), plan, cached, fetched, tile)
        out = frames.fetch_bgr8(x, h, w)
        del x, y
        self.backend.finish()
        _store_priors(prior_cache, fetched)
        if progress is not None:
            progress(total, total)
        return out.get()  # a copy: the page-locked buffer is written again by the next frame

    @property
    def launches(self) -> str:
        """How the last whole frame ran on the device: "cuda graph", or "plain launches" and why."""
        return self._launches

    @property
    def frame_work(self) -> str:
        """Where frames are converted, padded, tiled, blended and cropped: the native CUDA
        kernels on the device, or NumPy on the host (and why)."""
        return self.backend.frame_work

    # ------------------------------------------------------------------ internals

    def _stage_loop(
        self,
        y_dev: Any,
        batch: int,
        plan: tuple[Stage, ...],
        cached: dict[int, np.ndarray] | None,
        fetched: dict[int, Fetched] | None,
        report: Progress | None,
    ) -> Any:
        """The stages on a whole frame already on the backend; the estimate x stays there."""
        b = self.backend
        x, total = y_dev, 3 * len(plan)
        for done, stage in enumerate(plan, start=1):
            v = b.run(stage.gradient, {"x": x, "y": y_dev})["v"]
            del x  # the previous estimate is read; free it before the next graphs run
            z = self._stage_prior(stage, v, batch, cached, fetched)
            x = b.run(stage.proximal, {"v": v, "z": z})["x"]
            del v, z
            if report is not None:
                report(3 * done, total)
        return x

    def _run_captured(
        self,
        inputs: dict[str, np.ndarray],
        depth: int,
        body: Callable[[dict[str, Any]], dict[str, Any]],
        variant: Hashable = None,
    ) -> dict[str, np.ndarray] | None:
        """`body` (device inputs -> device outputs) replayed as one CUDA graph, captured on the
        first frame of these input shapes, this depth and this `variant` (whatever else `body`
        bakes into the graph, e.g. the scale rule of 8-bit frames); or None: plain launches, with
        the reason in `launches` (logged once per shape)."""
        if not self.cuda_graphs or self.backend.device != "cuda":
            self._launches = "plain launches (CUDA graphs off)" if not self.cuda_graphs else "plain launches (CPU)"
            return None
        key = (tuple((name, a.shape, a.dtype.str) for name, a in sorted(inputs.items())), depth, variant)
        if key not in self._frame_graphs:
            try:
                self._frame_graphs[key] = self.backend.frame_graph(body, inputs)
            except (BackendUnavailable, InferenceError, RuntimeError) as exc:  # capture refused
                self._frame_graphs[key] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            entry = self._frame_graphs[key]
            how = "one CUDA graph" if not isinstance(entry, str) else f"plain launches ({entry})"
            shapes = ", ".join(f"{name} {list(a.shape)}" for name, a in sorted(inputs.items()))
            log.info("frames of %s through %d stages run as %s", shapes, depth, how)
        entry = self._frame_graphs[key]
        if isinstance(entry, str):
            self._launches = f"plain launches ({entry})"
            return None
        self._launches = "cuda graph"
        return entry(inputs)

    def _stage_plan(self, stages: int | None) -> tuple[Stage, ...]:
        """The first `stages` stages of the manifest's plan (all of them for None)."""
        if stages is None:
            return self.manifest.stages
        count = self.stage_count
        if isinstance(stages, bool) or not isinstance(stages, (int, np.integer)):
            raise InputError(f"stages must be an integer between 1 and {count}, got {stages!r}")
        if not 1 <= stages <= count:
            raise InputError(f"stages must be between 1 and {count} (this model has {count} stages), got {stages}")
        return self.manifest.stages[: int(stages)]

    def _padded_tile_plan(self, batch: int, height: int, width: int) -> TilePlan:
        """`tile_plan` for a batch already padded to height x width."""
        if self.tile == AUTO_TILE:
            return plan_tiles_for_budget(self.manifest, batch, height, width, self.max_memory, self.tile_overlap)
        return TilePlan(self.tile if self.tile and (height > self.tile or width > self.tile) else None, None)

    def _tile_for(self, batch: int, height: int, width: int) -> int | None:
        """The tile size for a padded batch of this size, None for whole frames."""
        return self._padded_tile_plan(batch, height, width).tile

    def _batch_constants(self, batch: int) -> dict[str, Any]:
        """Noise, stage indices and the zero prior for a batch size, uploaded once and reused."""
        if batch not in self._constants:
            b, m = self.backend, self.manifest
            entry: dict[str, Any] = {}
            if self._noise is not None:
                entry["noise"] = b.upload(np.repeat(self._noise, batch, axis=0))
                for stage in m.stages:
                    entry[f"stage{stage.stage}"] = b.upload(np.full((batch,), stage.prior_stage_index, dtype=np.int64))
            else:
                entry["zeros"] = b.upload(np.zeros((batch, m.prior_dim), dtype=np.float32))
            self._constants[batch] = entry
        return self._constants[batch]

    def _prior(self, stage: Stage, v: Any, batch: int) -> Any:
        constants = self._batch_constants(batch)
        if stage.prior is None:
            return constants["zeros"]
        feeds = {"v": v, "noise": constants["noise"], "stage": constants[f"stage{stage.stage}"]}
        return self.backend.run(stage.prior, feeds)["z"]

    def _stage_prior(
        self,
        stage: Stage,
        v: Any,
        batch: int,
        cached: dict[int, np.ndarray] | None,
        fetched: dict[int, Fetched] | None,
    ) -> Any:
        """z for one stage: the cached prior on a cache hit, else the prior graph. On a miss
        with a cache (`fetched` not None), z's copy to the host is queued into `fetched`: the
        prior graph's output buffer is the same for every stage, so it is copied before the next
        stage's prior overwrites it, and read once the frame is finished."""
        if stage.prior is None:
            return self._prior(stage, v, batch)
        if cached is not None:
            return self.backend.stage_in(("z", stage.stage), cached[stage.stage])
        z = self._prior(stage, v, batch)
        if fetched is not None:
            fetched[stage.stage] = self.backend.fetch_later(("z", stage.stage), z)
        return z

    def _run_tiled(
        self,
        y_tile: Callable[[Tile], np.ndarray],
        shape: tuple[int, ...],
        plan: tuple[Stage, ...],
        cached: dict[int, np.ndarray] | None,
        prior_cache: PriorCache | None,
        tile: int,
        progress: Progress | None,
    ) -> np.ndarray:
        """Stage-synchronous tiling: tiles for the two halves, the prior on the whole frame.

        `y_tile(t)` is the padded input's tile t (N, 3, h, w). Every graph call hands its working
        memory back when it ends (`Backend.returning_memory`): the whole-frame prior needs far
        more than a tile, and a pool kept at that size would stay beside the whole-frame arrays.
        Progress counts tiles (downloaded, so finished) and each stage's prior."""
        b = self.backend
        n, c, h, w = shape
        tiles = plan_tiles(h, w, tile, self.tile_overlap, self.manifest.pad_multiple)
        total, done = len(plan) * (2 * len(tiles) + 1), 0

        def step() -> None:
            nonlocal done
            done += 1
            if progress is not None:
                progress(done, total)

        x: np.ndarray | None = None  # None: stage 1 starts from y
        fetched: dict[int, Fetched] | None = {} if prior_cache is not None else None
        with b.returning_memory():
            for stage in plan:
                blend = Blender(n, c, h, w, self.tile_overlap)
                for t in tiles:
                    blend.add(t, b.download(b.run(stage.gradient, self._gradient_feeds(x, y_tile, t))["v"]))
                    step()
                x = None  # read by every tile (no view of it is left); the next comes from the proximal tiles
                v = blend.result()
                del blend
                # A cache hit skips the prior graph, so the whole-frame v need not be uploaded.
                z = self._stage_prior(stage, None if cached is not None else b.upload(v), n, cached, fetched)
                step()
                blend = Blender(n, c, h, w, self.tile_overlap)
                for t in tiles:
                    blend.add(
                        t, b.download(b.run(stage.proximal, {"v": b.upload(v[:, :, t.rows, t.cols]), "z": z})["x"])
                    )
                    step()
                del v, z
                x = blend.result()
                del blend
        b.finish()
        _store_priors(prior_cache, fetched)
        assert x is not None
        return x

    def _tiled_on_device(
        self,
        frames: DeviceFrames,
        y_dev: Any,
        shape: tuple[int, ...],
        plan: tuple[Stage, ...],
        cached: dict[int, np.ndarray] | None,
        fetched: dict[int, Fetched] | None,
        tile: int,
    ) -> Any:
        """`_run_tiled` with the whole frame on the device: tiles are cut from the device tensors
        and their outputs blended there, all queued on the backend's stream, so the frame waits
        once (at its output) instead of once per tile. Returns the device estimate x."""
        b = self.backend
        n, c, h, w = shape
        tiles = plan_tiles(h, w, tile, self.tile_overlap, self.manifest.pad_multiple)
        x = None  # None: stage 1 starts from y
        with b.returning_memory():
            for stage in plan:
                blend = frames.blender("v", (n, c, h, w), self.tile_overlap)
                for t in tiles:
                    y_t = frames.tile("y", y_dev, t)
                    x_t = y_t if x is None else frames.tile("x", x, t)
                    blend.add(t, b.run(stage.gradient, {"x": x_t, "y": y_t})["v"])
                v = blend.result()
                z = self._stage_prior(stage, v, n, cached, fetched)
                blend = frames.blender("x", (n, c, h, w), self.tile_overlap)
                for t in tiles:
                    blend.add(t, b.run(stage.proximal, {"v": frames.tile("v", v, t), "z": z})["x"])
                x = blend.result()
        return x

    def _work_units(self, plan: tuple[Stage, ...], height: int, width: int, tile: int | None) -> int:
        """What `progress` counts to for a frame: 3 graphs per stage whole, else 2 per tile and the prior."""
        if tile is None:
            return 3 * len(plan)
        return len(plan) * (2 * len(plan_tiles(height, width, tile, self.tile_overlap, self.manifest.pad_multiple)) + 1)

    def _gradient_feeds(self, x: np.ndarray | None, y_tile: Callable[[Tile], np.ndarray], tile: Tile) -> dict[str, Any]:
        """Tile `tile` of x (of y when x is None: stage 1) and y, uploaded. A function of its
        own so that no view of the whole-frame x outlives the loop that reads it."""
        y_t = y_tile(tile)
        x_t = y_t if x is None else x[:, :, tile.rows, tile.cols]
        return {"x": self.backend.upload(x_t), "y": self.backend.upload(y_t)}


def _store_priors(prior_cache: PriorCache | None, fetched: dict[int, Fetched] | None) -> None:
    """Hand the priors a frame computed to the cache, once the backend has finished the frame."""
    if prior_cache is not None and fetched is not None:
        for stage, z in fetched.items():
            prior_cache.store(stage, z.get())


def _hwc_tile(frames: np.ndarray, tile: Tile, height: int, width: int) -> np.ndarray:
    """Tile `tile` of NxHxWx3 `frames` reflect-padded (bottom and right) to height x width, as
    a contiguous (N, 3, h, w) array: the same values as slicing `pad_nchw` of the whole frame."""
    _, h, w, _ = frames.shape
    rows = _padded_index(tile.top, tile.height, h, height)
    cols = _padded_index(tile.left, tile.width, w, width)
    patch = frames[:, rows][:, :, cols]  # a view where both are slices, a copy of the tile otherwise
    return np.ascontiguousarray(patch.transpose(0, 3, 1, 2))


def _padded_index(start: int, length: int, size: int, padded: int) -> slice | np.ndarray:
    """Indices into an axis of `size` for [start, start + length) of it reflect-padded to `padded`."""
    if start + length <= size:
        return slice(start, start + length)
    return np.pad(np.arange(size), (0, padded - size), mode="reflect")[start : start + length]
