"""Tests for decoding image files to uint8 RGB (enas_face.data.images)."""
from __future__ import annotations

import io
import os
import pickle
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import ExifTags, Image

from enas_face.data.images import (DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, ImageError, decode_image,
                                   read_image)


def _png(pixels: np.ndarray, colour_type: int, bit_depth: int, width: int | None = None,
         height: int | None = None, with_data: bool = True) -> bytes:
  """A PNG written by hand (zlib + struct), independent of Pillow and OpenCV.

  colour_type 0 = gray, 2 = RGB, 4 = gray + alpha, 6 = RGBA; 16-bit samples big-endian.
  width/height override the header (to claim a size the data does not have).
  """
  def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
  rows = pixels.shape[0]
  height = rows if height is None else height
  width = pixels.shape[1] if width is None else width
  header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
  samples = pixels.astype(">u2" if bit_depth == 16 else np.uint8).reshape(rows, -1)
  raw = b"".join(b"\x00" + samples[row].tobytes() for row in range(rows))  # filter 0 per row
  body = chunk(b"IHDR", header)
  if with_data:
    body += chunk(b"IDAT", zlib.compress(raw))
  return b"\x89PNG\r\n\x1a\n" + body + chunk(b"IEND", b"")


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
  buffer = io.BytesIO()
  image.save(buffer, fmt, **kwargs)
  return buffer.getvalue()


def _smooth_rgb(height: int = 64, width: int = 80) -> np.ndarray:
  rows, cols = np.mgrid[0:height, 0:width]
  return np.stack([rows * 255 // (height - 1), cols * 255 // (width - 1),
                   (rows + cols) * 255 // (height + width - 2)], axis=-1).astype(np.uint8)


# Hand-computed round(v / 257) for 16-bit samples; Pillow alone gives v >> 8 (or clips at 255).
SIXTEEN = np.array([0, 128, 129, 257, 385, 386, 1000, 30000, 65535], np.uint16)
EIGHT = np.array([0, 0, 1, 1, 1, 2, 4, 117, 255], np.uint8)


def test_constants_and_error_format():
  assert all(ext.startswith(".") and ext == ext.lower() for ext in IMAGE_EXTENSIONS)
  assert {".jpg", ".png", ".pgm", ".webp", ".tiff", ".gif"} <= set(IMAGE_EXTENSIONS)
  assert DEFAULT_MAX_PIXELS == 50_000_000
  error = ImageError("a/b.jpg", "not an image")
  assert isinstance(error, ValueError)
  assert (error.path, error.reason, str(error)) == ("a/b.jpg", "not an image", "a/b.jpg: not an image")
  copy = pickle.loads(pickle.dumps(error))
  assert (copy.path, copy.reason, str(copy)) == (error.path, error.reason, str(error))


def test_jpeg_round_trip(tmp_path):
  source = _smooth_rgb()
  path = tmp_path / "face.jpg"
  Image.fromarray(source).save(path, quality=95)
  image = read_image(path)
  assert image.dtype == np.uint8 and image.shape == (64, 80, 3)
  assert np.abs(image.astype(int) - source).mean() < 2.0


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_file_is_rejected_naming_the_file(tmp_path, fmt):
  data = _encode(Image.fromarray(_smooth_rgb(256, 256)), fmt)
  path = tmp_path / f"cut.{fmt.lower()}"
  path.write_bytes(data[:len(data) // 2])
  with pytest.raises(ImageError) as caught:
    read_image(path)
  assert caught.value.path == str(path) and str(path) in str(caught.value)
  assert "truncated or corrupt" in caught.value.reason


def test_random_bytes_text_empty_and_missing_files(tmp_path):
  noise = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
  with pytest.raises(ImageError, match="not an image") as caught:
    decode_image(noise, "noise.jpg")
  assert caught.value.path == "noise.jpg"
  with pytest.raises(ImageError, match="not an image"):
    decode_image(b"hello, I am text\n", "notes.png")
  empty = tmp_path / "empty.png"
  empty.write_bytes(b"")
  with pytest.raises(ImageError) as caught:
    read_image(empty)
  assert caught.value.reason == "empty file"
  with pytest.raises(ImageError, match="cannot read file") as caught:
    read_image(tmp_path / "missing.jpg")
  assert caught.value.path == str(tmp_path / "missing.jpg")
  with pytest.raises(ImageError, match="cannot read file"):
    read_image(tmp_path)  # a folder


def test_pgm_grayscale_gives_three_equal_channels(tmp_path):
  gray = _smooth_rgb(30, 20)[:, :, 0]
  path = tmp_path / "gray.pgm"
  assert cv2.imwrite(str(path), gray)
  image = read_image(path)
  assert image.shape == (30, 20, 3)
  for channel in range(3):
    np.testing.assert_array_equal(image[:, :, channel], gray)


def test_real_orl_pgm(shared_data):
  path = os.path.join(shared_data, "orl_faces", "s1", "1.pgm")
  image = read_image(path)
  assert image.shape == (112, 92, 3) and image.dtype == np.uint8
  assert (image[:, :, 0] == image[:, :, 1]).all() and (image[:, :, 1] == image[:, :, 2]).all()
  np.testing.assert_array_equal(image[:, :, 0], cv2.imread(path, cv2.IMREAD_GRAYSCALE))
  assert image.std() > 10  # a real face, not a blank


def test_cmyk_jpeg_gives_source_colours():
  source = np.zeros((16, 16, 3), np.uint8)
  source[:8], source[8:] = (200, 30, 40), (20, 160, 220)
  data = _encode(Image.fromarray(source).convert("CMYK"), "JPEG", quality=95)
  assert Image.open(io.BytesIO(data)).mode == "CMYK"
  image = decode_image(data, "cmyk.jpg")
  assert image.shape == (16, 16, 3)
  assert np.abs(image.astype(int) - source).max() <= 6


def test_sixteen_bit_grayscale_png_is_scaled_not_clipped(tmp_path):
  path = tmp_path / "gray16.png"
  assert cv2.imwrite(str(path), SIXTEEN[None, :])
  assert Image.open(path).mode.startswith("I;16")
  image = read_image(path)
  assert image.shape == (1, 9, 3)
  for channel in range(3):
    np.testing.assert_array_equal(image[0, :, channel], EIGHT)
  # The same through a hand-written PNG, and through a 16-bit PGM (Pillow mode "I").
  np.testing.assert_array_equal(decode_image(_png(SIXTEEN[None, :], 0, 16), "g.png")[0, :, 1], EIGHT)
  pgm = tmp_path / "gray16.pgm"
  assert cv2.imwrite(str(pgm), SIXTEEN[None, :])
  np.testing.assert_array_equal(read_image(pgm)[0, :, 2], EIGHT)


def test_sixteen_bit_colour_files_keep_the_low_byte(tmp_path):
  rgb = np.stack([SIXTEEN, SIXTEEN[::-1], SIXTEEN[[4, 2, 7, 0, 8, 1, 3, 6, 5]]], axis=-1)[None]
  expected = np.stack([EIGHT, EIGHT[::-1], EIGHT[[4, 2, 7, 0, 8, 1, 3, 6, 5]]], axis=-1)[None]
  # Pillow alone keeps only the high byte here (e.g. 1000 -> 3, 386 -> 1 instead of 4 and 2).
  pillow_only = np.asarray(Image.open(io.BytesIO(_png(rgb, 2, 16))).convert("RGB"))
  assert not np.array_equal(pillow_only, expected)
  np.testing.assert_array_equal(decode_image(_png(rgb, 2, 16), "rgb48.png"), expected)
  rgba = np.concatenate([rgb, np.full((1, 9, 1), 65535, np.uint16)], axis=-1)
  np.testing.assert_array_equal(decode_image(_png(rgba, 6, 16), "rgba64.png"), expected)
  gray_alpha = np.stack([SIXTEEN, np.full(9, 3000, np.uint16)], axis=-1)[None]
  np.testing.assert_array_equal(decode_image(_png(gray_alpha, 4, 16), "la32.png"),
                                np.repeat(EIGHT[None, :, None], 3, axis=2))
  for suffix in ("png", "tif"):  # OpenCV writes BGR
    path = tmp_path / f"rgb16.{suffix}"
    assert cv2.imwrite(str(path), rgb[:, :, ::-1])
    np.testing.assert_array_equal(read_image(path), expected)


def test_sixteen_bit_colour_png_honours_exif_orientation():
  rgb = np.zeros((2, 3, 3), np.uint16)
  rgb[0, 0] = (65535, 1000, 0)  # top-left pixel as stored
  plain = _png(rgb, 2, 16)
  exif = Image.Exif()
  exif[ExifTags.Base.Orientation] = 3  # rotate 180 to display
  body = exif.tobytes()
  if body.startswith(b"Exif\x00\x00"):
    body = body[6:]
  exif_chunk = struct.pack(">I", len(body)) + b"eXIf" + body + struct.pack(
      ">I", zlib.crc32(b"eXIf" + body))
  iend = plain.rindex(b"IEND") - 4
  image = decode_image(plain[:iend] + exif_chunk + plain[iend:], "rotated48.png")
  assert image.shape == (2, 3, 3)
  np.testing.assert_array_equal(image[1, 2], (255, 4, 0))
  assert image[0, 0].sum() == 0


def test_huge_images_are_refused_from_the_header(tmp_path):
  path = tmp_path / "small.png"
  Image.fromarray(_smooth_rgb(100, 100)).save(path)
  assert read_image(path, max_pixels=10_000).shape == (100, 100, 3)
  with pytest.raises(ImageError, match=r"huge image 100x100 = 0\.01 MP > limit 0\.005 MP"):
    read_image(path, max_pixels=5_000)
  # Headers that claim sizes their (missing) pixel data never had: refused before any decoding.
  one_pixel = np.zeros((1, 1, 3), np.uint8)
  with pytest.raises(ImageError, match="huge image 8000x8000 = 64 MP > limit 50 MP"):
    decode_image(_png(one_pixel, 2, 8, 8000, 8000, with_data=False), "claims64MP.png")
  for side in (10_000, 30_000):  # above Pillow's bomb limit (89 MP warns, 179 MP raises)
    with pytest.raises(ImageError, match=f"huge image.*{side * side}") as caught:
      decode_image(_png(one_pixel, 2, 8, side, side, with_data=False), "bomb.png",
                   max_pixels=10**12)
    assert caught.value.reason.startswith("huge image")


def test_exif_rotated_jpeg_comes_out_upright():
  upright = np.zeros((40, 20, 3), np.uint8)
  upright[:20] = (220, 20, 20)  # red on top
  upright[20:] = (20, 20, 220)  # blue below
  stored = np.ascontiguousarray(np.rot90(upright, 1))  # turned 90 degrees anticlockwise: 20x40
  exif = Image.Exif()
  exif[ExifTags.Base.Orientation] = 6  # "rotate 90 clockwise to display"
  data = _encode(Image.fromarray(stored), "JPEG", quality=95, exif=exif.tobytes())
  image = decode_image(data, "rotated.jpg")
  assert image.shape == (40, 20, 3)
  assert np.abs(image[2:18].astype(int) - (220, 20, 20)).max() < 12
  assert np.abs(image[22:38].astype(int) - (20, 20, 220)).max() < 12


def test_alpha_palette_bilevel_and_float_modes():
  rgba = np.zeros((4, 5, 4), np.uint8)
  rgba[..., :3], rgba[..., 3] = (10, 120, 250), np.arange(5) * 60
  np.testing.assert_array_equal(decode_image(_encode(Image.fromarray(rgba), "PNG"), "a.png"),
                                np.broadcast_to([10, 120, 250], (4, 5, 3)))
  source = _smooth_rgb(16, 16)
  palette = Image.fromarray(source).quantize(16)
  np.testing.assert_array_equal(decode_image(_encode(palette, "PNG"), "p.png"),
                                np.asarray(palette.convert("RGB")))
  bilevel = Image.fromarray((source[:, :, 0] > 128).astype(np.uint8) * 255).convert("1")
  image = decode_image(_encode(bilevel, "BMP"), "b.bmp")
  assert set(np.unique(image)) <= {0, 255} and (image[..., 0] == image[..., 2]).all()
  gray_alpha = Image.fromarray(source[:, :, 1]).convert("LA")
  np.testing.assert_array_equal(decode_image(_encode(gray_alpha, "PNG"), "la.png")[..., 0],
                                source[:, :, 1])
  unit_float = Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32))
  np.testing.assert_array_equal(decode_image(_encode(unit_float, "TIFF"), "f.tif")[0, :, 0],
                                [0, 128, 255])
  wide_ints = Image.fromarray(np.array([[-100, 0, 100_000]], np.int32))  # mode I beyond 16 bits
  np.testing.assert_array_equal(decode_image(_encode(wide_ints, "TIFF"), "i.tif")[0, :, 0],
                                [0, 0, 255])


def test_multi_frame_gif_gives_the_first_frame():
  frames = [Image.new("RGB", (8, 6), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
  data = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
  assert Image.open(io.BytesIO(data)).n_frames == 3
  image = decode_image(data, "anim.gif")
  assert image.shape == (6, 8, 3)
  np.testing.assert_array_equal(image[0, 0], (255, 0, 0))


def test_webp_and_tiff_decode():
  source = _smooth_rgb(24, 32)
  np.testing.assert_array_equal(decode_image(_encode(Image.fromarray(source), "TIFF"), "t.tif"), source)
  webp = decode_image(_encode(Image.fromarray(source), "WEBP", lossless=True), "w.webp")
  np.testing.assert_array_equal(webp, source)
