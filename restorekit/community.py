"""Community checkpoints through spandrel: the architectures no restorekit plugin implements.

With the optional extra ``restorekit[community]`` (spandrel >= 0.4), a checkpoint that no plugin's
converter recognises is offered to spandrel, which knows about 40 architectures (SwinIR, HAT, DAT, SPAN,
Compact, OmniSR, NAFNet, ...) and infers their hyperparameters from tensor shapes. restorekit stays in
charge of everything around the network:

- the file is read by :func:`restorekit.convert.read_foreign_state` (``torch.load(weights_only=True)``
  or safetensors): spandrel is handed tensors only and never unpickles anything;
- spandrel's descriptor is translated once, by :func:`map_descriptor`, into restorekit's
  :class:`~restorekit.descriptor.ModelDescriptor`, so tiling, padding and precision follow the same
  record as for restorekit's own networks;
- the network runs inside :class:`SpandrelNetwork`, which calls it the way spandrel does (its call
  convention, minimum size and square inputs) and otherwise looks like any restorekit generator:
  ``(N, C, H, W)`` in ``[0, 1]`` in, ``(N, C, H·scale, W·scale)`` out.

Such a network has no restorekit constructor (``args`` is empty: the hyperparameters are spandrel's
business), so it cannot be saved as a restorekit ``.safetensors`` file unless a plugin registers the
same architecture (see :data:`RESTOREKIT_GENERATORS` and :func:`restorekit.convert.convert_checkpoint`).

Descriptor mapping (spandrel → restorekit), decided here and nowhere else:

=============================  ==================================================================
spandrel                       restorekit
=============================  ==================================================================
``architecture.id``            ``name`` (``SwinIR``); ``plugin`` is ``spandrel``, ``args`` ``{}``
``scale``                      ``scale``
``input/output_channels``      ``in_channels`` / ``out_channels``
``size_requirements``          ``multiple_of`` → ``size_multiple`` (restorekit pads tiles and whole
                               images to it, so tiles start aligned and need no extra padding);
                               ``minimum`` and ``square`` are honoured by :class:`SpandrelNetwork`
                               itself, which pads each input (tile or whole image) as spandrel's
                               own call does and crops the output. Padding a tile to a square or to
                               a minimum side does not change the pixels it covers more than padding
                               the whole image would, so the tiling rule stays spandrel's.
``supports_half``              ``supports_fp16``
``supports_bfloat16``          ``supports_bf16``
``tiling``                     ``SUPPORTED`` → ``tileable``; ``DISCOURAGED`` → ``tile_with_warning``;
                               ``INTERNAL`` → ``whole_image_only`` (the model tiles itself)
``purpose``                    scale > 1 (``SR``, ``FaceSR``) → ``super_resolution``; scale 1
                               (``Restoration``, x1 ``SR``) → ``deblurring``, restorekit's
                               same-size restoration task; ``Inpainting`` is refused (it needs a mask)
(receptive field)              ``tile_margin`` 0: spandrel does not know it; the default overlap holds
=============================  ==================================================================

Example:
    >>> from restorekit.convert import read_foreign_state
    >>> state = read_foreign_state("4x-SwinIR-small.pth")  # doctest: +SKIP
    >>> network, info = load_with_spandrel(state, "4x-SwinIR-small.pth")  # doctest: +SKIP
    >>> info.name, info.scale, info.descriptor.tiling  # doctest: +SKIP
    ('SwinIR', 4, 'tile_with_warning')
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

from restorekit.convert import ConvertError
from restorekit.descriptor import TILE_WITH_WARNING, TILEABLE, WHOLE_IMAGE_ONLY, DescriptorError, ModelDescriptor
from restorekit.fileio import sha256_file
from restorekit.weights import WeightInfo

if TYPE_CHECKING:
    from spandrel import ImageModelDescriptor

PLUGIN = "spandrel"
EXTRA = "restorekit[community]"

#: spandrel architecture id → the restorekit generator that builds the same network. A checkpoint
#: spandrel reads as one of these can become a restorekit ``.safetensors`` file, through that
#: generator's own converter (:func:`restorekit.convert.convert_checkpoint`).
RESTOREKIT_GENERATORS = {"ESRGAN": "rrdbnet", "Compact": "srvgg_compact"}

#: How many architectures spandrel 0.4 reads, for the hint shown when it is not installed.
ABOUT_ARCHITECTURES = 40

_TASK_SR = "super_resolution"
_TASK_SAME_SIZE = "deblurring"


class SpandrelError(ConvertError):
    """spandrel recognised the checkpoint but cannot load it, or it is not a plain image model."""


# --- availability ----------------------------------------------------------------------------------


def spandrel_version() -> str | None:
    """The installed spandrel's version, or ``None`` when it is not installed (or too old)."""
    try:
        import spandrel
    except ImportError:
        return None
    version = str(getattr(spandrel, "__version__", ""))
    # 0.4 introduced ModelTiling and size requirements, which the descriptor mapping relies on.
    return version if hasattr(spandrel, "ModelTiling") else None


def install_hint() -> str:
    """The clause naming what spandrel would add, for "nothing recognises this file" messages."""
    return f"install {EXTRA} to read about {ABOUT_ARCHITECTURES} more architectures (SwinIR, HAT, DAT, SPAN, ...)"


def architecture_count() -> int:
    """How many architectures the installed spandrel knows (0 without spandrel)."""
    if spandrel_version() is None:
        return 0
    from spandrel import MAIN_REGISTRY

    return len(MAIN_REGISTRY)


# --- recognising and loading -----------------------------------------------------------------------


def _canonical(state: Mapping[str, Tensor]) -> dict[str, Any]:
    from spandrel import canonicalize_state_dict

    # restorekit already removed its wrappers; spandrel also strips "netG." and unwraps single keys.
    return dict(canonicalize_state_dict(dict(state)))


def identify(state: Mapping[str, Tensor]) -> str | None:
    """The id of the spandrel architecture whose key layout *state* has, without building it.

    Args:
        state: tensors, as :func:`restorekit.convert.read_foreign_state` returns them.

    Returns:
        The architecture id (``SwinIR``), or ``None`` when spandrel is not installed or does not
        recognise the keys. Detection alone can be a false positive; :func:`load_with_spandrel` builds.
    """
    if spandrel_version() is None:
        return None
    from spandrel import MAIN_REGISTRY

    canonical = _canonical(state)
    for support in MAIN_REGISTRY.architectures("detection"):
        try:
            if support.detect(canonical):
                return str(support.architecture.id)
        except Exception:  # noqa: BLE001 - a detector that trips over odd keys has simply not recognised them
            continue
    return None


def load_with_spandrel(state: Mapping[str, Tensor], path: str | Path) -> tuple[nn.Module, WeightInfo] | None:
    """Build the network spandrel recognises in *state*, ready for :class:`RestorationModel`.

    Args:
        state: tensors read safely from *path* (never the file itself: spandrel does not unpickle).
        path: the checkpoint, for messages and provenance.

    Returns:
        ``(network, info)``: a :class:`SpandrelNetwork` in eval mode on the CPU, and a
        :class:`~restorekit.weights.WeightInfo` whose descriptor comes from :func:`map_descriptor` and
        whose ``extra`` records ``source_file``, ``source_sha256``, ``loaded_by``,
        ``spandrel_architecture``, ``spandrel_version``, ``spandrel_tags`` and
        ``spandrel_size_requirements``. ``None`` when spandrel is
        not installed or does not recognise the keys.

    Raises:
        SpandrelError: spandrel recognises the layout but cannot build it, or it is not a plain image
            model (inpainting needs a mask); the one-line message names the file and the architecture.
    """
    version = spandrel_version()
    if version is None:
        return None
    from spandrel import ImageModelDescriptor, ModelLoader, UnsupportedModelError

    path = Path(path)
    try:
        with warnings.catch_warnings():
            # Some architectures (SwinIR's torch.meshgrid) warn about torch API changes: noise to a user.
            warnings.simplefilter("ignore", UserWarning)
            loaded = ModelLoader(device="cpu").load_from_state_dict(_canonical(state))
    except UnsupportedModelError:
        return None
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - detection matched but the tensors do not fit: say which
        arch = identify(state) or "a known architecture"
        text = str(exc).strip().splitlines()
        why = text[0] if text else type(exc).__name__
        raise SpandrelError(f"{path}: spandrel {version} reads it as {arch} but cannot load it ({why})") from None
    arch = str(loaded.architecture.id)
    if not isinstance(loaded, ImageModelDescriptor):
        raise SpandrelError(
            f"{path}: spandrel reads it as {arch}, an {loaded.purpose.lower()} model that needs a mask; "
            "restorekit restores whole images only"
        )
    try:
        descriptor = map_descriptor(loaded)
    except DescriptorError as exc:
        raise SpandrelError(f"{path}: {exc}") from None
    info = WeightInfo.of(
        descriptor,
        extra={
            "source_file": path.name,
            "source_sha256": sha256_file(path),
            "loaded_by": PLUGIN,
            "spandrel_architecture": arch,
            "spandrel_version": version,
            "spandrel_tags": ", ".join(loaded.tags),
            "spandrel_size_requirements": _size_requirements(loaded),
        },
    )
    return SpandrelNetwork(loaded).eval(), info


def _size_requirements(loaded: ImageModelDescriptor) -> str:
    """spandrel's size requirements in words; those beyond ``size_multiple`` are met by :class:`SpandrelNetwork`."""
    needs = loaded.size_requirements
    parts = [f"multiple of {needs.multiple_of}"] + [f"minimum {needs.minimum}"] * (needs.minimum > 0)
    return ", ".join(parts + ["square"] * needs.square)


def map_descriptor(loaded: ImageModelDescriptor) -> ModelDescriptor:
    """Translate spandrel's descriptor into restorekit's (the table in the module docstring).

    Raises:
        DescriptorError: a value out of restorekit's range (a damaged or hostile checkpoint).
    """
    from spandrel import ModelTiling

    tiling = {
        ModelTiling.SUPPORTED: TILEABLE,
        ModelTiling.DISCOURAGED: TILE_WITH_WARNING,
        # The model splits the image itself; cutting it again from outside would only add seams.
        ModelTiling.INTERNAL: WHOLE_IMAGE_ONLY,
    }.get(loaded.tiling, TILE_WITH_WARNING)  # an unknown future value: allowed, but say it may differ
    scale = int(loaded.scale)
    return ModelDescriptor(
        name=str(loaded.architecture.id),
        args={},
        kind="generator",
        plugin=PLUGIN,
        task=_TASK_SR if scale > 1 else _TASK_SAME_SIZE,
        scale=scale,
        in_channels=int(loaded.input_channels),
        out_channels=int(loaded.output_channels),
        size_multiple=int(loaded.size_requirements.multiple_of),
        supports_fp16=bool(loaded.supports_half),
        supports_bf16=bool(loaded.supports_bfloat16),
        tiling=tiling,
        tile_margin=0,
    )


class SpandrelNetwork(nn.Module):
    """A spandrel-loaded network, called as restorekit calls any generator.

    The forward pass is spandrel's own call: its per-architecture call convention (some networks take
    extra inputs or return tuples), padding to the minimum side and to a square where the network needs
    them, output cropped back and clamped to ``[0, 1]``. restorekit has already padded the input to
    ``size_multiple``, so in the common case nothing more is padded.

    Args:
        loaded: spandrel's image-model descriptor; its ``model`` becomes this module's only child, so
            ``.to()``, ``.eval()`` and ``parameters()`` reach the real network.
    """

    def __init__(self, loaded: ImageModelDescriptor):
        super().__init__()
        self.model = loaded.model
        # A plain attribute, not a submodule: it is a callable wrapper around self.model, not a layer.
        self._loaded = loaded
        self.scale = int(loaded.scale)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, H, W)`` in ``[0, 1]`` → ``(N, C_out, H·scale, W·scale)`` in ``[0, 1]``."""
        # spandrel's call runs under inference_mode; restorekit never trains these networks.
        return self._loaded(x)

    def extra_repr(self) -> str:
        return f"spandrel {self._loaded.architecture.id}, x{self.scale}"


__all__ = [
    "PLUGIN",
    "RESTOREKIT_GENERATORS",
    "SpandrelError",
    "SpandrelNetwork",
    "architecture_count",
    "identify",
    "install_hint",
    "load_with_spandrel",
    "map_descriptor",
    "spandrel_version",
]
