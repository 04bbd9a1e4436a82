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

What keeps it fast: with ``balance=True`` the tiles along each axis are shrunk to the smallest size that
needs no more tiles, so neighbours share no more than the ``3 × overlap`` they must (a 640-pixel side in
512-pixel tiles is computed as two 368-pixel tiles, 736 pixels, instead of 1024); an image that fits in one
tile is returned as the model computed it, without a weight buffer; tile outputs are weighted and added
in place; on CUDA, batches travel through pinned memory with non-blocking copies and each batch's output is
copied back while the next batch runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from restorekit.inference.options import DEFAULT_BATCH_SIZE, DEFAULT_OVERLAP, DEFAULT_TILE, check_geometry

__all__ = ["balanced_tile", "count_tiles", "tile_layout", "tiled_apply"]

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


def balanced_tile(length: int, tile: int | None, overlap: int, multiple: int = 1) -> int | None:
    """The smallest tile side that covers an axis of *length* pixels in as few tiles as *tile* does.

    Tiles of side *tile* placed by :func:`tile_layout` share more than ``3 × overlap`` pixels whenever the
    length is not a whole number of strides (the last tile is moved inwards); every pixel shared beyond
    that is computed twice for nothing. The balanced side spreads the same number of tiles evenly.

    Args:
        length: Image size along the axis.
        tile: The largest tile side allowed, or None (whole axis).
        overlap: Context margin in input pixels.
        multiple: The network's size multiple.

    Returns:
        A tile side ``<= tile`` (a multiple of *multiple* unless it is the whole axis), or None for None.

    Raises:
        ValueError: A tile too small for the overlap and multiple.

    Example:
        >>> balanced_tile(640, 512, 32)
        368
        >>> balanced_tile(300, 512, 32)  # one tile: the axis itself
        300
    """
    check_geometry(tile, overlap, multiple)
    if tile is None:
        return None
    size = tile - tile % multiple
    if length <= size:
        return length
    count = len(tile_layout(length, size, overlap, multiple))
    # Evenly spread: count tiles sharing 3 × overlap with each neighbour; rounded up to the multiple, then
    # grown until the layout needs no more tiles than the full-size one (stride rounding can add one).
    even = -(-(length + (count - 1) * 3 * overlap) // count)
    candidate = max(even + -even % multiple, 3 * overlap + multiple)
    while candidate < size and len(tile_layout(length, candidate, overlap, multiple)) > count:
        candidate += multiple
    return min(candidate, size)


def count_tiles(h: int, w: int, tile: int | None, overlap: int, multiple: int = 1, *, balance: bool = False) -> int:
    """How many tiles :func:`tiled_apply` runs for an ``h × w`` image.

    Args:
        h: Image height in input pixels.
        w: Image width in input pixels.
        tile: Tile size, or None for a whole-image pass.
        overlap: Context margin in input pixels.
        multiple: Size multiple the model needs.
        balance: As in :func:`tiled_apply` (the count is the same; the tiles are smaller).

    Returns:
        The number of tiles (1 for a whole-image pass).

    Raises:
        ValueError: The tile is too small for the overlap and multiple.
    """
    rows, cols = _layouts(h, w, tile, overlap, multiple, balance)
    return len(rows) * len(cols)


def _layouts(
    height: int, width: int, tile: int | None, overlap: int, multiple: int, balance: bool
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """The row and column spans of the tiles of a ``height × width`` image."""
    if _runs_whole(height, width, tile, multiple):
        return [(0, height)], [(0, width)]

    def axis(length: int) -> list[tuple[int, int]]:
        side = balanced_tile(length, tile, overlap, multiple) if balance else tile
        if side is not None and side >= length:
            return [(0, length)]
        return tile_layout(length, side, overlap, multiple)

    return axis(height), axis(width)


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
    balance: bool = False,
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
        balance: Shrink the tiles along each axis to the smallest side that needs no more of them (see
            :func:`balanced_tile`): less work for the same result, at the price of tile shapes that depend
            on the image size.

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
    cuda = device.type == "cuda"

    rows, cols = _layouts(height, width, tile, overlap, multiple, balance)
    row_spans = [_Span(a, b, a == 0, b == height) for a, b in rows]
    col_spans = [_Span(a, b, a == 0, b == width) for a, b in cols]
    total = len(row_spans) * len(col_spans)

    if total == 1:  # one tile: the model's output is the result, no weights, no second buffer
        with torch.inference_mode():
            batch = _pad_to_multiple(image[None], multiple)
            batch = _to_device(batch, device, dtype, cuda)
            result = model_fn(batch)
            _check_output(result, batch, scale, 1)
            output = result[0, :, : height * scale, : width * scale].to("cpu", torch.float32)
        if progress is not None:
            progress(1, 1)
        # Returned as is only when it is a buffer of its own that callers may modify: not the input (an
        # identity model), not a view keeping a padded or channels-last buffer alive, not an inference tensor
        # (which refuses in-place updates outside inference mode). The copy is made here, outside it.
        own = output.untyped_storage().data_ptr() != image.untyped_storage().data_ptr()
        if own and output.is_contiguous() and output.storage_offset() == 0 and not output.is_inference():
            return output
        return output.clone(memory_format=torch.contiguous_format)

    row_weights = _axis_weights(row_spans, height, overlap, scale)
    col_weights = _axis_weights(col_spans, width, overlap, scale)

    # Tiles of one shape are batched together; all but the last row/column share the full tile shape.
    groups: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for i, r in enumerate(row_spans):
        for j, c in enumerate(col_spans):
            groups.setdefault((r.length, c.length), []).append((i, j))

    output: torch.Tensor | None = None
    pending: list[tuple[Any, torch.Tensor, list[tuple[int, int]]]] = []  # CUDA: outputs still being copied back
    done = 0

    def accumulate(weighted: torch.Tensor, chunk: list[tuple[int, int]], *, premultiplied: bool) -> None:
        assert output is not None
        for k, (i, j) in enumerate(chunk):
            r, c = row_spans[i], col_spans[j]
            target = output[:, r.start * scale : r.stop * scale, c.start * scale : c.stop * scale]
            if premultiplied:
                target += weighted[k]
            else:  # weight and add in one pass, without a weighted temporary
                target.addcmul_(weighted[k], row_weights[i][:, None] * col_weights[j][None, :])

    with torch.inference_mode():
        for (tile_h, tile_w), members in groups.items():
            for first in range(0, len(members), batch_size):
                chunk = members[first : first + batch_size]
                crops = [
                    image[:, row_spans[i].start : row_spans[i].stop, col_spans[j].start : col_spans[j].stop]
                    for i, j in chunk
                ]
                batch = _to_device(_pad_to_multiple(torch.stack(crops), multiple), device, dtype, cuda)
                result = model_fn(batch)
                _check_output(result, batch, scale, len(chunk))
                result = result[:, :, : tile_h * scale, : tile_w * scale]
                if output is None:
                    with torch.inference_mode(False):  # a normal tensor: callers may update it in place
                        output = torch.zeros(result.shape[1], height * scale, width * scale, dtype=torch.float32)
                if cuda:  # pragma: no cover - needs a GPU
                    # Weight on the device, copy back without waiting; the CPU adds the previous batch
                    # while this one is computed and copied.
                    weights = torch.stack(
                        [torch.outer(row_weights[i], col_weights[j]) for i, j in chunk]
                    ).to(device, non_blocking=True)
                    weighted = result.float() * weights[:, None]
                    host = torch.empty(weighted.shape, dtype=torch.float32, pin_memory=True)
                    host.copy_(weighted, non_blocking=True)
                    event = torch.cuda.Event()
                    event.record()
                    pending.append((event, host, chunk))
                    while len(pending) > 1:
                        event, host, old = pending.pop(0)
                        event.synchronize()
                        accumulate(host, old, premultiplied=True)
                else:
                    accumulate(result.to("cpu", torch.float32), chunk, premultiplied=False)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
        for event, host, old in pending:  # pragma: no cover - needs a GPU
            event.synchronize()
            accumulate(host, old, premultiplied=True)
    assert output is not None  # at least one tile always runs
    return output


def _to_device(batch: torch.Tensor, device: torch.device, dtype: torch.dtype, cuda: bool) -> torch.Tensor:
    """The batch on the device in the model's dtype; through pinned memory, without waiting, on CUDA."""
    if cuda:  # pragma: no cover - needs a GPU
        return batch.contiguous().pin_memory().to(device=device, dtype=dtype, non_blocking=True)
    return batch.to(device=device, dtype=dtype)


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
