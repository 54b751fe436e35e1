"""Child networks of the ENAS macro space.

Layer i (at stage s_i, i.e. after s_i reductions, with C_s = base * 2^s channels):

    h_i = BN_i( op_i(x_i) + sum_{j in skips(i)} nonlinear_ij(R_{j -> s_i}(h_j)) )

where x_i = R_{i-1 -> s_i}(h_{i-1}) (x_0 = stem(image)), and R_{j -> s} applies
the factorized reductions (j, s_j+1), ..., (j, s), one module per source layer
and stage, shared by the main path and every skip that needs it. The last
layer's output, reduced to the final stage, passes ReLU -> DropBlock ->
embedding head.

Modules are attributes named by key (`layer{i}_{op}`, `layer{i}_skip{j}`,
`reduce{j}_to{s}`, `layer{i}_bn`), built from `ops.OP_REGISTRY`: the fixed child
holds only the chosen ones, the shared child (search) every candidate, under the
same keys. (Attributes, not dicts or lists: with Keras 3 on TensorFlow, layers
inside a dict or list are not tracked by `tf.train.Checkpoint`, so their weights
would silently be neither saved nor restored.)
"""
from __future__ import annotations

import dataclasses

import keras
from keras import layers
from keras import ops as K

from enas_face.config import ModelConfig
from enas_face.models import ops
from enas_face.spaces import enas_macro


layer_stages = enas_macro.layer_stages  # the layout belongs to the space


def op_key(layer: int, op_name: str) -> str:
  return f"layer{layer}_{op_name}"


def skip_key(layer: int, source: int) -> str:
  return f"layer{layer}_skip{source}"


def reduction_key(source: int, stage: int) -> str:
  return f"reduce{source}_to{stage}"


class _ChildBase(keras.Model):
  """Stem, per-layer BN, reductions and head shared by both child kinds."""

  def __init__(self, config: ModelConfig, reduction_pairs, **kwargs):
    super().__init__(**kwargs)
    config.validate()
    self.config = config
    self.stages = layer_stages(config.num_layers, config.num_reductions)
    self.final_stage = config.num_reductions
    self.standardize = ops.ChannelStandardization(name="standardize")
    self.stem = ops.Stem(config.base_filters, config.stem_stride, name="stem")
    self._keys = ()
    for i in range(config.num_layers):
      self._add_module(f"layer{i}_bn", ops.batch_norm(name=f"layer{i}_bn"))
    self.reduction_keys = tuple(reduction_key(j, s) for j, s in sorted(reduction_pairs))
    for j, s in sorted(reduction_pairs):
      self._add_module(reduction_key(j, s),
                       ops.FactorizedReduction(self.filters(s), name=reduction_key(j, s)))
    self.dropblock = ops.DropBlock(config.dropblock_keep_prob, config.dropblock_size,
                                   name="dropblock")
    self.embedding = ops.EmbeddingHead(config.embedding_dim, config.embedding_head,
                                       config.embedding_dropout, name="embedding")

  def _add_module(self, key: str, layer: layers.Layer) -> None:
    setattr(self, key, layer)
    self._keys = self._keys + (key,)

  def module(self, key: str) -> layers.Layer:
    return getattr(self, key)

  def filters(self, stage: int) -> int:
    return self.config.base_filters * 2**stage

  def _reduced(self, outputs, cache, source: int, stage: int, training):
    """R_{source -> stage}(h_source), computed once per call."""
    if stage == self.stages[source]:
      return outputs[source]
    if (source, stage) not in cache:
      previous = self._reduced(outputs, cache, source, stage - 1, training)
      cache[(source, stage)] = self.module(reduction_key(source, stage))(previous,
                                                                         training=training)
    return cache[(source, stage)]

  def _head(self, features, training, dropblock_training):
    features = self.dropblock(K.relu(features), training=dropblock_training)
    return self.embedding(features, training=training)

  def _forward(self, images, layer_sum, training, dropblock_training=None,
               with_features=False):
    """stem -> layers -> head; layer_sum(i, x_i, reduced) is the pre-BN sum of layer i,
    where reduced(j) = R_{j -> s_i}(h_j), cached per call. with_features: also returns
    mean_{h,w} ReLU(final feature map), [N, C] (what QAN's quality branch reads)."""
    x = self.stem(self.standardize(images), training=training)
    outputs, cache = [], {}
    for i in range(self.config.num_layers):
      if i > 0:
        x = self._reduced(outputs, cache, i - 1, self.stages[i], training)
      reduced = lambda j, i=i: self._reduced(outputs, cache, j, self.stages[i], training)
      outputs.append(self.module(f"layer{i}_bn")(layer_sum(i, x, reduced), training=training))
    final = self._reduced(outputs, cache, len(outputs) - 1, self.final_stage, training)
    embedding = self._head(final, training,
                           training if dropblock_training is None else dropblock_training)
    if with_features:
      return embedding, K.mean(K.relu(final), axis=(1, 2))
    return embedding

  @property
  def module_keys(self) -> tuple[str, ...]:
    """Keys of every module this child holds (same key = same role in both children)."""
    return ("standardize", "stem", "dropblock", "embedding") + self._keys

  def build_for_input(self) -> "_ChildBase":
    """Creates all weights by one call on a zero image batch of the configured size."""
    size = self.config.image_size
    self(K.zeros((1, size, size, 3)), training=False)
    return self


@keras.saving.register_keras_serializable("enas_face")
class FixedChild(_ChildBase):
  """The child network of one architecture: only its chosen ops and skips exist.

  Input: raw pixels [N, S, S, 3] in [0, 255]; output: embedding [N, D].
  """

  def __init__(self, config: ModelConfig, arc: enas_macro.Architecture, **kwargs):
    if arc.num_layers != config.num_layers:
      raise ValueError(f"architecture has {arc.num_layers} layers but the model config expects "
                       f"num_layers={config.num_layers}")
    super().__init__(config, enas_macro.reduction_pairs(arc, config.num_reductions), **kwargs)
    self.arc = arc
    for i, op_name in enumerate(arc.op_names):
      channels = self.filters(self.stages[i])
      self._add_module(op_key(i, op_name), ops.build_op(op_name, channels, op_key(i, op_name)))
      for j in arc.skip_inputs(i):
        self._add_module(skip_key(i, j), ops.NonlinearSkip(channels, name=skip_key(i, j)))

  def _layer_sum(self, training):
    def layer_sum(i, x, reduced):
      total = self.module(op_key(i, self.arc.op_names[i]))(x, training=training)
      for j in self.arc.skip_inputs(i):
        total = total + self.module(skip_key(i, j))(reduced(j), training=training)
      return total
    return layer_sum

  def call(self, images, training=False):
    return self._forward(images, self._layer_sum(training), training)

  def embed_with_features(self, images):
    """Inference: (embedding [N, D], pooled final features [N, C]) in one pass."""
    return self._forward(images, self._layer_sum(False), False, with_features=True)

  def load_shared_weights(self, shared: "SharedChild") -> "FixedChild":
    """Copies the shared child's weights of this architecture's modules (same keys)."""
    for key in self.module_keys:
      self.module(key).set_weights(shared.module(key).get_weights())
    return self

  def get_config(self):
    return {"config": dataclasses.asdict(self.config), "arc": self.arc.to_json(),
            "name": self.name}

  @classmethod
  def from_config(cls, cfg):
    return cls(ModelConfig(**cfg["config"]), enas_macro.Architecture.from_json(cfg["arc"]),
               name=cfg.get("name"))


@keras.saving.register_keras_serializable("enas_face")
class SharedChild(_ChildBase):
  """Every candidate op and skip of every layer, shared by all architectures (ENAS).

  The architecture is an input tensor (the ENAS encoding, int [n]), so one traced
  graph serves every architecture: layer i runs `switch(op_i, candidates)` and each
  skip j is `cond(bit_ij, nonlinear_ij(R(h_j)), 0)`. Only the chosen branches
  execute; the others get zero gradients (so momentum and decoupled weight decay
  still move their weights, as original ENAS applied L2 to all weights every step,
  unless --shared_update=taken: `conditional_variables`) and keep their BatchNorm
  statistics. Every reduction of every earlier layer is
  computed, as in ENAS (running the skip-only reductions inside the skip's
  branch instead measured slower: shared/fixed throughput 0.74 against 0.84). Call as `child(images, arc=arc, training=...)`: Keras 3
  needs the architecture as a keyword argument.
  """

  SKIP_MODES = ("cond", "mask")

  def __init__(self, config: ModelConfig, skip_mode: str = "cond", **kwargs):
    if skip_mode not in self.SKIP_MODES:
      raise ValueError(f"skip_mode must be one of {self.SKIP_MODES}, got {skip_mode!r}")
    self.skip_mode = skip_mode
    stages = layer_stages(config.num_layers, config.num_reductions)
    pairs = {(j, s) for j in range(config.num_layers)
             for s in range(stages[j] + 1, config.num_reductions + 1)}
    super().__init__(config, pairs, **kwargs)
    for i in range(config.num_layers):
      channels = self.filters(self.stages[i])
      for op_name in enas_macro.OPS:
        self._add_module(op_key(i, op_name), ops.build_op(op_name, channels, op_key(i, op_name)))
      for j in range(i):
        self._add_module(skip_key(i, j), ops.NonlinearSkip(channels, name=skip_key(i, j)))

  def call(self, images, arc, training=False, batch_statistics=False):
    """`batch_statistics=True` (for rewards): BatchNorm normalises with the batch's own
    statistics, DropBlock stays off. Moving averages mix many architectures, so they
    fit none; batch statistics score each architecture by itself. (It also updates
    the moving averages, which the search never uses.)"""
    arc = K.cast(arc, "int32")
    dropblock_training = training
    training = training or batch_statistics

    def layer_sum(i, x, reduced):
      candidates = [self.module(op_key(i, op_name)) for op_name in enas_macro.OPS]
      total = K.switch(arc[enas_macro.op_position(i)],
                       [lambda v, op=op: op(v, training=training) for op in candidates], x)
      for j in range(i):
        skip = self.module(skip_key(i, j))
        source = reduced(j)
        bit = arc[enas_macro.skip_position(i, j)]
        if self.skip_mode == "mask":  # every skip computed, multiplied by its bit: no control flow
          total = total + K.cast(bit, total.dtype) * skip(source, training=training)
          continue
        skip_fn = lambda skip=skip, source=source: skip(source, training=training)
        total = total + K.cond(bit > 0, skip_fn, lambda: K.zeros_like(total))
      return total

    return self._forward(images, layer_sum, training, dropblock_training)

  def conditional_variables(self) -> list[tuple[tuple[tuple[int, int], ...], list]]:
    """(condition, trainable variables) of every module only some architectures run
    (enas_macro.module_conditions: it runs iff arc[p] == v for some (p, v) of the
    condition): the candidates a step may leave untaken (--shared_update=taken)."""
    conditions = enas_macro.module_conditions(self.config.num_layers, self.config.num_reductions)
    return [(condition, self.module(key).trainable_variables)
            for key, condition in conditions.items()]

  def build_for_input(self) -> "SharedChild":
    """Creates every candidate's weights (a switch would only build the taken branch)."""
    size = self.config.image_size
    zeros = K.zeros((1, size, size, 3))

    def every_candidate(i, x, reduced):
      total = sum(self.module(op_key(i, op_name))(x) for op_name in enas_macro.OPS)
      for j in range(i):
        total = total + self.module(skip_key(i, j))(reduced(j))
      return total

    self._forward(zeros, every_candidate, training=False)
    arc = enas_macro.default_architecture(self.config.num_layers).to_ints()
    self(zeros, arc=K.convert_to_tensor(arc, "int32"), training=False)
    return self

  def get_config(self):
    return {"config": dataclasses.asdict(self.config), "skip_mode": self.skip_mode,
            "name": self.name}

  @classmethod
  def from_config(cls, cfg):
    return cls(ModelConfig(**cfg["config"]), skip_mode=cfg.get("skip_mode", "cond"),
               name=cfg.get("name"))


def build_cost_module(model_config, key: str):
  """(callable, input_shapes): module `key` alone as a Keras model with random weights, the
  same layers as the child builds (ops.OP_REGISTRY), for the latency table:
    input: standardise -> stem;  op: layer BN(op(x));  skip: total + skip(source);
    reduction: factorized reduction;  head: embedding head(ReLU(x))."""
  by_key = {m.key: m for m in enas_macro.every_module(model_config)}
  if key not in by_key:
    raise ValueError(f"{key!r} is not a module of the enas_macro space under this model "
                     f"config; modules: {', '.join(sorted(by_key))}")
  module = by_key[key]
  h, c = module.size, module.channels
  x = keras.Input((h, h, c), batch_size=1)
  inputs = [x]
  if module.kind == "input":
    y = ops.Stem(model_config.base_filters, model_config.stem_stride)(
        ops.ChannelStandardization()(x))
  elif module.kind == "op":
    y = ops.batch_norm()(ops.build_op(module.op, c, key)(x))
  elif module.kind == "skip":
    total = keras.Input((h, h, c), batch_size=1)
    inputs.append(total)
    y = keras.layers.Add()([total, ops.NonlinearSkip(c)(x)])
  elif module.kind == "reduction":
    y = ops.FactorizedReduction(module.out_channels)(x)
  else:
    y = ops.EmbeddingHead(model_config.embedding_dim, model_config.embedding_head)(
        keras.layers.ReLU()(x))
  model = keras.Model(inputs, y, name=f"module_{key}")
  return model, [tuple(t.shape) for t in inputs]
