"""Seconds per training step and peak memory: restorekit's trainer against BasicSR's, same configuration.

Two configurations, each as its recipe gives it (``--batch`` / ``--crop`` override both sides for a quick
run):

* **ESRGAN**: RRDBNet-23 (64 features, growth 32, x4), VGG-style discriminator, L1 1e-2 + VGG19 conv5_4
  (L1) + relativistic GAN 5e-3, Adam 1e-4 (0.9, 0.99) on both networks, EMA 0.999; batch 16, crop 128
  (``recipes/esrgan.toml``; BasicSR's ``ESRGANModel`` with its ``train_ESRGAN_x4.yml`` values).
* **Real-ESRGAN**: RRDBNet-23, U-Net discriminator with spectral norm, L1 1 + VGG19 conv1_2..conv5_4
  (0.1, 0.1, 1, 1, 1) + vanilla GAN 0.1, EMA 0.999; batch 48 (12 per GPU on 4 GPUs), crop 256
  (``recipes/realesrgan_x4plus.toml``, or the same values written here where that recipe is missing;
  Real-ESRGAN's ``RealESRGANModel``). Both sides get the same HR as every target (no unsharp masking).

What is timed is one optimisation step of both networks on the same ``(LR, HR)`` batch: restorekit's
``Trainer.train_step`` (inputs in the trainer's memory format, as ``fit`` hands them over) and BasicSR's
``optimize_parameters`` plus its learning-rate update. Data loading and LR synthesis (BasicSR's
``feed_data``, which for Real-ESRGAN runs the second-order degradation) are left out of both: the loaders
have their own benchmark (``data_throughput.py``), the degradation model its own. The steps alternate
(A B B A ...) in one process; the ratio of each adjacent pair is taken and its median reported.
Memory: on CPU the peak resident set of each side's step (Linux ``clear_refs`` resets the high-water mark
before every step, after returning freed heap pages with ``malloc_trim``); on CUDA
``max_memory_allocated``.

Both sides use randomly initialised VGG19 weights (no download; the cost is the same as ImageNet's).
BasicSR (``pip install --no-deps basicsr realesrgan`` plus ``opencv-python-headless lmdb pyyaml tqdm
addict``) is needed only here, not by restorekit; its import of the removed
``torchvision.transforms.functional_tensor`` is shimmed inside this script, and so are its
``pretrained=True`` VGG download and Real-ESRGAN's unconditional ``.cuda()`` calls.

Examples:
    python benchmarks/train_vs_basicsr.py --config esrgan --batch 2 --steps 3          # quick look
    python benchmarks/train_vs_basicsr.py --config esrgan --steps 5                    # batch 16, crop 128
    python benchmarks/train_vs_basicsr.py --config realesrgan --batch 4 --device cuda --steps 20
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import logging
import platform
import statistics
import sys
import tempfile
import time
import types
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

REPO = Path(__file__).resolve().parents[1]

# Real-ESRGAN's values (options/train_realesrgan_x4plus.yml), written as a restorekit recipe for when
# the repository's own realesrgan_x4plus recipe is not there.
REALESRGAN_RECIPE = """
name = "realesrgan_x4plus_bench"
[task]
name = "super_resolution"
[generator]
name = "rrdbnet"
args = { num_features = 64, num_blocks = 23, growth_channels = 32, scale = 4 }
[discriminator]
name = "unet_discriminator"
args = { num_features = 64, skip_connection = true }
[losses.generator.pixel]
name = "l1"
weight = 1.0
[losses.generator.perceptual]
name = "perceptual"
weight = 1.0
args = { network = "vgg19", criterion = "l1", layers = { conv1_2 = 0.1, conv2_2 = 0.1, conv3_4 = 1.0, conv4_4 = 1.0, conv5_4 = 1.0 } }
[losses.generator.adversarial]
name = "bce_gan"
weight = 0.1
[losses.discriminator.adversarial]
name = "bce_gan"
weight = 1.0
[data]
train = { hr = "../shared/data/train/T91", crop = 256 }
batch_size = 48
workers = 0
[train]
steps = 400000
ema = 0.999
[train.optim.generator]
lr = 1e-4
betas = [0.9, 0.99]
[train.optim.discriminator]
lr = 1e-4
betas = [0.9, 0.99]
"""


def machine(device: torch.device) -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    text = f"{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    if device.type == "cuda":
        text += f", {torch.cuda.get_device_name(device)}"
    return text


# --- memory -----------------------------------------------------------------------------------------


class PeakMemory:
    """The peak memory of one block: CPU resident set (Linux) or CUDA allocations."""

    def __init__(self, device: torch.device):
        self.device = device
        self._libc = None
        with contextlib.suppress(OSError):
            self._libc = ctypes.CDLL("libc.so.6")

    @staticmethod
    def _status(key: str) -> float:
        for line in open("/proc/self/status", encoding="ascii"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024  # kB -> MiB
        return float("nan")

    @contextlib.contextmanager
    def measure(self, into: list[float], before: list[float]):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            before.append(torch.cuda.memory_allocated(self.device) / 2**20)
            yield
            torch.cuda.synchronize(self.device)
            into.append(torch.cuda.max_memory_allocated(self.device) / 2**20)
            return
        if self._libc is not None:
            self._libc.malloc_trim(0)  # freed heap pages of the other side back to the system first
        try:
            with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
                handle.write("5")  # reset VmHWM to the current RSS
        except OSError:
            pass
        before.append(self._status("VmRSS"))
        yield
        into.append(self._status("VmHWM"))


# --- restorekit's side --------------------------------------------------------------------------------


def restorekit_side(config: str, batch: int | None, crop: int | None, device: torch.device, tmp: Path):
    """A Trainer for the configuration and a function running one of its steps on a given batch."""
    from restorekit.recipe import load_recipe
    from restorekit.recipe.loader import find_recipe, read_recipe_tree
    from restorekit.train.trainer import Trainer

    if config == "esrgan":
        path = find_recipe("esrgan")
    else:
        try:
            path = find_recipe("realesrgan_x4plus")
        except Exception:  # noqa: BLE001 - the recipe of issue 16 part 2 is not there yet
            path = tmp / "realesrgan_x4plus_bench.toml"
            path.write_text(REALESRGAN_RECIPE)
    tree = read_recipe_tree(path)
    overrides = [
        "generator.init=null",
        f'train.device="{device.type}"',
        f'output.dir="{tmp / "run"}"',
        "output.tensorboard=false",
    ]
    for side, terms in tree.get("losses", {}).items():
        for label, term in terms.items():
            if term.get("name") == "perceptual":
                overrides.append(f'losses.{side}.{label}.args.weights="random"')
    if batch is not None:
        overrides.append(f"data.batch_size={batch}")
    if crop is not None:
        overrides.append(f"data.train.crop={crop}")
        if tree.get("discriminator", {}).get("name") == "vgg_discriminator":
            overrides.append(f"discriminator.args.input_size={crop}")
    recipe = load_recipe(path, overrides)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = Trainer(recipe, quiet=True)

    def step(lr: torch.Tensor, hr: torch.Tensor) -> None:
        micro = [(lr.contiguous(memory_format=trainer.memory_format), hr.contiguous(memory_format=trainer.memory_format))]
        logs = trainer.train_step(micro)
        float(logs["g_total"])  # synchronise, as BasicSR's log_dict does

    settings = {"recipe": recipe.name, "batch": recipe.data.batch_size, "crop": int(recipe.data.train["crop"]),
                "channels_last": trainer.memory_format == torch.channels_last}  # fmt: skip
    params = {net.role: sum(p.numel() for p in net.module.parameters()) for net in trainer.networks}
    return step, settings, params


# --- BasicSR's side -----------------------------------------------------------------------------------


def import_basicsr() -> None:
    """Import BasicSR and Real-ESRGAN with the shims they need on current torch/torchvision."""
    import torchvision
    import torchvision.transforms.functional as functional

    # BasicSR 1.4.2 imports a module torchvision removed in 0.17 (for rgb_to_grayscale only).
    shim = types.ModuleType("torchvision.transforms.functional_tensor")
    shim.rgb_to_grayscale = functional.rgb_to_grayscale
    sys.modules.setdefault("torchvision.transforms.functional_tensor", shim)
    try:
        from basicsr.utils import get_root_logger

        import basicsr.archs.vgg_arch as vgg_arch
    except ImportError as exc:
        sys.exit(
            f"BasicSR is not installed ({exc}): pip install --no-deps basicsr realesrgan && "
            "pip install opencv-python-headless lmdb pyyaml tqdm addict"
        )
    get_root_logger(log_level=logging.WARNING)  # not the networks' structure on stdout
    logging.getLogger("basicsr").setLevel(logging.WARNING)

    # Random VGG weights on BasicSR's side too: its VGGFeatureExtractor would download them.
    def random_vgg(name: str) -> Callable[..., Any]:
        return lambda pretrained=False, **kwargs: getattr(torchvision.models, name)(weights=None)

    vgg_arch.vgg = types.SimpleNamespace(vgg19=random_vgg("vgg19"), vgg16=random_vgg("vgg16"))


def basicsr_options(config: str, batch: int, crop: int, device: torch.device) -> dict[str, Any]:
    """BasicSR's option tree for the configuration (its yml files' values)."""
    gan_type, gan_weight = ("vanilla", 5e-3) if config == "esrgan" else ("vanilla", 1e-1)
    if config == "esrgan":
        network_d = {"type": "VGGStyleDiscriminator", "num_in_ch": 3, "num_feat": 64, "input_size": crop}
        pixel = {"type": "L1Loss", "loss_weight": 1e-2, "reduction": "mean"}
        layers = {"conv5_4": 1.0}
    else:
        network_d = {"type": "UNetDiscriminatorSN", "num_in_ch": 3, "num_feat": 64, "skip_connection": True}
        pixel = {"type": "L1Loss", "loss_weight": 1.0, "reduction": "mean"}
        layers = {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1, "conv4_4": 1, "conv5_4": 1}
    adam = {"type": "Adam", "lr": 1e-4, "weight_decay": 0, "betas": [0.9, 0.99]}
    return {
        "name": f"{config}_bench",
        "model_type": "ESRGANModel" if config == "esrgan" else "RealESRGANModel",
        "scale": 4,
        "is_train": True,
        "dist": False,
        "rank": 0,
        "world_size": 1,
        "num_gpu": 1 if device.type == "cuda" else 0,
        "batch_size_per_gpu": batch,
        "gt_size": crop,
        "queue_size": 180,
        "l1_gt_usm": True,
        "percep_gt_usm": True,
        "gan_gt_usm": False,
        "network_g": {"type": "RRDBNet", "num_in_ch": 3, "num_out_ch": 3, "num_feat": 64, "num_block": 23, "num_grow_ch": 32},
        "network_d": network_d,
        "path": {"pretrain_network_g": None, "strict_load_g": True, "resume_state": None},
        "train": {
            "ema_decay": 0.999,
            "optim_g": dict(adam),
            "optim_d": dict(adam),
            "scheduler": {"type": "MultiStepLR", "milestones": [400000], "gamma": 0.5},
            "total_iter": 400000,
            "warmup_iter": -1,
            "pixel_opt": pixel,
            "perceptual_opt": {"type": "PerceptualLoss", "layer_weights": layers, "vgg_type": "vgg19",
                               "use_input_norm": True, "range_norm": False, "perceptual_weight": 1.0,
                               "style_weight": 0, "criterion": "l1"},  # fmt: skip
            "gan_opt": {"type": "GANLoss", "gan_type": gan_type, "real_label_val": 1.0, "fake_label_val": 0.0,
                        "loss_weight": gan_weight},  # fmt: skip
            "net_d_iters": 1,
            "net_d_init_iters": 0,
        },
    }


@contextlib.contextmanager
def _cuda_calls_stay_on_cpu(device: torch.device):
    """RealESRGANModel moves its JPEG and USM helpers to CUDA unconditionally; on CPU keep them there."""
    if device.type == "cuda":
        yield
        return
    original = torch.nn.Module.cuda
    torch.nn.Module.cuda = lambda self, *a, **k: self  # type: ignore[method-assign]
    try:
        yield
    finally:
        torch.nn.Module.cuda = original  # type: ignore[method-assign]


def basicsr_side(config: str, batch: int, crop: int, device: torch.device):
    import_basicsr()
    from basicsr.models.esrgan_model import ESRGANModel

    options = basicsr_options(config, batch, crop, device)
    if config == "esrgan":
        model = ESRGANModel(options)
    else:
        from realesrgan.models.realesrgan_model import RealESRGANModel

        with _cuda_calls_stay_on_cpu(device):
            model = RealESRGANModel(options)
    iteration = [0]

    def step(lr: torch.Tensor, hr: torch.Tensor) -> None:
        iteration[0] += 1
        # What feed_data leaves behind: the batch on the device (and, for Real-ESRGAN, the sharpened GT;
        # the sharpening itself is part of the data pipeline left out of both sides).
        model.lq, model.gt = lr, hr
        if config != "esrgan":
            model.gt_usm = hr
        model.update_learning_rate(iteration[0], warmup_iter=-1)
        model.optimize_parameters(iteration[0])  # ends with log_dict's .item(): synchronised

    params = {"generator": sum(p.numel() for p in model.net_g.parameters()),
              "discriminator": sum(p.numel() for p in model.net_d.parameters())}  # fmt: skip
    return step, params


# --- the comparison ---------------------------------------------------------------------------------


def compare(config: str, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        ours, settings, our_params = restorekit_side(config, args.batch, args.crop, device, Path(tmp))
        batch, crop = settings["batch"], settings["crop"]
        theirs, their_params = basicsr_side(config, batch, crop, device)
        gen = torch.Generator().manual_seed(1)
        hr = torch.rand(batch, 3, crop, crop, generator=gen).to(device)
        lr = torch.nn.functional.avg_pool2d(hr, 4)
        sides = {"restorekit": ours, "basicsr": theirs}
        for name, step in sides.items():
            for _ in range(args.warmup):
                step(lr, hr)
        memory = PeakMemory(device)
        seconds: dict[str, list[float]] = {name: [] for name in sides}
        cpu: dict[str, list[float]] = {name: [] for name in sides}
        peaks: dict[str, list[float]] = {name: [] for name in sides}
        baselines: dict[str, list[float]] = {name: [] for name in sides}
        for index in range(args.steps):
            order = list(sides) if index % 2 == 0 else list(reversed(sides))  # A B, B A, ...
            for name in order:
                with memory.measure(peaks[name], baselines[name]):
                    start, start_cpu = time.perf_counter(), time.process_time()
                    sides[name](lr, hr)
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
                    seconds[name].append(time.perf_counter() - start)
                    cpu[name].append(time.process_time() - start_cpu)
            print(f"  step {index + 1}: restorekit {seconds['restorekit'][-1]:.2f} s ({cpu['restorekit'][-1]:.2f} CPU s), "
                  f"basicsr {seconds['basicsr'][-1]:.2f} s ({cpu['basicsr'][-1]:.2f} CPU s)", flush=True)  # fmt: skip
    ratios = [b / a for a, b in zip(seconds["restorekit"], seconds["basicsr"])]
    cpu_ratios = [b / a for a, b in zip(cpu["restorekit"], cpu["basicsr"])]
    return {
        "config": config,
        **settings,
        "device": str(device),
        "steps": args.steps,
        "restorekit_s_per_step": statistics.median(seconds["restorekit"]),
        "basicsr_s_per_step": statistics.median(seconds["basicsr"]),
        "speedup_median": statistics.median(ratios),  # BasicSR seconds / restorekit seconds
        # CPU seconds of the process: far less sensitive than wall time to other jobs on a shared machine.
        "restorekit_cpu_s_per_step": statistics.median(cpu["restorekit"]),
        "basicsr_cpu_s_per_step": statistics.median(cpu["basicsr"]),
        "cpu_speedup_median": statistics.median(cpu_ratios),
        "restorekit_peak_mib": max(peaks["restorekit"]),
        "basicsr_peak_mib": max(peaks["basicsr"]),
        # What the step itself added on top of what was resident before it (both sides' models included).
        "restorekit_step_mib": max(p - b for p, b in zip(peaks["restorekit"], baselines["restorekit"])),
        "basicsr_step_mib": max(p - b for p, b in zip(peaks["basicsr"], baselines["basicsr"])),
        "peak_kind": "cuda max allocated" if device.type == "cuda" else "process RSS high-water mark during the step",
        "params": {"restorekit": our_params, "basicsr": their_params},
        "seconds": seconds,
        "cpu_seconds": cpu,
        "machine": machine(device),
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=["esrgan", "realesrgan"], nargs="+", default=["esrgan", "realesrgan"])
    parser.add_argument("--batch", type=int, default=None, help="override the recipe's batch size (both sides)")
    parser.add_argument("--crop", type=int, default=None, help="override the recipe's HR crop (both sides)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per side")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    results = []
    for config in args.config:
        print(f"{config}:", flush=True)
        result = compare(config, args, device)
        results.append(result)
        print(
            f"{config} (batch {result['batch']}, crop {result['crop']}, {result['device']}): restorekit "
            f"{result['restorekit_s_per_step']:.2f} s/step, BasicSR {result['basicsr_s_per_step']:.2f} s/step, "
            f"median ratio BasicSR/restorekit {result['speedup_median']:.3f} (CPU time: {result['restorekit_cpu_s_per_step']:.2f} "
            f"vs {result['basicsr_cpu_s_per_step']:.2f} s, ratio {result['cpu_speedup_median']:.3f}); peak "
            f"{result['restorekit_peak_mib']:.0f} vs {result['basicsr_peak_mib']:.0f} MiB ({result['peak_kind']}; "
            f"the step's own: {result['restorekit_step_mib']:.0f} vs {result['basicsr_step_mib']:.0f} MiB)",
            flush=True,
        )
        print(f"  parameters: {result['params']}; {result['machine']}", flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
