"""tf.data input pipelines: shuffle, augment, batch, prefetch.

Images stay raw pixels in [0, 255]; the model's first layer standardises them
with the training set's per-channel statistics (`channel_statistics`), so the
exported model accepts the same raw pixels. Augmentation (paper, at 112x112:
random flip, pad 4 to 120 then random crop 112, cutout 16) works around the
mean colour, so padded and cut-out pixels standardise to exactly 0.

Every random choice is a stateless op seeded by (seed, epoch, element index):
an epoch's batches are identical whenever they are rebuilt, e.g. on resume.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from enas_face.data.base import LabelledImages

AUTOTUNE = tf.data.AUTOTUNE


def channel_statistics(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Per-channel mean_c = E[x_c] and std_c = sqrt(E[x_c^2] - mean_c^2) over all pixels."""
  pixels = images.reshape(-1, images.shape[-1]).astype(np.float64)
  return pixels.mean(axis=0).astype(np.float32), pixels.std(axis=0).astype(np.float32)


def _augment(image, element_seed, mean, random_flip: bool, pad: int, cutout: int):
  """Flip, pad + random crop and cutout of one image, all relative to the mean colour."""
  flip_seed, crop_seed, cutout_seed = tf.unstack(
      tf.random.experimental.stateless_split(element_seed, 3))
  size = image.shape[0]
  centred = tf.cast(image, tf.float32) - mean
  if random_flip:
    centred = tf.image.stateless_random_flip_left_right(centred, flip_seed)
  if pad > 0:
    padded = tf.pad(centred, [[pad, pad], [pad, pad], [0, 0]])
    centred = tf.image.stateless_random_crop(padded, [size, size, 3], crop_seed)
  if cutout > 0:
    centre = tf.random.stateless_uniform([2], cutout_seed, 0, size, dtype=tf.int32)
    rows = tf.range(size)[:, None]
    cols = tf.range(size)[None, :]
    half = cutout // 2
    # A cutout x cutout square around a uniform centre, clipped at the border.
    inside = ((rows >= centre[0] - half) & (rows < centre[0] - half + cutout) &
              (cols >= centre[1] - half) & (cols < centre[1] - half + cutout))
    centred = centred * tf.cast(~inside, tf.float32)[:, :, None]
  return centred + mean


def augment_and_batch(ds: tf.data.Dataset, batch_size: int, mean: np.ndarray, *, seed: int,
                      epoch: int, random_flip: bool = True, pad: int = 0, cutout: int = 0,
                      augment: bool = True) -> tf.data.Dataset:
  """(image uint8 [S, S, 3], label, index int64[, target]) elements -> augmented float32
  batches (images, labels[, targets]); a target (the teacher's embedding of the
  unaugmented image) passes through unchanged.

  The element index seeds its augmentation (stateless), so a batch is the same
  whenever it is rebuilt; the last partial batch is dropped.
  """
  mean = tf.constant(mean, tf.float32)

  def prepare(image, label, index, *target):
    if augment:
      element_seed = tf.stack([tf.constant(seed * 100003 + epoch, tf.int64), index])
      image = _augment(image, element_seed, mean, random_flip, pad, cutout)
    return (tf.cast(image, tf.float32), tf.cast(label, tf.int32), *target)

  ds = ds.map(prepare, num_parallel_calls=AUTOTUNE, deterministic=True)
  return ds.batch(batch_size, drop_remainder=True).prefetch(AUTOTUNE)


def split_statistics(split) -> tuple[np.ndarray, np.ndarray]:
  """Channel (mean, std) of a training split: over all its pixels in memory, over its
  sample when it streams (data/stream.py)."""
  if isinstance(split, LabelledImages):
    return channel_statistics(split.images)
  return split.mean, split.std


def train_dataset(split, batch_size: int, mean: np.ndarray, *, seed: int,
                  epoch: int, random_flip: bool = True, pad: int = 0, cutout: int = 0,
                  augment: bool = True, input_context=None,
                  targets: np.ndarray | None = None) -> tf.data.Dataset:
  """One epoch of (images float32 [B, S, S, 3] in [0, 255], labels int32 [B]), shuffled with
  a seed derived from (seed, epoch). In-memory images (LabelledImages; B = global batch);
  a streamed split builds its own stream (StreamedImages.dataset, per input pipeline).
  With `targets` [N, D] (row i: image i's precomputed teacher embedding) the batches are
  (images, labels, targets [B, D]), each image's target beside it (in memory only)."""
  if not isinstance(split, LabelledImages):
    if targets is not None:
      raise ValueError("precomputed teacher targets need the training split in memory")
    return split.dataset(batch_size, mean, seed=seed, epoch=epoch, random_flip=random_flip,
                         pad=pad, cutout=cutout, augment=augment, input_context=input_context)
  count = len(split)
  if batch_size > count:
    raise ValueError(f"batch_size={batch_size} is larger than the training split ({count} images)")
  order = np.random.default_rng([seed, epoch]).permutation(count)
  extra = () if targets is None else (np.asarray(targets, np.float32)[order],)
  ds = tf.data.Dataset.from_tensor_slices((split.images[order], split.labels[order].astype(np.int32),
                                           np.arange(count, dtype=np.int64), *extra))
  return augment_and_batch(ds, batch_size, mean, seed=seed, epoch=epoch, random_flip=random_flip,
                           pad=pad, cutout=cutout, augment=augment)


def unlabelled_rows(count: int, seed: int, start: int, size: int) -> np.ndarray:
  """Positions start .. start + size - 1 of an endless stream over `count` unlabelled images:
  pass p (positions p count .. (p + 1) count - 1) is a permutation seeded by (seed, p), so each
  image comes once a pass and a position always holds the same image (resume-safe)."""
  first, last = start // count, (start + size - 1) // count
  stream = np.concatenate([np.random.default_rng([seed, 0x5EED, p]).permutation(count)
                           for p in range(first, last + 1)])
  offset = start - first * count
  return stream[offset:offset + size]


def unlabelled_dataset(images: np.ndarray, batch_size: int, mean: np.ndarray, *, seed: int,
                       epoch: int, steps: int, random_flip: bool = True, pad: int = 0,
                       cutout: int = 0, augment: bool = True,
                       targets: np.ndarray | None = None) -> tf.data.Dataset:
  """Epoch `epoch`'s `steps` batches of unlabelled images, {"images": float32 [B_u, S, S, 3]
  [, "targets": [B_u, D]]}: stream positions e n .. (e + 1) n - 1, n = steps B_u, of
  unlabelled_rows (the stream goes on across epochs), augmented as the labelled images with
  seeds from (seed, position)."""
  size = steps * batch_size
  rows = unlabelled_rows(len(images), seed, epoch * size, size)
  extra = () if targets is None else (np.asarray(targets, np.float32)[rows],)
  ds = tf.data.Dataset.from_tensor_slices((images[rows], np.full(size, -1, np.int32),
                                           np.arange(epoch * size, (epoch + 1) * size,
                                                     dtype=np.int64), *extra))
  ds = augment_and_batch(ds, batch_size, mean, seed=seed + 1, epoch=0, random_flip=random_flip,
                         pad=pad, cutout=cutout, augment=augment)
  return ds.map(lambda images, _, *rest: {"images": images,
                                          **({"targets": rest[0]} if rest else {})})


def with_unlabelled(labelled: tf.data.Dataset, unlabelled: tf.data.Dataset) -> tf.data.Dataset:
  """Batches (images, labels[, targets], unlabelled): each labelled batch with the next
  unlabelled one (a dict, unlabelled_dataset's), as the train step takes them."""
  return tf.data.Dataset.zip((labelled, unlabelled)).map(lambda batch, extra: (*batch, extra))


def eval_dataset(images: np.ndarray, batch_size: int) -> tf.data.Dataset:
  """Batches of raw images (float32, no augmentation), in order."""
  ds = tf.data.Dataset.from_tensor_slices(images)
  return ds.map(lambda x: tf.cast(x, tf.float32), num_parallel_calls=AUTOTUNE).batch(
      batch_size).prefetch(AUTOTUNE)
