"""--align=online: MTCNN alignment of raw image files as a cached tf.data stage.

files -> decode (Pillow) -> `align.align_dataset_stage` (detect, climbing the retry
ladder of --detect_retries when the image as it is holds no usable face: padded by
--detect_padding, ...; choose, warp to the ArcFace template at the training size; no
usable face: reject, or with --on_no_face=center keep the centred square resize as a
"fallback") -> `.cache(file)`. The cache key
covers the files (path, size, mtime) and the alignment settings, so a rerun
(or another run over the same files) reads aligned faces instead of running
the detector again, and a change to any input re-aligns.
"""
from __future__ import annotations

import glob
import hashlib
import json
import os

import numpy as np
import tensorflow as tf
from absl import logging
from tqdm import tqdm

from enas_face.config import DataConfig
from enas_face.data import align
from enas_face.data import images as image_io


def cache_key(root: str, relpaths: list[str], config: DataConfig) -> str:
  """sha1 over the files' (path, size, mtime) and the alignment settings."""
  digest = hashlib.sha1()
  digest.update(json.dumps([root, config.image_size, config.face_policy,
                            config.min_face_confidence, config.max_image_pixels,
                            config.detect_padding, config.on_no_face,
                            config.detect_retries]).encode())
  for relpath in relpaths:
    stat = os.stat(os.path.join(root, relpath))
    digest.update(f"{relpath}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
  return digest.hexdigest()[:16]


def _remove_unfinished_cache(prefix: str) -> None:
  """tf.data leaves a lock file and partial shards when interrupted; a cache is complete
  once its .index exists."""
  if not os.path.exists(prefix + ".index"):
    for path in glob.glob(glob.escape(prefix) + "*"):
      os.remove(path)


def align_files(root: str, relpaths: list[str], config: DataConfig,
                aligner: align.FaceAligner | None = None
                ) -> list[tuple[np.ndarray | None, str, str]]:
  """Per file, in order: (uint8 [S, S, 3], "aligned", ""), (its centred square resize,
  "fallback", why no face) with on_no_face="center", or (None, "rejected", reason)."""
  aligner = aligner or align.FaceAligner(size=config.image_size, policy=config.face_policy,
                                         min_confidence=config.min_face_confidence,
                                         detect_padding=config.detect_padding,
                                         detect_retries=config.detect_retries,
                                         on_no_face=config.on_no_face)
  cache_dir = config.cache_dir or os.path.join(root, ".enas_face_cache")
  os.makedirs(cache_dir, exist_ok=True)
  prefix = os.path.join(cache_dir, f"aligned-{cache_key(root, relpaths, config)}")
  _remove_unfinished_cache(prefix)
  cached = os.path.exists(prefix + ".index")

  def decoded():
    for index, relpath in enumerate(relpaths):
      try:
        image, reason = image_io.read_image(os.path.join(root, relpath),
                                            max_pixels=config.max_image_pixels), ""
      except image_io.ImageError as e:
        image, reason = np.zeros((1, 1, 3), np.uint8), e.reason
      yield image, index, reason

  ds = tf.data.Dataset.from_generator(decoded, output_signature=(
      tf.TensorSpec([None, None, 3], tf.uint8), tf.TensorSpec([], tf.int64),
      tf.TensorSpec([], tf.string)))
  ds = align.align_dataset_stage(ds, aligner).cache(prefix)
  logging.info("%s %d images of %s (cache %s)", "reading aligned" if cached else "aligning",
               len(relpaths), root, prefix)
  results: list[tuple[np.ndarray | None, str, str]] = [
      (None, "rejected", "not processed")] * len(relpaths)
  for aligned, index, decode_reason, status, ok, reason in tqdm(
      ds.as_numpy_iterator(), total=len(relpaths), desc="align", disable=cached):
    if decode_reason:
      results[index] = (None, "rejected", decode_reason.decode())
    elif not ok:
      results[index] = (None, "rejected", reason.decode())
    else:
      results[index] = (aligned, status.decode(), reason.decode())
  return results
