"""OCFormer: the proximal half, a prior-modulated channel-attention U-Net (Restormer/DIRformer).

Every transformer block is modulated by the DR-LDM prior z (scale and shift from a linear map
of z, zero-initialised so an untrained modulation is the identity). A Haar high-frequency
branch, gated per sub-band channel by the prior, adds back the texture the gradient step
smoothed away. Output x_k = v_k + residual. Only convs, matmuls, softmax and elementwise ops:
no FFT, so every graph exports to ONNX and TensorRT.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.config import ModelConfig


class ChannelNorm(nn.Module):
    """LayerNorm over channels of an NCHW tensor, written out so it exports without transposes."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=1, keepdim=True)
        centred = x - mean
        var = (centred * centred).mean(dim=1, keepdim=True)
        return centred * torch.rsqrt(var + self.eps) * self.weight + self.bias


class ChannelAttention(nn.Module):
    """Restormer MDTA: attention across channels (C x C per head), linear in the pixel count."""

    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(1, heads, 1, 1))
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.qkv_dw = nn.Conv2d(3 * channels, 3 * channels, 3, padding=1, groups=3 * channels)
        self.project = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv_dw(self.qkv(x)).chunk(3, dim=1)
        q = F.normalize(q.reshape(b, self.heads, c // self.heads, h * w), dim=-1)
        k = F.normalize(k.reshape(b, self.heads, c // self.heads, h * w), dim=-1)
        v = v.reshape(b, self.heads, c // self.heads, h * w)
        attn = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * self.temperature, dim=-1)
        return self.project(torch.matmul(attn, v).reshape(b, c, h, w))


class GatedFeedForward(nn.Module):
    """Restormer GDFN: depthwise-conv gated GELU feed-forward."""

    def __init__(self, channels: int, expansion: float) -> None:
        super().__init__()
        hidden = int(channels * expansion)
        self.expand = nn.Conv2d(channels, 2 * hidden, 1)
        self.dw = nn.Conv2d(2 * hidden, 2 * hidden, 3, padding=1, groups=2 * hidden)
        self.shrink = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.dw(self.expand(x)).chunk(2, dim=1)
        return self.shrink(F.gelu(gate) * value)


class PriorBlock(nn.Module):
    """Transformer block whose two norms are modulated by the prior: norm(x) * (1 + s) + t."""

    def __init__(self, channels: int, heads: int, expansion: float, prior_dim: int) -> None:
        super().__init__()
        self.norm1 = ChannelNorm(channels)
        self.attn = ChannelAttention(channels, heads)
        self.norm2 = ChannelNorm(channels)
        self.ffn = GatedFeedForward(channels, expansion)
        self.modulation = nn.Linear(prior_dim, 4 * channels)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        s1, t1, s2, t2 = self.modulation(z)[:, :, None, None].chunk(4, dim=1)
        x = x + self.attn(self.norm1(x) * (1 + s1) + t1)
        return x + self.ffn(self.norm2(x) * (1 + s2) + t2)


class HaarHighFrequency(nn.Module):
    """Haar DWT of the features, prior-gated refinement of LH/HL/HH, inverse DWT back.

    The orthonormal Haar filters are a fixed grouped stride-2 conv; being orthonormal, the
    inverse is the transposed conv with the same weights. The LL band is masked out, so the
    branch can only add high-frequency detail.
    """

    def __init__(self, channels: int, prior_dim: int) -> None:
        super().__init__()
        haar = (
            torch.tensor(
                [[[1, 1], [1, 1]], [[1, 1], [-1, -1]], [[1, -1], [1, -1]], [[1, -1], [-1, 1]]], dtype=torch.float32
            )
            / 2
        )
        self.channels = channels
        self.register_buffer("filters", haar.unsqueeze(1).repeat(channels, 1, 1, 1), persistent=False)
        mask = torch.tensor([0.0, 1.0, 1.0, 1.0]).repeat(channels)
        self.register_buffer("high_mask", mask.view(1, -1, 1, 1), persistent=False)
        bands = 4 * channels
        self.body = nn.Sequential(
            nn.Conv2d(bands, 2 * channels, 1),
            nn.GELU(),
            nn.Conv2d(2 * channels, 2 * channels, 3, padding=1, groups=2 * channels),
            nn.GELU(),
            nn.Conv2d(2 * channels, bands, 1),
        )
        self.gate = nn.Linear(prior_dim, bands)
        self.out = nn.Conv2d(channels, 3, 3, padding=1)

    def forward(self, feat: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        bands = F.conv2d(feat, self.filters, stride=2, groups=self.channels) * self.high_mask
        gate = torch.sigmoid(self.gate(z))[:, :, None, None]
        refined = self.body(bands) * gate * self.high_mask
        detail = F.conv_transpose2d(refined, self.filters, stride=2, groups=self.channels)
        return self.out(detail)


class OCFormer(nn.Module):
    """Prior-modulated U-Net; forward(v, z) returns x = v + residual."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        dims = [config.dim * 2**level for level in range(config.levels)]
        p, e = config.prior_dim, config.ffn_expansion

        def blocks(count: int, level: int) -> nn.ModuleList:
            return nn.ModuleList(PriorBlock(dims[level], config.heads[level], e, p) for _ in range(count))

        self.embed = nn.Conv2d(3, dims[0], 3, padding=1)
        self.encoders = nn.ModuleList(blocks(n, level) for level, n in enumerate(config.enc_blocks))
        # Restormer down/up: a conv to half (double) the channels, then pixel (un)shuffle. The up
        # conv is 1x1 (Restormer: 3x3) because at 3x3 it cost a fifth of the edge budget.
        self.downs = nn.ModuleList(
            nn.Sequential(nn.Conv2d(dims[i], dims[i] // 2, 3, padding=1), nn.PixelUnshuffle(2))
            for i in range(config.levels - 1)
        )
        self.ups = nn.ModuleList(
            nn.Sequential(nn.Conv2d(dims[i + 1], dims[i + 1] * 2, 1), nn.PixelShuffle(2))
            for i in range(config.levels - 1)
        )
        self.fuses = nn.ModuleList(nn.Conv2d(2 * dims[i], dims[i], 1) for i in range(config.levels - 1))
        # dec_blocks[0] is the deepest decoder level.
        self.decoders = nn.ModuleList(blocks(n, config.levels - 2 - i) for i, n in enumerate(config.dec_blocks))
        self.refine = blocks(config.refine_blocks, 0)
        self.out = nn.Conv2d(dims[0], 3, 3, padding=1)
        self.high_freq = HaarHighFrequency(dims[0], p) if config.use_high_freq else None

    @staticmethod
    def _run(blocks: nn.ModuleList, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        for block in blocks:
            x = block(x, z)
        return x

    def forward(self, v: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        x = self.embed(v)
        skips = []
        for level, encoder in enumerate(self.encoders):
            x = self._run(encoder, x, z)
            if level < len(self.downs):
                skips.append(x)
                x = self.downs[level](x)
        for i, decoder in enumerate(self.decoders):
            level = len(self.decoders) - 1 - i
            x = self.ups[level](x)
            x = self.fuses[level](torch.cat([x, skips[level]], dim=1))
            x = self._run(decoder, x, z)
        x = self._run(self.refine, x, z)
        residual = self.out(x)
        if self.high_freq is not None:
            residual = residual + self.high_freq(x, z)
        return v + residual
