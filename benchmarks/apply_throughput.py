"""Throughput and peak memory of tiled inference (what ``restore apply`` does to every photograph).

Builds a registered generator with random weights, restores one random image of the requested size through
:class:`~restorekit.inference.model.RestorationModel` (the path ``restore apply`` takes: the device's fast
path, balanced tiles, batches fitted to memory) and reports output megapixels per second and peak memory,
with a description of the machine. ``--plain`` runs the plain fp32 path instead (the network as given).

Example::

    python benchmarks/apply_throughput.py --model srresnet --arg num_blocks=16 --size 1920x1080 \\
        --tile 512 --overlap 16 --batch 4 --device cuda --precision fp16 --repeat 3
    python benchmarks/apply_throughput.py --model srvgg_compact --arg num_conv=32 --size 640x480 --plain
    python benchmarks/apply_throughput.py --model srvgg_compact --arg num_conv=16 --size 320x240 --folder 8

``--folder N`` writes N photographs of ``--size`` as PNG and restores them as ``restore apply`` does, with
decoding and encoding overlapped with the network (the pipeline) and one stage after the other, the two
runs interleaved; it reports images/s of each.

Peak memory is ``torch.cuda.max_memory_allocated`` on CUDA and the process's peak resident set size on the
CPU (which includes the CPU output buffer and the Python/torch baseline). For restorekit against spandrel
on the same weights, see ``benchmarks/apply_vs_spandrel.py``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from common import cpu_model, parse_arg, parse_size  # noqa: E402

from restorekit.inference.tiling import count_tiles  # noqa: E402
from restorekit.plugins import registry  # noqa: E402

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def machine_description(device: torch.device) -> dict[str, str]:
    """CPU model, torch version and accelerator name."""
    cpu = cpu_model()
    info = {
        "cpu": cpu,
        "cpu_threads": str(torch.get_num_threads()),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device),
    }
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
        info["cuda"] = str(torch.version.cuda)
    return info


def main(argv: list[str] | None = None) -> int:
    from restorekit.inference.model import RestorationModel
    from restorekit.inference.options import InferenceOptions
    from restorekit.weights import WeightInfo

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="registered generator name, e.g. srresnet, rrdbnet")
    parser.add_argument("--arg", action="append", type=parse_arg, default=[], metavar="KEY=VALUE",
                        help="constructor argument (repeatable), e.g. --arg num_blocks=16")
    parser.add_argument("--size", type=parse_size, default=(1920, 1080), metavar="WxH", help="input image size")
    parser.add_argument("--tile", type=int, default=512, help="tile size in input pixels; 0 for a whole-image pass")
    parser.add_argument("--overlap", type=int, default=32, help="context margin per tile side, input pixels")
    parser.add_argument("--batch", type=int, default=4, help="tiles per forward pass (at most; fitted to memory)")
    parser.add_argument("--multiple", type=int, default=0, help="size multiple the model needs; 0: its descriptor's")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--precision", choices=sorted(PRECISIONS), default="fp32")
    parser.add_argument("--plain", action="store_true", help="the plain fp32 path: the network as given, NCHW")
    parser.add_argument("--compile", action="store_true", help="torch.compile the network per tile shape")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs after one warm-up run")
    parser.add_argument("--folder", type=int, default=0, metavar="N",
                        help="restore N PNG files as restore apply does, pipelined and not (see above)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args(argv)

    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device available")
    device = torch.device(args.device)
    kwargs = dict(args.arg)

    network = registry("generators").build(args.model, **kwargs).eval()
    if args.multiple:
        network.size_multiple = args.multiple  # an attribute wins over registration info in the descriptor
    options = InferenceOptions(
        tile=args.tile, overlap=args.overlap, batch_size=args.batch, precision=args.precision, device=args.device,
        fast=not args.plain, compile=args.compile, threads=args.threads,
    )  # fmt: skip
    model = RestorationModel(network, WeightInfo(name=args.model, args=kwargs), options=options)
    if args.folder:
        return folder_run(model, args.folder, args.size, max(1, args.repeat), args.json)
    scale, multiple = model.scale, model.plan.multiple
    width, height = args.size
    image = torch.rand(model.in_channels, height, width)
    tiles = count_tiles(height, width, model.tile, model.overlap, multiple, balance=not args.plain)

    def run() -> None:
        model.restore_tensor(image)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    run()  # warm-up: weight packing, oneDNN primitives, cuDNN autotuning, CUDA graph capture
    seconds = []
    for _ in range(max(1, args.repeat)):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds.append(time.perf_counter() - start)

    out_megapixels = width * scale * height * scale / 1e6
    best, mean = min(seconds), sum(seconds) / len(seconds)
    if device.type == "cuda":
        peak_bytes = torch.cuda.max_memory_allocated(device)
        peak_kind = "cuda max_memory_allocated"
    else:
        peak_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        peak_kind = "cpu peak RSS"
    report = {
        "model": args.model,
        "args": kwargs,
        "parameters_M": round(sum(p.numel() for p in network.parameters()) / 1e6, 3),
        "input": f"{width}x{height}",
        "scale": scale,
        "output_megapixels": round(out_megapixels, 3),
        "tile": model.tile,
        "overlap": model.overlap,
        "multiple": multiple,
        "tiles": tiles,
        "batch": model.working_batch_size,
        "precision": args.precision,
        "path": model.runner.description,
        "seconds_best": round(best, 4),
        "seconds_mean": round(mean, 4),
        "output_megapixels_per_s": round(out_megapixels / best, 3),
        "peak_memory_MiB": round(peak_bytes / 2**20, 1),
        "peak_memory_kind": peak_kind,
        "machine": machine_description(device),
    }
    if args.json:
        sys.stdout.write(json.dumps(report) + "\n")
    else:
        width_key = max(len(k) for k in report)
        for key, value in report.items():
            sys.stdout.write(f"{key:<{width_key}}  {value}\n")
    return 0


def folder_run(model: Any, count: int, size: tuple[int, int], repeat: int, as_json: bool) -> int:
    """Images/s of ``restore apply``'s job loop over *count* PNG files, with and without the pipeline."""
    import tempfile

    import numpy as np
    from PIL import Image

    from restorekit.cli.apply import Job, _run_jobs
    from restorekit.cli.common import console, err_console

    console.quiet = err_console.quiet = True  # the per-image lines of restore apply; only the report here
    width, height = size
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        yy, xx = np.meshgrid(np.linspace(0, 1, height), np.linspace(0, 1, width), indexing="ij")
        jobs = []
        for i in range(count):
            smooth = np.stack([xx, yy, (xx + yy) / 2], axis=-1)
            photo = np.clip(0.7 * smooth + 0.3 * rng.random((height, width, 3)), 0, 1)
            Image.fromarray((photo * 255).astype(np.uint8)).save(root / f"in{i}.png")
            jobs.append(Job(root / f"in{i}.png", root / "out" / f"in{i}.png"))
        seconds: dict[str, list[float]] = {"pipelined": [], "one stage at a time": []}
        _run_jobs(model, jobs[:1], outscale=None, fmt=None, quality=95, overwrite=True, max_pixels=None)  # warm-up
        for i in range(repeat):
            names = list(seconds) if i % 2 == 0 else list(seconds)[::-1]
            for name in names:
                start = time.perf_counter()
                _run_jobs(model, jobs, outscale=None, fmt=None, quality=95, overwrite=True, max_pixels=None,
                          pipeline=name == "pipelined")
                seconds[name].append(time.perf_counter() - start)
    report = {
        "model": model.name,
        "images": count,
        "input": f"{width}x{height}",
        "path": model.runner.description,
        **{f"{name} images/s": round(count / min(times), 3) for name, times in seconds.items()},
        "speed-up (best of each)": round(min(seconds["one stage at a time"]) / min(seconds["pipelined"]), 3),
        "machine": machine_description(model.device),
    }
    if as_json:
        sys.stdout.write(json.dumps(report) + "\n")
    else:
        for key, value in report.items():
            sys.stdout.write(f"{key:<28}  {value}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
