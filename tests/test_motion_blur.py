"""Synthetic camera-shake kernels (Boracchi & Foi trajectories), blurring, and real kernel files."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from PIL import Image

from restorekit.data.folders import DataError
from restorekit.data.motion_blur import (
    blur,
    center_kernel,
    load_kernels,
    random_motion_kernel,
    random_trajectory,
    trajectory_to_psf,
)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- trajectories and PSFs ------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_trajectory_has_the_requested_length_and_fits_the_canvas(seed):
    path = random_trajectory(canvas=64, max_length=60, anxiety=0.01, num_steps=500, generator=gen(seed))
    assert path.shape == (500, 2)
    steps = (path[1:] - path[:-1]).norm(dim=1)
    torch.testing.assert_close(steps.sum(), torch.tensor(60.0, dtype=torch.float64))
    assert float(path.min()) >= 0 and float(path.max()) <= 63
    # The bounding box is centred on the canvas.
    low, high = path.min(dim=0).values, path.max(dim=0).values
    torch.testing.assert_close((low + high) / 2, torch.full((2,), 31.5, dtype=torch.float64))


def test_no_anxiety_gives_a_straight_line():
    path = random_trajectory(canvas=32, max_length=20, anxiety=0.0, num_steps=200, generator=gen(3))
    assert abs(float((path[-1] - path[0]).norm()) - 20.0) < 1e-9


def test_anxiety_makes_the_path_shake():
    # The end-to-end distance of a shaken path is shorter than its length.
    ends = [
        float((p[-1] - p[0]).norm())
        for p in (random_trajectory(max_length=60, anxiety=0.05, num_steps=2000, generator=gen(s)) for s in range(5))
    ]
    assert min(ends) < 59.0


def test_trajectory_is_seeded():
    a = random_trajectory(generator=gen(7))
    assert torch.equal(a, random_trajectory(generator=gen(7)))
    assert not torch.equal(a, random_trajectory(generator=gen(8)))


def test_trajectory_arguments_are_checked():
    with pytest.raises(ValueError, match="max_length"):
        random_trajectory(canvas=32, max_length=40, generator=gen(0))
    with pytest.raises(ValueError, match="anxiety"):
        random_trajectory(anxiety=2.0, generator=gen(0))


@pytest.mark.parametrize("exposure", [1.0, 0.5, 0.1, 0.001])
def test_psf_is_a_normalised_nonnegative_kernel(exposure):
    path = random_trajectory(generator=gen(0))
    psf = trajectory_to_psf(path, canvas=64, exposure=exposure)
    assert psf.shape == (64, 64) and psf.dtype == torch.float32
    assert float(psf.min()) >= 0
    assert abs(float(psf.sum()) - 1.0) < 1e-6


def test_psf_rasterises_at_subpixel_accuracy():
    # One sample at (x, y) = (2.25, 1.5) spreads bilinearly over its four neighbours.
    psf = trajectory_to_psf(torch.tensor([[2.25, 1.5]]), canvas=5)
    expected = torch.zeros(5, 5)
    expected[1, 2], expected[1, 3], expected[2, 2], expected[2, 3] = 0.375, 0.125, 0.375, 0.125
    torch.testing.assert_close(psf, expected)
    # Complex positions x + iy mean the same thing.
    torch.testing.assert_close(trajectory_to_psf(torch.tensor([2.25 + 1.5j]), canvas=5), expected)


def test_shorter_exposure_covers_a_prefix_of_the_path():
    path = random_trajectory(generator=gen(4))
    full = trajectory_to_psf(path, exposure=1.0)
    short = trajectory_to_psf(path, exposure=0.1)
    assert int((short > 0).sum()) < int((full > 0).sum())
    # The first tenth of the samples alone, equally weighted, is the same PSF.
    torch.testing.assert_close(short, trajectory_to_psf(path[:200], exposure=1.0))


@pytest.mark.parametrize("seed", range(6))
def test_random_motion_kernel_is_centred_on_its_centroid(seed):
    kernel = random_motion_kernel(size=21, generator=gen(seed))
    assert kernel.shape == (21, 21)
    assert float(kernel.min()) >= 0 and abs(float(kernel.sum()) - 1) < 1e-6
    rows, cols = torch.meshgrid(torch.arange(21.0), torch.arange(21.0), indexing="ij")
    assert abs(float((kernel * rows).sum()) - 10) < 1e-3
    assert abs(float((kernel * cols).sum()) - 10) < 1e-3


def test_random_motion_kernel_is_seeded_and_varies():
    a = random_motion_kernel(size=31, generator=gen(1))
    assert torch.equal(a, random_motion_kernel(size=31, generator=gen(1)))
    assert not torch.equal(a, random_motion_kernel(size=31, generator=gen(2)))
    # A long full-exposure shake spreads over many pixels; a tiny exposure hardly blurs.
    long = random_motion_kernel(size=31, exposure=1.0, anxiety=0.005, generator=gen(3))
    short = random_motion_kernel(size=31, exposure=0.001, generator=gen(3))
    rows, cols = torch.meshgrid(torch.arange(31.0), torch.arange(31.0), indexing="ij")

    def spread(k: torch.Tensor) -> float:  # RMS distance from the centre, in pixels
        return float((k * ((rows - 15) ** 2 + (cols - 15) ** 2)).sum().sqrt())

    assert int((long > 0).sum()) > 30 and spread(long) > 3
    assert spread(short) < 1
    with pytest.raises(ValueError, match="size"):
        random_motion_kernel(size=30, generator=gen(0))


# --- blurring -------------------------------------------------------------------------------------


def asymmetric_kernel(kh: int, kw: int) -> torch.Tensor:
    k = torch.arange(1.0, kh * kw + 1).view(kh, kw) ** 1.5
    return k / k.sum()


@pytest.mark.parametrize("method", ["conv", "fft"])
@pytest.mark.parametrize("shape", [(5, 7), (4, 6), (1, 9), (25, 25)])
def test_blurring_a_delta_draws_the_kernel_unflipped(method, shape):
    kh, kw = shape
    image = torch.zeros(2, 41, 45, dtype=torch.float64)
    image[:, 20, 22] = 1.0
    kernel = asymmetric_kernel(kh, kw).double()
    out = blur(image, kernel, method=method)
    # The anchor (kh // 2, kw // 2) lands on the bright pixel.
    top, left = 20 - kh // 2, 22 - kw // 2
    window = out[:, top : top + kh, left : left + kw]
    torch.testing.assert_close(window, kernel.expand(2, -1, -1))
    torch.testing.assert_close(out.sum(dim=(1, 2)), torch.ones(2, dtype=torch.float64))


def test_blur_matches_true_convolution():
    signal = pytest.importorskip("scipy.signal")
    x = torch.rand(1, 3, 30, 34, dtype=torch.float64, generator=gen(0))
    k = asymmetric_kernel(7, 5).double()
    ours = blur(x, k, padding="valid")
    for c in range(3):
        ref = signal.convolve2d(x[0, c].numpy(), k.numpy(), mode="valid")
        np.testing.assert_allclose(ours[0, c].numpy(), ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("padding", ["reflect", "replicate", "circular", "valid"])
@pytest.mark.parametrize("method", ["conv", "fft"])
def test_blur_preserves_a_constant_image(padding, method):
    image = torch.full((3, 40, 50), 0.3)
    out = blur(image, random_motion_kernel(size=15, generator=gen(0)), padding=padding, method=method)
    expected_shape = (3, 26, 36) if padding == "valid" else (3, 40, 50)
    assert out.shape == expected_shape
    torch.testing.assert_close(out, torch.full(expected_shape, 0.3), atol=1e-5, rtol=0)


def test_per_image_kernels_and_methods_agree():
    images = torch.rand(3, 3, 48, 40, dtype=torch.float64, generator=gen(1))
    kernels = torch.stack([random_motion_kernel(size=21, generator=gen(s)) for s in range(3)]).double()
    batched = blur(images, kernels, method="conv")
    for i in range(3):
        torch.testing.assert_close(batched[i], blur(images[i], kernels[i], method="conv"))
    torch.testing.assert_close(batched, blur(images, kernels, method="fft"))
    for padding in ("valid", "replicate"):
        torch.testing.assert_close(
            blur(images, kernels, padding=padding, method="conv"), blur(images, kernels, padding=padding, method="fft")
        )


def test_blur_errors():
    with pytest.raises(ValueError, match="kernel"):
        blur(torch.rand(2, 3, 16, 16), torch.rand(3, 5, 5))
    with pytest.raises(ValueError, match="padding"):
        blur(torch.rand(3, 16, 16), torch.rand(5, 5), padding="zeros")
    with pytest.raises(ValueError, match="smaller"):
        blur(torch.rand(3, 4, 4), torch.rand(5, 5), padding="valid")


def test_center_kernel_keeps_the_anchor():
    image = torch.zeros(1, 31, 31)
    image[0, 15, 15] = 1
    for kernel in (asymmetric_kernel(5, 7), asymmetric_kernel(4, 6)):
        torch.testing.assert_close(blur(image, center_kernel(kernel, 11)), blur(image, kernel))
    with pytest.raises(ValueError, match="does not fit"):
        center_kernel(asymmetric_kernel(13, 13), 11)


# --- real kernels -------------------------------------------------------------------------------


def test_load_kernels_from_mat_keeps_matlab_orientation(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    k1 = np.arange(1.0, 16.0).reshape(3, 5)
    cell = np.empty((1, 2), dtype=object)
    cell[0, 0], cell[0, 1] = k1, 2 * k1.T
    stack = np.stack([k1[:, :3], k1[:, 2:]], axis=2)  # (3, 3, 2): MATLAB k(:, :, i)
    scipy_io.savemat(tmp_path / "k.mat", {"kernels": cell, "stack": stack})
    kernels = load_kernels(tmp_path / "k.mat")
    assert [tuple(k.shape) for k in kernels] == [(3, 5), (5, 3), (3, 3), (3, 3)]
    torch.testing.assert_close(kernels[0], torch.tensor(k1 / k1.sum(), dtype=torch.float32))
    torch.testing.assert_close(kernels[1], torch.tensor(k1.T / k1.sum(), dtype=torch.float32))
    torch.testing.assert_close(kernels[3], torch.tensor(k1[:, 2:] / k1[:, 2:].sum(), dtype=torch.float32))


def test_load_kernels_from_png_folder(tmp_path):
    a = np.zeros((9, 11), dtype=np.uint8)
    a[4, 2:9] = 255
    a[3, 8] = 128
    Image.fromarray(a).save(tmp_path / "a.png")
    Image.fromarray(np.full((5, 5), 10, dtype=np.uint8)).save(tmp_path / "b.png")
    kernels = load_kernels(tmp_path)
    assert [tuple(k.shape) for k in kernels] == [(9, 11), (5, 5)]
    torch.testing.assert_close(kernels[0], torch.tensor(a / a.sum(), dtype=torch.float32))
    torch.testing.assert_close(kernels[1], torch.full((5, 5), 1 / 25))


def test_load_kernels_errors(tmp_path):
    with pytest.raises(DataError, match="no such"):
        load_kernels(tmp_path / "missing.mat")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no kernel files"):
        load_kernels(tmp_path / "empty")
    Image.fromarray(np.zeros((5, 5), dtype=np.uint8)).save(tmp_path / "black.png")
    with pytest.raises(DataError, match="black.png.*no positive value"):
        load_kernels(tmp_path / "black.png")


def test_load_kernels_without_scipy_says_how_to_install(tmp_path, monkeypatch):
    (tmp_path / "k.mat").write_bytes(b"MATLAB 5.0 MAT-file")
    monkeypatch.setitem(sys.modules, "scipy.io", None)
    with pytest.raises(ImportError, match="pip install scipy"):
        load_kernels(tmp_path / "k.mat")


def test_shared_kernels_12_mat(shared_data):
    pytest.importorskip("scipy.io")
    path = shared_data / "deblur" / "blur-kernels" / "kernels_12.mat"
    if not path.exists():
        pytest.skip(f"{path} not found")
    kernels = load_kernels(path)
    assert len(kernels) == 12
    assert all(k.shape == (25, 25) and abs(float(k.sum()) - 1) < 1e-5 and float(k.min()) >= 0 for k in kernels)


def test_shared_levin09_mat(shared_data):
    # Levin09.mat is a MATLAB v7.3 (HDF5) file: SciPy cannot read it, h5py can.
    path = shared_data / "deblur" / "blur-kernels" / "Levin09.mat"
    if not path.exists():
        pytest.skip(f"{path} not found")
    pytest.importorskip("h5py")
    kernels = load_kernels(path)
    assert len(kernels) == 8
    assert [k.shape[0] for k in kernels] == [19, 17, 15, 27, 13, 21, 23, 23]
    assert all(abs(float(k.sum()) - 1) < 1e-5 and float(k.min()) >= 0 for k in kernels)


def test_shared_levin09_without_h5py_says_how_to_install(shared_data, monkeypatch):
    path = shared_data / "deblur" / "blur-kernels" / "Levin09.mat"
    if not path.exists():
        pytest.skip(f"{path} not found")
    pytest.importorskip("scipy.io")
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ImportError, match="v7.3.*pip install h5py"):
        load_kernels(path)


def test_shared_large_png_kernels(shared_data):
    folder = shared_data / "deblur" / "blur-kernels"
    paths = sorted(folder.glob("k_large_*.png"))
    if not paths:
        pytest.skip(f"no k_large_*.png in {folder}")
    kernels = [k for p in paths for k in load_kernels(p)]
    assert [tuple(k.shape) for k in kernels] == [(67, 67), (70, 70)]
    for kernel in kernels:
        assert abs(float(kernel.sum()) - 1) < 1e-5 and float(kernel.min()) >= 0
        # A real camera-shake kernel blurs a natural-size image without moving its mean.
        image = torch.rand(3, 96, 96, generator=gen(0))
        out = blur(image, kernel)
        assert abs(float(out.mean() - image.mean())) < 0.01
