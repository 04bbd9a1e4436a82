"""The two loss contracts the trainer relies on."""

from __future__ import annotations

from torch import Tensor, nn


class AdversarialLoss(nn.Module):
    """A GAN objective that knows both of its sides.

    The trainer calls :meth:`discriminator_loss` when the loss appears under
    ``losses.discriminator`` in a recipe and :meth:`generator_loss` under ``losses.generator``.
    Both receive the discriminator itself rather than its logits, so that a loss may evaluate it on
    whatever it needs: the relativistic loss on real and fake together, the gradient penalty on
    interpolates. ``fake`` is already detached for the discriminator's side.
    """

    adversarial = True

    def discriminator_loss(self, disc: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
        raise NotImplementedError

    def generator_loss(self, disc: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
        raise NotImplementedError


def is_adversarial(loss: object) -> bool:
    """Whether *loss* (an instance or a class) follows the adversarial contract."""
    return bool(getattr(loss, "adversarial", False))
