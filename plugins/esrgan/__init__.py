"""ESRGAN (Wang et al. 2018) and Real-ESRGAN (Wang et al. 2021): the RRDBNet generator, the VGG-style
discriminator and the U-Net discriminator with spectral normalisation.

Targets are lazy ``"module:attr"`` strings, so listing components imports no torch.
"""

from __future__ import annotations

from typing import Any

from restorekit.hookspecs import hookimpl


@hookimpl
def register_generators(register: Any) -> None:
    register(
        "rrdbnet",
        "restorekit_plugins.esrgan.rrdbnet:RRDBNet",
        "RRDBNet: residual-in-residual dense blocks, x1/x2/x4/x8 (ESRGAN 2018, Real-ESRGAN 2021)",
        task="super_resolution",
    )


@hookimpl
def register_discriminators(register: Any) -> None:
    register(
        "vgg_discriminator",
        "restorekit_plugins.esrgan.discriminators:VGGStyleDiscriminator",
        "ESRGAN VGG-style discriminator for fixed 128x128 (or 256x256) crops, one logit per image",
    )
    register(
        "unet_discriminator",
        "restorekit_plugins.esrgan.discriminators:UNetDiscriminatorSN",
        "Real-ESRGAN U-Net discriminator with spectral norm, one logit per pixel (sides multiple of 8)",
    )
