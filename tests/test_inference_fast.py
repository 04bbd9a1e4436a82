"""The fast inference path: equal to the plain fp32 pass within one 8-bit level, never changing the network.

Speed is measured by ``benchmarks/apply_vs_spandrel.py``, not here: these tests check that what makes it
fast (channels-last, packed oneDNN convolutions, balanced tiles, batches fitted to a memory budget, the
decode/compute/encode pipeline of ``restore apply``) leaves the result alone.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from restorekit.data.images import load_rgb
from restorekit.inference.model import RestorationModel
from restorekit.inference.options import CLI_NAMES, InferenceOptions, InferenceOptionsError
from restorekit.inference.runner import (
    GroupedInstanceNorm2d,
    NetworkRunner,
    PackedConv2d,
    activation_bytes_per_pixel,
    cpu_bf16_native,
    group_instance_norms,
    pack_convolutions,
)
from restorekit.inference.tiling import balanced_tile, count_tiles, tile_layout, tiled_apply
from restorekit.plugins import get_plugins
from restorekit.weights import WeightInfo, save_weights

REGISTRY = get_plugins().registry("generators")
GENERATORS = REGISTRY.names()
ONE_LEVEL = 1 / 255


def build(name: str, seed: int = 0) -> tuple[nn.Module, WeightInfo]:
    """*name* at its registration's ``tiny_args`` (how plugin generators are covered too)."""
    comp = REGISTRY.get(name)
    args = dict(comp.info.get("tiny_args", {}))
    torch.manual_seed(seed)
    net = comp.build(**args).eval()
    task = comp.info.get("task", "")
    return net, WeightInfo(name=name, args=args, plugin=comp.plugin, scale=int(net.scale), task=task)


def models(net: nn.Module, info: WeightInfo, **options: object) -> tuple[RestorationModel, RestorationModel]:
    """The same network as the fast path and as the plain fp32 reference, with the same options."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tile_with_warning networks warn about tiles; not the subject here
        fast = RestorationModel(net, info, options=InferenceOptions(device="cpu", precision="fp32", **options))
        plain = RestorationModel(
            net, info, options=InferenceOptions(device="cpu", precision="fp32", fast=False, **options)
        )
    return fast, plain


def eight_bit(image: torch.Tensor) -> torch.Tensor:
    return (image.clamp(0, 1) * 255).round()


@pytest.fixture(scope="module")
def set5(shared_data: Path) -> list[torch.Tensor]:
    """Set5's x4 low-resolution photographs (real images, 57 to 128 pixels a side)."""
    folder = shared_data / "sr-bench" / "Set5" / "LR_bicubic" / "X4"
    paths = sorted(folder.glob("*.png"))
    if not paths:
        pytest.skip(f"no Set5 LR images in {folder}")
    return [load_rgb(path) for path in paths]


# --- equal output on real photographs, for every registered generator -----------------------------------


@pytest.mark.parametrize("name", GENERATORS)
def test_fast_path_equals_plain_fp32_on_set5(name: str, set5: list[torch.Tensor]) -> None:
    net, info = build(name)
    fast, plain = models(net, info)
    assert fast.runner.fast and not plain.runner.fast
    for image in set5:
        ours, reference = fast.restore_tensor(image), plain.restore_tensor(image)
        assert ours.shape == reference.shape
        assert float((eight_bit(ours) - eight_bit(reference)).abs().max()) <= 1, name
        assert float((ours - reference).abs().max()) < 1e-3, name  # float rounding, far below a level


@pytest.mark.parametrize("name", GENERATORS)
def test_fast_path_equals_plain_fp32_in_tiles(name: str, set5: list[torch.Tensor]) -> None:
    """Several (balanced) tiles and batches on the fast path, the plain layout on the reference."""
    net, info = build(name)
    fast, plain = models(net, info, tile=48, overlap=8, batch_size=2)
    image = max(set5, key=lambda im: im.shape[-1] * im.shape[-2])[:, :96, :90]  # a crop of baby: 9 tiles
    assert count_tiles(*image.shape[-2:], 48, 8, fast.plan.multiple) >= 9
    ours, reference = fast.restore_tensor(image), plain.restore_tensor(image)
    assert float((eight_bit(ours) - eight_bit(reference)).abs().max()) <= 1, name


def test_fast_path_on_a_real_photograph_through_pil(set5: list[torch.Tensor]) -> None:
    net, info = build("srvgg_compact")
    fast, plain = models(net, info)
    array = (set5[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    ours = np.asarray(fast(Image.fromarray(array)), dtype=np.int16)
    reference = np.asarray(plain(Image.fromarray(array)), dtype=np.int16)
    assert ours.shape == reference.shape and int(np.abs(ours - reference).max()) <= 1


# --- the network is left alone ------------------------------------------------------------------------


def test_packed_convolutions_are_plain_convolutions_outside_the_fast_path() -> None:
    net, info = build("rrdbnet")
    x = torch.rand(2, 3, 20, 24)
    with torch.inference_mode():
        before_out = net(x)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert pack_convolutions(net) == len(convs) > 0
    # Same objects, same parameters, same state dict; only the class changed.
    assert [m for m in net.modules() if isinstance(m, nn.Conv2d)] == convs
    assert all(type(m) is PackedConv2d for m in convs)
    assert net.state_dict().keys() == before.keys()
    assert all(torch.equal(before[k], v) and v.is_contiguous() for k, v in net.state_dict().items())
    with torch.inference_mode():
        assert torch.equal(net(x), before_out)  # outside a runner: bit for bit nn.Conv2d
        fast = NetworkRunner(net, device=torch.device("cpu"))(x)
    assert float((fast - before_out).abs().max()) < 1e-5
    copy.deepcopy(net)  # packed oneDNN tensors are dropped from copies (and pickles), made again on use


def test_instance_norms_run_as_group_norms_only_on_the_fast_path() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.InstanceNorm2d(16), nn.ReLU(), nn.Conv2d(16, 3, 3, padding=1),
        nn.InstanceNorm2d(3, affine=True, track_running_stats=True),  # eval: running statistics, left alone
    ).eval()
    x = torch.rand(2, 3, 19, 23) * 4
    with torch.inference_mode():
        before = net(x)
    assert group_instance_norms(net) == 2
    assert type(net[1]) is GroupedInstanceNorm2d and isinstance(net[4], nn.InstanceNorm2d)
    with torch.inference_mode():
        assert torch.equal(net(x), before)  # outside the fast path: InstanceNorm2d itself
        fast = NetworkRunner(net, device=torch.device("cpu"))
        out = fast(x)
    assert fast.grouped == 2 and "instance norms as group norms" in fast.description
    assert float((out - before).abs().max()) < 1e-4


def test_a_stateful_network_keeps_its_state_on_the_fast_path() -> None:
    class Counting(nn.Module):
        scale = 1

        def __init__(self) -> None:
            super().__init__()
            self.conv, self.calls = nn.Conv2d(3, 3, 3, padding=1), 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            return self.conv(x)

    net = Counting().eval()
    fast, _ = models(net, WeightInfo(name="counting", args={}))
    fast.restore_tensor(torch.rand(3, 10, 10))
    assert net.calls == 1


def test_weights_changed_in_place_are_picked_up() -> None:
    net, info = build("srvgg_compact")
    fast, plain = models(net, info)
    image = torch.rand(3, 30, 26)
    first = fast.restore_tensor(image)
    with torch.no_grad():
        net.body[0].weight.mul_(-1.5)  # e.g. load_state_dict of other weights into the same network
    second, reference = fast.restore_tensor(image), plain.restore_tensor(image)
    assert float((second - first).abs().max()) > 1e-2
    assert float((second - reference).abs().max()) < 1e-5


class ViewsItsInput(nn.Module):
    """Reshapes with ``view``, which a channels-last tensor refuses: the fast path must fall back."""

    scale = 1

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        flat = x.view(b, c * h * w)  # needs NCHW-contiguous memory
        return self.conv(flat.view(b, c, h, w))


def test_a_network_the_fast_path_cannot_run_falls_back_with_one_warning() -> None:
    net = ViewsItsInput().eval()
    info = WeightInfo(name="views", args={})
    fast, plain = models(net, info)
    image = torch.rand(3, 17, 23)
    with pytest.warns(UserWarning, match="fast inference path failed"):
        out = fast.restore_tensor(image)
    assert torch.allclose(out, plain.restore_tensor(image), atol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once; later images take the plain path silently
        fast.restore_tensor(image)
    assert fast.runner.description.startswith("plain (fast path failed")


def test_a_bad_input_is_reported_as_such_not_as_a_fast_path_failure() -> None:
    net, info = build("srresnet")
    runner = NetworkRunner(net, device=torch.device("cpu"))
    with pytest.raises(RuntimeError):
        runner(torch.rand(1, 5, 12, 12))  # 5 channels: the plain path fails the same way
    assert runner.description.startswith("channels_last")


# --- balanced tiles ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("length", "tile", "overlap", "multiple"), [
    (640, 512, 32, 1), (4000, 512, 32, 1), (1000, 200, 10, 4), (101, 32, 4, 4), (513, 512, 32, 1), (97, 40, 5, 8),
])  # fmt: skip
def test_balanced_tiles_need_no_more_tiles_and_compute_fewer_pixels(
    length: int, tile: int, overlap: int, multiple: int
) -> None:
    side = balanced_tile(length, tile, overlap, multiple)
    assert side is not None and side <= tile
    plain, balanced = tile_layout(length, tile, overlap, multiple), tile_layout(length, side, overlap, multiple)
    assert len(balanced) == len(plain)
    assert sum(b - a for a, b in balanced) <= sum(b - a for a, b in plain)
    assert balanced[0][0] == 0 and balanced[-1][1] == length
    assert all(start % multiple == 0 for start, _ in balanced)
    assert all(a_stop - b_start >= 3 * overlap for (_, a_stop), (b_start, _) in zip(balanced, balanced[1:]))


def test_balanced_640_in_512_tiles_is_two_368_pixel_tiles() -> None:
    assert balanced_tile(640, 512, 32) == 368
    assert tile_layout(640, 368, 32) == [(0, 368), (272, 640)]


def test_balanced_tiled_apply_equals_the_whole_image() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 12, 3, padding=1), nn.PixelShuffle(2))
    image = torch.rand(3, 75, 61)
    calls: list[tuple[int, ...]] = []

    def model(x: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(x.shape))
        return net(x)

    out = tiled_apply(model, image, scale=2, tile=32, overlap=2, batch_size=2, balance=True)
    with torch.no_grad():
        whole = net(image[None])[0]
    assert float((out - whole).abs().max()) < 1e-5
    assert max(h for _, _, h, _ in calls) <= 32 and max(w for _, _, _, w in calls) <= 32
    assert sum(b for b, *_ in calls) == count_tiles(75, 61, 32, 2, balance=True) == count_tiles(75, 61, 32, 2)


# --- batches inside the memory budget, threads, precision -------------------------------------------------


def test_activation_estimate_of_a_known_network() -> None:
    net = nn.Conv2d(3, 64, 3, padding=1).eval()
    # Largest tensor: 64 float32 channels = 256 bytes a pixel, counted three times, plus the 3-channel input.
    assert activation_bytes_per_pixel(net, in_channels=3) == pytest.approx(3 * 256 + 12)


def test_batches_shrink_to_fit_the_memory_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    net, info = build("srvgg_compact")
    roomy = RestorationModel(net, info, options=InferenceOptions(device="cpu", tile=64, overlap=8, batch_size=4))
    assert roomy.working_tile == 64 and roomy.working_batch_size == 4  # explicit tile kept; small: batched
    big_tiles = RestorationModel(net, info, options=InferenceOptions(device="cpu", tile=512, batch_size=4))
    assert big_tiles.working_batch_size == 1  # one 512 × 512 tile a call already keeps the CPU busy
    per_tile = activation_bytes_per_pixel(net, in_channels=3) * 64 * 64
    monkeypatch.setattr("restorekit.inference.model.memory_budget", lambda device: int(2.5 * per_tile))
    tight = RestorationModel(net, info, options=InferenceOptions(device="cpu", tile=64, overlap=8, batch_size=4))
    assert tight.batch_size == 4 and tight.working_batch_size == 2
    plain = RestorationModel(net, info, options=InferenceOptions(device="cpu", tile=64, overlap=8, fast=False))
    assert plain.working_batch_size == 4  # the reference runs exactly as asked


def test_default_tile_fits_the_memory_budget_and_an_explicit_one_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    net, info = build("srvgg_compact")
    per_pixel = activation_bytes_per_pixel(net, in_channels=3)
    monkeypatch.setattr("restorekit.inference.model.memory_budget", lambda device: int(per_pixel * 700 * 700))
    fast = RestorationModel(net, info, options=InferenceOptions(device="cpu"))
    assert fast.tile == 512 and fast.working_tile == 700  # the planned default, and what fits
    assert RestorationModel(net, info, options=InferenceOptions(device="cpu", fast=False)).working_tile == 512
    assert RestorationModel(net, info, options=InferenceOptions(device="cpu", tile=256)).working_tile == 256
    totals: list[int] = []
    out = fast.restore_tensor(torch.rand(3, 600, 650), progress=lambda done, total: totals.append(total))
    assert totals == [1] and out.shape == (3, 2400, 2600)  # larger than 512, fits the budget: one pass
    monkeypatch.setattr("restorekit.inference.model.memory_budget", lambda device: int(per_pixel * 100 * 100))
    small = RestorationModel(net, info, options=InferenceOptions(device="cpu"))
    assert small.working_tile == 100  # a budget smaller than the default tile shrinks it
    reference = RestorationModel(net, info, options=InferenceOptions(device="cpu", fast=False))
    image = torch.rand(3, 530, 90)
    assert float((small.restore_tensor(image) - reference.restore_tensor(image)).abs().max()) < 1e-5


def test_threads_option_sets_torch_threads() -> None:
    net, info = build("srresnet")
    before = torch.get_num_threads()
    try:
        RestorationModel(net, info, options=InferenceOptions(device="cpu", threads=1))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize(("changes", "needle"), [
    ({"threads": 0}, "--threads must be a positive integer"),
    ({"compile": "yes"}, "--compile must be true or false"),
    ({"fast": 1}, "fast must be true or false"),
])  # fmt: skip
def test_new_options_are_validated_with_one_line(changes: dict, needle: str) -> None:
    with pytest.raises(InferenceOptionsError) as caught:
        InferenceOptions(**changes)
    assert needle in caught.value.render(CLI_NAMES)


def test_bf16_on_the_cpu_only_when_asked_for_and_native() -> None:
    net, info = build("srvgg_compact")
    assert RestorationModel(net, info, device="cpu", precision="auto").dtype == torch.float32
    model = RestorationModel(net, info, device="cpu", precision="bf16")
    assert model.dtype == (torch.bfloat16 if cpu_bf16_native() else torch.float32)
    out = model.restore_tensor(torch.rand(3, 20, 24))
    assert out.dtype == torch.float32 and bool(torch.isfinite(out).all())


# --- restore apply: the pipeline and its summary ------------------------------------------------------


def test_apply_pipeline_keeps_order_results_and_reports_throughput(tmp_path: Path) -> None:
    net, info = build("srvgg_compact")
    weights = save_weights(net, tmp_path / "compact.safetensors", info)
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    names = ["a.png", "b.png", "c.png", "d.png"]
    for i, name in enumerate(names):
        Image.fromarray((rng.random((20 + 3 * i, 26, 3)) * 255).astype(np.uint8)).save(photos / name)
    (photos / "c.png").write_bytes(b"not a png")  # fails in the reader thread; the others go on
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "restorekit.cli", "apply", "-m", weights, photos, "-o", out, "--tile", "16",
         "--overlap", "4"],
        capture_output=True, text=True, env=dict(os.environ), timeout=300,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    written = [line.split(" → ")[0] for line in result.stdout.splitlines() if " → " in line]
    assert [Path(p).name for p in written] == ["a.png", "b.png", "d.png"]  # in job order
    assert any(line.startswith("error:") and "c.png" in line for line in result.stderr.splitlines())
    summary = " ".join(result.stderr.split())
    assert re.search(r"3 images written in [\d.]+ s: [\d.]+ images/s, [\d.]+ megapixels/s \(output\)", summary)
    model = RestorationModel.load(weights, options=InferenceOptions(device="cpu", tile=16, overlap=4))
    for name in ("a.png", "b.png", "d.png"):
        with Image.open(photos / name) as source, Image.open(out / name) as restored:
            expected = np.asarray(model(source.convert("RGB")), dtype=np.int16)
            assert np.array_equal(np.asarray(restored, dtype=np.int16), expected), name
