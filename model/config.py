"""Frozen model configurations and the named sizes `edge`, `small` and `base`.

Every choice the paper (arXiv 2511.18152) does not state is ours and is a field here, so it
can be switched off for ablation; each field's comment says which choices are ours.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

MGDA_MODES = ("both", "holistic", "decomposed")


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of UnfoldLDM. Sizes are per stage unless stated otherwise."""

    name: str = "edge"
    stages: int = 3  # K unfolding stages
    # MGDA (gradient half)
    mgda_mode: str = "both"  # holistic D/D^T nets, decomposed W X M, or both (ablation)
    holistic_channels: int = 8  # width of the small D and D^T conv nets (ours)
    decomposed_dim: int = 16  # row/column embedding width that generates W and M (ours)
    # The decomposed path costs h^2 w + h w^2 per channel, so it runs on a grid downsampled
    # by this factor and its gradient is upsampled back (ours; docs/MODEL_CARD.md).
    decomposed_scale: int = 4
    # DR-LDM prior
    use_prior: bool = True  # prior on/off (ablation); off feeds OCFormer a zero prior
    prior_dim: int = 64  # length of the compact prior vector (DiffIR uses 256)
    prior_hidden: int = 128  # width of the encoders' heads and the MLP denoiser
    prior_encoder_channels: int = 16  # first conv width of the prior encoders
    diffusion_steps: int = 4  # T deterministic reverse steps
    beta_start: float = 0.1  # sqrt-linear beta schedule, DiffIR's constants
    beta_end: float = 0.99
    noise_seed: int = 0  # seed the runtime uses for the sampler's starting noise
    # OCFormer (proximal half)
    dim: int = 16  # channels at full resolution
    levels: int = 3  # U-Net levels; channels double per level
    enc_blocks: tuple[int, ...] = (1, 1, 2)  # transformer blocks per encoder level (last = bottleneck)
    dec_blocks: tuple[int, ...] = (1, 1)  # per decoder level, from deepest to full resolution
    refine_blocks: int = 1
    heads: tuple[int, ...] = (1, 2, 4)  # channel-attention heads per level
    ffn_expansion: float = 2.0
    use_high_freq: bool = True  # Haar high-frequency branch on/off (ablation)
    share_stage_weights: bool = False  # one MGDA + OCFormer shared by all stages (ours)

    def __post_init__(self) -> None:
        if self.stages < 1:
            raise ValueError(f"stages must be >= 1, got {self.stages}")
        if self.mgda_mode not in MGDA_MODES:
            raise ValueError(f"mgda_mode must be one of {MGDA_MODES}, got {self.mgda_mode!r}")
        if len(self.enc_blocks) != self.levels or len(self.heads) != self.levels:
            raise ValueError("enc_blocks and heads need one entry per level")
        if len(self.dec_blocks) != self.levels - 1:
            raise ValueError("dec_blocks needs levels - 1 entries")
        for level, heads in enumerate(self.heads):
            if (self.dim * 2**level) % heads:
                raise ValueError(f"level {level}: {self.dim * 2**level} channels not divisible by {heads} heads")
        if self.dim < 2 or self.dim % 2:
            raise ValueError(f"dim must be even (the high-frequency branch halves it), got {self.dim}")
        if self.decomposed_scale < 1 or self.diffusion_steps < 1:
            raise ValueError("decomposed_scale and diffusion_steps must be >= 1")

    @property
    def pad_multiple(self) -> int:
        """Height and width must be multiples of this (U-Net levels, Haar, decomposed grid)."""
        unet = 2 ** (self.levels - 1)
        return math.lcm(unet, 2, self.decomposed_scale)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Build from a dict (checkpoint or manifest); unknown keys are an error, not ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(unknown)}")
        fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**fixed)


def named_config(name: str, **overrides: Any) -> ModelConfig:
    """One of the named sizes, optionally with fields replaced (for ablations and tests)."""
    presets = {
        "edge": ModelConfig(),
        "small": ModelConfig(
            name="small",
            stages=4,
            dim=24,
            holistic_channels=24,
            prior_dim=128,
            prior_hidden=256,
            prior_encoder_channels=24,
            enc_blocks=(2, 2, 2),
            dec_blocks=(2, 2),
            refine_blocks=2,
            heads=(1, 2, 4),
            ffn_expansion=2.0,
        ),
        "base": ModelConfig(
            name="base",
            stages=4,
            dim=32,
            holistic_channels=32,
            decomposed_dim=32,
            decomposed_scale=2,
            prior_dim=256,
            prior_hidden=512,
            prior_encoder_channels=32,
            levels=4,
            enc_blocks=(2, 2, 2, 3),
            dec_blocks=(2, 2, 2),
            refine_blocks=2,
            heads=(1, 2, 4, 8),
            ffn_expansion=2.66,
        ),
    }
    if name == "tiny":
        return tiny_config(**overrides)
    if name not in presets:
        raise ValueError(f"unknown model size {name!r}; choose one of {', '.join(presets)} (or tiny, for tests)")
    return dataclasses.replace(presets[name], **overrides)


def tiny_config(**overrides: Any) -> ModelConfig:
    """A very small random-initialised model for unit tests."""
    base = ModelConfig(
        name="tiny",
        stages=2,
        dim=8,
        holistic_channels=8,
        decomposed_dim=8,
        decomposed_scale=2,
        prior_dim=16,
        prior_hidden=32,
        prior_encoder_channels=8,
        levels=2,
        enc_blocks=(1, 1),
        dec_blocks=(1,),
        refine_blocks=0,
        heads=(1, 2),
        ffn_expansion=2.0,
    )
    return dataclasses.replace(base, **overrides)
