"""The MobileFaceNet family (Chen et al. 2018) as a width/depth search space, as plain data.

MobileFaceNet at width 1 (the paper's Table 1, 112x112 input, as insightface builds it):

    stem    conv3x3/2 -> 64, depthwise 3x3 -> 64                         (PReLU)
    stage1  5 inverted-residual blocks, 64 channels, expansion 128, the first /2
    stage2  7 blocks, 128 channels, expansion 256, the first /2
    stage3  3 blocks, 128 channels, expansions 512, 256, 256, the first /2
    head    conv1x1 -> 512 (PReLU), linear global depthwise conv (GDConv) over the
            final S/16 x S/16 map, linear -> embedding_dim, BN

A block is expand 1x1 (PReLU) -> depthwise 3x3 (PReLU) -> linear project 1x1, with a
residual sum in every block but a stage's first. Every conv is followed by BN.

A sample (`Shape`) chooses a width ratio r for the stem, for each stage's channels and for
each stage's expansion, and for the head conv, and each stage's depth (its first d blocks):

    channels = max(1, round(C_max * width_multiplier * r)),  r in WIDTH_RATIOS

(TAS's grid, METHODS.md §4). The default sample is the paper's network (every r = 1, full
depths), so `--search_space=mobilefacenet --width_multiplier=m` trains MobileFaceNet
scaled by m. Decisions, in order: stem_width, then per stage {stage}_width,
{stage}_expansion, {stage}_depth, then head_width.

FLOPs and parameters are counted here from the same formula for exact counts and, with
expected channel counts and P(depth >= b), for the differentiable search's E[FLOPs]
(`flops_formula`); conventions as spaces/enas_macro.py (a multiply-add counts 2,
checked against TensorFlow's profiler by the tests).
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Sequence

from enas_face.config import ConfigError
from enas_face.spaces.base import Decision, SampleError, SearchSpace

WIDTH_RATIOS: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
STEM_CHANNELS = 64
HEAD_CHANNELS = 512


@dataclasses.dataclass(frozen=True)
class Stage:
  """One resolution stage: `len(expansions)` blocks of `channels` outputs, the first /2."""
  name: str
  channels: int
  expansions: tuple[int, ...]

  @property
  def max_depth(self) -> int:
    return len(self.expansions)


STAGES: tuple[Stage, ...] = (
    Stage("stage1", 64, (128,) * 5),
    Stage("stage2", 128, (256,) * 7),
    Stage("stage3", 128, (512, 256, 256)),
)
REDUCTION = 16  # stem /2 and one /2 per stage


# Per-element and per-channel FLOPs of the inference graph's non-conv ops, as TensorFlow's
# profiler counts them (tests/test_mobilefacenet.py checks the totals against it).
BN_ELEMENT_FLOPS = 2  # (x - mean) * inv  (BN without its own scale and centre)
BN_CHANNEL_FLOPS = 5  # inv = rsqrt(var + eps) and mean * inv, as the profiler counts them
AFFINE_ELEMENT_FLOPS = 2  # * gamma + beta
PRELU_ELEMENT_FLOPS = 4  # max(y, 0) + alpha * min(y, 0)
ADD_ELEMENT_FLOPS = 1
STANDARDIZE_ELEMENT_FLOPS = 2


def channels(max_channels: int, multiplier: float, ratio: float) -> int:
  """max(1, round(C_max * width_multiplier * r))."""
  return max(1, int(round(max_channels * multiplier * ratio)))


@dataclasses.dataclass(frozen=True)
class Shape:
  """A MobileFaceNet-family network: width ratios (entries of WIDTH_RATIOS) and depths."""
  stem: float = 1.0
  widths: tuple[float, ...] = (1.0,) * len(STAGES)
  expansions: tuple[float, ...] = (1.0,) * len(STAGES)
  depths: tuple[int, ...] = tuple(stage.max_depth for stage in STAGES)
  head: float = 1.0

  def __post_init__(self):
    for name in ("widths", "expansions", "depths"):
      value = getattr(self, name)
      if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        raise SampleError(f"mobilefacenet {name} must be a list of {len(STAGES)} values, "
                          f"got {value!r}")
      object.__setattr__(self, name, tuple(value))
      if len(value) != len(STAGES):
        raise SampleError(f"mobilefacenet {name} needs {len(STAGES)} entries (one per stage), "
                          f"got {len(value)}")
    ratios = [("stem", self.stem), ("head", self.head)]
    ratios += [(f"{s.name}_width", r) for s, r in zip(STAGES, self.widths)]
    ratios += [(f"{s.name}_expansion", r) for s, r in zip(STAGES, self.expansions)]
    for name, ratio in ratios:
      if not any(abs(float(ratio) - r) < 1e-9 for r in WIDTH_RATIOS):
        raise SampleError(f"mobilefacenet {name} ratio {ratio!r} is not one of {WIDTH_RATIOS}")
    object.__setattr__(self, "stem", _snap(self.stem))
    object.__setattr__(self, "head", _snap(self.head))
    object.__setattr__(self, "widths", tuple(_snap(r) for r in self.widths))
    object.__setattr__(self, "expansions", tuple(_snap(r) for r in self.expansions))
    depths = []
    for stage, depth in zip(STAGES, self.depths):
      if isinstance(depth, bool) or int(depth) != depth or not 1 <= int(depth) <= stage.max_depth:
        raise SampleError(f"mobilefacenet {stage.name} depth {depth!r} is not in "
                          f"1..{stage.max_depth}")
      depths.append(int(depth))
    object.__setattr__(self, "depths", tuple(depths))


def _snap(ratio: float) -> float:
  return min(WIDTH_RATIOS, key=lambda r: abs(r - float(ratio)))


@dataclasses.dataclass(frozen=True)
class Channels:
  """The channel counts of a Shape (or of the supernet: every ratio 1, every block)."""
  stem: int
  widths: tuple[int, ...]
  expansions: tuple[tuple[int, ...], ...]  # per stage, per block (its depth's blocks only)
  head: int


def shape_channels(model_config, shape: Shape) -> Channels:
  m = model_config.width_multiplier
  return Channels(
      stem=channels(STEM_CHANNELS, m, shape.stem),
      widths=tuple(channels(s.channels, m, r) for s, r in zip(STAGES, shape.widths)),
      expansions=tuple(tuple(channels(e, m, r) for e in s.expansions[:d])
                       for s, r, d in zip(STAGES, shape.expansions, shape.depths)),
      head=channels(HEAD_CHANNELS, m, shape.head))


def full_shape() -> Shape:
  return Shape()


# Decision rows of the supernet's mixing tensor (and of an encoding), in order.
def decision_names() -> list[str]:
  names = ["stem_width"]
  for stage in STAGES:
    names += [f"{stage.name}_width", f"{stage.name}_expansion", f"{stage.name}_depth"]
  return names + ["head_width"]


def width_decision_index(what: str) -> int:
  """Row of `what` ("stem", "head", "{stage}_width", "{stage}_expansion", "{stage}_depth")."""
  key = what if what.startswith("stage") else f"{what}_width"
  return decision_names().index(key)


def check_geometry(model_config) -> None:
  """--image_size must be a positive multiple of 16 (stem and three stages halve it)."""
  size = model_config.image_size
  if size % REDUCTION or size < REDUCTION:
    raise ConfigError(f"--image_size={size}: the mobilefacenet space halves it 4 times; use a "
                      f"positive multiple of {REDUCTION} (e.g. {max(1, size // REDUCTION) * 16})")
  if model_config.width_multiplier <= 0:
    raise ConfigError(f"--width_multiplier={model_config.width_multiplier} must be positive")


def flops_formula(size: int, embedding_dim: int, stem, widths: Sequence, expansions: Sequence,
                  head, depth_weights: Sequence[Sequence]):
  """FLOPs of one batch-1 inference at input S = size:

      standardise 2*3*S^2 + stem + sum_s sum_b P_s(depth >= b) * block_{s,b} + head

  Each channel count may be a number (an exact count) or an expectation E[C] = sum_k p_k C_k
  (a tensor): every product below multiplies channels of two different decisions, and
  decisions are independent, so with expectations this is E[FLOPs] exactly.
  expansions[s][b] is block b's expansion; depth_weights[s][b] = P_s(depth >= b + 1).
  """

  def unit(elements, channels_out, activation=True):
    flops = (BN_ELEMENT_FLOPS + AFFINE_ELEMENT_FLOPS) * elements + BN_CHANNEL_FLOPS * channels_out
    return flops + (PRELU_ELEMENT_FLOPS * elements if activation else 0)

  side = size // 2
  area = side * side
  total = STANDARDIZE_ELEMENT_FLOPS * 3 * size * size
  total = total + 2 * 9 * 3 * stem * area + unit(stem * area, stem)  # conv3x3/2
  total = total + 2 * 9 * stem * area + unit(stem * area, stem)  # depthwise 3x3
  channels_in = stem
  for stage, width, blocks, weights in zip(STAGES, widths, expansions, depth_weights):
    out_side = side // 2
    out_area = out_side * out_side
    for b, (expansion, weight) in enumerate(zip(blocks, weights)):
      in_area = area if b == 0 else out_area
      source = channels_in if b == 0 else width
      block = 2 * source * expansion * in_area + unit(expansion * in_area, expansion)
      block = block + 2 * 9 * expansion * out_area + unit(expansion * out_area, expansion)
      block = block + 2 * expansion * width * out_area + unit(width * out_area, width, False)
      if b > 0:
        block = block + ADD_ELEMENT_FLOPS * width * out_area
      total = total + weight * block
    side, area, channels_in = out_side, out_area, width
  total = total + 2 * channels_in * head * area + unit(head * area, head)  # conv1x1
  total = total + 2 * area * head + unit(head, head, False)  # GDConv (valid: 1x1 output)
  total = total + 2 * head * embedding_dim + unit(embedding_dim, embedding_dim, False)
  return total


def params_of(channels_: Channels, embedding_dim: int) -> int:
  """Trainable parameters: kernels (no biases), gamma and beta per BN, alpha per PReLU."""

  def unit(weights, channels_out, activation=True):
    return weights + 2 * channels_out + (channels_out if activation else 0)

  total = unit(9 * 3 * channels_.stem, channels_.stem) + unit(9 * channels_.stem, channels_.stem)
  channels_in = channels_.stem
  for width, blocks in zip(channels_.widths, channels_.expansions):
    for b, expansion in enumerate(blocks):
      source = channels_in if b == 0 else width
      total += unit(source * expansion, expansion) + unit(9 * expansion, expansion)
      total += unit(expansion * width, width, False)
    channels_in = width
  return total  # the head is added by the caller (its GDConv kernel depends on S)


class MobileFaceNetSpace(SearchSpace):
  name = "mobilefacenet"
  has_supernet = True  # models.builders.build_supernet: the width/depth search
  supports_weight_sharing = True  # the same supernet called with arc=: the one-shot search
  description = ("MobileFaceNet (Chen et al. 2018) widths and depths: per-stage width, "
                      "expansion and depth, stem and head widths (TAS-style width/depth search)")

  def decisions(self, model_config) -> tuple[Decision, ...]:
    out = [Decision("stem_width", len(WIDTH_RATIOS), group="width")]
    for stage in STAGES:
      out += [Decision(f"{stage.name}_width", len(WIDTH_RATIOS), group="width"),
              Decision(f"{stage.name}_expansion", len(WIDTH_RATIOS), group="width"),
              Decision(f"{stage.name}_depth", stage.max_depth)]
    return tuple(out + [Decision("head_width", len(WIDTH_RATIOS), group="width")])

  def encode(self, sample: Shape) -> list[int]:
    index = WIDTH_RATIOS.index
    out = [index(sample.stem)]
    for width, expansion, depth in zip(sample.widths, sample.expansions, sample.depths):
      out += [index(width), index(expansion), depth - 1]
    return out + [index(sample.head)]

  def decode(self, choices, model_config) -> Shape:
    values = self.check_choices(choices, model_config)
    ratio = lambda k: WIDTH_RATIOS[k]  # noqa: E731
    stages = [values[1 + 3 * s: 4 + 3 * s] for s in range(len(STAGES))]
    return Shape(stem=ratio(values[0]), widths=tuple(ratio(w) for w, _, _ in stages),
                 expansions=tuple(ratio(e) for _, e, _ in stages),
                 depths=tuple(d + 1 for _, _, d in stages), head=ratio(values[-1]))

  def to_json(self, sample: Shape) -> dict:
    return {"stem": sample.stem, "widths": list(sample.widths),
            "expansions": list(sample.expansions), "depths": list(sample.depths),
            "head": sample.head, "encoding": self.to_string(sample)}

  def from_json(self, obj: Any, model_config) -> Shape:
    if isinstance(obj, str):
      try:
        obj = json.loads(obj)
      except json.JSONDecodeError:
        return self.from_string(obj, model_config)
    if not isinstance(obj, dict):
      raise SampleError(f"a mobilefacenet sample is a JSON object, got {obj!r}")
    if "widths" not in obj and "encoding" in obj:
      return self.from_string(obj["encoding"], model_config)
    try:
      shape = Shape(stem=obj.get("stem", 1.0), widths=obj["widths"],
                    expansions=obj.get("expansions", (1.0,) * len(STAGES)),
                    depths=obj.get("depths", tuple(s.max_depth for s in STAGES)),
                    head=obj.get("head", 1.0))
    except KeyError as error:
      raise SampleError(f"a mobilefacenet sample needs {error}; got keys {sorted(obj)}") from None
    except (TypeError, ValueError) as error:
      raise SampleError(f"not a mobilefacenet sample: {error}") from None
    if "encoding" in obj and str(obj["encoding"]).split() != self.to_string(shape).split():
      raise SampleError(f"mobilefacenet sample: encoding {obj['encoding']!r} disagrees with its "
                        f"fields ({self.to_string(shape)!r})")
    return shape

  def describe(self, sample: Shape) -> str:
    return (f"stem {sample.stem} | " + " | ".join(
        f"{s.name} w{w} e{e} d{d}" for s, w, e, d in
        zip(STAGES, sample.widths, sample.expansions, sample.depths)) + f" | head {sample.head}")

  def default(self, model_config) -> Shape:
    return full_shape()

  def widest_choices(self, model_config) -> list[int]:
    """Ratio 1 for every width, the full depth of every stage: the supernet itself (a
    narrower width is the first channels of a wider one, a depth the first blocks)."""
    return [d.num_choices - 1 for d in self.decisions(model_config)]

  def channels(self, model_config, sample: Shape) -> Channels:
    return shape_channels(model_config, sample)

  def flops(self, model_config, sample: Shape) -> int:
    check_geometry(model_config)
    c = shape_channels(model_config, sample)
    weights = [[1] * len(blocks) for blocks in c.expansions]
    return int(flops_formula(model_config.image_size, model_config.embedding_dim, c.stem,
                             c.widths, c.expansions, c.head, weights))

  def params(self, model_config, sample: Shape) -> int:
    check_geometry(model_config)
    c = shape_channels(model_config, sample)
    final = model_config.image_size // REDUCTION
    head = c.head * c.widths[-1] + 3 * c.head  # conv1x1, BN, PReLU
    head += final * final * c.head + 2 * c.head  # GDConv, BN
    head += c.head * model_config.embedding_dim + 2 * model_config.embedding_dim
    return params_of(c, model_config.embedding_dim) + head
