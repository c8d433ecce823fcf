"""Inference forms of the OCFormer blocks that export to CPU-friendlier graphs, from the same weights.

Training keeps the forms of model/ocformer.py; the export writes those in `KEPT_FORMS`
(docs/BENCHMARKS.md, "CPU-shaped graphs"). Each is the same function up to float rounding,
checked by the export's parity check against the unchanged model:

- `split_projections`: `chunk()` of one convolution's output into q/k/v (attention) or
  gate/value (feed-forward) exports as Slice nodes whose start and end are computed at run time,
  and each Slice copies a full-resolution tensor. The 1x1 convolution and the depthwise 3x3 after
  it are split by output channel instead: one pair per part, no copy.
- `fold_modulation`: `ChannelNorm` ends in `* weight + bias` and the prior modulation then does
  `* (1 + s) + t`, four full-resolution elementwise ops per norm. Both are per-channel affine
  maps, and s and t are linear in the prior z, so the composition is one scale and one shift that
  are linear maps of z: two full-resolution ops per norm, the maps folded into four small Linears.
- `fold_haar_mask`: the Haar branch's high-band mask is folded into the analysis filters and into the last
  convolution of its body (zero rows for the LL band), so no full-resolution mask multiplication
  is left; the gate multiplication stays.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from model.ocformer import ChannelAttention, ChannelNorm, GatedFeedForward, HaarHighFrequency, PriorBlock


def _conv_part(conv: nn.Conv2d, start: int, stop: int) -> nn.Conv2d:
    """Output channels [start, stop) of `conv` as a convolution of their own (a depthwise conv
    takes the matching input channels too)."""
    depthwise = conv.groups == conv.in_channels == conv.out_channels
    channels = stop - start
    part = nn.Conv2d(
        channels if depthwise else conv.in_channels,
        channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        groups=channels if depthwise else conv.groups,
        bias=conv.bias is not None,
    )
    with torch.no_grad():
        part.weight.copy_(conv.weight[start:stop])
        if conv.bias is not None:
            part.bias.copy_(conv.bias[start:stop])
    return part


def _split_pairs(pointwise: nn.Conv2d, depthwise: nn.Conv2d, parts: int) -> nn.ModuleList:
    size = pointwise.out_channels // parts
    return nn.ModuleList(
        nn.Sequential(_conv_part(pointwise, i * size, (i + 1) * size), _conv_part(depthwise, i * size, (i + 1) * size))
        for i in range(parts)
    )


class SplitChannelAttention(nn.Module):
    """ChannelAttention with q, k and v each from its own 1x1 + depthwise 3x3 pair."""

    def __init__(self, attn: ChannelAttention) -> None:
        super().__init__()
        self.heads = attn.heads
        self.temperature = attn.temperature
        self.q, self.k, self.v = _split_pairs(attn.qkv, attn.qkv_dw, 3)
        self.project = attn.project

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        shape = (b, self.heads, c // self.heads, h * w)
        q = F.normalize(self.q(x).reshape(shape), dim=-1)
        k = F.normalize(self.k(x).reshape(shape), dim=-1)
        v = self.v(x).reshape(shape)
        attn = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * self.temperature, dim=-1)
        return self.project(torch.matmul(attn, v).reshape(b, c, h, w))


class SplitGatedFeedForward(nn.Module):
    """GatedFeedForward with the gate and the value each from its own 1x1 + depthwise 3x3 pair."""

    def __init__(self, ffn: GatedFeedForward) -> None:
        super().__init__()
        self.gate, self.value = _split_pairs(ffn.expand, ffn.dw, 2)
        self.shrink = ffn.shrink

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shrink(F.gelu(self.gate(x)) * self.value(x))


def _normalized(x: torch.Tensor, eps: float) -> torch.Tensor:
    """ChannelNorm without its affine: (x - mean) / sqrt(var + eps) over channels."""
    centred = x - x.mean(dim=1, keepdim=True)
    return centred * torch.rsqrt((centred * centred).mean(dim=1, keepdim=True) + eps)


def _affine_of_prior(norm: ChannelNorm, s: nn.Linear, t: nn.Linear) -> tuple[nn.Linear, nn.Linear]:
    """Linears of z giving scale = w * (1 + s(z)) and shift = b * (1 + s(z)) + t(z)."""
    w, b = norm.weight.reshape(-1, 1), norm.bias.reshape(-1, 1)
    scale, shift = nn.Linear(s.in_features, s.out_features), nn.Linear(s.in_features, s.out_features)
    with torch.no_grad():
        scale.weight.copy_(w * s.weight)
        scale.bias.copy_(w[:, 0] * (1 + s.bias))
        shift.weight.copy_(b * s.weight + t.weight)
        shift.bias.copy_(b[:, 0] * (1 + s.bias) + t.bias)
    return scale, shift


def _linear_rows(linear: nn.Linear, start: int, stop: int) -> nn.Linear:
    part = nn.Linear(linear.in_features, stop - start)
    with torch.no_grad():
        part.weight.copy_(linear.weight[start:stop])
        part.bias.copy_(linear.bias[start:stop])
    return part


class FoldedPriorBlock(nn.Module):
    """PriorBlock with each norm's affine and its prior modulation as one scale and one shift."""

    def __init__(self, block: PriorBlock) -> None:
        super().__init__()
        c = block.norm1.weight.shape[1]
        s1, t1, s2, t2 = (_linear_rows(block.modulation, i * c, (i + 1) * c) for i in range(4))
        self.scale1, self.shift1 = _affine_of_prior(block.norm1, s1, t1)
        self.scale2, self.shift2 = _affine_of_prior(block.norm2, s2, t2)
        self.eps1, self.eps2 = block.norm1.eps, block.norm2.eps
        self.attn, self.ffn = block.attn, block.ffn

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        def per_channel(linear: nn.Linear) -> torch.Tensor:
            return linear(z)[:, :, None, None]

        x = x + self.attn(_normalized(x, self.eps1) * per_channel(self.scale1) + per_channel(self.shift1))
        return x + self.ffn(_normalized(x, self.eps2) * per_channel(self.scale2) + per_channel(self.shift2))


class MaskFoldedHaar(nn.Module):
    """HaarHighFrequency with its LL mask folded into the analysis filters and the body's last conv."""

    def __init__(self, haar: HaarHighFrequency) -> None:
        super().__init__()
        self.channels = haar.channels
        mask = haar.high_mask.reshape(-1)
        self.register_buffer("analysis", haar.filters * mask.view(-1, 1, 1, 1), persistent=False)
        self.register_buffer("synthesis", haar.filters.clone(), persistent=False)
        body = copy.deepcopy(haar.body)
        last = body[-1]
        with torch.no_grad():
            last.weight.mul_(mask.view(-1, 1, 1, 1))
            last.bias.mul_(mask)
        self.body, self.gate, self.out = body, haar.gate, haar.out

    def forward(self, feat: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        bands = F.conv2d(feat, self.analysis, stride=2, groups=self.channels)
        refined = self.body(bands) * torch.sigmoid(self.gate(z))[:, :, None, None]
        detail = F.conv_transpose2d(refined, self.synthesis, stride=2, groups=self.channels)
        return self.out(detail)


FORMS = ("split_projections", "fold_modulation", "fold_haar_mask")
# What export/build.py writes: the forms that measured faster on both CPU backends. None did
# (export/graph_forms_bench.py, docs/BENCHMARKS.md "Graph forms": split_projections was 6 % slower
# on OpenVINO in two runs, the others within the run-to-run noise of a few percent), so the
# graphs are exported from the training modules; the forms stay as measured alternatives.
KEPT_FORMS: tuple[str, ...] = ()


def export_form(model: nn.Module, forms: tuple[str, ...] = FORMS) -> nn.Module:
    """A copy of `model` (eval mode) with the chosen forms substituted; `model` is not changed."""
    unknown = set(forms) - set(FORMS)
    if unknown:
        raise ValueError(f"unknown graph forms {sorted(unknown)} (choose from {', '.join(FORMS)})")
    form = copy.deepcopy(model).eval()
    for parent in list(form.modules()):
        for name, child in list(parent.named_children()):
            if "split_projections" in forms and isinstance(child, ChannelAttention):
                setattr(parent, name, SplitChannelAttention(child))
            elif "split_projections" in forms and isinstance(child, GatedFeedForward):
                setattr(parent, name, SplitGatedFeedForward(child))
            elif "fold_haar_mask" in forms and isinstance(child, HaarHighFrequency):
                setattr(parent, name, MaskFoldedHaar(child))
    if "fold_modulation" in forms:
        for parent in list(form.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, PriorBlock):
                    setattr(parent, name, FoldedPriorBlock(child))
    return form
