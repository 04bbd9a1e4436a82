"""What installing restorekit costs: download and installed size of the base install and of each extra.

For the base install and for every extra in ``pyproject.toml`` (read at run time, so a new extra is
measured too), pip resolves the full set of packages (``pip install --dry-run --ignore-installed
--report``, nothing is installed). An extra's cost is what it adds to the base set. Each wheel is then
fetched with ``pip download --no-deps`` into a temporary folder (or read where the index already
points at a local file) and measured: its file size is the download, the sum of its members' sizes the
installed footprint (before Python compiles ``.pyc`` files).

Example::

    python benchmarks/install_sizes.py                       # base + every extra, this platform
    python benchmarks/install_sizes.py --cpu-torch /opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl

``--cpu-torch WHEEL`` also measures a CPU-only torch wheel (from https://download.pytorch.org/whl/cpu),
to compare with the CUDA build pip picks from PyPI on Linux.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path
from urllib.parse import unquote, urlparse

REPO = Path(__file__).resolve().parents[1]


def resolve(requirement: str, workdir: Path) -> dict[str, dict]:
    """Every package ``pip install REQUIREMENT`` would install into an empty environment: name → report item."""
    report = workdir / "report.json"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet", "--report",
         str(report), requirement],
        check=True, cwd=REPO,
    )  # fmt: skip
    items = json.loads(report.read_text())["install"]
    return {item["metadata"]["name"].lower().replace("_", "-"): item for item in items}


def wheel_file(item: dict, cache: Path) -> Path | None:
    """The wheel of one report item on disk (downloaded without dependencies when remote); None for the project."""
    url = item["download_info"]["url"]
    if url.startswith("file://"):
        path = Path(unquote(urlparse(url).path))
        return path if path.is_file() and path.suffix == ".whl" else None
    name = unquote(urlparse(url).path.rsplit("/", 1)[-1])
    target = cache / name
    if not target.is_file():
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(cache), url],
                       check=True)
    return target if target.suffix == ".whl" else None


def sizes(wheel: Path) -> tuple[int, int]:
    """Download (file) and installed (unpacked members) size of a wheel, in bytes."""
    with zipfile.ZipFile(wheel) as archive:
        return wheel.stat().st_size, sum(info.file_size for info in archive.infolist())


def measure(names: set[str], items: dict[str, dict], cache: Path) -> tuple[int, int, list[str]]:
    download = installed = 0
    measured = []
    for name in sorted(names):
        wheel = wheel_file(items[name], cache)
        if wheel is None:
            continue
        d, i = sizes(wheel)
        download, installed = download + d, installed + i
        measured.append(f"{name} {items[name]['metadata']['version']} ({d / 1e6:.1f} MB)")
    return download, installed, measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-torch", type=Path, help="a CPU-only torch wheel to measure as well")
    parser.add_argument("--cache", type=Path, help="keep downloaded wheels here (default: a temporary folder)")
    args = parser.parse_args()
    extras = list(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        cache = args.cache or work / "wheels"
        cache.mkdir(parents=True, exist_ok=True)
        base = resolve(".", work)
        download, installed, listed = measure(set(base) - {"restorekit"}, base, cache)
        gpu = {n for n in base if n.startswith(("nvidia-", "triton", "cuda-"))}
        gpu_download, gpu_installed, _ = measure(gpu, base, cache)
        torch_download, torch_installed, _ = measure({"torch"}, base, cache)
        print(f"base install (Python {sys.version_info.major}.{sys.version_info.minor}, {sys.platform}): "
              f"{len(base) - 1} packages, download {download / 1e9:.2f} GB, installed {installed / 1e9:.2f} GB")
        print(f"  of which torch {base['torch']['metadata']['version']}: {torch_download / 1e6:.0f} MB download, "
              f"{torch_installed / 1e6:.0f} MB installed; CUDA libraries ({len(gpu)} packages): "
              f"{gpu_download / 1e9:.2f} GB download, {gpu_installed / 1e9:.2f} GB installed")
        if args.cpu_torch is not None:
            d, i = sizes(args.cpu_torch)
            print(f"  CPU-only torch wheel {args.cpu_torch.name}: {d / 1e6:.0f} MB download, {i / 1e6:.0f} MB installed")
            rest_download = download - torch_download - gpu_download
            rest_installed = installed - torch_installed - gpu_installed
            print(f"  base install with it instead of torch + CUDA libraries: download "
                  f"{(rest_download + d) / 1e6:.0f} MB, installed {(rest_installed + i) / 1e6:.0f} MB")
        for extra in extras:
            items = resolve(f".[{extra}]", work)
            added = set(items) - set(base)
            download, installed, listed = measure(added, items, cache)
            print(f"[{extra}] adds {len(added)} packages: download {download / 1e6:.1f} MB, installed "
                  f"{installed / 1e6:.1f} MB: {', '.join(listed)}")


if __name__ == "__main__":
    main()
