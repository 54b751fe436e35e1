"""--cost_model=measured: batch-1 tf.function latency on this machine (latency.LatencyMeter)."""
from __future__ import annotations

from tensorflow.python.eager import context as eager_context  # clear_kernel_cache: no public API

from enas_face.costs.base import CostModel
from enas_face.costs import latency

# Every newly measured architecture is a new tf.function (the latency probe), and TF's
# eager kernel cache keeps its kernels (~35 KB) for the life of the process: a long
# search grew ~0.65 MB per 100 child steps (bench/bench_search_memory.py). Clearing
# the cache costs one re-instantiation of the train step (~5 s at 16x16), so it is
# cleared after this many new measurements: growth stays under ~20 MB for ~1 % time.
KERNEL_CACHE_CLEAR_EVERY = 500


class MeasuredLatency(CostModel):
  """c = median batch-1 latency in ms (build, trace, warm up, time; cached per sample)."""
  name, unit = "measured", "ms"

  def __init__(self, model_config, warmup: int = 5, repeats: int = 20,
               cache_path: str | None = None, clear_every: int = KERNEL_CACHE_CLEAR_EVERY):
    super().__init__(model_config)
    self.meter = latency.LatencyMeter(model_config, warmup=warmup, repeats=repeats,
                                      cache_path=cache_path)
    self.clear_every = clear_every
    self._measured_at_clear = 0

  def stats(self, sample) -> latency.LatencyStats:
    stats = self.meter(sample)
    self.evaluations, self.seconds = self.meter.measured, self.meter.measure_seconds
    if self.meter.measured - self._measured_at_clear >= self.clear_every:
      eager_context.context().clear_kernel_cache()
      self._measured_at_clear = self.meter.measured
    return stats

  def __call__(self, sample) -> float:
    return self.stats(sample).median_ms

  def evaluate(self, sample) -> tuple[float, dict]:
    stats = self.stats(sample)
    return stats.median_ms, {"latency_cv": stats.cv}

  def describe(self) -> str:
    return self.meter.describe()
