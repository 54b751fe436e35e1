"""Image keys: how an image is found in an embeddings file (a teacher's, tools/
teacher_embeddings.py; a cleaning proxy's, data/cleaning.py); numpy only.

    pixel_hash(x) = sha1(str(x.shape) + the bytes of x)                          (hex)
    key(x)        = x's path in its source when the reader knows it ('/'-separated,
                    relative to the source root), else "sha1:" + pixel_hash(x)

A path key serves every run over the same source photos at any --image_size; a hash key only
the same pixels at the same size.
"""
from __future__ import annotations

import hashlib

import numpy as np

CONTENT_PREFIX = "sha1:"


def pixel_hashes(images: np.ndarray) -> np.ndarray:
  """sha1 of each image's shape and pixels, str [N] (hex)."""
  return np.array([hashlib.sha1(str(image.shape).encode() + np.ascontiguousarray(image).tobytes())
                   .hexdigest() for image in images])


def content_key(image: np.ndarray) -> str:
  """"sha1:" + pixel_hash of one image."""
  return CONTENT_PREFIX + str(pixel_hashes(image[None])[0])


def image_keys(images: np.ndarray, paths: np.ndarray | None = None) -> list[str]:
  """Each image's key: its source path when known, else content_key (module docstring)."""
  if paths is not None:
    return [str(p) for p in paths]
  return [CONTENT_PREFIX + str(k) for k in pixel_hashes(images)] if len(images) else []
