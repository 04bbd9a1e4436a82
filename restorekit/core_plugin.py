"""The core's own plugin: pixel, perceptual and adversarial losses, and the two tasks.

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


@hookimpl
def register_losses(register):
    for name, (target, description) in LOSSES.items():
        register(name, target, description)


@hookimpl
def register_tasks(register):
    for name, (target, description) in TASKS.items():
        register(name, target, description)


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
