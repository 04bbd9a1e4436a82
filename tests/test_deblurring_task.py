"""The deblurring task: data layouts, aligned crops, synthetic blur on the device, metrics."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from restorekit.data.folders import DataError
from restorekit.data.images import ImageReadError
from restorekit.data.motion_blur import blur
from restorekit.data.sampling import SampleKey
from restorekit.tasks.deblurring import Deblurring

CPU = torch.device("cpu")


def write_image(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def random_image(seed: int, height: int = 40, width: int = 48) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def invert(array: np.ndarray) -> np.ndarray:
    """A pixelwise stand-in for blur: lets a test tell whether crops are aligned."""
    return 255 - array


def make_pairs(blur_dir: Path, sharp_dir: Path, names: list[str], seed: int = 0) -> None:
    for i, name in enumerate(names):
        sharp = random_image(seed + i)
        write_image(sharp_dir / f"{name}.png", sharp)
        write_image(blur_dir / f"{name}.png", invert(sharp))


def assert_aligned(item: dict[str, torch.Tensor]) -> None:
    # Saved as 8-bit, so 1 - x is exact in /255 steps; allow float rounding only.
    torch.testing.assert_close(item["input"], 1 - item["target"], atol=1e-6, rtol=0)


def keys(count: int, seed: int = 0) -> list[SampleKey]:
    return [SampleKey(seed, 0, i) for i in range(count)]


# --- layouts --------------------------------------------------------------------------------------


def test_gopro_layout(tmp_path):
    root = tmp_path / "GOPRO" / "train"
    make_pairs(root / "GOPR0001_00" / "blur", root / "GOPR0001_00" / "sharp", ["000001", "000002"])
    make_pairs(root / "GOPR0002_00" / "blur", root / "GOPR0002_00" / "sharp", ["000001"], seed=10)
    (root / "GOPR0002_00" / "blur_gamma").mkdir()
    task = Deblurring()
    data = task.train_data(root=str(root), crop=16)
    assert len(data) == 3
    item = data[SampleKey(0, 0, 2)]
    assert set(item) == {"input", "target"}
    assert item["target"].shape == (3, 16, 16) and item["target"].dtype == torch.float32
    assert_aligned(item)
    val = task.val_data(root=str(root))
    assert [val[i]["name"] for i in range(3)] == ["GOPR0001_00_000001", "GOPR0001_00_000002", "GOPR0002_00_000001"]
    assert val[2]["target"].shape == (3, 40, 48)
    # An empty blur_gamma folder is a clear error, not an empty dataset.
    with pytest.raises(DataError, match="blur_gamma"):
        task.train_data(root=str(root), gopro_blur="blur_gamma")


def test_gopro_sequence_missing_a_folder(tmp_path):
    make_pairs(tmp_path / "A" / "blur", tmp_path / "A" / "sharp", ["1"])
    write_image(tmp_path / "B" / "sharp" / "1.png", random_image(1))
    with pytest.raises(DataError, match="without both blur/ and sharp/: B"):
        Deblurring().train_data(root=str(tmp_path), layout="gopro")


def test_two_folders_matched_by_name(tmp_path):
    make_pairs(tmp_path / "blurred", tmp_path / "sharp", ["b", "a", "c"])
    # Another format for one blurred file still matches by stem.
    Image.open(tmp_path / "blurred" / "c.png").save(tmp_path / "blurred" / "c.bmp")
    (tmp_path / "blurred" / "c.png").unlink()
    task = Deblurring()
    data = task.train_data(blur=str(tmp_path / "blurred"), sharp=str(tmp_path / "sharp"), crop=24, rotate=True)
    assert [p.name for p in data.paths] == ["a.png", "b.png", "c.png"]
    for key in keys(12):
        assert_aligned(data[key])
    val = task.val_data(blur=str(tmp_path / "blurred"), sharp=str(tmp_path / "sharp"), limit=2)
    assert len(val) == 2 and val[1]["name"] == "b"
    torch.testing.assert_close(val[1]["input"], 1 - val[1]["target"], atol=1e-6, rtol=0)


def test_aligned_crops_with_flips_and_rotations_differ_by_key(tmp_path):
    make_pairs(tmp_path / "blur", tmp_path / "sharp", ["x"])
    data = Deblurring().train_data(blur=str(tmp_path / "blur"), sharp=str(tmp_path / "sharp"), crop=16, rotate=True)
    items = [data[key] for key in keys(8)]
    for item in items:
        assert_aligned(item)
    # Same key, same crop; different keys, different crops.
    torch.testing.assert_close(data[SampleKey(0, 0, 5)]["target"], items[5]["target"])
    assert len({tuple(item["target"].flatten()[:8].tolist()) for item in items}) > 4
    # A plain integer index works too.
    assert_aligned(data[0])


def test_mismatched_names_are_listed(tmp_path):
    make_pairs(tmp_path / "blur", tmp_path / "sharp", ["a", "b"])
    write_image(tmp_path / "blur" / "only_blur.png", random_image(5))
    write_image(tmp_path / "sharp" / "only_sharp.png", random_image(6))
    with pytest.raises(DataError) as excinfo:
        Deblurring().train_data(blur=str(tmp_path / "blur"), sharp=str(tmp_path / "sharp"))
    message = str(excinfo.value)
    assert "only_blur" in message and "only_sharp" in message and "do not match" in message


def test_empty_and_missing_folders(tmp_path):
    (tmp_path / "blur").mkdir()
    (tmp_path / "sharp").mkdir()
    task = Deblurring()
    with pytest.raises(DataError, match="no images"):
        task.train_data(blur=str(tmp_path / "blur"), sharp=str(tmp_path / "sharp"))
    with pytest.raises(DataError, match="no such folder"):
        task.train_data(root=str(tmp_path / "missing"))
    with pytest.raises(DataError, match="sharp is missing"):
        task.train_data(blur=str(tmp_path / "blur"))
    with pytest.raises(DataError, match="not both"):
        task.train_data(root=str(tmp_path), sharp=str(tmp_path / "sharp"))
    with pytest.raises(DataError, match="layout"):
        task.train_data(root=str(tmp_path), layout="pix2pix")


def test_size_mismatch_names_both_files(tmp_path):
    write_image(tmp_path / "sharp" / "a.png", random_image(0))
    write_image(tmp_path / "blur" / "a.png", random_image(0, height=20))
    data = Deblurring().train_data(blur=str(tmp_path / "blur"), sharp=str(tmp_path / "sharp"), crop=8)
    with pytest.raises(DataError, match=r"blur/a.png: size 48x20 differs"):
        data[0]


def test_side_by_side_blur_left_sharp_right(tmp_path):
    for i in range(2):
        sharp = random_image(i, 32, 40)
        write_image(tmp_path / "ab" / f"{i}.png", np.concatenate([invert(sharp), sharp], axis=1))
    task = Deblurring()
    data = task.train_data(root=str(tmp_path / "ab"), crop=16)
    for key in keys(6):
        assert_aligned(data[key])
    val = task.val_data(root=str(tmp_path / "ab"), layout="ab")
    item = val[1]
    assert item["input"].shape == item["target"].shape == (3, 32, 40)
    expected = torch.from_numpy(random_image(1, 32, 40)).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(item["target"], expected)
    write_image(tmp_path / "odd" / "x.png", random_image(0, 8, 9))
    with pytest.raises(DataError, match="even width"):
        task.val_data(root=str(tmp_path / "odd"))[0]


def test_small_images_are_padded_to_the_crop(tmp_path):
    make_pairs(tmp_path / "blur", tmp_path / "sharp", ["a"])
    item = Deblurring().train_data(blur=str(tmp_path / "blur"), sharp=str(tmp_path / "sharp"), crop=64)[0]
    assert item["target"].shape == (3, 64, 64)
    assert_aligned(item)


# --- synthetic blur -------------------------------------------------------------------------------


def test_synthetic_blur_is_made_on_the_device_and_deterministic_per_key(tmp_path):
    for i in range(3):
        write_image(tmp_path / "sharp" / f"{i}.png", random_image(i, 48, 56))
    task = Deblurring(kernel_size=9, noise=[0.01, 0.02])
    data = task.train_data(sharp=str(tmp_path / "sharp"), synthetic=True, crop=24)
    item = data[SampleKey(3, 1, 2)]
    assert set(item) == {"target", "context", "kernel", "noise_sigma", "noise_seed"}
    assert item["context"].shape == (3, 32, 32) and item["kernel"].shape == (9, 9)
    torch.testing.assert_close(item["context"][:, 4:-4, 4:-4], item["target"])
    assert 0.01 <= float(item["noise_sigma"]) <= 0.02

    loader = DataLoader(data, batch_size=4, sampler=keys(4, seed=3))
    blurred, sharp = task.make_batch(next(iter(loader)), CPU)
    assert blurred.shape == sharp.shape == (4, 3, 24, 24)
    assert float(blurred.min()) >= 0 and float(blurred.max()) <= 1
    assert float((blurred - sharp).abs().mean()) > 0.02
    again, _ = task.make_batch(next(iter(loader)), CPU)
    torch.testing.assert_close(again, blurred, atol=0, rtol=0)
    # Each sample's input is its own: a batch of one gives the same blurred image.
    single, _ = task.make_batch(next(iter(DataLoader(data, batch_size=1, sampler=keys(4, seed=3)[2:]))), CPU)
    torch.testing.assert_close(single[0], blurred[2], atol=0, rtol=0)
    # Another key, another kernel.
    other = data[SampleKey(4, 0, 2)]
    assert not torch.equal(other["kernel"], data[SampleKey(3, 0, 2)]["kernel"])


def test_synthetic_blur_is_the_valid_convolution_of_the_context(tmp_path):
    write_image(tmp_path / "sharp" / "a.png", random_image(0, 40, 40))
    task = Deblurring(kernel_size=7)
    data = task.train_data(sharp=str(tmp_path / "sharp"), synthetic=True, crop=20, rotate=True)
    batch = next(iter(DataLoader(data, batch_size=3, sampler=keys(3))))
    blurred, sharp = task.make_batch(batch, CPU)
    for i in range(3):
        expected = blur(batch["context"][i], batch["kernel"][i], padding="valid")
        torch.testing.assert_close(blurred[i], expected.clamp(0, 1))
        torch.testing.assert_close(sharp[i], batch["target"][i])
    # Blurring by the kernel is averaging, so blurred values stay within the context's range.
    assert float(blurred.mean() - sharp.mean()) < 0.05


def test_synthetic_from_a_gopro_root_uses_only_sharp_frames(tmp_path):
    make_pairs(tmp_path / "S1" / "blur", tmp_path / "S1" / "sharp", ["1", "2"])
    data = Deblurring().train_data(root=str(tmp_path), synthetic=True, crop=16)
    assert [p.parent.name for p in data.paths] == ["sharp", "sharp"]
    with pytest.raises(DataError, match="remove blur"):
        Deblurring().train_data(blur=str(tmp_path / "S1" / "blur"), synthetic=True)


def test_mixing_real_pairs_with_synthetic_blur(tmp_path):
    make_pairs(tmp_path / "blur", tmp_path / "sharp", ["a", "b"])
    task = Deblurring(kernel_size=5, synthetic_prob=0.5)
    data = task.train_data(blur=str(tmp_path / "blur"), sharp=str(tmp_path / "sharp"), crop=16)
    batch = next(iter(DataLoader(data, batch_size=16, sampler=keys(16))))
    flags = batch["synthetic"]
    assert 0 < int(flags.sum()) < 16
    blurred, sharp = task.make_batch(batch, CPU)
    real = ~flags
    torch.testing.assert_close(blurred[real], batch["input"][real])
    for i in flags.nonzero().flatten().tolist():
        expected = blur(batch["context"][i], batch["kernel"][i], padding="valid").clamp(0, 1)
        torch.testing.assert_close(blurred[i], expected)


def test_real_kernels_from_files(tmp_path):
    kernel = np.zeros((11, 11), dtype=np.uint8)
    kernel[5, 1:10] = 255  # a horizontal 9-pixel streak
    write_image(tmp_path / "kernels" / "streak.png", kernel)
    write_image(tmp_path / "sharp" / "a.png", random_image(0))
    task = Deblurring(kernels=str(tmp_path / "kernels"), kernel_size=7)
    assert task.kernel_size == 11  # grown to fit the largest kernel
    data = task.train_data(sharp=str(tmp_path / "sharp"), synthetic=True, crop=16)
    drawn = data[SampleKey(0, 0, 0)]["kernel"]
    streak = torch.tensor(kernel / kernel.sum(), dtype=torch.float32)
    # One of the 8 flips/rotations of the file's kernel.
    assert torch.equal(drawn, streak) or torch.equal(drawn, streak.T)
    with pytest.raises(DataError, match="no such"):
        Deblurring(kernels=str(tmp_path / "nothing"))


def test_synthetic_validation_is_seeded_per_image(tmp_path):
    for i in range(2):
        write_image(tmp_path / "sharp" / f"{i}.png", random_image(i, 32, 32))
    task = Deblurring(kernel_size=9, noise=0.01)
    a = task.val_data(sharp=str(tmp_path / "sharp"), synthetic=True)
    b = task.val_data(sharp=str(tmp_path / "sharp"), synthetic=True)
    c = task.val_data(sharp=str(tmp_path / "sharp"), synthetic=True, seed=1)
    torch.testing.assert_close(a[1]["input"], b[1]["input"], atol=0, rtol=0)
    assert not torch.equal(a[1]["input"], c[1]["input"])
    assert not torch.equal(a[0]["input"], a[1]["input"])
    assert a[0]["input"].shape == a[0]["target"].shape == (3, 32, 32)
    blurred, sharp = task.make_batch({k: v[None] for k, v in a[0].items() if k != "name"}, CPU, training=False)
    assert task.metrics(blurred, sharp)["psnr"] < 40


# --- bad files ------------------------------------------------------------------------------------


def test_unreadable_image_stops_or_is_skipped(tmp_path):
    make_pairs(tmp_path / "blur", tmp_path / "sharp", ["a", "b"])
    (tmp_path / "sharp" / "a.png").write_bytes(b"not a png")
    task = Deblurring()
    strict = task.train_data(blur=str(tmp_path / "blur"), sharp=str(tmp_path / "sharp"), crop=8)
    with pytest.raises(ImageReadError, match="a.png"):
        strict[0]
    lenient = task.train_data(blur=str(tmp_path / "blur"), sharp=str(tmp_path / "sharp"), crop=8, skip_bad=True)
    with pytest.warns(UserWarning, match="a.png"):
        item = lenient[SampleKey(0, 0, 0)]
    assert_aligned(item)
    # The substitute is deterministic: the next pair, cropped by the same key.
    with pytest.warns(UserWarning, match="a.png"):
        again = lenient[SampleKey(0, 0, 0)]
    torch.testing.assert_close(item["target"], again["target"])


def test_cache_gives_the_same_crops(tmp_path):
    make_pairs(tmp_path / "blur", tmp_path / "sharp", ["a"])
    args = {"blur": str(tmp_path / "blur"), "sharp": str(tmp_path / "sharp"), "crop": 16}
    cached = Deblurring().train_data(cache=True, **args)
    plain = Deblurring().train_data(**args)
    for key in keys(3):
        torch.testing.assert_close(cached[key]["target"], plain[key]["target"], atol=0, rtol=0)
    assert cached.loader._cache[0][1].dtype == torch.uint8


# --- task contract ----------------------------------------------------------------------------------


def test_constructor_checks_arguments():
    with pytest.raises(ValueError, match="kernel_size"):
        Deblurring(kernel_size=8)
    with pytest.raises(ValueError, match="noise"):
        Deblurring(noise=25)
    with pytest.raises(ValueError, match="noise"):
        Deblurring(noise=[0.1, 0.05])
    with pytest.raises(ValueError, match="synthetic_prob"):
        Deblurring(synthetic_prob=1.5)


def test_metrics_baseline_and_preview():
    task = Deblurring()
    assert (task.name, task.scale, task.primary_metric) == ("deblurring", 1, "psnr")
    target = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    same = task.metrics(target, target)
    assert math.isinf(same["psnr"]) and abs(same["ssim"] - 1) < 1e-9
    noisy = (target + 0.05 * torch.randn(target.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    scores = task.baseline_metrics(noisy, target)
    assert 20 < scores["psnr"] < 35 and 0 < scores["ssim"] < 1
    picture = task.preview(noisy, target, target)
    assert picture.shape == (3, 24, 72)
    torch.testing.assert_close(picture[:, :, 24:48], target[0])


def test_task_resolves_through_the_core_registration():
    from restorekit.core_plugin import TASKS
    from restorekit.registry import Component

    target, _ = TASKS["deblurring"]
    component = Component("deblurring", "tasks", target, "core")
    assert component.factory is Deblurring
    assert component.check_args({"noise": 0.01, "kernel_sise": 31})[0][0] == "kernel_sise"


# --- real GoPro pairs -----------------------------------------------------------------------------

# Blurred-input baseline of the 7 pairs of ``deblur/gopro-avg8`` (blur = mean of 8 frames), RGB PSNR/SSIM
# with the output rounded to 8 bits and no border shaved: the floor a deblurring model must beat there.
GOPRO_AVG8_BASELINE = {
    "GOPR0384_11_00_203": (22.5988, 0.7152),
    "GOPR0384_11_00_386": (31.6622, 0.9355),
    "GOPR0410_11_00_1193": (25.5839, 0.8666),
    "GOPR0410_11_00_151": (28.3917, 0.8205),
    "GOPR0410_11_00_326": (27.7253, 0.8332),
    "GOPR0410_11_00_448": (24.1803, 0.7147),
    "GOPR0410_11_00_472": (29.5426, 0.8829),
}


def gopro_avg8(shared_data: Path) -> Path:
    root = shared_data / "deblur" / "gopro-avg8"
    if not (root / "blur").is_dir():
        pytest.skip(f"{root} not found")
    return root


def test_real_gopro_pairs_load_as_two_folders(shared_data):
    root = gopro_avg8(shared_data)
    task = Deblurring()
    val = task.val_data(blur=str(root / "blur"), sharp=str(root / "sharp"))
    assert [p.stem for p in val.paths] == list(GOPRO_AVG8_BASELINE)
    # The folder also reads as a one-sequence GoPro root.
    assert task.val_data(root=str(root)).paths == val.paths
    item = val[0]
    assert item["input"].shape == item["target"].shape == (3, 720, 1280)
    blurred, sharp = task.make_batch({"input": item["input"][None], "target": item["target"][None]}, CPU)
    scores = task.metrics(blurred, sharp)
    expected_psnr, expected_ssim = GOPRO_AVG8_BASELINE[item["name"]]
    assert abs(scores["psnr"] - expected_psnr) < 1e-3 and abs(scores["ssim"] - expected_ssim) < 1e-3
    training = task.train_data(blur=str(root / "blur"), sharp=str(root / "sharp"), crop=64)
    crop = training[SampleKey(0, 0, 3)]
    assert crop["input"].shape == crop["target"].shape == (3, 64, 64)
    # Real blur: the crops differ, but only moderately (the same place, 8 frames averaged).
    assert 0.0 < float((crop["input"] - crop["target"]).abs().mean()) < 0.2


@pytest.mark.slow
def test_real_gopro_pairs_baseline(shared_data):
    root = gopro_avg8(shared_data)
    task = Deblurring()
    val = task.val_data(blur=str(root / "blur"), sharp=str(root / "sharp"))
    scores = {}
    for i in range(len(val)):
        item = val[i]
        scores[item["name"]] = task.baseline_metrics(item["input"][None], item["target"][None])
    for name, (expected_psnr, expected_ssim) in GOPRO_AVG8_BASELINE.items():
        assert abs(scores[name]["psnr"] - expected_psnr) < 1e-3, (name, scores[name])
        assert abs(scores[name]["ssim"] - expected_ssim) < 1e-3, (name, scores[name])
    mean_psnr = sum(s["psnr"] for s in scores.values()) / len(scores)
    mean_ssim = sum(s["ssim"] for s in scores.values()) / len(scores)
    assert abs(mean_psnr - 27.098) < 1e-3 and abs(mean_ssim - 0.8241) < 1e-3
