"""restorekit: plugin-based image restoration (super-resolution, deblurring) with GANs on PyTorch.

Importing restorekit is cheap: it builds no model, loads no weights and does not import torch.

Example:
    >>> import restorekit
    >>> model = restorekit.load_model("srresnet")  # doctest: +SKIP
    >>> restored = model(PIL.Image.open("photo.png"))  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from restorekit._version import __version__
from restorekit.hookspecs import hookimpl

if TYPE_CHECKING:
    from restorekit.inference.model import RestorationModel

__all__ = ["__version__", "hookimpl", "load_model"]


def load_model(name_or_path: str, **options: Any) -> RestorationModel:
    """Load named or file weights as a ready-to-use restoration model.

    Args:
        name_or_path: a model-store name (``srgan``), a restorekit ``.safetensors`` file, or a
            foreign ``.pth`` checkpoint a plugin can convert.
        **options: passed to :class:`restorekit.inference.model.RestorationModel` (``device``,
            ``precision``, ``tile``, ``overlap``).

    Example:
        >>> model = load_model("runs/quickstart/quickstart.safetensors")  # doctest: +SKIP
        >>> model.scale, model.task  # doctest: +SKIP
        (4, 'super_resolution')
    """
    from restorekit.inference.model import RestorationModel

    return RestorationModel.load(name_or_path, **options)
