"""Teachers for distillation (distill.py): what --distill_from names, loaded as one callable.

The teacher is a run folder (its config.json and latest checkpoint: child, and head for
the KL term) or an exported SavedModel (uint8 images -> unit embeddings, any embedder;
embedding term only). Its input is resized to the teacher's image size when it differs.
"""
from __future__ import annotations

import dataclasses
import os

import tensorflow as tf
from absl import logging

from enas_face.config import ConfigError
from enas_face import runlog
from enas_face import spaces
from enas_face.training import checkpoints


@dataclasses.dataclass
class Teacher:
  """images float [N, S, S, 3] in [0, 255] -> (unit embeddings [N, D_t], logits or None)."""
  embed: object
  head: object | None
  image_size: int
  embedding_dim: int
  num_classes: int | None
  source: str

  def __call__(self, images):
    if images.shape[1] != self.image_size:
      images = tf.image.resize(images, (self.image_size, self.image_size))
    raw = tf.cast(self.embed(images), tf.float32)
    logits = None if self.head is None else tf.stop_gradient(self.head(raw))
    return tf.stop_gradient(tf.math.l2_normalize(raw, axis=-1)), logits


def is_saved_model(path: str) -> bool:
  return os.path.isfile(os.path.join(path, "saved_model.pb"))


def load_teacher(path: str, flag: str = "--distill_from") -> Teacher:
  """The teacher at `path`: a run folder trained by --mode=fixed, or a SavedModel folder
  (RUN/saved_model from --mode=export, or any with a uint8 serving_default signature).
  ConfigError naming `flag` when it is neither or has no checkpoint."""
  if not os.path.isdir(path):
    raise ConfigError(f"{flag}={path}: no such folder (a run folder trained with --mode=fixed, "
                      "or an exported SavedModel)")
  if is_saved_model(path):
    return _saved_model_teacher(path, flag)
  if not os.path.isfile(os.path.join(path, runlog.CONFIG)):
    raise ConfigError(f"{flag}={path}: neither a run folder (no {runlog.CONFIG}) nor a SavedModel "
                      "(no saved_model.pb)")
  run = checkpoints.load_run(path, flag)
  logging.info("teacher: %s (%s)", run.checkpoint, spaces.of(run.config.model).describe(run.config.arc))
  child, head = run.child, run.head
  return Teacher(lambda images: child(images, training=False),
                 (lambda e: head(e)) if head is not None else None,
                 run.config.model.image_size, run.config.model.embedding_dim,
                 run.num_classes, run.checkpoint)


def _saved_model_teacher(path: str, flag: str) -> Teacher:
  loaded = tf.saved_model.load(path)
  serve = loaded.signatures.get("serving_default")
  if serve is None:
    raise ConfigError(f"{flag}={path}: the SavedModel has no serving_default signature")
  (name, spec), = serve.structured_input_signature[1].items()
  if spec.dtype != tf.uint8 or spec.shape.rank != 4 or spec.shape[1] is None:
    raise ConfigError(f"{flag}={path}: serving_default takes {spec}; expected uint8 images "
                      "[N, S, S, 3] (as --mode=export writes)")
  output = next(iter(serve.structured_outputs))
  dim = int(serve.structured_outputs[output].shape[-1])

  def embed(images):
    pixels = tf.cast(tf.clip_by_value(tf.round(images), 0, 255), tf.uint8)
    return serve(**{name: pixels})[output]

  return Teacher(embed, None, int(spec.shape[1]), dim, None, path)
