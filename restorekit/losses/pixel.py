"""Pixel losses: MSE (L2), L1 and Charbonnier, between a restored image and its target.

All three compute in float32 whatever the input dtype, so they read the same under autocast.

Example:
    >>> import torch
    >>> from restorekit.losses.pixel import CharbonnierLoss
    >>> loss = CharbonnierLoss(eps=1e-3)
    >>> out = torch.zeros(1, 3, 4, 4)
    >>> round(loss(out, out).item(), 6)  # sqrt(0 + eps**2)
    0.001
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

REDUCTIONS = ("mean", "sum")


class _PixelLoss(nn.Module):
    """Shared argument checks and float32 reduction of an elementwise pixel penalty."""

    def __init__(self, *, reduction: str = "mean"):
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(
                f"{type(self).__name__}: reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}"
            )
        self.reduction = reduction

    def penalty(self, diff: Tensor) -> Tensor:
        """Elementwise penalty of ``output - target`` (float32)."""
        raise NotImplementedError

    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        """Loss between *output* and *target*.

        Args:
            output: restored images, ``(N, C, H, W)``.
            target: ground truth of the same shape.

        Returns:
            A float32 scalar.

        Raises:
            ValueError: if the shapes differ (broadcasting would silently compare the wrong pixels).
        """
        if output.shape != target.shape:
            raise ValueError(
                f"{type(self).__name__}: output shape {tuple(output.shape)} != target shape {tuple(target.shape)}"
            )
        values = self.penalty(output.float() - target.float())
        return values.mean() if self.reduction == "mean" else values.sum()

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


class MSELoss(_PixelLoss):
    """Mean squared error, the L2 loss of PSNR-oriented training (SRResNet, EDSR's baseline).

    Args:
        reduction: ``"mean"`` over all elements, or ``"sum"``.

    Raises:
        ValueError: for an unknown reduction.
    """

    def penalty(self, diff: Tensor) -> Tensor:
        return diff.square()


class L1Loss(_PixelLoss):
    """Mean absolute error (EDSR, ESRGAN's pixel term).

    Args:
        reduction: ``"mean"`` over all elements, or ``"sum"``.

    Raises:
        ValueError: for an unknown reduction.
    """

    def penalty(self, diff: Tensor) -> Tensor:
        return diff.abs()


class CharbonnierLoss(_PixelLoss):
    """Charbonnier penalty ``sqrt(d**2 + eps**2)`` (LapSRN, Lai et al. 2017).

    It is a differentiable L1: quadratic for ``|d| << eps``, linear beyond. Note that ``eps`` enters
    squared, as in the LapSRN paper; a perfect reconstruction therefore scores ``eps``, not 0.

    Args:
        eps: smoothing constant, > 0.
        reduction: ``"mean"`` over all elements, or ``"sum"``.

    Raises:
        ValueError: for an unknown reduction or a non-positive ``eps``.
    """

    def __init__(self, *, eps: float = 1e-3, reduction: str = "mean"):
        super().__init__(reduction=reduction)
        if not eps > 0:
            raise ValueError(f"CharbonnierLoss: eps must be > 0, got {eps!r}")
        self.eps = float(eps)

    def penalty(self, diff: Tensor) -> Tensor:
        return torch.sqrt(diff.square() + self.eps**2)

    def extra_repr(self) -> str:
        return f"eps={self.eps}, reduction={self.reduction!r}"
