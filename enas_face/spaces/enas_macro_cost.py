"""The modules an ENAS macro architecture runs, and their analytic FLOPs and parameters.

Pure Python (no TensorFlow): the cost models count FLOPs and parameters from these
formulas, and the latency lookup table times each module once and sums the modules of
an architecture. One module per role, keyed like the child's attributes:

    input              standardisation (x - mean) / std, then the stem: conv3x3 -> BN
    layer{i}_{op}      layer i's op on x_i, then layer i's BN (the BN after the sum is
                       counted here: every architecture runs exactly one op per layer)
    layer{i}_skip{j}   the nonlinear skip ReLU -> conv1x1 -> BN on R(h_j), added to the sum
    reduce{j}_to{s}    factorized reduction of h_j from stage s-1 to s
    head               ReLU -> embedding head (DropBlock and dropout are identities at
                       inference)

FLOPs follow TensorFlow's profiler on the frozen batch-1 inference graph (the test oracle:
tests/flops_oracle.py), a multiply-add counting 2:
    conv k x k:      2 k^2 C_in C_out H_out W_out        depthwise k x k: 2 k^2 C H_out W_out
    dense:           2 D_in D_out                         pool k x k: k^2 per output element
    BN (inference):  2 per element (scale, shift) + 6 per channel (+eps, rsqrt counted
                     as 2, * gamma, mean * inv, beta - ...; 5 without gamma)
    add: 1 per element; standardisation: 2 per input element; global mean: 1 per input
    element; ReLU, padding, cropping, concatenation, reshape: 0.
Parameters: trainable weights as Keras counts them (convolutions without bias; BN's gamma
and beta, beta only without scale); BN moving statistics and the standardisation's mean
and std are not trainable.
"""
from __future__ import annotations

import dataclasses

from enas_face.spaces import enas_macro

BN_CHANNEL_FLOPS = 6


@dataclasses.dataclass(frozen=True)
class Module:
  """One module of an architecture: its key, kind and input geometry.

  kind: "input", "op" (with `op` one of enas_macro.OPS), "skip", "reduction" or "head".
  size and channels are those of the module's input (for "input": the image).
  """
  key: str
  kind: str
  size: int
  channels: int
  out_channels: int
  op: str = ""


def _bn_flops(elements: int, channels: int, scale: bool = True) -> int:
  return 2 * elements + (BN_CHANNEL_FLOPS if scale else BN_CHANNEL_FLOPS - 1) * channels


def _bn_params(channels: int, scale: bool = True) -> int:
  return (2 if scale else 1) * channels


def stage_geometry(model_config, stage: int) -> tuple[int, int]:
  """(H = W, C) of the feature maps at `stage`: image_size / stem_stride / 2^s and
  base_filters * 2^s."""
  return (model_config.image_size // model_config.stem_stride // 2**stage,
          model_config.base_filters * 2**stage)


def modules(model_config, arc: enas_macro.Architecture) -> list[Module]:
  """Every module `arc` runs under `model_config`, in no particular order."""
  stages = enas_macro.layer_stages(model_config.num_layers, model_config.num_reductions)
  result = [Module("input", "input", model_config.image_size, 3, model_config.base_filters)]
  for i, op_name in enumerate(arc.op_names):
    size, channels = stage_geometry(model_config, stages[i])
    result.append(Module(f"layer{i}_{op_name}", "op", size, channels, channels, op=op_name))
    result.extend(Module(f"layer{i}_skip{j}", "skip", size, channels, channels)
                  for j in arc.skip_inputs(i))
  for source, stage in sorted(enas_macro.reduction_pairs(arc, model_config.num_reductions)):
    size, channels = stage_geometry(model_config, stage - 1)
    result.append(Module(f"reduce{source}_to{stage}", "reduction", size, channels, 2 * channels))
  size, channels = stage_geometry(model_config, model_config.num_reductions)
  result.append(Module("head", "head", size, channels, model_config.embedding_dim))
  return result


def every_module(model_config) -> list[Module]:
  """Every module any architecture of the space can run (the lookup table's rows)."""
  stages = enas_macro.layer_stages(model_config.num_layers, model_config.num_reductions)
  # One architecture with every skip gives all skips and all reductions; add the other ops.
  dense = enas_macro.Architecture(
      tuple(0 for _ in stages), tuple(tuple(1 for _ in range(i)) for i in range(len(stages))))
  result = modules(model_config, dense)
  for i in range(len(stages)):
    size, channels = stage_geometry(model_config, stages[i])
    result.extend(Module(f"layer{i}_{op}", "op", size, channels, channels, op=op)
                  for op in enas_macro.OPS[1:])
  return sorted(result, key=lambda m: m.key)


def module_flops(module: Module, model_config) -> int:
  """FLOPs of one module at batch 1 (the formulas of the module docstring)."""
  h, c, c_out = module.size, module.channels, module.out_channels
  if module.kind == "input":
    out = h // model_config.stem_stride
    return 2 * h * h * 3 + 2 * 9 * 3 * c_out * out * out + _bn_flops(out * out * c_out, c_out)
  elements = h * h * c
  conv1x1 = 2 * c * c * h * h
  if module.kind == "op":
    if module.op.startswith("sep"):
      k = int(module.op[3])
      branch = conv1x1 + 2 * k * k * elements + conv1x1 + _bn_flops(elements, c)
    else:  # avgpool3x3 / maxpool3x3 after a 1x1 conv
      branch = conv1x1 + 9 * elements
    return branch + _bn_flops(elements, c)  # + the layer's BN
  if module.kind == "skip":
    return conv1x1 + _bn_flops(elements, c) + elements  # + the add into the sum
  if module.kind == "reduction":
    out = h // 2
    subsample = out * out * c  # AvgPool 1x1 stride 2: one per output element, per path
    conv = 2 * c * (c_out // 2) * out * out
    return 2 * (subsample + conv) + _bn_flops(out * out * c_out, c_out)
  if module.kind == "head":
    head = model_config.embedding_head
    flops = _bn_flops(elements, c)
    if head == "gdc":
      flops += 2 * h * h * c + _bn_flops(c, c)
      features = c
    elif head == "gap":
      flops += elements
      features = c
    else:
      features = elements
    return flops + 2 * features * c_out + _bn_flops(c_out, c_out, scale=False)
  raise ValueError(f"unknown module kind {module.kind!r} ({module.key})")


def module_params(module: Module, model_config) -> int:
  """Trainable parameters of one module."""
  h, c, c_out = module.size, module.channels, module.out_channels
  if module.kind == "input":
    return 9 * 3 * c_out + _bn_params(c_out)
  if module.kind == "op":
    if module.op.startswith("sep"):
      k = int(module.op[3])
      branch = c * c + k * k * c + c * c + _bn_params(c)
    else:
      branch = c * c
    return branch + _bn_params(c)
  if module.kind == "skip":
    return c * c + _bn_params(c)
  if module.kind == "reduction":
    return 2 * c * (c_out // 2) + _bn_params(c_out)
  if module.kind == "head":
    head = model_config.embedding_head
    params = _bn_params(c)
    if head == "gdc":
      params += h * h * c + _bn_params(c)
      features = c
    elif head == "gap":
      features = c
    else:
      features = h * h * c
    return params + features * c_out + _bn_params(c_out, scale=False)
  raise ValueError(f"unknown module kind {module.kind!r} ({module.key})")


def flops(model_config, arc: enas_macro.Architecture) -> int:
  """FLOPs of one batch-1 inference: the sum over the architecture's modules."""
  return sum(module_flops(m, model_config) for m in modules(model_config, arc))


def params(model_config, arc: enas_macro.Architecture) -> int:
  """Trainable parameters: the sum over the architecture's modules."""
  return sum(module_params(m, model_config) for m in modules(model_config, arc))


def build_module(model_config, key: str):
  """(callable, input_shapes): module `key` alone as a Keras model with random weights, the
  same layers as the child builds (ops.OP_REGISTRY), for the latency table:
    input: standardise -> stem;  op: layer BN(op(x));  skip: total + skip(source);
    reduction: factorized reduction;  head: embedding head(ReLU(x))."""
  import keras  # pylint: disable=import-outside-toplevel

  from enas_face import ops  # pylint: disable=import-outside-toplevel
  by_key = {m.key: m for m in every_module(model_config)}
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
