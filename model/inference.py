"""Eager PyTorch inference on whole images: padding to the model multiple and the prior noise.

The sampler's starting noise comes from the exported pipeline's own rule (`runtime.pipeline.
noise_from_seed`, recorded in the manifest), the same for every image and every stage, so eager
evaluation scores exactly what the exported graphs compute.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from model.config import ModelConfig
from model.unfoldldm import UnfoldLDM
from runtime.pipeline import noise_from_seed


def prior_noise(config: ModelConfig, batch: int = 1) -> torch.Tensor:
    noise = noise_from_seed(config.noise_seed, (1, config.prior_dim))
    return torch.from_numpy(noise).expand(batch, -1).contiguous()


@torch.no_grad()
def restore_array(model: UnfoldLDM, image: np.ndarray, stages: int | None = None) -> np.ndarray:
    """Restore one HxWx3 float32 image in [0, 1]; any size, reflect-padded to the model multiple."""
    h, w = image.shape[:2]
    m = model.config.pad_multiple
    x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).unsqueeze(0)
    pad_h, pad_w = (-h) % m, (-w) % m
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
    out = model(x, prior_noise(model.config), stages=stages)[0, :, :h, :w]
    return out.clamp(0, 1).permute(1, 2, 0).numpy()
