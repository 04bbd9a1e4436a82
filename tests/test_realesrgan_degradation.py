"""Real-ESRGAN's second-order degradation model: kernels, noise, JPEG, resizes, the pipeline, the task, resume.

Closed forms are written out again here with NumPy/SciPy (not the module's code); statistics of what the
model makes are measured on flat or real images and must fall in the configured ranges.
"""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage, special
from scipy.fft import dctn

from restorekit.data import degradations as degradations_module
from restorekit.data.degradations import DegradationPipeline
from restorekit.data.folders import DataError
from restorekit.data.realesrgan_degradation import (
    BlurKernels,
    filter2d,
    filter2d_ragged,
    gaussian_kernels,
    gaussian_noise_map,
    generalized_gaussian_kernels,
    jpeg_quality_tables,
    jpeg_torch,
    plateau_kernels,
    poisson_noise,
    sinc_kernels,
    usm_sharpen,
)
from restorekit.recipe import load_recipe
from restorekit.tasks.super_resolution import SuperResolution
from restorekit.train import checkpoint as ckpt
from restorekit.train.trainer import train
from restorekit.weights import read_weights

RECIPE_DIR = Path(__file__).resolve().parents[1] / "recipes"
OFFICIAL_KINDS = {
    "iso": 0.45, "aniso": 0.25, "generalized_iso": 0.12, "generalized_aniso": 0.03, "plateau_iso": 0.12,
    "plateau_aniso": 0.03,
}  # fmt: skip


def _official_steps() -> list[dict]:
    """The shipped realesrnet_x4plus degradations (the official options), as the task receives them."""
    return load_recipe("realesrnet_x4plus", ["generator.init=null"]).task.args["degradations"]


def _image(shared_data: Path, name: str = "butterfly", size: int = 64) -> np.ndarray:
    return np.array(Image.open(shared_data / f"sr-bench/Set5/HR/{name}.png").convert("RGB"))[:size, :size]


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).float().div(255)


# --- kernels: closed forms ----------------------------------------------------------------------------


def _quadratic(size: int, sx: float, sy: float, theta: float) -> np.ndarray:
    axis = np.arange(-(size // 2), size // 2 + 1, dtype=np.float64)
    xx, yy = np.meshgrid(axis, axis)
    rotation = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    sigma = rotation @ np.diag([sx**2, sy**2]) @ rotation.T
    grid = np.stack([xx, yy], axis=-1)
    return np.einsum("...i,ij,...j->...", grid, np.linalg.inv(sigma), grid)


def _sinc(size: int, cutoff: float) -> np.ndarray:
    axis = np.arange(-(size // 2), size // 2 + 1, dtype=np.float64)
    xx, yy = np.meshgrid(axis, axis)
    r = np.hypot(xx, yy)
    with np.errstate(divide="ignore", invalid="ignore"):
        kernel = cutoff * special.j1(cutoff * r) / (2 * np.pi * r)
    kernel[size // 2, size // 2] = cutoff**2 / (4 * np.pi)
    return kernel / kernel.sum()


@pytest.mark.parametrize(("sx", "sy", "theta"), [(1.3, 1.3, 0.0), (2.5, 0.6, 0.7), (0.4, 3.0, -2.9)])
def test_gaussian_family_kernels_match_their_closed_forms(sx, sy, theta):
    q = _quadratic(15, sx, sy, theta)
    expected = {
        "gaussian": np.exp(-0.5 * q),
        "generalized": np.exp(-0.5 * q**1.7),
        "plateau": 1 / (1 + q**1.4),
    }
    made = {
        "gaussian": gaussian_kernels(15, sx, sy, theta, dtype=torch.float64),
        "generalized": generalized_gaussian_kernels(15, sx, sy, theta, 1.7, dtype=torch.float64),
        "plateau": plateau_kernels(15, sx, sy, theta, 1.4, dtype=torch.float64),
    }
    for name, kernel in made.items():
        assert kernel.shape == (1, 15, 15)
        assert float(kernel.sum()) == pytest.approx(1.0, abs=1e-12), name
        np.testing.assert_allclose(kernel[0].numpy(), expected[name] / expected[name].sum(), rtol=0, atol=1e-12)


def test_generalized_gaussian_with_beta_one_is_the_gaussian_and_iso_ignores_theta():
    sigma = torch.tensor([0.8, 2.0])
    torch.testing.assert_close(
        generalized_gaussian_kernels(11, sigma, sigma, torch.tensor([0.3, 1.1]), 1.0), gaussian_kernels(11, sigma)
    )


@pytest.mark.parametrize(("size", "cutoff"), [(7, math.pi / 3), (13, 1.9), (21, math.pi / 5), (21, math.pi)])
def test_sinc_kernels_match_the_bessel_closed_form(size, cutoff):
    kernel = sinc_kernels(size, cutoff, dtype=torch.float64)[0]
    assert float(kernel.sum()) == pytest.approx(1.0, abs=1e-12)
    # torch.special.bessel_j1 is off SciPy's by up to 5e-7 for arguments between 5 and 8.
    np.testing.assert_allclose(kernel.numpy(), _sinc(size, cutoff), rtol=0, atol=1e-7)
    if cutoff < math.pi:  # a low-pass with ringing: negative side lobes
        assert float(kernel.min()) < 0


def test_kernel_functions_reject_bad_arguments():
    with pytest.raises(ValueError, match="odd"):
        gaussian_kernels(8, 1.0)
    with pytest.raises(ValueError, match="positive"):
        gaussian_kernels(7, 0.0)
    with pytest.raises(ValueError, match="beta"):
        plateau_kernels(7, 1.0, 1.0, 0.0, -1.0)
    with pytest.raises(ValueError, match="has 2 values, the other parameters 3"):
        gaussian_kernels(7, torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match=r"\(0, pi\]"):
        sinc_kernels(7, 4.0)


# --- kernels: the random bank ------------------------------------------------------------------------------


def test_kernel_bank_sums_to_one_is_odd_sized_and_draws_the_families_with_their_probabilities():
    torch.manual_seed(0)
    bank = BlurKernels(kinds=tuple(OFFICIAL_KINDS.items()), sizes=(7, 21), sigma=(0.2, 3.0), sinc_prob=0.1)
    kernels = bank.sample(3000, torch.device("cpu"), dtype=torch.float64)
    assert kernels.shape == (3000, 21, 21)
    torch.testing.assert_close(kernels.sum(dim=(1, 2)), torch.ones(3000, dtype=torch.float64))
    # Support: an odd square centred in 21x21 (Gaussian tails underflow to 0 for tiny sigmas, so look at
    # the largest support among kernels whose sigma is large enough to reach their border: all shapes).
    rows = (kernels.abs().sum(dim=2) > 0).sum(dim=1)
    assert int(rows.max()) == 21 and all(int(r) % 2 == 1 for r in rows)
    # Only sinc kernels have negative lobes; Gaussian, generalized and plateau ones are positive.
    sinc_share = float((kernels.flatten(1).min(dim=1).values < 0).double().mean())
    assert sinc_share == pytest.approx(0.1, abs=0.02)


def test_kernel_bank_with_fixed_parameters_gives_the_closed_form_kernel():
    iso = BlurKernels(kinds=(("iso", 1.0),), sizes=(9, 9), sigma=(1.5, 1.5)).sample(3, torch.device("cpu"))
    torch.testing.assert_close(iso, gaussian_kernels(9, 1.5).expand(3, -1, -1))
    sinc = BlurKernels(kinds=(), sizes=(7, 7), sinc_prob=1.0, sinc_cutoff=(1.2, 1.2)).sample(2, torch.device("cpu"))
    torch.testing.assert_close(sinc, sinc_kernels(7, 1.2).expand(2, -1, -1))
    # Drawn sides: each kernel is the closed form on its own odd square, zero-padded to the largest.
    torch.manual_seed(12)
    mixed = BlurKernels(kinds=(("iso", 1.0),), sizes=(7, 21), sigma=(2.0, 2.0)).sample(64, torch.device("cpu"))
    sides = set()
    for kernel in mixed:
        radius = int((kernel.abs().sum(dim=1) > 0).sum()) // 2
        sides.add(2 * radius + 1)
        centre = kernel[10 - radius : 11 + radius, 10 - radius : 11 + radius]
        torch.testing.assert_close(centre, gaussian_kernels(2 * radius + 1, 2.0)[0])
        assert float(kernel.sum()) == pytest.approx(1.0, abs=1e-6)
    assert sides <= set(range(7, 22, 2)) and len(sides) >= 6


def test_filter2d_is_a_per_image_reflect_padded_correlation_and_ragged_batches_agree():
    gen = torch.Generator().manual_seed(4)
    x = torch.rand(3, 3, 20, 24, generator=gen, dtype=torch.float64)
    kernels = torch.rand(3, 5, 5, generator=gen, dtype=torch.float64)
    out = filter2d(x, kernels)
    for i in range(3):
        padded = torch.nn.functional.pad(x[i : i + 1], (2, 2, 2, 2), mode="reflect")
        expected = torch.nn.functional.conv2d(padded, kernels[i].expand(3, 1, 5, 5), groups=3)
        torch.testing.assert_close(out[i : i + 1], expected)
    images = [torch.rand(3, h, w, generator=gen, dtype=torch.float64) for h, w in ((9, 12), (16, 10), (7, 7))]
    ragged = filter2d_ragged(images, kernels)
    for image, kernel, result in zip(images, kernels, ragged):
        torch.testing.assert_close(result, filter2d(image[None], kernel[None])[0])


# --- noise -----------------------------------------------------------------------------------------------


def test_gaussian_noise_step_sigma_in_levels_on_a_flat_image_falls_in_its_range():
    torch.manual_seed(1)
    x = torch.full((48, 3, 48, 48), 0.5)
    out = DegradationPipeline([{"type": "noise", "sigma_levels": [5, 10], "gray_prob": 0.5}])(x)
    noise = out - x
    measured = noise.flatten(1).std(dim=1) * 255
    assert float(measured.min()) > 5 * 0.95 and float(measured.max()) < 10 * 1.05
    assert float(measured.max() - measured.min()) > 2.5  # drawn per image, not once per batch
    gray = (noise[:, 0] == noise[:, 1]).flatten(1).all(dim=1) & (noise[:, 1] == noise[:, 2]).flatten(1).all(dim=1)
    assert 12 <= int(gray.sum()) <= 36  # gray_prob 0.5 of 48 images


def test_poisson_noise_follows_the_photon_count_model():
    torch.manual_seed(2)
    # 160 distinct 8-bit levels in [0.2, 0.83]: Real-ESRGAN's photon scale is 2^ceil(log2(160)) = 256.
    levels = (51 + torch.arange(96 * 96) % 160).float().view(1, 1, 96, 96) / 255
    x = levels.expand(32, 3, 96, 96).contiguous()
    scale = torch.linspace(0.5, 1.0, 32)
    noise = poisson_noise(x, scale, torch.zeros(32, dtype=torch.bool))
    normalised = noise / torch.sqrt(x / 256)
    measured = normalised.flatten(1).std(dim=1)
    torch.testing.assert_close(measured, scale, rtol=0.06, atol=0)
    assert abs(float(noise.mean())) < 0.002
    gray = poisson_noise(x, torch.ones(32), torch.ones(32, dtype=torch.bool))
    assert torch.equal(gray[:, 0], gray[:, 2])


def test_noise_step_mixes_gaussian_and_poisson_and_clips():
    torch.manual_seed(3)
    x = torch.full((64, 3, 16, 16), 0.02)
    out = DegradationPipeline([{"type": "noise", "sigma_levels": [20, 20], "poisson_scale": [0.05, 0.05], "gaussian_prob": 0.5}])(x)
    assert float(out.min()) >= 0.0  # clipped, as a sensor saturates
    # Gaussian noise of 20 levels is large next to 0.05-scaled shot noise: the two kinds separate.
    strong = ((out - x).flatten(1).std(dim=1) * 255 > 5).sum()
    assert 16 <= int(strong) <= 48


def test_gaussian_noise_map_gray_shares_one_field():
    noise = gaussian_noise_map(torch.zeros(2, 3, 8, 8), torch.tensor([0.1, 0.1]), torch.tensor([True, False]))
    assert torch.equal(noise[0, 0], noise[0, 2]) and not torch.equal(noise[1, 0], noise[1, 2])


# --- JPEG -------------------------------------------------------------------------------------------------

_LUMA_BASE = np.array(
    [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29,
     51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92, 49, 64, 78, 87, 103, 121,
     120, 101, 72, 92, 95, 98, 112, 100, 103, 99]
).reshape(8, 8)  # fmt: skip


def _pillow_jpeg(array: np.ndarray, quality: int) -> tuple[np.ndarray, dict]:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    decoded = Image.open(buffer)
    return np.array(decoded.convert("RGB")), decoded.quantization


def estimate_jpeg_quality(rgb: np.ndarray) -> int:
    """The quality whose luminance table best explains the image's 8x8 DCT coefficients.

    A decoded JPEG's luma coefficients sit on multiples of the quantisation steps; the residual to the
    nearest multiple, over the coefficients that are not rounded to zero, is smallest for the table used.
    """
    y = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114]) - 128
    h, w = y.shape[0] // 8 * 8, y.shape[1] // 8 * 8
    blocks = y[:h, :w].reshape(h // 8, 8, w // 8, 8).transpose(0, 2, 1, 3)
    coefficients = dctn(blocks, axes=(2, 3), norm="ortho")
    scores = []
    for quality in range(1, 101):
        factor = 5000 // quality if quality < 50 else 200 - 2 * quality
        table = np.clip((_LUMA_BASE * factor + 50) // 100, 1, 255)
        ratio = coefficients / table
        significant = np.abs(ratio) >= 0.5
        residual = np.abs(ratio - np.round(ratio))
        scores.append(residual[significant].mean() if significant.sum() > 20 else 1.0)
    return int(np.argmin(scores)) + 1


def test_quantisation_tables_are_libjpegs_for_every_quality():
    tiny = np.zeros((8, 8, 3), dtype=np.uint8)
    qualities = torch.arange(1, 101)
    luma, chroma = jpeg_quality_tables(qualities)
    for quality in range(1, 101):
        _, tables = _pillow_jpeg(tiny, quality)
        assert luma[quality - 1].flatten().int().tolist() == list(tables[0]), quality
        assert chroma[quality - 1].flatten().int().tolist() == list(tables[1]), quality


@pytest.mark.parametrize("size", [(96, 96), (45, 70)])
def test_torch_jpeg_agrees_with_libjpeg_on_a_real_image(shared_data, size):
    array = np.array(Image.open(shared_data / "sr-bench/Set5/HR/butterfly.png").convert("RGB"))[: size[0], : size[1]]
    x = _tensor(array)[None]
    for quality in (30, 60, 90):
        reference, _ = _pillow_jpeg(array, quality)
        ours = np.round(jpeg_torch(x, quality)[0].permute(1, 2, 0).numpy() * 255)
        difference = np.abs(ours - reference)
        # Float versus integer DCT: a fraction of a level on average, far below the compression error.
        assert difference.mean() < 0.6, quality
        error_ours = np.abs(ours - array).mean()
        error_libjpeg = np.abs(reference.astype(np.float64) - array).mean()
        assert error_ours == pytest.approx(error_libjpeg, rel=0.02), quality


def test_quality_estimate_recovers_the_quality_of_torch_and_libjpeg_files(shared_data):
    array = _image(shared_data, "bird")
    for quality in (30, 45, 70, 85):
        reference, _ = _pillow_jpeg(array, quality)
        ours = jpeg_torch(_tensor(array)[None], quality)[0].permute(1, 2, 0).numpy() * 255
        assert abs(estimate_jpeg_quality(reference) - quality) <= 1
        assert abs(estimate_jpeg_quality(ours) - quality) <= 1


def test_jpeg_step_draws_qualities_per_image_in_its_range(shared_data):
    torch.manual_seed(5)
    x = _tensor(_image(shared_data, "butterfly"))[None].expand(10, -1, -1, -1).contiguous()
    out = DegradationPipeline([{"type": "jpeg", "quality": [35, 80], "codec": "torch"}])(x)
    estimates = [estimate_jpeg_quality(np.round(image.permute(1, 2, 0).numpy() * 255)) for image in out]
    assert all(34 <= q <= 81 for q in estimates), estimates
    assert len(set(estimates)) >= 4, estimates


def test_torch_jpeg_grayscale_and_bad_input():
    gray = torch.rand(2, 1, 19, 21)
    assert jpeg_torch(gray, torch.tensor([20, 90])).shape == gray.shape
    with pytest.raises(ValueError, match="1..100"):
        jpeg_torch(gray, 0)
    with pytest.raises(ValueError, match="1 or 3"):
        jpeg_torch(torch.rand(1, 4, 8, 8), 50)


# --- USM --------------------------------------------------------------------------------------------------


def test_usm_sharpen_matches_an_independent_unsharp_mask(shared_data):
    x = _tensor(_image(shared_data, "bird", 80)).double()
    taps = np.exp(-(np.arange(51) - 25.0) ** 2 / (2 * 8.0**2))
    taps /= taps.sum()

    def blur(image: np.ndarray) -> np.ndarray:  # OpenCV's default border (reflect-101) is scipy's "mirror"
        return ndimage.convolve1d(ndimage.convolve1d(image, taps, axis=-2, mode="mirror"), taps, axis=-1, mode="mirror")

    image = x.numpy()
    residual = image - blur(image)
    soft = blur((np.abs(residual) * 255 > 10).astype(np.float64))
    expected = soft * np.clip(image + 0.5 * residual, 0, 1) + (1 - soft) * image
    np.testing.assert_allclose(usm_sharpen(x[None])[0].numpy(), expected, rtol=0, atol=1e-9)
    flat = torch.full((1, 3, 32, 32), 0.4)
    torch.testing.assert_close(usm_sharpen(flat), flat)


# --- resizes and the pipeline ---------------------------------------------------------------------------


def test_resize_steps_draw_up_down_keep_per_image(monkeypatch):
    seen: list[tuple[tuple[int, int], tuple[int, int], str]] = []
    real = degradations_module.resize

    def recording(x, size, mode):
        seen.extend([(tuple(x.shape[-2:]), tuple(size), mode)] * x.shape[0])
        return real(x, size, mode)

    monkeypatch.setattr(degradations_module, "resize", recording)
    torch.manual_seed(6)
    pipeline = DegradationPipeline(
        [
            {"type": "resize", "scale": [0.15, 1.5], "up_down_keep": [0.2, 0.7, 0.1]},
            {"type": "resize", "size": "output", "modes": ["area"]},
        ]
    )
    out = pipeline(torch.rand(400, 1, 40, 40), output_size=(7, 7))
    assert out.shape == (400, 1, 7, 7)
    first, second = seen[:400], seen[400:]  # each step resizes all 400 images before the next runs
    assert all(source == (40, 40) for source, _, _ in first)
    factors = [target[0] / 40 for _, target, _ in first]
    assert all(0.15 - 1e-9 <= f <= 1.5 for f in factors)
    assert sum(f > 1 for f in factors) == pytest.approx(80, abs=25)  # up 0.2
    assert sum(f < 1 for f in factors) == pytest.approx(280, abs=30)  # down 0.7
    assert sum(f == 1 for f in factors) == pytest.approx(40, abs=20)  # keep 0.1
    assert {mode for _, _, mode in first} == {"area", "bilinear", "bicubic"}
    assert all(target == (7, 7) and mode == "area" for _, target, mode in second)


def test_resize_relative_to_the_output_size_and_fixed_chain_equals_interpolate():
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    pipeline = DegradationPipeline(
        [
            {"type": "resize", "scale": 0.5, "relative_to": "output", "modes": ["bilinear"]},
            {"type": "resize", "size": "output", "modes": ["bicubic"]},
        ]
    )
    out = pipeline(x, output_size=(16, 16))
    mid = torch.nn.functional.interpolate(x, size=(8, 8), mode="bilinear", align_corners=False)
    expected = torch.nn.functional.interpolate(mid, size=(16, 16), mode="bicubic", align_corners=False).clamp(0, 1)
    torch.testing.assert_close(out, expected)


def test_the_official_model_runs_on_16_crops_of_256_and_is_reproducible():
    pipeline = DegradationPipeline(_official_steps())
    assert pipeline.resizes_to_output and len(pipeline) == 8
    x = torch.rand(16, 3, 256, 256, generator=torch.Generator().manual_seed(8))
    x = torch.nn.functional.avg_pool2d(x, 5, 1, 2)  # smoother than white noise, as photographs are
    torch.manual_seed(9)
    out = pipeline(x, output_size=(64, 64))
    assert out.shape == (16, 3, 64, 64) and out.dtype == x.dtype
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    assert len({round(float(v), 6) for v in out.flatten(1).std(dim=1)}) == 16  # each image its own degradation
    # The same generator state gives the same degradations (checked on a smaller batch, for time).
    again = [pipeline(x[:4, :, :96, :96], output_size=(24, 24), generator=torch.Generator().manual_seed(3)) for _ in range(2)]
    torch.testing.assert_close(again[0], again[1], rtol=0, atol=0)


def test_shuffle_draws_the_order_per_image():
    torch.manual_seed(10)
    # On a flat image the order shows: noise added after a 2x2 area downscale keeps its sigma, noise
    # added before is averaged down to sigma / 2.
    x = torch.full((64, 1, 32, 32), 0.5)
    steps = [{"type": "shuffle", "blocks": [[{"type": "resize", "size": "output", "modes": ["area"]}],
                                            [{"type": "noise", "sigma": 0.04}]]}]  # fmt: skip
    pipeline = DegradationPipeline(steps)
    assert pipeline.describe() == "shuffle(resize(to output, area) | noise(sigma=0.04, p=1))"
    out = pipeline(x, output_size=(16, 16))
    assert out.shape == (64, 1, 16, 16)
    std = (out - 0.5).flatten(1).std(dim=1)
    after = std > 0.03
    assert bool(((std > 0.034) | ((std > 0.016) & (std < 0.024))).all())  # one order or the other
    assert 18 <= int(after.sum()) <= 46


@pytest.mark.parametrize(
    ("steps", "match"),
    [
        ([{"type": "blur", "kernels": {"isotropic": 1.0}, "sigma": [0.2, 3]}], r"unknown kernel 'isotropic'; did you mean 'iso'\?"),
        ([{"type": "blur", "kernels": {"iso": 0.5, "aniso": 0.4}, "sigma": [0.2, 3]}], r"sum to 1, got 0.9"),
        ([{"type": "blur", "kernels": {"iso": 1.0}}], r"step 0 \(blur\): missing key 'sigma'"),
        ([{"type": "blur", "sigma": 1.0, "betag": [0.5, 4]}], r"'betag' belongs to random kernels"),
        ([{"type": "blur", "sinc_prob": 0.5}], r"missing key 'kernels'"),
        ([{"type": "blur", "kernels": {"iso": 1.0}, "sigma": [0.2, 3], "kernel_size": [8, 21]}], r"odd \[low, high\]"),
        ([{"type": "resize", "scale": [0.5, 2]}], r"must end with a resize to the output size"),
        ([{"type": "resize", "size": "output"}, {"type": "resize", "size": "output"}], r"step 1 \(resize\): comes after"),
        ([{"type": "resize", "scale": [0.5, 0.9], "up_down_keep": [0.2, 0.7, 0.1]}, {"type": "resize", "size": "output"}],
         r"needs a 'scale' range around 1"),
        ([{"type": "resize", "scale": [0.5, 2], "relative_to": "output"}], r"resize to the output size"),
        ([{"type": "resize", "size": "input"}], r"key 'size' must be one of 'output'"),
        ([{"type": "resize", "size": "output", "modes": ["nearest"]}], r"key 'modes'"),
        ([{"type": "noise", "sigma": 0.1, "sigma_levels": [1, 30]}], r"not both"),
        ([{"type": "noise", "sigma_levels": [1, 300]}], r"key 'sigma_levels' must satisfy"),
        ([{"type": "noise", "sigma": 0.1, "gaussian_prob": 0.5}], r"'gaussian_prob' chooses"),
        ([{"type": "jpeg", "quality": 50, "codec": "turbo"}], r"key 'codec' must be one of"),
        ([{"type": "shuffle", "blocks": [[{"type": "jpeg", "quality": 50}]]}], r"two or more non-empty lists"),
        ([{"type": "shuffle", "blocks": [[{"type": "jpg", "quality": 50}], [{"type": "noise", "sigma": 0.1}]]}],
         r"step 0, block 0, step 0: unknown type 'jpg'; did you mean 'jpeg'\?"),
        ([{"type": "shuffle", "blocks": [[{"type": "resize", "scale": 0.5}], [{"type": "resize", "size": "output"}]]}],
         r"only one block may resize"),
    ],
)
def test_bad_second_order_configs_name_the_step_and_key(steps, match):
    with pytest.raises(ValueError, match=match):
        DegradationPipeline(steps)


def test_pipeline_that_resizes_needs_the_output_size():
    with pytest.raises(ValueError, match="pass output_size"):
        DegradationPipeline([{"type": "resize", "size": "output"}])(torch.rand(1, 3, 8, 8))


# --- the super-resolution task ----------------------------------------------------------------------------


def test_task_makes_the_lr_from_the_sharpened_hr_with_the_second_order_model(shared_data):
    task = SuperResolution(scale=4, degradations=_official_steps(), sharpen_target=True)
    hr = _tensor(_image(shared_data, "bird", 64))[None].expand(3, -1, -1, -1).contiguous()
    torch.manual_seed(11)
    lr, target = task.make_batch({"target": hr}, torch.device("cpu"))
    assert lr.shape == (3, 3, 16, 16) and target.shape == hr.shape
    torch.testing.assert_close(target, usm_sharpen(hr))
    assert torch.equal(lr, torch.round(lr * 255) / 255)  # 8-bit, as an LR file
    assert not torch.equal(lr, task.downscale(target))
    # Validation batches are never degraded or sharpened.
    plain_lr, plain_hr = task.make_batch({"target": hr}, torch.device("cpu"), training=False)
    assert torch.equal(plain_hr, hr) and torch.equal(plain_lr, task.downscale(hr))
    with pytest.raises(DataError, match="data.train.lr"):
        task.train_data(hr=str(shared_data / "sr-bench/Set5/HR"), lr=str(shared_data / "sr-bench/Set5/LR_bicubic"), crop=64)
    with pytest.raises(ValueError, match="sharpen_target"):
        SuperResolution(scale=4, sharpen_target="yes")


# --- exact resume with the degradation on -----------------------------------------------------------------


def _toml(value) -> str:
    """A Python value as an inline TOML value (for --set)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)


def test_resume_with_the_second_order_degradation_is_exact(tiny_recipe, tmp_path):
    args = {"scale": 2, "sharpen_target": True, "degradations": _official_steps()}
    settings = [f"task.args={_toml(args)}"]
    straight = train(load_recipe(tiny_recipe(out=tmp_path / "a"), settings), quiet=True)
    train(load_recipe(tiny_recipe(out=tmp_path / "b"), settings + ["train.steps=4"]), quiet=True)
    resumed = train(load_recipe(tiny_recipe(out=tmp_path / "b"), settings), resume=True, quiet=True)
    a, _ = read_weights(straight.weights)
    b, _ = read_weights(resumed.weights)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    payload = ckpt.load_checkpoint(tmp_path / "b" / "checkpoints" / "step_00000006.ckpt")
    assert payload["step"] == 6
    # The degradation really was on, and drawn from the batches' sample seeds.
    recipe = load_recipe(tiny_recipe(out=tmp_path / "c"), settings)
    task = SuperResolution(**recipe.task.args)
    assert task.degradations.resizes_to_output and task.sharpen_target
    assert "sample_seed" in task.train_data(**recipe.data.train)[0]


# --- restore degrade ----------------------------------------------------------------------------------------


def _restore(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "restorekit.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_restore_degrade_writes_what_training_makes(shared_data, tmp_path):
    image = shared_data / "sr-bench/Set5/HR/baby.png"
    out = _restore("degrade", str(image), "--recipe", "realesrnet_x4plus", "-n", "3", "-o", "a", "--crop", "96",
                   "--seed", "4", cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "resize(to output" in out.stdout and "wrote 3 example(s) (24x24, from 96x96)" in out.stdout
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == ["bicubic.png", "lr_00.png", "lr_01.png", "lr_02.png", "sheet.png", "target.png"]
    examples = [np.array(Image.open(tmp_path / "a" / f"lr_0{i}.png")) for i in range(3)]
    assert not np.array_equal(examples[0], examples[1])
    # Exactly what the recipe's task makes in training from the same crop and seed.
    recipe = load_recipe("realesrnet_x4plus", ["generator.init=null"], check_components=False)
    task = SuperResolution(scale=4, **recipe.task.args)
    hr = _tensor(np.array(Image.open(image).convert("RGB")))
    top, left = (hr.shape[-2] - 96) // 2, (hr.shape[-1] - 96) // 2
    hr = hr[:, top : top + 96, left : left + 96]
    torch.manual_seed(4)
    lr, target = task.make_batch({"target": hr[None].expand(3, -1, -1, -1).contiguous()}, torch.device("cpu"))
    for i in range(3):
        assert np.array_equal(examples[i], np.round(lr[i].permute(1, 2, 0).numpy() * 255).astype(np.uint8)), i
    written = np.array(Image.open(tmp_path / "a" / "target.png"))
    assert np.abs(written.astype(int) - np.round(target[0].permute(1, 2, 0).numpy() * 255)).max() <= 1


def test_restore_degrade_bad_input_is_one_line(tmp_path, shared_data):
    image = str(shared_data / "sr-bench/Set5/HR/baby.png")
    bad = _restore("degrade", image, "-r", "realesrnet_x4plus", "--set", "task.args.degradations.1.scale=[0.1, 99]",
                   cwd=tmp_path)  # fmt: skip
    assert bad.returncode != 0 and "step 1 (resize): key 'scale'" in bad.stderr and "Traceback" not in bad.stderr
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "lr_00.png").write_bytes(b"kept")
    kept = _restore("degrade", image, "-r", "realesrnet_x4plus", "-n", "1", "-o", "out", cwd=tmp_path)
    assert kept.returncode == 1 and "--overwrite" in kept.stderr and "Traceback" not in kept.stderr
    assert (tmp_path / "out" / "lr_00.png").read_bytes() == b"kept"
