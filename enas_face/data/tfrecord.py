"""Sharded TFRecords of aligned faces, described by a manifest.

An aligned folder (written by tools/align_dataset.py or `write_arrays`) holds

    manifest.json             what is inside: settings, identities, rejects, shards
    part-00000.tfrecord ...   one tf.train.Example per accepted face

Example features:

    image/encoded   bytes  the face, RGB, size x size, JPEG (quality 95) or PNG
    image/label     int64  index of the identity among the sorted names of ALL
                           identity folders of the source (stable across runs)
    image/identity  bytes  identity folder name (UTF-8)
    image/path      bytes  path relative to the source root, '/'-separated,
                           e.g. "Aaron_Peirsol/Aaron_Peirsol_0001.jpg"
    image/size      int64  side of the stored square image

Shards are written under `<name>.tmp` and renamed when complete, so a killed
run never leaves a half-written shard under its final name.
"""
from __future__ import annotations

import json
import os
from typing import Iterable, Sequence

import cv2
import numpy as np
import tensorflow as tf

from enas_face.data.sources import MANIFEST  # the file a tfrecord: spec is checked for

FORMAT = "enas_face/aligned-tfrecord"
VERSION = 1
IMAGE_FORMATS = ("jpeg", "png")
JPEG_QUALITY = 95
AUTOTUNE = tf.data.AUTOTUNE
_REQUIRED_KEYS = ("format", "version", "image_size", "aligned", "num_images", "num_identities",
                  "identities", "rejects", "num_rejects", "empty_identities", "shards")

_FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/label": tf.io.FixedLenFeature([], tf.int64),
    "image/identity": tf.io.FixedLenFeature([], tf.string),
    "image/path": tf.io.FixedLenFeature([], tf.string),
    "image/size": tf.io.FixedLenFeature([], tf.int64),
}


class ManifestError(ValueError):
  """An aligned folder is missing, incomplete or not what the reader expects."""


def shard_name(index: int) -> str:
  return f"part-{index:05d}.tfrecord"


# ---------------------------------------------------------------------------- write side

def encode_image(image: np.ndarray, image_format: str = "jpeg", quality: int = JPEG_QUALITY) -> bytes:
  """RGB uint8 [H, W, 3] -> JPEG (`quality`) or lossless PNG bytes."""
  if image_format not in IMAGE_FORMATS:
    raise ValueError(f"image_format must be one of {IMAGE_FORMATS}, got {image_format!r}")
  if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
    raise ValueError(f"expected an RGB uint8 [H, W, 3] image, got {image.dtype} {image.shape}")
  bgr = np.ascontiguousarray(image[:, :, ::-1])
  if image_format == "jpeg":
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
  else:
    ok, data = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 3])
  if not ok:
    raise ValueError(f"OpenCV could not encode a {image.shape} image as {image_format}")
  return data.tobytes()


def make_example(image: np.ndarray, label: int, identity: str, path: str,
                 image_format: str = "jpeg", quality: int = JPEG_QUALITY) -> tf.train.Example:
  """The tf.train.Example of one square RGB uint8 face (features: see the module docstring)."""
  if image.ndim != 3 or image.shape[0] != image.shape[1]:
    raise ValueError(f"{path}: expected a square [S, S, 3] image, got {image.shape}")
  feature = {
      "image/encoded": _bytes(encode_image(image, image_format, quality)),
      "image/label": _int64(label),
      "image/identity": _bytes(identity.encode("utf-8")),
      "image/path": _bytes(path.replace(os.sep, "/").encode("utf-8")),
      "image/size": _int64(image.shape[0]),
  }
  return tf.train.Example(features=tf.train.Features(feature=feature))


def _bytes(value: bytes) -> tf.train.Feature:
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int64(value: int) -> tf.train.Feature:
  return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


class ShardWriter:
  """Writes one shard atomically: records go to `<path>.tmp`, renamed on `close()`.

      with ShardWriter(path, image_format="png") as writer:
        writer.write(image, label, identity, relpath)

  Leaving the `with` block through an exception deletes the temporary file.
  """

  def __init__(self, path: str, image_format: str = "jpeg", quality: int = JPEG_QUALITY):
    if image_format not in IMAGE_FORMATS:
      raise ValueError(f"image_format must be one of {IMAGE_FORMATS}, got {image_format!r}")
    self.path = path
    self.tmp_path = path + ".tmp"
    self.image_format = image_format
    self.quality = quality
    self.count = 0
    self._writer = tf.io.TFRecordWriter(self.tmp_path)

  def write(self, image: np.ndarray, label: int, identity: str, path: str) -> None:
    example = make_example(image, label, identity, path, self.image_format, self.quality)
    self._writer.write(example.SerializeToString())
    self.count += 1

  def close(self) -> None:
    """Flushes the records and moves the shard to its final name."""
    self._writer.close()
    os.replace(self.tmp_path, self.path)

  def abort(self) -> None:
    self._writer.close()
    if os.path.exists(self.tmp_path):
      os.remove(self.tmp_path)

  def __enter__(self) -> "ShardWriter":
    return self

  def __exit__(self, exc_type, exc, tb) -> None:
    if exc_type is None:
      self.close()
    else:
      self.abort()


def write_json_atomic(path: str, value) -> None:
  """json.dump to `<path>.tmp`, then os.replace: readers never see a partial file."""
  tmp_path = path + ".tmp"
  with open(tmp_path, "w", encoding="utf-8") as f:
    json.dump(value, f, indent=1, ensure_ascii=False)
    f.write("\n")
  os.replace(tmp_path, path)


def write_manifest(folder: str, manifest: dict) -> str:
  """Checks `manifest` and writes `folder/manifest.json` atomically; returns its path."""
  _check_manifest(manifest, folder)
  path = os.path.join(folder, MANIFEST)
  write_json_atomic(path, manifest)
  return path


def write_arrays(folder: str, images: np.ndarray, labels: Sequence[int], paths: Sequence[str],
                 identity_names: Sequence[str], *, image_format: str = "png",
                 quality: int = JPEG_QUALITY, images_per_shard: int = 1000, source: str = "",
                 aligned: bool = True, policy: str | None = None) -> dict:
  """Writes in-memory faces as an aligned folder (shards + manifest) and returns the manifest.

  images: uint8 [N, S, S, 3]; labels: index into identity_names; paths: relative paths.
  Records keep the given order. For datasets already in memory (tests, synthetic faces).
  """
  images = np.asarray(images)
  if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] != images.shape[2] \
      or images.shape[3] != 3:
    raise ValueError(f"images must be uint8 [N, S, S, 3], got {images.dtype} {images.shape}")
  if not len(labels) == len(paths) == len(images):
    raise ValueError(f"images ({len(images)}), labels ({len(labels)}) and paths ({len(paths)}) "
                     "must have the same length")
  if images_per_shard < 1:
    raise ValueError(f"images_per_shard must be >= 1, got {images_per_shard}")
  os.makedirs(folder, exist_ok=True)
  counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(identity_names))
  if len(counts) > len(identity_names):
    raise ValueError(f"labels go up to {len(counts) - 1} but there are only "
                     f"{len(identity_names)} identity names")
  shards = []
  for start in range(0, max(len(images), 1), images_per_shard):
    name = shard_name(len(shards))
    with ShardWriter(os.path.join(folder, name), image_format, quality) as writer:
      for i in range(start, min(start + images_per_shard, len(images))):
        writer.write(images[i], int(labels[i]), identity_names[int(labels[i])], paths[i])
    shards.append(name)
  manifest = {
      "format": FORMAT, "version": VERSION, "image_size": int(images.shape[1]),
      "aligned": bool(aligned), "policy": policy, "image_format": image_format,
      "source": source, "num_images": int(len(images)),
      "num_identities": len(identity_names),
      "identities": [{"name": name, "label": label, "count": int(counts[label])}
                     for label, name in enumerate(identity_names)],
      "rejects": [], "num_rejects": 0, "empty_identities": [], "shards": shards, "seconds": 0.0,
  }
  write_manifest(folder, manifest)
  return manifest


# ---------------------------------------------------------------------------- read side

def _check_manifest(manifest, where: str) -> None:
  if not isinstance(manifest, dict):
    raise ManifestError(f"{where}: manifest must be a JSON object, got {type(manifest).__name__}")
  missing = [key for key in _REQUIRED_KEYS if key not in manifest]
  if missing:
    raise ManifestError(f"{where}: manifest lacks {missing}")
  if manifest["format"] != FORMAT:
    raise ManifestError(f"{where}: manifest format is {manifest['format']!r}, expected {FORMAT!r}")
  if manifest["version"] != VERSION:
    raise ManifestError(f"{where}: manifest version {manifest['version']!r} is not supported "
                        f"(expected {VERSION})")
  size = manifest["image_size"]
  if isinstance(size, bool) or not isinstance(size, int) or size < 1:
    raise ManifestError(f"{where}: image_size must be a positive integer, got {size!r}")
  if not isinstance(manifest["shards"], list) or not all(
      isinstance(name, str) for name in manifest["shards"]):
    raise ManifestError(f"{where}: shards must be a list of file names")


def read_manifest(folder: str) -> dict:
  """The checked manifest.json of an aligned folder; ManifestError names the folder otherwise."""
  path = os.path.join(folder, MANIFEST)
  if not os.path.isdir(folder):
    raise ManifestError(f"{folder} is not a folder (expected an aligned TFRecord folder with "
                        f"{MANIFEST})")
  if not os.path.isfile(path):
    raise ManifestError(f"{folder} has no {MANIFEST}: not an aligned TFRecord folder, or its "
                        "alignment run did not finish (rerun tools/align_dataset.py to resume)")
  try:
    with open(path, encoding="utf-8") as f:
      manifest = json.load(f)
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise ManifestError(f"{path}: not a readable JSON manifest ({e})") from e
  _check_manifest(manifest, path)
  return manifest


def tfrecord_files(folder: str, manifest: dict | None = None) -> list[str]:
  """Paths of the folder's shards in manifest order; ManifestError lists missing ones."""
  manifest = manifest or read_manifest(folder)
  files = [os.path.join(folder, name) for name in manifest["shards"]]
  missing = [name for name, path in zip(manifest["shards"], files) if not os.path.isfile(path)]
  if missing:
    raise ManifestError(f"{folder}: {len(missing)} of {len(files)} shards listed in {MANIFEST} "
                        f"are missing: {_shorten(missing)}")
  return files


def _shorten(names: Sequence[str], limit: int = 10) -> str:
  shown = ", ".join(names[:limit])
  return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def parse_example(serialized) -> dict:
  """tf ops: one serialized Example -> {"encoded": string, "label": int32, "identity": string,
  "path": string, "size": int32}. The image stays encoded (decode with `decode_face`)."""
  parsed = tf.io.parse_single_example(serialized, _FEATURES)
  return {
      "encoded": parsed["image/encoded"],
      "label": tf.cast(parsed["image/label"], tf.int32),
      "identity": parsed["image/identity"],
      "path": parsed["image/path"],
      "size": tf.cast(parsed["image/size"], tf.int32),
  }


def decode_face(encoded, stored_size: int, image_size: int | None = None):
  """tf ops: JPEG/PNG bytes -> uint8 [S, S, 3], resized if image_size != stored_size.

  Shrinking uses area interpolation (the mean of the covered pixels); enlarging, which
  area interpolation would turn into blocks, uses bilinear.
  """
  image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
  image = tf.ensure_shape(image, [stored_size, stored_size, 3])
  if image_size is None or image_size == stored_size:
    return image
  method = "area" if image_size < stored_size else "bilinear"
  resized = tf.image.resize(image, [image_size, image_size], method=method)
  return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)


def _check_image_size(image_size) -> None:
  if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int)
                                 or image_size < 1):
    raise ValueError(f"image_size must be a positive integer or None, got {image_size!r}")


def stream(folder: str, image_size: int | None = None, num_parallel_reads: int | None = None,
           num_parallel_calls: int = AUTOTUNE) -> tf.data.Dataset:
  """tf.data.Dataset of (image uint8 [S, S, 3], label int32, path string).

  S is `image_size` or the stored size. With num_parallel_reads=None (default) the
  shards are read one after the other, so the order is the manifest's (identities
  and files sorted, as the alignment tool wrote them); an integer k > 1 interleaves
  k shards record by record (still deterministic for a fixed k; AUTOTUNE is not,
  as it depends on the machine). Decoding runs in parallel and keeps the order.
  """
  _check_image_size(image_size)
  manifest = read_manifest(folder)
  files = tfrecord_files(folder, manifest)
  stored_size = int(manifest["image_size"])
  records = tf.data.TFRecordDataset(files, num_parallel_reads=num_parallel_reads)

  def decode(serialized):
    example = parse_example(serialized)
    return decode_face(example["encoded"], stored_size, image_size), example["label"], \
        example["path"]

  return records.map(decode, num_parallel_calls=num_parallel_calls, deterministic=True)


def load_arrays(folder: str, image_size: int | None = None,
                batch_size: int = 256) -> tuple[np.ndarray, np.ndarray, list[str]]:
  """The whole aligned folder in memory: (images uint8 [N, S, S, 3], labels int32 [N], paths).

  For small datasets (LFW: 13k faces are 0.5 GB at 112x112; ORL) that the trainer
  keeps as arrays. Decodes with `stream` (parallel, manifest order); labels are the
  manifest's stable identity labels; paths are relative to the source root.
  """
  manifest = read_manifest(folder)
  size = image_size or int(manifest["image_size"])
  expected = int(manifest["num_images"])
  images = np.empty((expected, size, size, 3), np.uint8)
  labels = np.empty((expected,), np.int32)
  paths: list[str] = []
  count = 0
  for batch_images, batch_labels, batch_paths in stream(folder, image_size).batch(
      batch_size).prefetch(2).as_numpy_iterator():
    n = len(batch_labels)
    if count + n > expected:
      raise ManifestError(f"{folder}: the shards hold more than the {expected} images the "
                          f"manifest lists")
    images[count:count + n] = batch_images
    labels[count:count + n] = batch_labels
    paths.extend(p.decode("utf-8") for p in batch_paths)
    count += n
  if count != expected:
    raise ManifestError(f"{folder}: the shards hold {count} images but the manifest lists "
                        f"{expected}")
  return images, labels, paths


def lookup_images(folder: str, relpaths: Iterable[str], image_size: int | None = None,
                  batch_size: int = 256) -> np.ndarray:
  """uint8 [len(relpaths), S, S, 3]: the stored faces of the given relative paths, in order.

  Only the requested records are decoded (e.g. the LFW pair images of an aligned
  LFW folder). ManifestError lists the paths the folder does not hold (rejected at
  alignment, or not part of the source).
  """
  _check_image_size(image_size)
  relpaths = [p.replace(os.sep, "/") for p in relpaths]
  manifest = read_manifest(folder)
  stored_size = int(manifest["image_size"])
  size = image_size or stored_size
  unique = sorted(set(relpaths))
  if not unique:
    return np.empty((0, size, size, 3), np.uint8)
  table = tf.lookup.StaticHashTable(
      tf.lookup.KeyValueTensorInitializer(tf.constant(unique),
                                          tf.range(len(unique), dtype=tf.int64)), -1)
  records = tf.data.TFRecordDataset(tfrecord_files(folder, manifest))

  def index_of(serialized):
    example = parse_example(serialized)
    return table.lookup(example["path"]), example["encoded"]

  wanted = records.map(index_of, num_parallel_calls=AUTOTUNE).filter(lambda i, _: i >= 0)
  decoded = wanted.map(lambda i, encoded: (i, decode_face(encoded, stored_size, image_size)),
                       num_parallel_calls=AUTOTUNE)
  found = np.zeros(len(unique), bool)
  images = np.zeros((len(unique), size, size, 3), np.uint8)
  for indices, batch in decoded.batch(batch_size).as_numpy_iterator():
    images[indices] = batch
    found[indices] = True
  if not found.all():
    missing = [unique[i] for i in np.flatnonzero(~found)]
    raise ManifestError(f"{folder}: {len(missing)} of the {len(unique)} requested images are not "
                        f"in the shards: {_shorten(missing)}")
  position = {path: i for i, path in enumerate(unique)}
  return images[[position[p] for p in relpaths]]
