"""Recognise ESRGAN checkpoints in the three key layouts found in the wild and rename them to RRDBNet's.

Layouts (``source_layout`` in a converted file):

``esrgan-old``
    The first release of the ESRGAN repository (``architecture.py``, one ``nn.Sequential``):
    ``model.0`` first conv; ``model.1.sub.N.RDBk.convj.0`` dense-block convs; ``model.1.sub.<num_blocks>``
    trunk conv; then per upsampling stage ``[Upsample, conv, LeakyReLU]`` so the upconvs sit at
    ``model.3``, ``model.6`` (``model.9`` at x8), followed by the HR conv and the last conv two
    indices apart (``model.8``, ``model.10`` at x4; ``model.11``, ``model.13`` at x8).
``esrgan-new``
    The ESRGAN repository's later ``RRDBNet_arch.py`` (also BSRGAN / RealSR): ``conv_first``,
    ``RRDB_trunk.N.RDBk.convj``, ``trunk_conv``, ``upconv1``, ``upconv2``, ``HRconv``, ``conv_last``.
``basicsr``
    BasicSR / Real-ESRGAN, restorekit's own names: ``conv_first``, ``body.N.rdbk.convj``,
    ``conv_body``, ``conv_up1``, ``conv_up2``, ``conv_hr``, ``conv_last``.

Hyperparameters come from tensor shapes: ``num_features`` and the input channels from ``conv_first``,
``growth_channels`` from the first dense conv, ``num_blocks`` from the highest block index, the output
channels from ``conv_last``, and the scale from the number of upsampling convs together with
``conv_first``'s input channels: 16x or 4x the output channels means Real-ESRGAN's pixel-unshuffle
front (x1, x2), the convention Real-ESRGAN and spandrel use as well.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from restorekit.convert import ConvertError

GENERATOR = "rrdbnet"

LAYOUTS = {
    "esrgan-old": "original ESRGAN repository, first release (model.0, model.1.sub.N.RDBk.convj.0, model.3 ...)",
    "esrgan-new": "original ESRGAN repository, RRDBNet_arch.py / BSRGAN (RRDB_trunk, trunk_conv, upconv1, HRconv)",
    "basicsr": "BasicSR / Real-ESRGAN (body.N.rdbk.convj, conv_body, conv_up1, conv_hr)",
}

_BLOCK = re.compile(r"^body\.(\d+)\.rdb[123]\.conv[1-5]\.(?:weight|bias)$")
_UP = re.compile(r"^conv_up(\d+)\.(?:weight|bias)$")

_OLD_BLOCK = re.compile(r"^model\.1\.sub\.(\d+)\.RDB([123])\.conv([1-5])\.0\.(weight|bias)$")
_OLD_SUB = re.compile(r"^model\.1\.sub\.(\d+)\.(weight|bias)$")
_OLD_TOP = re.compile(r"^model\.(\d+)\.(weight|bias)$")

_NEW_RENAMES = (
    (re.compile(r"^RRDB_trunk\.(\d+)\.RDB([123])\.conv([1-5])\.(weight|bias)$"), r"body.\1.rdb\2.conv\3.\4"),
    (re.compile(r"^trunk_conv\.(weight|bias)$"), r"conv_body.\1"),
    (re.compile(r"^upconv(\d+)\.(weight|bias)$"), r"conv_up\1.\2"),
    (re.compile(r"^HRconv\.(weight|bias)$"), r"conv_hr.\1"),
)

# (upsampling convs, pixel-unshuffle factor) -> scale, as RRDBNet builds them.
_SCALES = {(2, 1): 4, (2, 2): 2, (2, 4): 1, (3, 1): 8, (1, 1): 2, (0, 1): 1}
"""(upsampling convs, pixel-unshuffle factor) → scale; one or no upsampling conv means no unshuffle."""


def detect_layout(state: Mapping[str, Any]) -> str | None:
    """Which ESRGAN key layout *state* uses, or ``None`` if it is not an ESRGAN state dict.

    Raises:
        ConvertError: an ESRGAN variant restorekit does not implement (ESRGAN+ with its 1x1 convs).
    """
    if "model.0.weight" in state and "model.1.sub.0.RDB1.conv1x1.weight" in state:
        raise ConvertError(
            "ESRGAN+ checkpoint (1x1 convolutions and noise inside the dense blocks): "
            "restorekit's rrdbnet does not implement ESRGAN+"
        )
    if "model.0.weight" in state and "model.1.sub.0.RDB1.conv1.0.weight" in state:
        return "esrgan-old"
    if "conv_first.weight" in state and "RRDB_trunk.0.RDB1.conv1.weight" in state and "trunk_conv.weight" in state:
        return "esrgan-new"
    if "conv_first.weight" in state and "body.0.rdb1.conv1.weight" in state and "conv_body.weight" in state:
        return "basicsr"
    return None


def to_rrdbnet_names(state: Mapping[str, torch.Tensor], layout: str) -> dict[str, torch.Tensor]:
    """Rename *state* from *layout* to RRDBNet's (BasicSR's) parameter names.

    Keys the layout does not explain are kept unchanged, so that loading reports them by their
    original names.

    Raises:
        ConvertError: an ``esrgan-old`` layer sequence that is not RRDBNet's (pixel-shuffle upsampling,
            normalisation layers, x3).
    """
    if layout == "basicsr":
        return dict(state)
    if layout == "esrgan-new":
        return {_rename_new(key): value for key, value in state.items()}
    if layout == "esrgan-old":
        return _rename_old(state)
    raise ValueError(f"unknown ESRGAN layout {layout!r}; known: {', '.join(LAYOUTS)}")


def _rename_new(key: str) -> str:
    for pattern, replacement in _NEW_RENAMES:
        if pattern.match(key):
            return pattern.sub(replacement, key)
    return key


def _rename_old(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    blocks = {int(m.group(1)) for key in state if (m := _OLD_BLOCK.match(key))}
    num_blocks = max(blocks) + 1
    # Everything after the RRDBs at top level: [Upsample, conv, LeakyReLU] per stage, then HR conv,
    # LeakyReLU, last conv. Only the convs carry weights, so their indices give the structure away.
    top = sorted({int(m.group(1)) for key in state if (m := _OLD_TOP.match(key))} - {0})
    upconvs, tail = top[:-2], top[-2:]
    expected_up = [3 * (i + 1) for i in range(len(upconvs))]
    if len(tail) != 2 or upconvs != expected_up or tail != [3 * len(upconvs) + 2, 3 * len(upconvs) + 4]:
        layers = ", ".join(f"model.{i}" for i in top) or "none"
        raise ConvertError(
            f"ESRGAN (old layout) with convolution layers {layers} after the trunk: only nearest-neighbour "
            "upsampling followed by a conv per stage (RRDBNet's) is supported, not pixel-shuffle or x3"
        )
    names = {0: "conv_first"} | {index: f"conv_up{i + 1}" for i, index in enumerate(upconvs)}
    names |= {tail[0]: "conv_hr", tail[1]: "conv_last"}

    renamed: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if m := _OLD_BLOCK.match(key):
            new_key = f"body.{m.group(1)}.rdb{m.group(2)}.conv{m.group(3)}.{m.group(4)}"
        elif (m := _OLD_SUB.match(key)) and int(m.group(1)) == num_blocks:
            new_key = f"conv_body.{m.group(2)}"
        elif (m := _OLD_TOP.match(key)) and int(m.group(1)) in names:
            new_key = f"{names[int(m.group(1))]}.{m.group(2)}"
        else:
            new_key = key
        renamed[new_key] = value
    return renamed


def infer_rrdbnet_args(state: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """RRDBNet constructor arguments from the shapes of a state dict with RRDBNet's names.

    Raises:
        ConvertError: a tensor RRDBNet needs is missing or misshapen, or the upsampling structure is one
            RRDBNet does not build.
    """
    first, last = state.get("conv_first.weight"), state.get("conv_last.weight")
    for name, tensor in (("conv_first.weight", first), ("conv_last.weight", last)):
        if tensor is None or tensor.ndim != 4:
            raise ConvertError(f"{name} is missing or not a 4-D convolution weight")
    num_features, first_in = int(first.shape[0]), int(first.shape[1])
    out_channels = int(last.shape[0])

    blocks = {int(m.group(1)) for key in state if (m := _BLOCK.match(key))}
    num_blocks = max(blocks) + 1 if blocks else 0
    growth = state.get("body.0.rdb1.conv1.weight")
    growth_channels = int(growth.shape[0]) if growth is not None else 32

    stages = sorted({int(m.group(1)) for key in state if (m := _UP.match(key))})
    if stages != list(range(1, len(stages) + 1)):
        raise ConvertError(f"upsampling convs numbered {stages}, expected 1, 2, ...")
    num_up = len(stages)
    factor = 1
    if num_up == 2:
        # Real-ESRGAN x2/x1 fold 2x2 / 4x4 pixels into channels before conv_first.
        factor = {out_channels * 16: 4, out_channels * 4: 2}.get(first_in, 1)
    scale = _SCALES.get((num_up, factor))
    if scale is None:
        raise ConvertError(
            f"{num_up} upsampling conv(s) with {first_in} input and {out_channels} output channels: "
            "rrdbnet builds x8/x4/x2/x1 with 3/2/1/0 upsampling convs, and x2/x1 by pixel-unshuffle in front "
            "of the x4 body"
        )
    if first_in % factor**2:
        raise ConvertError(f"conv_first has {first_in} input channels, not a multiple of {factor**2}")
    args = {
        "in_channels": first_in // factor**2,
        "out_channels": out_channels,
        "num_features": num_features,
        "num_blocks": num_blocks,
        "growth_channels": growth_channels,
        "scale": scale,
    }
    if scale in (1, 2) and factor == 1:
        args["pixel_unshuffle"] = False  # the original ESRGAN's x2 / x1: one or no upsampling stage
    return args


def convert_esrgan_state_dict(
    state_dict: Mapping[str, Any], path: str = ""
) -> tuple[str, dict[str, int], dict[str, torch.Tensor], str] | None:
    """Recognise an ESRGAN state dict in any of the three layouts.

    Args:
        state_dict: unwrapped parameter name → tensor (see :func:`restorekit.convert.read_foreign_state`).
        path: the file it came from, for messages.

    Returns:
        ``("rrdbnet", constructor_args, renamed_state_dict, layout)``, or ``None`` if the keys are not
        ESRGAN's.

    Raises:
        ConvertError: the keys are ESRGAN's but describe a variant rrdbnet does not build; the message
            names the file.

    Example:
        >>> from restorekit_plugins.esrgan.rrdbnet import RRDBNet
        >>> net = RRDBNet(num_features=8, num_blocks=1, growth_channels=4, scale=2)
        >>> name, args, state, layout = convert_esrgan_state_dict(net.state_dict())
        >>> name, args["scale"], args["num_blocks"], layout
        ('rrdbnet', 2, 1, 'basicsr')
    """
    try:
        layout = detect_layout(state_dict)
        if layout is None:
            return None
        renamed = to_rrdbnet_names(state_dict, layout)
        args = infer_rrdbnet_args(renamed)
    except ConvertError as exc:
        prefix = f"{path}: " if path else ""
        raise ConvertError(f"{prefix}{exc}") from None
    return GENERATOR, args, renamed, layout
