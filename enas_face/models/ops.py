"""Keras layers for the candidate ops and the fixed modules of the macro space.

One registry, `OP_REGISTRY`, maps every op name of `enas_macro.OPS` to the
layer that realises it; the shared child (all candidates) and the fixed child
(the chosen ones) are both built from it.
"""
from __future__ import annotations

from typing import Callable

import keras
from keras import layers
from keras import ops as K

from enas_face.config import EMBEDDING_HEADS
from enas_face.spaces import enas_macro


def _conv1x1(filters: int, name: str) -> layers.Conv2D:
  return layers.Conv2D(filters, 1, padding="same", use_bias=False,
                       kernel_initializer="he_normal", name=name)


def batch_norm(**kwargs) -> layers.BatchNormalization:
  """BatchNorm whose training-time statistics span all replicas of a tf.distribute
  strategy (Keras `synchronized=True`): mean and variance of the global batch, so
  N replicas normalise exactly as one device would. One replica: plain BatchNorm.
  (The search's shared child switches to per-replica statistics under a strategy:
  see `distribute.per_replica_batch_norm`.)"""
  return layers.BatchNormalization(synchronized=True, **kwargs)


@keras.saving.register_keras_serializable("enas_face")
class ChannelStandardization(layers.Layer):
  """y = (x - mean_c) / std_c, with the dataset's per-channel statistics.

  The statistics are non-trainable weights, so they travel with checkpoints and
  exports: every consumer feeds raw pixels in [0, 255].
  """

  def build(self, input_shape):
    channels = input_shape[-1]
    self.mean = self.add_weight(shape=(channels,), initializer="zeros", trainable=False, name="mean")
    self.std = self.add_weight(shape=(channels,), initializer="ones", trainable=False, name="std")

  def set_statistics(self, mean, std):
    self.mean.assign(K.convert_to_tensor(mean, "float32"))
    self.std.assign(K.maximum(K.convert_to_tensor(std, "float32"), 1e-3))

  def call(self, x):
    return (K.cast(x, "float32") - self.mean) / self.std


@keras.saving.register_keras_serializable("enas_face")
class Stem(layers.Layer):
  """3x3 conv (stride `strides`) -> BN."""

  def __init__(self, filters: int, strides: int = 1, **kwargs):
    super().__init__(**kwargs)
    self.filters, self.strides = filters, strides
    self.conv = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False,
                              kernel_initializer="he_normal", name="conv3x3")
    self.bn = batch_norm(name="bn")

  def call(self, x, training=False):
    return self.bn(self.conv(x), training=training)

  def get_config(self):
    return {**super().get_config(), "filters": self.filters, "strides": self.strides}


@keras.saving.register_keras_serializable("enas_face")
class SeparableConvBranch(layers.Layer):
  """1x1 conv -> NxN depthwise-separable conv -> BN -> ReLU."""

  def __init__(self, filters: int, kernel_size: int, **kwargs):
    super().__init__(**kwargs)
    self.filters, self.kernel_size = filters, kernel_size
    self.pointwise_in = _conv1x1(filters, "conv1x1")
    self.separable = layers.SeparableConv2D(filters, kernel_size, padding="same", use_bias=False,
                                            depthwise_initializer="he_normal",
                                            pointwise_initializer="he_normal",
                                            name=f"sep{kernel_size}x{kernel_size}")
    self.bn = batch_norm(name="bn")

  def call(self, x, training=False):
    return K.relu(self.bn(self.separable(self.pointwise_in(x)), training=training))

  def get_config(self):
    return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size}


@keras.saving.register_keras_serializable("enas_face")
class PoolBranch(layers.Layer):
  """1x1 conv -> 3x3 pool (stride 1, same padding); `pool` is "avg" or "max"."""

  def __init__(self, filters: int, pool: str, **kwargs):
    super().__init__(**kwargs)
    if pool not in ("avg", "max"):
      raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
    self.filters, self.pool_type = filters, pool
    self.pointwise_in = _conv1x1(filters, "conv1x1")
    pool_layer = layers.AveragePooling2D if pool == "avg" else layers.MaxPooling2D
    self.pool = pool_layer(3, strides=1, padding="same", name=f"{pool}pool3x3")

  def call(self, x, training=False):
    return self.pool(self.pointwise_in(x))

  def get_config(self):
    return {**super().get_config(), "filters": self.filters, "pool": self.pool_type}


@keras.saving.register_keras_serializable("enas_face")
class NonlinearSkip(layers.Layer):
  """The paper's nonlinear module on a skip input: ReLU -> 1x1 conv -> BN."""

  def __init__(self, filters: int, **kwargs):
    super().__init__(**kwargs)
    self.filters = filters
    self.conv = _conv1x1(filters, "conv1x1")
    self.bn = batch_norm(name="bn")

  def call(self, x, training=False):
    return self.bn(self.conv(K.relu(x)), training=training)

  def get_config(self):
    return {**super().get_config(), "filters": self.filters}


@keras.saving.register_keras_serializable("enas_face")
class FactorizedReduction(layers.Layer):
  """Halves H and W and sets the channels to `filters` (ENAS factorized reduction).

  y = BN(concat(conv1x1(x[:, ::2, ::2]), conv1x1(x[:, 1::2, 1::2] with zero
  padding at the far edge))), each 1x1 conv giving filters/2 channels: the two
  stride-2 paths see complementary pixels, so no input pixel is skipped by both.
  """

  def __init__(self, filters: int, **kwargs):
    super().__init__(**kwargs)
    if filters % 2:
      raise ValueError(f"FactorizedReduction needs an even number of filters, got {filters}")
    self.filters = filters
    self.subsample = layers.AveragePooling2D(1, strides=2, padding="valid", name="avgpool_s2")
    self.shift_pad = layers.ZeroPadding2D(((0, 1), (0, 1)), name="pad")
    self.shift_crop = layers.Cropping2D(((1, 0), (1, 0)), name="shift")
    self.conv_a = _conv1x1(filters // 2, "path_a_conv1x1")
    self.conv_b = _conv1x1(filters // 2, "path_b_conv1x1")
    self.bn = batch_norm(name="bn")

  def call(self, x, training=False):
    path_a = self.conv_a(self.subsample(x))
    path_b = self.conv_b(self.subsample(self.shift_crop(self.shift_pad(x))))
    return self.bn(K.concatenate([path_a, path_b], axis=-1), training=training)

  def get_config(self):
    return {**super().get_config(), "filters": self.filters}


@keras.saving.register_keras_serializable("enas_face")
class DropBlock(layers.Layer):
  """DropBlock (Ghiasi et al. 2018), active only in training.

  Block centres are drawn with probability
      gamma = (1 - keep_prob) / b^2 * (H W) / ((H - b + 1)(W - b + 1))
  inside the region where a whole b x b block fits; each centre zeroes its
  block (mask = 1 - maxpool_b(centres)), and the output is rescaled:
      y = x * mask * numel(mask) / sum(mask).
  """

  def __init__(self, keep_prob: float = 0.9, block_size: int = 3, seed: int | None = None,
               **kwargs):
    super().__init__(**kwargs)
    if not 0.0 < keep_prob <= 1.0:
      raise ValueError(f"keep_prob must be in (0, 1], got {keep_prob}")
    if block_size < 1:
      raise ValueError(f"block_size must be >= 1, got {block_size}")
    self.keep_prob, self.block_size, self.seed = keep_prob, block_size, seed
    self.seed_generator = keras.random.SeedGenerator(seed)

  def call(self, x, training=False):
    if not training or self.keep_prob >= 1.0:
      return x
    height, width = int(x.shape[1]), int(x.shape[2])
    block = min(self.block_size, height, width)
    valid_h, valid_w = height - block + 1, width - block + 1
    gamma = (1.0 - self.keep_prob) / block**2 * (height * width) / (valid_h * valid_w)
    # Centres only where the block fits: draw on the valid region, pad to full size.
    top = block // 2
    left = block // 2
    noise = keras.random.uniform((K.shape(x)[0], valid_h, valid_w, int(x.shape[-1])),
                                 seed=self.seed_generator)
    centres = K.cast(noise < gamma, x.dtype)
    centres = K.pad(centres, [[0, 0], [top, height - valid_h - top],
                              [left, width - valid_w - left], [0, 0]])
    dropped = K.max_pool(centres, pool_size=block, strides=1, padding="same")
    mask = 1.0 - dropped
    scale = K.cast(K.size(mask), x.dtype) / K.maximum(K.sum(mask), 1.0)
    return x * mask * scale

  def get_config(self):
    return {**super().get_config(), "keep_prob": self.keep_prob,
            "block_size": self.block_size, "seed": self.seed}


@keras.saving.register_keras_serializable("enas_face")
class EmbeddingHead(layers.Layer):
  """Feature map -> face embedding (insightface's "E"/GDC output blocks).

  gdc:     BN -> Dropout -> global depthwise conv (kernel = H x W) -> BN -> Dense(D) -> BN
  gap:     BN -> Dropout -> global average pool -> Dense(D) -> BN
  flatten: BN -> Dropout -> flatten -> Dense(D) -> BN
  The embedding is returned un-normalised; L2-normalise it for matching.
  """

  KINDS = EMBEDDING_HEADS

  def __init__(self, embedding_dim: int, kind: str = "gdc", dropout: float = 0.0, **kwargs):
    super().__init__(**kwargs)
    if kind not in self.KINDS:
      raise ValueError(f"embedding head must be one of {self.KINDS}, got {kind!r}")
    self.embedding_dim, self.kind, self.dropout_rate = embedding_dim, kind, dropout
    self.bn_in = batch_norm(name="bn_in")
    self.dropout = layers.Dropout(dropout, name="dropout")
    self.bn_pool = batch_norm(name="bn_pool") if kind == "gdc" else None
    self.dense = layers.Dense(embedding_dim, use_bias=False, kernel_initializer="he_normal",
                              name="fc")
    self.bn_out = batch_norm(scale=False, name="bn_out")

  def build(self, input_shape):
    if self.kind == "gdc":
      self.gdc = layers.DepthwiseConv2D((input_shape[1], input_shape[2]), padding="valid",
                                        use_bias=False, name="gdc")

  def call(self, x, training=False):
    x = self.dropout(self.bn_in(x, training=training), training=training)
    if self.kind == "gdc":
      x = self.bn_pool(self.gdc(x), training=training)
      x = K.reshape(x, (-1, x.shape[-1]))
    elif self.kind == "gap":
      x = K.mean(x, axis=(1, 2))
    else:
      x = K.reshape(x, (-1, x.shape[1] * x.shape[2] * x.shape[3]))
    return self.bn_out(self.dense(x), training=training)

  def get_config(self):
    return {**super().get_config(), "embedding_dim": self.embedding_dim, "kind": self.kind,
            "dropout": self.dropout_rate}


OpBuilder = Callable[[int, str], layers.Layer]

OP_REGISTRY: dict[str, OpBuilder] = {
    "sep3x3": lambda filters, name: SeparableConvBranch(filters, 3, name=name),
    "sep5x5": lambda filters, name: SeparableConvBranch(filters, 5, name=name),
    "avgpool3x3": lambda filters, name: PoolBranch(filters, "avg", name=name),
    "maxpool3x3": lambda filters, name: PoolBranch(filters, "max", name=name),
}

if set(OP_REGISTRY) != set(enas_macro.OPS):
  raise ImportError(f"OP_REGISTRY {sorted(OP_REGISTRY)} does not cover enas_macro.OPS "
                    f"{sorted(enas_macro.OPS)}")


def build_op(op_name: str, filters: int, name: str) -> layers.Layer:
  """The layer for candidate `op_name` with `filters` output channels."""
  try:
    builder = OP_REGISTRY[op_name]
  except KeyError:
    raise ValueError(f"unknown op {op_name!r}; expected one of {sorted(OP_REGISTRY)}") from None
  return builder(filters, name)
