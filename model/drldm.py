"""DR-LDM: the degradation-resistant latent diffusion prior (DiffIR lineage).

The prior is a compact vector per image. Phase 1 trains a GT-aware encoder (sees v_k and the
ground truth) that yields the target prior z*_k. Phase 2 trains a condition encoder that sees
v_k only and a small MLP denoiser that runs T deterministic reverse steps (x0-prediction,
DDIM with eta = 0) from given noise to reproduce z*_k. No random numbers are drawn here: the
starting noise is an argument, so the whole sampler is a pure function of its inputs.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from model.config import ModelConfig


def diffusion_schedule(steps: int, beta_start: float, beta_end: float) -> list[float]:
    """Cumulative alpha-bar for the sqrt-linear schedule: betas = linspace(sqrt(b0), sqrt(b1), T)^2.

    Pure Python so the manifest and the runtime can record and check the same constants.
    """
    if steps == 1:
        betas = [beta_start]
    else:
        lo, hi = math.sqrt(beta_start), math.sqrt(beta_end)
        betas = [(lo + (hi - lo) * i / (steps - 1)) ** 2 for i in range(steps)]
    alpha_bars, running = [], 1.0
    for beta in betas:
        running *= 1.0 - beta
        alpha_bars.append(running)
    return alpha_bars


class PriorEncoder(nn.Module):
    """Strided convs, global average pooling and an MLP head -> one prior vector per image.

    Global pooling makes the prior a property of the whole frame, so tiles can share it.
    """

    def __init__(self, in_channels: int, config: ModelConfig) -> None:
        super().__init__()
        c = config.prior_encoder_channels
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, c, 3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(c, 2 * c, 3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(2 * c, 4 * c, 3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(4 * c, 4 * c, 3, padding=1),
            nn.GELU(),
        )
        self.stage_embedding = nn.Embedding(config.stages, 4 * c)
        self.head = nn.Sequential(
            nn.Linear(4 * c, config.prior_hidden), nn.GELU(), nn.Linear(config.prior_hidden, config.prior_dim)
        )

    def forward(self, image: torch.Tensor, stage: torch.Tensor) -> torch.Tensor:
        pooled = self.body(image).mean(dim=(2, 3))
        return self.head(pooled + self.stage_embedding(stage))


class Denoiser(nn.Module):
    """MLP that predicts the clean prior z_0 from (z_t, condition, step)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        hidden = config.prior_hidden
        self.inp = nn.Linear(2 * config.prior_dim, hidden)
        self.step_embedding = nn.Embedding(config.diffusion_steps, hidden)
        self.body = nn.Sequential(
            nn.LeakyReLU(0.1),
            nn.Linear(hidden, hidden),
            nn.LeakyReLU(0.1),
            nn.Linear(hidden, hidden),
            nn.LeakyReLU(0.1),
            nn.Linear(hidden, config.prior_dim),
        )

    def forward(self, z_t: torch.Tensor, condition: torch.Tensor, step: int) -> torch.Tensor:
        h = self.inp(torch.cat([z_t, condition], dim=1)) + self.step_embedding.weight[step]
        return self.body(h)


class DRLDM(nn.Module):
    """GT-aware encoder (phase 1), condition encoder + T-step sampler (phase 2 and inference)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.steps = config.diffusion_steps
        self.gt_encoder = PriorEncoder(6, config)
        self.condition_encoder = PriorEncoder(3, config)
        self.denoiser = Denoiser(config)
        alpha_bars = torch.tensor(diffusion_schedule(config.diffusion_steps, config.beta_start, config.beta_end))
        # Buffers, not parameters: constants of the schedule, recorded in the manifest.
        self.register_buffer("sqrt_alpha_bar", alpha_bars.sqrt(), persistent=False)
        self.register_buffer("sqrt_one_minus_alpha_bar", (1 - alpha_bars).sqrt(), persistent=False)

    def target_prior(self, v: torch.Tensor, gt: torch.Tensor, stage: torch.Tensor) -> torch.Tensor:
        return self.gt_encoder(torch.cat([v, gt], dim=1), stage)

    def sample(self, condition: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Deterministic reverse process from z_T = noise; x0-prediction, DDIM (eta = 0)."""
        z = noise
        for step in reversed(range(self.steps)):
            z0 = self.denoiser(z, condition, step)
            if step == 0:
                return z0
            eps = (z - self.sqrt_alpha_bar[step] * z0) / self.sqrt_one_minus_alpha_bar[step]
            z = self.sqrt_alpha_bar[step - 1] * z0 + self.sqrt_one_minus_alpha_bar[step - 1] * eps
        raise AssertionError("unreachable: steps >= 1")

    def forward(self, v: torch.Tensor, noise: torch.Tensor, stage: torch.Tensor) -> torch.Tensor:
        """The `prior` graph: condition encoder on v_k, then the whole sampler."""
        return self.sample(self.condition_encoder(v, stage), noise)
