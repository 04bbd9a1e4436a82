"""Sizes from untrusted places — weight-file metadata, recipes, ``--set`` — checked before anything is built.

A weight file's metadata or a recipe names a network and its constructor arguments; nothing stops them
from saying ``num_blocks = 10**9`` (construction never ends) or ``num_features = 10**6`` (36 TB of
weights). So a network from such a source is first built on the ``meta`` device — shapes only, no
memory — under a guard that stops the construction as soon as it grows past a limit, and only then
for real:

* from a weight file, the limit is the file itself: the network may not hold more tensors or values
  than the file (with slack for non-persistent buffers), and once built its tensors must have exactly
  the file's shapes (:func:`restorekit.weights.load_network`, :func:`restorekit.convert.convert_checkpoint`);
* from a recipe, the limit is :data:`MAX_PARAMETERS_ENV` (default 1e9 values: ten times the largest
  published restoration network), and the training memory — weights, gradients, Adam state, the
  activations of one micro-batch at the recipe's crop, measured by a forward pass on ``meta`` — must fit
  the machine (:data:`MAX_MEMORY_ENV`; default: the physical memory, or the GPU's when training on one).

Every refusal is a :class:`SizeLimitError` whose one-line message names the key or file and says how to
raise the limit. The estimates are lower bounds (loss networks such as VGG and allocator overhead are
not counted): a refused configuration cannot run, an accepted one may still be tight.

Example:
    >>> from restorekit.plugins import registry
    >>> net = build_on_meta(registry("generators").get("srresnet"), {"num_blocks": 2, "scale": 2})
    >>> next(net.parameters()).device.type
    'meta'
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

    from restorekit.registry import Component

MAX_PARAMETERS_ENV = "RESTOREKIT_MAX_PARAMETERS"
"""Largest number of parameter values a network from a recipe may have (default 1e9)."""
MAX_MEMORY_ENV = "RESTOREKIT_MAX_MEMORY"
"""Memory a training configuration may need: bytes, or ``64GiB``, ``500MB``...; ``0`` or ``off``: no limit."""
MAX_TENSORS_ENV = "RESTOREKIT_MAX_TENSORS"
"""Largest number of weight tensors a network from a recipe may have (default 10,000: ~4x HAT-L's)."""
MAX_CALLS_ENV = "RESTOREKIT_MAX_BUILD_CALLS"
"""Python calls a network's construction may make on ``meta`` (default 1.5e6, ~5x a 23-block RRDBNet)."""

DEFAULT_MAX_PARAMETERS = 1_000_000_000
DEFAULT_MAX_TENSORS = 10_000
DEFAULT_MAX_CALLS = 1_500_000
_CALLS_PER_TENSOR = 2_000  # a weight file's budget of construction calls grows with its tensors


class SizeLimitError(ValueError):
    """A network or a configuration too large to build or train; the message names the key or file.

    Attributes:
        key: the recipe key (``generator.args``, ``data.batch_size``) or "" for a file.
        detail: which limit was passed (``more than 200,000 weight tensors``), or "".
    """

    def __init__(self, message: str, key: str = "", detail: str = "") -> None:
        self.key, self.detail = key, detail
        super().__init__(message)


@dataclass(frozen=True)
class Budget:
    """What a construction may register before it is stopped."""

    tensors: int
    values: int
    calls: int

    @classmethod
    def for_recipe(cls) -> Budget:
        """The limits for a network named by a recipe (environment overrides applied)."""
        return cls(
            _env_int(MAX_TENSORS_ENV, DEFAULT_MAX_TENSORS), max_parameters(), _env_int(MAX_CALLS_ENV, DEFAULT_MAX_CALLS)
        )

    @classmethod
    def for_state(cls, state: Mapping[str, Any]) -> Budget:
        """The limits for a network that must hold *state*'s tensors: the file, with slack."""
        values = sum(int(getattr(t, "numel", lambda: 0)()) for t in state.values())
        calls = max(_env_int(MAX_CALLS_ENV, DEFAULT_MAX_CALLS), _CALLS_PER_TENSOR * len(state))
        return cls(2 * len(state) + 64, 2 * values + 1_000_000, calls)


def max_parameters() -> int:
    """The parameter limit for networks from recipes (:data:`MAX_PARAMETERS_ENV`)."""
    return _env_int(MAX_PARAMETERS_ENV, DEFAULT_MAX_PARAMETERS)


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip().replace("_", "")
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise SizeLimitError(f"{name}={text!r}: expected a number") from None
    if not math.isfinite(value) or value <= 0:
        return sys.maxsize  # 0, negative or inf: no limit
    return int(value)


# --- building under a guard ---------------------------------------------------------------------------


class _Exceeded(BaseException):
    """Raised inside a construction that passed its budget. Not an ``Exception``, so that the code being
    stopped (a constructor, a library's loader) cannot swallow it with ``except Exception``."""

    def __init__(self, what: str, env: str) -> None:
        super().__init__(what)
        self.what, self.env = what, env


@contextlib.contextmanager
def _guard(budget: Budget) -> Iterator[None]:
    """Stop a construction (by raising :class:`_Exceeded` inside it) once it passes *budget*."""
    from torch.nn.modules import module as module_api

    count = {"tensors": 0, "values": 0, "calls": 0}
    owner = threading.get_ident()  # the registration hooks are global: count this thread's building only

    def on_tensor(module: Any, name: str, tensor: Any) -> None:
        if tensor is None or threading.get_ident() != owner:
            return
        count["tensors"] += 1
        count["values"] += int(tensor.numel())
        if count["tensors"] > budget.tensors:
            raise _Exceeded(f"more than {budget.tensors:,} weight tensors", MAX_TENSORS_ENV)
        if count["values"] > budget.values:
            raise _Exceeded(f"more than {budget.values:,} weight values", MAX_PARAMETERS_ENV)

    def on_call(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            count["calls"] += 1
            if count["calls"] > budget.calls:
                raise _Exceeded(f"more than {budget.calls:,} Python calls to construct", MAX_CALLS_ENV)

    handles = [
        module_api.register_module_parameter_registration_hook(on_tensor),
        module_api.register_module_buffer_registration_hook(on_tensor),
    ]
    # A constructor looping without registering anything is stopped by counting its calls; not under a
    # profiler someone else installed (it would be replaced).
    counting = sys.getprofile() is None
    if counting:
        sys.setprofile(on_call)
    try:
        yield
    finally:
        if counting:
            sys.setprofile(None)
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def guarded(budget: Budget, what: str) -> Iterator[None]:
    """Stop any network construction in the block once it passes *budget* (real or ``meta``).

    For code that builds networks itself from untrusted tensors (spandrel infers its architectures from
    key names): a forged key cannot make it build a billion blocks.

    Raises:
        SizeLimitError: the budget was passed; the message starts with *what*.
    """
    try:
        with _guard(budget):
            yield
    except _Exceeded as exc:
        raise SizeLimitError(f"{what}: larger than its tensors allow ({exc.what})", detail=exc.what) from None


def build_on_meta(
    component: Component, args: Mapping[str, Any], *, budget: Budget | None = None, where: str = ""
) -> nn.Module:
    """Build *component* with *args* on the ``meta`` device (no memory), stopped beyond *budget*.

    Args:
        component: the registry entry.
        args: constructor arguments (untrusted).
        budget: the limits; default :meth:`Budget.for_recipe`.
        where: what the arguments come from, for the message (``generator.args``, a file).

    Returns:
        The network, with meta tensors (shapes and dtypes only).

    Raises:
        SizeLimitError: the construction went past the budget.
        Exception: whatever the constructor raises for bad values (the caller words it).
    """
    import torch

    budget = budget or Budget.for_recipe()
    factory = component.factory  # imported outside the guard: importing is not building
    try:
        with _guard(budget), _no_initialisation(), torch.device("meta"):
            return factory(**dict(args))
    except _Exceeded as exc:
        message = _too_large(component, args, exc.what, exc.env, where)
        raise SizeLimitError(message, key=where, detail=exc.what) from None


_SKIP = threading.local()
_SKIP_LOCK = threading.Lock()
_SKIP_USERS = 0
_SAVED_INIT: dict[str, Any] = {}


@contextlib.contextmanager
def _no_initialisation() -> Iterator[None]:
    """Skip ``torch.nn.init`` in this thread while building on ``meta``: there are no values to
    initialise, and the meta versions of the random fills import torch's compiler (seconds) and run
    through Python. Other threads keep initialising their (real) networks as usual."""
    global _SKIP_USERS
    from torch.nn import init

    with _SKIP_LOCK:
        if _SKIP_USERS == 0:
            for name in dir(init):
                function = getattr(init, name)
                if name.endswith("_") and not name.startswith("_") and callable(function):
                    _SAVED_INIT[name] = function
                    setattr(init, name, _skipping(function))
        _SKIP_USERS += 1
    previous = getattr(_SKIP, "on", False)
    _SKIP.on = True
    try:
        yield
    finally:
        _SKIP.on = previous
        with _SKIP_LOCK:
            _SKIP_USERS -= 1
            if _SKIP_USERS == 0:
                for name, function in _SAVED_INIT.items():
                    setattr(init, name, function)
                _SAVED_INIT.clear()


def _skipping(function: Any) -> Any:
    def init_unless_on_meta(tensor: Any, *args: Any, **kwargs: Any) -> Any:
        return tensor if getattr(_SKIP, "on", False) else function(tensor, *args, **kwargs)

    init_unless_on_meta.__name__ = function.__name__
    init_unless_on_meta.__doc__ = function.__doc__
    return init_unless_on_meta


def _too_large(component: Component, args: Mapping[str, Any], what: str, env: str, where: str) -> str:
    kind = {"generators": "generator", "discriminators": "discriminator"}.get(component.kind, component.kind)
    big = [f"{k} = {v}" for k, v in args.items() if isinstance(v, int) and not isinstance(v, bool) and v >= 10_000]
    culprit = f" ({', '.join(big)}?)" if big else ""
    prefix = f"{where}: " if where else ""
    return (
        f"{prefix}{kind} '{component.name}' with these arguments{culprit} is too large to build: {what}; "
        f"refused before allocating anything ({env} raises the limit)"
    )


def state_shapes(network: nn.Module) -> dict[str, tuple[int, ...]]:
    """Name → shape of everything *network* saves (meta networks included)."""
    return {k: tuple(v.shape) for k, v in network.state_dict().items()}


def parameter_count(network: nn.Module) -> int:
    """Parameter values of *network* (meta networks included)."""
    return sum(p.numel() for p in network.parameters())


# --- memory ---------------------------------------------------------------------------------------------

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
          "t": 1000**4, "tb": 1000**4, "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}  # fmt: skip


def parse_bytes(text: str) -> int | None:
    """``"64GiB"`` → bytes; ``"0"``/``"off"``/``"none"`` → None (no limit).

    Raises:
        SizeLimitError: not a size.
    """
    cleaned = text.strip().lower().replace("_", "").replace(" ", "")
    if cleaned in ("0", "off", "none", "inf", "unlimited"):
        return None
    match = re.fullmatch(r"([0-9]*\.?[0-9]+(?:e[0-9]+)?)([a-z]*)", cleaned)
    if not match or match.group(2) not in _UNITS:
        raise SizeLimitError(f"{MAX_MEMORY_ENV}={text!r}: expected a size such as 64GiB, 500MB or 0 (no limit)")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def memory_limit(device: torch.device) -> tuple[int | None, str]:
    """The memory a configuration may need on *device*, and where that figure comes from."""
    text = os.environ.get(MAX_MEMORY_ENV, "").strip()
    if text:
        return parse_bytes(text), MAX_MEMORY_ENV
    if device.type == "cuda":
        import torch

        index = device.index if device.index is not None else torch.cuda.current_device()
        total = int(torch.cuda.get_device_properties(index).total_memory)
        return total, f"the memory of {torch.cuda.get_device_name(index)}"
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")), "this machine's memory"
    except (ValueError, OSError, AttributeError):
        return None, "unknown"


def format_bytes(n: float) -> str:
    """``3.2 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


def activation_bytes(network: nn.Module, shape: tuple[int, ...], *, element_size: int = 4) -> int | None:
    """Bytes of the activations a training forward pass of *network* keeps for its backward pass.

    The network (on ``meta``) is run once on an input of *shape*; the outputs of its leaf modules are
    summed (in-place activations not counted again). None when the network cannot run on ``meta``.
    """
    import torch

    total = 0

    def on_output(module: Any, inputs: Any, output: Any) -> None:
        nonlocal total
        if getattr(module, "inplace", False):
            return
        for tensor in output if isinstance(output, (tuple, list)) else (output,):
            if isinstance(tensor, torch.Tensor):
                total += tensor.numel() * element_size

    leaves = [m for m in network.modules() if not any(True for _ in m.children())]
    handles = [m.register_forward_hook(on_output) for m in leaves]
    try:
        with torch.no_grad():
            network(torch.empty(shape, device="meta"))
    except Exception:  # noqa: BLE001 - an op without a meta kernel: no estimate, not a problem
        return None
    finally:
        for handle in handles:
            handle.remove()
    return total


def activation_upper_bound(network: nn.Module, batch: int, side: int, *, element_size: int = 4) -> int:
    """A cheap bound on :func:`activation_bytes`, from the network's structure alone (no forward pass).

    Every leaf module is taken to output ``batch x C x side x side`` values, where ``C`` is the widest
    weight dimension of the network and *side* the largest feature map (the HR crop for an upscaling
    generator); functional concatenations are covered because they feed layers that wide.
    """
    leaves = sum(1 for m in network.modules() if not any(True for _ in m.children()))
    widest = max((max(p.shape[:2]) for p in network.parameters() if p.ndim >= 2), default=64)
    return leaves * batch * int(widest) * side * side * element_size


@dataclass(frozen=True)
class TrainingEstimate:
    """The memory one training step needs, in bytes, by part.

    Attributes:
        weights: weights, gradients and Adam's two moments.
        activations: what the forward passes keep for the backward pass (a bound when not ``measured``).
        measured: the activations come from a forward pass on ``meta`` rather than the cheap bound.
    """

    weights: int
    activations: int
    measured: bool

    @property
    def total(self) -> int:
        return self.weights + self.activations


def training_memory(
    networks: list[tuple[nn.Module, tuple[int, ...], int, int]],
    *,
    element_size: int = 4,
    limit: int | None = None,
) -> TrainingEstimate:
    """Memory of one training step: the cheap bound, or, when that exceeds *limit*, a measurement.

    Args:
        networks: ``(meta network, input shape, largest feature-map side, passes)`` for each network
            trained (a discriminator sees the real and the fake batch: 2 passes).
        element_size: bytes per activation value (2 under bf16/fp16 autocast).
        limit: the memory available; the forward pass on ``meta`` (which costs seconds the first time:
            torch imports its compiler for some meta kernels) is only made when the bound exceeds it.

    Returns:
        Weights + gradients + Adam's two moments (16 bytes per parameter) and the activations kept for
        the backward pass of one micro-batch. A lower bound of the real need when ``measured`` (loss
        networks and allocator overhead are not counted).
    """
    weights = sum(16 * parameter_count(network) for network, _, _, _ in networks)
    bound = weights + sum(
        passes * activation_upper_bound(network, shape[0], side, element_size=element_size)
        for network, shape, side, passes in networks
    )
    if limit is None or bound <= limit:
        return TrainingEstimate(weights, bound - weights, measured=False)
    activations = 0
    for network, shape, side, passes in networks:
        kept = activation_bytes(network, shape, element_size=element_size)
        if kept is None:  # cannot run on meta: the bound is all there is, and it is no proof
            return TrainingEstimate(weights, 0, measured=True)
        activations += passes * kept
    return TrainingEstimate(weights, activations, measured=True)
