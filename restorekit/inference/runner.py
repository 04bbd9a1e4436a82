"""How a network runs on a device: the fast path behind :class:`~restorekit.inference.model.RestorationModel`.

A :class:`NetworkRunner` takes batches of tiles and returns the network's output for them, as fast as the
device allows without changing the result beyond float rounding. What it does, and why:

On the CPU (measured on a 2-core AMD EPYC, see ``benchmarks/apply_vs_spandrel.py``):

* **Channels-last activations.** oneDNN's convolutions work natively on NHWC data; NCHW tensors are
  reordered into and out of oneDNN's layout at every convolution.
* **Convolution weights packed once.** Every plain ``nn.Conv2d`` is run through
  ``torch.ops.mkldnn._convolution_pointwise`` with its weight reordered once into oneDNN's blocked layout
  (the operator ``torch.compile``'s CPU backend emits), instead of being reordered on every call.
  Together with channels-last this is what makes the CPU path faster than a bare forward. The
  convolutions keep their identity, parameters and state dict (:class:`PackedConv2d`) and compute bit
  for bit as ``nn.Conv2d`` outside the fast path; packed weights are made again when a weight changes.
* **Instance norm as a per-channel group norm** (:class:`GroupedInstanceNorm2d`): the same statistics
  from a kernel that keeps channels-last data channels-last, 5× faster than ``instance_norm`` here
  (which converts to NCHW and back). Without it, channels-last made DeblurGAN's generator 7-9 % slower.
* **``torch.compile``** (opt-in, ``compile=True``): inductor with weight freezing, one graph per tile
  shape. On this CPU it is no faster than the packed eager path and costs 10-60 s per shape, so it is
  not the default; when it fails (no C++ compiler, an unsupported operator) the eager fast path is used.
* **bfloat16** only when asked for explicitly and the CPU computes it natively (AVX-512 BF16, AMX); it
  is twice as fast on such CPUs but not within one 8-bit level of fp32 for deep networks.

On CUDA (written for, not measured here: no GPU was available; everything is behind
``device.type == "cuda"``):

* fp16/bf16 autocast (as the descriptor allows), channels-last, cuDNN autotuning;
* **CUDA graphs** for tile shapes that repeat: every full tile of a large photograph has the same
  shape, so after one eager warm-up call the whole network is replayed as one graph, without the
  per-kernel launch cost that dominates small tiles; any failure to capture falls back to eager;
* pinned host memory and non-blocking copies (in :func:`~restorekit.inference.tiling.tiled_apply`).

The plain path (``fast=False``): the network as given, NCHW, under ``inference_mode`` — the reference
the fast path is tested against (``tests/test_inference_fast.py``: within one 8-bit level on real
photographs, for every registered generator).

Example:
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Conv2d(8, 3, 3, padding=1))
    >>> runner = NetworkRunner(net.eval(), device=torch.device("cpu"))
    >>> x = torch.rand(1, 3, 16, 16)
    >>> bool((runner(x) - net(x)).abs().max() < 1e-5)
    True
"""

from __future__ import annotations

import contextlib
import functools
import os
import warnings
from contextvars import ContextVar
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "GroupedInstanceNorm2d",
    "NetworkRunner",
    "PackedConv2d",
    "activation_bytes_per_pixel",
    "cpu_bf16_native",
    "fast_path_active",
    "group_instance_norms",
    "heap_reuse",
    "memory_budget",
    "pack_convolutions",
    "set_threads",
]

#: Tile shapes a runner keeps CUDA graphs for; each graph holds its own memory pool.
MAX_GRAPHS = 4


# --- CPU: convolutions with packed weights ------------------------------------------------------------


@functools.cache
def _mkldnn_ops_available() -> bool:
    ops = torch.ops.mkldnn
    return (
        torch.backends.mkldnn.is_available()
        and hasattr(ops, "_convolution_pointwise")
        and hasattr(ops, "_reorder_convolution_weight")
    )


def cpu_bf16_native() -> bool:
    """Whether this CPU computes bfloat16 convolutions natively (AVX-512 BF16 or AMX), so bf16 pays."""
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return bool(torch.backends.mkldnn.is_available() and check is not None and check())
    except RuntimeError:
        return False


_PACKED = ContextVar("restorekit_packed_convolutions", default=False)
"""On while a runner's fast path runs: only then do :class:`PackedConv2d` layers use their packed weights."""


def fast_path_active(x: Tensor) -> bool:
    """Whether a fused CPU operator may run on *x* now: inside a runner's fast path, float32 on the CPU.

    False while ``torch.compile`` traces, under autocast, with autograd on, or without oneDNN; fused
    operators (:class:`PackedConv2d`, :func:`~restorekit.inference.fused.dense_block`) then run the
    network's plain code.
    """
    return (
        not torch.compiler.is_compiling()  # first: torch.compile traces the plain code and fuses by itself
        and _PACKED.get()
        and x.dtype == torch.float32
        and x.device.type == "cpu"
        and not torch.is_grad_enabled()
        and not torch.is_autocast_enabled("cpu")
        and _mkldnn_ops_available()
    )


class PackedConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` that, on the fast path, runs with its weight reordered once into oneDNN's layout.

    :func:`pack_convolutions` turns plain convolutions into this class in place (same object, same
    parameters, hooks and state dict). Outside a fast-path call it *is* ``nn.Conv2d``: ``super().forward``,
    bit for bit, so the plain path and any other code using the network see no change. On the fast path
    (float32 on the CPU, no autocast) it calls ``torch.ops.mkldnn._convolution_pointwise`` with a packed
    copy of the weight, made on first use and made again whenever the weight changes (loaded, edited in
    place, moved).
    """

    def _packed_weight(self) -> tuple[Tensor, tuple[list[int], list[int], list[int], int]]:
        weight = self.weight
        key = (weight.data_ptr(), weight._version, tuple(weight.shape))
        state = self.__dict__
        if state.get("_packed_key") != key:
            geometry = (list(self.padding), list(self.stride), list(self.dilation), self.groups)
            state["_packed"] = torch.ops.mkldnn._reorder_convolution_weight(
                weight.detach(), *geometry, [1, self.in_channels, 64, 64]
            )
            state["_packed_geometry"] = geometry
            state["_packed_key"] = key
        return state["_packed"], state["_packed_geometry"]

    def forward(self, x: Tensor) -> Tensor:
        if not fast_path_active(x) or self.weight.device.type != "cpu":
            return super().forward(x)
        packed, geometry = self._packed_weight()
        bias = None if self.bias is None else self.bias.detach()
        return torch.ops.mkldnn._convolution_pointwise(x, packed, bias, *geometry, "none", [], "")

    def __getstate__(self) -> dict[str, Any]:
        # oneDNN's packed tensors cannot be copied or pickled; they are made again on first use.
        state = dict(self.__dict__)
        for key in ("_packed", "_packed_key", "_packed_geometry", "_dense_parts"):
            state.pop(key, None)
        return state


def _packable(module: nn.Module) -> bool:
    """A plain 2-D convolution that oneDNN's fused operator computes exactly as ``conv2d`` does."""
    return (
        type(module) is nn.Conv2d  # subclasses may override forward (weight standardisation, ...)
        and module.padding_mode == "zeros"
        and not isinstance(module.padding, str)  # "same"/"valid": left to conv2d
        and module.weight.dtype == torch.float32
        and not getattr(module, "parametrizations", None)  # spectral norm etc. compute the weight
    )


def pack_convolutions(network: nn.Module) -> int:
    """Let the plain convolutions of *network* run with packed oneDNN weights on the fast path (in place).

    Each plain ``nn.Conv2d`` becomes a :class:`PackedConv2d` (its class is changed; the object, its
    parameters, hooks and state dict stay), which behaves exactly as ``nn.Conv2d`` except inside a
    runner's fast path. Convolutions oneDNN's fused operator does not cover (other padding modes,
    parametrized weights, subclasses) are left alone.

    Args:
        network: The network.

    Returns:
        How many convolutions can run packed (0 when this torch has no oneDNN).

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU())
        >>> pack_convolutions(net), type(net[0]).__name__, isinstance(net[0], torch.nn.Conv2d)
        (1, 'PackedConv2d', True)
    """
    if not _mkldnn_ops_available():
        return 0
    count = 0
    for module in network.modules():
        if isinstance(module, PackedConv2d):
            count += 1
        elif _packable(module):
            module.__class__ = PackedConv2d
            count += 1
    return count


class GroupedInstanceNorm2d(nn.InstanceNorm2d):
    """An ``nn.InstanceNorm2d`` computed, on the fast path, as a group norm with one group per channel.

    The same statistics (each sample's and channel's mean and variance over the image), from a kernel
    that keeps channels-last data channels-last and is several times faster on the CPU than
    ``instance_norm``, which copies channels-last input to NCHW and returns NCHW (so that every
    convolution after it would reorder again). Equal up to float rounding. Made by
    :func:`group_instance_norms` in place, like :class:`PackedConv2d`, and plain ``InstanceNorm2d``
    outside the fast path or with running statistics in eval mode.
    """

    def forward(self, x: Tensor) -> Tensor:
        if (
            torch.compiler.is_compiling()
            or not _PACKED.get()
            or x.ndim != 4
            or x.device.type != "cpu"
            or (self.track_running_stats and not self.training)  # normalises by running stats instead
        ):
            return super().forward(x)
        return torch.nn.functional.group_norm(x, x.shape[1], self.weight, self.bias, self.eps)

    def __getstate__(self) -> dict[str, Any]:
        return dict(self.__dict__)


def group_instance_norms(network: nn.Module) -> int:
    """Let the ``InstanceNorm2d`` layers of *network* run as per-channel group norms on the fast path.

    In place (the class changes, nothing else); see :class:`GroupedInstanceNorm2d`.

    Returns:
        How many layers were changed.
    """
    count = 0
    for module in network.modules():
        if isinstance(module, GroupedInstanceNorm2d):
            count += 1
        elif type(module) is nn.InstanceNorm2d:
            module.__class__ = GroupedInstanceNorm2d
            count += 1
    return count


# --- memory -------------------------------------------------------------------------------------------


def activation_bytes_per_pixel(network: nn.Module, *, in_channels: int, multiple: int = 1, side: int = 32) -> float:
    """Working memory of one forward pass, in bytes per input pixel, measured on a small probe.

    The largest intermediate tensor a layer produces, times three (its input, itself and a skip or
    concatenation alive at the same time), plus the input: a deliberately high estimate, used to keep
    batches of tiles inside a memory budget.

    Args:
        network: The network (on the CPU, float32).
        in_channels: Channels it reads.
        multiple: Its size multiple (the probe side is rounded up to it).
        side: The probe's side in pixels.

    Returns:
        Bytes per input pixel, or 0.0 when the probe could not run (the caller then does not limit).
    """
    side = side + -side % max(1, multiple)
    largest = 0

    def record(_module: nn.Module, _args: Any, output: Any) -> None:
        nonlocal largest
        if isinstance(output, Tensor):
            largest = max(largest, output.numel() * output.element_size())

    handles = [m.register_forward_hook(record) for m in network.modules() if not m._modules]
    try:
        with torch.inference_mode():
            probe = torch.zeros(1, in_channels, side, side)
            out = network(probe)
            largest = max(largest, out.numel() * out.element_size())
    except Exception:  # noqa: BLE001 - any failure only means "no estimate"
        return 0.0
    finally:
        for handle in handles:
            handle.remove()
    return (3 * largest + in_channels * side * side * 4) / (side * side)


def memory_budget(device: torch.device) -> int:
    """Bytes a batch of tiles may take: part of the free device memory, or of the available RAM.

    On the CPU: a quarter of the memory available to new processes (``MemAvailable``), at most 4 GiB,
    since the machine is shared with everything else the user runs; on CUDA: 60 % of the free memory.
    """
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free * 0.6)
    available = _available_ram()
    return int(min(4 * 2**30, available / 4)) if available else 2 * 2**30


def _available_ram() -> int:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


# --- the C heap ---------------------------------------------------------------------------------------

#: glibc's ``mallopt`` parameters (``malloc.h``).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: Inside :func:`heap_reuse`: blocks up to this size come from the heap and are reused, not mapped afresh.
#: 256 MiB covers every low-resolution feature map of a 640x480 tile; larger thresholds gained < 2 % more
#: speed and held up to 1.7x the memory in fragments (RRDBNet at 640x480: 4.7 GiB peak at 1 GiB, 2.7 at
#: 256 MiB, 2.3 without reuse).
HEAP_REUSE_BYTES = 256 << 20
#: After it: the values glibc's dynamic thresholds settle at on 64-bit systems (``DEFAULT_MMAP_THRESHOLD_MAX``).
_MMAP_AFTER, _TRIM_AFTER = 32 << 20, 64 << 20


@functools.cache
def _libc() -> Any:
    """glibc's handle when this process runs on glibc and tuning is not switched off, else None."""
    import ctypes
    import platform

    if os.environ.get("RESTOREKIT_NO_HEAP_REUSE") or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(None)
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


class _HeapReuse:
    """See :func:`heap_reuse`; one per process, nestable and shared by threads."""

    def __init__(self) -> None:
        import threading

        self.lock = threading.Lock()
        self.depth = 0

    def __enter__(self) -> None:
        libc = _libc()
        if libc is None:
            return
        with self.lock:
            self.depth += 1
            if self.depth == 1:
                libc.mallopt(_M_MMAP_THRESHOLD, HEAP_REUSE_BYTES)
                libc.mallopt(_M_TRIM_THRESHOLD, HEAP_REUSE_BYTES)

    def __exit__(self, *_exc: object) -> None:
        libc = _libc()
        if libc is None:
            return
        with self.lock:
            self.depth -= 1
            if self.depth == 0:
                libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_AFTER)
                libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_AFTER)
                libc.malloc_trim(0)  # what the image needed goes back to the system


_HEAP_REUSE = _HeapReuse()


def heap_reuse() -> contextlib.AbstractContextManager[None]:
    """While restoring one image on the CPU: let freed feature maps be reused instead of mapped afresh.

    glibc serves every allocation above its mmap threshold (at most 32 MiB) with a fresh ``mmap``, and
    the kernel then zero-fills each of its pages on first touch: at photograph sizes every layer's output
    (78 MB for 64 channels at 640x480) costs thousands of page faults, and an element-wise layer such as
    PReLU ran 4x slower per pixel than on a 256x256 input. Inside this context blocks up to 256 MiB come from
    the heap, where the next layer finds the memory the previous one freed, already mapped (SRVGG compact
    at 640x480: 1.45x faster on a 2-core EPYC). On leaving it, glibc's usual thresholds are restored and
    the freed memory is returned to the system (``malloc_trim``), so nothing stays held between images.
    Nestable and thread-safe; does nothing off glibc or with ``RESTOREKIT_NO_HEAP_REUSE=1``.
    """
    return _HEAP_REUSE


# --- threads ------------------------------------------------------------------------------------------


def set_threads(threads: int | None) -> int:
    """Use *threads* CPU threads for inference (None: leave torch's choice); returns the number in use.

    torch starts with one thread per physical core, which is right for a machine of one's own; on a
    shared machine, or with ``restore apply`` decoding and encoding images beside the network, fewer
    can be faster. The setting is process-wide (it is torch's).
    """
    if threads is not None and threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    return torch.get_num_threads()


# --- the runner -------------------------------------------------------------------------------------


class NetworkRunner:
    """Runs a network on batches of tiles: the fast path for the device, or the plain one.

    Args:
        network: The network, in eval mode, already on *device*. On the CPU its plain convolutions become
            :class:`PackedConv2d` (in place; identical outside the fast path); on CUDA its weights are made
            channels-last.
        device: Where it runs.
        dtype: float32, or float16/bfloat16 for autocast (CUDA; bf16 on CPUs that compute it natively).
        fast: Use the device's fast path; False runs the network as given (the reference).
        compile: Also ``torch.compile`` the network, one graph per tile shape (falls back to the eager
            fast path when compiling fails).

    Example:
        >>> import torch
        >>> runner = NetworkRunner(torch.nn.Conv2d(3, 3, 3, padding=1).eval(), device=torch.device("cpu"))
        >>> runner(torch.rand(2, 3, 8, 8)).shape
        torch.Size([2, 3, 8, 8])
    """

    def __init__(
        self,
        network: nn.Module,
        *,
        device: torch.device,
        dtype: torch.dtype = torch.float32,
        fast: bool = True,
        compile: bool = False,
    ) -> None:
        self.network = network
        self.device = device
        self.dtype = dtype
        self.fast = fast
        self.compile = compile and fast
        self.packed = 0  # convolutions running with packed weights (CPU)
        self.grouped = 0  # instance norms running as group norms (CPU)
        self._compiled: Any = None
        self._graphs: dict[tuple[Any, ...], _Graph | None] = {}
        self._seen: dict[tuple[Any, ...], int] = {}
        self._broken: str = ""  # why the fast path was given up, or ""
        if fast and device.type == "cpu" and dtype == torch.float32 and not self.compile:
            self.packed = pack_convolutions(network)
            self.grouped = group_instance_norms(network)
        if fast and device.type == "cuda":  # pragma: no cover - needs a GPU (untested here)
            torch.backends.cudnn.benchmark = True  # tiles repeat shapes: autotuning pays at once
            # Weights in channels-last too, so cuDNN does not convert them at every call. (The trainer does
            # the same; saved weights are made contiguous by save_weights.)
            network.to(memory_format=torch.channels_last)

    # -- what runs -------------------------------------------------------------------------------------

    @property
    def channels_last(self) -> bool:
        return self.fast and self.device.type in ("cpu", "cuda")

    @property
    def description(self) -> str:
        """What the runner does, in a few words (for reports and ``repr``)."""
        if not self.fast:
            return "plain"
        if self._broken:
            return f"plain (fast path failed: {self._broken})"
        parts = ["channels_last"] if self.channels_last else []
        if self.packed:
            parts.append(f"{self.packed} packed convolutions")
        if self.grouped:
            parts.append(f"{self.grouped} instance norms as group norms")
        if self.device.type == "cuda":
            parts.append("torch.compile" if self.compile else "CUDA graphs")
        elif self.compile:
            parts.append("torch.compile" if self._compiled is not False else "torch.compile failed")
        return ", ".join(parts) or "plain"

    def _autocast(self, *, cache: bool = True) -> contextlib.AbstractContextManager[Any]:
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype, cache_enabled=cache)

    # -- running ---------------------------------------------------------------------------------------

    def plain(self, batch: Tensor) -> Tensor:
        """The reference: the network as given, float32 NCHW input, under ``inference_mode``."""
        with torch.inference_mode(), self._autocast():
            return self.network(batch.float()).float()

    def __call__(self, batch: Tensor) -> Tensor:
        """The network's output for a ``(B, C, h, w)`` batch on the runner's device, as float32."""
        if not self.fast or self._broken:
            return self.plain(batch)
        try:
            return self._run_fast(batch)
        except torch.OutOfMemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - judged below by running the plain path
            try:
                out = self.plain(batch)
            except Exception:
                raise exc from None  # the plain path fails too: the input is at fault, say why
            self._broken = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            warnings.warn(
                f"the fast inference path failed ({self._broken}); running the network as given", stacklevel=3
            )
            return out

    def _run_fast(self, batch: Tensor) -> Tensor:
        if self.channels_last and batch.ndim == 4:
            batch = batch.contiguous(memory_format=torch.channels_last)
        if self.device.type == "cuda":
            return self._run_cuda(batch)
        network = self._compiled_network() if self.compile else self.network
        token = _PACKED.set(True)
        try:
            with torch.inference_mode(), self._autocast():
                return network(batch).float()
        finally:
            _PACKED.reset(token)

    def _compiled_network(self) -> Any:
        if self._compiled is None:
            self._compiled = _compile(self.network)
        return self._compiled if self._compiled is not False else self.network

    # -- CUDA ------------------------------------------------------------------------------------------

    def _run_cuda(self, batch: Tensor) -> Tensor:  # pragma: no cover - needs a GPU (untested here)
        if self.compile:  # inductor's own kernels; no graphs on top
            with torch.inference_mode(), self._autocast():
                return self._compiled_network()(batch).float()
        key = (tuple(batch.shape), batch.dtype, self.dtype)
        seen = self._seen[key] = self._seen.get(key, 0) + 1
        if key not in self._graphs and seen >= 2 and len(self._graphs) < MAX_GRAPHS:
            # Captured at the second sighting: the first eager call has run cuDNN's autotuning, and a
            # shape seen once (the odd edge tile) is not worth a graph's memory pool.
            self._graphs[key] = _Graph.capture(self, batch)
        graph = self._graphs.get(key)
        if graph is not None:
            return graph.replay(batch)
        with torch.inference_mode(), self._autocast():
            return self.network(batch).float()

    def __repr__(self) -> str:
        dtype = str(self.dtype).removeprefix("torch.")
        return f"NetworkRunner({self.description}, device={self.device}, dtype={dtype})"


def _compile(network: nn.Module) -> Any:
    """``torch.compile`` the network for inference, or False when this torch cannot."""
    try:
        compiled = torch.compile(network, dynamic=False)
    except Exception as exc:  # noqa: BLE001 - no dynamo on this platform / Python
        warnings.warn(f"torch.compile is unavailable ({exc}); using the eager fast path", stacklevel=4)
        return False
    return _FrozenCompiled(compiled)


class _FrozenCompiled:
    """A compiled network whose first call per shape compiles with weight freezing (inductor's inference mode).

    A compile error (no C++ compiler, an operator inductor lacks) is reported once and the eager network
    is used from then on.
    """

    def __init__(self, compiled: Any) -> None:
        self.compiled = compiled
        self.eager = compiled._orig_mod
        self.failed = False

    def __call__(self, batch: Tensor) -> Tensor:
        if self.failed:
            return self.eager(batch)
        try:
            import torch._inductor.config as inductor_config

            with inductor_config.patch(freezing=True):
                return self.compiled(batch)
        except Exception as exc:  # noqa: BLE001 - compile errors come in many types
            self.failed = True
            reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            warnings.warn(f"torch.compile failed ({reason}); using the eager fast path", stacklevel=4)
            return self.eager(batch)


class _Graph:  # pragma: no cover - needs a GPU (untested here)
    """One CUDA graph of the network for one input shape: copy in, replay, copy out."""

    def __init__(self, graph: Any, static_in: Tensor, static_out: Tensor) -> None:
        self.graph, self.static_in, self.static_out = graph, static_in, static_out

    @classmethod
    def capture(cls, runner: NetworkRunner, batch: Tensor) -> _Graph | None:
        """Capture, or None (then the shape runs eagerly) when the network cannot be captured."""
        static_in = batch.clone()
        try:
            side = torch.cuda.Stream(runner.device)
            side.wait_stream(torch.cuda.current_stream(runner.device))
            with torch.cuda.stream(side), torch.inference_mode(), runner._autocast(cache=False):
                for _ in range(2):  # warm-up on a side stream, as capture requires
                    runner.network(static_in)
            torch.cuda.current_stream(runner.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            # Autocast's weight cache must be off: cached casts made outside the graph are not replayed.
            with torch.cuda.graph(graph), torch.inference_mode(), runner._autocast(cache=False):
                static_out = runner.network(static_in).float()
        except Exception as exc:  # noqa: BLE001 - e.g. a network that synchronises or allocates on the host
            warnings.warn(f"CUDA graph capture failed ({exc}); this tile shape runs eagerly", stacklevel=5)
            return None
        return cls(graph, static_in, static_out)

    def replay(self, batch: Tensor) -> Tensor:
        self.static_in.copy_(batch, non_blocking=True)
        self.graph.replay()
        # A copy: the next replay overwrites static_out while the caller may still hold the result.
        return self.static_out.clone()
