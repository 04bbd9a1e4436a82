"""Reading and writing image files without losing what the photograph carries.

Two levels:

* :func:`load_rgb` gives training and evaluation code a plain float32 ``(3, H, W)`` tensor in ``[0, 1]``,
  whatever the file holds (grayscale, palette, alpha, 16 bits, CMYK, rotated by EXIF).
* :func:`read_picture` / :func:`write_picture` keep what ``restore apply`` must give back: the alpha
  channel, 16-bit depth, grayscale, the ICC profile and EXIF, so a restored photograph replaces the
  original without surprises.

The reader lives in :mod:`restorekit.data.image_read`, the writer in :mod:`restorekit.data.image_write`
and what they share in :mod:`restorekit.data.picture`; this module is the public face of all three.
Every failure is an :class:`ImageReadError` or :class:`ImageWriteError` whose one-line message starts
with the file's path.
"""

from __future__ import annotations

from restorekit.data.image_read import load_rgb, read_picture
from restorekit.data.image_write import save_rgb, write_picture
from restorekit.data.picture import FORMAT_BY_SUFFIX, IMAGE_EXTENSIONS, ImageReadError, ImageWriteError, Picture

__all__ = [
    "FORMAT_BY_SUFFIX",
    "IMAGE_EXTENSIONS",
    "ImageReadError",
    "ImageWriteError",
    "Picture",
    "load_rgb",
    "read_picture",
    "save_rgb",
    "write_picture",
]
