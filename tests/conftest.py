"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# The real data lives beside the repository, never inside it (third-party academic data).
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data` relative to the repository root; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (needed for this test)")
    return SHARED_DATA


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def _tensorrt_available() -> bool:
    # Not a bare `import tensorrt`: the installed stub package imports as an empty namespace.
    from runtime.errors import BackendUnavailable
    from runtime.trt_version import detect

    try:
        detect()
    except BackendUnavailable:
        return False
    return _cuda_available()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip `gpu` and `tensorrt` tests where the hardware or library is missing (never a pass)."""
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU; none here")
    skip_trt = pytest.mark.skip(reason="needs TensorRT on an NVIDIA GPU; not installed here")
    has_gpu = _cuda_available()
    has_trt = _tensorrt_available()
    for item in items:
        if "gpu" in item.keywords and not has_gpu:
            item.add_marker(skip_gpu)
        if "tensorrt" in item.keywords and not has_trt:
            item.add_marker(skip_trt)


# --------------------------------------------------------------------------- exported models
# Tiny random models exported into tmp folders (fast; export and runtime tests) and the `edge`
# model (slow tests): the shipped checkpoint when present, else random-initialised weights.

SHIPPED_CHECKPOINT = REPO_ROOT / "model" / "weights" / "edge.pt"


@dataclass
class ExportedModel:
    """A PyTorch model and the artifacts folder exported from it."""

    model: Any  # model.unfoldldm.UnfoldLDM, in eval mode
    artifacts: Path  # the folder holding manifest.json
    checkpoint: Path
    shipped: bool = False  # True: the shipped checkpoint; False: random weights


def _tiny_model(seed: int, **overrides: Any) -> Any:
    import torch

    from model.config import tiny_config
    from model.unfoldldm import UnfoldLDM

    torch.manual_seed(seed)
    model = UnfoldLDM(tiny_config(**overrides)).eval()
    # The prior modulation starts at zero (identity); randomise it so that the prior matters.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "modulation" in name:
                param.normal_(0.0, 0.05)
    return model


@pytest.fixture(scope="session")
def export_tiny(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., ExportedModel]:
    """`export_tiny(torch_programs=False, seed=0, **config_overrides)`: exported once per session."""
    cache: dict[tuple[Any, ...], ExportedModel] = {}

    def make(torch_programs: bool = False, seed: int = 0, **overrides: Any) -> ExportedModel:
        key = (torch_programs, seed, tuple(sorted(overrides.items())))
        if key not in cache:
            import torch

            from export.build import ExportOptions, build_from_checkpoint
            from model.checkpoint import Checkpoint, save_checkpoint

            torch.set_num_threads(1)
            model = _tiny_model(seed, **overrides)
            root = tmp_path_factory.mktemp("tiny")
            checkpoint = root / "tiny.pt"
            save_checkpoint(checkpoint, Checkpoint(config=model.config, model=model.state_dict(), phase="phase2_joint"))
            options = ExportOptions(torch_programs=torch_programs, threads=1, progress=False)
            build_from_checkpoint(checkpoint, root / "artifacts", "tiny", options)
            cache[key] = ExportedModel(model, root / "artifacts", checkpoint)
        return cache[key]

    return make


@pytest.fixture(scope="session")
def tiny_export(export_tiny: Callable[..., ExportedModel]) -> ExportedModel:
    """The tiny random model (2 stages, prior on), exported with ONNX graphs and torch programs."""
    return export_tiny(torch_programs=True)


@pytest.fixture(scope="session")
def edge_export(tmp_path_factory: pytest.TempPathFactory) -> ExportedModel:
    """The `edge` model exported to ONNX: the shipped checkpoint, else random weights (seed 0)."""
    import torch

    from export.build import ExportOptions, build_from_checkpoint
    from model.checkpoint import Checkpoint, load_model, save_checkpoint
    from model.config import named_config
    from model.unfoldldm import UnfoldLDM

    root = tmp_path_factory.mktemp("edge")
    if SHIPPED_CHECKPOINT.is_file():
        checkpoint, shipped = SHIPPED_CHECKPOINT, True
    else:
        torch.manual_seed(0)
        model = UnfoldLDM(named_config("edge"))
        checkpoint, shipped = root / "edge_random.pt", False
        save_checkpoint(checkpoint, Checkpoint(config=model.config, model=model.state_dict(), phase="phase1"))
    options = ExportOptions(
        torch_programs=False, parity_shapes=((1, 64, 96),), threads=torch.get_num_threads(), progress=False
    )
    build_from_checkpoint(checkpoint, root / "artifacts", "edge", options)
    model, _ = load_model(checkpoint)
    return ExportedModel(model, root / "artifacts", checkpoint, shipped)
