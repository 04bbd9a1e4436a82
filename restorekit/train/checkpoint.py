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


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint safely (``weights_only=True``).

    Raises:
        ValueError: the file is damaged or not a restorekit checkpoint.
    """
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to parse means a damaged file
        raise ValueError(f"{path}: damaged checkpoint ({type(exc).__name__}: {str(exc)[:200]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path}: not a restorekit training checkpoint")
    for key in ("step", "models", "optimizers", "rng"):
        if key not in payload:
            raise ValueError(f"{path}: damaged checkpoint (no '{key}')")
    return payload


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


