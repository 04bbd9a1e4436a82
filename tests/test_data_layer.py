"""The one paired-image data layer and the tasks' benchmark protocol (issue 11, parts 2 and 3)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from restorekit.data.crops import PairedCrops
from restorekit.data.folders import DataError
from restorekit.data.images import load_rgb, save_rgb
from restorekit.data.resize import imresize
from restorekit.data.sampling import SampleKey
from restorekit.data.sources import PairLoader, to_uint8
from restorekit.fileio import TEMPORARY, remove_temporaries
from restorekit.metrics import psnr, ssim
from restorekit.tasks.base import EvalSample, EvalSet, Task
from restorekit.tasks.deblurring import Deblurring
from restorekit.tasks.super_resolution import SuperResolution

SET5 = Path(__file__).resolve().parents[2] / "shared" / "data" / "sr-bench" / "Set5"
if not SET5.is_dir():
    SET5 = Path("/work/shared/data/sr-bench/Set5")
needs_set5 = pytest.mark.skipif(not (SET5 / "HR").is_dir(), reason="shared Set5 data not present")


def write(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def image(seed: int, h: int = 24, w: int = 28) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


# --- one source and one crop dataset for both tasks ----------------------------------------------


def test_both_tasks_train_on_the_same_crop_dataset_and_loader(tmp_path):
    for i in range(2):
        write(tmp_path / "hr" / f"{i}.png", image(i))
        write(tmp_path / "blur" / f"{i}.png", image(10 + i))
    sr = SuperResolution(scale=2).train_data(hr=str(tmp_path / "hr"), crop=8)
    deblur = Deblurring().train_data(blur=str(tmp_path / "blur"), sharp=str(tmp_path / "hr"), crop=8)
    synthetic = Deblurring(kernel_size=5).train_data(sharp=str(tmp_path / "hr"), synthetic=True, crop=8)
    for data in (sr, deblur, synthetic):
        assert type(data) is PairedCrops
        assert isinstance(data.loader, PairLoader)
    assert sr.paths == deblur.paths
    # The same key gives the same item (the reproducibility contract), in both tasks.
    key = SampleKey(3, 1, 1)
    torch.testing.assert_close(sr[key]["target"], sr[key]["target"], atol=0, rtol=0)
    a, b = synthetic[key], synthetic[key]
    assert a["context"].shape == (3, 8 + 4, 8 + 4)
    torch.testing.assert_close(a["kernel"], b["kernel"], atol=0, rtol=0)


def test_crops_of_cached_and_uncached_images_are_equal(tmp_path):
    write(tmp_path / "hr" / "a.png", image(0, 10, 12))  # smaller than the crop: padded
    write(tmp_path / "hr" / "b.png", image(1, 40, 40))
    plain = SuperResolution(scale=4).train_data(hr=str(tmp_path / "hr"), crop=16)
    cached = SuperResolution(scale=4).train_data(hr=str(tmp_path / "hr"), crop=16, cache=True)
    for index in range(4):
        key = SampleKey(0, 0, index % 2)
        torch.testing.assert_close(plain[key]["target"], cached[key]["target"], atol=0, rtol=0)


def test_sr_pairs_of_wrong_size_name_the_file(tmp_path):
    write(tmp_path / "hr" / "a.png", image(0, 16, 16))
    write(tmp_path / "lr" / "a.png", image(0, 8, 8))
    data = SuperResolution(scale=4).train_data(hr=str(tmp_path / "hr"), lr=str(tmp_path / "lr"), crop=8)
    with pytest.raises(DataError, match=r"lr/a.png: size 8x8 does not match a.png"):
        data[0]
    with pytest.raises(DataError, match=r"lr/a.png: LR image is 8x8, expected 4x4"):
        SuperResolution(scale=4).val_data(hr=str(tmp_path / "hr"), lr=str(tmp_path / "lr"))[0]


# --- the benchmark protocol ----------------------------------------------------------------------


@needs_set5
def test_sr_validation_inputs_equal_restore_eval_lr_bit_for_bit():
    task = SuperResolution(scale=4)
    made = task.val_data(hr=str(SET5 / "HR"))
    shipped = task.benchmark(str(SET5), inputs=str(SET5))
    assert isinstance(made, EvalSet) and len(made) == len(shipped) == 5
    assert made.settings["lr_source"] == "matlab_bicubic" and shipped.settings["lr_source"] == "files"
    for ours, theirs in zip(made, shipped):
        hr = load_rgb(SET5 / "HR" / f"{ours.name}.png")
        h, w = hr.shape[-2] // 4 * 4, hr.shape[-1] // 4 * 4
        expected = imresize(to_uint8(hr[:, :h, :w]), 1 / 4)
        assert torch.equal(to_uint8(ours.input), expected), ours.name
        # The shipped LR_bicubic/X4 files are MATLAB's uint8 imresize: equal too.
        assert torch.equal(to_uint8(theirs.input), expected), ours.name
        assert torch.equal(ours.target, theirs.target)


@needs_set5
def test_sr_metrics_and_bicubic_baseline_follow_the_published_protocol():
    task = SuperResolution(scale=4)
    sample = task.val_data(hr=str(SET5 / "HR"), include=["baby"])[0]
    out = task.baseline("bicubic", sample.input)
    assert out.shape == sample.target.shape
    expected = imresize(to_uint8(sample.input), 4.0).float() / 255
    assert torch.equal(out, expected)
    scores = task.metrics(out, sample.target)
    assert list(scores) == list(task.metric_names)
    assert scores["psnr_y"] == float(psnr(out, sample.target, border=4, channel="y"))
    assert scores["ssim_y"] == float(ssim(out, sample.target, border=4, channel="y"))
    assert task.baseline_metrics(sample.input[None], sample.target[None]) == pytest.approx(scores)


def test_deblurring_benchmark_reads_folders_and_gopro_alike(tmp_path):
    for seq in ("S1", "S2"):
        for i in range(2):
            write(tmp_path / "gopro" / seq / "sharp" / f"{i}.png", image(i))
            write(tmp_path / "gopro" / seq / "blur" / f"{i}.png", image(5 + i))
    task = Deblurring()
    gopro = task.benchmark(str(tmp_path / "gopro"))
    folders = task.benchmark(str(tmp_path / "gopro" / "S1" / "sharp"), inputs=str(tmp_path / "gopro" / "S1" / "blur"))
    assert gopro.names == ["S1_0", "S1_1", "S2_0", "S2_1"] and folders.names == ["0", "1"]
    torch.testing.assert_close(gopro[1].input, folders[1].input, atol=0, rtol=0)
    first = gopro[0]
    assert task.baseline("identity", first.input) is first.input
    assert list(task.metrics(gopro[0].input, gopro[0].target)) == ["psnr", "ssim"]
    validation = task.val_data(root=str(tmp_path / "gopro"), limit=3)
    assert validation.names == gopro.names[:3]
    with pytest.raises(DataError, match="no GoPro sequences"):
        task.benchmark(str(tmp_path / "gopro" / "S1" / "sharp"))


def test_eval_sample_reads_like_the_earlier_validation_dict():
    sample = EvalSample("a", torch.zeros(3, 2, 2), torch.ones(3, 2, 2))
    assert sample["name"] == "a" and torch.equal(sample["target"], torch.ones(3, 2, 2))
    assert {k for k, v in sample.items() if isinstance(v, torch.Tensor)} == {"input", "target"}
    with pytest.raises(KeyError):
        sample["source"]


def test_old_style_task_still_works_and_says_it_has_no_benchmark():
    class Legacy(Task):
        name = "legacy"

    with pytest.raises(NotImplementedError, match="legacy"):
        Legacy().benchmark("x")
    assert Legacy.metric_names == () and Legacy.baselines == ()


def test_sr_scale_is_optional_until_used(tmp_path):
    task = SuperResolution()
    assert task.scale is None
    with pytest.raises(ValueError, match="scale is not set"):
        task.benchmark(str(tmp_path))
    task.scale = 3
    assert task.scale == 3
    with pytest.raises(ValueError, match="scale"):
        SuperResolution(scale=0)


# --- one atomic writer ----------------------------------------------------------------------------


def test_image_writes_use_the_standard_temporary_name(tmp_path, monkeypatch):
    seen: list[str] = []
    real = Image.Image.save

    def spy(self, fp, *args, **kwargs):
        seen.append(Path(getattr(fp, "name", fp)).name)
        return real(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", spy)
    save_rgb(torch.rand(3, 5, 6), tmp_path / "out.png")
    assert seen and all(TEMPORARY.match(name) and name.startswith(".out.png.") for name in seen)
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_image_write_leftovers_are_cleaned_by_remove_temporaries(tmp_path):
    from restorekit.data import image_write

    class Killed(BaseException):
        """Stands for a SIGKILL: nothing after it runs."""

    names: list[str] = []

    def dying_writer(handle):
        names.append(Path(handle.name).name)
        handle.write(b"half an image")
        raise Killed

    with pytest.raises(Killed):
        image_write._write_atomically(tmp_path / "x.png", dying_writer)
    assert TEMPORARY.match(names[0]) and list(tmp_path.iterdir()) == []  # an error cleans up at once
    # What a real kill leaves behind has the same name, so the clean-up every writer relies on finds it.
    (tmp_path / names[0]).write_bytes(b"half an image")
    assert [p.name for p in remove_temporaries(tmp_path)] == [names[0]]
    assert list(tmp_path.iterdir()) == []
