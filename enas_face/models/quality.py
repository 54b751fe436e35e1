"""Quality networks for set-based recognition (METHODS.md §2), and the TensorFlow twin of sets.py's pooling.

- QanBranch (QAN, Liu et al. 2017): per-frame score mu_i = sigmoid(MLP(x_i)) in
  (0, 1) from the frozen embedder's pooled features x_i.
- QualityCNN (QAN++, Efficient PolyFace): a small ResNet on the face image that
  outputs a raw, unbounded score q_i.
- pooling_weights / pool_sets: sets.frame_weights / sets.aggregate in
  TensorFlow (same formulas and guards, batched, differentiable), so a quality
  network trains through the pooling.
- set_contrastive_loss: the training signal on set embeddings.
"""
from __future__ import annotations

from typing import Sequence

import keras
import tensorflow as tf
from keras import layers
from keras import ops as K

from enas_face.evaluation.sets import METHODS


# ------------------------------------------------------------------- QAN
@keras.saving.register_keras_serializable("enas_face")
class QanBranch(keras.Model):
  """QAN's quality score mu = sigmoid(w_2 . relu(W_1 x + b_1) + b_2) of each frame's features x.

  Input: features float [..., C] (e.g. [B, F, C] or [N, C]); output: scores in
  (0, 1) of shape [...]. Our choice: QAN's quality generation unit reads the
  main network's middle feature maps; ours reads the frozen embedder's final
  pooled features (one C-vector per frame) through this 2-layer MLP, so the
  embedder stays untouched and only the branch trains.
  """

  def __init__(self, hidden: int = 64, **kwargs):
    super().__init__(**kwargs)
    self.hidden = int(hidden)
    self.dense_hidden = layers.Dense(self.hidden, activation="relu", kernel_initializer="he_normal",
                                     name="dense_hidden")
    self.dense_score = layers.Dense(1, name="dense_score")

  def call(self, features, training=False):
    logits = self.dense_score(self.dense_hidden(K.cast(features, "float32")))
    return K.sigmoid(K.squeeze(logits, axis=-1))

  def get_config(self):
    return {"hidden": self.hidden, "name": self.name}


# ------------------------------------------------------------------ QAN++
def _conv3x3(filters: int, strides: int, name: str) -> layers.Conv2D:
  return layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False,
                       kernel_initializer="he_normal", name=name)


@keras.saving.register_keras_serializable("enas_face")
class BasicBlock(layers.Layer):
  """ResNet basic block y = relu(BN(conv3x3(relu(BN(conv3x3_s(x))))) + shortcut(x)).

  shortcut(x) = x, or BN(conv1x1_s(x)) when the stride or the channel count changes.
  """

  def __init__(self, filters: int, strides: int = 1, **kwargs):
    super().__init__(**kwargs)
    self.filters, self.strides = int(filters), int(strides)
    self.conv1 = _conv3x3(self.filters, self.strides, "conv1")
    self.bn1 = layers.BatchNormalization(name="bn1")
    self.conv2 = _conv3x3(self.filters, 1, "conv2")
    self.bn2 = layers.BatchNormalization(name="bn2")
    self.projection = self.projection_bn = None

  def build(self, input_shape):
    if self.strides != 1 or input_shape[-1] != self.filters:
      self.projection = layers.Conv2D(self.filters, 1, strides=self.strides, padding="same",
                                      use_bias=False, kernel_initializer="he_normal", name="proj")
      self.projection_bn = layers.BatchNormalization(name="proj_bn")

  def call(self, x, training=False):
    y = K.relu(self.bn1(self.conv1(x), training=training))
    y = self.bn2(self.conv2(y), training=training)
    shortcut = x if self.projection is None else self.projection_bn(self.projection(x), training=training)
    return K.relu(y + shortcut)

  def get_config(self):
    return {**super().get_config(), "filters": self.filters, "strides": self.strides}


@keras.saving.register_keras_serializable("enas_face")
class QualityCNN(keras.Model):
  """QAN++'s quality network: raw score q = w . GAP(stages(stem(x / 127.5 - 1))) + b (linear, unbounded).

  stem: 3x3 conv stride 2 (channels[0]) -> BN -> ReLU; then one BasicBlock per
  entry of `channels` (stride 1 for the first, 2 for the others); global
  average pooling; Dense(1). Input: raw pixels in [0, 255], [N, S, S, 3] -> [N]
  or [B, F, S, S, 3] -> [B, F]; any S >= 16 (S / 16 after the four stride-2
  steps, rounded up). Plain (per-replica) BatchNorm.
  """

  def __init__(self, channels: Sequence[int] = (8, 16, 32, 48), **kwargs):
    super().__init__(**kwargs)
    self.channels = tuple(int(c) for c in channels)
    if not self.channels:
      raise ValueError(f"channels must name at least one stage, got {channels!r}")
    self.stem_conv = _conv3x3(self.channels[0], 2, "stem_conv")
    self.stem_bn = layers.BatchNormalization(name="stem_bn")
    # Attributes, not a list: with Keras 3 on TensorFlow, layers in a list are not tracked by
    # tf.train.Checkpoint, so their weights would silently be neither saved nor restored.
    self.stage_names = tuple(f"stage{i + 1}" for i in range(len(self.channels)))
    for i, (name, c) in enumerate(zip(self.stage_names, self.channels)):
      setattr(self, name, BasicBlock(c, 1 if i == 0 else 2, name=name))
    self.pool = layers.GlobalAveragePooling2D(name="gap")
    self.dense_score = layers.Dense(1, name="dense_score")

  def call(self, images, training=False):
    images = tf.convert_to_tensor(images)
    if images.shape.rank not in (4, 5):
      raise ValueError(f"images must be [N, S, S, 3] or [B, F, S, S, 3], got shape {images.shape}")
    outer = tf.shape(images)[:-3]
    x = tf.reshape(tf.cast(images, tf.float32), tf.concat([[-1], tf.shape(images)[-3:]], axis=0))
    x = x / 127.5 - 1.0
    x = K.relu(self.stem_bn(self.stem_conv(x), training=training))
    for name in self.stage_names:
      x = getattr(self, name)(x, training=training)
    score = tf.squeeze(self.dense_score(self.pool(x)), axis=-1)
    return tf.reshape(score, outer)

  def get_config(self):
    return {"channels": list(self.channels), "name": self.name}


# ---------------------------------------------------------------- pooling
def _check_method(method) -> str:
  if method not in METHODS:
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")
  return method


def _as_float(x) -> tf.Tensor:
  x = tf.convert_to_tensor(x)
  return x if x.dtype.is_floating else tf.cast(x, tf.float32)


def _safe_divide(numerator, denominator, ok):
  """numerator / denominator where `ok`, else 0; the untaken branch never divides by 0 (finite gradients)."""
  return tf.where(ok, numerator / tf.where(ok, denominator, tf.ones_like(denominator)),
                  tf.zeros_like(numerator))


def pooling_weights(scores, method: str) -> tf.Tensor:
  """Frame weights w_i (sum_i w_i = 1 along the last axis) of sets of F frames: [..., F] -> [..., F].

  sets.frame_weights row by row, in TensorFlow (F may be unknown at trace time):
  - mean:  w_i = 1/F.
  - best:  w_i = 1 for the first frame with the highest score, else 0.
  - qan:   w_i = mu_i / sum_j mu_j (sigmoid scores); w_i = 1/F if sum_j mu_j <= 0.
  - qanpp: q'_i = (q_i - min q) / (max q - min q) if F > 2 (q'_i = 1, i.e. the
           mean, if max q = min q), else q'_i = q_i; w_i = q'_i / sum_j q'_j,
           and w_i = 1/F if sum_j q'_j <= 0.
  The guards use tf.where with safe denominators, so gradients stay finite.
  Unlike sets.py, the scores' range and finiteness are not checked.
  """
  method = _check_method(method)
  scores = _as_float(scores)
  if scores.shape.rank == 0:
    raise ValueError("scores must have a frame axis [..., F], got a scalar")
  if scores.shape[-1] == 0:
    raise ValueError(f"scores must hold at least one frame: a set cannot be empty, got shape {scores.shape}")
  num_frames = tf.shape(scores)[-1]
  uniform = tf.ones_like(scores) / tf.cast(num_frames, scores.dtype)
  if method == "mean":
    return uniform
  if method == "best":
    is_max = scores >= tf.reduce_max(scores, axis=-1, keepdims=True)
    first = tf.logical_and(is_max, tf.cumsum(tf.cast(is_max, tf.int32), axis=-1) == 1)
    return tf.cast(first, scores.dtype)
  if method == "qanpp":
    low = tf.reduce_min(scores, axis=-1, keepdims=True)
    spread = tf.reduce_max(scores, axis=-1, keepdims=True) - low
    normalised = tf.where(spread > 0, _safe_divide(scores - low, spread, spread > 0), tf.ones_like(scores))
    scores = tf.where(num_frames > 2, normalised, scores)
  total = tf.reduce_sum(scores, axis=-1, keepdims=True)
  return tf.where(total > 0, _safe_divide(scores, total, total > 0), uniform)


def pool_sets(embeddings, scores, method: str) -> tf.Tensor:
  """Set embeddings e = normalize(sum_i w_i normalize(f_i)), w = pooling_weights(scores, method): [..., F, D] -> [..., D].

  sets.aggregate in TensorFlow: frames are L2-normalised before pooling;
  normalize(x) = x / sqrt(max(||x||^2, 1e-12)) (tf.math.l2_normalize), so a
  zero vector stays zero. scores: [..., F], or None for method 'mean'.
  """
  method = _check_method(method)
  embeddings = _as_float(embeddings)
  if embeddings.shape.rank is not None and embeddings.shape.rank < 2:
    raise ValueError(f"embeddings must be [..., F, D], got shape {embeddings.shape}")
  if scores is None:
    if method != "mean":
      raise ValueError(f"method {method!r} needs one quality score per frame, got scores=None")
    scores = tf.zeros(tf.shape(embeddings)[:-1], embeddings.dtype)
  weights = pooling_weights(tf.cast(scores, embeddings.dtype), method)
  units = tf.math.l2_normalize(embeddings, axis=-1, epsilon=1e-12)
  pooled = tf.reduce_sum(weights[..., None] * units, axis=-2)
  return tf.math.l2_normalize(pooled, axis=-1, epsilon=1e-12)


# ------------------------------------------------------------------- loss
def _masked_logsumexp(logits, mask):
  """log sum_{j: mask_ij} exp(logits_ij) per row; 0 for rows with an empty mask (finite values and gradients)."""
  lowest = logits.dtype.min
  any_true = tf.reduce_any(mask, axis=-1)
  peak = tf.stop_gradient(tf.reduce_max(tf.where(mask, logits, lowest), axis=-1, keepdims=True))
  total = tf.reduce_sum(tf.exp(tf.where(mask, logits - peak, lowest)), axis=-1)
  safe_total = tf.where(any_true, total, tf.ones_like(total))
  return tf.where(any_true, tf.squeeze(peak, -1) + tf.math.log(safe_total), tf.zeros_like(total))


def set_contrastive_loss(set_embeddings, set_labels, scale: float = 16.0) -> tf.Tensor:
  """Multi-positive N-pair loss of set embeddings; scalar.

  With s_ab = scale <e_a, e_b> and P(a) = {b != a : y_b = y_a}:
  l_a = -log( sum_{b in P(a)} exp(s_ab) / sum_{b != a} exp(s_ab) )
      = logsumexp_{b != a} s_ab - logsumexp_{b in P(a)} s_ab,
  loss = mean of l_a over the anchors with P(a) non-empty (0 if there are none).
  set_embeddings: [K, D] unit vectors; set_labels: int [K] (set-level identity
  labels only). Our choice: QAN trains with a triplet loss on set embeddings;
  this is its batch-wide generalisation (every other set of the batch is a
  negative; supervised-contrastive style). QAN++ publishes no training recipe.
  """
  embeddings = _as_float(set_embeddings)
  labels = tf.convert_to_tensor(set_labels)
  logits = scale * tf.matmul(embeddings, embeddings, transpose_b=True)
  size = tf.shape(logits)[0]
  others = tf.logical_not(tf.eye(size, dtype=tf.bool))
  positives = tf.logical_and(tf.equal(labels[:, None], labels[None, :]), others)
  has_positive = tf.reduce_any(positives, axis=-1)
  per_anchor = _masked_logsumexp(logits, others) - _masked_logsumexp(logits, positives)
  per_anchor = tf.where(has_positive, per_anchor, tf.zeros_like(per_anchor))
  count = tf.reduce_sum(tf.cast(has_positive, logits.dtype))
  return tf.reduce_sum(per_anchor) / tf.maximum(count, 1.0)
