"""The native frame kernels (CMakeLists.txt, native/) against the runtime's NumPy/OpenCV path.

CPU: the C reference, reached through the same C ABI as the CUDA kernels, must match the NumPy
path bit for bit (no 1-LSB allowance is needed: both round half to even from the same float32
product, and blending uses the same float32 operations in the same order). GPU (marked `gpu`):
the CUDA kernels must match the C reference bit for bit. Every test skips when the library was
not built (`.ci/run` builds it, so CI runs them).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from runtime import frame_kernels as fk
from runtime.errors import BackendUnavailable, InputError, ShapeError
from runtime.tiling import Blender, Tile, plan_tiles

LAYOUTS = list(fk.Layout)
DTYPES = [np.float32, np.float16]


@pytest.fixture(scope="module")
def kernels() -> fk.FrameKernels:
    path = fk.find_library()
    if path is None:
        pytest.skip("native frame kernels not built (cmake -S . -B build && cmake --build build)")
    return fk.FrameKernels(path)


def _frame(rng: np.random.Generator, height: int, width: int, layout: fk.Layout, pad_bytes: int) -> np.ndarray:
    """A frame whose rows lie `pad_bytes` apart beyond the packed row (any stride, odd included)."""
    channels = layout.channels
    stride = width * channels + pad_bytes
    buffer = rng.integers(0, 256, size=height * stride + 3, dtype=np.uint8)[3:]  # odd start address too
    return np.lib.stride_tricks.as_strided(buffer, (height, width, channels), (stride, channels, 1), writeable=False)


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a.view(np.uint8), b.view(np.uint8))


# --------------------------------------------------------------------------- 8-bit -> planar


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda x: x.name)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda x: x.__name__)
@pytest.mark.parametrize("scale_rule", list(fk.ScaleRule), ids=lambda x: x.name)
@pytest.mark.parametrize(
    ("size", "padded", "pad_bytes"),
    [
        ((37, 53), (48, 64), 5),
        ((64, 32), (64, 32), 0),
        ((5, 3), (16, 24), 1),
        ((1, 1), (3, 2), 7),
        ((17, 9), (17, 16), 2),
    ],
)
def test_to_planar_matches_numpy(
    kernels: fk.FrameKernels,
    layout: fk.Layout,
    dtype: type,
    scale_rule: fk.ScaleRule,
    size: tuple[int, int],
    padded: tuple[int, int],
    pad_bytes: int,
) -> None:
    frame = _frame(np.random.default_rng(sum(size) + pad_bytes), *size, layout, pad_bytes)
    assert frame.strides[0] == size[1] * layout.channels + pad_bytes  # the library really sees the stride
    native = kernels.frame_to_planar(frame, *padded, layout, dtype, scale_rule)
    reference = fk.frame_to_planar_numpy(frame, *padded, layout, dtype, scale_rule)
    assert native.shape == (3, *padded)
    assert _same_bits(native, reference)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda x: x.__name__)
@pytest.mark.parametrize("scale_rule", list(fk.ScaleRule), ids=lambda x: x.name)
def test_every_byte_value_scales_like_numpy(kernels: fk.FrameKernels, dtype: type, scale_rule: fk.ScaleRule) -> None:
    values = np.arange(256, dtype=np.uint8).reshape(16, 16)
    frame = np.stack([values, values[::-1], values.T], axis=2)
    native = kernels.frame_to_planar(frame, 16, 16, fk.Layout.BGR, dtype, scale_rule)
    assert _same_bits(native, fk.frame_to_planar_numpy(frame, 16, 16, fk.Layout.BGR, dtype, scale_rule))


def test_the_two_scale_rules_really_differ(kernels: fk.FrameKernels) -> None:
    """Why the rule is an argument: x * (1/255) and x / 255 differ in float32 on some bytes."""
    frame = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2)
    multiply = kernels.frame_to_planar(frame, 1, 256, scale_rule=fk.ScaleRule.MUL_RECIPROCAL)
    divide = kernels.frame_to_planar(frame, 1, 256, scale_rule=fk.ScaleRule.DIVIDE)
    assert 0 < np.count_nonzero(multiply != divide) and np.abs(multiply - divide).max() < 1e-7


def test_round_trip_gives_the_frame_back(kernels: fk.FrameKernels) -> None:
    frame = _frame(np.random.default_rng(3), 23, 41, fk.Layout.BGR, 3)
    for dtype in DTYPES:
        planar = kernels.frame_to_planar(frame, 32, 48, dtype=dtype)
        assert np.array_equal(kernels.planar_to_frame(planar, 23, 41), frame)


# --------------------------------------------------------------------------- planar -> 8-bit


def _planar_values(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Values across and beyond [0, 1], with exact rounding ties and the special values."""
    values = rng.uniform(-0.25, 1.25, size=(3, height, width)).astype(np.float32)
    ties = (np.arange(255, dtype=np.float32) + np.float32(0.5)) / np.float32(255.0)
    special = np.array([0.0, -0.0, 1.0, np.inf, -np.inf, 1e-30, -1e-30, 0.5 / 255, 1 - 1e-7], dtype=np.float32)
    flat = values.reshape(-1)
    extra = np.concatenate([ties, special])
    flat[: extra.size] = extra[: flat.size]
    return values


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda x: x.name)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda x: x.__name__)
@pytest.mark.parametrize(("tensor", "crop"), [((48, 64), (37, 53)), ((16, 24), (16, 24)), ((8, 8), (1, 1))])
def test_to_frame_matches_numpy(
    kernels: fk.FrameKernels, layout: fk.Layout, dtype: type, tensor: tuple[int, int], crop: tuple[int, int]
) -> None:
    planar = _planar_values(np.random.default_rng(tensor[0]), *tensor).astype(dtype)
    native = kernels.planar_to_frame(planar, *crop, layout)
    assert np.array_equal(native, fk.planar_to_frame_numpy(planar, *crop, layout))


def test_every_half_value_quantizes_like_numpy(kernels: fk.FrameKernels) -> None:
    halves = np.arange(65536, dtype=np.uint16).view(np.float16)
    halves = np.where(np.isnan(halves), np.float16(0.25), halves).reshape(256, 256)
    planar = np.stack([halves, halves[::-1], halves.T])
    assert np.array_equal(kernels.planar_to_frame(planar, 256, 256), fk.planar_to_frame_numpy(planar, 256, 256))


def test_to_frame_writes_into_a_pitched_view_and_nothing_else(kernels: fk.FrameKernels) -> None:
    planar = _planar_values(np.random.default_rng(5), 24, 40)
    canvas = np.full((20, 37 * 3 + 7), 77, dtype=np.uint8)
    view = np.lib.stride_tricks.as_strided(canvas[:, 2:], (19, 35, 3), (canvas.strides[0], 3, 1))
    kernels.planar_to_frame(planar, 19, 35, fk.Layout.RGB, out=view)
    assert np.array_equal(view, fk.planar_to_frame_numpy(planar, 19, 35, fk.Layout.RGB))
    untouched = canvas.copy()
    untouched[:19, 2 : 2 + 35 * 3] = 77
    assert np.all(untouched == 77)


def test_nan_becomes_zero(kernels: fk.FrameKernels) -> None:
    planar = np.full((3, 2, 2), np.nan, dtype=np.float32)
    assert not kernels.planar_to_frame(planar, 2, 2).any()


def _to_frame_counting(kernels: fk.FrameKernels, planar: np.ndarray, height: int, width: int) -> tuple[np.ndarray, int]:
    """The C reference's 8-bit frame of `planar` and its count of NaN/Inf samples converted."""
    frame = np.empty((height, width, 3), dtype=np.uint8)
    count = np.full(1, -1, dtype=np.int64)
    kernels.planar_to_u8(
        fk.Device.CPU, planar.ctypes.data, fk.dtype_code(planar.dtype), planar.shape[1], planar.shape[2],
        frame.ctypes.data, frame.strides[0], height, width, fk.Layout.BGR, nonfinite_count=count.ctypes.data,
    )  # fmt: skip
    return frame, int(count[0])


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda x: x.__name__)
def test_the_conversion_counts_nan_and_inf_in_the_crop_only(kernels: fk.FrameKernels, dtype: type) -> None:
    planar = np.random.default_rng(9).uniform(0, 1, size=(3, 16, 24)).astype(dtype)
    assert _to_frame_counting(kernels, planar, 13, 21)[1] == 0  # set, not left as it was
    planar[0, 0, 0], planar[1, 12, 20], planar[2, 5, 7] = np.nan, np.inf, -np.inf  # inside the crop
    planar[0, 13, 0], planar[1, 0, 21] = np.nan, np.inf  # in the padding the crop drops
    frame, count = _to_frame_counting(kernels, planar, 13, 21)
    assert count == 3
    assert np.array_equal(frame, kernels.planar_to_frame(planar, 13, 21))  # counting changes no byte
    assert frame[0, 0, 2] == 0 and frame[12, 20, 1] == 255 and frame[5, 7, 0] == 0


# --------------------------------------------------------------------------- tile blending


def _blend_both(
    kernels: fk.FrameKernels, shape: tuple[int, int, int, int], overlap: int, tiles: list[Tile], dtype: type
) -> tuple[Blender, fk.NativeBlender]:
    rng = np.random.default_rng(len(tiles) + overlap)
    reference, native = Blender(*shape, overlap), fk.NativeBlender(kernels, *shape, overlap)
    for tile in tiles:
        values = rng.standard_normal((*shape[:2], tile.height, tile.width)).astype(dtype)
        reference.add(tile, values)
        native.add(tile, values)
    return reference, native


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda x: x.__name__)
@pytest.mark.parametrize(
    ("size", "tile", "overlap", "multiple"),
    [((96, 136), 64, 16, 8), ((96, 136), 64, 0, 8), ((40, 200), 64, 24, 8), ((72, 72), 24, 16, 8), ((9, 7), 4, 3, 1)],
)
def test_blend_matches_the_blender(
    kernels: fk.FrameKernels, dtype: type, size: tuple[int, int], tile: int, overlap: int, multiple: int
) -> None:
    tiles = plan_tiles(*size, tile, overlap, multiple)
    assert len(tiles) > 1
    reference, native = _blend_both(kernels, (2, 3, *size), overlap, tiles, dtype)
    assert _same_bits(native.weight, reference.weight)
    assert _same_bits(native.total, reference.total)
    assert _same_bits(native.result(), reference.result())


def test_blend_of_irregular_tiles_matches_the_blender(kernels: fk.FrameKernels) -> None:
    """Tiles of different sizes at odd places, overlapping by more than `overlap` and less."""
    tiles = [Tile(0, 0, 13, 20), Tile(5, 11, 14, 18), Tile(0, 17, 9, 12), Tile(9, 0, 10, 15), Tile(3, 25, 16, 4)]
    reference, native = _blend_both(kernels, (1, 4, 19, 29), 6, tiles, np.float32)
    assert _same_bits(native.result(), reference.result())


def test_uncovered_pixels_are_refused(kernels: fk.FrameKernels) -> None:
    blender = fk.NativeBlender(kernels, 1, 3, 16, 16, 4)
    blender.add(Tile(0, 0, 8, 16), np.ones((1, 3, 8, 16), dtype=np.float32))
    with pytest.raises(ShapeError, match="do not cover"):
        blender.result()


# --------------------------------------------------------------------------- bad arguments


# Valid buffers for the argument tests (module-level, so they outlive every call).
_SRC, _DST = np.zeros((4, 6, 3), dtype=np.uint8), np.zeros((3, 8, 8), dtype=np.float32)


def _to_planar_args(**changes: object) -> dict[str, object]:
    """Valid ufk_u8_to_planar arguments, with `changes` applied."""
    args: dict[str, object] = dict(
        device=fk.Device.CPU, src=_SRC.ctypes.data, src_stride=18, height=4, width=6, layout=fk.Layout.BGR,
        scale_rule=fk.ScaleRule.MUL_RECIPROCAL, dst=_DST.ctypes.data, dtype=fk.DType.FP32, padded_height=8,
        padded_width=8,
    )  # fmt: skip
    return {**args, **changes}


@pytest.mark.parametrize(
    ("changes", "error", "words"),
    [
        ({"src": 0}, InputError, "null"),
        ({"dst": 0}, InputError, "null"),
        ({"src_stride": 17}, ShapeError, "row stride 17 bytes"),
        ({"height": 0}, ShapeError, "frame height must be positive"),
        ({"padded_width": 5}, ShapeError, "smaller than the frame"),
        ({"layout": 4}, InputError, "pixel layout 4"),
        ({"dtype": 2}, InputError, "element type 2"),
        ({"scale_rule": 2}, InputError, "scale rule 2"),
        ({"device": 3}, InputError, "device 3"),
    ],
)
def test_bad_to_planar_arguments_raise(
    kernels: fk.FrameKernels, changes: dict[str, object], error: type[Exception], words: str
) -> None:
    kernels.u8_to_planar(**_to_planar_args())  # the unchanged arguments are valid
    with pytest.raises(error, match=words):
        kernels.u8_to_planar(**_to_planar_args(**changes))  # type: ignore[arg-type]


def test_bad_to_frame_arguments_raise(kernels: fk.FrameKernels) -> None:
    planar, frame = np.zeros((3, 8, 8), dtype=np.float32), np.zeros((8, 8, 4), dtype=np.uint8)
    src, dst = planar.ctypes.data, frame.ctypes.data
    cpu, fp32 = fk.Device.CPU, fk.DType.FP32
    with pytest.raises(InputError, match="null"):
        kernels.planar_to_u8(cpu, 0, fp32, 8, 8, dst, 24, 8, 8, fk.Layout.BGR)
    with pytest.raises(ShapeError, match="crop 9x8 is larger"):
        kernels.planar_to_u8(cpu, src, fp32, 8, 8, dst, 32, 8, 9, fk.Layout.BGRA)
    with pytest.raises(ShapeError, match="row stride 31 bytes"):
        kernels.planar_to_u8(cpu, src, fp32, 8, 8, dst, 31, 8, 8, fk.Layout.RGBA)
    with pytest.raises(InputError, match="pixel layout -1"):
        kernels.planar_to_u8(cpu, src, fp32, 8, 8, dst, 32, 8, 8, -1)  # type: ignore[arg-type]


def test_bad_blend_arguments_raise(kernels: fk.FrameKernels) -> None:
    total, weight = np.zeros((1, 3, 8, 8), dtype=np.float32), np.zeros((8, 8), dtype=np.float32)
    tile = np.zeros((1, 3, 4, 4), dtype=np.float32)
    args = (fk.Device.CPU, total.ctypes.data, weight.ctypes.data, (1, 3, 8, 8))
    with pytest.raises(ShapeError, match="does not fit the frame"):
        kernels.blend_add(*args, 2, tile.ctypes.data, fk.DType.FP32, Tile(6, 0, 4, 4))
    with pytest.raises(InputError, match="overlap -1"):
        kernels.blend_add(*args, -1, tile.ctypes.data, fk.DType.FP32, Tile(0, 0, 4, 4))
    with pytest.raises(InputError, match="tile is null"):
        kernels.blend_add(*args, 2, 0, fk.DType.FP32, Tile(0, 0, 4, 4))
    with pytest.raises(ShapeError, match="batch must be positive"):
        kernels.blend_normalize(fk.Device.CPU, total.ctypes.data, weight.ctypes.data, total.ctypes.data, (0, 3, 8, 8))


def test_python_side_refuses_wrong_arrays(kernels: fk.FrameKernels) -> None:
    with pytest.raises(InputError, match="uint8"):
        kernels.frame_to_planar(np.zeros((4, 4, 3), dtype=np.float32), 8, 8)
    with pytest.raises(ShapeError, match="HxWx4"):
        kernels.frame_to_planar(np.zeros((4, 4, 3), dtype=np.uint8), 8, 8, fk.Layout.RGBA)
    with pytest.raises(InputError, match="float64"):
        kernels.planar_to_frame(np.zeros((3, 4, 4)), 4, 4)
    with pytest.raises(ShapeError, match="output frame is 4x4, the crop is 5x4"):
        kernels.planar_to_frame(np.zeros((3, 8, 8), dtype=np.float32), 4, 5, out=np.zeros((4, 4, 3), dtype=np.uint8))
    with pytest.raises(ShapeError, match="tile values"):
        fk.NativeBlender(kernels, 1, 3, 8, 8, 0).add(Tile(0, 0, 8, 8), np.zeros((1, 3, 4, 4), dtype=np.float32))


def test_cuda_refused_cleanly_where_there_is_none(kernels: fk.FrameKernels) -> None:
    if kernels.cuda_available:
        pytest.skip("CUDA is usable here; the refusal is tested where it is not")
    with pytest.raises(BackendUnavailable, match="CUDA is not available"):
        kernels.u8_to_planar(**_to_planar_args(device=fk.Device.CUDA))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- loading and fallback


def test_environment_variable_selects_the_library(kernels: fk.FrameKernels, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(fk.LIBRARY_ENV, str(kernels.path.parent))
    assert fk.find_library() == kernels.path.parent / kernels.path.name
    monkeypatch.setenv(fk.LIBRARY_ENV, str(kernels.path.parent / "missing.so"))
    with pytest.raises(BackendUnavailable, match=fk.LIBRARY_ENV):
        fk.find_library()


def test_falls_back_to_numpy_with_one_logged_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(fk.LIBRARY_ENV, raising=False)
    monkeypatch.setattr(fk, "REPO_BUILD", tmp_path)
    monkeypatch.setattr(fk.ctypes.util, "find_library", lambda name: None)  # nothing installed system-wide
    fk.load_frame_kernels.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger=fk.__name__):
            frame = np.random.default_rng(1).integers(0, 256, (9, 11, 3), dtype=np.uint8)
            planar = fk.frame_to_planar(frame, 16, 16)
            assert np.array_equal(fk.planar_to_frame(planar, 9, 11), frame)
            assert isinstance(fk.make_blender(1, 3, 16, 16, 4), Blender)
        assert len([r for r in caplog.records if "NumPy/OpenCV" in r.getMessage()]) == 1
    finally:
        fk.load_frame_kernels.cache_clear()


def test_public_functions_use_the_library_when_built(kernels: fk.FrameKernels, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(fk.LIBRARY_ENV, str(kernels.path))
    fk.load_frame_kernels.cache_clear()
    try:
        assert isinstance(fk.make_blender(1, 3, 8, 8, 2), fk.NativeBlender)
        frame = _frame(np.random.default_rng(2), 7, 5, fk.Layout.BGR, 1)
        assert _same_bits(fk.frame_to_planar(frame, 8, 8), fk.frame_to_planar_numpy(frame, 8, 8))
    finally:
        fk.load_frame_kernels.cache_clear()


# --------------------------------------------------------------------------- CUDA against the C reference


@pytest.fixture(scope="module")
def cuda_kernels(kernels: fk.FrameKernels) -> fk.FrameKernels:
    if not kernels.built_with_cuda:
        pytest.skip("the library was built without CUDA (no nvcc at configure time)")
    assert kernels.cuda_available, "torch sees a CUDA GPU but the frame kernels cannot use it"
    return kernels


@pytest.mark.gpu
@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda x: x.name)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda x: x.__name__)
def test_cuda_to_planar_and_back_match_the_c_reference(
    cuda_kernels: fk.FrameKernels, layout: fk.Layout, dtype: type
) -> None:
    import torch

    height, width, pad_bytes, padded = 37, 53, 9, (48, 64)
    frame = _frame(np.random.default_rng(7), height, width, layout, pad_bytes)
    stride = frame.strides[0]
    device_frame = torch.zeros(height * stride, dtype=torch.uint8, device="cuda")
    device_frame.view(height, stride)[:, : width * layout.channels] = torch.from_numpy(
        np.ascontiguousarray(frame).reshape(height, -1)
    ).cuda()
    code = fk.dtype_code(dtype)
    planar = torch.empty((3, *padded), dtype=torch.float32 if code is fk.DType.FP32 else torch.float16, device="cuda")
    stream = torch.cuda.current_stream().cuda_stream
    cuda_kernels.u8_to_planar(
        fk.Device.CUDA, device_frame.data_ptr(), stride, height, width, layout, fk.ScaleRule.MUL_RECIPROCAL,
        planar.data_ptr(), code, *padded, stream,
    )  # fmt: skip
    torch.cuda.synchronize()
    reference = cuda_kernels.frame_to_planar(frame, *padded, layout, dtype)
    assert _same_bits(planar.cpu().numpy(), reference)

    values = torch.from_numpy(_planar_values(np.random.default_rng(8), *padded).astype(dtype)).cuda()
    out = torch.full((height, stride), 77, dtype=torch.uint8, device="cuda")
    cuda_kernels.planar_to_u8(
        fk.Device.CUDA, values.data_ptr(), code, *padded, out.data_ptr(), stride, height, width, layout, stream
    )
    torch.cuda.synchronize()
    got = out.cpu().numpy()
    expected = cuda_kernels.planar_to_frame(values.cpu().numpy(), height, width, layout)
    assert np.array_equal(got[:, : width * layout.channels].reshape(height, width, -1), expected)
    assert np.all(got[:, width * layout.channels :] == 77)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda x: x.__name__)
def test_cuda_blend_matches_the_c_reference(cuda_kernels: fk.FrameKernels, dtype: type) -> None:
    import torch

    shape, overlap = (2, 3, 96, 136), 16
    tiles = plan_tiles(96, 136, 64, overlap, 8)
    reference = fk.NativeBlender(cuda_kernels, *shape, overlap)
    total = torch.empty(shape, dtype=torch.float32, device="cuda")
    weight = torch.empty(shape[2:], dtype=torch.float32, device="cuda")
    cuda_kernels.blend_clear(fk.Device.CUDA, total.data_ptr(), weight.data_ptr(), *shape)
    rng = np.random.default_rng(11)
    for tile in tiles:
        values = rng.standard_normal((2, 3, tile.height, tile.width)).astype(dtype)
        reference.add(tile, values)
        device_values = torch.from_numpy(values).cuda()
        cuda_kernels.blend_add(
            fk.Device.CUDA, total.data_ptr(), weight.data_ptr(), shape, overlap, device_values.data_ptr(),
            fk.dtype_code(dtype), tile,
        )  # fmt: skip
    out = torch.empty_like(total)
    cuda_kernels.blend_normalize(fk.Device.CUDA, total.data_ptr(), weight.data_ptr(), out.data_ptr(), shape)
    torch.cuda.synchronize()
    assert _same_bits(weight.cpu().numpy(), reference.weight)
    assert _same_bits(out.cpu().numpy(), reference.result())


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda x: x.__name__)
def test_cuda_counts_nan_and_inf_like_the_c_reference(cuda_kernels: fk.FrameKernels, dtype: type) -> None:
    import torch

    planar = np.random.default_rng(10).uniform(0, 1, size=(3, 48, 64)).astype(dtype)
    planar[:, ::7, ::5] = np.nan  # many per block, so the atomics really add up
    planar[1, 3, 4], planar[2, 40, 60] = np.inf, -np.inf
    expected_frame, expected_count = _to_frame_counting(cuda_kernels, planar, 45, 61)
    values = torch.from_numpy(planar).cuda()
    out = torch.empty((45, 61, 3), dtype=torch.uint8, device="cuda")
    count = torch.full((1,), -1, dtype=torch.int64, device="cuda")  # zeroed by the call
    stream = torch.cuda.current_stream().cuda_stream
    cuda_kernels.planar_to_u8(
        fk.Device.CUDA, values.data_ptr(), fk.dtype_code(dtype), 48, 64, out.data_ptr(), 61 * 3, 45, 61,
        fk.Layout.BGR, stream, nonfinite_count=count.data_ptr(),
    )  # fmt: skip
    torch.cuda.synchronize()
    assert int(count.item()) == expected_count > 0
    assert np.array_equal(out.cpu().numpy(), expected_frame)


@pytest.mark.gpu
def test_cuda_benchmark_reports_times(cuda_kernels: fk.FrameKernels) -> None:
    timings = cuda_kernels.cuda_benchmark(1080, 1920, 1088, 1920, fk.DType.FP16, 5)
    assert 0 < timings.to_planar_ms < 100 and 0 < timings.to_u8_ms < 100 and 0 < timings.upload_ms < 1000
