"""--cost_model=lut: a latency lookup table over a space's modules.

Built once per machine and model config (tools/build_latency_table.py): every module of
the space (`space.every_cost_module`: for enas_macro the stem, the head, each (layer,
op), each skip, each reduction) is timed alone at batch 1, and so is an empty call.
With t_k the module's median latency and t_0 the empty call's,

    entry_k = max(t_k - t_0, 0)            (the module's own time, without the call)
    Lat(sample) ~ t_0 + sum_{k in modules(sample)} entry_k

so predicting costs a dictionary sum (no model is built). The table is JSON:
{"format", "version", "space", "model" (the ModelConfig), "runtime" (tf_function |
tflite), "threads", "warmup", "repeats", "overhead_ms" (t_0), "modules" {key: {"ms",
"cv"}}, and, once the tool has checked it, "error" (against measured latency)}.
"""
from __future__ import annotations

import dataclasses
import gc
import json
import os
import time
from typing import Callable

import numpy as np

from enas_face.costs.base import CostModel
from enas_face.costs import latency
from enas_face.costs import tflite
from enas_face.models import builders
from enas_face import spaces

FORMAT = "enas_face/latency-table"
VERSION = 1
RUNTIMES = ("tf_function", "tflite")
# The cost model that measures a whole architecture with each runtime (to check a table).
WHOLE_MODEL_COST = {"tf_function": "measured", "tflite": "tflite"}


def _time_tf_function(model, input_shapes, warmup: int, repeats: int) -> latency.LatencyStats:
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  specs = [tf.TensorSpec(shape, tf.float32) for shape in input_shapes]
  if model is None:  # the empty call: t_0
    function = tf.function(tf.identity, input_signature=specs)
  elif len(specs) == 1:
    function = tf.function(lambda x: model(x, training=False), input_signature=specs)
  else:
    function = tf.function(lambda *xs: model(list(xs), training=False), input_signature=specs)
  rng = np.random.default_rng(0)
  inputs = [tf.constant(rng.uniform(0, 1, shape).astype(np.float32)) for shape in input_shapes]
  for _ in range(warmup):
    function(*inputs).numpy()
  samples = []
  for _ in range(repeats):
    start = time.perf_counter()
    function(*inputs).numpy()
    samples.append(1e3 * (time.perf_counter() - start))
  return latency.LatencyStats.from_samples(samples)


def _time_tflite(model, input_shapes, warmup: int, repeats: int,
                 threads: int) -> latency.LatencyStats:
  import keras  # pylint: disable=import-outside-toplevel

  if model is None:  # the empty call: an identity-like model
    x = keras.Input(input_shapes[0][1:], batch_size=1)
    model = keras.Model(x, keras.layers.Activation("linear")(x))
  return tflite.time_tflite(tflite.keras_to_tflite(model, input_shapes), warmup, repeats, threads)


def build_table(model_config, runtime: str = "tf_function", warmup: int = 10,
                repeats: int = 50, threads: int = 1,
                progress: Callable[[str, latency.LatencyStats], None] | None = None) -> dict:
  """Times every module of the model config's space once; returns the table (see module
  docstring). `threads` applies to the tflite runtime (tf.function uses TF's own pool)."""
  if runtime not in RUNTIMES:
    raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
  space = spaces.of(model_config)

  def timed(model, shapes):
    if runtime == "tf_function":
      return _time_tf_function(model, shapes, warmup, repeats)
    return _time_tflite(model, shapes, warmup, repeats, threads)

  size = model_config.image_size
  overhead = timed(None, [(1, size, size, 3)])
  if progress:
    progress("(empty call)", overhead)
  modules = {}
  started = time.perf_counter()
  for key in space.every_cost_module(model_config):
    model, shapes = builders.build_cost_module(model_config, key)
    stats = timed(model, shapes)
    modules[key] = {"ms": max(stats.median_ms - overhead.median_ms, 0.0), "raw_ms": stats.median_ms,
                    "cv": stats.cv}
    del model
    gc.collect()
    if progress:
      progress(key, stats)
  return {"format": FORMAT, "version": VERSION, "space": space.name,
          "model": dataclasses.asdict(model_config), "runtime": runtime, "threads": threads,
          "warmup": warmup, "repeats": repeats, "overhead_ms": overhead.median_ms,
          "modules": modules, "build_seconds": time.perf_counter() - started}


def predict(table: dict, keys) -> float:
  """t_0 + sum of the entries of `keys` (KeyError names the missing module)."""
  modules = table["modules"]
  missing = [k for k in keys if k not in modules]
  if missing:
    raise KeyError(f"the latency table has no entry for {missing}")
  return float(table["overhead_ms"] + sum(modules[k]["ms"] for k in keys))


def load_table(path: str, model_config=None) -> dict:
  """Reads and checks a table; with `model_config`, it must be the table's (ValueError
  naming --cost_table and the fields that differ)."""
  if not path:
    raise ValueError("--cost_model=lut needs --cost_table=PATH (written by "
                     "tools/build_latency_table.py)")
  if not os.path.exists(path):
    raise ValueError(f"--cost_table={path}: no such file (build it with "
                     "tools/build_latency_table.py)")
  try:
    with open(path) as handle:
      table = json.load(handle)
  except json.JSONDecodeError as error:
    raise ValueError(f"--cost_table={path}: not valid JSON ({error})") from None
  if not isinstance(table, dict) or table.get("format") != FORMAT:
    raise ValueError(f"--cost_table={path}: not a latency table (format {FORMAT!r})")
  for field in ("space", "model", "overhead_ms", "modules"):
    if field not in table:
      raise ValueError(f"--cost_table={path}: missing {field!r}")
  if model_config is not None:
    wanted = dataclasses.asdict(model_config)
    differ = sorted(k for k in set(wanted) | set(table["model"])
                    if wanted.get(k) != table["model"].get(k))
    if differ:
      raise ValueError(f"--cost_table={path} was built for another model config (differs in "
                       f"{', '.join(differ)}); rebuild it for this run's flags")
  return table


class TableLatency(CostModel):
  """c = the table's predicted latency in ms (t_0 + the sample's module entries)."""
  name, unit = "lut", "ms"

  def __init__(self, model_config, table_path: str = "", table: dict | None = None):
    """From --cost_table=`table_path`, or from a `table` already in memory."""
    super().__init__(model_config)
    self.path = table_path or "(in memory)"
    self.table = table if table is not None else load_table(table_path, model_config)

  def __call__(self, sample) -> float:
    return predict(self.table, self.space.cost_modules(self.model_config, sample))

  def describe(self) -> str:
    error = self.table.get("error", {})
    checked = (f"; checked on {error['num_archs']} archs: Spearman {error['spearman']:.3f}, "
               f"{100 * error['within_10pct']:.0f}% within +-10%") if error else ""
    return (f"lut: {self.table['runtime']} latency table {self.path} "
            f"({len(self.table['modules'])} modules){checked}")


def prediction_error(predicted, measured) -> dict:
  """How well predictions p_i match measurements m_i (same samples, same order):
  Spearman rho, the share with |p/m - 1| <= 10 %, and the mean and max of |p/m - 1|."""
  from scipy import stats  # pylint: disable=import-outside-toplevel
  p, m = np.asarray(predicted, np.float64), np.asarray(measured, np.float64)
  relative = np.abs(p / m - 1.0)
  return {"num_archs": int(p.size), "spearman": float(stats.spearmanr(p, m).statistic),
          "within_10pct": float(np.mean(relative <= 0.10)),
          "mean_abs_rel_error": float(relative.mean()), "max_abs_rel_error": float(relative.max())}
