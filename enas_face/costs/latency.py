"""Inference latency of an architecture on this machine, for the search reward.

Method: build the sample's stand-alone model (`models.builders.build_fixed`, e.g. FixedChild)
with random weights (latency does not depend on their values), wrap batch-1
inference in a `tf.function` with a fixed input signature [1, S, S, 3] float32, run
`warmup` untimed calls, then
`repeats` timed calls, each synchronised with `.numpy()`; the latency is the
median of the repeats, Lat = median_k t_k (ms, `time.perf_counter`).

Each sample (key `space.to_string(sample)`, its encoding) is measured once per meter. With a
`cache_path`, measurements are appended to a JSONL file (one record per line,
tagged with the model config) and loaded again on construction, so a resumed
search does not re-measure; records of other model configs are ignored. The
figures are of this machine and its load: do not share a cache across hosts.
"""
from __future__ import annotations

import dataclasses
import gc
import json
import logging
import os
import statistics
import time
from typing import Any, Sequence

import numpy as np
import tensorflow as tf

from enas_face.config import ModelConfig
from enas_face.models import builders
from enas_face import spaces

logger = logging.getLogger(__name__)

PROBE_MODEL_NAME = "latency_probe"


@dataclasses.dataclass(frozen=True)
class LatencyStats:
  """Summary of `repeats` timed batch-1 inferences, in milliseconds."""
  median_ms: float
  mean_ms: float
  std_ms: float
  min_ms: float
  max_ms: float
  repeats: int

  @classmethod
  def from_samples(cls, samples_ms: Sequence[float]) -> LatencyStats:
    """Median, mean, population std, min and max of the samples t_1..t_R."""
    samples = np.asarray(samples_ms, dtype=np.float64)
    if samples.ndim != 1 or samples.size == 0:
      raise ValueError(f"need a non-empty 1-D sequence of latencies, got shape {samples.shape}")
    if not np.all(np.isfinite(samples)) or np.any(samples < 0):
      raise ValueError(f"latencies must be finite and >= 0, got {samples.tolist()}")
    return cls(median_ms=float(np.median(samples)), mean_ms=float(samples.mean()),
               std_ms=float(samples.std()), min_ms=float(samples.min()),
               max_ms=float(samples.max()), repeats=int(samples.size))

  @property
  def cv(self) -> float:
    """Coefficient of variation std / mean: the spread of the repeats (0 if mean = 0)."""
    return self.std_ms / self.mean_ms if self.mean_ms > 0 else 0.0

  def to_json(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_json(cls, obj: Any) -> LatencyStats:
    if not isinstance(obj, dict):
      raise ValueError(f"latency stats must be a JSON object, got {type(obj).__name__}: {obj!r}")
    fields = [field.name for field in dataclasses.fields(cls)]
    missing = [name for name in fields if name not in obj]
    if missing:
      raise ValueError(f"latency stats lack {missing}; got keys {sorted(obj)}")
    return cls(**{name: float(obj[name]) for name in fields if name != "repeats"},
               repeats=int(obj["repeats"]))


class LatencyMeter:
  """Measures (and caches) the batch-1 inference latency of architectures.

  `measured` counts real measurements made by this meter, `cached_hits` the
  calls answered from the cache (including records loaded from `cache_path`),
  `measure_seconds` the wall time spent measuring (build + trace + warm-up +
  repeats) and `last_timing` that breakdown for the latest measurement.
  """

  def __init__(self, model_config: ModelConfig, warmup: int = 5, repeats: int = 20,
               cache_path: str | None = None):
    model_config.validate()
    if warmup < 0:
      raise ValueError(f"warmup must be >= 0, got {warmup}")
    if repeats < 1:
      raise ValueError(f"repeats must be >= 1, got {repeats}")
    self.model_config = model_config
    self.warmup = int(warmup)
    self.repeats = int(repeats)
    self.cache_path = os.fspath(cache_path) if cache_path is not None else None
    self.measured = 0
    self.cached_hits = 0
    self.loaded = 0
    self.measure_seconds = 0.0
    self.last_timing: dict[str, float] = {}
    self._cache: dict[str, LatencyStats] = {}
    self._truncate_cache_to: int | None = None  # drop a truncated last line before appending
    self._cache_needs_newline = False
    if self.cache_path is not None and os.path.exists(self.cache_path):
      self._load_cache()

  # ------------------------------------------------------------------ API
  def __call__(self, arc) -> LatencyStats:
    """Latency stats of `arc` (a sample of the model config's space), measured on first
    request and cached afterwards."""
    space = spaces.of(self.model_config)
    key = space.to_string(arc)
    if key in self._cache:
      self.cached_hits += 1
      return self._cache[key]
    stats = self._measure(arc)
    self._cache[key] = stats
    self.measured += 1
    if self.cache_path is not None:
      self._append({"arc": key, "stats": stats.to_json(),
                    "model": dataclasses.asdict(self.model_config),
                    "warmup": self.warmup, "timing_s": self.last_timing})
    return stats

  def __contains__(self, arc) -> bool:
    return spaces.of(self.model_config).to_string(arc) in self._cache

  def __len__(self) -> int:
    return len(self._cache)

  def describe(self) -> str:
    """One log line: the method and the spread of the repeats so far."""
    size = self.model_config.image_size
    line = (f"latency: batch-1 tf.function {self.model_config.search_space} model ({size}x{size} input), "
            f"warm-up {self.warmup}, median of {self.repeats} repeats; "
            f"{self.measured} measured")
    if self.measured:
      line += f" ({self.measure_seconds / self.measured:.2f} s each)"
    line += f", {self.cached_hits} cache hits"
    if self.loaded:
      line += f", {self.loaded} loaded from {self.cache_path}"
    if self._cache:
      cvs = [stats.cv for stats in self._cache.values()]
      line += (f"; spread: median CV {100 * statistics.median(cvs):.1f}% "
               f"(max {100 * max(cvs):.1f}%) over {len(cvs)} archs")
    else:
      line += "; spread: n/a (nothing measured yet)"
    return line

  # ---------------------------------------------------------- measurement
  def _measure(self, arc) -> LatencyStats:
    """Build, trace, warm up and time one architecture; frees the model afterwards."""
    size = self.model_config.image_size
    started = time.perf_counter()
    # A fixed model name keeps variable names (hence TF's eager kernel cache keys) the same
    # across architectures; auto-numbered names leak every variable's buffer (~1 MB per arch).
    model = builders.build_fixed(self.model_config, arc, name=PROBE_MODEL_NAME)
    built = time.perf_counter()
    infer = tf.function(lambda images: model(images, training=False),
                        input_signature=[tf.TensorSpec([1, size, size, 3], tf.float32)])
    infer.get_concrete_function()
    traced = time.perf_counter()
    images = tf.constant(np.random.default_rng(0).uniform(0, 255, (1, size, size, 3)), tf.float32)
    for _ in range(self.warmup):
      infer(images).numpy()
    warmed = time.perf_counter()
    samples_ms = []
    gc_was_enabled = gc.isenabled()
    gc.disable()  # no collector pauses inside the timed calls
    try:
      for _ in range(self.repeats):
        start = time.perf_counter()
        infer(images).numpy()
        samples_ms.append(1e3 * (time.perf_counter() - start))
    finally:
      if gc_was_enabled:
        gc.enable()
    timed = time.perf_counter()
    # Keras models hold reference cycles: collect now so memory does not grow per architecture.
    del infer, model, images
    gc.collect()
    self.last_timing = {"build_s": built - started, "trace_s": traced - built,
                        "warmup_s": warmed - traced, "timed_s": timed - warmed,
                        "total_s": time.perf_counter() - started}
    self.measure_seconds += self.last_timing["total_s"]
    return LatencyStats.from_samples(samples_ms)

  # ---------------------------------------------------------------- cache
  def _load_cache(self) -> None:
    """Reads the JSONL cache; a truncated last line (interrupted write) is skipped."""
    with open(self.cache_path, "rb") as handle:
      data = handle.read()
    wanted_model = dataclasses.asdict(self.model_config)
    lines = data.split(b"\n")
    offset = 0
    for number, raw in enumerate(lines, start=1):
      is_last = number == len(lines)  # no newline after it: "" or an unfinished write
      line_start, offset = offset, offset + len(raw) + 1
      if not raw.strip():
        continue
      try:
        record = json.loads(raw.decode("utf-8"))
        key = " ".join(str(int(v)) for v in str(record["arc"]).split())  # an encoding
        stats = LatencyStats.from_json(record["stats"])
        model = record["model"]
      except (ValueError, KeyError, TypeError) as error:
        if is_last:
          logger.warning("%s: skipping truncated last line %d (%s)", self.cache_path, number, error)
          self._truncate_cache_to = line_start
          continue
        raise ValueError(f"latency cache {self.cache_path!r} line {number} is not a latency "
                         f"record ({error}); delete the file to re-measure") from None
      if is_last:
        self._cache_needs_newline = True
      if model == wanted_model:
        self._cache[key] = stats
    self.loaded = len(self._cache)

  def _append(self, record: dict[str, Any]) -> None:
    """Appends one JSON line and flushes it, so an interrupted search keeps it."""
    directory = os.path.dirname(self.cache_path)
    if directory:
      os.makedirs(directory, exist_ok=True)
    if self._truncate_cache_to is not None:
      with open(self.cache_path, "r+b") as handle:
        handle.truncate(self._truncate_cache_to)
      self._truncate_cache_to = None
    line = json.dumps(record, sort_keys=True) + "\n"
    if self._cache_needs_newline:
      line = "\n" + line
      self._cache_needs_newline = False
    with open(self.cache_path, "a", encoding="utf-8") as handle:
      handle.write(line)
      handle.flush()
      os.fsync(handle.fileno())
