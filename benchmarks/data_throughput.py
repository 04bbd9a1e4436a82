"""Training-data throughput: crops per second the loader delivers, and its peak memory.

For the crop and batch size of the shipped recipes (``srgan``, ``esrgan``, and the Real-ESRGAN recipes
where present), with 0, 2, 4 and 8 DataLoader workers, on

* ``T91`` (``../shared/data/train/T91``: 91 small BMPs) read as a folder, and with ``cache = true``;
* synthetic DIV2K-sized PNGs (2040×1356) read as a folder: one whole 2K PNG decoded per crop;
* the same images prepared by ``restore prepare`` (480×480 sub-images every 240 px) as PNG files,
  and as the memory-mapped ``npy`` store.

The loader is the trainer's own: the task's ``train_data`` (random crop, flips, rotation, float
conversion), the resumable sampler and a ``DataLoader`` set up as the trainer sets it up. A GPU step of
*t* seconds at batch *B* needs *B / t* crops per second; compare that with the figures printed here.

Peak memory is measured on a set of 2,000 synthetic images (``--rss-images``), one epoch in a fresh
process each: a folder read as is, the in-memory cache (which grows with the set: DF2K decoded is
~30 GB), the prepared PNG sub-images and the store.

Examples:
    python benchmarks/data_throughput.py
    python benchmarks/data_throughput.py --workers 0 2 --div2k-images 8 --rss-images 200 --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RESTOREKIT_SHARED_DATA", REPO.parent / "shared" / "data"))
RECIPES = ("srgan", "esrgan", "realesrnet_x4plus", "realesrgan_x4plus")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, {platform.python_implementation()} {platform.python_version()}"


def recipe_settings(names: list[str]) -> list[dict]:
    """Crop, batch size and scale of each recipe that exists."""
    from restorekit.recipe.loader import find_recipe, read_recipe_tree

    found = []
    for name in names:
        try:
            tree = read_recipe_tree(find_recipe(name))  # as written (extends merged), nothing checked or built
        except Exception:  # noqa: BLE001 - a recipe not (yet) shipped is skipped
            continue
        data = tree.get("data", {})
        found.append({"recipe": name, "crop": int(data.get("train", {}).get("crop", 96)),
                      "batch": int(data.get("batch_size", 16)),
                      "scale": int(tree.get("generator", {}).get("args", {}).get("scale", 4))})  # fmt: skip
    return found


# --- synthetic images ---------------------------------------------------------------------------------


def synthetic_image(seed: int, height: int, width: int):
    """A photo-like RGB image: smooth shapes, edges and fine texture, so PNG compresses it like a photo."""
    import numpy as np

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.zeros((height, width, 3), np.float32)
    for c in range(3):
        fy, fx, phase = rng.uniform(0.002, 0.02), rng.uniform(0.002, 0.02), rng.uniform(0, 6.3)
        image[..., c] = 0.5 + 0.35 * np.sin(xx * fx + phase) * np.cos(yy * fy)
    for _ in range(12):  # discs with sharp edges
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(20, height / 4)
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        image[mask] = rng.uniform(0, 1, 3) * 0.8 + 0.1 * image[mask]
    image += rng.normal(0, 0.02, image.shape).astype(np.float32)  # sensor-like grain
    return (image.clip(0, 1) * 255).astype(np.uint8)


def make_images(folder: Path, count: int, height: int, width: int) -> float:
    """Write *count* synthetic PNGs; returns their mean size in MB."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    total = 0
    for i in range(count):
        path = folder / f"{i:04d}.png"
        if not path.exists():
            Image.fromarray(synthetic_image(i, height, width)).save(path, compress_level=6)
        total += path.stat().st_size
    return total / max(count, 1) / 1e6


# --- throughput -----------------------------------------------------------------------------------------


def crops_per_second(
    hr: Path, *, crop: int, batch: int, scale: int, workers: int, cache: bool, min_batches: int, min_seconds: float
) -> float:
    """Crops/s of the trainer's loader after a warm-up of one batch per worker, over at least *min_seconds*."""
    from torch.utils.data import DataLoader

    from restorekit.data.sampling import ResumableSampler
    from restorekit.tasks.super_resolution import SuperResolution

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = SuperResolution(scale=scale).train_data(hr=str(hr), crop=crop, cache=cache)
    sampler = ResumableSampler(len(dataset), seed=0, batch_size=batch)
    loader = DataLoader(dataset, batch_size=batch, sampler=sampler, num_workers=workers,
                        persistent_workers=workers > 0, prefetch_factor=4 if workers else None)  # fmt: skip
    batches = iter(loader)
    # Warm-up: worker start, and the first batch of every worker (its prefetched ones would flatter).
    for _ in range(max(1, workers)):
        next(batches)
    timed, start = 0, time.perf_counter()
    while timed < max(min_batches, 2 * workers) or time.perf_counter() - start < min_seconds:
        next(batches)
        timed += 1
    elapsed = time.perf_counter() - start
    del batches, loader
    return timed * batch / elapsed


# --- peak memory (one process per measurement) --------------------------------------------------------


def _tree_memory() -> dict[str, float]:
    """Proportional set size (MiB) of this process and its children (the DataLoader workers).

    PSS shares every page among the processes mapping it, so forked workers are not counted as copies
    of torch; ``anon`` is memory the loader allocated itself, ``file`` mapped files (a store's pages).
    """
    pids = [os.getpid()]
    with contextlib.suppress(OSError):
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/children", encoding="ascii") as handle:
                pids += [int(p) for p in handle.read().split()]
    total = {"pss": 0.0, "anon": 0.0, "file": 0.0}
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in open(f"/proc/{pid}/smaps_rollup", encoding="ascii"):
                key, _, rest = line.partition(":")
                field = {"Pss": "pss", "Pss_Anon": "anon", "Pss_File": "file"}.get(key)
                if field is not None:
                    total[field] += int(rest.split()[0]) / 1024
    return total


def rss_probe(hr: str, cache: bool, workers: int, crop: int) -> dict:
    """One epoch over *hr*; the peak memory of the process and its workers, sampled every 50 ms."""
    import threading

    import torch
    from torch.utils.data import DataLoader

    from restorekit.data.sampling import ResumableSampler
    from restorekit.tasks.super_resolution import SuperResolution

    torch.set_num_threads(1)
    peak = {"pss": 0.0, "anon": 0.0, "file": 0.0}
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            for key, value in _tree_memory().items():
                peak[key] = max(peak[key], value)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = SuperResolution(scale=4).train_data(hr=hr, crop=crop, cache=cache)
    sampler = ResumableSampler(len(dataset), seed=0, batch_size=16)
    loader = DataLoader(dataset, batch_size=16, sampler=sampler, num_workers=workers, prefetch_factor=4 if workers else None)
    before = _tree_memory()
    sampler_thread = threading.Thread(target=sample, daemon=True)
    sampler_thread.start()
    start = time.perf_counter()
    for index, _ in enumerate(loader):
        if (index + 1) * 16 >= len(dataset):
            break
    elapsed = time.perf_counter() - start
    done.set()
    sampler_thread.join()
    return {"items": len(dataset), "seconds": elapsed, "before_pss_mib": before["pss"], "peak_pss_mib": peak["pss"],
            "peak_anon_mib": peak["anon"], "peak_file_mib": peak["file"]}  # fmt: skip


def measure_rss(hr: Path, *, cache: bool, workers: int, crop: int) -> dict:
    code = (
        "import json, sys; sys.path.insert(0, %r); import data_throughput as d; "
        "print(json.dumps(d.rss_probe(%r, %r, %d, %d)))" % (str(Path(__file__).parent), str(hr), cache, workers, crop)
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- the report ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2, 4, 8])
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES))
    parser.add_argument("--div2k-images", type=int, default=16, help="synthetic 2040x1356 PNGs")
    parser.add_argument("--rss-images", type=int, default=2000, help="images of the peak-memory set (0: skip)")
    parser.add_argument("--rss-size", type=int, nargs=2, default=[384, 512], metavar=("H", "W"))
    parser.add_argument("--batches", type=int, default=4, help="timed batches (at least 2 per worker)")
    parser.add_argument("--seconds", type=float, default=3.0, help="time each configuration at least this long")
    parser.add_argument("--work-dir", type=Path, default=None, help="keep the generated images here")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--skip-throughput", action="store_true", help="only the peak-memory part")
    args = parser.parse_args(argv)

    import torch

    from restorekit.data.prepare import PrepareSettings, prepare_subimages

    torch.set_num_threads(1)  # the loader's work is per worker; the main process only collates
    # More workers than cores is what this benchmark measures; torch's warning about it is known.
    warnings.filterwarnings("ignore", message="This DataLoader will create")
    configs = recipe_settings(args.recipes)
    results: dict = {"machine": machine(), "throughput": [], "prepare": {}, "rss": []}
    print(f"machine: {results['machine']}")
    print("recipes: " + ", ".join(f"{c['recipe']} (crop {c['crop']}, batch {c['batch']})" for c in configs))

    with tempfile.TemporaryDirectory() as scratch:
        work = args.work_dir or Path(scratch)
        div2k = work / "div2k"
        started = time.perf_counter()
        mb = make_images(div2k / "HR", args.div2k_images, 1356, 2040)
        print(f"{args.div2k_images} synthetic 2040x1356 PNGs, {mb:.1f} MB each ({time.perf_counter() - started:.0f} s)")
        for fmt in ("png", "npy"):
            report = prepare_subimages(div2k / "HR", div2k / f"sub_{fmt}", settings=PrepareSettings(format=fmt),
                                       workers=os.cpu_count())  # fmt: skip
            size = sum(p.stat().st_size for p in (div2k / f"sub_{fmt}").rglob("*") if p.is_file()) / 1e6
            results["prepare"][fmt] = {"images": report.sources, "subimages": report.subimages,
                                       "seconds": report.seconds, "megabytes": size}  # fmt: skip
            print(f"restore prepare --format {fmt}: {report.subimages} sub-images in {report.seconds:.1f} s, {size:.0f} MB")
        sets = []
        if (SHARED / "train" / "T91").is_dir():
            sets += [("T91 folder", SHARED / "train" / "T91", False), ("T91 cache=true", SHARED / "train" / "T91", True)]
        sets += [("DIV2K-size folder", div2k / "HR", False), ("DIV2K-size sub-images (png)", div2k / "sub_png", False),
                 ("DIV2K-size store (npy)", div2k / "sub_npy", False)]  # fmt: skip

        header = "| data | recipe (crop, batch) | " + " | ".join(f"{w} workers" for w in args.workers) + " |"
        print("\ncrops per second\n\n" + header + "\n|" + "---|" * (2 + len(args.workers)))
        for label, folder, cache in [] if args.skip_throughput else sets:
            for config in configs:
                rates = []
                for workers in args.workers:
                    rate = crops_per_second(folder, crop=config["crop"], batch=config["batch"], scale=config["scale"],
                                            workers=workers, cache=cache, min_batches=args.batches,
                                            min_seconds=args.seconds)  # fmt: skip
                    rates.append(rate)
                    results["throughput"].append({"data": label, **config, "workers": workers, "crops_per_s": rate})
                cells = " | ".join(f"{r:.0f}" if r >= 10 else f"{r:.1f}" for r in rates)
                print(f"| {label} | {config['recipe']} ({config['crop']}, {config['batch']}) | {cells} |", flush=True)

        if args.rss_images:
            h, w = args.rss_size
            small = work / "rss"
            started = time.perf_counter()
            make_images(small / "HR", args.rss_images, h, w)
            print(f"\n{args.rss_images} synthetic {w}x{h} PNGs ({time.perf_counter() - started:.0f} s)")
            for fmt in ("png", "npy"):
                prepare_subimages(small / "HR", small / f"sub_{fmt}", settings=PrepareSettings(format=fmt), workers=os.cpu_count())
            print("\npeak memory over one epoch, main process + 2 workers (PSS, MiB)\n\n"
                  "| data | items | before | peak | of which anonymous | of which mapped files | seconds |\n"
                  "|---|---|---|---|---|---|---|")  # fmt: skip
            for label, folder, cache in (("folder", small / "HR", False), ("folder, cache=true", small / "HR", True),
                                         ("sub-images (png)", small / "sub_png", False),
                                         ("store (npy)", small / "sub_npy", False)):  # fmt: skip
                probe = measure_rss(folder, cache=cache, workers=2, crop=128)
                results["rss"].append({"data": label, **probe})
                print(f"| {label} | {probe['items']} | {probe['before_pss_mib']:.0f} | {probe['peak_pss_mib']:.0f} | "
                      f"{probe['peak_anon_mib']:.0f} | {probe['peak_file_mib']:.0f} | {probe['seconds']:.1f} |",
                      flush=True)  # fmt: skip

    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
