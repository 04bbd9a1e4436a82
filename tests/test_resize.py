"""MATLAB-compatible bicubic imresize: benchmark LR files, a slow reference, shapes, dtypes and errors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from restorekit.data import resize as resize_module
from restorekit.data.resize import imresize

SET5 = ("baby", "bird", "butterfly", "head", "woman")


def _load_rgb_uint8(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1).contiguous()


# --- an independent, loop-based reference written straight from MATLAB's imresize formulas ---------------


def _cubic(t: float) -> float:
    a = abs(t)
    if a <= 1:
        return 1.5 * a**3 - 2.5 * a**2 + 1
    if a <= 2:
        return -0.5 * a**3 + 2.5 * a**2 - 4 * a + 2
    return 0.0


def _reflect(i: int, n: int) -> int:
    """1-based index folded into 1..n with the edge sample repeated (..., 2, 1 | 1, ..., n | n, ...)."""
    while i < 1 or i > n:
        i = 1 - i if i < 1 else 2 * n + 1 - i
    return i


def _reference_axis(image: np.ndarray, out_len: int, scale: float, antialias: bool = True) -> np.ndarray:
    """Resize axis 0 of a 2-D array, one output sample at a time."""
    in_len = image.shape[0]
    shrink = scale < 1 and antialias
    width = 4 / scale if shrink else 4.0
    result = np.zeros((out_len, image.shape[1]))
    for x in range(1, out_len + 1):
        u = x / scale + 0.5 * (1 - 1 / scale)
        first = math.floor(u - width / 2)
        taps = range(first, first + math.ceil(width) + 2)
        weights = [scale * _cubic(scale * (u - j)) if shrink else _cubic(u - j) for j in taps]
        total = sum(weights)
        for j, w in zip(taps, weights):
            result[x - 1] += (w / total) * image[_reflect(j, in_len) - 1]
    return result


def _reference_imresize(
    image: np.ndarray, out_hw: tuple[int, int], scale_hw: tuple[float, float]
) -> np.ndarray:
    # MATLAB resizes along the dimension with the smaller scale first (rows on a tie).
    if scale_hw[0] <= scale_hw[1]:
        rows = _reference_axis(image, out_hw[0], scale_hw[0])
        return _reference_axis(rows.T, out_hw[1], scale_hw[1]).T
    cols = _reference_axis(image.T, out_hw[1], scale_hw[1]).T
    return _reference_axis(cols, out_hw[0], scale_hw[0])


@pytest.mark.parametrize("scale", [0.37, 0.5, 1 / 3, 0.8, 1.5, 2.0, 2.7, 4.0])
def test_matches_slow_reference_on_random_image(scale):
    rng = np.random.default_rng(7)
    image = rng.random((7, 9))
    out_hw = (math.ceil(7 * scale - 1e-9), math.ceil(9 * scale - 1e-9))
    expected = _reference_imresize(image, out_hw, (scale, scale))
    got = imresize(torch.from_numpy(image), scale)
    assert got.shape == out_hw
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("size", [(3, 13), (12, 4), (7, 9), (1, 1)])
def test_matches_slow_reference_with_size(size):
    # Different scales per axis exercise the order of the two passes.
    rng = np.random.default_rng(11)
    image = rng.random((7, 9))
    expected = _reference_imresize(image, size, (size[0] / 7, size[1] / 9))
    got = imresize(torch.from_numpy(image), size=size)
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-12)


def test_without_antialias_uses_plain_cubic_taps():
    rng = np.random.default_rng(3)
    image = rng.random((12, 12))
    expected = _reference_axis(_reference_axis(image, 6, 0.5, antialias=False).T, 6, 0.5, antialias=False).T
    got = imresize(torch.from_numpy(image), 0.5, antialias=False)
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-12)
    assert not np.allclose(got.numpy(), imresize(torch.from_numpy(image), 0.5).numpy())


# --- the shipped benchmark LR files (MATLAB imresize on uint8) ---------------------------------------------


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_uint8_reproduces_set5_lr_files_exactly(shared_data, scale):
    for name in SET5:
        hr = _load_rgb_uint8(shared_data / "sr-bench/Set5/HR" / f"{name}.png")
        height, width = hr.shape[-2:]
        hr = hr[:, : height - height % scale, : width - width % scale]
        lr = _load_rgb_uint8(shared_data / "sr-bench/Set5/LR_bicubic" / f"X{scale}" / f"{name}x{scale}.png")
        made = imresize(hr, 1 / scale)
        assert made.dtype == torch.uint8
        assert made.shape == lr.shape
        # MATLAB rounds to uint8 between the two passes too; doing the same gives the files bit for bit.
        assert torch.equal(made, lr), name


def test_uint8_reproduces_set14_x4_lr_files_exactly(shared_data):
    hr_dir = shared_data / "sr-bench/Set14/HR"
    names = sorted(path.stem for path in hr_dir.glob("*.png"))
    assert len(names) == 14
    for name in names:
        hr = _load_rgb_uint8(hr_dir / f"{name}.png")
        height, width = hr.shape[-2:]
        hr = hr[:, : height - height % 4, : width - width % 4]
        lr = _load_rgb_uint8(shared_data / "sr-bench/Set14/LR_bicubic/X4" / f"{name}x4.png")
        assert torch.equal(imresize(hr, 0.25), lr), name


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_float_path_is_within_rounding_of_set5_lr_files(shared_data, scale):
    # Without MATLAB's intermediate uint8 rounding the float result drifts a little from the files:
    # measured max |diff| 2 and mean |diff| 0.143 (x2), 0.117 (x3), 0.103 (x4) grey levels.
    diffs = []
    for name in SET5:
        hr = _load_rgb_uint8(shared_data / "sr-bench/Set5/HR" / f"{name}.png").double() / 255
        height, width = hr.shape[-2:]
        hr = hr[:, : height - height % scale, : width - width % scale]
        lr = _load_rgb_uint8(shared_data / "sr-bench/Set5/LR_bicubic" / f"X{scale}" / f"{name}x{scale}.png")
        made = torch.floor((imresize(hr, 1 / scale) * 255).clamp(0, 255) + 0.5)
        diffs.append((made - lr.double()).abs())
    assert max(float(d.max()) for d in diffs) <= 2
    assert float(np.mean([float(d.mean()) for d in diffs])) < 0.15


# --- shapes, batching, dtypes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("in_hw", "scale", "out_hw"),
    [((7, 9), 0.37, (3, 4)), ((7, 9), 1.5, (11, 14)), ((7, 9), 2.7, (19, 25)), ((10, 10), 0.7, (7, 7)),
     ((300, 299), 1 / 3, (100, 100)), ((5, 5), 0.01, (1, 1))],
)
def test_output_size_is_ceil_of_scaled_size(in_hw, scale, out_hw):
    # 0.7 * 10 is 7.000000000000001 in binary floating point: still 7 pixels.
    assert imresize(torch.zeros(in_hw), scale).shape == out_hw


def test_batch_equals_single_images_and_keeps_leading_dims():
    batch = torch.rand(3, 2, 15, 11, dtype=torch.float64)
    out = imresize(batch, 0.6)
    assert out.shape == (3, 2, 9, 7)
    for i in range(3):
        torch.testing.assert_close(out[i], imresize(batch[i], 0.6), rtol=0, atol=1e-12)
        torch.testing.assert_close(out[i, 1], imresize(batch[i, 1], 0.6), rtol=0, atol=1e-12)


def test_identity_at_scale_one_and_same_size():
    x = torch.rand(2, 3, 8, 5)
    torch.testing.assert_close(imresize(x, 1.0), x, rtol=0, atol=0)
    torch.testing.assert_close(imresize(x, size=(8, 5)), x, rtol=0, atol=0)
    # Same height, new width: only the columns change, so each row is resized on its own.
    wide = imresize(x, size=(8, 10))
    torch.testing.assert_close(wide[0, 0, 3], imresize(x[0, 0, 3:4], size=(1, 10))[0], rtol=0, atol=1e-6)


@pytest.mark.parametrize("scale", [0.25, 0.37, 1.7, 3.0])
@pytest.mark.parametrize("antialias", [True, False])
def test_constant_image_stays_constant(scale, antialias):
    x = torch.full((2, 3, 13, 17), 0.4375, dtype=torch.float64)
    out = imresize(x, scale, antialias=antialias)
    torch.testing.assert_close(out, torch.full_like(out, 0.4375), rtol=0, atol=1e-14)


def test_dtypes():
    x64 = torch.rand(3, 10, 12, dtype=torch.float64)
    out64 = imresize(x64, 0.5)
    assert out64.dtype == torch.float64
    out32 = imresize(x64.float(), 0.5)
    assert out32.dtype == torch.float32
    torch.testing.assert_close(out32.double(), out64, rtol=0, atol=1e-6)
    out16 = imresize(x64.half(), 0.5)
    assert out16.dtype == torch.float16
    torch.testing.assert_close(out16.double(), out64, rtol=0, atol=2e-3)
    x8 = (x64 * 255).round().to(torch.uint8)
    assert imresize(x8, 2.0).dtype == torch.uint8


def test_long_axis_gather_path_matches_dense(monkeypatch):
    x = torch.rand(2, 3, 21, 34, dtype=torch.float64)
    dense = [imresize(x, 0.45), imresize(x, 2.5), imresize(x, size=(5, 70))]
    monkeypatch.setattr(resize_module, "_DENSE_LIMIT", 0)
    gathered = [imresize(x, 0.45), imresize(x, 2.5), imresize(x, size=(5, 70))]
    for a, b in zip(gathered, dense):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-13)


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((), {}, "exactly one of scale and size"),
        ((0.5,), {"size": (4, 4)}, "exactly one of scale and size"),
        ((0.0,), {}, "positive"),
        ((-2.0,), {}, "positive"),
        ((float("nan"),), {}, "positive"),
        (("2",), {}, "positive number"),
        ((), {"size": (4,)}, "size must be"),
        ((), {"size": (0, 4)}, "two positive integers"),
        ((), {"size": (2.5, 4)}, "two positive integers"),
    ],
)
def test_bad_arguments_raise(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        imresize(torch.rand(3, 8, 8), *args, **kwargs)


def test_bad_tensors_raise():
    with pytest.raises(ValueError, match="floating-point or uint8"):
        imresize(torch.zeros(3, 8, 8, dtype=torch.int32), 2)
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        imresize(torch.zeros(1, 1, 3, 8, 8), 2)
    with pytest.raises(ValueError, match="empty"):
        imresize(torch.zeros(3, 0, 8), 2)
    with pytest.raises(ValueError, match="torch.Tensor"):
        imresize(np.zeros((8, 8)), 2)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    x = torch.rand(2, 3, 40, 30, dtype=torch.float64)
    for scale in (0.25, 3.0):
        torch.testing.assert_close(imresize(x.cuda(), scale).cpu(), imresize(x, scale), rtol=0, atol=1e-12)
    x8 = (x * 255).round().to(torch.uint8)
    assert torch.equal(imresize(x8.cuda(), 0.5).cpu(), imresize(x8, 0.5))
