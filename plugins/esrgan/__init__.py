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
        tiny_args={"num_features": 8, "num_blocks": 1, "growth_channels": 4, "scale": 4},
    )


@hookimpl
def register_discriminators(register: Any) -> None:
    register(
        "vgg_discriminator",
        "restorekit_plugins.esrgan.discriminators:VGGStyleDiscriminator",
        "ESRGAN VGG-style discriminator for fixed 128x128 (or 256x256) crops, one logit per image",
        tiny_args={"num_features": 4},
        test_size=128,
    )
    register(
        "unet_discriminator",
        "restorekit_plugins.esrgan.discriminators:UNetDiscriminatorSN",
        "Real-ESRGAN U-Net discriminator with spectral norm, one logit per pixel (sides multiple of 8)",
        tiny_args={"num_features": 4},
        test_size=32,
    )


@hookimpl
def convert_state_dict(state_dict: dict[str, Any], path: str) -> Any:
    """Recognise ESRGAN checkpoints: old or new ESRGAN-repository layout, or BasicSR / Real-ESRGAN."""
    from restorekit_plugins.esrgan.convert import convert_esrgan_state_dict

    return convert_esrgan_state_dict(state_dict, path)
