"""Frames per second of video restoration (what ``restore apply --model M clip.mp4`` does), by model, size,
tile and precision.

For each input size a synthetic clip (moving gradients and noise, x264, with an AAC track) is written
once to a temporary folder; then for each tile × precision the whole pipeline runs —
decode, :meth:`RestorationModel.restore_picture` per frame, encode in segments, final mux with the audio —
through :func:`restorekit.video.restore_video`, the function the CLI calls. Reported: end-to-end frames/s,
the model's share (frames/s of ``restore_picture`` alone on the same frames), and the peak resident memory
of the process (which must not grow with the clip's length: compare ``--frames 20`` and ``--frames 80``).

Example::

    python benchmarks/video_throughput.py --model srvgg_compact --arg num_conv=16 --size 854x480 \\
        --size 1280x720 --tile 0 --tile 256 --precision fp32 --frames 24
    python benchmarks/video_throughput.py --weights realesr-general-x4v3 --device cuda --precision fp16 \\
        --size 1280x720 --tile 0 --codec libx264 --frames 240

Random weights cost the same as trained ones. ``--weights`` takes a store name or a weight file instead.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from common import cpu_model, parse_arg, parse_size  # noqa: E402

from restorekit.data.images import Picture  # noqa: E402
from restorekit.inference.model import RestorationModel  # noqa: E402
from restorekit.inference.options import InferenceOptions  # noqa: E402
from restorekit.plugins import registry  # noqa: E402
from restorekit.video import VideoOptions, restore_video  # noqa: E402
from restorekit.weights import WeightInfo  # noqa: E402


def make_clip(path: Path, width: int, height: int, frames: int, fps: int = 25) -> None:
    """A synthetic x264 clip with a stereo AAC track, *frames* long."""
    import av

    rng = np.random.default_rng(0)
    yy, xx = np.meshgrid(
        np.linspace(0, 1, height, dtype=np.float32), np.linspace(0, 1, width, dtype=np.float32), indexing="ij"
    )
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = out.add_stream("aac", rate=48000)
        audio.layout = "stereo"
        for i in range(frames):
            smooth = np.stack([xx, yy, (xx + yy + i / frames) % 1], axis=-1)
            noisy = np.clip(0.8 * smooth + 0.2 * rng.random(smooth.shape, dtype=np.float32), 0, 1)
            frame = av.VideoFrame.from_ndarray((noisy * 255).astype(np.uint8), format="rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode())
        samples = 48000 * frames // fps
        tone = (0.2 * np.sin(np.arange(samples) * 2 * np.pi * 440 / 48000)).astype(np.float32)
        for start in range(0, samples, 1024):
            chunk = tone[start : start + 1024]
            frame = av.AudioFrame.from_ndarray(np.stack([chunk, chunk]), format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = 48000, start
            out.mux(audio.encode(frame))
        out.mux(audio.encode())


def decoded_frames(path: Path, count: int) -> list[torch.Tensor]:
    import av

    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            frames.append(torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1).float().div(255))
            if len(frames) == count:
                break
    return frames


def machine() -> dict[str, str]:
    cpu = cpu_model()
    info = {"cpu": cpu, "cpu_threads": str(torch.get_num_threads()), "torch": torch.__version__}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    import av

    info["av"] = av.__version__
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="registered generator with random weights (srvgg_compact, rrdbnet, ...)")
    source.add_argument("--weights", help="a store name or weight file instead")
    parser.add_argument("--arg", action="append", type=parse_arg, default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--size", action="append", type=parse_size, metavar="WxH", help="repeatable; default 854x480 and 1280x720"
    )
    parser.add_argument("--tile", action="append", type=int, help="repeatable; 0: whole frames. Default: 0")
    parser.add_argument(
        "--precision", action="append", choices=["auto", "fp32", "fp16", "bf16"], help="repeatable; default fp32"
    )
    parser.add_argument("--device", default=None, help="cpu, cuda (default: CUDA when available)")
    parser.add_argument("--frames", type=int, default=24, help="clip length in frames")
    parser.add_argument("--codec", default="libx264")
    parser.add_argument("--crf", type=int, default=None)
    parser.add_argument("--json", action="store_true", help="one JSON object per configuration")
    args = parser.parse_args(argv)

    sizes = args.size or [(854, 480), (1280, 720)]
    tiles = args.tile or [0]
    precisions = args.precision or ["fp32"]
    kwargs = dict(args.arg)
    if args.model:
        network = registry("generators").build(args.model, **kwargs).eval()
        info = WeightInfo(name=args.model, args=kwargs)
        name = args.model
    rows = []
    with tempfile.TemporaryDirectory(prefix="restorekit-video-bench-") as tmp:
        for width, height in sizes:
            clip = Path(tmp) / f"clip-{width}x{height}.mp4"
            make_clip(clip, width, height, args.frames)
            sample = decoded_frames(clip, 4)
            for tile in tiles:
                for precision in precisions:
                    options = InferenceOptions(tile=tile, precision=precision, device=args.device)
                    if args.model:
                        model = RestorationModel(network, info, options=options)
                    else:
                        model = RestorationModel.load(args.weights, options=options)
                        name = args.weights
                    model.restore_picture(Picture(rgb=sample[0]))  # warm-up (weight packing, autotuning)
                    start = time.perf_counter()
                    for frame in sample[1:]:
                        model.restore_picture(Picture(rgb=frame))
                    model_fps = (len(sample) - 1) / (time.perf_counter() - start)
                    target = Path(tmp) / f"out-{width}x{height}-{tile}-{precision}.mp4"
                    start = time.perf_counter()
                    result = restore_video(model, clip, target, options=VideoOptions(codec=args.codec, crf=args.crf))
                    seconds = time.perf_counter() - start
                    row = {
                        "model": name,
                        "input": f"{width}x{height}",
                        "output": f"{result.size[0]}x{result.size[1]}",
                        "tile": model.tile,
                        "precision": precision,
                        "dtype": str(model.dtype).removeprefix("torch."),
                        "device": str(model.device),
                        "frames": result.frames,
                        "seconds": round(seconds, 2),
                        "frames_per_s": round(result.frames / seconds, 3),
                        "model_frames_per_s": round(model_fps, 3),
                        "peak_rss_MiB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                    }
                    rows.append(row)
                    target.unlink()
                    if args.json:
                        sys.stdout.write(json.dumps({**row, "machine": machine()}) + "\n")
                        sys.stdout.flush()
    if not args.json:
        keys = list(rows[0])
        widths = {k: max(len(k), *(len(str(r[k])) for r in rows)) for k in keys}
        sys.stdout.write("  ".join(k.ljust(widths[k]) for k in keys) + "\n")
        for row in rows:
            sys.stdout.write("  ".join(str(row[k]).ljust(widths[k]) for k in keys) + "\n")
        sys.stdout.write(f"machine: {json.dumps(machine())}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
