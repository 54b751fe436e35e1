"""The ENAS macro search space (Pham et al. 2018; Zhu 2019) as plain data.

A network has L search layers. Layer i applies one op from `OPS` and sums in
the outputs of any subset of the earlier layers 0..i-1 ("skip inputs"). The
original ENAS integer encoding lists, for each layer i in order, the op id
followed by i skip bits (bit j = 1 means layer j feeds layer i), so an
architecture is a sequence of n = L + L(L-1)/2 = L(L+1)/2 integers.

No deep-learning framework is imported here: the controller, the child model
builder and the command-line tools all share these definitions.
"""
from __future__ import annotations

import dataclasses
import json
import math
import operator
import os
import re
from typing import Any, Iterable, Sequence

import numpy as np

from enas_face.spaces.base import Decision, SampleError, SearchSpace

OPS: tuple[str, ...] = ("sep3x3", "sep5x5", "avgpool3x3", "maxpool3x3")

_OP_ID_BY_NAME = {name: op_id for op_id, name in enumerate(OPS)}


class ArchitectureError(SampleError):
  """An architecture (or its encoding) does not describe a valid network."""


def _as_int(value: Any, what: str) -> int:
  """`value` as a Python int (accepts numpy integers), else ArchitectureError."""
  if isinstance(value, (bool, np.bool_)):
    raise ArchitectureError(f"{what} must be an integer, got the boolean {value!r}")
  try:
    return operator.index(value)
  except TypeError:
    raise ArchitectureError(
        f"{what} must be an integer, got {value!r} of type {type(value).__name__}") from None


def _num_encoding_ints(num_layers: int) -> int:
  """Length of the ENAS encoding: n = L + L(L-1)/2 = L(L+1)/2."""
  return num_layers * (num_layers + 1) // 2


def _num_layers_from_length(length: int) -> int | None:
  """The L with L(L+1)/2 == length, or None if no positive integer L fits."""
  if length < 1:
    return None
  num_layers = (math.isqrt(8 * length + 1) - 1) // 2
  return num_layers if _num_encoding_ints(num_layers) == length else None


@dataclasses.dataclass(frozen=True)
class Architecture:
  """One child network of the macro search space.

  ops[i] is the op id (index into `OPS`) of layer i; skips[i] holds exactly i
  bits, skips[i][j] = 1 when layer j's output is a skip input of layer i.
  Lists are converted to tuples, so instances are hashable and compare by value.
  """
  ops: tuple[int, ...]
  skips: tuple[tuple[int, ...], ...]

  def __post_init__(self):
    if isinstance(self.ops, (str, bytes)) or not isinstance(self.ops, Iterable):
      raise ArchitectureError(f"ops must be a sequence of op ids, got {self.ops!r}")
    if isinstance(self.skips, (str, bytes)) or not isinstance(self.skips, Iterable):
      raise ArchitectureError(f"skips must be a sequence of bit sequences, got {self.skips!r}")
    ops = tuple(_as_int(op, f"op id of layer {i}") for i, op in enumerate(self.ops))
    if not ops:
      raise ArchitectureError("an architecture needs at least 1 layer, got 0 ops")
    for i, op in enumerate(ops):
      if not 0 <= op < len(OPS):
        raise ArchitectureError(
            f"op id of layer {i} is {op}; expected 0..{len(OPS) - 1} ({', '.join(OPS)})")
    raw_skips = list(self.skips)
    if len(raw_skips) != len(ops):
      raise ArchitectureError(
          f"skips must have one entry per layer: got {len(raw_skips)} entries for {len(ops)} ops")
    skips = []
    for i, layer_bits in enumerate(raw_skips):
      if isinstance(layer_bits, (str, bytes)) or not isinstance(layer_bits, Iterable):
        raise ArchitectureError(f"skips[{i}] must be a sequence of {i} bits, got {layer_bits!r}")
      bits = tuple(_as_int(bit, f"skip bit {j} of layer {i}") for j, bit in enumerate(layer_bits))
      if len(bits) != i:
        raise ArchitectureError(
            f"layer {i} must have exactly {i} skip bits (one per earlier layer), got {len(bits)}: {bits}")
      for j, bit in enumerate(bits):
        if bit not in (0, 1):
          raise ArchitectureError(
              f"skip bit from layer {j} into layer {i} is {bit}; expected 0 or 1")
      skips.append(bits)
    object.__setattr__(self, "ops", ops)
    object.__setattr__(self, "skips", tuple(skips))

  # ---------------------------------------------------------------- queries
  @property
  def num_layers(self) -> int:
    """L, the number of search layers."""
    return len(self.ops)

  @property
  def op_names(self) -> tuple[str, ...]:
    """OPS[ops[i]] for every layer i."""
    return tuple(OPS[op] for op in self.ops)

  def skip_inputs(self, layer: int) -> tuple[int, ...]:
    """The earlier layers j < layer with skips[layer][j] == 1, ascending."""
    layer = _as_int(layer, "layer")
    if not 0 <= layer < self.num_layers:
      raise ArchitectureError(f"layer must be in 0..{self.num_layers - 1}, got {layer}")
    return tuple(j for j, bit in enumerate(self.skips[layer]) if bit)

  @property
  def num_skips(self) -> int:
    """Number of skip connections: sum_i sum_j skips[i][j]."""
    return sum(sum(bits) for bits in self.skips)

  @property
  def skip_density(self) -> float:
    """num_skips / (L(L-1)/2), the fraction of possible skips used; 0 for L = 1."""
    possible = self.num_layers * (self.num_layers - 1) // 2
    return self.num_skips / possible if possible else 0.0

  # ---------------------------------------------------------- integer form
  def to_ints(self) -> list[int]:
    """ENAS encoding [op_0, op_1, s_1_0, op_2, s_2_0, s_2_1, ...], length L(L+1)/2."""
    encoding = []
    for op, bits in zip(self.ops, self.skips):
      encoding.append(op)
      encoding.extend(bits)
    return encoding

  @classmethod
  def from_ints(cls, seq: Sequence[int], num_layers: int | None = None) -> Architecture:
    """Decode the ENAS encoding; L is inferred from len(seq) = L(L+1)/2."""
    if isinstance(seq, (str, bytes)):
      raise ArchitectureError(f"expected a sequence of integers, got the string {seq!r}; use from_string")
    if isinstance(seq, np.ndarray):
      seq = seq.ravel().tolist()
    if not isinstance(seq, Iterable):
      raise ArchitectureError(f"expected a sequence of integers, got {type(seq).__name__}: {seq!r}")
    values = [_as_int(v, f"encoding entry {k}") for k, v in enumerate(seq)]
    inferred = _num_layers_from_length(len(values))
    if inferred is None:
      below = (math.isqrt(8 * len(values) + 1) - 1) // 2
      hint = f"{_num_encoding_ints(below)} (L={below}) or " if below >= 1 else ""
      raise ArchitectureError(
          f"encoding has {len(values)} integers; expected L(L+1)/2 for some L >= 1, "
          f"e.g. {hint}{_num_encoding_ints(below + 1)} (L={below + 1})")
    if num_layers is not None and _as_int(num_layers, "num_layers") != inferred:
      expected = f" ({_num_encoding_ints(num_layers)} integers)" if num_layers >= 1 else ""
      raise ArchitectureError(
          f"encoding has {len(values)} integers, i.e. {inferred} layers; "
          f"expected num_layers={num_layers}{expected}")
    ops, skips, position = [], [], 0
    for layer in range(inferred):
      ops.append(values[position])
      skips.append(tuple(values[position + 1:position + 1 + layer]))
      position += 1 + layer
    return cls(tuple(ops), tuple(skips))

  # ----------------------------------------------------------- string form
  def to_string(self) -> str:
    """The ENAS encoding as space-separated integers, e.g. "0 1 1 3 0 1"."""
    return " ".join(str(v) for v in self.to_ints())

  @classmethod
  def from_string(cls, text: str, num_layers: int | None = None) -> Architecture:
    """Parse "0 1 1 ...", "0,1,1,...", "[0, 1, 1]" or "(0 1 1)" into an Architecture."""
    if not isinstance(text, str):
      raise ArchitectureError(f"expected a string, got {type(text).__name__}: {text!r}")
    body = text.strip()
    if body and body[0] in "[(":
      closing = "]" if body[0] == "[" else ")"
      if not body.endswith(closing):
        raise ArchitectureError(
            f"architecture string {text!r} opens with {body[0]!r} but does not end with {closing!r}")
      body = body[1:-1].strip()
    tokens = [token for token in re.split(r"[\s,]+", body) if token]
    if not tokens:
      raise ArchitectureError(f"architecture string is empty ({text!r}); expected integers such as '0 1 1'")
    values = []
    for position, token in enumerate(tokens):
      try:
        values.append(int(token))
      except ValueError:
        raise ArchitectureError(
            f"token {position} of architecture string is {token!r}; expected a non-negative integer") from None
    return cls.from_ints(values, num_layers=num_layers)

  # ------------------------------------------------------------- JSON form
  def to_json(self) -> dict:
    """{"ops": [op names], "skips": [[bits], ...], "encoding": to_string()}."""
    return {"ops": list(self.op_names),
            "skips": [list(bits) for bits in self.skips],
            "encoding": self.to_string()}

  @classmethod
  def from_json(cls, obj: Any) -> Architecture:
    """Inverse of to_json; also accepts ops as ids or a dict holding only "encoding".

    When both "ops"/"skips" and "encoding" are present they must agree.
    """
    if not isinstance(obj, dict):
      raise ArchitectureError(f"expected a JSON object (dict), got {type(obj).__name__}: {obj!r}")
    has_ops, has_skips, has_encoding = "ops" in obj, "skips" in obj, "encoding" in obj
    if has_ops != has_skips:
      raise ArchitectureError(
          f"JSON architecture needs both 'ops' and 'skips' (or only 'encoding'); got keys {sorted(obj)}")
    from_encoding = None
    if has_encoding:
      encoding = obj["encoding"]
      if isinstance(encoding, str):
        from_encoding = cls.from_string(encoding)
      elif isinstance(encoding, (list, tuple)):
        from_encoding = cls.from_ints(encoding)
      else:
        raise ArchitectureError(
            f"'encoding' must be a string or a list of integers, got {type(encoding).__name__}: {encoding!r}")
    if not has_ops:
      if from_encoding is None:
        raise ArchitectureError(f"JSON architecture needs 'ops' and 'skips' or 'encoding'; got keys {sorted(obj)}")
      return from_encoding
    raw_ops = obj["ops"]
    if isinstance(raw_ops, (str, bytes)) or not isinstance(raw_ops, (list, tuple)):
      raise ArchitectureError(f"'ops' must be a list of op names or ids, got {raw_ops!r}")
    ops = []
    for i, op in enumerate(raw_ops):
      if isinstance(op, str):
        if op not in _OP_ID_BY_NAME:
          raise ArchitectureError(f"op of layer {i} is {op!r}; expected one of {', '.join(OPS)}")
        ops.append(_OP_ID_BY_NAME[op])
      else:
        ops.append(_as_int(op, f"op of layer {i}"))
    if not isinstance(obj["skips"], (list, tuple)):
      raise ArchitectureError(f"'skips' must be a list of bit lists, got {obj['skips']!r}")
    architecture = cls(tuple(ops), tuple(obj["skips"]))
    if from_encoding is not None and from_encoding != architecture:
      raise ArchitectureError(
          f"'encoding' {obj['encoding']!r} disagrees with 'ops'/'skips' "
          f"(which encode {architecture.to_string()!r})")
    return architecture

  def save_json(self, path: str | os.PathLike) -> None:
    """Write to_json() to `path` (pretty-printed, trailing newline)."""
    with open(path, "w", encoding="utf-8") as handle:
      json.dump(self.to_json(), handle, indent=2)
      handle.write("\n")

  @classmethod
  def load_json(cls, path: str | os.PathLike) -> Architecture:
    """Read an architecture written by save_json (or any dict from_json accepts).

    Raises FileNotFoundError for a missing file and ArchitectureError (naming
    the file) when it is not JSON or does not describe an architecture.
    """
    try:
      with open(path, encoding="utf-8") as handle:
        text = handle.read()
    except FileNotFoundError:
      raise FileNotFoundError(f"architecture file {os.fspath(path)!r} does not exist") from None
    try:
      obj = json.loads(text)
    except json.JSONDecodeError as error:
      raise ArchitectureError(f"architecture file {os.fspath(path)!r} is not valid JSON: {error}") from None
    try:
      return cls.from_json(obj)
    except ArchitectureError as error:
      raise ArchitectureError(
          f"architecture file {os.fspath(path)!r} is not a valid architecture: {error}") from None

  def __str__(self) -> str:
    """Human form, e.g. "L0 sep3x3 | L1 maxpool3x3 <- 0 | L2 sep5x5 <- 0,1"."""
    parts = []
    for layer, name in enumerate(self.op_names):
      inputs = self.skip_inputs(layer)
      parts.append(f"L{layer} {name}" + (f" <- {','.join(map(str, inputs))}" if inputs else ""))
    return " | ".join(parts)


def count_architectures(num_layers: int, num_ops: int = len(OPS)) -> int:
  """Size of the search space: num_ops**L * 2**(L(L-1)/2)."""
  num_layers = _as_int(num_layers, "num_layers")
  num_ops = _as_int(num_ops, "num_ops")
  if num_layers < 1:
    raise ValueError(f"num_layers must be >= 1, got {num_layers}")
  if num_ops < 1:
    raise ValueError(f"num_ops must be >= 1, got {num_ops}")
  return num_ops ** num_layers * 2 ** (num_layers * (num_layers - 1) // 2)


def sample_uniform(num_layers: int, rng: np.random.Generator) -> Architecture:
  """An architecture drawn uniformly: each op id ~ U{0..|OPS|-1}, each skip bit ~ U{0,1}, independently.

  Independent uniform choices give every one of count_architectures(L)
  architectures probability 1 / count_architectures(L).
  """
  num_layers = _as_int(num_layers, "num_layers")
  if num_layers < 1:
    raise ValueError(f"num_layers must be >= 1, got {num_layers}")
  ops = rng.integers(0, len(OPS), size=num_layers)
  skips = tuple(tuple(int(b) for b in rng.integers(0, 2, size=layer)) for layer in range(num_layers))
  return Architecture(tuple(int(op) for op in ops), skips)


def default_architecture(num_layers: int = 5) -> Architecture:
  """Hand-picked baseline: ops alternate sep3x3/sep5x5; each layer i >= 2 takes a skip from layer i-2."""
  num_layers = _as_int(num_layers, "num_layers")
  if num_layers < 1:
    raise ValueError(f"num_layers must be >= 1, got {num_layers}")
  ops = tuple(_OP_ID_BY_NAME["sep3x3"] if i % 2 == 0 else _OP_ID_BY_NAME["sep5x5"] for i in range(num_layers))
  skips = tuple(tuple(1 if j == i - 2 else 0 for j in range(i)) for i in range(num_layers))
  return Architecture(ops, skips)


def reduction_layers(num_layers: int, num_reductions: int = 3) -> tuple[int, ...]:
  """Layers after which a factorized reduction halves H and W.

  Evenly spaced: r_k = floor((k+1) L / (R+1)) - 1 for k = 0..R-1, e.g.
  L=5, R=3 -> (0, 1, 2) (after each of the first three blocks, as in the
  paper) and L=12, R=3 -> (2, 5, 8). Requires 0 <= R < L: for R = L the
  formula gives r_0 = -1 (and a reduction after the last layer is useless),
  so the indices are always distinct and in 0..L-2.
  """
  num_layers = _as_int(num_layers, "num_layers")
  num_reductions = _as_int(num_reductions, "num_reductions")
  if num_layers < 1:
    raise ValueError(f"num_layers must be >= 1, got {num_layers}")
  if not 0 <= num_reductions < num_layers:
    raise ValueError(
        f"num_reductions must be in 0..{num_layers - 1} (fewer than num_layers={num_layers}), "
        f"got {num_reductions}")
  return tuple((k + 1) * num_layers // (num_reductions + 1) - 1 for k in range(num_reductions))


def layer_stages(num_layers: int, num_reductions: int) -> tuple[int, ...]:
  """s_i = number of reductions placed after layers before i (layer i works at stage s_i,
  with C_s = base_filters * 2^s channels on maps of image_size / stem_stride / 2^s)."""
  after = reduction_layers(num_layers, num_reductions)
  return tuple(sum(1 for r in after if r < i) for i in range(num_layers))


def reduction_pairs(arc: Architecture, num_reductions: int) -> set[tuple[int, int]]:
  """The factorized reductions (j, s) an architecture runs: (j, s) reduces layer j's output
  from stage s-1 to s. Every consumer of h_j at stage t (the next layer's main input, a
  skip into a later layer, the head at the last stage) needs (j, s_j+1) .. (j, t)."""
  stages = layer_stages(arc.num_layers, num_reductions)
  consumers = [(i - 1, stages[i]) for i in range(1, arc.num_layers)]
  consumers += [(j, stages[i]) for i in range(arc.num_layers) for j in arc.skip_inputs(i)]
  consumers.append((arc.num_layers - 1, num_reductions))
  return {(source, s) for source, target in consumers
          for s in range(stages[source] + 1, target + 1)}


def module_conditions(num_layers: int, num_reductions: int
                      ) -> dict[str, tuple[tuple[int, int], ...]]:
  """When each optional module runs, read off the ENAS encoding e: key -> ((p, v), ...),
  the module runs iff e[p] == v for at least one pair (the keys of `modules`):

      layer{i}_{op}    e[op_position(i)] == id(op)
      layer{i}_skip{j} e[skip_position(i, j)] == 1
      reduce{j}_to{s}  OR over i with s_i >= s of e[skip_position(i, j)] == 1, for the
                       reductions only skips need (s > s_{j+1}, j < L-1)

  Modules every architecture runs (input, layer BNs, main-path reductions, head) are absent.
  """
  stages = layer_stages(num_layers, num_reductions)
  out = {}
  for i in range(num_layers):
    for op_id, op_name in enumerate(OPS):
      out[f"layer{i}_{op_name}"] = ((op_position(i), op_id),)
    for j in range(i):
      out[f"layer{i}_skip{j}"] = ((skip_position(i, j), 1),)
  for j in range(num_layers - 1):
    for s in range(stages[j + 1] + 1, num_reductions + 1):
      out[f"reduce{j}_to{s}"] = tuple((skip_position(i, j), 1)
                                      for i in range(j + 1, num_layers) if stages[i] >= s)
  return out


def op_position(layer: int) -> int:
  """Position of layer i's op id in the ENAS encoding: i + i(i-1)/2."""
  return layer + layer * (layer - 1) // 2


def skip_position(layer: int, source: int) -> int:
  """Position of the bit "layer `source` feeds layer i" in the ENAS encoding: op_position(i) + 1 + j."""
  return op_position(layer) + 1 + source


def decisions(num_layers: int) -> list[Decision]:
  """The controller's decisions in ENAS order (per layer: op, then skip bits from 0..i-1).

  Entry k of the returned list decides entry k of Architecture.to_ints(). Op decisions
  are categorical (group "op", opening anchor i); skip bits are ENAS skip decisions.
  """
  num_layers = _as_int(num_layers, "num_layers")
  if num_layers < 1:
    raise ValueError(f"num_layers must be >= 1, got {num_layers}")
  result = []
  for layer in range(num_layers):
    result.append(Decision(f"layer{layer}/op", len(OPS), "categorical", group="op", layer=layer))
    for source in range(layer):
      result.append(Decision(f"layer{layer}/skip_from{source}", 2, "skip", group="skip",
                             layer=layer, source=source))
  return result


# ----------------------------------------------------------------------------
# Analytic cost: the modules an architecture runs, and their FLOPs and parameters.
#
# Pure Python (no TensorFlow): the cost models count FLOPs and parameters from these
# formulas, and the latency lookup table times each module once and sums the modules of
# an architecture. One module per role, keyed like the child's attributes:
#
#     input              standardisation (x - mean) / std, then the stem: conv3x3 -> BN
#     layer{i}_{op}      layer i's op on x_i, then layer i's BN (the BN after the sum is
#                        counted here: every architecture runs exactly one op per layer)
#     layer{i}_skip{j}   the nonlinear skip ReLU -> conv1x1 -> BN on R(h_j), added to the sum
#     reduce{j}_to{s}    factorized reduction of h_j from stage s-1 to s
#     head               ReLU -> embedding head (DropBlock and dropout are identities at
#                        inference)
#
# FLOPs follow TensorFlow's profiler on the frozen batch-1 inference graph (the test oracle:
# tests/flops_oracle.py), a multiply-add counting 2:
#     conv k x k:      2 k^2 C_in C_out H_out W_out        depthwise k x k: 2 k^2 C H_out W_out
#     dense:           2 D_in D_out                         pool k x k: k^2 per output element
#     BN (inference):  2 per element (scale, shift) + 6 per channel (+eps, rsqrt counted
#                      as 2, * gamma, mean * inv, beta - ...; 5 without gamma)
#     add: 1 per element; standardisation: 2 per input element; global mean: 1 per input
#     element; ReLU, padding, cropping, concatenation, reshape: 0.
# Parameters: trainable weights as Keras counts them (convolutions without bias; BN's gamma
# and beta, beta only without scale); BN moving statistics and the standardisation's mean
# and std are not trainable.
BN_CHANNEL_FLOPS = 6


@dataclasses.dataclass(frozen=True)
class Module:
  """One module of an architecture: its key, kind and input geometry.

  kind: "input", "op" (with `op` one of OPS), "skip", "reduction" or "head".
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


def modules(model_config, arc: Architecture) -> list[Module]:
  """Every module `arc` runs under `model_config`, in no particular order."""
  stages = layer_stages(model_config.num_layers, model_config.num_reductions)
  result = [Module("input", "input", model_config.image_size, 3, model_config.base_filters)]
  for i, op_name in enumerate(arc.op_names):
    size, channels = stage_geometry(model_config, stages[i])
    result.append(Module(f"layer{i}_{op_name}", "op", size, channels, channels, op=op_name))
    result.extend(Module(f"layer{i}_skip{j}", "skip", size, channels, channels)
                  for j in arc.skip_inputs(i))
  for source, stage in sorted(reduction_pairs(arc, model_config.num_reductions)):
    size, channels = stage_geometry(model_config, stage - 1)
    result.append(Module(f"reduce{source}_to{stage}", "reduction", size, channels, 2 * channels))
  size, channels = stage_geometry(model_config, model_config.num_reductions)
  result.append(Module("head", "head", size, channels, model_config.embedding_dim))
  return result


def every_module(model_config) -> list[Module]:
  """Every module any architecture of the space can run (the lookup table's rows)."""
  stages = layer_stages(model_config.num_layers, model_config.num_reductions)
  # One architecture with every skip gives all skips and all reductions; add the other ops.
  dense = Architecture(
      tuple(0 for _ in stages), tuple(tuple(1 for _ in range(i)) for i in range(len(stages))))
  result = modules(model_config, dense)
  for i in range(len(stages)):
    size, channels = stage_geometry(model_config, stages[i])
    result.extend(Module(f"layer{i}_{op}", "op", size, channels, channels, op=op)
                  for op in OPS[1:])
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


def flops(model_config, arc: Architecture) -> int:
  """FLOPs of one batch-1 inference: the sum over the architecture's modules."""
  return sum(module_flops(m, model_config) for m in modules(model_config, arc))


def params(model_config, arc: Architecture) -> int:
  """Trainable parameters: the sum over the architecture's modules."""
  return sum(module_params(m, model_config) for m in modules(model_config, arc))


class EnasMacroSpace(SearchSpace):
  """The ENAS macro space (Zhu 2019): per layer an op from OPS and skips from earlier layers.

  Samples are `Architecture`s; models.builders builds them as `child.FixedChild` and, for
  weight sharing, `child.SharedChild` (every candidate op and skip, the architecture as an
  int32 tensor).
  """
  name = "enas_macro"
  supports_weight_sharing = True
  description = "ENAS macro space: per layer one op of " + ", ".join(OPS) + " and skip inputs"

  def decisions(self, model_config) -> tuple[Decision, ...]:
    return tuple(decisions(model_config.num_layers))

  def encode(self, sample: Architecture) -> list[int]:
    return sample.to_ints()

  def decode(self, choices, model_config) -> Architecture:
    return self._checked(Architecture.from_ints(choices), model_config)

  def to_json(self, sample: Architecture) -> dict:
    return sample.to_json()

  def from_json(self, obj, model_config) -> Architecture:
    return self._checked(Architecture.from_json(obj), model_config)

  def from_string(self, text: str, model_config) -> Architecture:
    return self._checked(Architecture.from_string(text), model_config)

  def describe(self, sample: Architecture) -> str:
    return str(sample)

  def default(self, model_config) -> Architecture:
    return default_architecture(model_config.num_layers)

  def sample_uniform(self, model_config, rng: np.random.Generator) -> Architecture:
    return sample_uniform(model_config.num_layers, rng)

  def flops(self, model_config, sample: Architecture) -> int:
    return flops(model_config, sample)

  def params(self, model_config, sample: Architecture) -> int:
    return params(model_config, sample)

  def cost_modules(self, model_config, sample: Architecture) -> list[str]:
    return [m.key for m in modules(model_config, sample)]

  def every_cost_module(self, model_config) -> list[str]:
    return [m.key for m in every_module(model_config)]

  @staticmethod
  def _checked(arc: Architecture, model_config) -> Architecture:
    if model_config is not None and arc.num_layers != model_config.num_layers:
      raise ArchitectureError(f"the architecture has {arc.num_layers} layers but --num_layers="
                              f"{model_config.num_layers}")
    return arc
