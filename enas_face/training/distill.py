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

The teacher (teachers.py) is a run folder, with its head for the KL term, or an exported
SavedModel (the embedding term only).
"""
from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from enas_face.config import ConfigError, DistillConfig
from enas_face.training.step import ExtraLoss
from enas_face.training.teachers import Teacher, load_teacher


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
