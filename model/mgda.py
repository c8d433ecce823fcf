"""MGDA: the gradient half of an unfolding stage, with an estimated, unknown degradation.

y = D x + n with D unknown. Two estimates of D (docs/MODEL_CARD.md):
- holistic: small learned conv nets D and D^T (DGUNet style); gradient D^T(D x - y);
- decomposed: per channel D x = W X M, W (h x h) mixing rows and M (w x w) mixing columns,
  both generated from the input; gradient W^T (W X M - Y) M^T.
v = x - rho * g_holistic - eta * g_decomposed, with rho, eta learnable and kept positive by a
softplus. Everything is explicit matmuls and convs: no autograd at inference, exportable with
dynamic height and width.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from model.config import ModelConfig


def decomposed_apply(w: torch.Tensor, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """D x = W X M per channel. w: (B,h,h), x: (B,C,h,w), m: (B,w,w)."""
    return torch.matmul(torch.matmul(w.unsqueeze(1), x), m.unsqueeze(1))


def decomposed_gradient(w: torch.Tensor, m: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Gradient of 0.5 * ||W X M - Y||^2 with respect to X: W^T (W X M - Y) M^T."""
    residual = decomposed_apply(w, x, m) - y
    return torch.matmul(torch.matmul(w.transpose(-1, -2).unsqueeze(1), residual), m.transpose(-1, -2).unsqueeze(1))


def _softplus_init(value: float) -> torch.Tensor:
    """Raw parameter whose softplus equals `value` (so step sizes start where we want)."""
    return torch.tensor(math.log(math.expm1(value)))


class HolisticDegradation(nn.Module):
    """Learned D and D^T as two small residual-free conv nets (their outputs are images)."""

    def __init__(self, channels: int) -> None:
        super().__init__()

        def net() -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(3, channels, 3, padding=1),
                nn.GELU(),
                nn.Conv2d(channels, channels, 3, padding=1),
                nn.GELU(),
                nn.Conv2d(channels, 3, 3, padding=1),
            )

        self.forward_op = net()
        self.adjoint_op = net()

    def gradient(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.adjoint_op(self.forward_op(x) - y)


class AxisOperator(nn.Module):
    """Generates a row-mixing (or column-mixing) matrix from the image content along one axis.

    Row descriptors (mean over the other axis of a shallow feature map) give queries and keys;
    the logits get a learnable locality penalty -softplus(g)*|i-j|, so the operator behaves like
    a blur along that axis by default (ours: the paper does not say how W and M are produced).
    A row-wise softmax keeps the operator stochastic, so it preserves flat regions.
    """

    def __init__(self, feature_channels: int, dim: int) -> None:
        super().__init__()
        self.query = nn.Linear(feature_channels, dim)
        self.key = nn.Linear(feature_channels, dim)
        self.locality = nn.Parameter(_softplus_init(1.0))
        self.scale = dim**-0.5

    def forward(self, descriptors: torch.Tensor) -> torch.Tensor:
        """descriptors: (B, n, C) -> operator (B, n, n)."""
        n = descriptors.shape[1]
        q = self.query(descriptors)
        k = self.key(descriptors)
        logits = torch.matmul(q, k.transpose(-1, -2)) * self.scale
        position = torch.arange(n, device=descriptors.device, dtype=descriptors.dtype)
        distance = (position.unsqueeze(0) - position.unsqueeze(1)).abs()
        return torch.softmax(logits - F.softplus(self.locality) * distance, dim=-1)


class DecomposedDegradation(nn.Module):
    """W X M estimated on a grid downsampled by `scale` (cost h^2 w + h w^2 per channel)."""

    def __init__(self, dim: int, scale: int) -> None:
        super().__init__()
        self.scale = scale
        self.features = nn.Sequential(nn.Conv2d(6, dim, 3, padding=1), nn.GELU())
        self.rows = AxisOperator(dim, dim)
        self.cols = AxisOperator(dim, dim)

    def down(self, img: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(img, self.scale) if self.scale > 1 else img

    def operators(self, x_small: torch.Tensor, y_small: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """W (B,h,h) and M (B,w,w) on the small grid; M is built so that D x = W X M."""
        feat = self.features(torch.cat([x_small, y_small], dim=1))
        w = self.rows(feat.mean(dim=3).transpose(1, 2))
        # Columns mix through right-multiplication, so M is the transpose of a stochastic operator.
        m = self.cols(feat.mean(dim=2).transpose(1, 2)).transpose(1, 2)
        return w, m

    def gradient(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.gradient_and_operators(x, y)[0]

    def gradient_and_operators(
        self, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """The gradient and what it was built from, (W, M, Y small), for the consistency term."""
        x_small, y_small = self.down(x), self.down(y)
        w, m = self.operators(x_small, y_small)
        grad = decomposed_gradient(w, m, x_small, y_small)
        if self.scale > 1:
            grad = F.interpolate(grad, scale_factor=float(self.scale), mode="bilinear", align_corners=False)
        return grad, (w, m, y_small)


class MGDA(nn.Module):
    """One stage's gradient half: v = x - rho*g_holistic - eta*g_decomposed."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.use_holistic = config.mgda_mode in ("both", "holistic")
        self.use_decomposed = config.mgda_mode in ("both", "decomposed")
        if self.use_holistic:
            self.holistic = HolisticDegradation(config.holistic_channels)
            self.rho = nn.Parameter(_softplus_init(0.5))
        if self.use_decomposed:
            self.decomposed = DecomposedDegradation(config.decomposed_dim, config.decomposed_scale)
            self.eta = nn.Parameter(_softplus_init(0.5))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.forward_with_consistency(x, y, None)[0]

    def forward_with_consistency(
        self, x: torch.Tensor, y: torch.Tensor, gt: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """v, and with a ground truth the ISDA term: the degradation estimated from (x, y),
        applied to the ground truth, must give y.

        Training needs both; the consistency term reuses the W and M that the gradient built
        instead of generating them a second time. Inference and export pass gt=None.
        """
        v = x
        loss = None if gt is None else x.new_zeros(())
        if self.use_holistic:
            v = v - F.softplus(self.rho) * self.holistic.gradient(x, y)
            if loss is not None:
                loss = loss + F.l1_loss(self.holistic.forward_op(gt), y)
        if self.use_decomposed:
            grad, (w, m, y_small) = self.decomposed.gradient_and_operators(x, y)
            v = v - F.softplus(self.eta) * grad
            if loss is not None:
                loss = loss + F.l1_loss(decomposed_apply(w, self.decomposed.down(gt), m), y_small)
        return v, loss
