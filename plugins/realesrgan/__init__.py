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
