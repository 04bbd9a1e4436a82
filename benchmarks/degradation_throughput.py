"""Throughput of Real-ESRGAN's second-order degradation model on a training batch, and of its JPEG codecs.

Run from the repository root, e.g.::

    python benchmarks/degradation_throughput.py                       # 16 crops of 256x256, CPU
    python benchmarks/degradation_throughput.py --device cuda --repeats 20
    python benchmarks/degradation_throughput.py --recipe realesrnet_x2plus --batch 12

It degrades ``--batch`` crops of real photographs (Set5/Set14 from ``../shared/data``, or smooth
synthetic images where that is absent) exactly as the recipe's task does in a training step: USM
sharpening when the recipe asks for it, then the whole degradation chain on the device. Three variants
are timed, alternating A/B/C in one run so that machine load hits them alike:

* ``torch JPEG``: the recipe as shipped (``codec = "torch"``: JPEG in tensor operations on the device);
* ``libjpeg JPEG``: the same chain with ``codec = "libjpeg"`` (torchvision's encoder and decoder per
  quality; on CUDA nvJPEG where torchvision has it, else a round trip through the CPU);
* the JPEG step alone, both codecs, on the batch at its input size.

The table reports the median seconds per batch, crops per second, and the ratio to the torch codec.
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from restorekit.data.degradations import jpeg
from restorekit.data.realesrgan_degradation import jpeg_torch
from restorekit.recipe import load_recipe
from restorekit.recipe.components import build_task, generator_descriptor

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sr-bench"


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _crops(batch: int, size: int, seed: int) -> torch.Tensor:
    """``batch`` random crops of real photographs (synthetic smooth images without the reference data)."""
    from restorekit.data.images import load_rgb

    generator = torch.Generator().manual_seed(seed)
    files = sorted(SHARED.glob("Set14/HR/*.png")) + sorted(SHARED.glob("Set5/HR/*.png"))
    images = [image for image in (load_rgb(f) for f in files) if min(image.shape[-2:]) >= size]
    crops = []
    for index in range(batch):
        if images:
            image = images[index % len(images)]
            top = int(torch.randint(0, image.shape[-2] - size + 1, (1,), generator=generator))
            left = int(torch.randint(0, image.shape[-1] - size + 1, (1,), generator=generator))
            crops.append(image[:, top : top + size, left : left + size])
        else:
            noise = torch.rand(1, 3, size // 8, size // 8, generator=generator)
            crops.append(torch.nn.functional.interpolate(noise, size=(size, size), mode="bicubic")[0].clamp(0, 1))
    return torch.stack(crops)


def _with_codec(steps: list, codec: str) -> list:
    steps = copy.deepcopy(steps)

    def walk(items: list) -> None:
        for step in items:
            if step.get("type") == "jpeg":
                step["codec"] = codec
            for block in step.get("blocks", []):
                walk(block)

    walk(steps)
    return steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="realesrnet_x4plus", help="recipe whose task.args.degradations to run")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=256, help="HR crop side")
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds (after one warm-up round)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    recipe = load_recipe(args.recipe, ["generator.init=null"], check_data=False)
    steps = recipe.task.args.get("degradations") or []
    variants = {}
    for codec in ("torch", "libjpeg"):
        variant = recipe.model_copy(deep=True)
        variant.task.args["degradations"] = _with_codec(steps, codec)
        variants[f"second-order model, {codec} JPEG"] = build_task(variant, generator_descriptor(variant))
    hr = _crops(args.batch, args.size, args.seed).to(device)
    qualities = torch.randint(30, 96, (args.batch,), generator=torch.Generator().manual_seed(args.seed))

    def degrade(task) -> None:
        with torch.no_grad():
            task.make_batch({"target": hr}, device, training=True)

    cases = {name: (lambda task=task: degrade(task)) for name, task in variants.items()}
    cases["JPEG step alone, torch codec"] = lambda: jpeg_torch(hr, qualities.to(device))
    cases["JPEG step alone, libjpeg codec"] = lambda: jpeg(hr, qualities.to(device))

    torch.manual_seed(args.seed)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for round_index in range(args.repeats + 1):  # round 0 warms up (allocations, CUDA kernels)
        for name, run in cases.items():  # alternating: load changes hit every variant alike
            _synchronize(device)
            start = time.perf_counter()
            run()
            _synchronize(device)
            if round_index:
                times[name].append(time.perf_counter() - start)

    medians = {name: statistics.median(values) for name, values in times.items()}
    cpu = f"{torch.get_num_threads()} threads" if device.type == "cpu" else torch.cuda.get_device_name(device)
    table = Table(
        title=f"{args.recipe}: {args.batch} crops of {args.size}x{args.size}, {device} ({cpu}), "
        f"median of {args.repeats}, torch {torch.__version__}"
    )
    for column in ("variant", "s / batch", "crops / s", "vs torch JPEG"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    reference = {"second": medians["second-order model, torch JPEG"], "JPEG": medians["JPEG step alone, torch codec"]}
    for name, seconds in medians.items():
        base = reference["second" if name.startswith("second") else "JPEG"]
        table.add_row(name, f"{seconds:.3f}", f"{args.batch / seconds:.1f}", f"{seconds / base:.2f}x")
    Console().print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
