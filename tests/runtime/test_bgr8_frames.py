"""8-bit frames end to end: the video loop and image restoration hand the pipeline the bytes they
decode (`Pipeline.restore_bgr8`), and write the bytes the float path writes.

On the CPU (ONNX Runtime, the tiny model) `restore_bgr8` converts once, inside, for the float
pipeline; every output here is compared byte for byte with the float path it replaces, computed
in the test: `read_image` / `Frame.rgb`, `Pipeline.restore`, `write_image` / the float sinks.
Real frames (Vid4 walk), real files, the real loop; a spy records which pipeline entry ran.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime.image_io import Image, read_image, write_image
from runtime.image_jobs import restore_image_file
from runtime.pipeline import Pipeline
from runtime.prior_cache import PriorCache
from runtime.video.adaptive import DepthController
from runtime.video.loop import run_video
from runtime.video.restore_video import FrameRestorer
from runtime.video.sinks import ImageSequenceSink, SideBySide, VideoFileSink
from runtime.video.sources import open_source
from runtime.video.wrappers import DelayedProcess
from tests.runtime.video_files import decoded_frames

SIZE = (64, 48)  # (width, height): small, so the tiny model restores quickly


@pytest.fixture
def pipeline(export_tiny) -> Pipeline:
    with Pipeline.from_manifest(export_tiny().artifacts, backend="onnxruntime", device="cpu", threads=1) as opened:
        yield opened


@pytest.fixture
def bgr8_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    """The frame shapes `Pipeline.restore_bgr8` was called with (the real call still runs)."""
    calls: list[tuple[int, ...]] = []
    real = Pipeline.restore_bgr8

    def recorded(self, frame, *args, **kwargs):
        calls.append(frame.shape)
        return real(self, frame, *args, **kwargs)

    monkeypatch.setattr(Pipeline, "restore_bgr8", recorded)
    return calls


def _small(clean: np.ndarray, count: int) -> list[np.ndarray]:
    """`count` real frames at SIZE, as OpenCV holds them (BGR)."""
    return [cv2.cvtColor(cv2.resize(f, SIZE, interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2BGR) for f in clean[:count]]


def _write(path: Path, pixels: np.ndarray) -> Path:
    ok, buffer = cv2.imencode(path.suffix, pixels)
    assert ok
    path.write_bytes(buffer.tobytes())
    return path


# --------------------------------------------------------------------------- images


IMAGES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "bgr.png": lambda bgr: bgr,
    "bgra.png": lambda bgr: np.dstack([bgr, np.arange(bgr[:, :, 0].size, dtype=np.uint8).reshape(bgr.shape[:2])]),
    "bgr.jpg": lambda bgr: bgr,
    "grey.png": lambda bgr: cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY),
    "bgr16.png": lambda bgr: bgr.astype(np.uint16) * 257 + 3,
}
EIGHT_BIT_COLOUR = ("bgr.png", "bgra.png", "bgr.jpg")


def test_8bit_colour_images_are_restored_from_their_bytes_into_the_float_paths_bytes(
    pipeline: Pipeline, bgr8_calls: list, clean: np.ndarray, tmp_path: Path
) -> None:
    bgr = _small(clean, 1)[0]
    for name, make in IMAGES.items():
        source = _write(tmp_path / name, make(bgr))
        targets = [tmp_path / f"restored-{name}"]
        if name == "bgr.png":
            targets.append(tmp_path / "restored-bgr-as.jpg")  # another format: the same pixels, encoded
        for target in targets:
            restore_image_file(pipeline, source, target)
            image = read_image(source)  # the float path, as restore_image_file ran it before
            expected = tmp_path / f"expected-{target.name}"
            write_image(expected, Image(pipeline.restore(image.rgb), image.alpha, image.bit_depth, image.grey))
            assert target.read_bytes() == expected.read_bytes(), target.name
    height, width = bgr.shape[:2]
    assert bgr8_calls == [(height, width, 3)] * (len(EIGHT_BIT_COLOUR) + 1)  # grey and 16-bit keep floats


def test_restore_image_file_tells_the_plan_by_size(pipeline: Pipeline, clean: np.ndarray, tmp_path: Path) -> None:
    source = _write(tmp_path / "in.png", _small(clean, 1)[0])
    told = []
    plan = restore_image_file(pipeline, source, tmp_path / "out.png", on_plan=lambda w, h, p: told.append((w, h, p)))
    assert told == [(*SIZE, plan)]


# --------------------------------------------------------------------------- video


@pytest.fixture
def clip_sources(clean: np.ndarray, tmp_path: Path, encode_clip) -> dict[str, str]:
    """The same 5 frames as a lossless video file (scaled as video) and as an image sequence
    (scaled as still images), whose third image is 16-bit (it keeps the float path)."""
    frames = _small(clean, 5)
    video = encode_clip(tmp_path / "clip.mkv", np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in frames]), "FFV1")
    folder = tmp_path / "sequence"
    folder.mkdir()
    for i, frame in enumerate(frames):
        _write(folder / f"{i:03d}.png", frame.astype(np.uint16) * 257 if i == 2 else frame)
    return {"video file": str(video), "image sequence": str(folder)}


@pytest.mark.parametrize("kind", ["video file", "image sequence"])
def test_the_loop_restores_decoded_bytes_and_writes_the_float_paths_bytes(
    pipeline: Pipeline, bgr8_calls: list, clip_sources: dict[str, str], tmp_path: Path, kind: str
) -> None:
    def run(process, name: str) -> Path:
        out = tmp_path / name
        source = open_source(clip_sources[kind])
        sinks = [ImageSequenceSink(out / "frames"), SideBySide(ImageSequenceSink(out / "pairs"))]
        sinks.append(VideoFileSink(out.with_suffix(".mkv"), source.fps, source.size))  # FFV1: lossless
        run_video(source, process, sinks, progress=False)
        return out

    depth = DepthController(max_stages=pipeline.stage_count, budget_s=1.0)
    depth.stages = 1  # fewer stages than the model has, and a prior cache: both still apply
    restorer = FrameRestorer(pipeline, depth=depth, prior_cache=PriorCache(max_frames=2))
    got = run(DelayedProcess(restorer, 0.0), "bytes")
    assert len(bgr8_calls) == (5 if kind == "video file" else 4)  # the 16-bit image took the float path

    float_cache = PriorCache(max_frames=2)
    expected = run(lambda rgb: pipeline.restore(rgb, stages=1, prior_cache=float_cache), "floats")
    assert restorer.prior_cache.to_dict() == float_cache.to_dict()
    for folder in ("frames", "pairs"):
        names = sorted(p.name for p in (expected / folder).iterdir())
        assert names == sorted(p.name for p in (got / folder).iterdir()) and len(names) == 5
        for name in names:
            assert (got / folder / name).read_bytes() == (expected / folder / name).read_bytes(), (folder, name)
    mine, theirs = decoded_frames(got.with_suffix(".mkv")), decoded_frames(expected.with_suffix(".mkv"))
    assert mine and len(mine) == len(theirs)
    for a, b in zip(mine, theirs, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_float_process_still_gets_float_frames(clip_sources: dict[str, str], tmp_path: Path) -> None:
    seen = []

    def process(rgb: np.ndarray) -> np.ndarray:
        seen.append(rgb.dtype)
        return rgb

    run_video(open_source(clip_sources["video file"]), DelayedProcess(process, 0.0), [], progress=False)
    assert seen == [np.float32] * 5
