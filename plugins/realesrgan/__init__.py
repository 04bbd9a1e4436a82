"""Real-ESRGAN (Wang et al. 2021): the compact SRVGGNetCompact generator, its converter, and the
official Real-ESRGAN models in the download catalogue.

Real-ESRGAN's RRDBNet models are read by the ``esrgan`` plugin (``rrdbnet``); this plugin adds the
compact architecture. Targets are lazy ``"module:attr"`` strings, so listing components imports no
torch.
"""

from __future__ import annotations

from typing import Any

from restorekit.hookspecs import hookimpl


@hookimpl
def register_generators(register: Any) -> None:
    register(
        "srvgg_compact",
        "restorekit_plugins.realesrgan.srvgg:SRVGGNetCompact",
        "SRVGGNetCompact: Real-ESRGAN's fast plain-conv generator, pixel-shuffle + upsampled-input skip (2021)",
        task="super_resolution",
        tiling="tileable",
        tiny_args={"num_features": 8, "num_conv": 2, "scale": 4},
    )


@hookimpl
def convert_state_dict(state_dict: dict[str, Any], path: str, hints: dict[str, Any]) -> Any:
    """Recognise Real-ESRGAN compact checkpoints (``body.N`` convs and PReLU slopes)."""
    from restorekit_plugins.realesrgan.convert import convert_srvgg_state_dict

    return convert_srvgg_state_dict(state_dict, path, hints)


# --- the download catalogue ---------------------------------------------------------------------------

SOURCE = "https://github.com/xinntao/Real-ESRGAN"
LICENCE = "BSD-3-Clause"  # Real-ESRGAN's code and released weights
_RELEASES = f"{SOURCE}/releases/download"

# name, file under releases/, SHA-256, bytes (None: not published), architecture, scale, description.
# Hashes and sizes: ../shared/data/models-reference.md. A wrong hash fails closed (download refused).
_MODELS = (
    (
        "realesrgan-x4plus",
        "v0.1.0/RealESRGAN_x4plus.pth",
        "4fa0d38905f75ac06eb49a7951b426670021be3018265fd191d2125df9d682f1",
        67_040_989,
        "rrdbnet",
        4,
        "Real-ESRGAN x4 (RRDBNet, 23 blocks): real-world photos with blur, noise and JPEG artefacts",
    ),
    (
        "realesrnet-x4plus",
        "v0.1.1/RealESRNet_x4plus.pth",
        "a820b9bde89a874d7599d545567308ce6c128fc8754a53208eda016d40aa81df",
        None,
        "rrdbnet",
        4,
        "Real-ESRNet x4 (RRDBNet, 23 blocks): Real-ESRGAN's L1-trained stage, smoother, no GAN textures",
    ),
    (
        "realesrgan-x2plus",
        "v0.2.1/RealESRGAN_x2plus.pth",
        "49fafd45f8fd7aa8d31ab2a22d14d91b536c34494a5cfe31eb5d89c2fa266abb",
        None,
        "rrdbnet",
        2,
        "Real-ESRGAN x2 (RRDBNet, 23 blocks, pixel-unshuffle front): real-world photos",
    ),
    (
        "realesrgan-x4plus-anime-6b",
        "v0.2.2.4/RealESRGAN_x4plus_anime_6B.pth",
        "f872d837d3c90ed2e05227bed711af5671a6fd1c9f7d7e91c911a61f155e99da",
        17_938_799,
        "rrdbnet",
        4,
        "Real-ESRGAN x4 for anime and illustrations (RRDBNet, 6 blocks)",
    ),
    (
        "realesr-general-x4v3",
        "v0.2.5.0/realesr-general-x4v3.pth",
        "8dc7edb9ac80ccdc30c3a5dca6616509367f05fbc184ad95b731f05bece96292",
        None,
        "srvgg_compact",
        4,
        "Real-ESRGAN general x4 v3 (SRVGGNetCompact, 32 convs): fast, real-world scenes",
    ),
)


@hookimpl
def register_models(register: Any) -> None:
    """The five official Real-ESRGAN releases, downloaded on first use and checked against SHA-256."""
    for name, file, sha256, size, arch, scale, description in _MODELS:
        register(
            name,
            url=f"{_RELEASES}/{file}",
            sha256=sha256,
            size=size,
            licence=LICENCE,
            arch=arch,
            scale=scale,
            task="super_resolution",
            source=SOURCE,
            description=description,
        )
