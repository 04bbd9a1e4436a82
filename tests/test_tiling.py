"""Tiled inference: equal to a whole-image pass, bounded memory, any image size."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from restorekit.inference.tiling import count_tiles, tile_layout, tiled_apply

RADIUS = 3  # three 3×3 convolutions at input resolution


def small_sr_net(scale: int, seed: int = 0) -> nn.Module:
    """Three 3×3 convolutions (receptive-field radius 3 input pixels), then PixelShuffle for scale > 1."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = [
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 3 * scale * scale, 3, padding=1),
    ]
    if scale > 1:
        layers.append(nn.PixelShuffle(scale))
    return nn.Sequential(*layers).eval()


def whole(net: nn.Module, image: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return net(image[None])[0]


@pytest.mark.parametrize("scale", [1, 2, 4])
@pytest.mark.parametrize("batch_size", [1, 3])
def test_tiled_equals_whole_image_when_overlap_covers_receptive_field(scale: int, batch_size: int) -> None:
    net = small_sr_net(scale)
    image = torch.rand(3, 37, 29)  # odd sizes: the last row/column of tiles is shifted inwards
    out = tiled_apply(net, image, scale=scale, tile=16, overlap=RADIUS, batch_size=batch_size)
    assert out.shape == (3, 37 * scale, 29 * scale)
    assert out.dtype == torch.float32 and out.device.type == "cpu"
    assert count_tiles(37, 29, 16, RADIUS) > 4
    error = (out - whole(net, image)).abs().max().item()
    assert error < 1e-5  # float rounding only; far below one 8-bit level (1/255)


@pytest.mark.parametrize("overlap", [0, RADIUS - 1])
def test_too_little_overlap_shows_seams(overlap: int) -> None:
    net = small_sr_net(2)
    image = torch.rand(3, 37, 29)
    out = tiled_apply(net, image, scale=2, tile=16, overlap=overlap)
    assert (out - whole(net, image)).abs().max().item() > 1e-3


def test_identity_model_reproduces_the_image_exactly() -> None:
    image = torch.rand(3, 53, 41)
    out = tiled_apply(lambda x: x, image, scale=1, tile=20, overlap=3, batch_size=2)
    torch.testing.assert_close(out, image, rtol=0, atol=1e-6)


def test_nearest_upsampling_reproduces_exactly() -> None:
    image = torch.rand(1, 23, 30)
    up = nn.Upsample(scale_factor=3, mode="nearest")
    out = tiled_apply(up, image, scale=3, tile=12, overlap=2)
    torch.testing.assert_close(out, up(image[None])[0], rtol=0, atol=1e-6)


@pytest.mark.parametrize("size", [(5, 7), (1, 40), (40, 1), (1, 1)])
def test_images_smaller_than_a_tile_or_one_pixel_wide(size: tuple[int, int]) -> None:
    net = small_sr_net(2)
    image = torch.rand(3, *size)
    out = tiled_apply(net, image, scale=2, tile=16, overlap=RADIUS)
    assert out.shape == (3, size[0] * 2, size[1] * 2)
    assert (out - whole(net, image)).abs().max().item() < 1e-5


def test_tile_none_and_tile_larger_than_image_run_one_pass() -> None:
    calls: list[tuple[int, ...]] = []

    def model(x: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(x.shape))
        return x * 2

    image = torch.rand(3, 20, 30)
    for tile in (None, 30, 512):
        calls.clear()
        out = tiled_apply(model, image, scale=1, tile=tile, overlap=4)
        assert calls == [(1, 3, 20, 30)]
        torch.testing.assert_close(out, image * 2)
    assert count_tiles(20, 30, 512, 32) == count_tiles(20, 30, None, 32) == 1


def downsampling_net() -> nn.Module:
    """Two stride-2 convolutions and two transposed convolutions: needs sizes divisible by 4."""
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.ConvTranspose2d(8, 8, 4, stride=2, padding=1),
        nn.ReLU(),
        nn.ConvTranspose2d(8, 3, 4, stride=2, padding=1),
    ).eval()


def test_multiple_pads_tiles_and_matches_whole_padded_pass() -> None:
    net = downsampling_net()
    image = torch.rand(3, 45, 38)  # not divisible by 4
    seen: list[tuple[int, int]] = []

    def model(x: torch.Tensor) -> torch.Tensor:
        assert x.shape[-2] % 4 == 0 and x.shape[-1] % 4 == 0
        seen.append(tuple(x.shape[-2:]))
        return net(x)

    out = tiled_apply(model, image, scale=1, tile=30, overlap=8, multiple=4)
    assert out.shape == (3, 45, 38)
    assert max(h for h, _ in seen) <= 28 and max(w for _, w in seen) <= 28  # tile rounded down to 28
    padded = torch.nn.functional.pad(image[None], (0, 2, 0, 3), mode="reflect")
    with torch.no_grad():
        reference = net(padded)[0, :, :45, :38]
    assert (out - reference).abs().max().item() < 1e-5
    # A whole-image pass is padded the same way.
    single = tiled_apply(model, image, scale=1, tile=None, multiple=4)
    assert (single - reference).abs().max().item() < 1e-6


def test_tile_layout_aligns_starts_to_the_multiple() -> None:
    spans = tile_layout(101, 32, 4, multiple=4)
    assert spans[0] == (0, 32) and spans[-1][1] == 101
    assert all(start % 4 == 0 for start, _ in spans)
    assert all(a_stop - b_start >= 12 for (_, a_stop), (b_start, _) in zip(spans, spans[1:]))  # ≥ 3 × overlap


def test_progress_counts_every_tile() -> None:
    calls: list[tuple[int, int]] = []
    image = torch.rand(3, 50, 35)
    tiled_apply(
        lambda x: x, image, scale=1, tile=16, overlap=2, batch_size=4, progress=lambda d, t: calls.append((d, t))
    )
    total = count_tiles(50, 35, 16, 2)
    assert calls[-1] == (total, total)
    assert all(t == total for _, t in calls)
    done = [d for d, _ in calls]
    assert done == sorted(done) and len(done) == len(set(done))


@pytest.mark.parametrize("batch_size", [1, 4])
def test_memory_is_bounded_by_batch_times_tile(batch_size: int) -> None:
    tile = 24
    net = small_sr_net(2)

    def model(x: torch.Tensor) -> torch.Tensor:
        assert x.shape[0] * x.shape[-2] * x.shape[-1] <= batch_size * tile * tile
        assert x.shape[0] <= batch_size
        return net(x)

    image = torch.rand(3, 90, 70)
    out = tiled_apply(model, image, scale=2, tile=tile, overlap=RADIUS, batch_size=batch_size)
    assert (out - whole(net, image)).abs().max().item() < 1e-5


def test_model_runs_in_requested_dtype_and_output_is_float32() -> None:
    dtypes: list[torch.dtype] = []

    def model(x: torch.Tensor) -> torch.Tensor:
        dtypes.append(x.dtype)
        return x.repeat_interleave(2, -1).repeat_interleave(2, -2)

    out = tiled_apply(model, torch.rand(3, 40, 40), scale=2, tile=16, overlap=2, dtype=torch.bfloat16)
    assert set(dtypes) == {torch.bfloat16} and out.dtype == torch.float32


def test_bad_arguments_and_wrong_model_output_are_reported() -> None:
    image = torch.rand(3, 40, 40)
    with pytest.raises(ValueError, match="3 × overlap"):
        tiled_apply(lambda x: x, image, scale=1, tile=16, overlap=8)
    with pytest.raises(ValueError, match="expected"):
        tiled_apply(lambda x: x, image, scale=2, tile=16, overlap=2)
    with pytest.raises(ValueError, match="shape"):
        tiled_apply(lambda x: x, torch.rand(40, 40), scale=1)
