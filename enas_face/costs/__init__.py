"""Cost models: what an architecture costs, for the reward, the budget and the ranking.

    --cost_model   unit     how
    flops          FLOPs    analytic count from the sample and the model config (no TF)
    params         params   analytic trainable-parameter count (no TF)
    measured       ms       batch-1 tf.function latency on this machine (latency.LatencyMeter)
    lut            ms       a latency lookup table's sum over the sample's modules
                            (tools/build_latency_table.py writes the table; nothing is timed)
    tflite         ms       batch-1 latency of the converted TFLite model under LiteRT

Every model maps a sample of the run's space to one positive float; the rewards
(`enas_face.reward`) compare it with --cost_target in the same unit.
"""
from __future__ import annotations

import abc
import os
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


def make_cost_model(name: str, model_config, *, cache_path: str | None = None,
                    table_path: str = "", warmup: int = 5, repeats: int = 20,
                    threads: int = 1) -> CostModel:
  """The --cost_model `name` for the run's model config.

  measured and tflite keep their measurements in `cache_path` (JSONL, reused on resume);
  lut reads `table_path` (--cost_table); tflite runs on `threads` LiteRT threads.
  """
  if name == "flops":
    return FlopsCost(model_config)
  if name == "params":
    return ParamsCost(model_config)
  if name == "measured":
    from enas_face.costs import measured  # pylint: disable=import-outside-toplevel
    return measured.MeasuredLatency(model_config, warmup=warmup, repeats=repeats,
                                    cache_path=cache_path)
  if name == "lut":
    from enas_face.costs import latency_table  # pylint: disable=import-outside-toplevel
    return latency_table.TableLatency(model_config, table_path)
  if name == "tflite":
    from enas_face.costs import tflite  # pylint: disable=import-outside-toplevel
    return tflite.TFLiteLatency(model_config, warmup=warmup, repeats=repeats,
                                cache_path=cache_path, num_threads=threads)
  raise ValueError(f"unknown --cost_model={name!r}; choices: {', '.join(COST_MODELS)}")


def from_config(config) -> CostModel:
  """The run's --cost_model (a RunConfig), measurements cached in the run folder (or in
  --latency_cache)."""
  search_cfg = config.search
  cache_name = ("tflite_latency_cache.jsonl" if search_cfg.cost_model == "tflite"
                else "latency_cache.jsonl")
  return make_cost_model(
      search_cfg.cost_model, config.model,
      cache_path=search_cfg.latency_cache or os.path.join(config.run_dir, cache_name),
      table_path=search_cfg.cost_table, warmup=search_cfg.latency_warmup,
      repeats=search_cfg.latency_repeats)


def keras_params(model) -> dict[str, int]:
  """Trainable and total (incl. BN moving statistics) parameter counts of a built model."""
  trainable = sum(int(v.numpy().size) for v in model.trainable_weights)
  total = sum(int(v.numpy().size) for v in model.weights)
  return {"trainable": trainable, "total": total}
