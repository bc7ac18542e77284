"""Reading the user's image files for ``lrp-captum explain`` and ``evaluate rank``.

The size an image claims is checked from its header, before a pixel is decoded: a file of a few
bytes can claim 10¹⁰ pixels (a "decompression bomb"), and decoding it would take the machine's
memory. PIL's own check (a warning, an error above twice its limit) is replaced by one limit and
a one-line refusal that says what the file claims.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from lrp_captum.cli.arguments import CommandError

#: the most pixels an input image may have (PIL's warning threshold, about 89 million: 9459²)
MAX_IMAGE_PIXELS = 89_478_485


@contextlib.contextmanager
def _header_only_size_check():
    """PIL's size check off while a header is read: this module checks the size itself."""
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def read_rgb(path, size: int | None = None) -> np.ndarray:
    """The image at ``path`` as RGB ``(H, W, 3)`` uint8 (a writable array), resized to
    ``size`` x ``size`` when given.

    Raises
    ------
    CommandError
        It cannot be read as an image, or its header claims more than :data:`MAX_IMAGE_PIXELS`
        pixels (the message says how many).
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with _header_only_size_check():
            img = Image.open(path)
        with img:
            width, height = img.size
            if width * height > MAX_IMAGE_PIXELS:
                raise CommandError(f"image {path} claims {width} x {height} = {width * height:,} pixels, more "
                                   f"than the {MAX_IMAGE_PIXELS:,} read here (a damaged file or a "
                                   "decompression bomb); give a smaller image")
            rgb = img.convert("RGB")
            if size is not None:
                rgb = rgb.resize((size, size), Image.BILINEAR)
            return np.array(rgb, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise CommandError(f"cannot read image {path}: {exc}") from None
