"""The run's --cost_model: every cost model by name (the measured ones load TensorFlow)."""
from __future__ import annotations

import os

from enas_face.costs.base import COST_MODELS, CostModel, FlopsCost, ParamsCost
from enas_face.costs.latency_table import TableLatency
from enas_face.costs.measured import MeasuredLatency
from enas_face.costs.tflite import TFLiteLatency
from enas_face import runlog


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
    return MeasuredLatency(model_config, warmup=warmup, repeats=repeats,
                                    cache_path=cache_path)
  if name == "lut":
    return TableLatency(model_config, table_path)
  if name == "tflite":
    return TFLiteLatency(model_config, warmup=warmup, repeats=repeats,
                                cache_path=cache_path, num_threads=threads)
  raise ValueError(f"unknown --cost_model={name!r}; choices: {', '.join(COST_MODELS)}")


def from_config(config) -> CostModel:
  """The run's --cost_model (a RunConfig), measurements cached in the run folder (or in
  --latency_cache)."""
  search_cfg = config.search
  cache_name = (runlog.TFLITE_LATENCY_CACHE if search_cfg.cost_model == "tflite"
                else runlog.LATENCY_CACHE)
  return make_cost_model(
      search_cfg.cost_model, config.model,
      cache_path=search_cfg.latency_cache or os.path.join(config.run_dir, cache_name),
      table_path=search_cfg.cost_table, warmup=search_cfg.latency_warmup,
      repeats=search_cfg.latency_repeats)
