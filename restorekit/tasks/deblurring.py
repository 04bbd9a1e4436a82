"""Motion deblurring: paired blurred/sharp photographs or synthetic camera shake.

Training data comes in any of the layouts DeblurGAN and its successors use:

* **GoPro** (Nah et al. 2017): ``root/SEQUENCE/blur/NAME.png`` with ``root/SEQUENCE/sharp/NAME.png``
  (``blur_gamma`` holds the gamma-corrected variant). ``root`` may also hold ``blur`` and ``sharp``
  directly, as one sequence.
* **Two folders** matched by file name: ``blur=`` and ``sharp=``.
* **Side by side** (pix2pix "AB" images, DeblurGAN's ``aligned`` format): each image of ``root`` is the
  blurred image A on the left and the sharp image B on the right, DeblurGAN's A-to-B direction.
* **Synthetic**: only sharp images; the blurred input is made on the fly with a random camera-shake
  kernel (Boracchi & Foi trajectories, as DeblurGAN) or a real kernel from a file, plus optional
  Gaussian noise.

Crops are aligned: the blurred and sharp patches come from the same place, with the same flips. For
synthetic blur, the worker crops the sharp patch with a margin of ``kernel_size // 2`` real pixels and
draws a kernel from the sample's key; :meth:`Deblurring.make_batch` then blurs the whole batch on the
device with per-sample kernels ('valid' convolution, so there are no padding artefacts at the patch
edges), adds noise and clamps to [0, 1]. Everything random derives from the sample key, so a sample's
blurred input is the same on every run.

Validation uses whole images and reports RGB PSNR/SSIM (output rounded to 8 bits, no border shaved),
the usual GoPro protocol. Synthetic validation blur is seeded per image, so numbers compare across runs.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.nn import functional as F
from torch.utils.data import Dataset

from restorekit.data.augment import pad_to, random_flip_rotate
from restorekit.data.degradations import gaussian_noise
from restorekit.data.folders import DataError, list_images, resolve_data_path
from restorekit.data.images import ImageReadError, load_rgb
from restorekit.data.motion_blur import blur, center_kernel, load_kernels, random_motion_kernel
from restorekit.data.sampling import SampleKey, key_index, sample_generator
from restorekit.metrics import psnr, ssim
from restorekit.tasks.base import EvalSet, Task

LAYOUTS = ("auto", "gopro", "folders", "ab")

__all__ = [
    "CameraShake",
    "DeblurCrops",
    "DeblurImages",
    "Deblurring",
    "ImagePair",
    "find_blur_pairs",
    "find_sharp_images",
]


# --- finding the files ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ImagePair:
    """One training/validation image: a blurred/sharp pair, a side-by-side AB file, or a sharp image.

    Attributes:
        name: unique name (``SEQUENCE_FRAME`` for GoPro), used for validation outputs.
        sharp: the sharp image, or the side-by-side file.
        blur: the blurred image; None for side-by-side files and synthetic blur.
        side_by_side: *sharp* holds blurred (left) and sharp (right) halves.
    """

    name: str
    sharp: Path
    blur: Path | None = None
    side_by_side: bool = False


def _stem_key(path: Path, folder: Path) -> str:
    """The name used to match files across folders: relative path without its suffix."""
    return path.relative_to(folder).with_suffix("").as_posix()


def _by_key(files: list[Path], folder: Path) -> dict[str, Path]:
    table: dict[str, Path] = {}
    for path in files:
        key = _stem_key(path, folder)
        if key in table:
            raise DataError(f"{folder}: {table[key].name} and {path.name} have the same name; keep one of them")
        table[key] = path
    return table


def _shown(names: list[str]) -> str:
    return ", ".join(names[:5]) + (f" (+{len(names) - 5} more)" if len(names) > 5 else "")


def _match_folders(blur_dir: Path, sharp_dir: Path, prefix: str = "") -> list[ImagePair]:
    """Pair the images of two folders by relative path and stem (``a/x.png`` with ``a/x.jpg``)."""
    blurred = _by_key(list_images(blur_dir), blur_dir)
    sharp = _by_key(list_images(sharp_dir), sharp_dir)
    no_sharp = sorted(set(blurred) - set(sharp))
    no_blur = sorted(set(sharp) - set(blurred))
    if no_sharp or no_blur:
        problems = []
        if no_sharp:
            problems.append(f"{len(no_sharp)} blurred image(s) without a sharp one in {sharp_dir}: {_shown(no_sharp)}")
        if no_blur:
            problems.append(f"{len(no_blur)} sharp image(s) without a blurred one in {blur_dir}: {_shown(no_blur)}")
        raise DataError(f"{blur_dir} and {sharp_dir} do not match by file name: " + "; ".join(problems))
    return [
        ImagePair(name=(prefix + key).replace("/", "_"), sharp=sharp[key], blur=blurred[key]) for key in sorted(sharp)
    ]


def _gopro_sequences(root: Path, blur_name: str) -> list[Path] | None:
    """The GoPro sequence folders under *root* (root itself if it holds ``blur``/``sharp``), or None."""
    if (root / "sharp").is_dir() and (root / blur_name).is_dir():
        return [root]
    subdirs = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    sequences = [p for p in subdirs if (p / "sharp").is_dir() or (p / blur_name).is_dir()]
    return sequences or None


def _check_blur_name(gopro_blur: str) -> None:
    if gopro_blur not in ("blur", "blur_gamma"):
        raise DataError(f"gopro_blur must be 'blur' or 'blur_gamma'; got {gopro_blur!r}")


def _resolve_layout(root: Path | None, blur: Path | None, sharp: Path | None, layout: str, gopro_blur: str) -> str:
    if layout not in LAYOUTS:
        raise DataError(f"layout must be one of {', '.join(LAYOUTS)}; got {layout!r}")
    if (blur is None) != (sharp is None) and root is None:
        missing = "sharp" if sharp is None else "blur"
        raise DataError(f"paired data needs both blur and sharp folders; {missing} is missing")
    if root is not None and (blur is not None or sharp is not None):
        raise DataError("give either root (GoPro or side-by-side layout) or blur and sharp folders, not both")
    if root is None and blur is None:
        raise DataError("no data: give root (GoPro or side-by-side layout) or blur and sharp folders")
    if layout != "auto":
        if layout == "folders" and root is not None:
            raise DataError("layout 'folders' takes blur and sharp folders, not root")
        if layout in ("gopro", "ab") and root is None:
            raise DataError(f"layout '{layout}' takes root, not blur and sharp folders")
        return layout
    if root is None:
        return "folders"
    if not root.exists():
        raise DataError(f"{root}: no such folder")
    return "gopro" if _gopro_sequences(root, gopro_blur) else "ab"


def find_blur_pairs(
    *,
    root: str | Path | None = None,
    blur: str | Path | None = None,
    sharp: str | Path | None = None,
    layout: str = "auto",
    gopro_blur: str = "blur",
) -> list[ImagePair]:
    """Find blurred/sharp training or validation pairs in one of the supported layouts.

    Args:
        root: GoPro root (``SEQUENCE/blur``, ``SEQUENCE/sharp``) or a folder of side-by-side AB images.
        blur: folder of blurred images (with *sharp*; matched by relative path and stem).
        sharp: folder of sharp images.
        layout: ``"auto"``, ``"gopro"``, ``"folders"`` or ``"ab"``.
        gopro_blur: GoPro's blurred folder to use, ``"blur"`` or ``"blur_gamma"``.

    Returns:
        The pairs, sorted by name.

    Raises:
        DataError: missing folders, unmatched file names (listed), or no images.
    """
    _check_blur_name(gopro_blur)
    paths = [None if p is None else resolve_data_path(p) for p in (root, blur, sharp)]
    root_path, blur_path, sharp_path = paths
    kind = _resolve_layout(root_path, blur_path, sharp_path, layout, gopro_blur)
    if kind == "folders":
        assert blur_path is not None and sharp_path is not None
        return _match_folders(blur_path, sharp_path)
    assert root_path is not None
    if kind == "ab":
        return [
            ImagePair(name=_stem_key(p, root_path).replace("/", "_"), sharp=p, side_by_side=True)
            for p in list_images(root_path)
        ]
    sequences = _gopro_sequences(root_path, gopro_blur)
    if not sequences:
        raise DataError(f"{root_path}: no GoPro sequences (SEQUENCE/{gopro_blur} and SEQUENCE/sharp folders)")
    incomplete = [s.name for s in sequences if not ((s / "sharp").is_dir() and (s / gopro_blur).is_dir())]
    if incomplete:
        raise DataError(f"{root_path}: sequence(s) without both {gopro_blur}/ and sharp/: {_shown(incomplete)}")
    pairs: list[ImagePair] = []
    for seq in sequences:
        prefix = "" if seq == root_path else f"{seq.name}/"
        pairs += _match_folders(seq / gopro_blur, seq / "sharp", prefix)
    return pairs


def find_sharp_images(
    *, root: str | Path | None = None, sharp: str | Path | None = None, gopro_blur: str = "blur"
) -> list[ImagePair]:
    """Sharp images for synthetic blur: *sharp* (any folder), or the ``sharp`` folders of a GoPro *root*
    (every image below *root* when it is not in the GoPro layout).

    Raises:
        DataError: neither or both given, missing folders, or no images.
    """
    if (root is None) == (sharp is None):
        raise DataError("synthetic blur needs sharp images: give sharp (a folder) or root, not both")
    if sharp is not None:
        folder = resolve_data_path(sharp)
        return [ImagePair(name=_stem_key(p, folder).replace("/", "_"), sharp=p) for p in list_images(folder)]
    assert root is not None
    folder = resolve_data_path(root)
    if not folder.exists():
        raise DataError(f"{folder}: no such folder")
    found = _gopro_sequences(folder, gopro_blur)
    if found is None:
        return [ImagePair(name=_stem_key(p, folder).replace("/", "_"), sharp=p) for p in list_images(folder)]
    sequences = [s for s in found if (s / "sharp").is_dir()]
    if not sequences:
        raise DataError(f"{folder}: GoPro-style sequences without sharp/ folders; synthetic blur needs sharp images")
    pairs = []
    for seq in sequences:
        prefix = "" if seq == folder else f"{seq.name}_"
        pairs += [
            ImagePair(name=prefix + _stem_key(p, seq / "sharp").replace("/", "_"), sharp=p)
            for p in list_images(seq / "sharp")
        ]
    return pairs


# --- the blur model -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CameraShake:
    """Where synthetic blur kernels and noise levels come from.

    Attributes:
        kernel_size: side of every kernel (odd).
        kernels: real kernels, already centred in ``kernel_size``; None for random trajectories.
        noise: ``(low, high)`` Gaussian noise standard deviation on the [0, 1] scale.
    """

    kernel_size: int
    kernels: tuple[Tensor, ...] | None
    noise: tuple[float, float]

    def kernel(self, generator: torch.Generator) -> Tensor:
        """A ``(kernel_size, kernel_size)`` kernel drawn from *generator*."""
        if self.kernels is None:
            return random_motion_kernel(size=self.kernel_size, generator=generator)
        index = int(torch.randint(len(self.kernels), (1,), generator=generator))
        # Real kernels are few: any of their 8 flips/rotations is an equally plausible shake.
        return random_flip_rotate([self.kernels[index]], generator)[0]

    def noise_level(self, generator: torch.Generator) -> tuple[float, int]:
        """A noise standard deviation and the seed of its noise pattern."""
        low, high = self.noise
        sigma = low + (high - low) * float(torch.rand((), generator=generator, dtype=torch.float64))
        seed = int(torch.randint(2**62, (1,), generator=generator))
        return sigma, seed


def _parse_noise(noise: float | Sequence[float]) -> tuple[float, float]:
    if isinstance(noise, (int, float)) and not isinstance(noise, bool):
        low = high = float(noise)
    elif isinstance(noise, Sequence) and not isinstance(noise, str) and len(noise) == 2:
        low, high = float(noise[0]), float(noise[1])
    else:
        raise ValueError(f"noise must be a standard deviation or a [low, high] range; got {noise!r}")
    if not 0.0 <= low <= high:
        raise ValueError(f"noise must satisfy 0 <= low <= high; got {noise!r}")
    if high > 1.0:
        raise ValueError(f"noise is a standard deviation on the [0, 1] scale (25/255 = 0.098); got {noise!r}")
    return low, high


# --- datasets -------------------------------------------------------------------------------------


class _PairLoader:
    """Decode a pair (blurred may be None), splitting side-by-side files; optional 8-bit cache."""

    def __init__(self, pairs: list[ImagePair], *, cache: bool, max_pixels: int | None):
        self.pairs, self.cache, self.max_pixels = pairs, cache, max_pixels
        self._cache: dict[int, tuple[Tensor | None, Tensor]] = {}

    def load(self, index: int) -> tuple[Tensor | None, Tensor]:
        if index in self._cache:
            blurred, sharp = self._cache[index]
            return (None if blurred is None else blurred.float() / 255), sharp.float() / 255
        pair = self.pairs[index]
        image = load_rgb(pair.sharp, max_pixels=self.max_pixels)
        if pair.side_by_side:
            width = image.shape[-1]
            if width % 2:
                raise DataError(f"{pair.sharp}: a side-by-side (blur | sharp) image needs an even width; got {width}")
            blurred, sharp = image[..., : width // 2], image[..., width // 2 :]
        else:
            sharp = image
            blurred = None if pair.blur is None else load_rgb(pair.blur, max_pixels=self.max_pixels)
            if blurred is not None and blurred.shape != sharp.shape:
                raise DataError(
                    f"{pair.blur}: size {blurred.shape[-1]}x{blurred.shape[-2]} differs from the sharp image "
                    f"{pair.sharp} ({sharp.shape[-1]}x{sharp.shape[-2]})"
                )
        if self.cache:
            # 8-bit copies: GoPro-sized datasets would not fit in memory as float32.
            self._cache[index] = (
                None if blurred is None else (blurred * 255).round().to(torch.uint8),
                (sharp * 255).round().to(torch.uint8),
            )
        return blurred, sharp

    def load_or_substitute(self, index: int, skip_bad: bool) -> tuple[int, Tensor | None, Tensor]:
        """Load *index*; with *skip_bad*, an unreadable file is replaced by the next readable pair."""
        count = len(self.pairs)
        for attempt in range(count):
            candidate = (index + attempt) % count
            try:
                blurred, sharp = self.load(candidate)
                return candidate, blurred, sharp
            except ImageReadError as exc:
                if not skip_bad:
                    raise
                warnings.warn(f"skipping unreadable image {exc}", stacklevel=3)
        raise DataError("no readable image left in the dataset")


def _crop_with_margin(image: Tensor, top: int, left: int, size: int, margin: int) -> Tensor:
    """``image[:, top - margin : top + size + margin, ...]``, reflecting where it leaves the image."""
    _, h, w = image.shape
    t0, l0 = top - margin, left - margin
    t1, l1 = top + size + margin, left + size + margin
    region = image[:, max(t0, 0) : min(t1, h), max(l0, 0) : min(l1, w)]
    pads = (max(0, -l0), max(0, l1 - w), max(0, -t0), max(0, t1 - h))
    if any(pads):
        rh, rw = region.shape[-2:]
        mode = "reflect" if max(pads[:2]) < rw and max(pads[2:]) < rh else "replicate"
        region = F.pad(region[None], pads, mode=mode)[0]
    return region


class DeblurCrops(Dataset):
    """Training crops: real blurred/sharp pairs, synthetic blur of sharp images, or a mix.

    Items (CPU float tensors in [0, 1]):

    * ``target``: the sharp crop ``(3, crop, crop)``;
    * ``input``: the aligned blurred crop (paired data);
    * for synthetic blur: ``context`` (the sharp crop with a ``kernel_size // 2`` margin), ``kernel``
      ``(K, K)``, ``noise_sigma`` and ``noise_seed``; when mixing with real pairs also ``synthetic``
      (bool), which says whether :meth:`Deblurring.make_batch` should replace ``input``.

    Args:
        pairs: the images (``blur`` None for synthetic-only data).
        crop: crop side.
        flip: random horizontal flip (DeblurGAN's augmentation).
        rotate: also random vertical flips and transposition (all 8 flips/rotations).
        shake: the synthetic blur model, or None for paired data without synthetic blur.
        synthetic_prob: fraction of paired samples that get synthetic blur instead (1 for sharp-only).
        cache: keep decoded images in memory as 8-bit.
        skip_bad: replace unreadable images by the next pair, with a warning.
        max_pixels: Pillow decompression-bomb limit for these files.
    """

    def __init__(
        self,
        pairs: list[ImagePair],
        *,
        crop: int,
        flip: bool = True,
        rotate: bool = False,
        shake: CameraShake | None = None,
        synthetic_prob: float = 0.0,
        cache: bool = False,
        skip_bad: bool = False,
        max_pixels: int | None = None,
    ):
        if not pairs:
            raise DataError("no training images")
        self.pairs = pairs
        self.crop, self.flip, self.rotate = crop, flip, rotate
        self.paired = pairs[0].blur is not None or pairs[0].side_by_side
        if not self.paired and shake is None:
            raise ValueError("sharp-only data needs a blur model (shake)")
        self.shake = shake
        self.synthetic_prob = 1.0 if not self.paired else synthetic_prob
        self.skip_bad = skip_bad
        self.loader = _PairLoader(pairs, cache=cache, max_pixels=max_pixels)

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def paths(self) -> list[Path]:
        """The sharp (or side-by-side) file of each item."""
        return [p.sharp for p in self.pairs]

    def __getitem__(self, key: SampleKey | int) -> dict[str, Tensor]:
        _, blurred, sharp = self.loader.load_or_substitute(key_index(key) % len(self), self.skip_bad)
        generator = sample_generator(key)
        synthetic = self.synthetic_prob > 0
        size = self.crop
        sharp = pad_to(sharp, size, size)
        if blurred is not None:
            blurred = pad_to(blurred, size, size)
        _, h, w = sharp.shape
        top = int(torch.randint(0, h - size + 1, (1,), generator=generator))
        left = int(torch.randint(0, w - size + 1, (1,), generator=generator))
        views = [sharp[:, top : top + size, left : left + size]]
        if blurred is not None:
            views.append(blurred[:, top : top + size, left : left + size])
        if synthetic:
            assert self.shake is not None
            views.append(_crop_with_margin(sharp, top, left, size, self.shake.kernel_size // 2))
        # The same flips for all views; the margin is symmetric, so the context stays centred on the target.
        views = random_flip_rotate(views, generator, hflip=self.flip, vflip=self.rotate, rot90=self.rotate)
        item = {"target": views[0]}
        if blurred is not None:
            item["input"] = views[1]
        if synthetic:
            assert self.shake is not None
            item["context"] = views[-1]
            if self.paired:
                item["synthetic"] = torch.rand((), generator=generator) < self.synthetic_prob
            item["kernel"] = self.shake.kernel(generator)
            sigma, seed = self.shake.noise_level(generator)
            item["noise_sigma"] = torch.tensor(sigma, dtype=torch.float32)
            item["noise_seed"] = torch.tensor(seed, dtype=torch.int64)
        return item


class DeblurImages(Dataset):
    """Whole validation images: ``{"input", "target", "name"}``.

    With a blur model, the input is the sharp image blurred (and noised) on the CPU with a kernel seeded
    by ``(seed, index)``, so every run validates on the same inputs.

    Args:
        pairs: the images.
        shake: the synthetic blur model for sharp-only data, else None.
        seed: seed of the synthetic blur.
        max_pixels: Pillow decompression-bomb limit.
    """

    def __init__(
        self, pairs: list[ImagePair], *, shake: CameraShake | None = None, seed: int = 0, max_pixels: int | None = None
    ):
        if not pairs:
            raise DataError("no validation images")
        self.pairs, self.shake, self.seed = pairs, shake, seed
        self.loader = _PairLoader(pairs, cache=False, max_pixels=max_pixels)

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def paths(self) -> list[Path]:
        return [p.sharp for p in self.pairs]

    def __getitem__(self, index: int) -> dict[str, Tensor | str]:
        index = key_index(index)
        blurred, sharp = self.loader.load(index)
        if blurred is None:
            if self.shake is None:
                raise DataError(f"{self.pairs[index].sharp}: no blurred image and no synthetic blur")
            blurred = _synthetic_blur(sharp, self.shake, sample_generator(SampleKey(self.seed, 0, index)))
        return {"input": blurred, "target": sharp, "name": self.pairs[index].name}


def _synthetic_blur(sharp: Tensor, shake: CameraShake, generator: torch.Generator) -> Tensor:
    """Blur one whole image (reflect padding) and add seeded noise, on the CPU."""
    kernel = shake.kernel(generator)
    sigma, seed = shake.noise_level(generator)
    out = blur(sharp, kernel)
    if sigma > 0:
        out = gaussian_noise(out, sigma, generator=torch.Generator().manual_seed(seed))
    return out.clamp(0.0, 1.0)


# --- the task -------------------------------------------------------------------------------------


class Deblurring(Task):
    """Blind motion deblurring (DeblurGAN and the like).

    The constructor describes the synthetic degradation; the data tables (:meth:`train_data`,
    :meth:`val_data`) say where the images are.

    Args:
        kernels: real blur kernels for synthetic blur: a ``.mat`` file (Levin et al. format), an image, or a
            folder of them (see :func:`~restorekit.data.motion_blur.load_kernels`). None (default): random
            camera-shake trajectories (Boracchi & Foi, as DeblurGAN).
        kernel_size: side of the synthetic kernels (odd). Random trajectories are at most
            ``kernel_size - 1`` pixels long; real kernels are zero-padded to it, and it grows to fit the
            largest real kernel.
        noise: Gaussian noise standard deviation added to synthetic blur, on the [0, 1] scale: one value,
            or ``[low, high]`` for a per-sample uniform draw. Real blurred images are used as they are.
        synthetic_prob: with paired data, the fraction of samples whose blurred input is replaced by
            synthetic blur of the sharp crop (DeblurGAN's mix of GoPro and synthetic blur). Sharp-only
            data (``synthetic = true``) is always blurred synthetically.

    Raises:
        ValueError: an argument is out of range.
        restorekit.data.folders.DataError: the kernel file cannot be read.

    Example:
        >>> task = Deblurring(kernel_size=15, noise=[0.0, 0.01])
        >>> batch = {"target": torch.rand(2, 3, 32, 32), "context": torch.rand(2, 3, 46, 46),
        ...          "kernel": torch.full((2, 15, 15), 1 / 225), "noise_sigma": torch.zeros(2),
        ...          "noise_seed": torch.zeros(2, dtype=torch.int64)}
        >>> blurred, sharp = task.make_batch(batch, torch.device("cpu"))
        >>> tuple(blurred.shape)
        (2, 3, 32, 32)
    """

    name = "deblurring"
    scale = 1
    primary_metric = "psnr"
    metric_names = ("psnr", "ssim")
    baselines = ("identity", "none")

    def __init__(
        self,
        *,
        kernels: str | None = None,
        kernel_size: int = 31,
        noise: float | list[float] = 0.0,
        synthetic_prob: float = 0.0,
    ):
        if not isinstance(kernel_size, int) or isinstance(kernel_size, bool) or kernel_size < 3 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be an odd integer of at least 3; got {kernel_size!r}")
        if not 0.0 <= synthetic_prob <= 1.0:
            raise ValueError(f"synthetic_prob must be in [0, 1]; got {synthetic_prob!r}")
        self.noise = _parse_noise(noise)
        self.synthetic_prob = float(synthetic_prob)
        self.kernels_path = kernels
        real: tuple[Tensor, ...] | None = None
        size = kernel_size
        if kernels is not None:
            loaded = load_kernels(kernels)
            largest = max(max(k.shape) for k in loaded)
            size = max(kernel_size, largest + (1 - largest % 2))
            real = tuple(center_kernel(k, size) for k in loaded)
        self.kernel_size = size
        self.shake = CameraShake(kernel_size=size, kernels=real, noise=self.noise)

    # -- data ---------------------------------------------------------------------------------------

    def train_data(
        self,
        *,
        root: str | None = None,
        blur: str | None = None,
        sharp: str | None = None,
        layout: str = "auto",
        gopro_blur: str = "blur",
        synthetic: bool = False,
        crop: int = 256,
        flip: bool = True,
        rotate: bool = False,
        cache: bool = False,
        skip_bad: bool = False,
        max_pixels: int | None = None,
    ) -> DeblurCrops:
        """Random aligned crops of blurred/sharp pairs, or of sharp images blurred synthetically.

        Args:
            root: a GoPro root (``SEQUENCE/blur`` + ``SEQUENCE/sharp``, or ``blur``/``sharp`` directly)
                or a folder of side-by-side images (blurred A left, sharp B right); with *synthetic*, any
                folder of sharp images (a GoPro root contributes its ``sharp`` frames).
            blur: folder of blurred images, matched to *sharp* by file name.
            sharp: folder of sharp images (the only folder needed with *synthetic*).
            layout: ``"auto"`` (detect), ``"gopro"``, ``"folders"`` or ``"ab"``.
            gopro_blur: ``"blur"`` or ``"blur_gamma"``: which GoPro blurred frames to use.
            synthetic: blur the sharp images synthetically instead of reading blurred ones.
            crop: crop side (DeblurGAN: 256).
            flip: random horizontal flips (DeblurGAN's augmentation).
            rotate: also vertical flips and 90° rotations (the 8 dihedral views).
            cache: keep decoded images in memory as 8-bit (2 x 2.7 MB per GoPro pair).
            skip_bad: replace unreadable images by the next one, with a warning, instead of stopping.
            max_pixels: raise Pillow's decompression-bomb limit.

        Raises:
            DataError: missing folders, unmatched names, no images, or contradictory settings.
        """
        if not isinstance(crop, int) or crop < 1:
            raise DataError(f"data.train.crop must be a positive integer; got {crop!r}")
        pairs = self._find(root=root, blur=blur, sharp=sharp, layout=layout, gopro_blur=gopro_blur, synthetic=synthetic)
        use_shake = synthetic or self.synthetic_prob > 0
        return DeblurCrops(
            pairs, crop=crop, flip=flip, rotate=rotate, shake=self.shake if use_shake else None,
            synthetic_prob=self.synthetic_prob, cache=cache, skip_bad=skip_bad, max_pixels=max_pixels,
        )  # fmt: skip

    def val_data(
        self,
        *,
        root: str | None = None,
        blur: str | None = None,
        sharp: str | None = None,
        layout: str = "auto",
        gopro_blur: str = "blur",
        synthetic: bool = False,
        limit: int | None = None,
        seed: int = 0,
        max_pixels: int | None = None,
    ) -> EvalSet:
        """Whole validation images, in the same layouts as :meth:`train_data`, made as :meth:`benchmark` does.

        Args:
            root: GoPro root, side-by-side folder, or (with *synthetic*) a folder of sharp images.
            blur: folder of blurred images, matched to *sharp* by file name.
            sharp: folder of sharp images.
            layout: ``"auto"``, ``"gopro"``, ``"folders"`` or ``"ab"``.
            gopro_blur: ``"blur"`` or ``"blur_gamma"``.
            synthetic: blur the sharp images synthetically, seeded per image.
            limit: use only the first N images (sorted by name).
            seed: seed of the synthetic blur; keep it fixed to compare runs.
            max_pixels: raise Pillow's decompression-bomb limit.

        Raises:
            DataError: as :meth:`train_data`.
        """
        return self._eval_set(
            root=root, blur=blur, sharp=sharp, layout=layout, gopro_blur=gopro_blur, synthetic=synthetic,
            include=None, limit=limit, seed=seed, max_pixels=max_pixels,
        )  # fmt: skip

    def benchmark(
        self,
        data: str | Path,
        *,
        inputs: str | Path | None = None,
        include: Sequence[str] | None = None,
        limit: int | None = None,
        max_pixels: int | None = None,
        layout: str | None = None,
        gopro_blur: str = "blur",
        synthetic: bool = False,
        seed: int = 0,
    ) -> EvalSet:
        """The GoPro protocol's images: blurred input and sharp reference, same size.

        Args:
            data: a GoPro root (``SEQUENCE/blur`` + ``SEQUENCE/sharp``), or the sharp folder when *inputs*
                is given; with *synthetic*, any folder of sharp images.
            inputs: folder of blurred images matched to *data* by file name.
            include: only these image names (or file names, or stems).
            limit: only the first N images (sorted by name).
            max_pixels: raise Pillow's decompression-bomb limit.
            layout: ``"gopro"`` (default without *inputs*), ``"ab"`` (side by side), ``"auto"``, or
                ``"folders"`` (default with *inputs*).
            gopro_blur: ``"blur"`` or ``"blur_gamma"``.
            synthetic: blur the sharp images with camera shake seeded per image.
            seed: seed of the synthetic blur.

        Raises:
            DataError: missing folders, unmatched names, pairs of different sizes, odd side-by-side widths.

        Example:
            >>> images = Deblurring().benchmark("gopro-avg8")  # doctest: +SKIP
            >>> images.settings["protocol"]  # doctest: +SKIP
            'RGB PSNR/SSIM, output rounded to 8 bits, no border shaved'
        """
        if inputs is not None:
            where = {"blur": str(inputs), "sharp": str(data), "layout": layout or "folders"}
        elif synthetic:
            where = {"root": str(data), "layout": "auto"}
        else:
            where = {"root": str(data), "layout": layout or "gopro"}
        return self._eval_set(
            **where, gopro_blur=gopro_blur, synthetic=synthetic, include=include, limit=limit, seed=seed,
            max_pixels=max_pixels,
        )  # fmt: skip

    def _eval_set(
        self,
        *,
        root: str | None = None,
        blur: str | None = None,
        sharp: str | None = None,
        layout: str,
        gopro_blur: str,
        synthetic: bool,
        include: Sequence[str] | None,
        limit: int | None,
        seed: int,
        max_pixels: int | None,
    ) -> EvalSet:
        pairs = self._find(root=root, blur=blur, sharp=sharp, layout=layout, gopro_blur=gopro_blur, synthetic=synthetic)
        if include:
            pairs = [p for p in pairs if p.name in include or p.sharp.name in include or p.sharp.stem in include]
            if not pairs:
                raise DataError(f"{root or sharp}: none of {', '.join(include)} found")
        if limit is not None:
            if limit < 1:
                raise DataError(f"data.val.limit must be positive; got {limit}")
            pairs = pairs[:limit]
        images = DeblurImages(pairs, shake=self.shake if synthetic else None, seed=seed, max_pixels=max_pixels)
        settings = {
            "protocol": "RGB PSNR/SSIM, output rounded to 8 bits, no border shaved",
            "border": 0,
            "blur_dir": None if blur is None else str(resolve_data_path(blur)),
        }
        if synthetic:
            settings["synthetic"] = {"seed": seed, "kernel_size": self.kernel_size, "noise": list(self.noise)}

        def load(index: int) -> tuple[Tensor, Tensor]:
            item = images[index]
            return item["input"], item["target"]

        folder = resolve_data_path(root if root is not None else sharp)  # type: ignore[arg-type]
        return EvalSet(folder, [p.name for p in pairs], images.paths, load, settings)

    def baseline(self, name: str, model_input: Tensor) -> Tensor:
        """``identity`` (or ``none``): the blurred input itself, the floor a deblurring model must beat."""
        if name not in self.baselines:
            raise ValueError(f"deblurring has no baseline {name!r}; use 'identity'")
        return model_input

    @staticmethod
    def _find(
        *, root: str | None, blur: str | None, sharp: str | None, layout: str, gopro_blur: str, synthetic: bool
    ) -> list[ImagePair]:
        if synthetic:
            if blur is not None:
                raise DataError("synthetic blur reads only sharp images; remove blur (or set synthetic = false)")
            _check_blur_name(gopro_blur)
            return find_sharp_images(root=root, sharp=sharp, gopro_blur=gopro_blur)
        return find_blur_pairs(root=root, blur=blur, sharp=sharp, layout=layout, gopro_blur=gopro_blur)

    # -- batches and metrics ------------------------------------------------------------------------

    def make_batch(
        self, batch: dict[str, Tensor], device: torch.device, *, training: bool = True
    ) -> tuple[Tensor, Tensor]:
        """``(blurred, sharp)`` on *device*; synthetic blur and noise run here, batched.

        Args:
            batch: a collated batch of :class:`DeblurCrops` or :class:`DeblurImages` items.
            device: where the model runs.
            training: unused (validation items arrive already blurred); kept for the trainer's call.
        """
        sharp = batch["target"].to(device, non_blocking=True)
        if "kernel" not in batch:
            return batch["input"].to(device, non_blocking=True), sharp
        context = batch["context"].to(device, non_blocking=True)
        kernel = batch["kernel"].to(device, non_blocking=True)
        if "synthetic" in batch:
            blurred = batch["input"].to(device, non_blocking=True).clone()
            chosen = batch["synthetic"].to(torch.bool).flatten().nonzero().flatten().tolist()
        else:
            blurred = torch.empty_like(sharp)
            chosen = list(range(sharp.shape[0]))
        if chosen:
            index = torch.tensor(chosen, device=device)
            synthetic = blur(context.index_select(0, index), kernel.index_select(0, index), padding="valid")
            sigmas = batch["noise_sigma"].flatten().tolist()
            seeds = batch["noise_seed"].flatten().tolist()
            for row, i in enumerate(chosen):
                if sigmas[i] > 0:
                    # A generator per sample: the noise pattern belongs to the sample, not to the batch.
                    generator = torch.Generator(device=device).manual_seed(int(seeds[i]))
                    synthetic[row] = gaussian_noise(synthetic[row], sigmas[i], generator=generator)
            blurred.index_copy_(0, index, synthetic.clamp(0.0, 1.0).to(blurred.dtype))
        return blurred, sharp

    def metrics(self, output: Tensor, target: Tensor) -> dict[str, float]:
        """RGB PSNR and SSIM, output rounded to 8 bits, no border shaved (the GoPro protocol)."""
        return {
            "psnr": float(psnr(output, target, channel="rgb").mean()),
            "ssim": float(ssim(output, target, channel="rgb").mean()),
        }

    def baseline_metrics(self, model_input: Tensor, target: Tensor) -> dict[str, float]:
        """Metrics of the blurred input itself: the floor a deblurring model must beat."""
        return self.metrics(model_input.clamp(0.0, 1.0), target)

    def preview(self, model_input: Tensor, output: Tensor, target: Tensor) -> Tensor:
        """Blurred | output | sharp, one ``(3, H, 3W)`` image (first of the batch)."""
        parts = []
        for image in (model_input, output, target):
            image = image[0] if image.dim() == 4 else image
            image = image.detach().float().clamp(0, 1).cpu()
            parts.append(image.expand(3, -1, -1) if image.shape[0] == 1 else image)
        return torch.cat(parts, dim=-1)
