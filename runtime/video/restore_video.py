"""Video restoration as `runtime/restore.py` runs it: which inputs are videos, the sinks an
OUTPUT path asks for, and the per-frame call into the pipeline (with adaptive depth and prior
reuse when asked for).

What is a video input: anything `open_source` takes that is not a still image, i.e. a video
file, a camera index, a URL, a GStreamer pipeline, a printf or glob pattern; a folder only when
the run is a video run anyway (OUTPUT is a video file, or a video-only flag was given),
because a folder of photos restored into a folder keeps its names in image mode.

`restore_video_file` is the plain path (every frame, in order, no preview) that runtime/batch.py
runs per video: the same source, restorer, sinks and loop as restore.py, so the same bytes, but
the file appears under its name only when every frame was restored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from runtime.atomic_io import discard, temporary_sibling
from runtime.errors import InputError
from runtime.image_io import IMAGE_EXTENSIONS
from runtime.pipeline import Pipeline
from runtime.pixels import ScaleRule
from runtime.prior_cache import PriorCache
from runtime.video.adaptive import DepthController
from runtime.video.loop import END_OF_INPUT, Controller, VideoSummary, run_video
from runtime.video.sinks import (
    FOURCC_BY_EXTENSION,
    FrameSink,
    ImageSequenceSink,
    PreviewSink,
    SideBySide,
    VideoFileSink,
)
from runtime.video.sources import FrameSource, open_source

# How a folder OUTPUT names its frames.
SEQUENCE_PATTERN = "%06d.png"
_PRINTF = re.compile(r"%0?\d*d")
_PATTERN_CHARACTERS = ("%", "*", "?", "[")


def is_video_path(path: Path) -> bool:
    """Whether `path` names a video file by its extension (the containers the sinks can write)."""
    return path.suffix.lower() in FOURCC_BY_EXTENSION


def is_video_input(spec: str, output: Path | None, video_run: bool) -> bool:
    """Whether INPUT `spec` is restored as a video (see the module docstring).

    `video_run`: a video-only flag was given. A missing path with an image extension stays an
    image, so that a mistyped photo name gets the image tool's "no such file" message.
    """
    path = Path(spec)
    if path.is_dir():
        return video_run or (output is not None and is_video_path(output))
    if path.is_file():
        return path.suffix.lower() not in IMAGE_EXTENSIONS
    is_pattern = any(c in path.name for c in _PATTERN_CHARACTERS)
    return is_pattern or path.suffix.lower() not in IMAGE_EXTENSIONS


def _same_path(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


def make_sinks(
    output: Path | None,
    source: FrameSource,
    input_spec: str,
    side_by_side: bool,
    preview: bool,
    overwrite: bool = False,
) -> list[FrameSink]:
    """The sinks for OUTPUT: a video file (by extension, at the source's frame rate), a folder
    of `SEQUENCE_PATTERN` images, or `folder/%06d.png`-style pattern; plus the preview window.

    Raises `InputError` for an OUTPUT that cannot be used, or that exists (a video file, or
    frames the pattern names) unless `overwrite`; nothing is left open then.
    """
    size = SideBySide.output_size(source.size) if side_by_side else source.size
    sinks: list[FrameSink] = []
    try:
        if output is not None:
            input_path = Path(input_spec)
            if input_path.exists() and _same_path(output, input_path):
                raise InputError(f"{output}: the output is the input; choose another path so the original is kept")
            sequence = None
            if output.is_dir() or not output.suffix:
                sequence = (output, SEQUENCE_PATTERN)
            elif _PRINTF.search(output.name):
                sequence = (output.parent, output.name)
            elif output.suffix.lower() in IMAGE_EXTENSIONS:
                raise InputError(
                    f"{output}: a video is restored into a video file ({', '.join(FOURCC_BY_EXTENSION)}), "
                    f"a folder, or a numbered pattern such as frames/{SEQUENCE_PATTERN}; not one image"
                )
            if sequence is None:
                sinks.append(VideoFileSink(output, source.fps, size, overwrite=overwrite))
            else:
                folder, pattern = sequence
                if input_path.is_dir() and _same_path(folder, input_path):
                    raise InputError(
                        f"{output}: the output folder is the input folder; choose another so originals are kept"
                    )
                sinks.append(ImageSequenceSink(folder, pattern, overwrite=overwrite))
        if preview:
            sinks.append(PreviewSink())
    except BaseException:
        for sink in sinks:
            sink.close()
        raise
    return [SideBySide(s) for s in sinks] if side_by_side else sinks


@dataclass
class FrameRestorer:
    """The per-frame process of `run_video`: one pipeline call per frame.

    It takes the 8-bit BGR frames the source decoded (`takes_bgr8`): `process_bgr8` is
    `pipeline.restore_bgr8`, which moves bytes to a CUDA backend with the native frame kernels
    and elsewhere converts once, inside, for the float pipeline, giving the bytes the float path
    writes (runtime/video/wrappers.py). Frames that come as floats only go through `__call__`,
    `pipeline.restore`. `depth` (a `runtime.video.adaptive.DepthController`) picks the number of
    unfolding stages per frame from the latencies the loop reports to it; `prior_cache` (a
    `runtime.prior_cache.PriorCache`) lets frames reuse a recent frame's prior. Both are
    optional and only passed to the pipeline when set. Runs in the loop's inference thread only.
    """

    pipeline: Pipeline
    depth: DepthController | None = None
    prior_cache: PriorCache | None = None
    takes_bgr8: ClassVar[bool] = True

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        return self.pipeline.restore(rgb, **self._knobs())

    def process_bgr8(self, bgr8: np.ndarray, scale_rule: ScaleRule) -> np.ndarray:
        return self.pipeline.restore_bgr8(bgr8, scale_rule=scale_rule, **self._knobs())

    def _knobs(self) -> dict[str, Any]:
        """The stage count and prior cache of this frame, where they are set."""
        knobs: dict[str, Any] = {}
        if self.depth is not None:
            knobs["stages"] = self.depth.stages
        if self.prior_cache is not None:
            knobs["prior_cache"] = self.prior_cache
        return knobs

    @property
    def controller(self) -> Controller | None:
        """What the loop must tell about latencies (the depth controller), if anything."""
        return self.depth

    def summary_lines(self) -> list[str]:
        """Lines for the run summary: frames per stage count, prior reuse counts."""
        return [part.format() for part in (self.depth, self.prior_cache) if part is not None]


def make_depth_controller(pipeline: Pipeline, budget_s: float) -> DepthController:
    """An adaptive-depth controller for `pipeline`: at most every stage, `budget_s` per frame."""
    return DepthController(max_stages=len(pipeline.manifest.stages), budget_s=budget_s)


def make_prior_cache(max_frames: int, scene_threshold: float | None) -> PriorCache:
    """A prior cache reused for up to `max_frames` frames or until a scene change (the cache's
    own default threshold when `scene_threshold` is None)."""
    if scene_threshold is None:
        return PriorCache(max_frames=max_frames)
    return PriorCache(max_frames=max_frames, scene_threshold=scene_threshold)


def restore_video_file(pipeline: Pipeline, source: Path, target: Path) -> VideoSummary:
    """Restore every frame of the video file `source` into the video file `target` (codec by its
    extension, the source's frame rate), replacing it; the run's summary.

    Whole or not at all: the frames go to a hidden file next to `target`, renamed to `target`
    only when the video was read to its end without a decode error. A cut-off or damaged video,
    an interruption or an error leaves `target` as it was and raises InputError (the others
    raise their own error)."""
    staging = temporary_sibling(target)
    staging = staging.with_name(staging.name + target.suffix)  # FFmpeg picks the container from it
    try:
        frames = open_source(source)
        try:
            sinks = make_sinks(staging, frames, str(source), side_by_side=False, preview=False)
        except BaseException:
            frames.close()  # run_video owns it only once called
            raise
        summary = run_video(frames, FrameRestorer(pipeline), sinks, progress=False)
        if summary.end_reason != END_OF_INPUT:
            raise InputError(f"{source}: {summary.end_reason} after {summary.frames_out} frames")
        if summary.decode_errors:
            raise InputError(f"{source}: {summary.decode_errors} frame(s) could not be read (cut off or damaged)")
        if summary.frames_out == 0:
            raise InputError(f"{source}: no frame could be read")
        try:
            staging.replace(target)
        except OSError as exc:
            raise InputError(f"{target}: cannot be written ({exc.strerror or exc})") from exc
    finally:
        discard(staging)
    return summary
