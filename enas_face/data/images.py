"""Decode any image file to uint8 RGB [H, W, 3], or raise an `ImageError` saying why not.

Pillow does the work: the header is read first and huge images are refused
before their pixels are allocated; the pixels are then loaded strictly
(`ImageFile.LOAD_TRUNCATED_IMAGES` stays False, so truncated files raise), the
EXIF orientation is applied, and every colour mode is mapped to 8-bit RGB:

- L, LA, P, PA, 1, RGBA, CMYK, YCbCr, ...: `Image.convert("RGB")` (alpha is
  dropped, grayscale becomes three equal channels).
- 16-bit grayscale (I;16*): round(v / 257), so 0..65535 maps onto 0..255
  (Pillow's own convert clips at 255 instead).
- 32-bit integer (I): treated as 16-bit when every value lies in 0..65535
  (Pillow gives this mode for 16-bit PGM), otherwise stretched min..max -> 0..255.
- float (F): values in [0, 1] are scaled by 255, others clipped to 0..255.
- 16-bit RGB / RGBA / LA (48/64-bit PNG, 16-bit TIFF): Pillow keeps only the
  high byte (v >> 8), so these are decoded again by OpenCV
  (`cv2.imdecode(IMREAD_UNCHANGED)`) and scaled by round(v / 257).
- multi-frame files (GIF, APNG, TIFF): the first frame.
"""
from __future__ import annotations

import io
import os
import re
import warnings

import cv2
import numpy as np
from absl import logging
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".pgm", ".ppm", ".pnm", ".bmp", ".webp", ".tif",
                    ".tiff", ".gif")
DEFAULT_MAX_PIXELS = 50_000_000

# Pillow raw modes that hold 16 bits per colour channel but are reduced to 8 bits by dropping the
# low byte ("BGR;16" and friends are 5-6-5 packed pixels, not matched).
_SIXTEEN_BIT_COLOUR = re.compile(r"^(RGB|RGBA|RGBX|LA);16[BLN]?$")


class ImageError(ValueError):
  """A file that cannot be used as an image; `reason` is a short phrase for a rejects list."""

  def __init__(self, path, reason: str):
    self.path = os.fspath(path) if isinstance(path, os.PathLike) else path
    self.reason = reason
    super().__init__(f"{self.path}: {reason}")

  def __reduce__(self):  # keeps (path, reason) through pickling, e.g. across processes
    return type(self), (self.path, self.reason)


def read_image(path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
  """uint8 RGB [H, W, 3] of the image file at `path` (see `decode_image`)."""
  try:
    with open(path, "rb") as file:
      data = file.read()
  except OSError as error:
    raise ImageError(path, f"cannot read file ({error.strerror or error})") from error
  return decode_image(data, os.fspath(path), max_pixels=max_pixels)


def decode_image(data: bytes, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
  """uint8 RGB [H, W, 3] of an encoded image; `name` only labels errors.

  Raises ImageError for an empty or unrecognised file, an image with more than
  `max_pixels` pixels (checked from the header, before decoding; Pillow's own
  `Image.MAX_IMAGE_PIXELS` bomb limit also applies), truncated or corrupt
  pixel data, and colour modes that have no RGB conversion.
  """
  if not data:
    raise ImageError(name, "empty file")
  try:
    # Pillow warns (1x its limit) or raises (2x) about decompression bombs inside open().
    with warnings.catch_warnings():
      warnings.simplefilter("error", Image.DecompressionBombWarning)
      image = Image.open(io.BytesIO(data))
  except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
    raise ImageError(name, f"huge image ({error})") from error
  except UnidentifiedImageError as error:
    raise ImageError(name, "not an image") from error
  except Exception as error:  # Pillow plugins raise many types on malformed headers
    raise ImageError(name, f"corrupt image header ({type(error).__name__}: {error})") from error

  with image:
    width, height = image.size
    if width * height > max_pixels:
      raise ImageError(name, f"huge image {width}x{height} = {width * height / 1e6:.4g} MP > "
                             f"limit {max_pixels / 1e6:.4g} MP")
    sixteen_bit_colour = bool(_SIXTEEN_BIT_COLOUR.match(_raw_mode(image)))
    try:
      image.load()
    except Exception as error:  # OSError "image file is truncated", SyntaxError, ValueError, ...
      raise ImageError(name, f"truncated or corrupt image ({type(error).__name__}: {error})") from error
    if width == 0 or height == 0:
      raise ImageError(name, f"empty image {width}x{height}")
    orientation = _orientation(image, name)
    if sixteen_bit_colour:
      rgb = _decode_sixteen_bit_colour(data, name)
    else:
      rgb = _to_rgb8(image, name)
  return _apply_orientation(rgb, orientation)


def _raw_mode(image: Image.Image) -> str:
  """The raw (file) pixel layout of the first tile, e.g. 'RGB;16B'; '' when unknown."""
  if not image.tile:
    return ""
  args = image.tile[0][3]
  if isinstance(args, tuple) and args:
    args = args[0]
  return args if isinstance(args, str) else ""


def _orientation(image: Image.Image, name: str) -> int:
  """EXIF orientation 1..8 (1 when missing; a corrupt EXIF block is logged and ignored)."""
  try:
    value = image.getexif().get(ExifTags.Base.Orientation, 1)
  except Exception as error:  # malformed EXIF must not cost the image
    logging.warning("%s: ignoring unreadable EXIF (%s)", name, error)
    return 1
  return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _apply_orientation(rgb: np.ndarray, orientation: int) -> np.ndarray:
  """Turn the stored pixels upright, as ImageOps.exif_transpose does."""
  if orientation == 1:
    return rgb
  upright = Image.fromarray(rgb)
  upright.getexif()[ExifTags.Base.Orientation] = orientation
  return np.asarray(ImageOps.exif_transpose(upright))


def _sixteen_to_eight(values: np.ndarray) -> np.ndarray:
  """round(v / 257) for v in 0..65535, in exact integer arithmetic (no ties exist)."""
  return ((values.astype(np.uint32) + 128) // 257).astype(np.uint8)


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
  return np.repeat(gray[:, :, None], 3, axis=2)


def _to_rgb8(image: Image.Image, name: str) -> np.ndarray:
  mode = image.mode
  if mode.startswith("I;16"):
    return _gray_to_rgb(_sixteen_to_eight(np.asarray(image)))
  if mode == "I":
    values = np.asarray(image).astype(np.int64)
    low, high = int(values.min()), int(values.max())
    if low >= 0 and high <= 65535:
      return _gray_to_rgb(_sixteen_to_eight(values))
    stretched = (values - low) * 255.0 / max(high - low, 1)
    return _gray_to_rgb(np.rint(stretched).astype(np.uint8))
  if mode == "F":
    values = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=255.0, neginf=0.0)
    if values.min() >= 0.0 and values.max() <= 1.0:
      values = values * 255.0
    return _gray_to_rgb(np.rint(np.clip(values, 0.0, 255.0)).astype(np.uint8))
  try:
    rgb = np.asarray(image.convert("RGB"))
  except (ValueError, OSError) as error:
    raise ImageError(name, f"unsupported colour mode {mode} ({error})") from error
  return np.ascontiguousarray(rgb, dtype=np.uint8)


def _decode_sixteen_bit_colour(data: bytes, name: str) -> np.ndarray:
  """16-bit-per-channel colour via OpenCV, which keeps all 16 bits (Pillow keeps the high byte)."""
  pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
  if pixels is None:
    raise ImageError(name, "truncated or corrupt image (OpenCV could not decode 16-bit colour)")
  if pixels.dtype == np.uint16:
    pixels = _sixteen_to_eight(pixels)
  elif pixels.dtype != np.uint8:
    raise ImageError(name, f"unsupported 16-bit colour layout ({pixels.dtype})")
  if pixels.ndim == 2:
    return _gray_to_rgb(pixels)
  channels = pixels.shape[2]
  if channels in (1, 2):  # gray, gray + alpha
    return _gray_to_rgb(pixels[:, :, 0])
  if channels in (3, 4):  # BGR, BGRA: drop alpha as Pillow's convert("RGB") does
    return np.ascontiguousarray(pixels[:, :, 2::-1])
  raise ImageError(name, f"unsupported 16-bit colour layout ({channels} channels)")
