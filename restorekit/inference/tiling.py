"""Seam-free tiled inference: restore photographs of any size with memory bounded by the tile size.

The image is cut into overlapping tiles of at most ``tile × tile`` input pixels, tiles of the same shape
are run through the model in batches, and the outputs are blended into a CPU float32 buffer.

How the blending makes tiling invisible: along every side where a tile meets a neighbour, the tile's
weight is zero over its outer ``overlap`` pixels (the context margin, where the model saw the artificial
tile border), rises along a raised-cosine ramp over the next ``overlap`` pixels and is 1 inside. Tiles
share ``3 × overlap`` input pixels with each neighbour so that the ramps of both cross-fade over the same
band. The weights are normalised per axis into a partition of unity, so no weight buffer is needed and only
pixels computed at least ``overlap`` pixels away from an artificial border contribute: with ``overlap``
at least the model's receptive-field radius (in input pixels), the result equals a whole-image pass up to
floating-point rounding. Sides on the image border need no margin (the model pads there exactly as it
would for the whole image).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from restorekit.inference.options import DEFAULT_BATCH_SIZE, DEFAULT_OVERLAP, DEFAULT_TILE, check_geometry

__all__ = ["count_tiles", "tile_layout", "tiled_apply"]

ModelFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class _Span:
    """One tile's extent along one axis, in input pixels."""

    start: int
    stop: int
    first: bool  # touches the image's leading border
    last: bool  # touches the image's trailing border

    @property
    def length(self) -> int:
        return self.stop - self.start


def tile_layout(length: int, tile: int | None, overlap: int, multiple: int = 1) -> list[tuple[int, int]]:
    """The ``(start, stop)`` spans tiles take along one axis of ``length`` input pixels.

    Tiles are ``tile`` pixels long (rounded down to a multiple of ``multiple``), start on multiples of
    ``multiple`` and share at least ``3 × overlap`` pixels with their neighbours; the last one is moved
    inwards to end on the border (it may then be up to ``multiple - 1`` pixels shorter). One span covers
    the whole axis when it fits in a tile.

    Args:
        length: Image size along the axis.
        tile: Tile size in input pixels, or None for a single tile.
        overlap: Context margin in input pixels (see the module docstring).
        multiple: Tile sizes the model needs to be divisible by (after padding).

    Returns:
        The spans, in order.

    Raises:
        ValueError: A tile too small for the overlap and multiple (the rule of
            :func:`~restorekit.inference.options.check_geometry`).
    """
    check_geometry(tile, overlap, multiple)
    if length < 1:
        raise ValueError(f"image size must be at least 1 pixel, got {length}")
    if tile is None:
        return [(0, length)]
    size = tile - tile % multiple
    if length <= size:
        return [(0, length)]
    stride = size - 3 * overlap
    stride -= stride % multiple  # at least `multiple`: check_geometry guarantees it
    starts = list(range(0, length - size, stride))
    # The last tile ends on the border; its start is rounded up to a multiple so that it stays aligned
    # with the whole-image sampling grid of models that downsample.
    last = length - size
    starts.append(last + -last % multiple)
    return [(start, min(start + size, length)) for start in starts]


def count_tiles(h: int, w: int, tile: int | None, overlap: int, multiple: int = 1) -> int:
    """How many tiles :func:`tiled_apply` runs for an ``h × w`` image.

    Args:
        h: Image height in input pixels.
        w: Image width in input pixels.
        tile: Tile size, or None for a whole-image pass.
        overlap: Context margin in input pixels.
        multiple: Size multiple the model needs.

    Returns:
        The number of tiles (1 for a whole-image pass).

    Raises:
        ValueError: The tile is too small for the overlap and multiple.
    """
    if _runs_whole(h, w, tile, multiple):
        return 1
    return len(tile_layout(h, tile, overlap, multiple)) * len(tile_layout(w, tile, overlap, multiple))


def tiled_apply(
    model_fn: ModelFn,
    image: torch.Tensor,
    *,
    scale: int,
    tile: int | None = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    progress: Callable[[int, int], None] | None = None,
    multiple: int = 1,
) -> torch.Tensor:
    """Run a restoration model over an image of any size, tile by tile, without visible seams.

    Only tiles travel to ``device``; the image stays where it is and the output is accumulated in CPU
    float32, so device memory is bounded by ``batch_size`` tiles whatever the image size.

    Args:
        model_fn: Maps a ``(B, C, h, w)`` batch on ``device`` in ``dtype`` to ``(B, C', h·scale, w·scale)``;
            typically an ``eval()`` network. Called under ``torch.inference_mode``.
        image: ``(C, H, W)`` float32 image (normally on the CPU).
        scale: The model's upscaling factor (1 for deblurring).
        tile: Largest tile side in input pixels; None, or a tile at least as large as the image, runs the
            whole image at once.
        overlap: Context margin in input pixels that every tile carries past the part of it that is used,
            on sides that meet another tile; also the width of the cross-fade. Use at least the model's
            receptive-field radius for output identical to a whole-image pass. Neighbouring tiles share
            ``3 × overlap`` pixels, so ``tile`` must exceed ``3 × overlap``.
        batch_size: Tiles per forward pass.
        device: Where the model runs.
        dtype: Input dtype the model expects (e.g. ``torch.float16``); outputs are blended in float32.
        progress: Called as ``progress(done_tiles, total_tiles)`` after every batch.
        multiple: Every tile (and a whole-image pass) is reflect-padded up to a multiple of this and the
            output cropped back, for networks that downsample (e.g. 4 for DeblurGAN's generator). The tile
            size is rounded down to a multiple of it and tiles start on multiples of it.

    Returns:
        The ``(C', H·scale, W·scale)`` float32 output on the CPU.

    Raises:
        ValueError: Bad arguments, or the model's output does not have the expected shape.

    Example:
        >>> net = torch.nn.Upsample(scale_factor=2)
        >>> out = tiled_apply(net, torch.rand(3, 100, 70), scale=2, tile=64, overlap=8)
        >>> tuple(out.shape)
        (3, 200, 140)
    """
    if image.ndim != 3:
        raise ValueError(f"image must have shape (C, H, W), got {tuple(image.shape)}")
    if not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    check_geometry(tile, overlap, multiple)
    _, height, width = image.shape
    device = torch.device(device)

    whole = _runs_whole(height, width, tile, multiple)
    rows = [(0, height)] if whole else tile_layout(height, tile, overlap, multiple)
    cols = [(0, width)] if whole else tile_layout(width, tile, overlap, multiple)
    row_spans = [_Span(a, b, a == 0, b == height) for a, b in rows]
    col_spans = [_Span(a, b, a == 0, b == width) for a, b in cols]
    row_weights = _axis_weights(row_spans, height, overlap, scale)
    col_weights = _axis_weights(col_spans, width, overlap, scale)

    # Tiles of one shape are batched together; all but the last row/column share the full tile shape.
    groups: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for i, r in enumerate(row_spans):
        for j, c in enumerate(col_spans):
            groups.setdefault((r.length, c.length), []).append((i, j))
    total = len(row_spans) * len(col_spans)

    output: torch.Tensor | None = None
    done = 0
    with torch.inference_mode():
        for (tile_h, tile_w), members in groups.items():
            for first in range(0, len(members), batch_size):
                chunk = members[first : first + batch_size]
                crops = [
                    image[:, row_spans[i].start : row_spans[i].stop, col_spans[j].start : col_spans[j].stop]
                    for i, j in chunk
                ]
                batch = torch.stack(crops)
                batch = _pad_to_multiple(batch, multiple).to(device=device, dtype=dtype)
                result = model_fn(batch)
                _check_output(result, batch, scale, len(chunk))
                result = result[:, :, : tile_h * scale, : tile_w * scale].float()
                if output is None:
                    output = torch.zeros(result.shape[1], height * scale, width * scale, dtype=torch.float32)
                for k, (i, j) in enumerate(chunk):
                    r, c = row_spans[i], col_spans[j]
                    weight = torch.outer(row_weights[i], col_weights[j]).to(result.device)
                    output[:, r.start * scale : r.stop * scale, c.start * scale : c.stop * scale] += (
                        (result[k] * weight).to("cpu")
                    )
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
    assert output is not None  # at least one tile always runs
    return output


def _runs_whole(height: int, width: int, tile: int | None, multiple: int) -> bool:
    if tile is None:
        return True
    size = tile - tile % multiple
    return size >= height and size >= width


def _axis_weights(spans: Sequence[_Span], length: int, overlap: int, scale: int) -> list[torch.Tensor]:
    """Per-tile blending weights along one axis, in output pixels, summing to 1 at every position."""
    margin = overlap * scale
    # Sampled at pixel centres, so both ends of the ramp are strictly inside (0, 1).
    ramp = 0.5 - 0.5 * torch.cos(math.pi * (torch.arange(margin, dtype=torch.float64) + 0.5) / max(margin, 1))
    weights = []
    for span in spans:
        n = span.length * scale
        w = torch.ones(n, dtype=torch.float64)
        if not span.first:
            rise = torch.cat([torch.zeros(margin, dtype=torch.float64), ramp, torch.ones(max(0, n - 2 * margin))])[:n]
            w = torch.minimum(w, rise)
        if not span.last:
            fall = torch.cat([torch.zeros(margin, dtype=torch.float64), ramp, torch.ones(max(0, n - 2 * margin))])[:n]
            w = torch.minimum(w, fall.flip(0))
        weights.append(w)
    total = torch.zeros(length * scale, dtype=torch.float64)
    for span, w in zip(spans, weights):
        total[span.start * scale : span.stop * scale] += w
    if bool((total <= 0).any()):  # cannot happen with the layout above; guards future changes
        raise AssertionError("tile layout leaves output pixels without weight")
    return [(w / total[s.start * scale : s.stop * scale]).float() for s, w in zip(spans, weights)]


def _pad_to_multiple(batch: torch.Tensor, multiple: int) -> torch.Tensor:
    if multiple == 1:
        return batch
    h, w = batch.shape[-2:]
    pad_h, pad_w = -h % multiple, -w % multiple
    if pad_h == 0 and pad_w == 0:
        return batch
    # Reflection needs more pixels than it pads; a 1-pixel-wide image is replicated instead.
    mode = "reflect" if pad_h < h and pad_w < w else "replicate"
    return F.pad(batch, (0, pad_w, 0, pad_h), mode=mode)


def _check_output(result: torch.Tensor, batch: torch.Tensor, scale: int, count: int) -> None:
    expected = (count, batch.shape[-2] * scale, batch.shape[-1] * scale)
    if not isinstance(result, torch.Tensor) or result.ndim != 4 or (
        result.shape[0], result.shape[-2], result.shape[-1]
    ) != expected:
        got = tuple(result.shape) if isinstance(result, torch.Tensor) else type(result).__name__
        raise ValueError(
            f"model output has shape {got}, expected ({count}, C, {expected[1]}, {expected[2]}) for an input "
            f"of {tuple(batch.shape)} at scale={scale}"
        )
