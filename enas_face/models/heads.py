"""Classification heads and margin losses on top of the face embedding.

Split as insightface's arcface_torch: a classifier layer gives the scores
(e W + b for softmax; cos theta_j = <W_j/|W_j|, x/|x|> for the normalised heads),
a margin function turns (cos, labels) into the logits the cross-entropy sees,
and the cross-entropy itself lives in the training step. Verification and
export use the embedding alone; the head only exists for training and for the
classification accuracy (argmax of the scores: cosine for the normalised heads).

Notation (../shared/METHODS.md §1-§3): c_j = cos theta_j, y the label,
s the scale; only the target logit z_y changes unless said otherwise.

  softmax     z_j = W_j.x + b_j                                 (Zhu 2019 Eq. 1)
  cosface     z_y = s (c_y - m)                                 (Eq. 3; m = 0.35)
  arcface     z_y = s cos(theta_y + m) if c_y > cos(pi - m)
                    else s (c_y - m sin m)                       (Eq. 4; m = 0.5)
  combined    z_y = s (cos(m1 theta_y + m2) - m3)               (insightface; 1, 0.3, 0.2)
  sphereface  z_y = |x| (lambda c_y + psi(theta_y)) / (1 + lambda),  z_j = |x| c_j,
              psi(theta) = (-1)^k cos(m theta) - 2k, k = floor(m theta / pi)   (Eq. 2; m = 4)
  arcnegface  z_y = s a_y (arcface's target), z_j = s (t_j c_j + t_j - 1),
              t_j = alpha exp(-(c_j - a_y)^2 / sigma), no gradient    (alpha 1.2, sigma 2)
  rescaled    c_y := clip_value if c_y > clip_thresh;
              z_y = s_pos (cos(m1 arccos c_y + m2) - m3), z_j = s_neg c_j
              (comprehensive search's searched family)

Numerics: cosines are clipped to [-1 + 1e-7, 1 - 1e-7] before arccos and
1 - c^2 to [1e-9, 1] before sqrt, so every gradient is finite at |c| = 1;
L2 normalisation has an epsilon; logits are float32.
"""
from __future__ import annotations

import dataclasses
import math

import keras
import tensorflow as tf
from keras import layers

COS_EPS = 1e-7
SIN_SQ_EPS = 1e-9
NORM_EPS = 1e-12


def clip_cos(cos):
  """c clipped to [-1 + 1e-7, 1 - 1e-7]: arccos and its gradient stay finite."""
  return tf.clip_by_value(cos, -1.0 + COS_EPS, 1.0 - COS_EPS)


def sin_from_cos(cos):
  """sin theta = sqrt(clip(1 - c^2, 1e-9, 1)) for theta in [0, pi]."""
  return tf.sqrt(tf.clip_by_value(1.0 - tf.square(cos), SIN_SQ_EPS, 1.0))


def target_cos(cos, labels):
  """c_y for each row: cos [B, C], labels [B] int -> [B]."""
  return tf.gather(cos, labels, axis=1, batch_dims=1)


def replace_target(logits, labels, target):
  """logits with z_y replaced by `target` [B] in each row."""
  onehot = tf.one_hot(labels, tf.shape(logits)[1], dtype=logits.dtype)
  return logits * (1.0 - onehot) + onehot * target[:, None]


def arcface_target(cos_y, margin: float, easy_margin: bool = False):
  """cos(theta_y + m) = c cos m - sin theta sin m where it decreases in theta; beyond:

  fallback (insightface): c - m sin m when c <= cos(pi - m) (theta + m > pi);
  easy margin:            c           when c <= 0.
  """
  cos_y = clip_cos(cos_y)
  phi = cos_y * math.cos(margin) - sin_from_cos(cos_y) * math.sin(margin)
  if easy_margin:
    return tf.where(cos_y > 0.0, phi, cos_y)
  return tf.where(cos_y > math.cos(math.pi - margin), phi, cos_y - margin * math.sin(margin))


def chebyshev(cos, m: int):
  """cos(m theta) as the Chebyshev polynomial T_m(c): T_0 = 1, T_1 = c,
  T_{k+1} = 2 c T_k - T_{k-1} (no arccos needed)."""
  previous, current = tf.ones_like(cos), cos
  if m == 0:
    return previous
  for _ in range(m - 1):
    previous, current = current, 2.0 * cos * current - previous
  return current


def sphereface_psi(cos_y, m: int):
  """psi(theta) = (-1)^k cos(m theta) - 2k, k = floor(m theta / pi) taken without gradient:
  monotonically decreasing on [0, pi], equal to cos(m theta) for theta < pi/m."""
  cos_y = clip_cos(cos_y)
  k = tf.stop_gradient(tf.floor(m * tf.acos(cos_y) / math.pi))
  sign = 1.0 - 2.0 * tf.math.floormod(k, 2.0)
  return sign * chebyshev(cos_y, m) - 2.0 * k


# ---------------------------------------------------------------------------
# Margins: (cos [B, C], labels [B]) -> logits [B, C]. Plain configuration objects.


@dataclasses.dataclass(frozen=True)
class NormalizedSoftmax:
  """z_j = s c_j: what every margin head becomes at m = 0."""
  scale: float

  def __call__(self, cos, labels, **_):
    return self.scale * cos


@dataclasses.dataclass(frozen=True)
class CosFace:
  """CosFace / AM-Softmax: z_y = s (c_y - m), z_j = s c_j."""
  scale: float
  margin: float = 0.35

  def __call__(self, cos, labels, **_):
    return self.scale * replace_target(cos, labels, target_cos(cos, labels) - self.margin)


@dataclasses.dataclass(frozen=True)
class ArcFace:
  """ArcFace: z_y = s cos(theta_y + m) (with the fallback or easy margin), z_j = s c_j."""
  scale: float
  margin: float = 0.5
  easy_margin: bool = False

  def __call__(self, cos, labels, **_):
    target = arcface_target(target_cos(cos, labels), self.margin, self.easy_margin)
    return self.scale * replace_target(cos, labels, target)


@dataclasses.dataclass(frozen=True)
class CombinedMargin:
  """insightface's combined margin: z_y = s (cos(m1 theta_y + m2) - m3), z_j = s c_j.

  (1, m, 0) is ArcFace without its fallback, (1, 0, m) CosFace; as in insightface's
  combined loss there is no fallback past m1 theta + m2 > pi.
  """
  scale: float
  m1: float = 1.0
  m2: float = 0.3
  m3: float = 0.2

  def __call__(self, cos, labels, **_):
    theta = tf.acos(clip_cos(target_cos(cos, labels)))
    target = tf.cos(self.m1 * theta + self.m2) - self.m3
    return self.scale * replace_target(cos, labels, target)


@dataclasses.dataclass(frozen=True)
class ArcNegFace:
  """ArcNegFace (Efficient PolyFace): z_y = s a_y, a_y = ArcFace's target with the fallback;
  z_j = s (t_j c_j + t_j - 1), t_j = alpha exp(-(c_j - a_y)^2 / sigma) without gradient.
  alpha = 1, sigma -> inf gives ArcFace."""
  scale: float
  margin: float = 0.5
  alpha: float = 1.2
  sigma: float = 2.0

  def __call__(self, cos, labels, **_):
    a_y = arcface_target(target_cos(cos, labels), self.margin)
    t = tf.stop_gradient(self.alpha * tf.exp(-tf.square(cos - a_y[:, None]) / self.sigma))
    return self.scale * replace_target(t * cos + t - 1.0, labels, a_y)


@dataclasses.dataclass(frozen=True)
class RescaledMargin:
  """The comprehensive search's loss family: c_y := clip_value where c_y > clip_thresh;
  z_y = s_pos (cos(m1 arccos(c_y) + m2) - m3), z_j = s_neg c_j.
  (s, s, 1, m, 0) with the clip off is ArcFace without its fallback."""
  s_pos: float = 64.0
  s_neg: float = 64.0
  m1: float = 1.0
  m2: float = 0.5
  m3: float = 0.0
  clip_thresh: float = 1.0
  clip_value: float = 1.0

  def __call__(self, cos, labels, **_):
    cos_y = target_cos(cos, labels)
    cos_y = tf.where(cos_y > self.clip_thresh, tf.fill(tf.shape(cos_y), self.clip_value), cos_y)
    theta = tf.acos(clip_cos(cos_y))
    target = self.s_pos * (tf.cos(self.m1 * theta + self.m2) - self.m3)
    return replace_target(self.s_neg * cos, labels, target)


@dataclasses.dataclass(frozen=True)
class SphereFace:
  """A-Softmax: z_y = |x| (lambda c_y + psi(theta_y)) / (1 + lambda), z_j = |x| c_j, with
  lambda = max(lambda_min, base (1 + gamma t)^(-power)) at training iteration t
  (SphereFace's annealing; it does not converge without it)."""
  margin: int = 4
  lambda_base: float = 1000.0
  lambda_gamma: float = 0.12
  lambda_power: float = 1.0
  lambda_min: float = 5.0

  def annealed_lambda(self, step):
    step = tf.cast(step, tf.float32)
    return tf.maximum(self.lambda_min,
                      self.lambda_base * tf.pow(1.0 + self.lambda_gamma * step, -self.lambda_power))

  def __call__(self, cos, labels, feature_norm=None, step=0, **_):
    lam = self.annealed_lambda(step)
    cos_y = target_cos(cos, labels)
    target = (lam * cos_y + sphereface_psi(cos_y, self.margin)) / (1.0 + lam)
    logits = replace_target(cos, labels, target)
    return logits if feature_norm is None else feature_norm * logits


# ---------------------------------------------------------------------------
# Layers.


@keras.saving.register_keras_serializable("enas_face")
class SoftmaxHead(layers.Layer):
  """logits = e W + b, for softmax cross-entropy over the training identities (Eq. 1)."""

  def __init__(self, num_classes: int, **kwargs):
    super().__init__(**kwargs)
    if num_classes < 2:
      raise ValueError(f"a classifier needs at least 2 classes, got num_classes={num_classes}")
    self.num_classes = num_classes
    self.dense = layers.Dense(num_classes, name="logits")

  def build(self, input_shape):
    self.dense.build(input_shape)

  @property
  def class_weights(self):
    return self.dense.kernel

  def call(self, embeddings):
    """Scores e W + b (float32); their argmax is the predicted class."""
    return tf.cast(self.dense(embeddings), tf.float32)

  def training_logits(self, embeddings, labels, step=0):
    """(logits for the cross-entropy, scores for the accuracy): both e W + b here."""
    logits = self(embeddings)
    return logits, logits

  def get_config(self):
    return {**super().get_config(), "num_classes": self.num_classes}


@keras.saving.register_keras_serializable("enas_face")
class MarginHead(layers.Layer):
  """Normalised classifier cos theta_j = <W_j / |W_j|, x / |x|> (no bias) and a margin.

  `head(e)` gives the cosines (their argmax is the predicted class);
  `head.training_logits(e, y, t)` gives (margin(cos, y), cos) for the cross-entropy.
  """

  def __init__(self, num_classes: int, margin, **kwargs):
    super().__init__(**kwargs)
    if num_classes < 2:
      raise ValueError(f"a classifier needs at least 2 classes, got num_classes={num_classes}")
    self.num_classes = num_classes
    self.margin = margin

  def build(self, input_shape):
    self.kernel = self.add_weight(name="kernel", shape=(int(input_shape[-1]), self.num_classes),
                                  initializer=keras.initializers.GlorotUniform())

  @property
  def class_weights(self):
    return self.kernel

  def cosines(self, embeddings):
    """[B, C] cos theta in float32 (L2 normalisation with an epsilon)."""
    x = tf.math.l2_normalize(tf.cast(embeddings, tf.float32), axis=-1, epsilon=NORM_EPS)
    w = tf.math.l2_normalize(tf.cast(self.kernel, tf.float32), axis=0, epsilon=NORM_EPS)
    return tf.clip_by_value(tf.matmul(x, w), -1.0, 1.0)  # rounding gives up to 1 + 2e-7

  def call(self, embeddings):
    return self.cosines(embeddings)

  def training_logits(self, embeddings, labels, step=0):
    """(margin(cos, y) at iteration `step`, cos); SphereFace also reads |x|."""
    cos = self(embeddings)
    norm = (tf.norm(tf.cast(embeddings, tf.float32), axis=-1, keepdims=True)
            if isinstance(self.margin, SphereFace) else None)  # only A-Softmax reads |x|
    return self.margin(cos, labels, feature_norm=norm, step=step), cos

  def get_config(self):
    return {**super().get_config(), "num_classes": self.num_classes,
            "margin": {"type": type(self.margin).__name__,
                       "config": dataclasses.asdict(self.margin)}}

  @classmethod
  def from_config(cls, config):
    config = dict(config)
    margin = config.pop("margin")
    return cls(margin=MARGINS[margin["type"]](**margin["config"]), **config)


MARGINS = {m.__name__: m for m in (NormalizedSoftmax, CosFace, ArcFace, CombinedMargin, ArcNegFace,
                                   RescaledMargin, SphereFace)}


def adacos_scale(num_classes: int) -> float:
  """AdaCos's fixed scale s = sqrt(2) ln(C - 1), for few classes (C >= 3)."""
  if num_classes < 3:
    raise ValueError(f"the automatic scale sqrt(2) ln(C - 1) needs C >= 3 classes, got {num_classes}")
  return math.sqrt(2.0) * math.log(num_classes - 1)


def resolve_scale(scale: str | float, num_classes: int) -> float:
  """--margin_scale: a positive number, or 'auto' for the AdaCos scale of `num_classes`."""
  if scale == "auto":
    return adacos_scale(num_classes)
  return float(scale)


def build_margin(config, num_classes: int):
  """The margin function of a `config.HeadConfig` (None for softmax)."""
  head, margins = config.head, config.margin_values()
  if head == "softmax":
    return None
  if head == "sphereface":
    return SphereFace(margin=int(margins[0]), lambda_base=config.sphereface_lambda_base,
                      lambda_gamma=config.sphereface_lambda_gamma,
                      lambda_power=config.sphereface_lambda_power,
                      lambda_min=config.sphereface_lambda_min)
  if head == "rescaled_margin":
    return RescaledMargin(s_pos=config.rescaled_s_pos, s_neg=config.rescaled_s_neg,
                          m1=config.rescaled_m1, m2=config.rescaled_m2, m3=config.rescaled_m3,
                          clip_thresh=config.rescaled_clip_thresh,
                          clip_value=config.rescaled_clip_value)
  scale = resolve_scale(config.margin_scale, num_classes)
  if head == "cosface":
    return CosFace(scale, margins[0])
  if head == "arcface":
    return ArcFace(scale, margins[0], easy_margin=config.arcface_easy_margin)
  if head == "combined":
    return CombinedMargin(scale, *margins)
  if head == "arcnegface":
    return ArcNegFace(scale, margins[0], alpha=config.arcnegface_alpha,
                      sigma=config.arcnegface_sigma)
  raise ValueError(f"unknown head {head!r}")


def build_head(config, num_classes: int, embedding_dim: int, name: str = "head") -> layers.Layer:
  """The registry: a built head layer for a `config.HeadConfig`."""
  margin = build_margin(config, num_classes)
  head = (SoftmaxHead(num_classes, name=name) if margin is None
          else MarginHead(num_classes, margin, name=name))
  head.build((None, embedding_dim))
  return head


# ---------------------------------------------------------------------------
# Extra loss terms on the class weights.


def regularface_loss(class_weights):
  """RegularFace: L = (1/C) sum_i max_{j != i} cos(W_i, W_j), the argmax taken without
  gradient. W is [D, C]; memory O(C^2)."""
  w = tf.math.l2_normalize(tf.cast(class_weights, tf.float32), axis=0, epsilon=NORM_EPS)
  gram = tf.matmul(w, w, transpose_a=True)
  num_classes = tf.shape(gram)[0]
  masked = gram - 3.0 * tf.eye(num_classes)  # never pick i itself (cos >= -1 > -2)
  nearest = tf.stop_gradient(tf.argmax(masked, axis=1, output_type=tf.int32))
  return tf.reduce_mean(tf.gather(gram, nearest, axis=1, batch_dims=1))
