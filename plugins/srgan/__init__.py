"""SRGAN (Ledig et al. 2017): the SRResNet generator and the SRGAN discriminator.

Targets are lazy ``"module:attr"`` strings, so listing components imports no torch.
"""

from __future__ import annotations

from typing import Any

from restorekit.hookspecs import hookimpl


@hookimpl
def register_generators(register: Any) -> None:
    register(
        "srresnet",
        "restorekit_plugins.srgan.srresnet:SRResNet",
        "SRResNet: BN residual blocks + sub-pixel upsampling, x2/x4/x8 (Ledig et al. 2017)",
        task="super_resolution",
        tiny_args={"num_features": 8, "num_blocks": 1, "scale": 2},
    )


@hookimpl
def register_discriminators(register: Any) -> None:
    register(
        "srgan_discriminator",
        "restorekit_plugins.srgan.discriminator:SRGANDiscriminator",
        "SRGAN VGG-like discriminator: 8 conv blocks, adaptive pooling, dense 1024 -> 1 logit (Ledig et al. 2017)",
        tiny_args={"num_features": 8, "num_blocks": 4, "dense_features": 16},
        test_size=32,
    )
