"""Training really learns, DDP really keeps replicas in sync, checkpoints really round-trip."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from model.checkpoint import Checkpoint, load_checkpoint, load_model, save_checkpoint
from model.config import named_config, tiny_config
from model.degradations import apply_case
from model.losses import LossWeights, restoration_loss
from model.training_record import format_rounds, read_history
from model.unfoldldm import UnfoldLDM
from runtime.errors import CheckpointError
from runtime.image_io import list_images, read_rgb8

REPO = Path(__file__).resolve().parents[2]


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / torch.mean((a.clamp(0, 1) - b) ** 2)))


def _real_batch(shared_data: Path, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    crops = []
    for path in list_images(shared_data / "val" / "CBSD68")[:2]:
        img = read_rgb8(path).astype(np.float32) / 255
        crops.append(img[100 : 100 + size, 100 : 100 + size])
    gt = np.stack(crops)
    lq = np.stack([apply_case(c, "noise25", seed=i) for i, c in enumerate(crops)])

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))

    return t(lq), t(gt)


def test_tiny_model_overfits_one_batch_by_6_db(shared_data: Path) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    lq, gt = _real_batch(shared_data)
    model = UnfoldLDM(tiny_config())
    noise = torch.zeros(lq.shape[0], model.config.prior_dim)
    with torch.no_grad():
        before = _psnr(model.training_stages(lq, gt, noise, "target").restored[-1], gt)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    for _ in range(150):
        loss = sum(restoration_loss(model.training_stages(lq, gt, noise, "target"), gt, LossWeights()).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        after = _psnr(model.training_stages(lq, gt, noise, "target").restored[-1], gt)
    assert after >= before + 6.0, f"PSNR {before:.2f} -> {after:.2f} dB"


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    model = UnfoldLDM(tiny_config())
    state = {k: v.clone() for k, v in model.state_dict().items()}
    path = tmp_path / "ck.pt"
    save_checkpoint(path, Checkpoint(config=model.config, model=state, phase="phase2_joint", step=7, interim=True))
    # weights_only=True must be able to read it: no pickled classes inside.
    torch.load(path, weights_only=True)
    loaded, ckpt = load_model(path)
    assert ckpt.config == model.config and ckpt.step == 7 and ckpt.interim and ckpt.phase == "phase2_joint"
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, state[k])
    assert not list(tmp_path.glob("*.tmp")), "atomic save left a temporary file"


def test_corrupt_and_wrong_checkpoints_name_the_problem(tmp_path: Path) -> None:
    model = UnfoldLDM(tiny_config())
    good = tmp_path / "good.pt"
    save_checkpoint(good, Checkpoint(config=model.config, model=model.state_dict(), phase="phase1"))

    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated.pt: not a checkpoint of ours"):
        load_checkpoint(truncated)

    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": model.state_dict()}, foreign)
    with pytest.raises(CheckpointError, match="not an UnfoldLDM-Edge checkpoint"):
        load_checkpoint(foreign)

    mismatched = tmp_path / "mismatched.pt"
    edge = named_config("edge")
    save_checkpoint(mismatched, Checkpoint(config=edge, model=model.state_dict(), phase="phase1"))
    with pytest.raises(CheckpointError, match="do not match the 'edge' config"):
        load_checkpoint(mismatched)

    reshaped = dict(model.state_dict())
    key = next(k for k in reshaped if k.endswith("embed.weight"))
    reshaped[key] = torch.zeros(1)
    bad_shape = tmp_path / "bad_shape.pt"
    save_checkpoint(bad_shape, Checkpoint(config=model.config, model=reshaped, phase="phase1"))
    with pytest.raises(CheckpointError, match=f"weight {key} has shape"):
        load_checkpoint(bad_shape)


def _tiny_train_folder(shared_data: Path, tmp_path: Path) -> Path:
    # Temporary copies for the test run only; nothing is added to the repository.
    folder = tmp_path / "train"
    folder.mkdir()
    for path in list_images(shared_data / "train")[:4]:
        shutil.copy(path, folder / path.name)
    return folder


def _train_cmd(launcher: list[str], data: Path, out: Path, extra: list[str]) -> list[str]:
    return launcher + [
        str(REPO / "model" / "train.py"),
        "--size",
        "tiny",
        "--data",
        str(data),
        "--val-images",
        "0",
        "--phase1-iters",
        "4",
        "--warmup-iters",
        "2",
        "--joint-iters",
        "2",
        "--batch-size",
        "2",
        "--crop",
        "32",
        "--save-every",
        "4",
        "--threads",
        "1",
        "--device",
        "cpu",
        "--out",
        str(out),
        *extra,
    ]


@pytest.mark.slow
def test_two_process_cpu_ddp_keeps_replicas_identical(shared_data: Path, tmp_path: Path) -> None:
    data = _tiny_train_folder(shared_data, tmp_path)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        _train_cmd(launcher, data, tmp_path / "run", []), capture_output=True, text=True, timeout=600, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ckpt = load_checkpoint(tmp_path / "run" / "model.pt")
    assert ckpt.step == 8 and ckpt.phase == "phase2_joint"
    assert ckpt.notes["log"]["replica_max_abs_diff"] == 0.0


@pytest.mark.slow
def test_resume_and_init_from(shared_data: Path, tmp_path: Path) -> None:
    data = _tiny_train_folder(shared_data, tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.run(
        _train_cmd([sys.executable], data, tmp_path / "a", []), capture_output=True, text=True, timeout=600, env=env
    )
    assert first.returncode == 0, first.stderr[-3000:]
    last = load_checkpoint(tmp_path / "a" / "last.pt")
    assert last.optimizer is not None and last.step == 8
    # Resuming a finished run changes nothing and keeps the step count.
    resumed = subprocess.run(
        _train_cmd([sys.executable], data, tmp_path / "a", ["--resume", str(tmp_path / "a" / "last.pt")]),
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert load_checkpoint(tmp_path / "a" / "model.pt").step == 8
    # Fine-tuning from given weights works; with a different model size it is refused clearly.
    first_model = str(tmp_path / "a" / "model.pt")
    validate = ["--val-images", "1", "--val-crop", "32", "--val-every", "4", "--init-from", first_model]
    tuned = subprocess.run(
        _train_cmd([sys.executable], data, tmp_path / "b", validate),
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert tuned.returncode == 0, tuned.stderr[-3000:]
    first_run = load_checkpoint(tmp_path / "a" / "model.pt").notes
    tuned_ckpt = load_checkpoint(tmp_path / "b" / "model.pt")
    assert tuned_ckpt.step == 8
    # The training record spans both rounds: the first run's time and schedule are carried along.
    (earlier,) = tuned_ckpt.notes["earlier_rounds"]
    assert earlier["seconds"] == first_run["seconds"] > 0 and earlier["iters"] == [4, 2, 2]
    history = read_history(tmp_path / "b" / "history.jsonl")
    assert [r["step"] for r in history] == [4, 8]
    for record in history:
        assert record["hours_total"] == pytest.approx(record["hours"] + first_run["seconds"] / 3600, abs=2e-4)
    assert "round 2:" in format_rounds(tuned_ckpt) and "round 3:" not in format_rounds(tuned_ckpt)
    edge = _train_cmd([sys.executable], data, tmp_path / "c", ["--init-from", str(tmp_path / "a" / "model.pt")])
    edge[edge.index("tiny")] = "edge"
    refused = subprocess.run(edge, capture_output=True, text=True, timeout=600, env=env)
    assert refused.returncode != 0
    assert "config differs" in refused.stderr
