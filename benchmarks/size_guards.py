"""What the size guards of issue 14 cost, and how fast they refuse absurd sizes.

For the networks of the shipped recipes: building on ``meta`` as ``restore check`` did before
(``torch.device("meta")`` around the constructor) against :func:`restorekit.limits.build_on_meta`
(budget hooks, ``torch.nn.init`` skipped), and the measured training-memory estimate at the recipe's
batch and crop. Then the time to refuse ``num_blocks = 10**9`` from a recipe and from a weight file.
Each figure is the median of ``--repeat`` runs in one warm process (the first ``meta`` build or
forward pass of a process also imports ``torch._dynamo``: 2-4 s on this machine, paid once; the guarded
build never needs it, the forward pass does).

    python benchmarks/size_guards.py
    python benchmarks/size_guards.py --repeat 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from restorekit import limits  # noqa: E402
from restorekit.plugins import registry  # noqa: E402

NETWORKS = [  # (recipe, kind, name, args, batch, crop, scale)
    ("srgan", "generators", "srresnet", {"num_blocks": 16, "scale": 4}, 16, 96, 4),
    ("srgan", "discriminators", "srgan_discriminator", {}, 16, 96, 4),
    ("esrgan", "generators", "rrdbnet", {"num_blocks": 23, "scale": 4}, 16, 128, 4),
    ("esrgan", "discriminators", "vgg_discriminator", {}, 16, 128, 4),
    ("deblurgan", "generators", "deblurgan_resnet", {}, 1, 256, 1),
    ("deblurgan", "discriminators", "patchgan", {}, 1, 256, 1),
]


def median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def plain_meta(component, args):
    with torch.device("meta"):
        return component.build(**args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    opts = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; medians of {opts.repeat} (warm process)")
    print(f"{'recipe':10} {'network':22} {'meta build (old)':>17} {'guarded build':>14} {'ratio':>6} {'memory estimate':>16} {'estimated':>10}")
    for recipe, kind, name, args, batch, crop, scale in NETWORKS:
        component = registry(kind).get(name)
        plain_meta(component, args)  # warm-up: imports, and torch._dynamo for meta init kernels
        net = limits.build_on_meta(component, args)
        side = crop // scale if kind == "generators" else crop
        shape = (batch, 3, side, side)
        limits.training_memory([(net, shape, crop, 1)], limit=1)
        old = median_time(lambda: plain_meta(component, args), opts.repeat)
        new = median_time(lambda: limits.build_on_meta(component, args), opts.repeat)
        estimate = median_time(lambda: limits.training_memory([(net, shape, crop, 1)], limit=1), opts.repeat)
        need = limits.training_memory([(net, shape, crop, 1)], limit=1).total
        print(f"{recipe:10} {name:22} {old:16.3f}s {new:13.3f}s {old / new:5.1f}x {estimate:15.3f}s {limits.format_bytes(need):>10}")

    srresnet = registry("generators").get("srresnet")
    start = time.perf_counter()
    try:
        limits.build_on_meta(srresnet, {"num_blocks": 10**9, "scale": 4})
    except limits.SizeLimitError as exc:
        print(f"\nrecipe num_blocks = 10**9 refused in {time.perf_counter() - start:.2f} s: {exc.detail}")

    from safetensors import safe_open
    from safetensors.torch import save_file

    from restorekit.weights import WeightInfo, WeightsError, load_network, save_weights

    with tempfile.TemporaryDirectory() as tmp:
        args = {"num_features": 64, "num_blocks": 16, "scale": 4}
        save_weights(registry("generators").build("srresnet", **args), f"{tmp}/ok.safetensors",
                     WeightInfo("srresnet", args, task="super_resolution", scale=4))  # fmt: skip
        with safe_open(f"{tmp}/ok.safetensors", "pt") as handle:
            meta, tensors = handle.metadata(), {k: handle.get_tensor(k) for k in handle.keys()}
        lie = {**args, "num_blocks": 10**9}
        record = {**json.loads(meta["descriptor"]), "args": lie}
        save_file(tensors, f"{tmp}/forged.safetensors", metadata={**meta, "args": json.dumps(lie), "descriptor": json.dumps(record)})
        for label in ("ok", "forged"):
            start = time.perf_counter()
            try:
                load_network(f"{tmp}/{label}.safetensors")
                outcome = "loaded"
            except WeightsError:
                outcome = "refused"
            print(f"weight file {label}.safetensors (SRResNet-16): {outcome} in {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
