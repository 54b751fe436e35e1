"""Distillation from a trained teacher: the extra loss term of fixed training and of the
width/depth search (one term, training/step.py's seam).

    L = (1 - alpha) CE  +  w_e (1 - cos(P e_s, e_t))  +  alpha T^2 KL(softmax(z_t / T) || softmax(z_s / T))

e_s: the student's embedding, P a learned linear projection (only when the student's and
the teacher's embedding sizes differ, else the identity), e_t the teacher's unit embedding.
On unit vectors the squared L2 distance is 2 (1 - cos), so the cosine term is the L2 term
up to a factor 2. z_s = head_s(e_s) and z_t = head_t(e_t): both heads' inference logits
(s cos for a margin head, e W + b for softmax; no margin), which needs a teacher run with
the same classes. METHODS.md §4: the KL form and alpha = 0.9, T = 4 are TAS's retraining
loss; the embedding term and using it in the search too are our choices (the seed's
teacher guidance is not published).

The teacher is a run folder (its config.json and latest checkpoint: child, and head for
the KL term) or an exported SavedModel (uint8 images -> unit embeddings, any embedder;
embedding term only). Its input is resized to the teacher's image size when it differs.
"""
from __future__ import annotations

import dataclasses
import os

import keras
import tensorflow as tf
from absl import logging

from enas_face.config import ConfigError, DistillConfig
from enas_face import runlog
from enas_face import spaces
from enas_face.training import checkpoints
from enas_face.training.step import ExtraLoss


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


class Projection(keras.layers.Layer):
  """P: the student's embedding [N, D_s] -> [N, D_t] (a bias-free linear map), or the
  identity when D_s = D_t."""

  def __init__(self, student_dim: int, teacher_dim: int, **kwargs):
    super().__init__(**kwargs)
    self.student_dim, self.teacher_dim = student_dim, teacher_dim
    self.dense = (keras.layers.Dense(teacher_dim, use_bias=False, name="dense")
                  if student_dim != teacher_dim else None)

  def build(self, input_shape):
    if self.dense is not None:
      self.dense.build(input_shape)

  def call(self, embeddings):
    return embeddings if self.dense is None else self.dense(embeddings)


def distillation_loss(config: DistillConfig, teacher: Teacher, projection: Projection,
                      student_embeddings, student_logits, images):
  """Per-example w_e (1 - cos(P e_s, e_t)) + alpha T^2 KL(p_t || p_s), [N]."""
  teacher_embeddings, teacher_logits = teacher(images)
  projected = tf.math.l2_normalize(tf.cast(projection(student_embeddings), tf.float32), axis=-1)
  loss = config.embedding_weight * (1.0 - tf.reduce_sum(projected * teacher_embeddings, -1))
  if config.kl_alpha > 0:
    t = config.temperature
    log_p_s = tf.nn.log_softmax(tf.cast(student_logits, tf.float32) / t, -1)
    log_p_t = tf.nn.log_softmax(tf.cast(teacher_logits, tf.float32) / t, -1)
    kl = tf.reduce_sum(tf.exp(log_p_t) * (log_p_t - log_p_s), -1)
    loss += config.kl_alpha * t * t * kl
  return loss


@dataclasses.dataclass
class Distillation:
  """The teacher, the learned projection (checkpointed with the student) and the loss term."""
  config: DistillConfig
  teacher: Teacher
  projection: Projection

  @property
  def cross_entropy_weight(self) -> float:
    return 1.0 - self.config.kl_alpha

  def loss(self, embeddings, head, images):
    """The per-example term for a student's embeddings (its head gives z_s)."""
    logits = head(embeddings) if self.config.kl_alpha > 0 else None
    return distillation_loss(self.config, self.teacher, self.projection, embeddings, logits,
                             images)

  def term(self) -> ExtraLoss:
    return ExtraLoss("distill", 1.0,
                     lambda inputs: self.loss(inputs.embeddings, inputs.head, inputs.images),
                     per_example=True, layer=self.projection)


def build(config: DistillConfig, student_dim: int, num_classes: int,
          flag: str = "--distill_from") -> Distillation | None:
  """The run's distillation (None without a teacher); call inside the strategy's scope.
  ConfigError naming --distill_kl_alpha when the KL term has no teacher logits to match."""
  if not config.teacher:
    return None
  teacher = load_teacher(config.teacher, flag)
  if config.kl_alpha > 0:
    if teacher.head is None:
      raise ConfigError(f"--distill_kl_alpha={config.kl_alpha} needs the teacher's logits, "
                        f"but {flag}={config.teacher} is a SavedModel (embeddings only); use a "
                        "run folder or --distill_kl_alpha=0")
    if teacher.num_classes != num_classes:
      raise ConfigError(f"--distill_kl_alpha={config.kl_alpha}: the teacher's head has "
                        f"{teacher.num_classes} classes, this run's data {num_classes}; the KL "
                        "term needs the same identities (or use --distill_kl_alpha=0)")
  projection = Projection(student_dim, teacher.embedding_dim, name="distill_projection")
  projection.build((None, student_dim))
  return Distillation(config, teacher, projection)
