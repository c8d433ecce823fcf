"""runtime/restore.py on videos: a real clip (Vid4 walk) encoded, degraded, restored through the CLI.

The clean frames are downscaled to 160x120, degraded with seeded Gaussian noise (sigma 25) and
encoded with OpenCV; `main([...])` restores them with the `edge` model (quality) or the tiny
random model (where the model does not matter), through the real three-thread loop and the
real ONNX Runtime backend. The slow device is the real pipeline behind a sleep
(`--simulate-slowdown-ms`, i.e. `DelayedProcess`); Ctrl-C is a real SIGINT to a real process.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from runtime.metrics import psnr
from runtime.restore import EXIT_INTERRUPTED, main

REPO = Path(__file__).resolve().parents[2]
SIZE = (160, 120)  # (width, height)
FRAMES = 12
FPS = 24.0
SIGMA = 25.0 / 255.0


@pytest.fixture(scope="module")
def clean_small(clean: np.ndarray) -> np.ndarray:
    """The first FRAMES clean frames at SIZE, uint8 RGB."""
    return np.stack([cv2.resize(f, SIZE, interpolation=cv2.INTER_AREA) for f in clean[:FRAMES]])


@pytest.fixture(scope="module")
def noisy_small(clean_small: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(25)
    degraded = clean_small / 255.0 + rng.normal(0.0, SIGMA, clean_small.shape)
    return np.rint(np.clip(degraded, 0.0, 1.0) * 255.0).astype(np.uint8)


@pytest.fixture(scope="module")
def clips(noisy_small: np.ndarray, tmp_path_factory: pytest.TempPathFactory, encode_clip) -> dict[str, Path]:
    """The noisy clip as lossless FFV1 (.mkv: the input is exactly the degraded frames) and MJPG (.avi)."""
    folder = tmp_path_factory.mktemp("clips")
    return {
        "mkv": encode_clip(folder / "noisy.mkv", noisy_small, "FFV1", FPS),
        "avi": encode_clip(folder / "noisy.avi", noisy_small, "MJPG", FPS),
    }


def _counts(err: str) -> tuple[int, int, int]:
    """(in, out, dropped) from the printed summary."""
    match = re.search(r"frames\s+(\d+) in, (\d+) out, (\d+) dropped", err)
    assert match, err
    frames_in, frames_out, dropped = (int(g) for g in match.groups())
    return frames_in, frames_out, dropped


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*"))


def _restore(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str]:
    code = main([*map(str, args), "--backend", "onnxruntime", "--device", "cpu", "--threads", "1"])
    return code, capsys.readouterr().err


# --------------------------------------------------------------------------- quality with the edge model


@pytest.mark.slow
def test_a_noisy_clip_is_restored_into_a_video_at_its_frame_rate(
    edge_export,
    clips: dict[str, Path],
    clean_small: np.ndarray,
    noisy_small: np.ndarray,
    tmp_path: Path,
    capsys,
    read_video: Callable[..., Any],
    nearest_frames: Callable[..., list[int]],
) -> None:
    out = tmp_path / "restored.mkv"
    code, err = _restore(capsys, clips["mkv"], "-o", out, "--artifacts", edge_export.artifacts, "--precision", "fp32")
    assert code == 0, err
    assert _counts(err) == (FRAMES, FRAMES, 0)
    assert "p50" in err and "p99" in err and "fps out" in err
    assert f"{FRAMES}/{FRAMES}" in err  # the progress bar of a file

    frames, fps, size = read_video(out)
    assert len(frames) == FRAMES and fps == pytest.approx(FPS) and size == SIZE
    assert nearest_frames(frames, clean_small, grid=(40, 30)) == list(range(FRAMES))  # order kept
    restored = np.mean([psnr(f, c / 255.0) for f, c in zip(frames, clean_small, strict=True)])
    degraded = np.mean([psnr(n / 255.0, c / 255.0) for n, c in zip(noisy_small, clean_small, strict=True)])
    assert restored > degraded + 3.0, (restored, degraded)
    assert _hidden(tmp_path) == []


# --------------------------------------------------------------------------- outputs and sources (tiny model)


def test_an_image_sequence_becomes_a_video_or_side_by_side_frames(
    tiny_export,
    noisy_small: np.ndarray,
    tmp_path: Path,
    capsys,
    read_video: Callable[..., Any],
    nearest_frames: Callable[..., list[int]],
) -> None:
    frames_in = tmp_path / "frames"
    frames_in.mkdir()
    for n, frame in enumerate(noisy_small, start=1):
        cv2.imwrite(str(frames_in / f"f{n}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))

    # A folder of frames into a video file: the frame rate is --fps, the order natural (f2 before f10).
    video = tmp_path / "from_folder.avi"
    code, err = _restore(capsys, frames_in, "-o", video, "--artifacts", tiny_export.artifacts, "--fps", "10")
    assert code == 0, err
    frames, fps, size = read_video(video)
    assert len(frames) == FRAMES and fps == pytest.approx(10.0) and size == SIZE
    assert nearest_frames(frames, noisy_small, grid=(40, 30)) == list(range(FRAMES))

    # A printf pattern into a folder, side by side: input | output, twice the width.
    compare = tmp_path / "compare"
    pattern = frames_in / "f%d.png"
    code, err = _restore(capsys, pattern, "-o", compare, "--artifacts", tiny_export.artifacts, "--side-by-side", "-q")
    assert code == 0 and err == ""
    written = sorted(compare.iterdir())
    assert [p.name for p in written] == [f"{n:06d}.png" for n in range(1, FRAMES + 1)]
    for path, given in zip(written, noisy_small, strict=True):
        pair = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        assert pair.shape == (SIZE[1], 2 * SIZE[0], 3)
        np.testing.assert_array_equal(pair[:, : SIZE[0]], given)  # left: the input, in order


def test_realtime_with_a_slow_device_drops_frames_and_counts_them(
    tiny_export,
    clips: dict[str, Path],
    noisy_small: np.ndarray,
    tmp_path: Path,
    capsys,
    read_video: Callable[..., Any],
    nearest_frames: Callable[..., list[int]],
) -> None:
    # The clip is played at 50 fps (20 ms a frame); the real pipeline plus 100 ms sleep per frame.
    out = tmp_path / "live.mp4"
    code, err = _restore(
        capsys, clips["mkv"], "-o", out, "--artifacts", tiny_export.artifacts,
        "--realtime", "--fps", "50", "--queue-size", "1", "--simulate-slowdown-ms", "100",
    )  # fmt: skip
    assert code == 0, err
    frames_in, frames_out, dropped = _counts(err)
    assert frames_in == FRAMES and dropped >= 4 and frames_out + dropped == FRAMES
    assert "real-time" in err
    frames, fps, _ = read_video(out)
    assert len(frames) == frames_out and fps == pytest.approx(50.0)
    order = nearest_frames(frames, noisy_small, grid=(40, 30))
    assert order == sorted(set(order)) and order[-1] == FRAMES - 1  # in order; the newest is kept

    # The same slow device without --realtime restores every frame.
    code, err = _restore(
        capsys, clips["mkv"], "-o", tmp_path / "all.mp4", "--artifacts", tiny_export.artifacts,
        "--simulate-slowdown-ms", "20",
    )  # fmt: skip
    assert code == 0 and _counts(err) == (FRAMES, FRAMES, 0)


def test_a_truncated_file_ends_cleanly_with_a_playable_output(
    tiny_export,
    clips: dict[str, Path],
    noisy_small: np.ndarray,
    tmp_path: Path,
    capsys,
    read_video: Callable[..., Any],
    nearest_frames: Callable[..., list[int]],
) -> None:
    data = clips["avi"].read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    out = tmp_path / "restored.mp4"
    code, err = _restore(capsys, cut, "-o", out, "--artifacts", tiny_export.artifacts)
    assert code == 1
    frames_in, frames_out, _ = _counts(err)
    assert 3 <= frames_out < FRAMES and frames_in == frames_out
    assert "could not be read (cut off or damaged)" in err.splitlines()[-1]
    frames, fps, _ = read_video(out)
    assert len(frames) == frames_out and fps == pytest.approx(FPS)
    assert nearest_frames(frames, noisy_small, grid=(40, 30)) == list(range(frames_out))
    assert _hidden(tmp_path) == []


def test_ctrl_c_ends_a_run_with_a_playable_file(
    tiny_export,
    clips: dict[str, Path],
    noisy_small: np.ndarray,
    tmp_path: Path,
    read_video: Callable[..., Any],
    nearest_frames: Callable[..., list[int]],
) -> None:
    out = tmp_path / "partial.mp4"
    command = [
        sys.executable, "runtime/restore.py", str(clips["mkv"]), "-o", str(out),
        "--artifacts", str(tiny_export.artifacts), "--backend", "onnxruntime", "--threads", "1",
        "--simulate-slowdown-ms", "300",
    ]  # fmt: skip

    def interactive_sigint() -> None:
        # A background job starts with SIGINT ignored, and Python keeps it so; Ctrl-C needs the default.
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    process = subprocess.Popen(
        command,
        cwd=REPO,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        preexec_fn=interactive_sigint,
    )
    assert process.stderr is not None
    err = bytearray()
    first_frame = threading.Event()

    def read_stderr() -> None:  # the progress bar says when the first frame is written
        assert process.stderr is not None
        while chunk := process.stderr.read1(4096):
            err.extend(chunk)
            if re.search(rb"\b[1-9]\d*/%d\b" % FRAMES, err):
                first_frame.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        assert first_frame.wait(120), err.decode(errors="replace")
        process.send_signal(signal.SIGINT)
        code = process.wait(60)
    finally:
        if process.poll() is None:
            process.kill()
    reader.join(10)
    text = err.decode(errors="replace")
    assert code == EXIT_INTERRUPTED, text
    assert "ended       interrupted" in text
    _, frames_out, _ = _counts(text)
    assert 1 <= frames_out < FRAMES
    frames, fps, _ = read_video(out)
    assert len(frames) == frames_out and fps == pytest.approx(FPS)
    assert nearest_frames(frames, noisy_small, grid=(40, 30)) == list(range(frames_out))
    assert _hidden(tmp_path) == []


def test_adaptive_depth_and_prior_reuse_are_wired_and_summarised(
    tiny_export, clips: dict[str, Path], tmp_path: Path, capsys, read_video: Callable[..., Any]
) -> None:
    # A budget no device meets: the controller must come down from 2 stages to 1.
    out = tmp_path / "adaptive.mp4"
    code, err = _restore(
        capsys, clips["mkv"], "-o", out, "--artifacts", tiny_export.artifacts,
        "--adaptive-depth", "--budget-ms", "0.001", "--prior-reuse", "3", "--scene-threshold", "0.2",
    )  # fmt: skip
    assert code == 0, err
    assert _counts(err) == (FRAMES, FRAMES, 0)
    depth = re.search(r"frames per stage count \{2: (\d+), 1: (\d+)\}", err)
    assert depth, err
    assert int(depth.group(1)) + int(depth.group(2)) == FRAMES and int(depth.group(2)) > 0
    reuse = re.search(r"prior\s+reused on (\d+) frames, computed on (\d+)", err)
    assert reuse, err
    assert int(reuse.group(1)) + int(reuse.group(2)) == FRAMES and int(reuse.group(1)) > 0
    assert len(read_video(out)[0]) == FRAMES


@pytest.mark.parametrize(
    "args, expected",
    [
        (["{clip}"], "a video needs -o/--output"),
        (["{clip}", "-o", "{tmp}/one.png"], "not one image"),
        (["{clip}", "-o", "{clip}"], "the output is the input"),
        (["{clip}", "-o", "{tmp}/o.webm"], "unsupported video extension '.webm'"),
        (["{clip}", "-o", "{tmp}/o.mp4", "--queue-size", "0"], "--queue-size must be >= 1"),
        (["{image}", "-o", "{tmp}/o.png", "--realtime"], "--realtime: these flags apply to videos only"),
        (["{tmp}/nothing.mp4", "-o", "{tmp}/o.mp4"], "nothing.mp4: no such file or folder"),
        (["7", "-o", "{tmp}/o.mp4"], "camera 7: cannot be opened"),
        (["rtsp://127.0.0.1:9/none", "-o", "{tmp}/o.mp4"], "rtsp://127.0.0.1:9/none: cannot be opened"),
    ],
)
def test_bad_video_arguments_get_one_line(
    tiny_export, clips: dict[str, Path], noisy_small: np.ndarray, tmp_path: Path, capsys, args, expected
) -> None:
    image = tmp_path / "still.png"
    cv2.imwrite(str(image), noisy_small[0])
    filled = [a.format(clip=clips["mkv"], tmp=tmp_path, image=image) for a in args]
    try:
        code, err = _restore(capsys, *filled, "--artifacts", tiny_export.artifacts)
    except SystemExit as exc:  # argparse's own usage errors
        code, err = exc.code, capsys.readouterr().err
        assert code == 2
    else:
        assert code == 1
    assert expected in err.strip().splitlines()[-1], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["still.png"]


def test_preview_without_a_display_is_one_line_and_leaves_no_file(
    tiny_export, clips: dict[str, Path], tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    code, err = _restore(
        capsys, clips["mkv"], "-o", tmp_path / "o.mp4", "--preview", "--artifacts", tiny_export.artifacts
    )
    assert code == 1 and err.strip().splitlines() == [
        "error: no display for the preview window (DISPLAY is not set); run without the preview"
    ]
    assert list(tmp_path.iterdir()) == []  # the video file opened before the preview failed is gone
