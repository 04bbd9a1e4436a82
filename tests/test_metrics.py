"""PSNR/SSIM under the published protocol: bicubic baselines of Set5/Set14/BSD100 and unit properties."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.metrics import structural_similarity

from restorekit.data.resize import imresize
from restorekit.metrics import psnr, quantize, rgb_to_y, ssim


def _load_rgb(path: Path) -> torch.Tensor:
    """An image file as float64 RGB in [0, 1] (grayscale files replicated to three channels)."""
    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1).double() / 255


def _bicubic_x4_pairs(root: Path) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(bicubic upscale of the x4 LR file, HR cropped to a multiple of 4) for every image of a benchmark."""
    pairs = []
    for hr_path in sorted((root / "HR").glob("*.png")):
        hr = _load_rgb(hr_path)
        height, width = hr.shape[-2:]
        hr = hr[:, : height - height % 4, : width - width % 4]
        lr = _load_rgb(root / "LR_bicubic/X4" / f"{hr_path.stem}x4.png")
        pairs.append((imresize(lr, 4), hr))
    return pairs


def _mean_scores(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[float, float, int]:
    """Mean Y PSNR/SSIM (border 4), scoring same-sized images in batches of up to 8."""
    groups: dict[tuple[int, ...], list[tuple[torch.Tensor, torch.Tensor]]] = defaultdict(list)
    for sr, hr in pairs:
        groups[tuple(hr.shape)].append((sr, hr))
    batches = [group[i : i + 8] for group in groups.values() for i in range(0, len(group), 8)]
    psnrs, ssims = [], []
    for group in batches:
        sr = torch.stack([sr for sr, _ in group])
        hr = torch.stack([hr for _, hr in group])
        psnrs.append(psnr(sr, hr, border=4))
        ssims.append(ssim(sr, hr, border=4))
    psnr_all, ssim_all = torch.cat(psnrs), torch.cat(ssims)
    return float(psnr_all.mean()), float(ssim_all.mean()), psnr_all.numel()


# --- published bicubic x4 baselines (Y channel, 4 border pixels shaved) -------------------------------------


def test_bicubic_x4_set5_matches_published(shared_data):
    mean_psnr, mean_ssim, count = _mean_scores(_bicubic_x4_pairs(shared_data / "sr-bench/Set5"))
    assert count == 5
    # Measured: 28.4305 dB / 0.81126.
    assert mean_psnr == pytest.approx(28.42, abs=0.02)
    assert mean_ssim == pytest.approx(0.810, abs=0.002)


def test_bicubic_x4_set5_uint8_path_matches_published(shared_data):
    # MATLAB's own route: imresize on the uint8 LR gives a uint8 SR image. Measured: 28.4290 dB / 0.81114.
    root = shared_data / "sr-bench/Set5"
    pairs = []
    for hr_path in sorted((root / "HR").glob("*.png")):
        hr = _load_rgb(hr_path)
        hr = hr[:, : hr.shape[1] - hr.shape[1] % 4, : hr.shape[2] - hr.shape[2] % 4]
        lr = (_load_rgb(root / "LR_bicubic/X4" / f"{hr_path.stem}x4.png") * 255).round().to(torch.uint8)
        pairs.append((imresize(lr, 4).double() / 255, hr))
    mean_psnr, mean_ssim, _ = _mean_scores(pairs)
    assert mean_psnr == pytest.approx(28.42, abs=0.02)
    assert mean_ssim == pytest.approx(0.810, abs=0.002)


def test_bicubic_x4_set14_matches_published_range(shared_data):
    mean_psnr, mean_ssim, count = _mean_scores(_bicubic_x4_pairs(shared_data / "sr-bench/Set14"))
    assert count == 14
    # Measured: 26.0899 dB / 0.70491 with the grayscale image replicated to RGB.
    assert 26.00 <= mean_psnr <= 26.10
    assert mean_ssim == pytest.approx(0.703, abs=0.002)


def test_bicubic_x4_bsd100_matches_published(shared_data):
    mean_psnr, mean_ssim, count = _mean_scores(_bicubic_x4_pairs(shared_data / "sr-bench/BSD100"))
    assert count == 100
    # Measured: 25.9630 dB / 0.66818.
    assert mean_psnr == pytest.approx(25.96, abs=0.02)
    assert mean_ssim == pytest.approx(0.668, abs=0.002)


# --- colour conversion and quantisation --------------------------------------------------------------------


def test_rgb_to_y_studio_swing():
    black, white = torch.zeros(3, 2, 2), torch.ones(3, 2, 2)
    assert rgb_to_y(black).shape == (1, 2, 2)
    torch.testing.assert_close(rgb_to_y(black), torch.full((1, 2, 2), 16.0))
    torch.testing.assert_close(rgb_to_y(white), torch.full((1, 2, 2), 235.0))
    pure_red = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)
    assert float(rgb_to_y(pure_red)) == pytest.approx(16 + 65.481)
    # A grayscale image gives the same Y as its RGB replication.
    gray = torch.rand(2, 1, 5, 4, dtype=torch.float64)
    torch.testing.assert_close(rgb_to_y(gray), rgb_to_y(gray.expand(2, 3, 5, 4)))


def test_quantize_rounds_half_up_and_clamps():
    x = torch.tensor([-0.2, 0.5 / 255, 1.49 / 255, 254.5 / 255, 1.3], dtype=torch.float64)
    expected = torch.tensor([0.0, 1.0, 1.0, 255.0, 255.0], dtype=torch.float64) / 255
    torch.testing.assert_close(quantize(x), expected, rtol=0, atol=1e-15)
    assert quantize(x.float()).dtype == torch.float32


# --- PSNR -------------------------------------------------------------------------------------------------


def test_psnr_of_known_mse():
    levels = torch.randint(10, 240, (2, 3, 16, 16), generator=torch.Generator().manual_seed(0)).double()
    sign = torch.where(torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)) < 0.5, -1.0, 1.0)
    target = levels / 255
    output = (levels + 3 * sign) / 255
    values = psnr(output, target, channel="rgb")
    assert values.shape == (2,) and values.dtype == torch.float64
    torch.testing.assert_close(values, torch.full((2,), 20 * math.log10(255 / 3), dtype=torch.float64))
    # On a grayscale image Y differences are 219/255 of the grey-level differences.
    gray_out, gray_target = output[:, :1], target[:, :1]
    expected_y = 20 * math.log10(255 / (3 * 219 / 255))
    torch.testing.assert_close(psnr(gray_out, gray_target), torch.full((2,), expected_y, dtype=torch.float64))


def test_psnr_identical_is_inf_and_single_image_is_0dim():
    x = torch.rand(3, 12, 12)
    value = psnr(x, x)
    assert value.dim() == 0 and math.isinf(float(value))


def test_psnr_quantizes_output_unless_told_not_to():
    target = torch.full((1, 3, 8, 8), 100 / 255, dtype=torch.float64)
    output = target + 0.3 / 255
    assert math.isinf(float(psnr(output, target, channel="rgb")[0]))
    assert float(psnr(output, target, channel="rgb", quantize_output=False)[0]) == pytest.approx(
        20 * math.log10(255 / 0.3)
    )


def test_batch_equals_single_images():
    g = torch.Generator().manual_seed(3)
    target = torch.rand(3, 3, 24, 20, generator=g)
    output = (target + 0.05 * torch.randn(3, 3, 24, 20, generator=g)).clamp(0, 1)
    for metric in (psnr, ssim):
        batched = metric(output, target, border=2)
        singles = torch.stack([metric(output[i], target[i], border=2) for i in range(3)])
        torch.testing.assert_close(batched, singles, rtol=0, atol=1e-12)


# --- SSIM -------------------------------------------------------------------------------------------------


def test_ssim_identical_is_one():
    x = torch.rand(2, 3, 20, 20)
    torch.testing.assert_close(ssim(x, x), torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(ssim(x, x, channel="rgb"), torch.ones(2, dtype=torch.float64))


def test_ssim_is_symmetric():
    g = torch.Generator().manual_seed(4)
    a, b = torch.rand(2, 3, 32, 32, generator=g), torch.rand(2, 3, 32, 32, generator=g)
    torch.testing.assert_close(ssim(a, b), ssim(b, a), rtol=0, atol=1e-14)
    torch.testing.assert_close(ssim(a, b, channel="rgb"), ssim(b, a, channel="rgb"), rtol=0, atol=1e-14)


def test_ssim_decreases_with_noise():
    g = torch.Generator().manual_seed(5)
    # A smooth image, so the structure term has something to lose.
    ramp = torch.linspace(0, 1, 48, dtype=torch.float64)
    yy, xx = ramp[:, None].expand(48, 48), ramp[None, :].expand(48, 48)
    clean = torch.stack([yy * xx, xx, 1 - yy])
    noise = torch.randn(3, 48, 48, generator=g, dtype=torch.float64)
    levels = (0.0, 0.02, 0.05, 0.1, 0.2)
    scores = [float(ssim((clean + level * noise).clamp(0, 1), clean)) for level in levels]
    assert scores[0] == pytest.approx(1.0)
    assert all(later < earlier for earlier, later in zip(scores, scores[1:]))


def test_border_shaving_ignores_corrupted_frame():
    g = torch.Generator().manual_seed(6)
    target = torch.rand(3, 30, 30, generator=g)
    output = target.clone()
    output[:, :3, :] = 0
    output[:, :, -3:] = 1
    assert float(psnr(output, target)) < 20
    assert float(ssim(output, target)) < 0.99
    assert math.isinf(float(psnr(output, target, border=3)))
    assert float(ssim(output, target, border=3)) == pytest.approx(1.0)
    assert float(ssim(output, target, border=2)) < 1.0


def test_ssim_agrees_with_skimage_on_y():
    g = torch.Generator().manual_seed(7)
    target = torch.rand(3, 40, 50, generator=g, dtype=torch.float64)
    output = (target + 0.08 * torch.randn(3, 40, 50, generator=g, dtype=torch.float64)).clamp(0, 1)
    y_out = rgb_to_y(quantize(output))[0].numpy()
    y_target = rgb_to_y(quantize(target))[0].numpy()
    # With a Gaussian of sigma 1.5 skimage uses an 11x11 window (truncate 3.5) and averages the SSIM map after
    # cropping 5 pixels per side: exactly the 'valid' region of the published protocol.
    expected = structural_similarity(
        y_out, y_target, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
    )
    assert float(ssim(output, target)) == pytest.approx(expected, abs=1e-10)
    expected_shaved = structural_similarity(
        y_out[4:-4, 4:-4],
        y_target[4:-4, 4:-4],
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255,
    )
    assert float(ssim(output, target, border=4)) == pytest.approx(expected_shaved, abs=1e-10)


def test_ssim_rgb_agrees_with_skimage_channel_mean():
    g = torch.Generator().manual_seed(8)
    target = torch.rand(3, 36, 33, generator=g, dtype=torch.float64)
    output = (target + 0.1 * torch.randn(3, 36, 33, generator=g, dtype=torch.float64)).clamp(0, 1)
    expected = structural_similarity(
        (quantize(output) * 255).numpy(),
        (quantize(target) * 255).numpy(),
        channel_axis=0,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255,
    )
    assert float(ssim(output, target, channel="rgb")) == pytest.approx(expected, abs=1e-10)


def test_grayscale_input_matches_replicated_rgb():
    g = torch.Generator().manual_seed(9)
    target = torch.rand(2, 1, 24, 24, generator=g)
    output = (target + 0.05 * torch.randn(2, 1, 24, 24, generator=g)).clamp(0, 1)
    for channel in ("y", "rgb"):
        for metric in (psnr, ssim):
            torch.testing.assert_close(
                metric(output, target, channel=channel),
                metric(output.expand(2, 3, 24, 24), target.expand(2, 3, 24, 24), channel=channel),
            )


def test_float32_input_gives_float64():
    x = torch.rand(1, 3, 16, 16)
    y = (x + 0.1).clamp(0, 1)
    assert psnr(x, y).dtype == torch.float64
    assert ssim(x, y).dtype == torch.float64


def test_bad_arguments_raise():
    x = torch.rand(3, 16, 16)
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(x, torch.rand(3, 16, 15))
    with pytest.raises(ValueError, match="channel must be one of"):
        ssim(x, x, channel="ycbcr")
    with pytest.raises(ValueError, match="border 8 leaves nothing"):
        psnr(x, x, border=8)
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(x, x, border=3)
    with pytest.raises(ValueError, match="1 \\(grayscale\\) or 3 \\(RGB\\) channels"):
        psnr(torch.rand(4, 16, 16), torch.rand(4, 16, 16))
    with pytest.raises(ValueError, match="non-negative integer"):
        psnr(x, x, border=-1)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    g = torch.Generator().manual_seed(10)
    target = torch.rand(2, 3, 40, 40, generator=g)
    output = (target + 0.05 * torch.randn(2, 3, 40, 40, generator=g)).clamp(0, 1)
    for metric in (psnr, ssim):
        on_gpu = metric(output.cuda(), target.cuda(), border=4)
        assert on_gpu.device.type == "cuda"
        torch.testing.assert_close(on_gpu.cpu(), metric(output, target, border=4), rtol=0, atol=1e-10)
