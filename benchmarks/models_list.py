"""How long ``restore models`` takes to list a model store, and which heavy modules it imports.

Fills a temporary store (``RESTOREKIT_HOME``) with a few real restorekit weight files, then runs the real
command (``python -m restorekit.cli models``) several times in fresh processes and reports the median
wall time, next to ``restore --version`` (the floor: interpreter, typer, rich and the plugins' entry
points) and to a bare ``import torch`` (what listing would cost if it imported torch). One more run with
``-X importtime`` says whether ``torch`` or ``numpy`` was imported.

Example::

    python benchmarks/models_list.py --files 6 --repeat 7

To compare with another version, extract it and point ``--source`` at it; its ``restorekit`` and
``plugins/`` are then imported instead of this checkout's (the installed entry points stay)::

    mkdir /tmp/old && git archive HEAD~1 | tar -x -C /tmp/old
    python benchmarks/models_list.py --source /tmp/old
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing


def fill_store(home: Path, files: int) -> None:
    """Store *files* tiny SRResNet weight files under as many names (what ``restore models add`` does)."""
    from restorekit.plugins import registry
    from restorekit.store import add_to_store
    from restorekit.weights import WeightInfo, save_weights

    os.environ["RESTOREKIT_HOME"] = str(home)
    args = {"num_features": 16, "num_blocks": 2, "scale": 4}
    network = registry("generators").build("srresnet", **args)
    source = home / "source.safetensors"
    info = WeightInfo("srresnet", args, plugin="srgan", task="super_resolution", scale=4, recipe_name="bench",
                      metrics={"psnr_y": 28.5, "ssim_y": 0.81})
    save_weights(network, source, info)
    for index in range(files):
        add_to_store(f"bench-model-{index}", source)


# Runs `restore` from another source tree: drop the editable install's import hook (it would map
# `restorekit` back to this checkout), then import that tree's packages.
_BOOT = """
import os, sys
source = os.environ["MODELS_LIST_SOURCE"]
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in getattr(f, "__module__", "")]
sys.path[:0] = [source, os.environ["MODELS_LIST_PLUGINS"]]
sys.argv[0] = "restore"
from restorekit.cli import main
main()
"""


def cli_command(source: Path | None, work: Path) -> list[str]:
    """How to run ``restore``: this checkout's, or the one in *source* (see :data:`_BOOT`)."""
    if source is None:
        return [sys.executable, "-m", "restorekit.cli"]
    link = work / "plugins-path" / "restorekit_plugins"
    link.parent.mkdir(exist_ok=True)
    if not link.exists():
        link.symlink_to(source.resolve() / "plugins", target_is_directory=True)
    os.environ["MODELS_LIST_SOURCE"] = str(source.resolve())
    os.environ["MODELS_LIST_PLUGINS"] = str(link.parent)
    return [sys.executable, "-c", _BOOT]


def timed(command: list[str], env: dict[str, str], repeat: int) -> list[float]:
    """Wall times of *repeat* fresh runs of *command* (each must succeed)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        _checked(subprocess.run(command, env=env, capture_output=True, text=True))
        times.append(time.perf_counter() - start)
    return times


def _checked(out: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    if out.returncode != 0:
        tail = "\n".join(line for line in out.stderr.splitlines() if not line.startswith("import time:"))[-2000:]
        raise SystemExit(f"{' '.join(map(str, out.args))[:200]} failed ({out.returncode}):\n{tail}")
    return out


def imported(command: list[str], env: dict[str, str]) -> set[str]:
    """Top-level package names a run of *command* imports (from ``-X importtime``)."""
    out = _checked(subprocess.run([command[0], "-X", "importtime", *command[1:]], env=env, capture_output=True,
                                  text=True))
    names = set()
    for line in out.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=6, help="stored weight files")
    parser.add_argument("--repeat", type=int, default=7, help="runs per command (the median is reported)")
    parser.add_argument("--source", type=Path, help="run the restorekit of this source tree (an older version)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder) / "home"
        fill_store(home, args.files)
        cli = cli_command(args.source, Path(folder))
        env = {**os.environ, "RESTOREKIT_HOME": str(home), "RESTOREKIT_OFFLINE": "1", "COLUMNS": "80"}
        rows = [
            ("restore --version", timed([*cli, "--version"], env, args.repeat)),
            ("restore models", timed([*cli, "models"], env, args.repeat)),
            ("python -c 'import torch'", timed([sys.executable, "-c", "import torch"], env, args.repeat)),
        ]
        heavy = sorted(imported([*cli, "models"], env) & {"torch", "numpy", "torchvision", "PIL"})
    print(f"restorekit from {args.source or 'this checkout'}; machine: {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}; {args.files} stored files; median of "
          f"{args.repeat} fresh processes")
    for label, times in rows:
        print(f"  {label:28s} {statistics.median(times):6.3f} s  (min {min(times):.3f}, max {max(times):.3f})")
    print(f"  'restore models' imports: {', '.join(heavy) or 'none of torch, torchvision, numpy, PIL'}")


if __name__ == "__main__":
    main()
