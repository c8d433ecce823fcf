"""Prior reuse: PriorCache hits, misses and scene cuts; the pipeline skips the prior graph on hits."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.errors import InputError
from runtime.pipeline import Pipeline, pad_nchw, padded_size, sampler_noise
from runtime.prior_cache import MISS_EMPTY, MISS_SCENE, MISS_SIZE, MISS_STALE, PriorCache


def _scene(height: int, width: int, seed: int = 0, flip: bool = False) -> np.ndarray:
    """A frame with structure a thumbnail sees (a ramp) plus fine texture; `flip` is another scene."""
    ramp = np.linspace(0.1, 0.9, width, dtype=np.float32)[None, :, None]
    if flip:
        ramp = ramp[:, ::-1]
    texture = np.random.default_rng(seed).random((height, width, 3), dtype=np.float32)
    return np.clip(0.8 * ramp + 0.2 * texture, 0, 1).astype(np.float32)


def _noisy(frame: np.ndarray, seed: int, sigma: float = 0.02) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(frame.shape, dtype=np.float32)
    return np.clip(frame + sigma * noise, 0, 1).astype(np.float32)


def _nchw(frame: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(frame.transpose(2, 0, 1))[None]


# --------------------------------------------------------------------------- the cache alone


def test_priors_are_reused_for_max_frames_then_recomputed() -> None:
    cache = PriorCache(max_frames=2)
    frame = _nchw(_scene(32, 48))
    z = {1: np.full((1, 4), 1.0, np.float32), 2: np.full((1, 4), 2.0, np.float32)}
    assert cache.lookup(frame, [1, 2]) is None
    for stage, value in z.items():
        cache.store(stage, value)
    value[:] = 7.0  # the cache keeps its own copy
    for _ in range(2):
        reused = cache.lookup(_nchw(_noisy(_scene(32, 48), 1)), [1, 2])
        assert reused is not None and np.array_equal(reused[2], np.full((1, 4), 2.0, np.float32))
    assert cache.lookup(frame, [1, 2]) is None  # served 2 frames: stale
    assert (cache.hits, cache.misses) == (2, 2)
    assert cache.misses_by_reason[MISS_EMPTY] == 1 and cache.misses_by_reason[MISS_STALE] == 1


def test_scene_change_size_change_and_missing_stages_recompute() -> None:
    cache = PriorCache(max_frames=10, scene_threshold=0.1)
    a = _nchw(_scene(32, 48))
    cache.lookup(a, [1])
    cache.store(1, np.zeros((1, 4), np.float32))
    assert cache.lookup(_nchw(_noisy(_scene(32, 48), 2, sigma=0.1)), [1]) is not None  # noise is not a cut
    assert cache.last_difference is not None and cache.last_difference < 0.05  # tiny frame: little averaging
    assert cache.lookup(_nchw(_scene(32, 48, flip=True)), [1]) is None
    assert cache.scene_cuts == 1 and cache.last_difference is not None and cache.last_difference > 0.3
    cache.store(1, np.zeros((1, 4), np.float32))
    assert cache.lookup(_nchw(_scene(32, 64, flip=True)), [1]) is None
    assert cache.misses_by_reason[MISS_SIZE] == 1
    cache.store(1, np.zeros((1, 4), np.float32))
    assert cache.lookup(_nchw(_scene(32, 64, flip=True)), [1, 2]) is None  # stage 2 was never computed
    assert cache.misses_by_reason[MISS_EMPTY] == 2
    assert cache.to_dict()["misses_by_reason"] == {MISS_EMPTY: 2, MISS_STALE: 0, MISS_SIZE: 1, MISS_SCENE: 1}
    assert "1 scene cuts" in cache.format()


def test_zero_frames_means_off_and_bad_arguments_are_refused() -> None:
    cache = PriorCache(max_frames=0)
    frame = _nchw(_scene(32, 32))
    for _ in range(3):
        assert cache.lookup(frame, [1]) is None
        cache.store(1, np.zeros((1, 4), np.float32))
    assert (cache.hits, cache.misses) == (0, 3)
    with pytest.raises(InputError):
        PriorCache(max_frames=2).store(1, np.zeros((1, 4), np.float32))
    for bad in (-1, 1.5, True):
        with pytest.raises(InputError):
            PriorCache(max_frames=bad)  # type: ignore[arg-type]
    with pytest.raises(InputError):
        PriorCache(max_frames=2, scene_threshold=0.0)


# --------------------------------------------------------------------------- with the pipeline


@pytest.fixture(scope="module")
def pipeline(export_tiny):
    with Pipeline.from_manifest(export_tiny(stages=3).artifacts, backend="onnxruntime", threads=1) as opened:
        yield opened


def _prior_runs(pipeline: Pipeline) -> int:
    return len(pipeline.backend.timings.get("prior", []))


def _with_priors(pipeline: Pipeline, frame: np.ndarray, priors_from: np.ndarray) -> np.ndarray:
    """`frame` restored stage by stage with the priors that `priors_from` gives, by direct graph calls."""
    m, b = pipeline.manifest, pipeline.backend
    h, w, _ = frame.shape
    ph, pw = padded_size(h, w, m.pad_multiple, m.min_size)
    y, y_src = (pad_nchw(_nchw(f), ph, pw) for f in (frame, priors_from))
    noise = sampler_noise(m)
    x, x_src = y, y_src
    for stage in m.stages:
        index = np.array([stage.prior_stage_index], dtype=np.int64)
        v_src = b.run(stage.gradient, {"x": x_src, "y": y_src})["v"]
        z = b.run(stage.prior, {"v": v_src, "noise": noise, "stage": index})["z"]
        x_src = b.run(stage.proximal, {"v": v_src, "z": z})["x"]
        v = b.run(stage.gradient, {"x": x, "y": y})["v"]
        x = b.run(stage.proximal, {"v": v, "z": z})["x"]
    return np.clip(x[0, :, :h, :w].transpose(1, 2, 0), 0.0, 1.0)


def test_the_prior_graph_runs_only_on_misses_and_hits_reuse_the_filling_frames_priors(pipeline: Pipeline) -> None:
    frames = [_noisy(_scene(40, 56), seed) for seed in range(5)]
    cache = PriorCache(max_frames=2)
    pipeline.backend.record_timings = True
    pipeline.backend.reset_timings()
    try:
        cached = [pipeline.restore(f, prior_cache=cache) for f in frames]
        runs_with_cache = _prior_runs(pipeline)
        pipeline.backend.reset_timings()
        plain = [pipeline.restore(f) for f in frames]
        runs_without = _prior_runs(pipeline)
    finally:
        pipeline.backend.record_timings = False
    assert (cache.hits, cache.misses) == (3, 2)  # frames 0 and 3 compute; 1, 2 and 4 reuse
    assert runs_without == 3 * 5 and runs_with_cache == 3 * 2
    for i in (0, 3):  # frames that filled the cache: exactly the run without a cache
        assert np.array_equal(cached[i], plain[i])
    for i, source in ((1, 0), (2, 0), (4, 3)):
        assert np.abs(cached[i] - _with_priors(pipeline, frames[i], frames[source])).max() <= 1e-6
        difference = np.abs(cached[i] - plain[i]).mean()
        assert 0 < difference < 0.02  # the prior matters, but a neighbour's prior is close


def test_a_scene_cut_or_new_size_recomputes_and_gives_the_plain_result(pipeline: Pipeline) -> None:
    cache = PriorCache(max_frames=8)
    pipeline.restore(_scene(40, 56), prior_cache=cache)
    cut = _scene(40, 56, seed=1, flip=True)
    assert np.array_equal(pipeline.restore(cut, prior_cache=cache), pipeline.restore(cut))
    bigger = _scene(48, 56, seed=1, flip=True)
    assert np.array_equal(pipeline.restore(bigger, prior_cache=cache), pipeline.restore(bigger))
    assert cache.scene_cuts == 1 and cache.misses_by_reason[MISS_SIZE] == 1 and cache.hits == 0


def test_cache_with_fewer_stages_then_more(pipeline: Pipeline) -> None:
    """Depth and reuse together: priors of stage 1 only cannot serve a 3-stage frame."""
    cache = PriorCache(max_frames=8)
    frames = [_noisy(_scene(40, 56), seed) for seed in range(4)]
    pipeline.restore(frames[0], stages=1, prior_cache=cache)
    assert np.array_equal(pipeline.restore(frames[1], stages=3, prior_cache=cache), pipeline.restore(frames[1]))
    pipeline.restore(frames[2], stages=2, prior_cache=cache)
    assert (cache.hits, cache.misses) == (1, 2)


def test_tiled_runs_reuse_the_whole_frame_prior(pipeline: Pipeline) -> None:
    tiled = Pipeline(pipeline.manifest, pipeline.backend, tile=32, tile_overlap=16)
    frames = [_noisy(_scene(48, 72), seed) for seed in range(3)]
    cache = PriorCache(max_frames=4)
    pipeline.backend.record_timings = True
    pipeline.backend.reset_timings()
    try:
        first = tiled.restore(frames[0], prior_cache=cache)
        rest = [tiled.restore(f, prior_cache=cache) for f in frames[1:]]
        assert _prior_runs(pipeline) == 3  # one frame, three stages
    finally:
        pipeline.backend.record_timings = False
    assert np.array_equal(first, tiled.restore(frames[0]))
    assert cache.hits == 2
    assert all(0 < np.abs(r - tiled.restore(f)).mean() < 0.02 for r, f in zip(rest, frames[1:], strict=True))


# --------------------------------------------------------------------------- runtime/tradeoffs.py


def test_tradeoffs_noise_is_the_evaluation_rule_and_the_temporal_measures() -> None:
    from model.degradations import apply_case
    from runtime.tradeoffs import add_noise, flicker, temporal_psnr

    clean = _scene(24, 40)
    assert np.array_equal(add_noise(clean, 25, seed=3), apply_case(clean, "noise25", seed=3))
    video = np.stack([_scene(24, 40, seed) for seed in range(4)])
    assert flicker(video, video) == 0.0 and temporal_psnr(video, video) == np.inf
    assert temporal_psnr(np.clip(video + 0.05, 0, 1), video) > 40  # a steady offset is no flicker
    still = np.stack([clean] * 4)
    shaky = still + np.array([0.0, 0.02, 0.0, 0.02], dtype=np.float32)[:, None, None, None]
    assert abs(flicker(shaky, still) - 0.02 * 255) < 1e-3  # every frame moves by 0.02
    assert abs(temporal_psnr(shaky, still) - 20 * np.log10(1 / 0.02)) < 1e-3


def test_tradeoffs_cli_on_the_tiny_model_and_real_data(export_tiny, shared_data, tmp_path, capsys) -> None:
    import json

    from runtime.tradeoffs import main

    artifacts = export_tiny(stages=3).artifacts
    out = tmp_path / "tradeoffs.json"
    argv = ["--artifacts", str(artifacts), "--image-count", "1", "--frames", "4", "--size", "64x48"]
    assert main([*argv, "--reuse", "0,2", "--threads", "1", "--json", str(out), "-q"]) == 0
    printed = capsys.readouterr().out
    assert "Adaptive depth" in printed and "Prior reuse" in printed
    result = json.loads(out.read_text())
    assert [(r["data"], r["stages"]) for r in result["depth"]] == [
        ("CBSD68", 1), ("CBSD68", 2), ("CBSD68", 3), ("vid4_walk", 1), ("vid4_walk", 2), ("vid4_walk", 3)
    ]  # fmt: skip
    off, reuse = result["reuse"]
    assert off["prior_runs"] == 3 * 4 and off["cache"] is None
    cache = reuse["cache"]
    assert cache["hits"] + cache["misses"] == 4 and reuse["prior_runs"] == 3 * cache["misses"]
    assert main([*argv, "--size", "2000x48", "-q"]) == 1
    assert "cannot be centre-cropped" in capsys.readouterr().err
