"""Batched degradations (blur, noise, JPEG) and the recipe-driven DegradationPipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from restorekit.data.degradations import DegradationPipeline, gaussian_blur, gaussian_noise, jpeg
from restorekit.metrics import psnr


def _smooth_batch(n: int = 4, size: int = 32, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Smooth synthetic colour images in [0.1, 0.9] (JPEG-friendly, no clamping by noise of a few %)."""
    ramp = torch.linspace(0, 1, size, dtype=dtype)
    yy, xx = torch.meshgrid(ramp, ramp, indexing="ij")
    images = []
    for i in range(n):
        images.append(
            torch.stack(
                [
                    torch.sin(3 * xx + i) * 0.5 + 0.5,
                    torch.cos(2 * yy - i) * 0.5 + 0.5,
                    xx * yy,
                ]
            )
        )
    return 0.1 + 0.8 * torch.stack(images)


def _high_frequency_energy(x: torch.Tensor) -> torch.Tensor:
    """Per-image energy of the discrete Laplacian."""
    lap = 4 * x[..., 1:-1, 1:-1] - x[..., :-2, 1:-1] - x[..., 2:, 1:-1] - x[..., 1:-1, :-2] - x[..., 1:-1, 2:]
    return lap.square().mean(dim=(-3, -2, -1))


# --- gaussian_blur --------------------------------------------------------------------------------------


def test_blur_preserves_shape_dtype_and_sigma_zero_is_identity():
    x = torch.rand(3, 3, 20, 24, dtype=torch.float64)
    out = gaussian_blur(x, 1.2)
    assert out.shape == x.shape and out.dtype == torch.float64
    torch.testing.assert_close(gaussian_blur(x, 0.0), x, rtol=0, atol=0)
    single = gaussian_blur(x[0], 1.2)
    assert single.shape == x[0].shape
    torch.testing.assert_close(single, out[0])


def test_blur_lowers_high_frequency_energy_more_for_larger_sigma():
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    energies = [float(_high_frequency_energy(gaussian_blur(x, s))) for s in (0.0, 0.5, 1.0, 2.0)]
    assert all(later < earlier for earlier, later in zip(energies, energies[1:]))
    assert energies[-1] < 0.05 * energies[0]


def test_blur_per_image_sigma_matches_separate_calls():
    x = torch.rand(4, 3, 24, 24, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    sigmas = torch.tensor([0.0, 0.7, 1.5, 3.0])
    out = gaussian_blur(x, sigmas, kernel_size=19)
    for i, sigma in enumerate(sigmas.tolist()):
        torch.testing.assert_close(out[i], gaussian_blur(x[i : i + 1], sigma, kernel_size=19)[0])
    # Without a kernel_size, the kernel is sized for the largest sigma; a delta kernel stays a delta.
    torch.testing.assert_close(gaussian_blur(x, sigmas)[0], x[0], rtol=0, atol=1e-12)


def test_blur_matches_2d_convolution_with_reflect_padding():
    x = torch.rand(2, 3, 12, 10, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    sigma, radius = 1.3, 3
    taps = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=torch.float64) / sigma) ** 2)
    kernel_2d = torch.outer(taps, taps) / taps.sum() ** 2
    padded = torch.nn.functional.pad(x, (radius,) * 4, mode="reflect")
    expected = torch.nn.functional.conv2d(padded, kernel_2d.expand(3, 1, -1, -1), groups=3)
    blurred = gaussian_blur(x, sigma, kernel_size=2 * radius + 1)
    torch.testing.assert_close(blurred, expected, rtol=0, atol=1e-12)
    # A constant image stays constant (weights sum to one, no dark border from zero padding).
    flat = torch.full((2, 1, 10, 10), 0.3)
    torch.testing.assert_close(gaussian_blur(flat, 2.0), flat)


def test_blur_rejects_bad_arguments():
    x = torch.rand(2, 3, 8, 8)
    with pytest.raises(ValueError, match="odd"):
        gaussian_blur(x, 1.0, kernel_size=4)
    with pytest.raises(ValueError, match="too large"):
        gaussian_blur(x, 1.0, kernel_size=17)
    with pytest.raises(ValueError, match="3 values for a batch of 2"):
        gaussian_blur(x, torch.tensor([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="non-negative"):
        gaussian_blur(x, -1.0)
    with pytest.raises(ValueError, match="floating-point"):
        gaussian_blur(x.to(torch.uint8), 1.0)


def test_blur_large_sigma_on_small_image_is_limited_not_an_error():
    x = torch.rand(1, 3, 6, 6)
    out = gaussian_blur(x, 10.0)
    assert out.shape == x.shape and torch.isfinite(out).all()


# --- gaussian_noise ---------------------------------------------------------------------------------------


def test_noise_std_matches_sigma_per_image():
    x = torch.full((3, 3, 64, 64), 0.5, dtype=torch.float64)
    sigmas = torch.tensor([0.0, 0.02, 0.1])
    out = gaussian_noise(x, sigmas, generator=torch.Generator().manual_seed(2))
    assert out.shape == x.shape and out.dtype == x.dtype
    std = (out - x).flatten(1).std(dim=1)
    assert float(std[0]) == 0.0
    assert float(std[1]) == pytest.approx(0.02, rel=0.05)
    assert float(std[2]) == pytest.approx(0.1, rel=0.05)
    assert abs(float((out - x)[2].mean())) < 0.01


def test_noise_generator_is_reproducible():
    x = torch.rand(2, 3, 16, 16)
    a = gaussian_noise(x, 0.05, generator=torch.Generator().manual_seed(3))
    b = gaussian_noise(x, 0.05, generator=torch.Generator().manual_seed(3))
    c = gaussian_noise(x, 0.05, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, c)


# --- jpeg -------------------------------------------------------------------------------------------------


def test_jpeg_on_real_image_is_close_but_lossy(shared_data):
    image = Image.open(shared_data / "sr-bench/Set5/HR/butterfly.png").convert("RGB")
    x = torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div(255)[None, :, :96, :96]
    out = jpeg(x, 90)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert not torch.equal(out, x)
    value = float(psnr(out, x, channel="rgb")[0])
    assert 25 < value < 60
    assert float(psnr(jpeg(x, 10), x, channel="rgb")[0]) < value


def test_jpeg_per_image_quality_and_grayscale():
    x = _smooth_batch(3)
    out = jpeg(x, torch.tensor([10, 50, 95]))
    errors = [float((out[i] - x[i]).abs().mean()) for i in range(3)]
    assert errors[0] > errors[1] > errors[2] > 0
    torch.testing.assert_close(out[1], jpeg(x[1], 50))
    gray = x[:, :1]
    gray_out = jpeg(gray, 80)
    assert gray_out.shape == gray.shape
    assert float(psnr(gray_out, gray, channel="rgb").min()) > 30


def test_jpeg_keeps_float64_and_rejects_bad_input():
    x = _smooth_batch(2, dtype=torch.float64)
    assert jpeg(x, 75).dtype == torch.float64
    with pytest.raises(ValueError, match="1..100"):
        jpeg(x, 0)
    with pytest.raises(ValueError, match="1 or 3 channels"):
        jpeg(torch.rand(1, 4, 16, 16), 75)


# --- DegradationPipeline ----------------------------------------------------------------------------------

RECIPE = [
    {"type": "blur", "sigma": [0.2, 3.0], "prob": 0.5},
    {"type": "noise", "sigma": [0, 0.04], "prob": 0.5},
    {"type": "jpeg", "quality": [30, 95], "prob": 0.3},
]


def test_pipeline_preserves_shape_dtype_and_range():
    pipeline = DegradationPipeline(RECIPE)
    assert len(pipeline) == 3
    for dtype in (torch.float32, torch.float64):
        x = _smooth_batch(8, dtype=dtype)
        out = pipeline(x)
        assert out.shape == x.shape and out.dtype == dtype
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert pipeline(x[0]).shape == x[0].shape


def test_pipeline_prob_zero_and_empty_are_identity():
    x = _smooth_batch(4)
    torch.testing.assert_close(DegradationPipeline([])(x), x, rtol=0, atol=0)
    never = DegradationPipeline([{**step, "prob": 0} for step in RECIPE])
    torch.testing.assert_close(never(x), x, rtol=0, atol=0)
    zero = DegradationPipeline([{"type": "blur", "sigma": 0}, {"type": "noise", "sigma": 0.0}])
    torch.testing.assert_close(zero(x), x, rtol=0, atol=0)


def test_pipeline_applies_each_step_to_a_random_subset():
    torch.manual_seed(0)
    x = _smooth_batch(64, size=16)
    out = DegradationPipeline([{"type": "noise", "sigma": 0.05, "prob": 0.5}])(x)
    changed = (out != x).flatten(1).any(dim=1)
    assert 10 < int(changed.sum()) < 54
    always = DegradationPipeline([{"type": "noise", "sigma": 0.05}])(x)
    assert bool((always != x).flatten(1).any(dim=1).all())


def test_pipeline_is_reproducible_with_the_global_rng():
    pipeline = DegradationPipeline(RECIPE)
    x = _smooth_batch(8)
    torch.manual_seed(123)
    a = pipeline(x)
    state = torch.get_rng_state()
    b_next = pipeline(x)
    torch.manual_seed(123)
    torch.testing.assert_close(pipeline(x), a, rtol=0, atol=0)
    torch.set_rng_state(state)
    torch.testing.assert_close(pipeline(x), b_next, rtol=0, atol=0)
    assert not torch.equal(a, b_next)


def test_pipeline_samples_ranges_per_image():
    torch.manual_seed(1)
    x = torch.full((32, 1, 32, 32), 0.5)
    out = DegradationPipeline([{"type": "noise", "sigma": [0.0, 0.1]}])(x)
    stds = (out - x).flatten(1).std(dim=1)
    assert float(stds.min()) < 0.03 and float(stds.max()) > 0.07
    assert float(stds.max()) < 0.11


def test_pipeline_describe():
    assert DegradationPipeline(RECIPE).describe() == (
        "blur(sigma~U[0.2, 3], p=0.5) -> noise(sigma~U[0, 0.04], p=0.5) -> jpeg(quality~U{30..95}, p=0.3)"
    )
    assert DegradationPipeline([{"type": "jpeg", "quality": 75}]).describe() == "jpeg(quality=75, p=1)"
    assert DegradationPipeline([]).describe() == "identity"


@pytest.mark.parametrize(
    ("steps", "match"),
    [
        ([{"type": "blurr", "sigma": 1.0}], r"step 0: unknown type 'blurr'; did you mean 'blur'\?"),
        (
            [{"type": "blur", "sigma": 1.0}, {"type": "jpeg", "qualty": 50}],
            r"step 1 \(jpeg\): unknown key 'qualty'; did you mean 'quality'\?",
        ),
        (
            [{"type": "noise", "sigma": 0.1, "probability": 0.5}],
            r"step 0 \(noise\): unknown key 'probability'; did you mean 'prob'\?",
        ),
        ([{"type": "noise"}], r"step 0 \(noise\): missing key 'sigma'"),
        ([{"sigma": 1.0}], r"step 0: missing key 'type'"),
        ([{"type": "noise", "sigma": [0.1, 0.05]}], r"step 0 \(noise\): key 'sigma' must satisfy"),
        ([{"type": "jpeg", "quality": [30, 120]}], r"step 0 \(jpeg\): key 'quality' must satisfy"),
        ([{"type": "jpeg", "quality": [30.5, 90]}], r"step 0 \(jpeg\): key 'quality' must hold integers"),
        ([{"type": "blur", "sigma": 1.0, "prob": 1.5}], r"step 0 \(blur\): key 'prob'"),
        ([{"type": "blur", "sigma": "wide"}], r"step 0 \(blur\): key 'sigma' must be a number or a \["),
        ([{"type": "blur", "sigma": 1.0, "kernel_size": 4}], r"step 0 \(blur\): key 'kernel_size'"),
        (["blur"], r"step 0: expected a table"),
    ],
)
def test_pipeline_bad_config_names_step_and_key(steps, match):
    with pytest.raises(ValueError, match=match):
        DegradationPipeline(steps)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_batch_stays_on_device():
    x = _smooth_batch(4).cuda()
    for out in (gaussian_blur(x, torch.tensor([0.5, 1.0, 1.5, 2.0])), gaussian_noise(x, 0.02), jpeg(x, 80)):
        assert out.device.type == "cuda" and out.shape == x.shape
    torch.testing.assert_close(gaussian_blur(x, 1.3).cpu(), gaussian_blur(x.cpu(), 1.3), rtol=0, atol=1e-5)
    assert float(psnr(jpeg(x, 90).cpu(), x.cpu(), channel="rgb").min()) > 30
    torch.manual_seed(5)
    out = DegradationPipeline(RECIPE)(x)
    assert out.device.type == "cuda" and float(out.min()) >= 0 and float(out.max()) <= 1
