"""PSNR/SSIM per degradation case: degraded input, OpenCV non-local means, and UnfoldLDM.

The library; model/evaluate.py is the command that prints, writes and plots its results.

Degraded inputs come from `apply_case(clean, case, seed=image_index)`, so every run scores the
same inputs. Non-local means is tuned per case: its strength h is the one from a grid that
gives the best mean PSNR on the first few images of that case (an oracle choice in its favour).
The model runs through one or more restorers: eager PyTorch ("unfoldldm") and, given exported
artifacts, the ONNX Runtime pipeline ("onnxruntime"), scored on the very same inputs.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from model.degradations import apply_case
from runtime import image_io
from runtime.atomic_io import atomic_write_bytes
from runtime.metrics import psnr, ssim

METHODS = ("input", "nlm", "unfoldldm", "onnxruntime", "openvino")
NLM_STRENGTHS = (3.0, 6.0, 10.0, 15.0, 22.0, 30.0)
LABELS = {
    "input": "input",
    "nlm": "NLM",
    "unfoldldm": "UnfoldLDM",
    "onnxruntime": "ORT",
    "openvino": "OV",
    "ground truth": "GT",
}
# HxWx3 float32 [0, 1] in, same out.
Restorer = Callable[[np.ndarray], np.ndarray]


@dataclass
class CaseResult:
    case: str
    nlm_strength: float | None
    scores: dict[str, list[tuple[float, float]]] = field(default_factory=lambda: {m: [] for m in METHODS})
    examples: dict[str, np.ndarray] = field(default_factory=dict)  # method -> first image, for the grid

    def mean(self, method: str) -> tuple[float, float]:
        values = np.array(self.scores[method])
        return float(values[:, 0].mean()), float(values[:, 1].mean())


def nlm(image: np.ndarray, strength: float) -> np.ndarray:
    u8 = np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)
    return cv2.fastNlMeansDenoisingColored(u8, None, strength, strength, 7, 21).astype(np.float32) / 255


def best_nlm_strength(pairs: Sequence[tuple[np.ndarray, np.ndarray]], strengths: Sequence[float]) -> float:
    """The grid strength with the best mean PSNR on these (degraded, clean) pairs."""
    means = [np.mean([psnr(nlm(lq, s), gt) for lq, gt in pairs]) for s in strengths]
    return float(strengths[int(np.argmax(means))])


def centre_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The centre size x size (each side capped at the image's); the whole image when size <= 0."""
    if size <= 0:
        return image
    h, w = image.shape[:2]
    return image_io.centre_crop(image, min(size, h), min(size, w))


def evaluate(
    images: Sequence[np.ndarray],
    cases: Sequence[str],
    restorers: Mapping[str, Restorer],
    kernels: Sequence[np.ndarray] = (),
    nlm_strengths: Sequence[float] = NLM_STRENGTHS,
    nlm_tuning_images: int = 4,
    desc: str = "evaluate",
) -> list[CaseResult]:
    """Score every case on every clean image (HxWx3 float32 in [0, 1]) with every restorer."""
    unknown = sorted(set(restorers) - set(METHODS))
    if unknown:
        raise ValueError(f"unknown restorer names {unknown} (known: {', '.join(METHODS)})")
    results = []
    progress = tqdm(total=len(cases) * len(images), desc=desc, dynamic_ncols=True)
    for case in cases:
        degraded = [apply_case(clean, case, seed=i, kernels=kernels) for i, clean in enumerate(images)]
        strength = None
        if nlm_strengths:
            tuning = list(zip(degraded, images, strict=True))[:nlm_tuning_images]
            strength = best_nlm_strength(tuning, nlm_strengths)
        result = CaseResult(case, strength)
        for i, (lq, gt) in enumerate(zip(degraded, images, strict=True)):
            outputs = {"input": lq, **{name: restore(lq) for name, restore in restorers.items()}}
            if strength is not None:
                outputs["nlm"] = nlm(lq, strength)
            for method, out in outputs.items():
                result.scores[method].append((psnr(out, gt), ssim(out, gt)))
                if i == 0:
                    result.examples[method] = out
            if i == 0:
                result.examples["ground truth"] = gt
            progress.update(1)
        results.append(result)
    progress.close()
    return results


def largest_gap_db(results: Sequence[CaseResult], a: str = "unfoldldm", b: str = "onnxruntime") -> float:
    """Largest |mean PSNR(a) - mean PSNR(b)| over the cases: how far two restorers disagree."""
    return max(abs(r.mean(a)[0] - r.mean(b)[0]) for r in results)


def format_table(results: Sequence[CaseResult]) -> str:
    methods = [m for m in METHODS if results and results[0].scores[m]]
    header = f"{'case':<12}" + "".join(f"{m + ' PSNR/SSIM':>24}" for m in methods) + f"{'NLM h':>8}"
    lines = [header, "-" * len(header)]
    for r in results:
        cells = "".join(f"{r.mean(m)[0]:>15.2f} / {r.mean(m)[1]:.3f}" for m in methods)
        h = f"{r.nlm_strength:>8.0f}" if r.nlm_strength is not None else f"{'-':>8}"
        lines.append(f"{r.case:<12}{cells}{h}")
    return "\n".join(lines)


def write_csv(results: Mapping[str, Sequence[CaseResult]], path: Path) -> None:
    """One row per dataset, case and method: mean PSNR/SSIM over its images."""
    text = io.StringIO()
    out = csv.writer(text)
    out.writerow(["dataset", "case", "method", "psnr_db", "ssim", "images", "nlm_strength"])
    for dataset, rows in results.items():
        for r in rows:
            for m in METHODS:
                if r.scores[m]:
                    p, s = r.mean(m)
                    out.writerow([dataset, r.case, m, f"{p:.4f}", f"{s:.5f}", len(r.scores[m]), r.nlm_strength or ""])
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, text.getvalue().encode())


def _cell(image: np.ndarray, label: str, tile: int) -> np.ndarray:
    crop = centre_crop(image, tile)
    cell = cv2.cvtColor(np.clip(np.rint(crop * 255), 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR)
    cell = cv2.copyMakeBorder(cell, 18, 2, 2, 2, cv2.BORDER_CONSTANT, value=(255, 255, 255))
    cv2.putText(cell, label, (3, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.36, (0, 0, 0), 1, cv2.LINE_AA)
    return cell


def _write_png(rows: Sequence[np.ndarray], path: Path) -> None:
    width = max(row.shape[1] for row in rows)
    grid = np.vstack(
        [cv2.copyMakeBorder(r, 0, 0, 0, width - r.shape[1], cv2.BORDER_CONSTANT, value=(255,) * 3) for r in rows]
    )
    ok, encoded = cv2.imencode(".png", grid)
    if not ok:
        raise OSError(f"could not encode {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, encoded.tobytes())


def write_grid(results: Sequence[CaseResult], path: Path, tile: int = 160) -> None:
    """One row per case: degraded | NLM | UnfoldLDM | ground truth, centre crops labelled with PSNR (dB)."""
    columns = [m for m in ("input", "nlm", "unfoldldm", "ground truth") if results and m in results[0].examples]
    rows = []
    for r in results:
        cells = []
        for method in columns:
            label = r.case if method == "input" else LABELS[method]
            if method in r.scores and r.scores[method]:
                label += f" {r.scores[method][0][0]:.1f}"
            cells.append(_cell(r.examples[method], label, tile))
        rows.append(np.hstack(cells))
    _write_png(rows, path)


def write_real_grid(pairs: Sequence[tuple[str, np.ndarray, np.ndarray]], path: Path, tile: int = 200) -> None:
    """Real degraded photos without ground truth: one row per (name, input, restored)."""
    rows = [np.hstack([_cell(lq, name, tile), _cell(out, "UnfoldLDM", tile)]) for name, lq, out in pairs]
    _write_png(rows, path)
