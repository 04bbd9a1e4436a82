"""Adversarial losses: vanilla (BCE), least-squares, WGAN-GP, relativistic average and hinge GANs.

Each class gives both sides of its game (:class:`~restorekit.losses.base.AdversarialLoss`): the trainer
calls ``discriminator_loss(disc, real, fake)`` with ``fake`` detached, and ``generator_loss(disc, real,
fake)`` with ``fake`` still attached to the generator (the discriminator's parameters are frozen then).
Discriminator outputs may be ``(N, 1)`` logits or ``(N, 1, H, W)`` patch maps; every expectation is a
mean over all their elements, and every reduction is done in float32 so the losses hold under autocast.

Example:
    >>> import torch
    >>> from torch import nn
    >>> disc = nn.Sequential(nn.Conv2d(3, 1, 3, padding=1))
    >>> real, fake = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    >>> loss = HingeGANLoss()
    >>> loss.discriminator_loss(disc, real, fake).shape
    torch.Size([])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from restorekit.losses.base import AdversarialLoss


def _logits(disc: nn.Module, images: Tensor) -> Tensor:
    """Discriminator output in float32 (it may come out of autocast as float16/bfloat16)."""
    return disc(images).float()


def _bce(logits: Tensor, label: float) -> Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, label))


class BCEGANLoss(AdversarialLoss):
    """Vanilla GAN (Goodfellow et al. 2014) on logits, as in SRGAN.

    Discriminator: ``BCE(D(real), real_label) + BCE(D(fake), fake_label)`` (the sum, as in the
    original minimax objective). Generator: the non-saturating ``-log sigmoid(D(fake))``, i.e.
    ``BCE(D(fake), 1)``; label smoothing is one-sided (Salimans et al. 2016) and acts on the
    discriminator only.

    Args:
        real_label: discriminator target for real images (1.0, or e.g. 0.9 for smoothing).
        fake_label: discriminator target for generated images.

    Raises:
        ValueError: if a label is outside ``[0, 1]``.
    """

    def __init__(self, *, real_label: float = 1.0, fake_label: float = 0.0):
        super().__init__()
        for name, value in (("real_label", real_label), ("fake_label", fake_label)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"BCEGANLoss: {name} must be in [0, 1], got {value!r}")
        self.real_label, self.fake_label = float(real_label), float(fake_label)

    def discriminator_loss(self, disc: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
        return _bce(_logits(disc, real), self.real_label) + _bce(_logits(disc, fake), self.fake_label)

    def generator_loss(self, disc: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
        return _bce(_logits(disc, fake), 1.0)

    def extra_repr(self) -> str:
        return f"real_label={self.real_label}, fake_label={self.fake_label}"


class LSGANLoss(AdversarialLoss):
    """Least-squares GAN (Mao et al. 2017) with the 0-1 coding ``a=0, b=1, c=1``.

    The paper's halves on both sides: discriminator ``0.5 * E[(D(real) - 1)^2] + 0.5 * E[D(fake)^2]``,
    generator ``0.5 * E[(D(fake) - 1)^2]``. (pix2pix/CycleGAN code drops the generator's 0.5: a weight
    copied from there should be doubled here.)
    """

    def __init__(self) -> None:
        # An explicit empty signature, so that any recipe argument is rejected as unknown.
        super().__init__()

    def discriminator_loss(self, disc: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
        return 0.5 * (_logits(disc, real) - 1).square().mean() + 0.5 * _logits(disc, fake).square().mean()

    def generator_loss(self, disc: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
        return 0.5 * (_logits(disc, fake) - 1).square().mean()


class WGANGPLoss(AdversarialLoss):
    """Wasserstein GAN with gradient penalty (Gulrajani et al. 2017), as in DeblurGAN.

    Critic: ``E[D(fake)] - E[D(real)] + gp_weight * E[(||grad D(x_hat)||_2 - 1)^2]`` with
    ``x_hat = eps * real + (1 - eps) * fake`` and one ``eps ~ U[0, 1]`` per sample. For a patch critic
    the per-sample critic value is the mean of its map, the same quantity the Wasserstein term uses.
    The penalty is evaluated with autocast disabled, in float32, and with ``create_graph=True`` so that
    it trains the critic. Generator: ``-E[D(fake)]``.

    Args:
        gp_weight: the penalty weight lambda (10 in the paper).

    Attributes:
        last_gradient_penalty: detached float32 value of the latest penalty (before weighting), for
            logging; ``None`` until the critic loss has been computed once.

    Raises:
        ValueError: if ``gp_weight`` is negative.
    """

    def __init__(self, *, gp_weight: float = 10.0):
        super().__init__()
        if not gp_weight >= 0:
            raise ValueError(f"WGANGPLoss: gp_weight must be >= 0, got {gp_weight!r}")
        self.gp_weight = float(gp_weight)
        self.last_gradient_penalty: Tensor | None = None

    def gradient_penalty(self, disc: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
        """``E[(||grad_x D(x_hat)||_2 - 1)^2]`` on random interpolates of *real* and *fake*, in float32."""
        real, fake = real.detach().float(), fake.detach().float()
        eps = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), device=real.device)
        mixed = (eps * real + (1 - eps) * fake).requires_grad_(True)
        # Half-precision gradients of the critic are too coarse for a penalty measured around 1.
        with torch.autocast(device_type=real.device.type, enabled=False):
            critic = disc(mixed).float().flatten(1).mean(dim=1)
            (grad,) = torch.autograd.grad(critic.sum(), mixed, create_graph=True)
            return (grad.flatten(1).norm(2, dim=1) - 1).square().mean()

    def discriminator_loss(self, disc: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
        wasserstein = _logits(disc, fake).mean() - _logits(disc, real).mean()
        penalty = self.gradient_penalty(disc, real, fake)
        self.last_gradient_penalty = penalty.detach()
        return wasserstein + self.gp_weight * penalty

    def generator_loss(self, disc: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
        return -_logits(disc, fake).mean()

    def extra_repr(self) -> str:
        return f"gp_weight={self.gp_weight}"


class RaGANLoss(AdversarialLoss):
    """Relativistic average GAN (Jolicoeur-Martineau 2018) with BCE, as in ESRGAN.

    With ``C_r = D(real)``, ``C_f = D(fake)`` and ``E[.]`` the mean over the whole batch (all elements
    of a patch map), as ESRGAN's original code does:

    * discriminator: ``(BCE(C_r - E[C_f], 1) + BCE(C_f - E[C_r], 0)) / 2``, with gradients through both
      means (nothing detached);
    * generator: ``(BCE(C_r - E[C_f], 0) + BCE(C_f - E[C_r], 1)) / 2``, with ``C_r`` computed under
      ``torch.no_grad()``: the real images still shape the generator's gradient through ``E[C_r]``.
    """

    def __init__(self) -> None:
        # An explicit empty signature, so that any recipe argument is rejected as unknown.
        super().__init__()

    def discriminator_loss(self, disc: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
        real_logits, fake_logits = _logits(disc, real), _logits(disc, fake)
        return 0.5 * (
            _bce(real_logits - fake_logits.mean(), 1.0) + _bce(fake_logits - real_logits.mean(), 0.0)
        )

    def generator_loss(self, disc: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
        with torch.no_grad():
            real_logits = _logits(disc, real)
        fake_logits = _logits(disc, fake)
        return 0.5 * (
            _bce(real_logits - fake_logits.mean(), 0.0) + _bce(fake_logits - real_logits.mean(), 1.0)
        )


class HingeGANLoss(AdversarialLoss):
    """Hinge GAN loss (Lim & Ye 2017; Miyato et al. 2018).

    Discriminator: ``E[relu(1 - D(real))] + E[relu(1 + D(fake))]``. Generator: ``-E[D(fake)]``.
    """

    def __init__(self) -> None:
        # An explicit empty signature, so that any recipe argument is rejected as unknown.
        super().__init__()

    def discriminator_loss(self, disc: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
        return F.relu(1 - _logits(disc, real)).mean() + F.relu(1 + _logits(disc, fake)).mean()

    def generator_loss(self, disc: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
        return -_logits(disc, fake).mean()
