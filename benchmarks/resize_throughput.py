"""Throughput of the MATLAB-compatible ``imresize`` on a batch: images/s and megapixels/s.

Run from the repository root, e.g.::

    python benchmarks/resize_throughput.py --device cuda --batch 16 --size 256 --scale 0.25 4
    python benchmarks/resize_throughput.py --device cpu --dtype float64 uint8

Megapixels are counted on the input side. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import time

import torch
from rich.console import Console
from rich.table import Table

from restorekit.data.resize import imresize

_DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "uint8": torch.uint8}


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    device: torch.device, batch: int, size: int, channels: int, scale: float, dtype: torch.dtype, repeats: int
) -> tuple[float, float, tuple[int, ...]]:
    """Median seconds per call over ``repeats`` timed calls after a warm-up, and the output shape."""
    if dtype == torch.uint8:
        x = torch.randint(0, 256, (batch, channels, size, size), dtype=dtype, device=device)
    else:
        x = torch.rand(batch, channels, size, size, device=device).to(dtype)
    out = imresize(x, scale)  # warm-up: builds and caches the weight tables, wakes the GPU
    _synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        imresize(x, scale)
        _synchronize(device)
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2], times[0], tuple(out.shape)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=256, help="square input side in pixels")
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--scale", type=float, nargs="+", default=[0.25, 0.5, 2.0, 4.0])
    parser.add_argument("--dtype", nargs="+", default=["float32"], choices=sorted(_DTYPES))
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    table = Table(
        title=f"imresize on {device}, batch {args.batch}, input {args.channels}x{args.size}x{args.size}"
    )
    for column in ("dtype", "scale", "output", "median ms", "best ms", "images/s", "MP/s"):
        table.add_column(column, justify="left" if column == "dtype" else "right")
    for dtype_name in args.dtype:
        for scale in args.scale:
            median, best, out_shape = measure(
                device, args.batch, args.size, args.channels, scale, _DTYPES[dtype_name], args.repeats
            )
            table.add_row(
                dtype_name,
                f"{scale:g}",
                "x".join(map(str, out_shape)),
                f"{median * 1e3:.2f}",
                f"{best * 1e3:.2f}",
                f"{args.batch / median:.1f}",
                f"{args.batch * args.size * args.size / median / 1e6:.1f}",
            )
    Console().print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
