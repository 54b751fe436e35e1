"""TFLite latency: convert a Keras model once, time batch-1 inference under LiteRT.

The LiteRT interpreter (`ai_edge_litert`, the successor of the deprecated
tf.lite.Interpreter) runs the float model with its default delegate (XNNPACK on CPU)
and `num_threads` threads; latency = median over `repeats` timed invoke() calls after
`warmup` untimed ones, inputs set once (ms, time.perf_counter).
"""
from __future__ import annotations

import dataclasses
import gc
import json
import os
import time

import numpy as np
import tensorflow as tf

from enas_face.costs.base import CostModel
from enas_face.costs import latency
from enas_face.models import builders

DEFAULT_THREADS = 1


def keras_to_tflite(model, input_shapes) -> bytes:
  """The float TFLite flatbuffer of `model` called on batch-1 float32 inputs of
  `input_shapes` (inference mode)."""
  specs = [tf.TensorSpec(shape, tf.float32) for shape in input_shapes]
  if len(specs) == 1:
    function = tf.function(lambda x: model(x, training=False), input_signature=specs)
  else:
    function = tf.function(lambda *xs: model(list(xs), training=False), input_signature=specs)
  converter = tf.lite.TFLiteConverter.from_concrete_functions(
      [function.get_concrete_function()], model)
  # Freeze the variables into the flatbuffer (see export.to_tflite: the default lowering
  # leaves Keras 3 variables uninitialised, and the model computes NaN).
  converter.experimental_lower_to_saved_model = False
  return converter.convert()


def interpreter(model_bytes: bytes, num_threads: int = DEFAULT_THREADS):
  """A LiteRT interpreter with its tensors allocated."""
  from ai_edge_litert.interpreter import Interpreter  # pylint: disable=import-outside-toplevel
  runner = Interpreter(model_content=model_bytes, num_threads=num_threads)
  runner.allocate_tensors()
  return runner


def time_tflite(model_bytes: bytes, warmup: int, repeats: int,
                num_threads: int = DEFAULT_THREADS, seed: int = 0) -> latency.LatencyStats:
  """Median batch-1 invoke() latency of a TFLite model on random inputs."""
  runner = interpreter(model_bytes, num_threads)
  rng = np.random.default_rng(seed)
  for detail in runner.get_input_details():
    runner.set_tensor(detail["index"], rng.uniform(0, 1, detail["shape"]).astype(detail["dtype"]))
  for _ in range(warmup):
    runner.invoke()
  samples = []
  gc_was_enabled = gc.isenabled()
  gc.disable()
  try:
    for _ in range(repeats):
      start = time.perf_counter()
      runner.invoke()
      samples.append(1e3 * (time.perf_counter() - start))
  finally:
    if gc_was_enabled:
      gc.enable()
  return latency.LatencyStats.from_samples(samples)


class TFLiteLatency(CostModel):
  """c = median batch-1 latency (ms) of the sample's float TFLite model under LiteRT;
  converted and timed once per sample, kept in `cache_path` (JSONL) across resumes."""
  name, unit = "tflite", "ms"

  def __init__(self, model_config, warmup: int = 5, repeats: int = 20,
               cache_path: str | None = None, num_threads: int = DEFAULT_THREADS):
    super().__init__(model_config)
    self.warmup, self.repeats, self.num_threads = warmup, repeats, num_threads
    self.cache_path = cache_path
    self._cache: dict[str, latency.LatencyStats] = {}
    if cache_path and os.path.exists(cache_path):
      with open(cache_path) as handle:
        for number, line in enumerate(handle, 1):
          try:
            record = json.loads(line)
            if record["model"] == dataclasses.asdict(model_config):  # others: another config
              self._cache[record["arc"]] = latency.LatencyStats.from_json(record["stats"])
          except (ValueError, KeyError) as error:
            raise ValueError(f"TFLite latency cache {cache_path} line {number}: {error}; delete "
                             "the file to re-measure") from None

  def stats(self, sample) -> latency.LatencyStats:
    key = self.space.to_string(sample)
    if key not in self._cache:
      started = time.perf_counter()
      size = self.model_config.image_size
      model = builders.build_fixed(self.model_config, sample, name=latency.PROBE_MODEL_NAME)
      flatbuffer = keras_to_tflite(model, [(1, size, size, 3)])
      del model
      gc.collect()
      self._cache[key] = time_tflite(flatbuffer, self.warmup, self.repeats, self.num_threads)
      self.evaluations += 1
      self.seconds += time.perf_counter() - started
      if self.cache_path:
        with open(self.cache_path, "a") as handle:
          handle.write(json.dumps({"arc": key, "stats": self._cache[key].to_json(),
                                   "model": dataclasses.asdict(self.model_config)}) + "\n")
    return self._cache[key]

  def __call__(self, sample) -> float:
    return self.stats(sample).median_ms

  def evaluate(self, sample) -> tuple[float, dict]:
    stats = self.stats(sample)
    return stats.median_ms, {"latency_cv": stats.cv}

  def describe(self) -> str:
    return (f"tflite: batch-1 LiteRT latency of the float TFLite model, {self.num_threads} "
            f"thread(s), warm-up {self.warmup}, median of {self.repeats}; {self.evaluations} "
            f"converted and timed ({self.seconds / max(self.evaluations, 1):.2f} s each)")
