"""Distillation from a trained teacher: the extra loss term of fixed training and of the
width/depth search (one term, training/step.py's seam).

    L = w_c (1 - alpha) CE  +  w_e L_emb  +  w_r L_rel  +  alpha T^2 KL(softmax(z_t / T) || softmax(z_s / T))

    L_emb,i = 1 - cos(P e_s,i, t_i)
    L_rel   = 1 / |{(i, j): i != j}|  sum_{i != j} (cos(e_s,i, e_s,j) - cos(t_i, t_j))^2

e_s: the student's embedding, P a learned linear projection (only when the student's and
the teacher's embedding sizes differ, else the identity), t the teacher's embedding.
On unit vectors the squared L2 distance is 2 (1 - cos), so the cosine term is the L2 term
up to a factor 2. z_s = head_s(e_s) and z_t = head_t(t): both heads' inference logits
(s cos for a margin head, e W + b for softmax; no margin), which needs a teacher run with
the same classes. METHODS.md §4: the KL form and alpha = 0.9, T = 4 are TAS's retraining
loss; the embedding term and using it in the search too are our choices (the seed's
teacher guidance is not published), as is w_c (--distill_ce_weight, default 1; 0 trains on
the teacher's terms alone).

L_rel is relational (similarity-preserving) distillation after Tung & Mori, ICCV 2019
("Similarity-Preserving Knowledge Distillation"): the student's batch similarity matrix
matched to the teacher's. Theirs is (1/b^2) ||G~_t - G~_s||_F^2 of activation Gram matrices
whose rows are L2-normalised; ours (METHODS.md §6) takes the cosines of the embeddings (each
embedding normalised), leaves out the diagonal (always 1) and averages over the b (b - 1)
pairs i != j. It needs no projection and ignores any rotation of either space, so it suits
a teacher whose embedding space is unrelated to the student's. Per example it is
L_rel,i = mean_{j != i} (S_ij - T_ij)^2, whose batch mean is L_rel; each replica forms the
matrix of its own batch.

Unlabelled images (--unlabelled, data/unlabelled.py): each step mixes a batch U of B_u of them
into the labelled batch L of B. They have no label, so no CE; every distillation term runs
over L u U (the on-the-fly teachers embed U too; an embeddings file's targets for U come with
it), and the relational term's matrices span both batches:

    L = (1 - alpha) (1/B) sum_{i in L} CE_i
        + (1/(B + B_u)) sum_{i in L u U} (w_e L_emb,i + w_r L_rel,i + alpha T^2 KL_i)

(the KL term too when alpha > 0: a same-identities teacher's soft labels are defined for any
face, Hinton et al. 2015's transfer set; our choice). Without unlabelled images U is empty and
this is the equation above.

The teacher (teachers.py) is a run folder (with its head for the KL term), a SavedModel or
an ONNX file (run on the augmented batch), or an embeddings file (its targets, of the
unaugmented images, come with the batch: LossInputs.targets). An embeddings file's targets
are centred, t <- t - mu with mu their mean over the training images
(--distill_centre_targets, our choice): L_emb and L_rel compare directions, and a space that
is not centred puts every face near one direction (dlib: cosine 0.83 +- 0.03 between random
LFW faces, -0.01 +- 0.17 once centred), so without it matching the mean direction already
leaves L_emb at 0.09. With --distill_missing=skip an image without a target (a zero row)
drops out of both terms: its L_emb,i is 0 and its pairs leave the L_rel means (the batch
mean still divides by all B examples).
"""
from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from enas_face.config import ConfigError, DistillConfig
from enas_face.training.step import ExtraLoss
from enas_face.training.teachers import (Teacher, load_teacher, training_targets, unit_targets,
                                         unlabelled_targets)


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


def relational_loss(student_embeddings, teacher_embeddings, has_target=None):
  """L_rel,i = m_i sum_{j != i} m_j (S_ij - T_ij)^2 / sum_{j != i} m_j, [N]: S, T the cosine
  matrices of the student's and the teacher's embeddings, m 1 where a row has a teacher
  target (all rows by default)."""
  s = tf.math.l2_normalize(tf.cast(student_embeddings, tf.float32), axis=-1)
  t = tf.math.l2_normalize(tf.cast(teacher_embeddings, tf.float32), axis=-1)
  n = tf.shape(s)[0]
  m = tf.ones([n], tf.float32) if has_target is None else tf.cast(has_target, tf.float32)
  weights = (1.0 - tf.eye(n, dtype=tf.float32)) * m[None, :]
  squared = tf.square(tf.matmul(s, s, transpose_b=True) - tf.matmul(t, t, transpose_b=True))
  per_row = tf.reduce_sum(weights * squared, -1) / tf.maximum(tf.reduce_sum(weights, -1), 1.0)
  return m * per_row


def distillation_loss(config: DistillConfig, teacher: Teacher, projection: Projection,
                      student_embeddings, student_logits, images, targets=None):
  """Per-example w_e L_emb + w_r L_rel + alpha T^2 KL(p_t || p_s), [N]; `targets` [N, D_t]:
  an embeddings-file teacher's rows for the batch (zero rows: no target)."""
  return tf.add_n(list(distillation_terms(config, teacher, projection, student_embeddings,
                                          student_logits, images, targets).values()))


def distillation_terms(config: DistillConfig, teacher: Teacher, projection: Projection,
                       student_embeddings, student_logits, images, targets=None) -> dict:
  """The weighted per-example terms of distillation_loss, [N] each: {"embedding": w_e L_emb,
  "relational": w_r L_rel (when w_r > 0), "kl": alpha T^2 KL (when alpha > 0)}."""
  if teacher.precomputed:
    if targets is None:
      raise ValueError(f"{teacher.source}: a precomputed teacher needs the batch's targets")
    teacher_embeddings, has_target = unit_targets(targets)
    teacher_logits = None
  else:
    (teacher_embeddings, teacher_logits), has_target = teacher(images), None
  projected = tf.math.l2_normalize(tf.cast(projection(student_embeddings), tf.float32), axis=-1)
  cosine = 1.0 - tf.reduce_sum(projected * teacher_embeddings, -1)
  terms = {"embedding": config.embedding_weight * (
      cosine if has_target is None else has_target * cosine)}
  if config.relational_weight > 0:
    terms["relational"] = config.relational_weight * relational_loss(
        student_embeddings, teacher_embeddings, has_target)
  if config.kl_alpha > 0:
    t = config.temperature
    log_p_s = tf.nn.log_softmax(tf.cast(student_logits, tf.float32) / t, -1)
    log_p_t = tf.nn.log_softmax(tf.cast(teacher_logits, tf.float32) / t, -1)
    kl = tf.reduce_sum(tf.exp(log_p_t) * (log_p_t - log_p_s), -1)
    terms["kl"] = config.kl_alpha * t * t * kl
  return terms


@dataclasses.dataclass
class Distillation:
  """The teacher, the learned projection (checkpointed with the student) and the loss term."""
  config: DistillConfig
  teacher: Teacher
  projection: Projection
  # mu of --distill_centre_targets: the mean target of the training images (set by
  # training_targets; the unlabelled images' targets are centred on the same mu).
  target_mean: np.ndarray | None = None

  @property
  def cross_entropy_weight(self) -> float:
    """w_CE = --distill_ce_weight (1 - alpha)."""
    return self.config.cross_entropy_weight * (1.0 - self.config.kl_alpha)

  def terms(self, embeddings, head, images, targets=None) -> dict:
    """The per-example terms for a student's embeddings (distillation_terms; its head
    gives z_s)."""
    logits = head(embeddings) if self.config.kl_alpha > 0 else None
    return distillation_terms(self.config, self.teacher, self.projection, embeddings, logits,
                              images, targets)

  def loss(self, embeddings, head, images, targets=None):
    """The per-example term for a student's embeddings: the sum of its terms."""
    return tf.add_n(list(self.terms(embeddings, head, images, targets).values()))

  def term(self) -> ExtraLoss:
    """The per-example term over the labelled rows and the step's unlabelled ones, as its
    components (each is logged: "loss/distill/embedding", ...)."""
    def fn(inputs):
      images, embeddings, targets = inputs.with_unlabelled()
      return self.terms(embeddings, inputs.head, images, targets)
    return ExtraLoss("distill", 1.0, fn, per_example=True, layer=self.projection,
                     unlabelled=True)

  def training_targets(self, train) -> np.ndarray | None:
    """An embeddings-file teacher's targets of the training split (teachers.training_targets),
    centred (centred_targets) with --distill_centre_targets; None for a teacher that runs on
    the batch."""
    if not self.teacher.precomputed:
      return None
    targets = training_targets(self.teacher, train, self.config.missing)
    if not self.config.centre_targets:
      return targets
    present = np.any(targets != 0, axis=-1)
    self.target_mean = targets[present].astype(np.float64).mean(0)
    return centred_targets(targets, self.target_mean)

  def unlabelled_targets(self, unlabelled):
    """(the unlabelled images that teach, their targets or None for a teacher that runs on
    the batch): an embeddings file's targets by key, centred on the training images' mu; with
    --distill_missing=skip the images it has none for are left out
    (teachers.unlabelled_targets)."""
    if not self.teacher.precomputed:
      return unlabelled, None
    images, targets = unlabelled_targets(self.teacher, unlabelled, self.config.missing)
    if not self.config.centre_targets:
      return images, targets
    if self.target_mean is None:
      raise RuntimeError("training_targets first: it sets the mean the targets are centred on")
    return images, centred_targets(targets, self.target_mean)


def centred_targets(targets: np.ndarray, mean: np.ndarray) -> np.ndarray:
  """t - mu per row, float32; a zero row (an image without a target) stays zero."""
  present = np.any(targets != 0, axis=-1, keepdims=True)
  return np.where(present, targets - mean, 0.0).astype(np.float32)


def build(config: DistillConfig, student_dim: int, num_classes: int,
          flag: str = "--distill_from") -> Distillation | None:
  """The run's distillation (None without a teacher); call inside the strategy's scope.
  ConfigError naming --distill_kl_alpha when the KL term has no teacher logits to match."""
  if not config.teacher:
    return None
  teacher = load_teacher(config.teacher, flag, config.input_mean, config.input_std)
  if config.kl_alpha > 0:
    if teacher.head is None:
      raise ConfigError(f"--distill_kl_alpha={config.kl_alpha} needs the teacher's logits, "
                        f"but {flag}={config.teacher} is a {teacher.kind} teacher (embeddings "
                        "only); use a run folder or --distill_kl_alpha=0")
    if teacher.num_classes != num_classes:
      raise ConfigError(f"--distill_kl_alpha={config.kl_alpha}: the teacher's head has "
                        f"{teacher.num_classes} classes, this run's data {num_classes}; the KL "
                        "term needs the same identities (or use --distill_kl_alpha=0)")
  projection = Projection(student_dim, teacher.embedding_dim, name="distill_projection")
  projection.build((None, student_dim))
  return Distillation(config, teacher, projection)
