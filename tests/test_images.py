"""Image files in and out: every kind of file a photographer has, and every way a file can be broken."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms, ImageOps, features

from restorekit.data.images import (
    IMAGE_EXTENSIONS,
    ImageReadError,
    ImageWriteError,
    Picture,
    load_rgb,
    read_picture,
    save_rgb,
    write_picture,
)

tifffile = pytest.importorskip("tifffile")


def gradient(h: int = 12, w: int = 17, channels: int = 3) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(h, w, channels), dtype=np.uint8)


def png16_by_hand(path: Path, samples: np.ndarray) -> None:
    """A 16-bit PNG written independently of restorekit: filter 0 rows, one IDAT."""
    h, w, c = samples.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + samples[y].astype(">u2").tobytes() for y in range(h))
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def low_byte_pattern(h: int = 6, w: int = 9, channels: int = 3) -> np.ndarray:
    """16-bit samples that differ only in their low byte (they collapse to one value at 8 bits)."""
    base = np.full((h, w, channels), 0x8000, dtype=np.uint16)
    return base + np.arange(h * w * channels, dtype=np.uint16).reshape(h, w, channels) % 200


def srgb_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def to_uint(t: torch.Tensor, levels: int) -> np.ndarray:
    return (t * levels).round().to(torch.int64).permute(1, 2, 0).numpy()


# ---------------------------------------------------------------------------------------------------
# load_rgb


def test_extensions_are_lower_case_suffixes() -> None:
    assert {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"} == set(IMAGE_EXTENSIONS)


def test_rgb_png_values_are_exact(tmp_path: Path) -> None:
    pixels = gradient()
    Image.fromarray(pixels).save(tmp_path / "a.png")
    x = load_rgb(tmp_path / "a.png")
    assert x.shape == (3, 12, 17) and x.dtype == torch.float32
    assert np.array_equal(to_uint(x, 255), pixels)


def test_grayscale_is_replicated_to_three_channels(tmp_path: Path) -> None:
    pixels = gradient(channels=1)[:, :, 0]
    Image.fromarray(pixels, "L").save(tmp_path / "g.png")
    x = load_rgb(tmp_path / "g.png")
    assert x.shape == (3, 12, 17)
    assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])
    assert np.array_equal(to_uint(x, 255)[:, :, 0], pixels)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_dropped_not_composited(tmp_path: Path, mode: str) -> None:
    channels = 4 if mode == "RGBA" else 2
    pixels = gradient(channels=channels)
    pixels[..., -1] = 0  # fully transparent: compositing would change every colour
    Image.fromarray(pixels, mode).save(tmp_path / "a.png")
    x = load_rgb(tmp_path / "a.png")
    assert x.shape == (3, 12, 17)
    expected = pixels[..., :3] if mode == "RGBA" else np.repeat(pixels[..., :1], 3, axis=2)
    assert np.array_equal(to_uint(x, 255), expected)


def test_palette_png_becomes_rgb(tmp_path: Path) -> None:
    rgb = Image.fromarray(gradient())
    palette_image = rgb.quantize(colors=16)
    palette_image.save(tmp_path / "p.png")
    x = load_rgb(tmp_path / "p.png")
    assert np.array_equal(to_uint(x, 255), np.asarray(palette_image.convert("RGB")))
    pic = read_picture(tmp_path / "p.png")
    assert pic.palette and pic.mode == "P" and pic.alpha is None


def test_palette_with_transparency_gets_alpha(tmp_path: Path) -> None:
    palette_image = Image.fromarray(gradient()).quantize(colors=8)
    palette_image.save(tmp_path / "p.png", transparency=0)
    pic = read_picture(tmp_path / "p.png")
    assert pic.alpha is not None
    index = np.asarray(palette_image)
    assert np.array_equal(pic.alpha[0].numpy() == 0, index == 0)


def test_cmyk_becomes_rgb(tmp_path: Path) -> None:
    pixels = gradient()
    Image.fromarray(pixels).convert("CMYK").save(tmp_path / "c.tif")
    assert np.array_equal(to_uint(load_rgb(tmp_path / "c.tif"), 255), pixels)
    assert read_picture(tmp_path / "c.tif").mode == "CMYK"


def test_jpeg_exif_orientation_6_is_applied(tmp_path: Path) -> None:
    image = Image.fromarray(gradient(16, 32))
    exif = Image.Exif()
    exif[0x0112] = 6
    image.save(tmp_path / "r.jpg", exif=exif, quality=95)
    x = load_rgb(tmp_path / "r.jpg")
    assert x.shape == (3, 32, 16)  # rotated: width and height swap
    with Image.open(tmp_path / "r.jpg") as im:
        expected = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    assert np.array_equal(to_uint(x, 255), expected)
    pic = read_picture(tmp_path / "r.jpg")
    assert pic.exif is not None
    reread = Image.Exif()
    reread.load(pic.exif)
    assert reread[0x0112] == 1  # pixels are upright now; a viewer must not rotate again


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_matches_pillow(tmp_path: Path, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(gradient(5, 8)).save(tmp_path / "o.png", exif=exif)
    with Image.open(tmp_path / "o.png") as im:
        expected = np.asarray(ImageOps.exif_transpose(im))
    assert np.array_equal(to_uint(load_rgb(tmp_path / "o.png"), 255), expected)


def test_16_bit_grayscale_png_keeps_full_precision(tmp_path: Path) -> None:
    samples = low_byte_pattern(channels=1)
    png16_by_hand(tmp_path / "g16.png", samples)
    pic = read_picture(tmp_path / "g16.png")
    assert pic.bit_depth == 16 and pic.rgb.shape == (1, 6, 9) and pic.grayscale
    assert np.array_equal(to_uint(pic.rgb, 65535), samples)
    assert load_rgb(tmp_path / "g16.png").shape == (3, 6, 9)


@pytest.mark.parametrize("channels", [2, 3, 4])
def test_16_bit_colour_png_keeps_full_precision(tmp_path: Path, channels: int) -> None:
    samples = low_byte_pattern(channels=channels)
    png16_by_hand(tmp_path / "c16.png", samples)
    pic = read_picture(tmp_path / "c16.png")
    assert pic.bit_depth == 16
    colour = 1 if channels == 2 else 3
    assert np.array_equal(to_uint(pic.rgb, 65535), samples[..., :colour])
    if channels in (2, 4):
        assert np.array_equal(to_uint(pic.alpha, 65535), samples[..., -1:])
    # Values 1/65535 apart stay distinct (Pillow alone would give a single 8-bit level here).
    x = load_rgb(tmp_path / "c16.png")
    assert len(torch.unique(x)) == len(np.unique(samples[..., :colour]))


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_16_bit_rgb_tiff_keeps_full_precision(tmp_path: Path, compression: str | None) -> None:
    samples = low_byte_pattern()
    tifffile.imwrite(tmp_path / "c16.tif", samples, photometric="rgb", compression=compression)
    pic = read_picture(tmp_path / "c16.tif")
    assert pic.bit_depth == 16 and pic.format == "TIFF" and pic.mode == "RGB"
    assert np.array_equal(to_uint(pic.rgb, 65535), samples)


def test_icc_profile_is_read(tmp_path: Path) -> None:
    icc = srgb_profile()
    Image.fromarray(gradient()).save(tmp_path / "icc.png", icc_profile=icc)
    assert read_picture(tmp_path / "icc.png").icc_profile == icc


# ---------------------------------------------------------------------------------------------------
# Broken files


def test_zero_byte_file(tmp_path: Path) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty file") as info:
        load_rgb(tmp_path / "empty.png")
    assert info.value.path == tmp_path / "empty.png"
    assert str(info.value).startswith(str(tmp_path / "empty.png") + ": ")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="no such file"):
        load_rgb(tmp_path / "nope.png")


def test_text_file_named_png(tmp_path: Path) -> None:
    (tmp_path / "notes.png").write_text("not a picture\n")
    with pytest.raises(ImageReadError, match="not an image file"):
        load_rgb(tmp_path / "notes.png")


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_truncated_image(tmp_path: Path, suffix: str) -> None:
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)  # incompressible: data spans the file
    Image.fromarray(noise).save(tmp_path / f"full{suffix}")
    data = (tmp_path / f"full{suffix}").read_bytes()
    (tmp_path / f"half{suffix}").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="truncated or corrupt"):
        load_rgb(tmp_path / f"half{suffix}")


def test_truncated_16_bit_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    png16_by_hand(tmp_path / "full.png", rng.integers(0, 65536, size=(32, 32, 3), dtype=np.uint16))
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "half.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="truncated or corrupt"):
        load_rgb(tmp_path / "half.png")


def test_decompression_bomb_limit_is_per_call(tmp_path: Path) -> None:
    Image.fromarray(gradient(20, 30)).save(tmp_path / "big.png")
    before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageReadError, match=r"30×20 = 600 pixels, over the decompression-bomb limit of 599"):
        load_rgb(tmp_path / "big.png", max_pixels=599)
    assert Image.MAX_IMAGE_PIXELS == before  # no global left changed
    assert load_rgb(tmp_path / "big.png", max_pixels=600).shape == (3, 20, 30)


def test_file_declaring_a_huge_size_is_refused_before_decoding(tmp_path: Path) -> None:
    # A PNG header declaring 100000 × 100000 pixels with almost no data: the classic bomb shape.
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    (tmp_path / "bomb.png").write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )
    with pytest.raises(ImageReadError, match="decompression-bomb limit"):
        load_rgb(tmp_path / "bomb.png")


def test_max_pixels_can_raise_pillows_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Image.fromarray(gradient(20, 30)).save(tmp_path / "a.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow alone would refuse this image
    with pytest.raises(ImageReadError, match="limit of 100"):
        load_rgb(tmp_path / "a.png")
    assert load_rgb(tmp_path / "a.png", max_pixels=10_000).shape == (3, 20, 30)
    assert Image.MAX_IMAGE_PIXELS == 100


# ---------------------------------------------------------------------------------------------------
# write_picture


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_16_bit_stays_16_bit(tmp_path: Path, suffix: str, channels: int) -> None:
    samples = low_byte_pattern(channels=channels)
    png16_by_hand(tmp_path / "in.png", samples)
    pic = read_picture(tmp_path / "in.png")
    write_picture(pic, tmp_path / f"out{suffix}")
    again = read_picture(tmp_path / f"out{suffix}")
    assert again.bit_depth == 16 and again.grayscale == (channels <= 2)
    assert torch.equal(again.rgb, pic.rgb)
    assert (again.alpha is None) == (pic.alpha is None)
    if pic.alpha is not None:
        assert torch.equal(again.alpha, pic.alpha)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torchvision 0.29 deprecates its codecs
def test_16_bit_png_written_by_restorekit_decodes_with_libpng(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    smooth = np.cumsum(rng.integers(0, 400, size=(40, 33, 4)), axis=1).astype(np.uint16)
    rgb = torch.from_numpy(smooth[..., :3].astype(np.float32) / 65535).permute(2, 0, 1)
    alpha = torch.from_numpy(smooth[..., 3:].astype(np.float32) / 65535).permute(2, 0, 1)
    write_picture(Picture(rgb=rgb, alpha=alpha, bit_depth=16, mode="RGBA"), tmp_path / "o.png")
    from torchvision.io import ImageReadMode, decode_png, read_file

    decoded = decode_png(read_file(str(tmp_path / "o.png")), mode=ImageReadMode.UNCHANGED)
    assert np.array_equal(decoded.numpy().transpose(1, 2, 0), smooth)
    with Image.open(tmp_path / "o.png") as im:  # other readers accept it too
        im.load()
        assert im.size == (33, 40)


def test_rounding_is_to_nearest_and_clamped(tmp_path: Path) -> None:
    rgb = torch.tensor([0.6 / 255, 1.4 / 255, 254.5001 / 255, 1.7, -0.3]).view(1, 1, 5).expand(3, 1, 5)
    write_picture(Picture(rgb=rgb.clone()), tmp_path / "r.png")
    assert np.asarray(Image.open(tmp_path / "r.png"))[0, :, 0].tolist() == [1, 1, 255, 255, 0]


def test_alpha_survives_and_is_resized_to_the_output(tmp_path: Path) -> None:
    pixels = gradient(channels=4)
    Image.fromarray(pixels, "RGBA").save(tmp_path / "a.png")
    pic = read_picture(tmp_path / "a.png")
    assert pic.alpha is not None and pic.alpha.shape == (1, 12, 17)
    write_picture(pic, tmp_path / "same.png")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "same.png")), pixels)

    upscaled = torch.nn.functional.interpolate(pic.rgb[None], scale_factor=2, mode="nearest")[0]
    write_picture(pic.replace(rgb=upscaled), tmp_path / "x2.png")
    with Image.open(tmp_path / "x2.png") as im:
        assert im.mode == "RGBA" and im.size == (34, 24)


def test_alpha_is_dropped_with_a_warning_for_jpeg(tmp_path: Path) -> None:
    pic = Picture(rgb=torch.rand(3, 8, 8), alpha=torch.rand(1, 8, 8), mode="RGBA", format="PNG")
    with pytest.warns(UserWarning, match="alpha"):
        write_picture(pic, tmp_path / "o.jpg")
    with Image.open(tmp_path / "o.jpg") as im:
        assert im.format == "JPEG" and im.mode == "RGB"


def test_grayscale_stays_grayscale_even_from_a_three_channel_result(tmp_path: Path) -> None:
    Image.fromarray(gradient(channels=1)[:, :, 0], "L").save(tmp_path / "g.png")
    pic = read_picture(tmp_path / "g.png")
    restored = load_rgb(tmp_path / "g.png")  # what a 3-channel model sees and returns
    write_picture(pic.replace(rgb=restored), tmp_path / "out.png")
    with Image.open(tmp_path / "out.png") as im:
        assert im.mode == "L"
        assert np.array_equal(np.asarray(im), np.asarray(Image.open(tmp_path / "g.png")))


def test_icc_and_exif_are_carried_over(tmp_path: Path) -> None:
    icc = srgb_profile()
    exif = Image.Exif()
    exif[0x010F] = "ACME Camera"  # Make
    Image.fromarray(gradient()).save(tmp_path / "in.jpg", icc_profile=icc, exif=exif)
    pic = read_picture(tmp_path / "in.jpg")
    for name in ("out.jpg", "out.png", "out.tif", "out.webp"):
        if name.endswith(".webp") and not features.check("webp"):
            continue
        write_picture(pic, tmp_path / name)
        with Image.open(tmp_path / name) as im:
            assert im.info.get("icc_profile") == icc, name
            assert im.getexif().get(0x010F) == "ACME Camera", name


def test_16_bit_png_carries_icc_and_exif(tmp_path: Path) -> None:
    icc = srgb_profile()
    exif = Image.Exif()
    exif[0x010F] = "ACME Camera"
    pic = Picture(rgb=torch.rand(3, 5, 6), bit_depth=16, icc_profile=icc, exif=exif.tobytes())
    write_picture(pic, tmp_path / "o.png")
    again = read_picture(tmp_path / "o.png")
    assert again.icc_profile == icc and again.bit_depth == 16
    with Image.open(tmp_path / "o.png") as im:
        assert im.getexif().get(0x010F) == "ACME Camera"


def test_palette_source_is_written_as_rgb(tmp_path: Path) -> None:
    Image.fromarray(gradient()).quantize(colors=8).save(tmp_path / "p.png")
    write_picture(read_picture(tmp_path / "p.png"), tmp_path / "o.png")
    with Image.open(tmp_path / "o.png") as im:
        assert im.mode == "RGB"


def test_format_follows_the_suffix_unless_asked(tmp_path: Path) -> None:
    pic = Picture(rgb=torch.rand(3, 8, 8), format="PNG")
    write_picture(pic, tmp_path / "o.jpg")
    write_picture(pic, tmp_path / "o.img", format="tiff")
    write_picture(pic, tmp_path / "noext")  # falls back to the source's format
    assert Image.open(tmp_path / "o.jpg").format == "JPEG"
    assert Image.open(tmp_path / "o.img").format == "TIFF"
    assert Image.open(tmp_path / "noext").format == "PNG"
    with pytest.raises(ImageWriteError, match="cannot write format 'GIF'"):
        write_picture(pic, tmp_path / "o.gif", format="gif")


@pytest.mark.skipif(not features.check("webp"), reason="Pillow built without WebP")
def test_failing_write_leaves_no_file_and_no_temp_file(tmp_path: Path) -> None:
    # WebP cannot hold 16384 pixels in a row: the encoder fails after the temporary file was opened.
    pic = Picture(rgb=torch.zeros(3, 1, 16384))
    with pytest.raises(ImageWriteError, match="WebP"):
        write_picture(pic, tmp_path / "wide.webp")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not features.check("webp"), reason="Pillow built without WebP")
def test_failing_write_keeps_the_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "keep.webp"
    target.write_bytes(b"previous version")
    with pytest.raises(ImageWriteError):
        write_picture(Picture(rgb=torch.zeros(3, 1, 16384)), target)
    assert target.read_bytes() == b"previous version"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.webp"]


def test_write_into_missing_directory_fails_cleanly(tmp_path: Path) -> None:
    with pytest.raises(ImageWriteError, match="cannot create a file"):
        write_picture(Picture(rgb=torch.rand(3, 4, 4)), tmp_path / "missing" / "o.png")
    assert list(tmp_path.iterdir()) == []


def test_save_rgb_writes_an_8_bit_png(tmp_path: Path) -> None:
    x = torch.rand(3, 9, 7)
    save_rgb(x, tmp_path / "preview.png")
    with Image.open(tmp_path / "preview.png") as im:
        assert im.mode == "RGB" and im.size == (7, 9)
    assert (load_rgb(tmp_path / "preview.png") - x).abs().max().item() <= 0.5 / 255 + 1e-6
    assert [p.name for p in tmp_path.iterdir()] == ["preview.png"]
