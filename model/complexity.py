"""Parameters and multiply-accumulates of the inference path, per named size.

MACs are counted by torch.utils.flop_counter on a real forward traced on the `meta` device
(shapes only, no arithmetic, so 720p `base` costs no time). It sees every aten conv and matmul,
including channel attention and the decomposed W X M path; elementwise ops are not counted,
as is usual for GMAC figures.

    python model/complexity.py
"""

from __future__ import annotations

import argparse
import sys

import torch
from torch.utils.flop_counter import FlopCounterMode

from model.config import ModelConfig, named_config
from model.unfoldldm import UnfoldLDM, count_parameters

SIZES = ((256, 256), (720, 1280))


def inference_gmac(model: UnfoldLDM, height: int, width: int) -> float:
    """GMAC of one forward pass at (height, width); FlopCounterMode counts 2 FLOPs per MAC."""
    device = next(model.parameters()).device
    y = torch.zeros(1, 3, height, width, device=device)
    noise = torch.zeros(1, model.config.prior_dim, device=device)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(y, noise)
    return counter.get_total_flops() / 2e9


def describe(config: ModelConfig, sizes: tuple[tuple[int, int], ...] = SIZES) -> dict[str, float]:
    with torch.device("meta"):
        model = UnfoldLDM(config).eval()
    row: dict[str, float] = {"params_m": count_parameters(model) / 1e6}
    for h, w in sizes:
        row[f"gmac_{w}x{h}"] = inference_gmac(model, h, w)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["edge", "small", "base"], help="named model sizes to list")
    args = parser.parse_args(argv)
    print(f"{'config':<8}{'K':>3}{'params (M)':>12}{'GMAC 256x256':>14}{'GMAC 1280x720':>15}")
    for name in args.sizes:
        config = named_config(name)
        row = describe(config)
        print(
            f"{name:<8}{config.stages:>3}{row['params_m']:>12.2f}{row['gmac_256x256']:>14.2f}{row['gmac_1280x720']:>15.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
