"""Input images -> the encoded bytes stored in the records (JPEG or lossless PNG, 3 or 1 channel).

An image that is already stored as asked is kept byte for byte: a JPEG whose colour mode is the
requested one (RGB, or grey with ``channels=1``), and with ``image_format='png'`` also such a PNG
(re-encoding a JPEG as PNG would not recover what JPEG dropped, so JPEG files stay JPEG). Anything
else is decoded, converted (transparent areas on white; 16-bit and float greyscale rescaled to 8
bits; colour to grey with ``channels=1``) and encoded in ``image_format``. Every image is fully
decoded once, so a truncated or corrupt file fails here, naming it, not later in training.

lite_tf's pipeline decodes any of these to 3 channels (``tf.io.decode_image(channels=3)``), so a
one-channel set trains like an RGB one and is a third of the size as PNG.
"""
from __future__ import annotations

import dataclasses
import io
from typing import Optional, Tuple

import numpy as np
from PIL import Image

from lite_tf.data.writing.errors import BadImageError, ConvertError
from lite_tf.faults import clean_tf_message

DEFAULT_JPEG_QUALITY = 95
IMAGE_FORMATS = ("jpeg", "png")
CHANNELS = (3, 1)


@dataclasses.dataclass(frozen=True)
class ImageOptions:
    """How images are stored; part of a dataset's identity (recorded in its manifest)."""

    image_format: str = "jpeg"
    channels: int = 3
    max_side: Optional[int] = None
    jpeg_quality: int = DEFAULT_JPEG_QUALITY

    def __post_init__(self):
        if self.image_format not in IMAGE_FORMATS:
            raise ConvertError(f"image_format must be one of {list(IMAGE_FORMATS)}; got {self.image_format!r}.")
        if self.channels not in CHANNELS:
            raise ConvertError(f"channels must be 3 (RGB) or 1 (greyscale); got {self.channels!r}.")
        if self.max_side is not None and (not isinstance(self.max_side, int) or self.max_side < 1):
            raise ConvertError(f"max_side must be a positive number of pixels; got {self.max_side!r}.")
        if not isinstance(self.jpeg_quality, int) or not 1 <= self.jpeg_quality <= 100:
            raise ConvertError(f"jpeg_quality must be an integer in 1..100; got {self.jpeg_quality!r}.")

    @property
    def mode(self) -> str:
        return "RGB" if self.channels == 3 else "L"

    def provenance(self) -> dict:
        """For the manifest; format and channels only when not the defaults, so sets written before
        these options existed keep their identity."""
        out = {"max_side": self.max_side, "jpeg_quality": self.jpeg_quality}
        if self.image_format != "jpeg":
            out["image_format"] = self.image_format
        if self.channels != 3:
            out["channels"] = self.channels
        return out


@dataclasses.dataclass(frozen=True)
class PreparedImage:
    data: bytes
    size: Tuple[int, int]  # (width, height) as stored


def _to_mode(image: Image.Image, mode: str) -> Image.Image:
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat.convert(mode)
    if image.mode.startswith("I") or image.mode == "F":
        # 16-bit or float greyscale: PIL's convert would clip at 255, so rescale to 8 bits.
        values = np.asarray(image, dtype=np.float32)
        top = 65535.0 if image.mode.startswith("I;16") else max(float(values.max()), 1.0)
        grey = np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert(mode)
    return image.convert(mode)


def prepare(data: bytes, origin: str, options: ImageOptions = ImageOptions()) -> PreparedImage:
    """Encoded image bytes -> the bytes to store (and their size), per ``options``.

    Raises BadImageError naming ``origin`` if the bytes do not decode completely.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # full decode: a truncated or corrupt body fails here, not later in training
            too_large = options.max_side is not None and max(image.size) > options.max_side
            keep = image.format == "JPEG" or (options.image_format == "png" and image.format == "PNG")
            if keep and image.mode == options.mode and not too_large:
                return PreparedImage(bytes(data), image.size)
            converted = _to_mode(image, options.mode)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise BadImageError(f"{origin} is not a readable image: {clean_tf_message(str(error))}") from None
    if too_large:
        converted.thumbnail((options.max_side, options.max_side), Image.BICUBIC)
    buffer = io.BytesIO()
    if options.image_format == "png":
        converted.save(buffer, format="PNG")
    else:
        converted.save(buffer, format="JPEG", quality=options.jpeg_quality)
    return PreparedImage(buffer.getvalue(), converted.size)


def prepare_image(data: bytes, origin: str, options: ImageOptions = ImageOptions()) -> bytes:
    """Just the bytes of :func:`prepare`."""
    return prepare(data, origin, options).data
