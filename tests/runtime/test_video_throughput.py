"""runtime/video_throughput.py: one run prints and writes both throughputs and their ratio.

The model does not matter here (the tiny random one); the clip is the real Vid4 'walk' clip,
cropped small so the test is fast. The figures themselves are measured on an idle machine with
the `edge` model (README), not here.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime.errors import InputError
from runtime.image_io import centre_crop
from runtime.video_throughput import main, read_clip


def test_one_run_reports_inference_video_and_their_ratio(
    tiny_export, shared_data: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "figures.json"
    clip = shared_data / "video" / "vid4_walk"
    code = main(
        [
            "--artifacts", str(tiny_export.artifacts), "--clip", str(clip), "--size", "96x64", "--frames", "5",
            "--warmup", "1", "--rounds", "2", "--threads", "1", "--json", str(out), "-q",
        ]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0
    result = json.loads(out.read_text())
    settings = result["settings"]
    assert (settings["width"], settings["height"], settings["frames"], settings["backend"]) == (
        96,
        64,
        5,
        "onnxruntime",
    )
    assert len(result["inference"]) == len(result["video"]) == 2
    for run in result["inference"] + result["video"]:
        assert run["frames"] == 5 and run["seconds"] > 0 and run["fps"] == pytest.approx(5 / run["seconds"])
    assert result["inference"][0]["latency"]["count"] == 5
    assert result["video"][0]["process_ms_mean"] > 0
    assert result["inference_fps"] == pytest.approx(np.median([r["fps"] for r in result["inference"]]))
    assert result["ratio"] == pytest.approx(result["video_fps"] / result["inference_fps"])
    assert result["environment"]["threads"] == 1
    for label in ("encode alone", "decode alone", "pure inference #2", "video file->file #1"):
        assert label in printed
    assert f"= {result['ratio']:.3f} (goal >= 0.9" in printed


def test_the_clip_is_centre_cropped_from_frames_or_a_video(shared_data: Path, tmp_path: Path, encode_clip) -> None:
    first = cv2.cvtColor(cv2.imread(str(shared_data / "video" / "vid4_walk" / "001.png")), cv2.COLOR_BGR2RGB)
    assert first.shape == (480, 720, 3)
    frames = read_clip(str(shared_data / "video" / "vid4_walk"), 240, 320, 2)
    assert len(frames) == 2 and frames[0].shape == (240, 320, 3)
    np.testing.assert_allclose(frames[0], first[120:360, 200:520] / 255.0, atol=1e-6)

    video = encode_clip(tmp_path / "clip.avi", np.stack([first[:100, :150]] * 3), "MJPG")
    assert [f.shape for f in read_clip(str(video), 40, 60, None)] == [(40, 60, 3)] * 3
    with pytest.raises(InputError, match="fewer than --frames 4"):
        read_clip(str(video), 40, 60, 4)
    with pytest.raises(InputError, match="smaller than the crop 200x40"):
        centre_crop(frames[0][:30, :100], 40, 200)
