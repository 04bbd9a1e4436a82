"""Training checkpoints: everything a resumed run needs, written atomically, read without unpickling.

A checkpoint is a ``torch.save`` dict of tensors, numbers and strings only (RNG states converted to
tensors), so it loads with ``torch.load(weights_only=True)``: nothing executable is unpickled even
from a checkpoint someone else handed you.
"""

from __future__ import annotations

import random
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from restorekit.fileio import atomic_path, remove_temporaries  # noqa: F401 - re-exported
from restorekit.train.errors import TrainingError

FORMAT = "restorekit-checkpoint"
NAME = re.compile(r"^step_(\d+)\.ckpt$")
# What restorekit.fileio.atomic_path writes before the rename: ".NAME.<random>.tmp" beside NAME.


def checkpoint_path(folder: Path, step: int) -> Path:
    return folder / f"step_{step:08d}.ckpt"


def capture_rng() -> dict[str, Any]:
    """All random-number-generator states: torch CPU and CUDA, Python, NumPy."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {
            "kind": np_state[0],
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    npst = state["numpy"]
    np.random.set_state(
        (npst["kind"], npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"], npst["cached_gaussian"])
    )
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


def save_checkpoint(path: Path, payload: dict[str, Any]) -> Path:
    """Write *payload* atomically: a kill at any moment leaves the old file set intact."""
    payload = {"format": FORMAT, "version": 1, **payload}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


class CheckpointError(TrainingError, ValueError):
    """A checkpoint that is damaged, unsafe or not restorekit's; the one-line message names the file."""


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint safely (``weights_only=True``) and check its layout before anything uses it.

    Raises:
        CheckpointError: the file is missing, damaged, holds pickled objects beyond tensors, or is not a
            restorekit checkpoint (a ``ValueError`` too, as before).
    """
    from restorekit.convert import ConvertError, torch_load_safely
    from restorekit.fileio import printable

    shown = printable(path)
    if not Path(path).is_file():
        raise CheckpointError(f"{shown}: no such checkpoint")
    try:
        payload = torch_load_safely(path)
    except ConvertError as exc:
        reason = str(exc)[len(shown) + 2 :] if str(exc).startswith(f"{shown}: ") else str(exc)
        if "pickled Python objects" in reason:  # not damaged: made to run code when unpickled
            raise CheckpointError(f"{shown}: unsafe checkpoint: {reason}") from None
        raise CheckpointError(f"{shown}: damaged checkpoint ({reason})") from None
    except Exception as exc:  # noqa: BLE001 - any other failure to parse means a damaged file
        raise CheckpointError(f"{shown}: damaged checkpoint ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{shown}: not a restorekit training checkpoint")
    for key in ("step", "models", "optimizers", "rng"):
        if key not in payload:
            raise CheckpointError(f"{shown}: damaged checkpoint (no '{key}')")
    problem = _layout_problem(payload)
    if problem:
        raise CheckpointError(f"{shown}: damaged checkpoint ({problem})")
    return payload


def _layout_problem(payload: dict[str, Any]) -> str:
    """What is wrong with a loaded checkpoint's structure (types the resume code relies on), or ""."""
    step = payload["step"]
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        return f"step {step!r} is not a non-negative integer"
    for section in ("models", "optimizers", "schedulers", "scalers"):
        value = payload.get(section, {})
        if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
            return f"'{section}' is not a table of states per network"
    for role, state in payload["models"].items():
        # Module.get_extra_state may add a "..._extra_state" entry of any type; everything else is a tensor.
        if not all(isinstance(k, str) and (torch.is_tensor(v) or k.endswith("_extra_state")) for k, v in state.items()):
            return f"the {role} weights are not a table of tensors"
    rng = payload["rng"]
    if not isinstance(rng, dict) or not isinstance(rng.get("torch"), torch.Tensor):
        return "'rng' holds no torch generator state"
    python = rng.get("python")
    numpy_state = rng.get("numpy")
    if not isinstance(python, (tuple, list)) or len(python) != 3:
        return "'rng' holds no Python generator state"
    numpy_keys = {"kind", "keys", "pos", "has_gauss", "cached_gaussian"}
    if not isinstance(numpy_state, dict) or not numpy_keys <= set(numpy_state):
        return "'rng' holds no NumPy generator state"
    return ""


def list_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of the checkpoints in *folder*, newest first."""
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := NAME.match(p.name))]
    return sorted(found, reverse=True)


def newest_valid(folder: Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint that loads; damaged ones are reported and skipped."""
    for _step, path in list_checkpoints(folder):
        try:
            return path, load_checkpoint(path)
        except ValueError as exc:
            warnings.warn(f"{exc}; skipped", stacklevel=2)
    return None


def prune(folder: Path, keep: int) -> None:
    """Delete all but the newest *keep* checkpoints."""
    for _step, path in list_checkpoints(folder)[keep:]:
        path.unlink(missing_ok=True)


