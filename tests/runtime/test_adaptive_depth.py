"""Adaptive depth: `stages=k` runs exactly the first k stages; DepthController on synthetic latencies."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from runtime.errors import InputError
from runtime.pipeline import Pipeline, pad_nchw, padded_size, sampler_noise
from runtime.video.adaptive import DepthController


def _frame(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((height, width, 3), dtype=np.float32)


@pytest.fixture(scope="module")
def three_stages(export_tiny):
    """A tiny random model with K = 3, so that a middle stage exists."""
    return export_tiny(stages=3)


@pytest.fixture(scope="module")
def pipeline(three_stages):
    with Pipeline.from_manifest(three_stages.artifacts, backend="onnxruntime", threads=1) as opened:
        yield opened


def _stage_by_stage(pipeline: Pipeline, frame: np.ndarray, k: int) -> np.ndarray:
    """x_k by calling the graphs one by one, with names and feeds from the manifest, no Pipeline.run."""
    m, b = pipeline.manifest, pipeline.backend
    h, w, _ = frame.shape
    ph, pw = padded_size(h, w, m.pad_multiple, m.min_size)
    y = pad_nchw(np.ascontiguousarray(frame.transpose(2, 0, 1))[None], ph, pw)
    noise = sampler_noise(m)
    x = y
    for stage in m.stages[:k]:
        v = b.run(stage.gradient, {"x": x, "y": y})["v"]
        index = np.array([stage.prior_stage_index], dtype=np.int64)
        z = b.run(stage.prior, {"v": v, "noise": noise, "stage": index})["z"]
        x = b.run(stage.proximal, {"v": v, "z": z})["x"]
    return np.clip(x[0, :, :h, :w].transpose(1, 2, 0), 0.0, 1.0)


def test_stages_k_is_the_output_of_the_first_k_stages(pipeline: Pipeline) -> None:
    assert pipeline.stage_count == 3
    frame = _frame(37, 45)
    outputs = {}
    for k in (1, 2, 3):
        outputs[k] = pipeline.restore(frame, stages=k)
        assert outputs[k].shape == frame.shape and outputs[k].dtype == np.float32
        assert np.abs(outputs[k] - _stage_by_stage(pipeline, frame, k)).max() <= 1e-6
    assert np.array_equal(pipeline.restore(frame), outputs[3])
    # Each stage changes the image: the knob really skips work.
    assert np.abs(outputs[1] - outputs[2]).mean() > 1e-4
    assert np.abs(outputs[2] - outputs[3]).mean() > 1e-4


def test_stages_in_a_batch_and_on_padded_input(pipeline: Pipeline) -> None:
    frames = np.stack([_frame(32, 40, seed) for seed in range(2)])
    batch = pipeline.restore_batch(frames, stages=2)
    assert np.abs(batch[1] - _stage_by_stage(pipeline, frames[1], 2)).max() <= 1e-6
    y = np.ascontiguousarray(frames.transpose(0, 3, 1, 2))
    assert np.abs(np.clip(pipeline.run(y, stages=2), 0, 1).transpose(0, 2, 3, 1) - batch).max() <= 1e-6


def test_tiled_stages_equal_a_tiled_run_of_the_truncated_model(pipeline: Pipeline) -> None:
    """A tiled run with stages=k equals a tiled run of a manifest that only has the first k stages."""
    frame = _frame(48, 72, seed=3)
    tiled = Pipeline(pipeline.manifest, pipeline.backend, tile=32, tile_overlap=16)
    for k in (1, 2):
        truncated = dataclasses.replace(pipeline.manifest, stages=pipeline.manifest.stages[:k])
        reference = Pipeline(truncated, pipeline.backend, tile=32, tile_overlap=16).restore(frame)
        got = tiled.restore(frame, stages=k)
        assert np.abs(got - reference).max() <= 1e-6
        # and it is x_k, up to what tiling changes
        assert np.abs(got - pipeline.restore(frame, stages=k)).mean() < 0.05
    assert np.abs(tiled.restore(frame, stages=1) - tiled.restore(frame)).mean() > 1e-4


@pytest.mark.parametrize("stages", [0, 4, -1, 1.5, True, "2"])
def test_a_bad_stage_count_is_refused(pipeline: Pipeline, stages: object) -> None:
    frame = _frame(16, 16)
    with pytest.raises(InputError, match="stages"):
        pipeline.restore(frame, stages=stages)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="stages"):
        pipeline.run(np.zeros((1, 3, 16, 16), dtype=np.float32), stages=stages)  # type: ignore[arg-type]


def test_numpy_integers_are_accepted(pipeline: Pipeline) -> None:
    frame = _frame(16, 16)
    assert np.array_equal(pipeline.restore(frame, stages=np.int64(2)), pipeline.restore(frame, stages=2))


# --------------------------------------------------------------------------- DepthController


def _feed(controller: DepthController, latencies: list[float], queue: int = 0) -> list[int]:
    """Depths in force for each frame of the sequence (before the controller hears of it)."""
    depths = []
    for seconds in latencies:
        depths.append(controller.stages)
        controller.on_latency(seconds, queue)
    return depths


def test_sustained_lateness_steps_down_one_stage_at_a_time_to_one() -> None:
    c = DepthController(max_stages=3, budget_s=0.040, down_after=2)
    depths = _feed(c, [0.100] * 10)
    assert depths == [3, 3, 2, 2, 1, 1, 1, 1, 1, 1]
    assert c.stages == 1 and c.frames_at_depth == {1: 6, 2: 2, 3: 2} and c.changes == 2


def test_a_single_spike_changes_nothing() -> None:
    c = DepthController(max_stages=3, budget_s=0.040, down_after=2)
    _feed(c, [0.030, 0.200, 0.030, 0.200, 0.030] * 4)
    assert c.stages == 3 and c.changes == 0


def test_a_backed_up_queue_steps_down_even_when_latency_fits() -> None:
    c = DepthController(max_stages=3, budget_s=1.0, max_queue=1)
    _feed(c, [0.010] * 2, queue=1)
    assert c.stages == 3
    _feed(c, [0.010] * 2, queue=3)
    assert c.stages == 2


def test_headroom_steps_back_up_after_a_run_of_fast_frames_and_no_further_than_max() -> None:
    c = DepthController(max_stages=3, budget_s=0.040, down_after=2, up_after=5)
    _feed(c, [0.100] * 4)
    assert c.stages == 1
    # 10 ms at 1 stage predicts 20 ms at 2 stages: under 0.9 x 40 ms
    depths = _feed(c, [0.010] * 5)
    assert c.stages == 2 and depths == [1] * 5
    _feed(c, [0.020] * 4)
    assert c.stages == 2  # needs 5 in a row
    _feed(c, [0.020])
    assert c.stages == 3  # 20 ms at 2 stages predicts 30 ms at 3
    _feed(c, [0.010] * 50)
    assert c.stages == 3


def test_latency_in_the_band_between_headroom_and_budget_holds_the_depth() -> None:
    c = DepthController(max_stages=3, budget_s=0.040, down_after=2, up_after=3)
    _feed(c, [0.100] * 2)
    assert c.stages == 2
    _feed(c, [0.030] * 100)  # 30 ms at 2 stages: not late, but 3 stages would take 45 ms
    assert c.stages == 2 and c.changes == 1


def test_a_depth_the_device_cannot_sustain_is_retried_less_and_less_often() -> None:
    """Stage 3 is dearer than the linear prediction says: each rise to 3 fails. Without back-off
    the depth would flip every up_after + down_after frames."""
    latency_at = {1: 0.010, 2: 0.014, 3: 0.060}  # 14 ms at 2 predicts 21 ms at 3: under 0.9 x 25 ms
    c = DepthController(max_stages=3, budget_s=0.025, down_after=2, up_after=8)
    for _ in range(400):
        c.on_latency(latency_at[c.stages], 0)
    rises = c.changes // 2  # the first change is the drop from the initial 3
    assert rises == 6  # after waits of 8, 16, 32, 64, 128, 128 frames (a flip every 10 frames: 40)
    assert c.frames_at_depth[1] == 0
    assert c.frames_at_depth[3] == 2 * (rises + 1)  # two late frames per try, and the first two
    assert c.frames_at_depth[2] >= 380
    assert c.frames == 400


def test_a_rise_that_holds_resets_the_back_off() -> None:
    c = DepthController(max_stages=3, budget_s=0.025, down_after=2, up_after=4)
    _feed(c, [0.060] * 2)  # to 2
    _feed(c, [0.010] * 4)  # rise to 3
    _feed(c, [0.060] * 2)  # fails at once: to 2, back-off doubles
    assert (c.stages, c.up_after) == (2, 8)
    _feed(c, [0.010] * 8)  # rise to 3 ...
    _feed(c, [0.020] * 8)  # ... that holds for a full wait
    assert (c.stages, c.up_after) == (3, 4)


def test_summary_and_arguments() -> None:
    c = DepthController(max_stages=2, budget_s=0.05)
    _feed(c, [0.1] * 3)
    assert c.to_dict()["frames_at_depth"] == {"1": 1, "2": 2}
    assert "2: 2" in c.format() and "1: 1" in c.format() and "50.0 ms" in c.format()
    for bad in (
        dict(max_stages=0, budget_s=0.1),
        dict(max_stages=3, budget_s=0.0),
        dict(max_stages=3, budget_s=0.1, min_stages=4),
        dict(max_stages=3, budget_s=0.1, headroom=1.5),
        dict(max_stages=3, budget_s=0.1, down_after=0),
    ):
        with pytest.raises(InputError):
            DepthController(**bad)  # type: ignore[arg-type]
