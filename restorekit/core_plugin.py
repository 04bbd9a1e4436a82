"""The core's own plugin: pixel, perceptual and adversarial losses, the two tasks, and the metrics.

It is loaded through the ``restorekit`` entry-point group like any third-party plugin. Targets are
lazy ``"module:attr"`` strings, so listing components imports no torch.
"""

from __future__ import annotations

from pathlib import Path

from restorekit.hookspecs import hookimpl

LOSSES = {
    "mse": ("restorekit.losses.pixel:MSELoss", "Mean squared error (L2) pixel loss"),
    "l1": ("restorekit.losses.pixel:L1Loss", "Mean absolute error (L1) pixel loss"),
    "charbonnier": ("restorekit.losses.pixel:CharbonnierLoss", "Charbonnier (smooth L1) pixel loss"),
    "perceptual": (
        "restorekit.losses.perceptual:PerceptualLoss",
        "VGG16/VGG19 feature loss on named layers (conv5_4, relu2_2, ...)",
    ),
    "bce_gan": ("restorekit.losses.adversarial:BCEGANLoss", "Vanilla GAN: binary cross-entropy on logits"),
    "lsgan": ("restorekit.losses.adversarial:LSGANLoss", "Least-squares GAN"),
    "wgan_gp": (
        "restorekit.losses.adversarial:WGANGPLoss",
        "Wasserstein GAN with gradient penalty (critic side carries the penalty)",
    ),
    "ragan": (
        "restorekit.losses.adversarial:RaGANLoss",
        "Relativistic average GAN (ESRGAN), BCE on relative logits",
    ),
    "hinge_gan": ("restorekit.losses.adversarial:HingeGANLoss", "Hinge GAN loss"),
}

TASKS = {
    "super_resolution": (
        "restorekit.tasks.super_resolution:SuperResolution",
        "Single-image super-resolution: HR folders, MATLAB bicubic LR on the fly, Y-channel PSNR/SSIM",
    ),
    "deblurring": (
        "restorekit.tasks.deblurring:Deblurring",
        "Motion deblurring: paired blur/sharp data or synthetic camera shake, RGB PSNR/SSIM",
    ),
}


METRICS = {
    # name: (target, description, facts for tables and protocols)
    "psnr_y": ("restorekit.metrics.builtin:psnr_y", "PSNR (dB) on the BT.601 luma, output rounded to 8 bits",
               {"higher_is_better": True, "colour": "y", "label": "PSNR-Y (dB)"}),
    "ssim_y": ("restorekit.metrics.builtin:ssim_y", "SSIM on the BT.601 luma (11x11 Gaussian, valid region)",
               {"higher_is_better": True, "colour": "y", "label": "SSIM-Y"}),
    "psnr_rgb": ("restorekit.metrics.builtin:psnr_rgb", "PSNR (dB) over R, G and B",
                 {"higher_is_better": True, "colour": "rgb", "label": "PSNR-RGB (dB)"}),
    "ssim_rgb": ("restorekit.metrics.builtin:ssim_rgb", "SSIM, mean of R, G and B",
                 {"higher_is_better": True, "colour": "rgb", "label": "SSIM-RGB"}),
    # The GoPro tables' names (RGB): the deblurring task reports these.
    "psnr": ("restorekit.metrics.builtin:psnr_rgb", "PSNR (dB) over R, G and B (the deblurring tables' PSNR)",
             {"higher_is_better": True, "colour": "rgb", "label": "PSNR (dB)"}),
    "ssim": ("restorekit.metrics.builtin:ssim_rgb", "SSIM, mean of R, G and B (the deblurring tables' SSIM)",
             {"higher_is_better": True, "colour": "rgb", "label": "SSIM"}),
    "lpips": ("restorekit.metrics.builtin:lpips_alex", "LPIPS v0.1, AlexNet (Zhang et al. 2018); needs torchmetrics",
              {"higher_is_better": False, "colour": "rgb", "label": "LPIPS"}),
    "lpips_vgg": ("restorekit.metrics.builtin:lpips_vgg", "LPIPS v0.1, VGG16; needs torchmetrics",
                  {"higher_is_better": False, "colour": "rgb", "label": "LPIPS-VGG"}),
    "dists": ("restorekit.metrics.builtin:dists", "DISTS, VGG16 (Ding et al. 2020); needs torchmetrics",
              {"higher_is_better": False, "colour": "rgb", "label": "DISTS"}),
    "niqe": ("restorekit.metrics.builtin:NIQE", "NIQE (Mittal et al. 2013), no reference, MATLAB-exact",
             {"higher_is_better": False, "needs_reference": False, "colour": "y", "label": "NIQE"}),
}  # fmt: skip


@hookimpl
def register_losses(register):
    for name, (target, description) in LOSSES.items():
        register(name, target, description)


@hookimpl
def register_tasks(register):
    for name, (target, description) in TASKS.items():
        register(name, target, description)


@hookimpl
def register_metrics(register):
    for name, (target, description, facts) in METRICS.items():
        register(name, target, description, **facts)


@hookimpl
def register_recipes(register):
    from importlib import resources

    folder = resources.files("restorekit_recipes")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            path = Path(str(entry))
            register(path.stem, path, _recipe_description(path))


def _recipe_description(path):
    """The recipe's ``description`` field, read without a TOML parse of the whole file."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("description"):
            return line.partition("=")[2].strip().strip('"')
    return ""
