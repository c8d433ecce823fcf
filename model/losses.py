"""Training losses: stage-weighted L1, frequency L1, ISDA consistency and prior L1.

Only training uses these; the FFT here never enters an exported graph.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from model.unfoldldm import StageOutputs


@dataclass(frozen=True)
class LossWeights:
    frequency: float = 0.05
    consistency: float = 0.1
    prior: float = 1.0


def stage_weights(stages: int) -> list[float]:
    """Later stages weigh more, (k+1)/K, so the final output matters most but every x_k is an image."""
    return [(k + 1) / stages for k in range(stages)]


def frequency_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between FFT amplitudes, computed in float32 (half-precision FFTs lose too much)."""
    pred_amp = torch.fft.rfft2(pred.float(), norm="ortho").abs()
    target_amp = torch.fft.rfft2(target.float(), norm="ortho").abs()
    return F.l1_loss(pred_amp, target_amp)


def restoration_loss(out: StageOutputs, gt: torch.Tensor, weights: LossWeights) -> dict[str, torch.Tensor]:
    """Losses that train the image path (phase 1 and phase 2 joint)."""
    per_stage = stage_weights(len(out.restored))
    l1 = sum(w * F.l1_loss(x, gt) for w, x in zip(per_stage, out.restored, strict=True))
    freq = frequency_l1(out.restored[-1], gt)
    return {"l1": l1, "freq": weights.frequency * freq, "isda": weights.consistency * out.consistency}


def prior_loss(out: StageOutputs, weights: LossWeights) -> torch.Tensor:
    """L1 between the sampled prior and the (frozen) GT-aware target prior, summed over stages."""
    terms = [F.l1_loss(z, t.detach()) for z, t in zip(out.sampled_priors, out.target_priors, strict=True)]
    return weights.prior * sum(terms)
