"""Training on prepared sub-images: the manifest path, the memory-mapped store, 8-bit crops (issue 16)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from restorekit.data import sources, subimages
from restorekit.data.crops import PairedCrops
from restorekit.data.folders import DataError
from restorekit.data.images import load_rgb
from restorekit.data.prepare import PrepareSettings, prepare_subimages
from restorekit.data.sampling import ResumableSampler, SampleKey
from restorekit.data.sources import ImagePair, PairLoader, as_float, check_readable
from restorekit.data.subimages import MANIFEST, decode_8bit
from restorekit.tasks.super_resolution import SuperResolution

SETTINGS = PrepareSettings(crop=48, step=24)


def noise(seed: int, h: int, w: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def write(path: Path, array: np.ndarray, **save) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **save)
    return path


@pytest.fixture()
def large(tmp_path: Path) -> Path:
    """Three "large" HR images with their x4 LR images (LR = HR at every 4th pixel)."""
    for i, (h, w) in enumerate([(100, 120), (76, 96), (40, 44)]):
        hr = noise(i, h, w)
        write(tmp_path / "hr" / f"im{i}.png", hr)
        write(tmp_path / "lr" / f"im{i}x4.png", np.ascontiguousarray(hr[::4, ::4]))
    return tmp_path


def prepared(root: Path, fmt: str, lr: bool = False) -> Path:
    out = root / f"prepared_{fmt}{'_lr' if lr else ''}"
    settings = PrepareSettings(crop=48, step=24, format=fmt)
    prepare_subimages(root / "hr", out, lr={4: root / "lr"} if lr else None, settings=settings, workers=0)
    return out


def keys(n: int, epochs: int = 2) -> list[SampleKey]:
    return [SampleKey(5, e, i) for e in range(epochs) for i in range(n)]


# --- the task reads the manifest -----------------------------------------------------------------------


def test_a_prepared_folder_trains_on_its_sub_images(large):
    out = prepared(large, "png")
    data = SuperResolution(scale=4).train_data(hr=str(out), crop=32)
    assert isinstance(data, PairedCrops)
    files = sorted((out / "HR").glob("*.png"))
    assert data.paths == files and len(data) == len(files)
    # The same crops as the sub-image folder read like any folder of images.
    plain = PairedCrops([ImagePair(p.stem, p) for p in files], crop=32, scale=4, target_label="HR")
    for key in keys(len(data)):
        assert torch.equal(data[key]["target"], plain[key]["target"])
    # Pointing at OUT/HR is the same set.
    assert SuperResolution(scale=4).train_data(hr=str(out / "HR"), crop=32).paths == files


@pytest.mark.parametrize("lr", [False, True], ids=["hr-only", "paired-x4"])
def test_the_store_gives_the_same_crops_as_the_png_sub_images(large, lr):
    task = SuperResolution(scale=4)
    png, npy = prepared(large, "png", lr), prepared(large, "npy", lr)
    a = task.train_data(hr=str(png), lr=str(png) if lr else None, crop=32)
    b = task.train_data(hr=str(npy), lr=str(npy) if lr else None, crop=32)
    assert len(a) == len(b) > 10
    assert all(p.stored_target is not None for p in b.pairs) and all(p.stored_target is None for p in a.pairs)
    for key in keys(len(a)):
        x, y = a[key], b[key]
        assert x.keys() == y.keys() == ({"target", "input"} if lr else {"target"})
        for name in x:
            assert x[name].dtype == torch.float32
            assert torch.equal(x[name], y[name]), (key, name)
    if lr:  # aligned: the LR crop is the HR crop at every 4th pixel (how the fixture made the LR)
        unflipped = task.train_data(hr=str(npy), lr=str(npy), crop=32, flip=False, rot90=False)
        for key in keys(len(unflipped), epochs=1):
            item = unflipped[key]
            assert torch.equal(item["target"][:, ::4, ::4], item["input"])


def test_include_selects_sources_or_sub_images(large):
    out = prepared(large, "npy")
    task = SuperResolution(scale=4)
    assert {p.name for p in task.train_data(hr=str(out), crop=16, include=["im2"]).pairs} == {"im2_s001"}
    assert [p.name for p in task.train_data(hr=str(out), crop=16, include=["im0_s003"]).pairs] == ["im0_s003"]
    with pytest.raises(DataError, match="none of nope found"):
        task.train_data(hr=str(out), crop=16, include=["nope"])


def test_prepared_folders_that_cannot_serve_are_refused(large):
    out = prepared(large, "png")
    task = SuperResolution(scale=4)
    with pytest.raises(DataError, match=r"no x4 LR sub-images \(prepared with: none\)"):
        task.train_data(hr=str(out), lr=str(out), crop=16)
    with pytest.raises(DataError, match=r"is not the prepared folder"):
        task.train_data(hr=str(out), lr=str(large / "lr"), crop=16)
    # An unfinished run (killed) is not trained on.
    manifest = out / MANIFEST
    lines = manifest.read_text().splitlines()
    header = json.loads(lines[0])
    manifest.write_text("\n".join([json.dumps({**header, "complete": False}), *lines[1:]]) + "\n")
    with pytest.raises(DataError, match=r"restore prepare did not finish \(3 source image\(s\) done\)"):
        task.train_data(hr=str(out), crop=16)
    # A store shard cut short is named.
    store = prepared(large, "npy")
    shard = store / "store" / "HR" / "im1.npy"
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(DataError, match=r"im1\.npy: \d+ bytes, the manifest says \d+"):
        task.train_data(hr=str(store), crop=16)


def test_failed_sources_are_left_out_with_a_warning(large):
    (large / "hr" / "broken.png").write_bytes(b"not an image")
    out = large / "out"
    prepare_subimages(large / "hr", out, settings=SETTINGS, workers=0)
    with pytest.warns(UserWarning, match=r"1 source image\(s\) could not be prepared"):
        data = SuperResolution(scale=4).train_data(hr=str(out), crop=16)
    assert not any(p.name.startswith("broken") for p in data.pairs)


def test_check_readable_trusts_the_manifest_and_opens_what_changed(large, monkeypatch):
    out = prepared(large, "png")
    files = sorted((out / "HR").glob("*.png"))
    opened: list[str] = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda path, *a, **k: opened.append(Path(path).name) or real_open(path, *a, **k))
    assert check_readable(files, skip_bad=False) == files
    assert opened == []  # the manifest vouched for every file
    files[1].write_bytes(b"garbage")  # replaced since: another size, so it is opened, and fails
    with pytest.raises(DataError, match=rf"{files[1].name}: not an image file"):
        check_readable(files, skip_bad=False)
    assert opened == [files[1].name]


# --- 8-bit reads equal load_rgb ------------------------------------------------------------------------


def test_decode_8bit_equals_load_rgb_and_declines_what_it_does_not_know(tmp_path):
    rgb = noise(0, 20, 30)
    made = {
        "rgb.png": (rgb, {}),
        "gray.png": (rgb[..., 0], {}),
        "photo.jpg": (rgb, {"quality": 90}),
        "bitmap.bmp": (rgb, {}),
    }
    for name, (array, save) in made.items():
        path = write(tmp_path / name, array, **save)
        samples = decode_8bit(path)
        assert samples is not None and samples.dtype == np.uint8 and samples.flags.writeable
        expected = load_rgb(path)
        got = torch.from_numpy(samples).permute(2, 0, 1).expand(3, -1, -1).float() / 255
        assert torch.equal(got, expected), name
    declined = {
        "rgba.png": Image.fromarray(np.dstack([rgb, rgb[..., :1]])),
        "palette.png": Image.fromarray(rgb).convert("P"),
        "deep_gray.png": Image.fromarray(rgb[..., 0].astype(np.uint16) * 257),
    }
    for name, image in declined.items():
        image.save(tmp_path / name)
        assert decode_8bit(tmp_path / name) is None, name
    # 16-bit colour PNG, which Pillow itself reports as 8-bit "RGB".
    from restorekit.data.images import Picture, write_picture

    deep = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255 + 1 / 65535
    write_picture(Picture(rgb=deep, bit_depth=16), tmp_path / "deep.png")
    assert (tmp_path / "deep.png").read_bytes()[24] == 16  # IHDR bit depth
    with Image.open(tmp_path / "deep.png") as im:
        assert im.mode == "RGB"
    assert decode_8bit(tmp_path / "deep.png") is None
    rotated = Image.fromarray(rgb)
    exif = rotated.getexif()
    exif[0x0112] = 6
    rotated.save(tmp_path / "rotated.jpg", exif=exif)
    assert decode_8bit(tmp_path / "rotated.jpg") is None


def test_crops_from_levels_equal_crops_from_float_images(tmp_path, monkeypatch):
    for i in range(3):
        write(tmp_path / "hr" / f"{i}.png", noise(i, 40, 52))
    write(tmp_path / "hr" / "gray.png", noise(9, 40, 52)[..., 0])
    write(tmp_path / "hr" / "tiny.png", noise(7, 10, 12))  # smaller than the crop: padded
    data = SuperResolution(scale=2).train_data(hr=str(tmp_path / "hr"), crop=16)
    fast = [data[key] for key in keys(len(data))]
    monkeypatch.setattr(sources, "decode_8bit", lambda *a, **k: None)  # everything through load_rgb
    slow = [data[key] for key in keys(len(data))]
    for x, y in zip(fast, slow):
        assert torch.equal(x["target"], y["target"])
    # load() keeps its contract: float images (deblurring's validation reads them).
    loader = PairLoader(data.pairs)
    _, target = loader.load(0)
    assert target.dtype == torch.float32 and torch.equal(as_float(loader.load_levels(0)[1]), target)


# --- workers, resume, bounded memory -----------------------------------------------------------------


def _stream(dataset, *, workers: int, start_batch: int, batches: int) -> list[torch.Tensor]:
    sampler = ResumableSampler(len(dataset), seed=7, batch_size=4, start_batch=start_batch)
    loader = DataLoader(dataset, batch_size=4, sampler=sampler, num_workers=workers)
    out = []
    for batch in loader:
        out.append(batch["target"])
        if len(out) == batches:
            break
    return out


def test_workers_and_resumed_streams_see_the_same_crops(large):
    data = SuperResolution(scale=4).train_data(hr=str(prepared(large, "npy")), crop=32)
    one = _stream(data, workers=0, start_batch=0, batches=8)
    two = _stream(data, workers=2, start_batch=0, batches=8)
    resumed = _stream(data, workers=2, start_batch=5, batches=3)
    assert all(torch.equal(a, b) for a, b in zip(one, two))
    assert all(torch.equal(a, b) for a, b in zip(one[5:], resumed))


def test_the_store_keeps_a_bounded_number_of_maps_and_no_images(large, monkeypatch):
    for i in range(8):
        write(large / "hr" / f"extra{i}.png", noise(20 + i, 30, 30))
    out = large / "store"
    prepare_subimages(large / "hr", out, settings=PrepareSettings(crop=48, step=24, format="npy"), workers=0)
    monkeypatch.setattr(subimages, "_MAX_MAPS", 3)
    subimages._MAPS.clear()
    data = SuperResolution(scale=4).train_data(hr=str(out), crop=16)
    for key in keys(len(data)):
        data[key]
    assert len({p.stored_target.shard for p in data.pairs}) == 11
    assert len(subimages._MAPS) == 3 and data.loader._cache == {}


def test_a_run_on_a_prepared_store_resumes_exactly(large, tiny_recipe, tmp_path):
    """``restore run`` semantics on a store: 4 steps at once equal 2 steps, a checkpoint, and 2 more."""
    from restorekit.recipe import load_recipe
    from restorekit.train.trainer import train

    store = prepared(large, "npy")
    common = [f'data.train.hr="{store}"', "data.train.crop=16", "output.checkpoint_every=2", "output.val_every=100"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        whole = train(load_recipe(tiny_recipe(), [*common, "train.steps=4", f'output.dir="{tmp_path / "a"}"']), quiet=True)
        train(load_recipe(tiny_recipe(), [*common, "train.steps=2", f'output.dir="{tmp_path / "b"}"']), quiet=True)
        resumed = train(
            load_recipe(tiny_recipe(), [*common, "train.steps=4", f'output.dir="{tmp_path / "b"}"']), resume=True, quiet=True
        )
    from safetensors.torch import load_file

    a, b = load_file(str(whole.weights)), load_file(str(resumed.weights))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_cache_is_not_used_for_a_store(large):
    store = prepared(large, "npy")
    with pytest.warns(UserWarning, match="cache is ignored for a sub-image store"):
        data = SuperResolution(scale=4).train_data(hr=str(store), crop=16, cache=True)
    data[SampleKey(0, 0, 0)]
    assert data.loader.cache is False and data.loader._cache == {}
