"""The comprehensive search space (Zhang et al. 2022): data cleaning, loss and architecture.

A sample is a `Recipe`: how the training data are cleaned (`cleaning.CleaningSettings`),
which loss trains the network (`LossSettings`) and the ENAS macro architecture. Loss and
data do not change a forward pass, so a shared-weight reward cannot see them: these spaces
are searched with --search_strategy=multi_trial (each sample a short proxy training run).

Decisions, in sampling order (choices in brackets; "seed" = as in the comprehensive search's
released code, "ours" = our choice, METHODS.md §3):
  cleaning (ours: the seed's data space is not published)
    clean/outlier_threshold  [off, 0.0, 0.1, 0.2, 0.3, 0.4, 0.5]  cos to the identity centre
    clean/merge_threshold    [off, 0.95, 0.9, 0.85, 0.8, 0.7]      centre-to-centre cos
    clean/duplicate_action   [merge, drop]
    clean/min_images         [1, 2, 3, 5, 8]                      images per identity left
  loss (the seed's rescaled-margin family; the grids around its and ArcFace's values are ours)
    loss/head  [softmax, rescaled_margin]   (softmax: today's ENAS; the margins then unused)
    loss/s_pos, loss/s_neg  [8, 16, 24, 32, 40, 48, 64]   z_y = s_pos (cos(m1 t + m2) - m3)
    loss/m1  [0.9, 1.0, 1.1, 1.15, 1.2]                     z_j = s_neg c_j
    loss/m2  [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    loss/m3  [0.0, 0.1, 0.2, 0.3]
  architecture: the ENAS macro decisions (enas_macro: per layer an op and skip bits)
The single-aspect spaces loss_only, data_only and arch_only draw one aspect and hold the
others at their defaults: no cleaning, plain softmax, the enas_macro default architecture.

Decisions that do not matter for a sample (the margins of softmax, the action of an unused
merge threshold) decode to their defaults (ArcFace's s = 64, m = (1, 0.5, 0); merge), so
equivalent samples share one encoding and a multi-trial search trains them once.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from enas_face.data import cleaning
from enas_face.data.cleaning import CleaningSettings
from enas_face.spaces.base import Decision, SampleError, SearchSpace
from enas_face.spaces.enas_macro import Architecture, EnasMacroSpace

ASPECTS = ("data", "loss", "arch")
OUTLIER_THRESHOLDS = (None, 0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
MERGE_THRESHOLDS = (None, 0.95, 0.9, 0.85, 0.8, 0.7)
DUPLICATE_ACTIONS = ("merge", "drop")
MIN_IMAGES = (1, 2, 3, 5, 8)
LOSS_HEADS = ("softmax", "rescaled_margin")
SCALES = (8.0, 16.0, 24.0, 32.0, 40.0, 48.0, 64.0)
M1 = (0.9, 1.0, 1.1, 1.15, 1.2)
M2 = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
M3 = (0.0, 0.1, 0.2, 0.3)

CLEANING_GRID = (("outlier_threshold", OUTLIER_THRESHOLDS), ("merge_threshold", MERGE_THRESHOLDS),
                 ("duplicate_action", DUPLICATE_ACTIONS), ("min_images", MIN_IMAGES))
LOSS_GRID = (("head", LOSS_HEADS), ("s_pos", SCALES), ("s_neg", SCALES), ("m1", M1), ("m2", M2),
             ("m3", M3))


@dataclasses.dataclass(frozen=True)
class LossSettings:
  """The loss of a recipe: plain softmax, or the rescaled-margin family (heads.RescaledMargin)."""
  head: str = "softmax"
  s_pos: float = 64.0
  s_neg: float = 64.0
  m1: float = 1.0
  m2: float = 0.5
  m3: float = 0.0

  def __post_init__(self):
    if self.head not in LOSS_HEADS:
      raise SampleError(f"loss head must be one of {LOSS_HEADS}, got {self.head!r}")

  def head_config(self, base):
    """`base` (a config.HeadConfig) with this loss."""
    return dataclasses.replace(base, head=self.head, rescaled_s_pos=self.s_pos,
                               rescaled_s_neg=self.s_neg, rescaled_m1=self.m1,
                               rescaled_m2=self.m2, rescaled_m3=self.m3, margin="")

  def to_json(self) -> dict:
    if self.head == "softmax":
      return {"head": "softmax"}
    return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Recipe:
  """One sample of a comprehensive space: cleaning + loss + architecture."""
  cleaning: CleaningSettings
  loss: LossSettings
  arch: Architecture


DEFAULT_CLEANING = CleaningSettings()
DEFAULT_LOSS = LossSettings()


def _index(values: Sequence, value, what: str) -> int:
  """Position of `value` on a grid (numbers compared to 1e-9)."""
  for position, candidate in enumerate(values):
    if candidate == value or (isinstance(candidate, float) and isinstance(value, (int, float))
                              and abs(candidate - value) < 1e-9):
      return position
  raise SampleError(f"{what} = {value!r} is not on the grid {list(values)}")


class ComprehensiveSpace(SearchSpace):
  """Cleaning, loss and architecture; `aspects` says which of them are searched."""
  owns_loss = True  # held at plain softmax when the loss is not searched

  def __init__(self, name: str, aspects: Sequence[str], description: str):
    self.name, self.aspects, self.description = name, tuple(aspects), description
    self.cleans_data = "data" in self.aspects  # a search trains the cleaning proxy first
    self.arch_space = EnasMacroSpace()

  # --------------------------------------------------------------- decisions
  def decisions(self, model_config) -> tuple[Decision, ...]:
    out = []
    if "data" in self.aspects:
      out += [Decision(f"clean/{name}", len(values)) for name, values in CLEANING_GRID]
    if "loss" in self.aspects:
      out += [Decision(f"loss/{name}", len(values)) for name, values in LOSS_GRID]
    if "arch" in self.aspects:
      out += list(self.arch_space.decisions(model_config))
    return tuple(out)

  def _canonical(self, sample: Recipe) -> Recipe:
    cleaning, loss = sample.cleaning, sample.loss
    if cleaning.merge_threshold is None:
      cleaning = dataclasses.replace(cleaning, duplicate_action=DUPLICATE_ACTIONS[0])
    if loss.head == "softmax":
      loss = DEFAULT_LOSS
    return Recipe(cleaning, loss, sample.arch)

  def encode(self, sample: Recipe) -> list[int]:
    sample = self._canonical(sample)
    out = []
    if "data" in self.aspects:
      out += [_index(values, getattr(sample.cleaning, name), f"clean/{name}")
              for name, values in CLEANING_GRID]
    if "loss" in self.aspects:
      out += [_index(values, getattr(sample.loss, name), f"loss/{name}")
              for name, values in LOSS_GRID]
    if "arch" in self.aspects:
      out += self.arch_space.encode(sample.arch)
    return out

  def decode(self, choices: Sequence[int], model_config) -> Recipe:
    values = self.check_choices(choices, model_config)
    cleaning, loss = DEFAULT_CLEANING, DEFAULT_LOSS
    if "data" in self.aspects:
      picked, values = values[:len(CLEANING_GRID)], values[len(CLEANING_GRID):]
      cleaning = CleaningSettings(**{name: grid[c] for (name, grid), c in zip(CLEANING_GRID, picked)})
    if "loss" in self.aspects:
      picked, values = values[:len(LOSS_GRID)], values[len(LOSS_GRID):]
      loss = LossSettings(**{name: grid[c] for (name, grid), c in zip(LOSS_GRID, picked)})
    arch = (self.arch_space.decode(values, model_config) if "arch" in self.aspects
            else self.arch_space.default(model_config))
    return self._canonical(Recipe(cleaning, loss, arch))

  # ------------------------------------------------------------------ JSON
  def to_json(self, sample: Recipe) -> dict:
    sample = self._canonical(sample)
    return {"cleaning": sample.cleaning.to_json(), "loss": sample.loss.to_json(),
            "architecture": self.arch_space.to_json(sample.arch)}

  def from_json(self, obj: Any, model_config) -> Recipe:
    if not isinstance(obj, dict) or set(obj) - {"cleaning", "loss", "architecture"}:
      raise SampleError(f"a {self.name} sample is a JSON object with keys cleaning, loss and "
                        f"architecture; got {obj!r}"[:300])
    try:
      cleaning = CleaningSettings.from_json(obj.get("cleaning", {}))
      loss = obj.get("loss", {})
      if not isinstance(loss, dict) or set(loss) - {f.name for f in dataclasses.fields(LossSettings)}:
        raise SampleError(f"loss must be an object with keys head, s_pos, s_neg, m1, m2, m3; "
                          f"got {loss!r}")
      loss = LossSettings(**loss)
    except (TypeError, ValueError) as error:
      raise SampleError(f"{self.name} sample: {error}") from None
    arch = (self.arch_space.from_json(obj["architecture"], model_config) if "architecture" in obj
            else self.arch_space.default(model_config))
    sample = self._canonical(Recipe(cleaning, loss, arch))
    self.encode(sample)  # the held aspects must be at their defaults, the rest on the grids
    for aspect, held, default in (("data", sample.cleaning, DEFAULT_CLEANING),
                                  ("loss", sample.loss, DEFAULT_LOSS),
                                  ("arch", sample.arch, self.arch_space.default(model_config))):
      if aspect not in self.aspects and held != default:
        raise SampleError(f"the {self.name} space holds the {aspect} aspect at its default; "
                          f"this sample changes it (use --search_space=comprehensive)")
    return sample

  def describe(self, sample: Recipe) -> str:
    c, loss = sample.cleaning, sample.loss
    parts = []
    if c.active:
      parts.append("clean(" + ", ".join(
          f"{k}={v}" for k, v in c.to_json().items()
          if v is not None and not (k == "min_images" and v == 1)
          and not (k == "duplicate_action" and c.merge_threshold is None)) + ")")
    else:
      parts.append("no cleaning")
    parts.append("softmax" if loss.head == "softmax" else
                 f"rescaled(s+={loss.s_pos:g}, s-={loss.s_neg:g}, m=({loss.m1:g}, {loss.m2:g}, "
                 f"{loss.m3:g}))")
    parts.append(str(sample.arch))
    return "; ".join(parts)

  def default(self, model_config) -> Recipe:
    return Recipe(DEFAULT_CLEANING, DEFAULT_LOSS, self.arch_space.default(model_config))

  # ----------------------------------------------------------- training setup
  def prepare_training(self, config, dataset, sample: Recipe):
    """(config with the sample's loss as its head, dataset cleaned by the sample's cleaning
    with config.data.cleaning_embeddings) and the cleaning result (None when it cleans
    nothing)."""
    config = dataclasses.replace(config, head=sample.loss.head_config(config.head))
    dataset, result = cleaning.clean_dataset(dataset, sample.cleaning,
                                             config.data.cleaning_embeddings)
    return config, dataset, result

  # ---------------------------------------------------------- model and cost
  @property
  def architecture_space(self) -> SearchSpace:
    return self.arch_space

  def architecture(self, sample: Recipe):
    return sample.arch

  def flops(self, model_config, sample: Recipe) -> int:
    return self.arch_space.flops(model_config, sample.arch)

  def params(self, model_config, sample: Recipe) -> int:
    return self.arch_space.params(model_config, sample.arch)

  def cost_modules(self, model_config, sample: Recipe) -> list[str]:
    return self.arch_space.cost_modules(model_config, sample.arch)

  def every_cost_module(self, model_config) -> list[str]:
    return self.arch_space.every_cost_module(model_config)


SPACES = (
    ComprehensiveSpace("comprehensive", ASPECTS,
                       "data cleaning, loss (rescaled margin) and ENAS macro architecture, jointly"),
    ComprehensiveSpace("loss_only", ("loss",), "the comprehensive space's loss alone (no "
                       "cleaning, the default architecture)"),
    ComprehensiveSpace("data_only", ("data",), "the comprehensive space's data cleaning alone "
                       "(softmax, the default architecture)"),
    ComprehensiveSpace("arch_only", ("arch",), "the comprehensive space's architecture alone "
                       "(softmax, no cleaning): today's ENAS, trained as proxy runs"),
)
