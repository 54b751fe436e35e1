"""The cost model interface and the analytic models (no TensorFlow): c(sample) > 0 in a unit.
Measured models are in measured.py, tflite.py and latency_table.py; costs.factory makes
the run's --cost_model."""
from __future__ import annotations

import abc
from typing import Any

from enas_face import spaces

COST_MODELS = ("measured", "lut", "tflite", "flops", "params")
UNITS = {"measured": "ms", "lut": "ms", "tflite": "ms", "flops": "FLOPs", "params": "params"}


class CostModel(abc.ABC):
  """c(sample) > 0 in `unit`. `evaluations` counts the costly evaluations made (models
  built and timed), `seconds` their wall time; analytic models make none."""
  name = ""
  unit = ""

  def __init__(self, model_config):
    model_config.validate()
    self.model_config = model_config
    self.space = spaces.of(model_config)
    self.evaluations = 0
    self.seconds = 0.0

  @abc.abstractmethod
  def __call__(self, sample) -> float:
    """The cost of `sample`."""

  def evaluate(self, sample) -> tuple[float, dict[str, Any]]:
    """(cost, extra fields for the sample's log record, e.g. the spread of a measurement),
    from one evaluation."""
    return float(self(sample)), {}

  def describe(self) -> str:
    return f"{self.name} ({self.unit})"


class FlopsCost(CostModel):
  """FLOPs of one batch-1 inference, counted from the architecture (space.flops)."""
  name, unit = "flops", "FLOPs"

  def __call__(self, sample) -> float:
    return float(self.space.flops(self.model_config, sample))

  def describe(self) -> str:
    return "flops: analytic FLOPs of a batch-1 inference (a multiply-add counts 2)"


class ParamsCost(CostModel):
  """Trainable parameters, counted from the architecture (space.params)."""
  name, unit = "params", "params"

  def __call__(self, sample) -> float:
    return float(self.space.params(self.model_config, sample))

  def describe(self) -> str:
    return "params: analytic count of trainable parameters"


def keras_params(model) -> dict[str, int]:
  """Trainable and total (incl. BN moving statistics) parameter counts of a built model."""
  trainable = sum(int(v.numpy().size) for v in model.trainable_weights)
  total = sum(int(v.numpy().size) for v in model.weights)
  return {"trainable": trainable, "total": total}
