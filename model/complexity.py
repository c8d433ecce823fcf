"""Multiply-accumulate counts of the inference path, measured by hooks on a real forward.

Counts convs, linears and the matmuls inside attention and the decomposed path (via
torch.utils.flop_counter, which sees every aten matmul/conv); elementwise ops are ignored,
as is usual for GMAC figures.
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from model.config import ModelConfig
from model.unfoldldm import UnfoldLDM, count_parameters


def inference_gmac(model: UnfoldLDM, height: int, width: int) -> float:
    """GMAC of one forward pass at (height, width); FlopCounterMode counts 2 FLOPs per MAC."""
    y = torch.zeros(1, 3, height, width)
    noise = torch.zeros(1, model.config.prior_dim)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(y, noise)
    return counter.get_total_flops() / 2e9


def describe(config: ModelConfig, sizes: tuple[tuple[int, int], ...] = ((256, 256), (720, 1280))) -> dict[str, float]:
    model = UnfoldLDM(config).eval()
    row: dict[str, float] = {"params_m": count_parameters(model) / 1e6}
    for h, w in sizes:
        row[f"gmac_{w}x{h}"] = inference_gmac(model, h, w)
    return row
