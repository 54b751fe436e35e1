"""MobileFaceNet networks of the mobilefacenet space, and its width/depth supernet.

One class builds both. A fixed network has exactly its sample's channels and blocks. The
supernet has every block at full width and is called with `mix`, a [D, K] tensor: row k
of decision k holds the weights of its choices (Gumbel-softmax samples in the search, a
one-hot row for one architecture), so every sampled shape runs one trace. The one-shot
search calls the same supernet with `arc`, the int32 choices [D] of one architecture:
mix = one_hot(arc, K) (the space's `shared` model: models.builders.build_shared), and the
blocks beyond each stage's depth are skipped by a cond (the same output as the one-hot
depth mix, 1.5x faster a training step here; skipped blocks get zero gradients and keep
their BatchNorm statistics).

Channel masking (TAS, METHODS.md §4): a conv runs at full width C; its BN normalises
once, and each candidate width c_j has its own affine (gamma_j, beta_j), zero beyond c_j:

    y = act( BN(conv(x)) * sum_j w_j m_j gamma_j + sum_j w_j m_j beta_j ),  m_j = [c < c_j]

With one-hot weights this is the network built at width c_j with the kernels sliced
(`load_supernet_weights`). A stage's output mixes its depths:
sum_d w_d h_d, h_d the output after its first d blocks.

Modules are attributes (Keras 3 on TensorFlow does not checkpoint layers in lists).
"""
from __future__ import annotations

import keras
import numpy as np
from keras import layers
from keras import ops as K

from enas_face.models import ops
from enas_face.spaces import mobilefacenet as space


class ConvUnit(layers.Layer):
  """y = act(gamma * BN(conv(x)) + beta): conv kxk, depthwise kxk or dense (kind), BN
  without its own affine, the affine per candidate width (supernet) or one (fixed), and
  PReLU (alpha initialised 0.25) when `activation`."""

  def __init__(self, kind: str, filters: int, kernel_size: int = 1, strides: int = 1,
               activation: bool = True, candidates: tuple[int, ...] | None = None,
               padding: str = "same", **kwargs):
    super().__init__(**kwargs)
    self.kind, self.filters, self.activation = kind, filters, activation
    self.candidates = candidates
    if kind == "conv":
      self.conv = layers.Conv2D(filters, kernel_size, strides, padding=padding, use_bias=False,
                                kernel_initializer="he_normal", name="conv")
    elif kind == "depthwise":
      self.conv = layers.DepthwiseConv2D(kernel_size, strides, padding=padding, use_bias=False,
                                         depthwise_initializer="he_normal", name="conv")
    else:
      self.conv = layers.Dense(filters, use_bias=False, kernel_initializer="he_normal",
                               name="conv")
    self.norm = ops.batch_norm(center=False, scale=False, name="bn")

  def build(self, input_shape):
    affine = (len(self.candidates), self.filters) if self.candidates else (self.filters,)
    self.gamma = self.add_weight(shape=affine, initializer="ones", name="gamma")
    self.beta = self.add_weight(shape=affine, initializer="zeros", name="beta")
    if self.activation:
      self.alpha = self.add_weight(shape=(self.filters,),
                                   initializer=keras.initializers.Constant(0.25), name="alpha")
    if self.candidates:
      self._masks = (np.arange(self.filters)[None, :]
                     < np.array(self.candidates)[:, None]).astype("float32")

  def call(self, x, weights=None, training=False):
    y = self.norm(self.conv(x), training=training)
    if self.candidates:
      masks = K.convert_to_tensor(self._masks)
      gamma = K.matmul(weights[None, :], masks * self.gamma)[0]
      beta = K.matmul(weights[None, :], masks * self.beta)[0]
    else:
      gamma, beta = self.gamma, self.beta
    y = y * gamma + beta
    if self.activation:
      y = K.maximum(y, 0.0) + self.alpha * K.minimum(y, 0.0)
    return y


class MobileFaceNet(keras.Model):
  """pixels [N, S, S, 3] in [0, 255] -> embeddings [N, D] (un-normalised), see the space."""

  def __init__(self, config, channels: space.Channels, supernet: bool = False, **kwargs):
    super().__init__(**kwargs)
    space.check_geometry(config)
    self.config, self.channels, self.supernet = config, channels, supernet
    m = config.width_multiplier

    def candidates(max_channels):
      return tuple(space.channels(max_channels, m, r) for r in space.WIDTH_RATIOS) if supernet \
          else None

    self.standardize = ops.ChannelStandardization(name="standardize")
    self.stem_conv = ConvUnit("conv", channels.stem, 3, 2,
                              candidates=candidates(space.STEM_CHANNELS), name="stem_conv")
    self.stem_dw = ConvUnit("depthwise", channels.stem, 3,
                            candidates=candidates(space.STEM_CHANNELS), name="stem_dw")
    self.block_names = []
    for s, (stage, width, blocks) in enumerate(zip(space.STAGES, channels.widths,
                                                   channels.expansions)):
      names = []
      for b, expansion in enumerate(blocks):
        prefix = f"{stage.name}_block{b}"
        setattr(self, f"{prefix}_expand", ConvUnit(
            "conv", expansion, 1, candidates=candidates(stage.expansions[b]),
            name=f"{prefix}_expand"))
        setattr(self, f"{prefix}_dw", ConvUnit(
            "depthwise", expansion, 3, 2 if b == 0 else 1,
            candidates=candidates(stage.expansions[b]), name=f"{prefix}_dw"))
        setattr(self, f"{prefix}_project", ConvUnit(
            "conv", width, 1, activation=False, candidates=candidates(stage.channels),
            name=f"{prefix}_project"))
        names.append(prefix)
      self.block_names.append(tuple(names))
    self.head_conv = ConvUnit("conv", channels.head, 1,
                              candidates=candidates(space.HEAD_CHANNELS), name="head_conv")
    final = config.image_size // space.REDUCTION
    self.head_gdc = ConvUnit("depthwise", channels.head, final, activation=False,
                             candidates=candidates(space.HEAD_CHANNELS), padding="valid",
                             name="head_gdc")
    self.embedding = ConvUnit("dense", config.embedding_dim, activation=False, name="embedding")
    names = space.decision_names()
    self._rows = {name: i for i, name in enumerate(names)}

  def _weights(self, mix, name):
    if mix is None:
      return None
    return mix[self._rows[name]][:len(space.WIDTH_RATIOS)]

  def call(self, images, mix=None, arc=None, training=False, batch_statistics=False):
    """Embeddings of `images`. The supernet takes `mix` [D, K] or `arc` [D] (int32 choices,
    mix = one_hot(arc, K)). `batch_statistics=True` (the one-shot search's scores): every
    BatchNorm normalises with the batch's own statistics (their moving averages mix many
    architectures; this also updates them, as SharedChild does)."""
    if self.supernet and mix is None:
      if arc is None:
        raise ValueError("the mobilefacenet supernet needs mix=[decisions, choices] weights "
                         "or arc=[decisions] choices")
      arc = K.cast(arc, "int32")
      mix = K.one_hot(arc, max_choices(self.config))
    else:
      arc = None
    training = training or batch_statistics
    x = self.standardize(images)
    x = self.stem_conv(x, self._weights(mix, "stem_width"), training=training)
    x = self.stem_dw(x, self._weights(mix, "stem_width"), training=training)
    for stage, names in zip(space.STAGES, self.block_names):
      width = self._weights(mix, f"{stage.name}_width")
      expansion = self._weights(mix, f"{stage.name}_expansion")
      depth_row = self._rows[f"{stage.name}_depth"]
      outputs = []
      for b, prefix in enumerate(names):
        def block(x, prefix=prefix):
          h = getattr(self, f"{prefix}_expand")(x, expansion, training=training)
          h = getattr(self, f"{prefix}_dw")(h, expansion, training=training)
          return getattr(self, f"{prefix}_project")(h, width, training=training)
        if b == 0:
          x = block(x)
        elif arc is not None:  # one architecture: blocks beyond its depth do not run
          x = K.cond(arc[depth_row] >= b, lambda x=x, block=block: x + block(x), lambda x=x: x)
        else:
          x = x + block(x)
        outputs.append(x)
      if mix is not None and arc is None:  # sum_d w_d h_d over the stage's depths
        depth = mix[depth_row][:len(outputs)]
        x = sum(depth[d] * outputs[d] for d in range(len(outputs)))
    x = self.head_conv(x, self._weights(mix, "head_width"), training=training)
    x = self.head_gdc(x, self._weights(mix, "head_width"), training=training)
    x = K.reshape(x, (-1, x.shape[-1]))
    return self.embedding(x, training=training)

  def build_for_input(self) -> "MobileFaceNet":
    size = self.config.image_size
    mix = None
    if self.supernet:
      mix = K.convert_to_tensor(one_hot_mix(self.config, space.full_shape()))
    self(K.zeros((1, size, size, 3)), mix=mix, training=False)
    return self

  def conditional_variables(self) -> list[tuple[tuple[tuple[int, int], ...], list]]:
    """(condition, trainable variables) of the blocks only some architectures run: block b
    >= 1 of a stage runs iff the stage's depth choice is b or more (the step's cond). The
    candidates a step may leave untaken (--shared_update=taken, with row_variables)."""
    if not self.supernet:
      return []
    out = []
    for stage, names in zip(space.STAGES, self.block_names):
      position = self._rows[f"{stage.name}_depth"]
      for b, prefix in enumerate(names[1:], start=1):
        condition = tuple((position, v) for v in range(b, len(names)))
        variables = [v for unit in ("expand", "dw", "project")
                     for v in getattr(self, f"{prefix}_{unit}").trainable_variables]
        out.append((condition, variables))
    return out

  def row_variables(self) -> list[tuple[int, object]]:
    """(position, variable): the per-width affine [K, C] of each unit, whose row arc[position]
    alone is the taken candidate (the other rows are multiplied by 0). The kernels are
    shared by every width (sliced), so they are not candidates: they update as a whole, as
    a slicing supernet's tensor does."""
    if not self.supernet:
      return []
    return [(self._rows[unit_decision(name)], weight)
            for name, unit in self.units().items() if unit.candidates
            for weight in (unit.gamma, unit.beta)]

  def units(self) -> dict[str, ConvUnit]:
    """Every ConvUnit by attribute name."""
    return {name: layer for name, layer in vars(self).items() if isinstance(layer, ConvUnit)}

  def load_supernet_weights(self, supernet: "MobileFaceNet", shape: space.Shape) -> "MobileFaceNet":
    """Copies `supernet`'s weights at `shape` into this fixed network: kernels and BN
    statistics sliced to this network's channels, the affine of the chosen candidate width.
    The standardisation is copied as is."""
    rows = encoding_rows(shape)
    for weight, source in zip(self.standardize.weights, supernet.standardize.weights):
      weight.assign(source)
    theirs = supernet.units()
    for name, unit in self.units().items():
      other = theirs[name]
      row = rows.get(unit_decision(name))
      for weight, source in zip(unit.weights, other.weights):
        value = K.convert_to_tensor(source)
        if other.candidates and weight.path.endswith(("gamma", "beta")):
          value = value[row]
        weight.assign(value[tuple(slice(0, n) for n in weight.shape)])
    return self


def unit_decision(unit_name: str) -> str:
  """The width decision whose choice sets the output channels of unit `unit_name`."""
  if unit_name.startswith("stem"):
    return "stem_width"
  if unit_name.startswith("head"):
    return "head_width"
  if unit_name.startswith("stage"):
    stage = unit_name.split("_")[0]
    return f"{stage}_width" if unit_name.endswith("_project") else f"{stage}_expansion"
  return ""


def encoding_rows(shape: space.Shape) -> dict[str, int]:
  """{decision name: chosen index} of a shape."""
  return dict(zip(space.decision_names(), space.MobileFaceNetSpace().encode(shape)))


def one_hot_mix(config, shape: space.Shape) -> np.ndarray:
  """The [D, K] mixing weights that select `shape` exactly."""
  choices = space.MobileFaceNetSpace().encode(shape)
  decisions = space.MobileFaceNetSpace().decisions(config)
  mix = np.zeros((len(decisions), max_choices(config)), np.float32)
  mix[np.arange(len(choices)), choices] = 1.0
  return mix


def max_choices(config) -> int:
  return max(d.num_choices for d in space.MobileFaceNetSpace().decisions(config))


def build_fixed(model_config, sample: space.Shape, name: str = "child") -> MobileFaceNet:
  """The network of one shape, its weights built."""
  space.check_geometry(model_config)
  return MobileFaceNet(model_config, space.shape_channels(model_config, sample),
                       name=name).build_for_input()


def build_supernet(model_config, name: str = "supernet") -> MobileFaceNet:
  """Every block at full width (ratio 1), called as model(images, mix=[D, K] weights) or, as
  the one-shot search's shared model, model(images, arc=int32 [D])."""
  space.check_geometry(model_config)
  return MobileFaceNet(model_config, space.shape_channels(model_config, space.full_shape()),
                       supernet=True, name=name).build_for_input()
