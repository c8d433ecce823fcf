"""UnfoldLDM: K unfolding stages of gradient half -> prior -> proximal half.

Per stage k, starting from x_0 = y:
    v_k = MGDA_k(x_{k-1}, y)          `gradient_step`
    z_k = Prior(v_k, noise, k)        `prior_step` (condition encoder + T-step sampler)
    x_k = OCFormer_k(v_k, z_k)        `proximal_step`
`forward` is inference only and tensor-in/tensor-out; export takes the three methods one by one.
Training uses `training_stages`, which can feed the GT-aware target prior instead (phase 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from model.config import ModelConfig
from model.drldm import DRLDM
from model.mgda import MGDA
from model.ocformer import OCFormer

PRIOR_MODES = ("target", "sampled", "sampled_teacher")


@dataclass
class StageOutputs:
    """Everything the losses need from one training pass."""

    restored: list[torch.Tensor]  # x_1 .. x_K
    sampled_priors: list[torch.Tensor]  # z_k from the sampler (empty in phase 1)
    target_priors: list[torch.Tensor]  # z*_k from the GT-aware encoder
    consistency: torch.Tensor  # ISDA term summed over stages


class UnfoldLDM(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        copies = 1 if config.share_stage_weights else config.stages
        self.gradient_steps = nn.ModuleList(MGDA(config) for _ in range(copies))
        self.proximal_steps = nn.ModuleList(OCFormer(config) for _ in range(copies))
        self.prior = DRLDM(config) if config.use_prior else None

    def _index(self, stage: int) -> int:
        return 0 if self.config.share_stage_weights else stage

    def gradient_step(self, stage: int, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.gradient_steps[self._index(stage)](x, y)

    def prior_step(self, v: torch.Tensor, noise: torch.Tensor, stage: torch.Tensor) -> torch.Tensor:
        """The `prior` graph: z_k from v_k alone; `stage` is an int64 tensor of shape (B,)."""
        if self.prior is None:
            return noise.new_zeros(v.shape[0], self.config.prior_dim)
        return self.prior(v, noise, stage)

    def proximal_step(self, stage: int, v: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.proximal_steps[self._index(stage)](v, z)

    @staticmethod
    def stage_tensor(stage: int, like: torch.Tensor) -> torch.Tensor:
        return torch.full((like.shape[0],), stage, dtype=torch.long, device=like.device)

    def forward(self, y: torch.Tensor, noise: torch.Tensor, stages: int | None = None) -> torch.Tensor:
        """Restore y (B,3,H,W in [0,1], H and W multiples of pad_multiple) with given prior noise.

        `stages` runs only the first stages (every stage output is a valid image).
        """
        x = y
        for k in range(self.config.stages if stages is None else stages):
            v = self.gradient_step(k, x, y)
            z = self.prior_step(v, noise, self.stage_tensor(k, y))
            x = self.proximal_step(k, v, z)
        return x

    def training_stages(self, y: torch.Tensor, gt: torch.Tensor, noise: torch.Tensor, prior_mode: str) -> StageOutputs:
        """One training pass.

        prior_mode: "target" (phase 1: the GT-aware prior drives OCFormer), "sampled_teacher"
        (phase 2 warm-up: OCFormer still gets the target prior, the sampler learns to match it),
        "sampled" (phase 2 joint: OCFormer gets the sampled prior, as at inference).
        """
        if prior_mode not in PRIOR_MODES:
            raise ValueError(f"prior_mode must be one of {PRIOR_MODES}, got {prior_mode!r}")
        out = StageOutputs([], [], [], y.new_zeros(()))
        x = y
        for k in range(self.config.stages):
            v, consistency = self.gradient_steps[self._index(k)].forward_with_consistency(x, y, gt)
            out.consistency = out.consistency + consistency
            stage = self.stage_tensor(k, y)
            if self.prior is None:
                z = y.new_zeros(y.shape[0], self.config.prior_dim)
            else:
                # In "sampled" mode the target only enters the prior loss, detached: no graph for it.
                with torch.set_grad_enabled(torch.is_grad_enabled() and prior_mode != "sampled"):
                    target = self.prior.target_prior(v, gt, stage)
                out.target_priors.append(target)
                z = target
                if prior_mode != "target":
                    sampled = self.prior(v, noise, stage)
                    out.sampled_priors.append(sampled)
                    if prior_mode == "sampled":
                        z = sampled
            x = self.proximal_step(k, v, z)
            out.restored.append(x)
        return out


def count_parameters(model: nn.Module, exclude_training_only: bool = True) -> int:
    """Parameters used at inference (the GT-aware encoder exists only for training)."""
    total = sum(p.numel() for p in model.parameters())
    if exclude_training_only and isinstance(model, UnfoldLDM) and model.prior is not None:
        total -= sum(p.numel() for p in model.prior.gt_encoder.parameters())
    return total
