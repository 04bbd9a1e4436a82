"""Recognise SRVGGNetCompact checkpoints (Real-ESRGAN's compact model) and infer their arguments.

The official files (``realesr-general-x4v3.pth``, ``realesr-animevideov3.pth``, community "Compact"
models) hold one ``body`` list under ``params`` (or ``params_ema``, which
:func:`restorekit.convert.read_foreign_state` unwraps)::

    body.0.weight   (num_features, in_channels, 3, 3)     first conv
    body.1.weight   (num_features,)                        PReLU slopes (absent for relu/leakyrelu)
    body.2.weight   (num_features, num_features, 3, 3)    hidden conv, then activation at body.3 ...
    body.<2k>.weight (in_channels * scale**2, num_features, 3, 3)   last conv, k = num_conv + 1

restorekit's ``srvgg_compact`` uses the same names, so conversion only infers the constructor
arguments; the state dict passes through unchanged. Everything comes from shapes: ``in_channels``
and ``num_features`` from ``body.0``, ``num_conv`` from the highest index, the scale from the last
conv's output channels (the output has as many channels as the input, since the input is added to
it), and the activation from whether the odd entries carry weights.

ReLU and LeakyReLU have no parameters, so a checkpoint without PReLU slopes cannot say which of the
two it used: it is read as ``leakyrelu`` (slope 0.1), the option the reference code lists last; the
released Real-ESRGAN models all use PReLU.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import torch

from restorekit.convert import ConvertError

GENERATOR = "srvgg_compact"
LAYOUT = "realesrgan-compact"

_KEY = re.compile(r"^body\.(\d+)\.(weight|bias)$")


def infer_srvgg_args(state: Mapping[str, torch.Tensor]) -> dict[str, Any] | None:
    """SRVGGNetCompact constructor arguments from the shapes of a ``body.N`` state dict.

    Args:
        state: parameter name → tensor.

    Returns:
        The arguments, or ``None`` when the keys or shapes are not SRVGGNetCompact's (some other
        network that also names a list ``body``).

    Raises:
        ConvertError: clearly SRVGGNetCompact, but a variant ``srvgg_compact`` does not build (one PReLU
            slope shared by all channels, a last conv whose channels are not ``in_channels * scale**2``).
    """
    indices: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        match = _KEY.match(key)
        if match is None:
            return None  # RRDBNet (body.N.rdb1...), or anything with keys outside one body list
        indices.setdefault(int(match.group(1)), {})[match.group(2)] = value

    convs = sorted(i for i, p in indices.items() if _is_conv3x3(p))
    acts = sorted(i for i in indices if i not in convs)
    if not convs or convs[0] != 0 or convs != list(range(0, 2 * len(convs), 2)) or len(convs) < 2:
        return None  # convs must sit at 0, 2, 4, ... with an activation between each pair
    last = convs[-1]
    if acts and acts != list(range(1, last, 2)):
        return None  # weighted activations at some positions only: not this layout
    if any(set(indices[i]) != {"weight", "bias"} for i in convs):
        return None

    first = indices[0]["weight"]
    num_features, in_channels = int(first.shape[0]), int(first.shape[1])
    for i in convs[1:-1]:
        if tuple(indices[i]["weight"].shape[:2]) != (num_features, num_features):
            return None
    if int(indices[last]["weight"].shape[1]) != num_features:
        return None

    if acts:
        if any(set(indices[i]) != {"weight"} or indices[i]["weight"].ndim != 1 for i in acts):
            return None
        slopes = {int(indices[i]["weight"].shape[0]) for i in acts}
        if slopes != {num_features}:
            raise ConvertError(
                f"SRVGGNetCompact with PReLU slopes of {sorted(slopes)} channels; srvgg_compact learns one "
                f"slope per feature channel ({num_features})"
            )
        act_type = "prelu"
    else:
        act_type = "leakyrelu"  # relu or leakyrelu: no parameters tell them apart (see module docstring)

    last_out = int(indices[last]["weight"].shape[0])
    scale = math.isqrt(last_out // in_channels) if last_out % in_channels == 0 else 0
    if scale < 1 or scale * scale * in_channels != last_out:
        raise ConvertError(
            f"SRVGGNetCompact whose last conv makes {last_out} channels from {in_channels}-channel input: "
            "expected in_channels * scale**2 (the output has the input's channels)"
        )
    return {
        "in_channels": in_channels,
        "out_channels": in_channels,
        "num_features": num_features,
        "num_conv": len(convs) - 2,
        "scale": scale,
        "act_type": act_type,
    }


def _is_conv3x3(params: Mapping[str, torch.Tensor]) -> bool:
    weight = params.get("weight")
    return weight is not None and weight.ndim == 4 and tuple(weight.shape[2:]) == (3, 3)


def convert_srvgg_state_dict(
    state_dict: Mapping[str, Any], path: str = "", hints: Mapping[str, Any] | None = None
) -> tuple[str, dict[str, Any], dict[str, torch.Tensor], str] | None:
    """Recognise a Real-ESRGAN compact (SRVGGNetCompact) state dict.

    Args:
        state_dict: unwrapped parameter name → tensor (see :func:`restorekit.convert.read_foreign_state`).
        path: the file it came from, for messages.
        hints: what the user said about the file; an ``arch`` other than ``srvgg_compact`` makes this
            converter stand aside. A ``scale`` hint is checked by restorekit against the inferred scale.

    Returns:
        ``("srvgg_compact", constructor_args, state_dict, "realesrgan-compact")``, or ``None`` if the
        keys are not SRVGGNetCompact's.

    Raises:
        ConvertError: the keys are SRVGGNetCompact's but describe a variant ``srvgg_compact`` does not
            build; the message names the file.

    Example:
        >>> from restorekit_plugins.realesrgan.srvgg import SRVGGNetCompact
        >>> net = SRVGGNetCompact(num_features=8, num_conv=3, scale=2)
        >>> name, args, state, layout = convert_srvgg_state_dict(net.state_dict())
        >>> name, args["num_conv"], args["scale"], args["act_type"], layout
        ('srvgg_compact', 3, 2, 'prelu', 'realesrgan-compact')
    """
    if hints and hints.get("arch") not in (None, GENERATOR):
        return None
    try:
        args = infer_srvgg_args(state_dict)
    except ConvertError as exc:
        prefix = f"{path}: " if path else ""
        raise ConvertError(f"{prefix}{exc}") from None
    if args is None:
        return None
    return GENERATOR, args, dict(state_dict), LAYOUT
