"""restorekit's inference against spandrel's bare forward pass: same weights, same images, A/B interleaved.

spandrel is what chaiNNer and ComfyUI run: its ``ImageModelDescriptor`` loads a state dict and calls the
network under ``torch.inference_mode`` on the whole image, then clamps. restorekit loads the same weights
from a ``.safetensors`` file with :func:`restorekit.load_model` and restores the image through
``RestorationModel.restore_tensor`` (its default tiles, or ``--tile 0``: a whole-image pass). Both get the
same float32 ``(3, H, W)`` image and give a clamped float image; with ``--pil`` both go PIL in, PIL out.

The two are timed A/B interleaved (A B B A, so drift and other jobs on a shared machine hit both alike),
each side in a process of its own that stays up for the whole row: restorekit tunes the C heap while it
restores an image, which would also speed up a bare forward pass run in the same process, and that is
not what a spandrel user gets. The speed-up is the median of the per-pair time ratios. Peak memory is
sampled from a fresh process's resident set (``/proc/self/statm``, every 2 ms) above what was resident
before the call, or ``torch.cuda.max_memory_allocated`` on CUDA. The output difference is the largest absolute difference,
in 8-bit levels, between the two 8-bit results; spandrel's fp32 pass is a plain fp32 forward of the same
weights over the whole image, so that is also the distance from plain fp32.

spandrel has no DeblurGAN architecture: that row compares restorekit's fast path with restorekit's own
plain fp32 forward on the whole image (``InferenceOptions(fast=False, tile=0)``), and says so. DeblurGAN's
instance norm makes tiles change the result (its descriptor says ``tile_with_warning``), so its
``default`` restorekit setting is the whole image too. Weights are random (seeded): speed does not depend
on their values, and nothing is downloaded.

Examples::

    python benchmarks/apply_vs_spandrel.py                       # CPU, all models, 256x256 and 640x480
    python benchmarks/apply_vs_spandrel.py --models srvgg_compact --sizes 256x256 --repeat 6
    python benchmarks/apply_vs_spandrel.py --device cuda --precision fp32 fp16 bf16
    python benchmarks/apply_vs_spandrel.py --rss 4000x3000       # peak RSS of a large photo, child process
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from common import cpu_model, parse_arg, parse_size  # noqa: E402

#: The papers' configurations (what the released checkpoints use).
MODELS: dict[str, dict[str, Any]] = {
    "rrdbnet": {"num_features": 64, "num_blocks": 23, "growth_channels": 32, "scale": 4},  # ESRGAN / RealESRGAN_x4plus
    "srvgg_compact": {"num_features": 64, "num_conv": 32, "scale": 4, "act_type": "prelu"},  # realesr-general-x4v3
    "deblurgan_resnet": {},  # DeblurGAN: 64 features, 9 ResNet blocks, instance norm
}
PLUGINS = {"rrdbnet": "esrgan", "srvgg_compact": "realesrgan", "deblurgan_resnet": "deblurgan"}
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
SHARED_DATA = Path(os.environ.get("RESTOREKIT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def machine_description(device: torch.device) -> dict[str, str]:
    """CPU model, threads, torch version and accelerator name."""
    cpu = cpu_model()
    info = {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "torch_threads": str(torch.get_num_threads()),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "load_average": " ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "",
    }
    try:
        import spandrel

        info["spandrel"] = spandrel.__version__
    except ImportError:
        info["spandrel"] = "not installed"
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
        info["cuda"] = str(torch.version.cuda)
    return info


def test_image(width: int, height: int) -> torch.Tensor:
    """A real photograph cropped to ``width × height`` when the reference data is there, else a synthetic one."""
    from restorekit.data.images import load_rgb

    for folder in (SHARED_DATA / "deblur" / "gopro-avg8" / "sharp", SHARED_DATA / "sr-bench" / "BSD100" / "HR"):
        for path in sorted(folder.glob("*.png")) if folder.is_dir() else []:
            image = load_rgb(path)
            if image.shape[-2] >= height and image.shape[-1] >= width:
                top, left = (image.shape[-2] - height) // 2, (image.shape[-1] - width) // 2
                return image[:, top : top + height, left : left + width].contiguous()
    gen = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    smooth = torch.stack([xx, yy, (xx + yy) / 2])
    return (0.75 * smooth + 0.25 * torch.rand(3, height, width, generator=gen)).clamp(0, 1)


# --- memory ------------------------------------------------------------------------------------------


class PeakSampler:
    """Largest resident set of this process while a block runs, above what it was before (CPU)."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.peak = 0
        self._stop = threading.Event()

    def _rss(self) -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * self.page

    def __enter__(self) -> PeakSampler:
        self.base = self._rss()
        self.peak = self.base
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(self.interval)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def above_base(self) -> int:
        return self.peak - self.base


# --- the two sides -----------------------------------------------------------------------------------


def build(
    name: str, folder: Path, seed: int = 0, changes: dict[str, Any] | None = None
) -> Path:
    """Random weights for *name* at the paper configuration (with *changes*), saved as ``.safetensors``."""
    from restorekit.plugins import registry
    from restorekit.weights import WeightInfo, save_weights

    torch.manual_seed(seed)
    args = {**MODELS[name], **(changes or {})}
    network = registry("generators").build(name, **args).eval()
    task = "deblurring" if name.startswith("deblur") else "super_resolution"
    path = save_weights(
        network,
        folder / f"{name}.safetensors",
        WeightInfo(name=name, args=args, task=task, scale=int(network.scale), plugin=PLUGINS[name]),
    )
    return path


def spandrel_model(state: dict[str, torch.Tensor], device: torch.device, dtype: torch.dtype) -> Any | None:
    """spandrel's descriptor for the state dict, or None when spandrel does not know the architecture."""
    try:
        import spandrel
    except ImportError:
        return None
    try:
        descriptor = spandrel.ModelLoader().load_from_state_dict(state)
    except Exception:  # noqa: BLE001 - spandrel's "unsupported model" comes in several types
        return None
    descriptor.eval()
    return descriptor.to(device).to(dtype) if dtype != torch.float32 else descriptor.to(device)


def to_8bit(image: torch.Tensor) -> torch.Tensor:
    return (image.float().clamp(0, 1) * 255).round().to(torch.int16)


def levels(a: torch.Tensor, b: torch.Tensor) -> int:
    """Largest difference between two images in 8-bit levels."""
    return int((to_8bit(a) - to_8bit(b)).abs().max())


@dataclass
class Row:
    model: str
    size: str
    precision: str
    baseline: str
    restorekit: str
    baseline_s: float
    restorekit_s: float
    speedup_median: float
    speedup_min: float
    pairs: int
    baseline_peak_MiB: float
    restorekit_peak_MiB: float
    levels: int  # largest difference of the two 8-bit results
    runner: str
    threads: int
    load_average: str  # 1-minute load average before and after the row's timings


class Worker:
    """One side of a comparison in a process of its own, timed on request (``run``), kept between calls.

    Each side runs in its own process so that neither changes the other's conditions: restorekit tunes
    the C heap while it restores an image (``runner.heap_reuse``), which would make a bare forward pass in
    the same process faster than it is for anyone running it alone, and each side's allocator, oneDNN
    primitive cache and thread pool stay its own. The two processes are driven alternately, so drift and
    other jobs on the machine still hit both alike.
    """

    def __init__(self, case: Case, weights: Path, side: str, threads: int | None) -> None:
        case_json = json.dumps({**asdict(case), "size": list(case.size)})
        command = [sys.executable, __file__, "--_worker", case_json, str(weights), side, str(threads or 0)]
        self.side = side
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.ready = self.ask("ready")

    def ask(self, command: str) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        for line in self.process.stdout:
            if line.startswith(REPLY):
                return json.loads(line[len(REPLY) :])
        raise SystemExit(f"the {self.side} worker stopped (exit {self.process.wait()}) on {command!r}")

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            assert self.process.stdin is not None
            self.process.stdin.write("quit\n")
            self.process.stdin.close()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()


REPLY = "@@reply "


def worker(case_json: str, weights: str, side: str, threads: int) -> None:
    """In a worker process: load one side, then answer ``ready``, ``run``, ``save PATH``, ``describe``, ``quit``."""
    from safetensors.torch import save_file

    if threads:
        torch.set_num_threads(threads)
    data = json.loads(case_json)
    case = Case(**{**data, "size": tuple(data["size"])})
    sides = make_sides(case, Path(weights), load_state(Path(weights)))
    fn = sides.baseline if side == "baseline" else sides.restorekit
    device = torch.device(case.device)
    cuda = device.type == "cuda"
    output: Any = None

    def reply(**values: Any) -> None:
        sys.stdout.write(REPLY + json.dumps(values) + "\n")
        sys.stdout.flush()

    for line in sys.stdin:
        command, _, argument = line.strip().partition(" ")
        if command == "ready":
            reply(baseline_name=sides.baseline_name)
        elif command == "run":
            output = None  # the previous result is not part of this call's memory
            if cuda:
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
                before = torch.cuda.memory_allocated(device)
            start = time.perf_counter()
            output = fn()
            peak = 0
            if cuda:
                torch.cuda.synchronize(device)
                peak = torch.cuda.max_memory_allocated(device) - before
            reply(seconds=time.perf_counter() - start, peak=peak)
        elif command == "save":
            save_file({"image": sides.to_tensor(output).float().contiguous()}, argument)
            reply()
        elif command == "describe":
            model = sides.model
            width, height = case.size
            tile = model.working_tile if max(width, height) > (model.tile or 0) else model.tile
            reply(tile=tile, batch=model.working_batch_size, runner=model.runner.description,
                  threads=torch.get_num_threads())  # fmt: skip
        elif command == "quit":
            break


def interleaved(a: Worker, b: Worker, pairs: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Time *a* and *b* run A B B A A B ... after one warm-up call each."""
    first: list[dict[str, Any]] = []
    second: list[dict[str, Any]] = []
    a.ask("run"), b.ask("run")  # warm-up: oneDNN primitive caches, weight packing, cuDNN autotuning, CUDA graphs
    for i in range(pairs):
        order = ((a, first), (b, second)) if i % 2 == 0 else ((b, second), (a, first))
        for side, into in order:
            into.append(side.ask("run"))
    return first, second


@dataclass(frozen=True)
class Case:
    """One comparison: which network, image, precision, device and restorekit settings."""

    name: str
    size: tuple[int, int]
    precision: str
    device: str
    tile: str
    pil: bool
    compile: bool

    def restorekit_options(self) -> Any:
        from restorekit.inference.options import InferenceOptions

        tile: Any = "auto" if self.tile == "default" else int(self.tile)
        if self.tile == "default" and self.name == "deblurgan_resnet":
            tile = 0  # instance norm: tiles change the result (see the module docstring)
        return InferenceOptions(tile=tile, precision=self.precision, device=self.device, compile=self.compile)


@dataclass
class Sides:
    """The two callables compared, and how to read their results as ``(C, H, W)`` float images."""

    baseline: Callable[[], Any]
    restorekit: Callable[[], Any]
    to_tensor: Callable[[Any], torch.Tensor]
    baseline_name: str
    model: Any


def make_sides(case: Case, weights: Path, state: dict[str, torch.Tensor]) -> Sides:
    """Load both sides for *case* (restorekit from the weight file, spandrel from the same state dict)."""
    import numpy as np
    from PIL import Image

    import restorekit
    from restorekit.inference.options import InferenceOptions

    device = torch.device(case.device)
    dtype = PRECISIONS[case.precision]
    image = test_image(*case.size)
    model = restorekit.load_model(str(weights), options=case.restorekit_options())
    descriptor = spandrel_model(state, device, dtype)
    if descriptor is not None:
        baseline_name = f"spandrel {descriptor.architecture.name}, whole image"

        def forward(x: torch.Tensor) -> torch.Tensor:
            return descriptor(x[None].to(device, dtype))[0].float().cpu()
    else:  # restorekit's own plain fp32 pass over the whole image
        baseline_name = "restorekit plain fp32, whole image (spandrel has no such architecture)"
        plain_options = InferenceOptions(tile=0, precision="fp32", device=case.device, fast=False)
        plain = restorekit.load_model(str(weights), options=plain_options)
        forward = plain.restore_tensor

    if not case.pil:
        return Sides(lambda: forward(image), lambda: model.restore_tensor(image), lambda r: r, baseline_name, model)

    picture = Image.fromarray((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))

    def baseline() -> Any:
        # What chaiNNer-style callers do: uint8 HWC → float CHW → forward → uint8 HWC.
        x = torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255).permute(2, 0, 1)
        out = forward(x)
        return Image.fromarray((out.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))

    def to_tensor(result: Any) -> torch.Tensor:
        return torch.from_numpy(np.asarray(result, dtype=np.float32) / 255).permute(2, 0, 1)

    return Sides(baseline, lambda: model(picture), to_tensor, baseline_name, model)


def peak_in_child(case: Case, weights: Path, side: str) -> int:
    """Peak resident memory of one call of *side* in a fresh process, above what was resident before it.

    A fresh process, because freed memory stays in the allocator of a process that has run before: a
    second call in the same process would look almost free.
    """
    command = [sys.executable, __file__, "--_peak-child", json.dumps({**asdict(case), "size": list(case.size)}),
               str(weights), side]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"peak-memory child ({side}, {case}) failed:\n{done.stderr[-2000:]}")
    return int(json.loads(done.stdout.strip().splitlines()[-1])["peak"])


def peak_child(case_json: str, weights: str, side: str) -> dict[str, int]:
    """In the child: load both sides, run *side* once, sample the resident set while it runs."""
    data = json.loads(case_json)
    case = Case(**{**data, "size": tuple(data["size"])})
    state = load_state(Path(weights))
    sides = make_sides(case, Path(weights), state)
    del state
    fn = sides.baseline if side == "baseline" else sides.restorekit
    with PeakSampler() as sampler:
        fn()
    return {"peak": sampler.above_base}


def load_state(weights: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(weights))


def compare(case: Case, *, weights: Path, pairs: int, threads: int | None = None) -> Row:
    """Time both sides A/B interleaved, each in its own process, then measure each one's peak memory afresh."""
    device = torch.device(case.device)
    theirs_worker = Worker(case, weights, "baseline", threads)
    ours_worker = Worker(case, weights, "restorekit", threads)
    try:
        load_before = _load()
        theirs, ours = interleaved(theirs_worker, ours_worker, pairs)
        load_after = _load()
        with tempfile.TemporaryDirectory() as tmp:
            results = []
            for worker_ in (ours_worker, theirs_worker):
                path = Path(tmp) / f"{worker_.side}.safetensors"
                worker_.ask(f"save {path}")
                results.append(load_state(path)["image"])
        described = ours_worker.ask("describe")
        baseline_name = theirs_worker.ready["baseline_name"]
    finally:
        theirs_worker.close()
        ours_worker.close()
    levels_apart = levels(*results)
    theirs_s = [r["seconds"] for r in theirs]
    ours_s = [r["seconds"] for r in ours]
    ratios = [t / o for t, o in zip(theirs_s, ours_s)]
    width, height = case.size
    tile = described["tile"]
    whole = tile is None or (tile >= width and tile >= height)
    settings = "whole image" if whole else f"tiles ≤ {tile}, batch {described['batch']}"
    if case.tile == "default":
        settings = f"default ({settings})"
    if device.type == "cuda":
        peaks = (max(r["peak"] for r in theirs), max(r["peak"] for r in ours))
    else:
        peaks = (peak_in_child(case, weights, "baseline"), peak_in_child(case, weights, "restorekit"))
    return Row(
        model=case.name,
        size=f"{width}x{height}",
        precision=case.precision,
        baseline=baseline_name,
        restorekit=settings + (", compile" if case.compile else "") + (", PIL in/out" if case.pil else ""),
        baseline_s=round(statistics.median(theirs_s), 4),
        restorekit_s=round(statistics.median(ours_s), 4),
        speedup_median=round(statistics.median(ratios), 3),
        speedup_min=round(min(theirs_s) / min(ours_s), 3),
        pairs=pairs,
        baseline_peak_MiB=round(peaks[0] / 2**20, 1),
        restorekit_peak_MiB=round(peaks[1] / 2**20, 1),
        levels=levels_apart,
        runner=described["runner"],
        threads=described["threads"],
        load_average=f"{load_before} → {load_after}",
    )


def _load() -> str:
    return f"{os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "?"


# --- large photographs: peak RSS in a child process ------------------------------------------------------


def rss_child(weights: str, width: int, height: int, tile: str) -> dict[str, Any]:
    """Restore one ``width × height`` image in this (child) process; report its peak resident set."""
    import restorekit
    from restorekit.inference.options import InferenceOptions

    tile_value: Any = "auto" if tile == "default" else int(tile)
    model = restorekit.load_model(weights, options=InferenceOptions(tile=tile_value, device="cpu"))
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(3, height, width, generator=gen)
    with PeakSampler() as sampler:
        start = time.perf_counter()
        out = model.restore_tensor(image)
        seconds = time.perf_counter() - start
    output_bytes = out.numel() * 4
    return {
        "input": f"{width}x{height}",
        "output": f"{out.shape[-1]}x{out.shape[-2]}",
        "tile": model.tile,
        "working_tile": model.working_tile,
        "batch": model.working_batch_size,
        "seconds": round(seconds, 2),
        "rss_before_MiB": round(sampler.base / 2**20, 1),
        "peak_rss_MiB": round(sampler.peak / 2**20, 1),
        "input_float_MiB": round(image.numel() * 4 / 2**20, 1),
        "output_float_MiB": round(output_bytes / 2**20, 1),
        # What the call needed besides the result itself: tiles, the network's activations, packed weights.
        "working_MiB": round((sampler.above_base - output_bytes) / 2**20, 1),
    }


def run_rss(
    model: str, sizes: list[tuple[int, int]], tile: str, changes: dict[str, Any]
) -> list[dict[str, Any]]:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        weights = build(model, Path(tmp), changes=changes)
        for width, height in sizes:
            command = [sys.executable, __file__, "--_rss-child", str(weights), f"{width}x{height}", tile]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise SystemExit(f"child for {width}x{height} failed:\n{done.stderr}")
            results.append({"model": model, "args": changes, **json.loads(done.stdout.strip().splitlines()[-1])})
    return results


# --- output -------------------------------------------------------------------------------------------


def markdown(rows: list[Row]) -> str:
    lines = [
        "| model | input | precision | baseline | restorekit | baseline s | restorekit s "
        "| speed-up, median of pairs (best vs best) | peak MiB baseline / restorekit | max diff, 8-bit levels "
        "| threads, load |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.model} | {r.size} | {r.precision} | {r.baseline} | {r.restorekit} | {r.baseline_s:.2f} "
            f"| {r.restorekit_s:.2f} | **{r.speedup_median:.2f}×** ({r.speedup_min:.2f}×) "
            f"| {r.baseline_peak_MiB:.0f} / {r.restorekit_peak_MiB:.0f} | {r.levels} | {r.threads}, {r.load_average} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--_peak-child"]:
        sys.stdout.write(json.dumps(peak_child(*argv[1:4])) + "\n")
        return 0
    if argv[:1] == ["--_worker"]:
        worker(argv[1], argv[2], argv[3], int(argv[4]))
        return 0
    if argv[:1] == ["--_rss-child"]:
        weights, size, tile = argv[1], parse_size(argv[2]), argv[3]
        sys.stdout.write(json.dumps(rss_child(weights, *size, tile)) + "\n")
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=list(MODELS))
    parser.add_argument("--sizes", nargs="+", type=parse_size, default=[(256, 256), (640, 480)], metavar="WxH")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", nargs="+", choices=sorted(PRECISIONS), default=None,
                        help="default: fp32 on CPU; fp32 fp16 bf16 on CUDA")
    parser.add_argument("--tile", nargs="+", default=["default"],
                        help="restorekit's tile: 'default' (as restore apply), 0 (whole image) or a side")
    parser.add_argument("--repeat", type=int, default=4, help="timed A/B pairs per row (after one warm-up each)")
    parser.add_argument("--pil", action="store_true", help="time PIL in → PIL out on both sides")
    parser.add_argument("--compile", action="store_true", help="restorekit with torch.compile (per tile shape)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--rss", nargs="*", type=parse_size, default=None, metavar="WxH",
                        help="instead: peak RSS of restoring these sizes with --models[0], each in a child process")
    parser.add_argument("--arg", action="append", type=parse_arg, default=[], metavar="KEY=VALUE",
                        help="change the models' configuration, e.g. --arg num_conv=16 (realesr-animevideov3)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device available")
    machine = machine_description(device)
    sys.stdout.write("machine: " + json.dumps(machine) + "\n")

    if args.rss is not None:
        sizes = args.rss or [(4000, 3000)]
        results = run_rss(args.models[0], sizes, args.tile[0], dict(args.arg))
        for result in results:
            sys.stdout.write(json.dumps(result) + "\n")
        if args.json:
            args.json.write_text(json.dumps({"machine": machine, "rss": results}, indent=2))
        return 0

    precisions = args.precision or (["fp32", "fp16", "bf16"] if device.type == "cuda" else ["fp32"])
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            weights = build(name, Path(tmp), changes=dict(args.arg))
            for precision in precisions:
                for width, height in args.sizes:
                    for tile in args.tile:
                        case = Case(name, (width, height), precision, str(device), tile, args.pil, args.compile)
                        row = compare(case, weights=weights, pairs=args.repeat, threads=args.threads)
                        rows.append(row)
                        sys.stdout.write(json.dumps(asdict(row)) + "\n")
                        sys.stdout.flush()
    sys.stdout.write("\n" + markdown(rows) + "\n")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "rows": [asdict(r) for r in rows]}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
