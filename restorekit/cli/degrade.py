"""``restore degrade``: what a recipe's training degradations make of one image, written for a person to look at.

The examples come from the recipe's own task (:meth:`~restorekit.tasks.super_resolution.SuperResolution.make_batch`
with ``training=True``), so they are exactly what the trainer feeds the generator: the bicubic LR
degraded further by first-order steps, or the LR synthesised from the HR by Real-ESRGAN's second-order
model (``realesrgan_*`` recipes), rounded to 8 bits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from restorekit.cli.common import EXIT_USAGE, console, fail, handle_errors
from restorekit.cli.options import MAX_PIXELS_OPTION
from restorekit.cli.recipes import SET_HELP


def register(app: typer.Typer) -> None:
    """Add ``restore degrade`` to *app*."""
    app.command("degrade")(degrade)


# Examples are made a few at a time: a batch of full-size photographs through the second-order model
# holds several copies of each image.
_CHUNK = 4


def _grid(images: list, columns: int):
    """The images side by side, *columns* per row, on a white sheet with 4-pixel gaps."""
    import torch

    height = max(image.shape[-2] for image in images)
    width = max(image.shape[-1] for image in images)
    rows = -(-len(images) // columns)
    gap = 4
    sheet = torch.ones(3, rows * height + (rows - 1) * gap, columns * width + (columns - 1) * gap)
    for index, image in enumerate(images):
        top, left = (index // columns) * (height + gap), (index % columns) * (width + gap)
        sheet[:, top : top + image.shape[-2], left : left + image.shape[-1]] = image
    return sheet


@handle_errors
def degrade(
    image: Path = typer.Argument(..., metavar="IMAGE", help="A clean, high-resolution image.", show_default=False),
    recipe: str = typer.Option(
        ..., "--recipe", "-r", help="Recipe file or registered recipe name whose degradations to apply.", show_default=False
    ),
    out: Optional[Path] = typer.Option(  # noqa: UP007 - typer needs Optional on 3.11
        None, "--out", "-o", help="Folder to write. Default: IMAGE-STEM_RECIPE-NAME in the current folder.", show_default=False
    ),
    count: int = typer.Option(8, "--count", "-n", min=1, max=256, help="How many degraded examples."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random draws; the same seed gives the same examples."),
    crop: Optional[int] = typer.Option(  # noqa: UP007
        None, "--crop", min=1, help="Degrade a centred CROP x CROP square (HR pixels) instead of the whole image.",
        show_default=False,
    ),
    set_: list[str] = typer.Option([], "--set", "-s", help=SET_HELP),
    device: str = typer.Option("cpu", "--device", help="Where to run the degradations: cpu, cuda, cuda:1, ..."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace files already in the folder."),
    max_pixels: Optional[int] = MAX_PIXELS_OPTION,  # noqa: UP007
) -> None:
    """Write examples of the low-resolution inputs a recipe's training makes from IMAGE.

    The folder gets lr_00.png, lr_01.png, ... (each 1/scale of IMAGE, exactly what the generator is fed in training), bicubic.png (the clean MATLAB-bicubic LR, for comparison), target.png (the training target: the sharpened HR when the recipe sets sharpen_target) and sheet.png (bicubic, then every example).

    Examples:

      restore degrade photo.png --recipe realesrnet_x4plus -n 8

      restore degrade photo.png --recipe recipes/realesrgan_x2plus.toml -o look/ --seed 3 --crop 256

      restore degrade photo.png -r realesrnet_x4plus --set task.args.degradations=[] -n 1
    """
    import torch

    from restorekit.data.degradations import DegradationPipeline
    from restorekit.data.images import load_rgb, save_rgb
    from restorekit.recipe import load_recipe
    from restorekit.recipe.components import build_task, generator_descriptor

    # generator.init names weights this command never loads (often a stage not trained yet).
    resolved = load_recipe(recipe, [*set_, "generator.init=null"], check_data=False)
    task = build_task(resolved, generator_descriptor(resolved))
    pipeline = getattr(task, "degradations", None)
    if not isinstance(pipeline, DegradationPipeline):
        fail(
            f"{recipe}: task '{resolved.task.name}' has no degradation pipeline (task.args.degradations); "
            "restore degrade shows super-resolution degradations",
            EXIT_USAGE,
        )
    try:
        target_device = torch.device(device)
    except RuntimeError:
        fail(f"--device {device}: not a device (cpu, cuda, cuda:1, ...)", EXIT_USAGE)
    if target_device.type == "cuda" and not torch.cuda.is_available():
        fail(f"--device {device}: no CUDA device is available", EXIT_USAGE)

    scale = task.scale or 1
    hr = load_rgb(image, max_pixels=max_pixels)
    if crop is not None:
        if crop % scale:
            fail(f"--crop {crop}: not a multiple of the recipe's scale x{scale}", EXIT_USAGE)
        if crop > min(hr.shape[-2:]):
            fail(f"--crop {crop}: larger than {image} ({hr.shape[-1]}x{hr.shape[-2]})", EXIT_USAGE)
        top, left = (hr.shape[-2] - crop) // 2, (hr.shape[-1] - crop) // 2
        hr = hr[:, top : top + crop, left : left + crop]
    height, width = hr.shape[-2] // scale * scale, hr.shape[-1] // scale * scale
    if height < scale or width < scale:
        fail(f"{image}: {hr.shape[-1]}x{hr.shape[-2]} is smaller than the scale x{scale}")
    hr = hr[:, :height, :width].contiguous()

    folder = out if out is not None else Path(f"{image.stem}_{resolved.name}")
    names = [f"lr_{i:02d}.png" for i in range(count)] + ["bicubic.png", "target.png", "sheet.png"]
    existing = [name for name in names if (folder / name).exists()]
    if existing and not overwrite:
        fail(f"{folder / existing[0]}: exists ({len(existing)} of the files to write); add --overwrite to replace them")
    folder.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(seed)
    if target_device.type == "cuda":
        torch.cuda.manual_seed_all(seed)
    examples = []
    target = None
    with torch.no_grad():
        for start in range(0, count, _CHUNK):
            batch = hr[None].expand(min(_CHUNK, count - start), -1, -1, -1).contiguous()
            lr, target = task.make_batch({"target": batch}, target_device, training=True)
            examples.extend(lr.float().cpu().unbind(0))
        bicubic = task.downscale(hr[None])[0] if hasattr(task, "downscale") else examples[0]
    for index, example in enumerate(examples):
        save_rgb(example, folder / f"lr_{index:02d}.png")
    save_rgb(bicubic, folder / "bicubic.png")
    assert target is not None
    save_rgb(target[0].float().cpu(), folder / "target.png")
    save_rgb(_grid([bicubic, *examples], columns=min(4, count + 1)), folder / "sheet.png")
    console.print(f"{resolved.name}: {pipeline.describe()}", soft_wrap=True, highlight=False, markup=False)
    console.print(
        f"wrote {count} example(s) ({examples[0].shape[-1]}x{examples[0].shape[-2]}, from {width}x{height}), "
        f"bicubic.png, target.png and sheet.png to {folder}",
        soft_wrap=True,
        highlight=False,
        markup=False,
    )
