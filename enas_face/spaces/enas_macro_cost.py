"""Module `key` of an ENAS macro architecture alone as a Keras model, for the latency table
(the modules and their analytic costs are in spaces/enas_macro.py)."""
from __future__ import annotations

from enas_face.spaces import enas_macro

def build_module(model_config, key: str):
  """(callable, input_shapes): module `key` alone as a Keras model with random weights, the
  same layers as the child builds (ops.OP_REGISTRY), for the latency table:
    input: standardise -> stem;  op: layer BN(op(x));  skip: total + skip(source);
    reduction: factorized reduction;  head: embedding head(ReLU(x))."""
  import keras  # pylint: disable=import-outside-toplevel

  from enas_face.models import ops  # pylint: disable=import-outside-toplevel
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
