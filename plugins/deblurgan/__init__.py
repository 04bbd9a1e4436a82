"""DeblurGAN (Kupyn et al. 2018): the ResNet generator with a global skip and the PatchGAN critic.

The matching task, ``deblurring`` (paired blur/sharp data or synthetic camera shake), is registered by
the core. Targets are lazy ``"module:attr"`` strings, so listing components imports no torch.
"""

from __future__ import annotations

from typing import Any

from restorekit.hookspecs import hookimpl


@hookimpl
def register_generators(register: Any) -> None:
    register(
        "deblurgan_resnet",
        "restorekit_plugins.deblurgan.generator:ResNetGenerator",
        "DeblurGAN generator: ResNet encoder-decoder, 9 blocks, instance norm, global skip (Kupyn et al. 2018)",
        task="deblurring",
    )


@hookimpl
def register_discriminators(register: Any) -> None:
    register(
        "patchgan",
        "restorekit_plugins.deblurgan.patchgan:PatchGANDiscriminator",
        "pix2pix PatchGAN: 70x70 patches scored by 4x4 convs, a map of logits (DeblurGAN's WGAN-GP critic)",
    )
