"""Throughput and peak memory of tiled inference (what ``restore apply`` does to every photograph).

Builds a registered generator with random weights, restores one random image of the requested size
tile by tile and reports output megapixels per second and peak memory, with a description of the machine.

Example::

    python benchmarks/apply_throughput.py --model srresnet --arg num_blocks=16 --size 1920x1080 \\
        --tile 512 --overlap 16 --batch 4 --device cuda --precision fp16 --repeat 3

Peak memory is ``torch.cuda.max_memory_allocated`` on CUDA and the process's peak resident set size on the
CPU (which includes the CPU output buffer and the Python/torch baseline).
"""

from __future__ import annotations

import argparse
import ast
import json
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from restorekit.inference.tiling import count_tiles, tiled_apply  # noqa: E402
from restorekit.plugins import registry  # noqa: E402

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def parse_size(text: str) -> tuple[int, int]:
    """``"1920x1080"`` → ``(1920, 1080)`` (width, height)."""
    try:
        width, height = (int(v) for v in text.lower().replace("×", "x").split("x"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--size must look like 1920x1080, got {text!r}") from exc
    if width < 1 or height < 1:
        raise argparse.ArgumentTypeError(f"--size must be positive, got {text!r}")
    return width, height


def parse_arg(text: str) -> tuple[str, Any]:
    """``"num_blocks=16"`` → ``("num_blocks", 16)``; values are Python literals, else strings."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--arg must look like key=value, got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def machine_description(device: torch.device) -> dict[str, str]:
    """CPU model, torch version and accelerator name."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.partition(":")[2].strip()
                break
    except OSError:
        pass
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


def probe_geometry(
    model: torch.nn.Module, in_channels: int, device: torch.device, dtype: torch.dtype
) -> tuple[int, int]:
    """The model's scale and the smallest size multiple it accepts, found on tiny inputs."""
    with torch.inference_mode():
        for multiple in (1, 2, 4, 8, 16, 32):
            size = 9 * multiple  # odd cofactor: works only if `multiple` is enough
            try:
                out = model(torch.rand(1, in_channels, size, size, device=device, dtype=dtype))
            except RuntimeError:
                continue
            if out.shape[-1] % size == 0 and out.shape[-2] == out.shape[-1]:
                return out.shape[-1] // size, multiple
    raise SystemExit("cannot find an input size the model accepts (tried multiples up to 32)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="registered generator name, e.g. srresnet, rrdbnet")
    parser.add_argument("--arg", action="append", type=parse_arg, default=[], metavar="KEY=VALUE",
                        help="constructor argument (repeatable), e.g. --arg num_blocks=16")
    parser.add_argument("--size", type=parse_size, default=(1920, 1080), metavar="WxH", help="input image size")
    parser.add_argument("--tile", type=int, default=512, help="tile size in input pixels; 0 for a whole-image pass")
    parser.add_argument("--overlap", type=int, default=32, help="context margin per tile side, input pixels")
    parser.add_argument("--batch", type=int, default=4, help="tiles per forward pass")
    parser.add_argument("--multiple", type=int, default=0, help="size multiple the model needs; 0 to detect")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--precision", choices=sorted(PRECISIONS), default="fp32")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs after one warm-up run")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args(argv)

    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device available")
    device = torch.device(args.device)
    dtype = PRECISIONS[args.precision]
    kwargs = dict(args.arg)

    model = registry("generators").build(args.model, **kwargs).eval().to(device=device, dtype=dtype)
    in_channels = int(kwargs.get("in_channels", 3))
    scale, detected = probe_geometry(model, in_channels, device, dtype)
    multiple = args.multiple or detected
    width, height = args.size
    tile = args.tile or None
    image = torch.rand(in_channels, height, width)
    tiles = count_tiles(height, width, tile, args.overlap, multiple)

    def run() -> None:
        tiled_apply(model, image, scale=scale, tile=tile, overlap=args.overlap, batch_size=args.batch,
                    device=device, dtype=dtype, multiple=multiple)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    run()  # warm-up: cuDNN autotuning, allocator growth
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
        "parameters_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 3),
        "input": f"{width}x{height}",
        "scale": scale,
        "output_megapixels": round(out_megapixels, 3),
        "tile": tile,
        "overlap": args.overlap,
        "multiple": multiple,
        "tiles": tiles,
        "batch": args.batch,
        "precision": args.precision,
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


if __name__ == "__main__":
    raise SystemExit(main())
