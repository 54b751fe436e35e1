"""What every search space provides: decisions, encodings, defaults and analytic costs.

A *sample* is one point of a space (an architecture, or later also a loss or data-cleaning
setting), in whatever Python form the space likes. The controller only ever sees its
integer encoding: entry k is the choice c_k in 0..num_choices_k - 1 of decision k. No
deep-learning framework is imported here.
"""
from __future__ import annotations

import abc
import dataclasses
import re
from typing import Any, Sequence

import numpy as np

DECISION_KINDS = ("categorical", "skip")


class SampleError(ValueError):
  """A sample (or its encoding) does not describe a valid point of its search space."""


@dataclasses.dataclass(frozen=True)
class Decision:
  """One controller decision.

  kind "categorical": choose one of num_choices values. Decisions of one `group` share
    the controller's softmax and choice embedding (so they must have the same
    num_choices); group defaults to the name. With `layer` set, the decision also opens
    anchor `layer` that later skip decisions can attend to (ENAS op decisions).
  kind "skip": the ENAS skip bit (num_choices = 2): does anchor `source` feed layer
    `layer`? The skips of layer i follow i's categorical decision, sources 0..i-1 in
    order, and are drawn by attention over the earlier anchors.
  """
  name: str
  num_choices: int
  kind: str = "categorical"
  group: str = ""
  layer: int | None = None
  source: int | None = None

  def __post_init__(self):
    if self.kind not in DECISION_KINDS:
      raise ValueError(f"decision {self.name!r}: kind must be one of {DECISION_KINDS}, "
                       f"got {self.kind!r}")
    if not self.group:
      object.__setattr__(self, "group", self.name)
    if not re.fullmatch(r"[A-Za-z0-9_./-]+", self.group):
      raise ValueError(f"decision {self.name!r}: group {self.group!r} may only hold letters, "
                       "digits and _ . / -")
    if self.num_choices < 1:
      raise ValueError(f"decision {self.name!r}: num_choices must be >= 1, got {self.num_choices}")
    if self.kind == "skip":
      if self.num_choices != 2:
        raise ValueError(f"skip decision {self.name!r} needs num_choices=2, got {self.num_choices}")
      if self.layer is None or self.source is None or not 0 <= self.source < self.layer:
        raise ValueError(f"skip decision {self.name!r} needs 0 <= source < layer, got "
                         f"source={self.source}, layer={self.layer}")
    elif self.source is not None:
      raise ValueError(f"categorical decision {self.name!r} takes no source, got {self.source}")


class SearchSpace(abc.ABC):
  """A registered search space (see `enas_face.spaces.get`).

  Subclasses give `name`, `decisions`, `encode`, `decode`, `to_json`, `from_json` and
  `default`; their networks are built by models.builders, registered under the same name.
  The rest has generic defaults.
  """
  name: str = ""
  description: str = ""
  # Whether samples choose the loss (then the --head flags are not the run's loss).
  owns_loss: bool = False

  # ------------------------------------------------------------- decisions
  @abc.abstractmethod
  def decisions(self, model_config) -> tuple[Decision, ...]:
    """The controller's decisions, in sampling order; entry k decides encode(sample)[k]."""

  # -------------------------------------------------------------- encodings
  @abc.abstractmethod
  def encode(self, sample) -> list[int]:
    """The sample as choices c_k, one per decision."""

  @abc.abstractmethod
  def decode(self, choices: Sequence[int], model_config) -> Any:
    """Inverse of encode; SampleError if the choices are not a sample of this space."""

  @abc.abstractmethod
  def to_json(self, sample) -> dict:
    """A JSON object that from_json reads back (human-readable names where there are)."""

  @abc.abstractmethod
  def from_json(self, obj: Any, model_config) -> Any:
    """Inverse of to_json; SampleError on anything else."""

  def to_string(self, sample) -> str:
    """The encoding as space-separated integers: a compact key for logs and caches."""
    return " ".join(str(c) for c in self.encode(sample))

  def from_string(self, text: str, model_config) -> Any:
    """Parse "0 1 1", "0,1,1" or "[0, 1, 1]" (an encoding) into a sample."""
    if not isinstance(text, str):
      raise SampleError(f"expected a string, got {type(text).__name__}: {text!r}")
    body = text.strip().strip("[]()")
    tokens = [t for t in re.split(r"[\s,]+", body) if t]
    try:
      choices = [int(t) for t in tokens]
    except ValueError:
      raise SampleError(f"{self.name} sample {text!r}: expected integers such as '0 1 1'") from None
    return self.decode(choices, model_config)

  def describe(self, sample) -> str:
    """One human-readable line."""
    return self.to_string(sample)

  # --------------------------------------------------------------- samples
  @abc.abstractmethod
  def default(self, model_config) -> Any:
    """The sample trained when none is given."""

  def sample_uniform(self, model_config, rng: np.random.Generator) -> Any:
    """Every decision uniform and independent: c_k ~ U{0..num_choices_k - 1}."""
    return self.decode([int(rng.integers(0, d.num_choices)) for d in self.decisions(model_config)],
                       model_config)

  def check_choices(self, choices: Sequence[int], model_config) -> list[int]:
    """`choices` as ints, checked against the decisions' count and ranges (SampleError)."""
    decisions = self.decisions(model_config)
    values = [int(c) for c in choices]
    if len(values) != len(decisions):
      raise SampleError(f"{self.name} samples have {len(decisions)} choices, got {len(values)}")
    for value, decision in zip(values, decisions):
      if not 0 <= value < decision.num_choices:
        raise SampleError(f"{self.name} decision {decision.name!r} is {value}; expected "
                          f"0..{decision.num_choices - 1}")
    return values

  # --------------------------------------------------------- training setup
  def prepare_training(self, config, dataset, sample):
    """(config, dataset, report) that train `sample`: spaces whose samples also choose the
    loss or clean the data (comprehensive) change the head and the training split here; the
    report (or None) says what the cleaning removed. Default: both unchanged."""
    del sample
    return config, dataset, None

  # ---------------------------------------------------------------- models
  # What models.builders can build for this space (data, so flags can check it without
  # TensorFlow): the one-shot strategy needs a weight-sharing model, the differentiable
  # search a width/depth supernet.
  supports_weight_sharing: bool = False
  has_supernet: bool = False

  def widest_choices(self, model_config) -> list[int] | None:
    """Per decision, the choice whose network holds every other choice's as a part (the
    widest width, the deepest depth): what a path dropout warm-up trains (search/warmup.py).
    None: the space's choices do not nest (e.g. ops)."""
    del model_config
    return None

  @property
  def architecture_space(self) -> "SearchSpace":
    """The space whose samples models.builders turns into networks (self, unless samples
    hold more than an architecture)."""
    return self

  def architecture(self, sample):
    """The part of `sample` that is a sample of architecture_space (the sample itself)."""
    return sample

  # ----------------------------------------------------------------- costs
  def flops(self, model_config, sample) -> int:
    """FLOPs of one batch-1 inference of `sample`, counted without building it (the
    --cost_model=flops)."""
    raise NotImplementedError(f"the {self.name} space has no analytic FLOPs count; use "
                              "--cost_model=measured")

  def params(self, model_config, sample) -> int:
    """Trainable parameters of `sample`'s model, counted without building it."""
    raise NotImplementedError(f"the {self.name} space has no analytic parameter count; use "
                              "--cost_model=measured")

  def cost_modules(self, model_config, sample) -> list[str]:
    """Keys of the modules `sample` runs (a latency table predicts the sum of their
    entries); every key is one of every_cost_module's."""
    raise NotImplementedError(f"the {self.name} space has no module inventory for a latency "
                              "table; use --cost_model=measured or tflite")

  def every_cost_module(self, model_config) -> list[str]:
    """Keys of every module any sample can run: the rows of a latency table."""
    raise NotImplementedError(f"the {self.name} space has no module inventory for a latency "
                              "table; use --cost_model=measured or tflite")
