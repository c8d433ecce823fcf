"""model/ablation.py on the tiny model: every variant trains, is scored, and a rerun only re-scores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from model.ablation import main, matched_single_stage, variant_config
from model.complexity import describe
from model.config import named_config


def test_variants_switch_off_one_part_each() -> None:
    base = named_config("edge")
    assert not variant_config(base, "no_prior").use_prior
    assert variant_config(base, "holistic_only").mgda_mode == "holistic"
    assert not variant_config(base, "no_high_freq").use_high_freq
    single = matched_single_stage(base)
    assert single.stages == 1 and single.dim > base.dim
    full_gmac = describe(base, ((256, 256),))["gmac_256x256"]
    single_gmac = describe(single, ((256, 256),))["gmac_256x256"]
    assert abs(single_gmac - full_gmac) / full_gmac < 0.1, (single_gmac, full_gmac)


def test_dim_must_be_even() -> None:
    with pytest.raises(ValueError, match="dim must be even"):
        named_config("edge", dim=27)


@pytest.mark.slow
def test_tiny_ablation_trains_scores_and_resumes(shared_data: Path, tmp_path: Path, capsys) -> None:
    torch.set_num_threads(1)
    args = ["--size", "tiny", "--iters", "6", "--val-images", "2", "--val-crop", "32", "--crop", "32",
            "--batch-size", "2", "--val", str(shared_data / "val" / "CBSD68"), "--out", str(tmp_path / "abl")]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert first.count("training ") == 5
    rows = {r["variant"]: r for r in json.loads((tmp_path / "abl" / "ablation.json").read_text())}
    assert set(rows) == {"full", "no_prior", "holistic_only", "no_high_freq", "single_stage"}
    assert rows["no_prior"]["gmac"] < rows["full"]["gmac"]
    for row in rows.values():
        assert set(row["psnr"]) == {"noise25", "gauss_blur", "jpeg20", "mixed"}
        assert all(5.0 < v < 60.0 for v in row["psnr"].values())
    # Without the JSON, a rerun finds every model.pt and only scores again, to the same numbers.
    (tmp_path / "abl" / "ablation.json").unlink()
    assert main(args) == 0
    assert "training " not in capsys.readouterr().out
    again = {r["variant"]: r for r in json.loads((tmp_path / "abl" / "ablation.json").read_text())}
    assert again["full"]["psnr"] == rows["full"]["psnr"]
    # With the checkpoints gone, the JSON alone carries the finished rows to the next run...
    for model_file in (tmp_path / "abl").glob("*/model.pt"):
        model_file.unlink()
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "training " not in out and out.count("kept ") == 5
    # ...but only for the same scoring set: another crop size retrains the variant asked for.
    assert main([*args, "--val-crop", "48", "--variants", "full"]) == 0
    assert capsys.readouterr().out.count("training ") == 1
    # The file keeps the five earlier rows beside the new one.
    final = json.loads((tmp_path / "abl" / "ablation.json").read_text())
    assert sorted((r["variant"], r["scored_on"]["crop"]) for r in final) == sorted(
        [(name, 32) for name in rows] + [("full", 48)]
    )


def test_a_model_without_prior_gets_no_warmup(tmp_path: Path) -> None:
    from model.ablation import schedule
    from model.training import TrainSettings

    with_prior, without = named_config("edge"), named_config("edge", use_prior=False)
    assert schedule(2000, with_prior) == (1260, 100, 640)
    assert schedule(2000, without) == (1360, 0, 640)  # same total, same joint share
    with pytest.raises(ValueError, match="no warm-up phase"):
        TrainSettings(config=without, out_dir=tmp_path, phase1_iters=10, warmup_iters=1, joint_iters=1)


def test_rows_file_of_the_wrong_shape_is_refused(tmp_path: Path) -> None:
    from model.ablation import read_rows
    from runtime.errors import UnfoldError

    path = tmp_path / "ablation.json"
    row = json.loads((Path(__file__).resolve().parents[2] / "docs" / "ablation_2000.json").read_text())[0]
    wrong_types = [
        {**row, "gmac": "6.88"},
        {**row, "iters": 2000.5},
        {**row, "psnr": {**row["psnr"], "noise25": None}},
        {**row, "mean_psnr": True},
    ]
    texts = ['{"variant": "full"}', '[{"variant": "full"}]', "[1, 2]"] + [json.dumps([r]) for r in wrong_types]
    for text in texts:
        path.write_text(text)
        with pytest.raises(UnfoldError, match="not a list of ablation rows"):
            read_rows(path)
        assert path.read_text() == text  # refused, not rewritten


def test_committed_ablation_rows_are_found_again_by_what_they_measured() -> None:
    from model.ablation import finished_row, read_rows

    repo = Path(__file__).resolve().parents[2]
    rows = read_rows(repo / "docs" / "ablation_2000.json")
    base = named_config("edge")
    scored_on = {"folder": "CBSD68", "images": 68, "crop": 256}
    for row in rows:
        config = variant_config(base, row["variant"])
        assert finished_row(rows, row["variant"], 2000, config, scored_on) is row
        assert finished_row(rows, row["variant"], 1000, config, scored_on) is None
        assert finished_row(rows, row["variant"], 2000, config, {**scored_on, "crop": 128}) is None
