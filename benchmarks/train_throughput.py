"""Training throughput of any recipe on any device: steps/s, HR megapixels/s, peak memory.

Runs the real trainer's step (data loading, on-device degradations, generator and discriminator
updates) for a number of timed steps after a warm-up, so that figures compare side by side with other
SR frameworks on the same configuration.

Examples:
    python benchmarks/train_throughput.py recipes/srgan.toml --random-vgg --set generator.init=null
    python benchmarks/train_throughput.py recipes/esrgan.toml --device cuda --steps 50 --set train.amp=bf16
    python benchmarks/train_throughput.py recipes/deblurgan.toml --set data.batch_size=1 --json
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
import warnings


def machine(device: str) -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = f"{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    if device.startswith("cuda"):
        text += f", {torch.cuda.get_device_name()}"
    return text


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="recipe override key=value")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--random-vgg", action="store_true", help="random VGG weights for perceptual terms")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    import torch

    from restorekit.recipe import load_recipe
    from restorekit.recipe.loader import find_recipe, read_recipe_tree
    from restorekit.train.trainer import Trainer

    overrides = list(args.overrides) + [f"train.device={json.dumps(args.device)}", "train.steps=1000000000"]
    if args.random_vgg:
        tree = read_recipe_tree(find_recipe(args.recipe))
        for side, terms in tree.get("losses", {}).items():
            for label, term in terms.items():
                if term.get("name") == "perceptual":
                    overrides.append(f'losses.{side}.{label}.args.weights="random"')
    with tempfile.TemporaryDirectory() as tmp:
        overrides.append(f'output.dir="{tmp}"')
        recipe = load_recipe(args.recipe, overrides)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer = Trainer(recipe, quiet=True)
        loader = iter(trainer._loader(0))
        device = trainer.device

        def one_step() -> int:
            micro = []
            pixels = 0
            for _ in range(recipe.train.accumulate):
                lr, hr = trainer.task.make_batch(next(loader), device, training=True)
                micro.append((lr.contiguous(memory_format=trainer.memory_format),
                              hr.contiguous(memory_format=trainer.memory_format)))  # fmt: skip
                pixels += hr.shape[0] * hr.shape[-2] * hr.shape[-1]
            logs = trainer.train_step(micro)
            float(logs["g_total"])  # synchronise
            return pixels

        for _ in range(args.warmup):
            one_step()
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start, pixels = time.perf_counter(), 0
        for _ in range(args.steps):
            pixels += one_step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        peak = (
            torch.cuda.max_memory_allocated() / 2**20
            if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        )
    result = {
        "recipe": recipe.name,
        "device": str(device),
        "amp": trainer.amp,
        "batch_size": recipe.data.batch_size,
        "steps_per_s": args.steps / elapsed,
        "hr_megapixels_per_s": pixels / elapsed / 1e6,
        "peak_memory_mib": peak,
        "peak_memory_kind": "cuda max allocated" if device.type == "cuda" else "process max RSS",
        "machine": machine(str(device)),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:>22}: {value:.3f}" if isinstance(value, float) else f"{key:>22}: {value}")
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
